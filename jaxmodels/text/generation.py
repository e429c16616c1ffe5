"""Autoregressive generation and continuation scoring for ``jaxmodels.text.gpt.GPT``, all under ``jax.jit``.

``generate`` prefills the KV cache with the whole (left-padded) prompt in one call, then runs a
``lax.while_loop`` of one-token steps that stops as soon as every sequence has emitted a stop
token; shapes are static (``[batch, prompt + max_new_tokens]`` cache) and nothing returns to the
host per token. ``generate_without_cache`` is the reference: it recomputes the whole sequence at
every step. ``score_continuations`` gives log p(continuation | context) in one forward pass, and
``choose`` picks among multiple choices with it.

Sampling: logits / temperature, then top-k (keep the k largest), then top-p / nucleus (keep the
smallest set of most likely tokens whose probability sums to >= p; always at least the most
likely one), then a categorical draw with ``fold_in(rng, step)``. ``temperature=0`` is greedy.

Batches of different-length prompts are left-padded (``left_pad``; ``right_to_left_pad``
converts right-padded arrays): every prompt then ends at the same column, so its next token is
the last column's prediction, and ``GPT`` gives each row's real tokens positions 0, 1, ...
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PyTree = Any


# --------------------------------------------------------------------------------------------
# padding helpers


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int = 0, length: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Lists of token ids -> left-padded ``ids [batch, length]`` (int32) and ``mask`` (1 = real token).

    ``length`` defaults to the longest sequence; a longer sequence raises ``ValueError``.
    """
    longest = max((len(seq) for seq in sequences), default=0)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"left_pad: a sequence of {longest} tokens does not fit length={length}")
    ids = np.full((len(sequences), length), pad_id, np.int32)
    mask = np.zeros((len(sequences), length), np.int32)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, length - len(seq):] = np.asarray(seq, np.int32)
            mask[row, length - len(seq):] = 1
    return ids, mask


def right_to_left_pad(ids: Array, mask: Array, pad_id: int | None = None) -> tuple[Array, Array]:
    """Moves every row's padding to the left, keeping the order of its real tokens.

    ``ids``/``mask [batch, length]`` right-padded (or padded anywhere) -> left-padded ``(ids, mask)``;
    padding positions are set to ``pad_id`` when it is given.
    """
    mask = jnp.asarray(mask)
    order = jnp.argsort(mask.astype(bool).astype(jnp.int32), axis=-1, stable=True)  # pads first, in order
    ids = jnp.take_along_axis(jnp.asarray(ids), order, axis=-1)
    mask = jnp.take_along_axis(mask, order, axis=-1)
    if pad_id is not None:
        ids = jnp.where(mask.astype(bool), ids, pad_id)
    return ids, mask


# --------------------------------------------------------------------------------------------
# sampling


def filter_logits(logits: Array, *, top_k: int = 0, top_p: float = 1.0) -> Array:
    """Sets to -inf the logits outside the top-k and then outside the nucleus of mass ``top_p``.

    ``logits [..., vocab]``; ``top_k=0`` and ``top_p=1`` disable the filters. The nucleus is the
    smallest set of the most likely tokens whose probabilities sum to >= ``top_p`` (at least one).
    """
    logits = logits.astype(jnp.float32)
    if top_k and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]  # [..., 1]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)  # most likely first
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs  # probability of the more likely tokens
        keep_sorted = mass_before < top_p
        keep_sorted = keep_sorted.at[..., 0].set(True)
        keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)
        logits = jnp.where(keep, logits, -jnp.inf)
    return logits


def sample_logits(logits: Array, rng: Array, *, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> Array:
    """Draws token ids ``[...]`` from ``logits [..., vocab]``; ``temperature=0`` is argmax (greedy)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = filter_logits(logits.astype(jnp.float32) / temperature, top_k=top_k, top_p=top_p)
    return jax.random.categorical(rng, filtered, axis=-1).astype(jnp.int32)


# --------------------------------------------------------------------------------------------
# generation


def _decode_loop(first_logits: Array, advance: Callable[[PyTree, Array, Array], tuple[Array, PyTree]],
                 aux: PyTree, *, max_new_tokens: int, rng: Array, temperature: float, top_k: int, top_p: float,
                 stop_tokens: tuple[int, ...], pad_id: int) -> dict[str, Array]:
    """Samples up to ``max_new_tokens``; ``advance(aux, token [batch], step)`` -> (next logits, aux).

    Stops when every row has emitted one of ``stop_tokens`` (which is kept); later tokens are
    ``pad_id``. ``lengths`` counts each row's tokens up to and including its stop token.
    """
    batch = first_logits.shape[0]
    stops = jnp.asarray(stop_tokens, jnp.int32).reshape(-1)
    sample = functools.partial(sample_logits, temperature=temperature, top_k=top_k, top_p=top_p)

    def emit(step, logits, tokens, lengths, done):
        token = sample(logits, jax.random.fold_in(rng, step))  # [batch]
        token = jnp.where(done, pad_id, token)
        tokens = tokens.at[:, step].set(token)
        lengths = lengths + (~done).astype(jnp.int32)
        done = done | jnp.isin(token, stops)
        return token, tokens, lengths, done

    tokens = jnp.full((batch, max_new_tokens), pad_id, jnp.int32)
    token, tokens, lengths, done = emit(0, first_logits, tokens, jnp.zeros((batch,), jnp.int32),
                                        jnp.zeros((batch,), bool))

    def cond(state):
        step, _, _, _, done, _ = state
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(state):
        step, token, tokens, lengths, done, aux = state
        logits, aux = advance(aux, token, step)
        token, tokens, lengths, done = emit(step, logits, tokens, lengths, done)
        return step + 1, token, tokens, lengths, done, aux

    state = (jnp.ones((), jnp.int32), token, tokens, lengths, done, aux)
    _, _, tokens, lengths, _, _ = jax.lax.while_loop(cond, body, state)
    return dict(tokens=tokens, lengths=lengths)


def init_cache(model: nn.Module, params: PyTree, batch: int, max_length: int) -> PyTree:
    """A zero ``cache`` collection for ``batch`` sequences of ``max_length`` slots (shapes by ``eval_shape``,
    no forward pass is computed)."""
    dummy = jnp.zeros((batch, max_length), jnp.int32)
    shapes = jax.eval_shape(lambda p: model.apply({"params": p}, dummy, decode=True, mutable=["cache"])[1],
                            params)["cache"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


_STATIC = ("model", "max_new_tokens", "temperature", "top_k", "top_p", "stop_tokens", "pad_id")


def _check_lengths(model, prompt_ids, max_new_tokens):
    if prompt_ids.ndim != 2:
        raise ValueError(f"prompt_ids must be [batch, length], got shape {prompt_ids.shape}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    total = prompt_ids.shape[1] + max_new_tokens
    n_positions = getattr(model, "n_positions", None)
    if n_positions is not None and total > n_positions:
        raise ValueError(f"prompt length {prompt_ids.shape[1]} + max_new_tokens {max_new_tokens} = {total} exceeds "
                         f"the model's n_positions={n_positions}")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _generate(model, params, prompt_ids, prompt_mask, rng, *, max_new_tokens, temperature, top_k, top_p,
              stop_tokens, pad_id):
    batch, prompt_length = prompt_ids.shape
    cache = init_cache(model, params, batch, prompt_length + max_new_tokens)
    logits, variables = model.apply({"params": params, "cache": cache}, prompt_ids, attention_mask=prompt_mask,
                                    decode=True, last_only=True, mutable=["cache"])

    def advance(cache, token, step):
        logits, variables = model.apply({"params": params, "cache": cache}, token[:, None], decode=True,
                                        mutable=["cache"])
        return logits[:, -1], variables["cache"]

    return _decode_loop(logits[:, -1], advance, variables["cache"], max_new_tokens=max_new_tokens, rng=rng,
                        temperature=temperature, top_k=top_k, top_p=top_p, stop_tokens=stop_tokens, pad_id=pad_id)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _generate_without_cache(model, params, prompt_ids, prompt_mask, rng, *, max_new_tokens, temperature, top_k,
                            top_p, stop_tokens, pad_id):
    batch, prompt_length = prompt_ids.shape
    ids = jnp.concatenate([prompt_ids, jnp.full((batch, max_new_tokens), pad_id, jnp.int32)], axis=1)
    mask = jnp.concatenate([prompt_mask, jnp.zeros((batch, max_new_tokens), jnp.int32)], axis=1)

    def logits_at(ids, mask, column):
        logits = model.apply({"params": params}, ids, attention_mask=mask)  # [batch, total, vocab]
        return jax.lax.dynamic_index_in_dim(logits, column, axis=1, keepdims=False)

    def advance(aux, token, step):
        ids, mask = aux
        column = prompt_length + step - 1  # where ``token`` (emitted at step - 1) goes
        ids = jax.lax.dynamic_update_index_in_dim(ids, token, column, axis=1)
        mask = jax.lax.dynamic_update_index_in_dim(mask, jnp.ones((batch,), jnp.int32), column, axis=1)
        return logits_at(ids, mask, column), (ids, mask)

    return _decode_loop(logits_at(ids, mask, prompt_length - 1), advance, (ids, mask),
                        max_new_tokens=max_new_tokens, rng=rng, temperature=temperature, top_k=top_k, top_p=top_p,
                        stop_tokens=stop_tokens, pad_id=pad_id)


def _generation_args(model, prompt_ids, prompt_mask, rng, max_new_tokens, temperature, top_k, top_p, stop_tokens,
                     pad_id):
    prompt_ids = jnp.asarray(prompt_ids, jnp.int32)
    prompt_mask = jnp.ones_like(prompt_ids) if prompt_mask is None else jnp.asarray(prompt_mask).astype(jnp.int32)
    _check_lengths(model, prompt_ids, max_new_tokens)
    if prompt_mask.shape != prompt_ids.shape:
        raise ValueError(f"prompt_mask shape {prompt_mask.shape} != prompt_ids shape {prompt_ids.shape}")
    rng = jax.random.key(0) if rng is None else rng
    static = dict(max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_k=int(top_k),
                  top_p=float(top_p), stop_tokens=tuple(int(t) for t in stop_tokens), pad_id=int(pad_id))
    if static["temperature"] < 0 or not 0.0 < static["top_p"] <= 1.0 or static["top_k"] < 0:
        raise ValueError(f"generate: need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {static}")
    return prompt_ids, prompt_mask, rng, static


def generate(model: nn.Module, params: PyTree, prompt_ids: Array, prompt_mask: Array | None = None, *,
             max_new_tokens: int, rng: Array | None = None, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, stop_tokens: Sequence[int] = (), pad_id: int = 0) -> dict[str, Array]:
    """Continues each left-padded prompt with up to ``max_new_tokens`` tokens, using the KV cache.

    Args:
      model: a ``GPT`` (any module with its ``__call__(ids, attention_mask=, decode=, last_only=)``).
      params: its (unboxed) parameters.
      prompt_ids: int ``[batch, prompt_length]``, LEFT-padded (``left_pad``); every row needs at
        least one real token.
      prompt_mask: ``[batch, prompt_length]``, 1 = real token; None = all real.
      max_new_tokens: tokens to generate; ``prompt_length + max_new_tokens <= n_positions``.
      rng: PRNG key for sampling (unused when greedy); the same key gives the same tokens.
      temperature: logits are divided by it; 0 = greedy (argmax).
      top_k: keep the k most likely tokens (0 = all).
      top_p: nucleus sampling mass (1 = off).
      stop_tokens: ids that end a sequence (e.g. GPT-2's ``<|endoftext|>`` 50256); the stop token
        is kept, later positions are ``pad_id``. Generation ends early once all rows stopped.
      pad_id: filler after a stop token.

    Returns:
      ``dict(tokens=int32 [batch, max_new_tokens], lengths=int32 [batch])``, lengths counting the
      generated tokens up to and including the stop token.
    """
    prompt_ids, prompt_mask, rng, static = _generation_args(
        model, prompt_ids, prompt_mask, rng, max_new_tokens, temperature, top_k, top_p, stop_tokens, pad_id)
    return _generate(model, params, prompt_ids, prompt_mask, rng, **static)


def generate_without_cache(model: nn.Module, params: PyTree, prompt_ids: Array, prompt_mask: Array | None = None, *,
                           max_new_tokens: int, rng: Array | None = None, temperature: float = 1.0, top_k: int = 0,
                           top_p: float = 1.0, stop_tokens: Sequence[int] = (), pad_id: int = 0) -> dict[str, Array]:
    """``generate`` without a KV cache: every step runs the full ``[batch, prompt + max_new_tokens]``
    sequence (the reference the cached path is tested against; quadratic cost)."""
    prompt_ids, prompt_mask, rng, static = _generation_args(
        model, prompt_ids, prompt_mask, rng, max_new_tokens, temperature, top_k, top_p, stop_tokens, pad_id)
    return _generate_without_cache(model, params, prompt_ids, prompt_mask, rng, **static)


# --------------------------------------------------------------------------------------------
# scoring


@functools.partial(jax.jit, static_argnames=("model",))
def _score(model, params, context_ids, context_mask, continuation_ids, continuation_mask):
    context_length = context_ids.shape[1]
    ids = jnp.concatenate([context_ids, continuation_ids], axis=1)[:, :-1]  # the last token predicts nothing
    mask = jnp.concatenate([context_mask, continuation_mask], axis=1)[:, :-1]
    logits = model.apply({"params": params}, ids, attention_mask=mask)  # [batch, context + cont - 1, vocab]
    logits = logits[:, context_length - 1:]  # predictions of the continuation tokens [batch, cont, vocab]
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    per_token = jnp.take_along_axis(log_probs, continuation_ids[..., None], axis=-1)[..., 0]  # [batch, cont]
    per_token = jnp.where(continuation_mask.astype(bool), per_token, 0.0)
    return per_token.sum(axis=-1), continuation_mask.sum(axis=-1).astype(jnp.int32), per_token


def score_continuations(model: nn.Module, params: PyTree, context_ids: Array, continuation_ids: Array, *,
                        context_mask: Array | None = None, continuation_mask: Array | None = None
                        ) -> tuple[Array, Array, Array]:
    """log p(continuation | context) for each row, in one forward pass.

    Args:
      context_ids: int ``[batch, context_length]``, LEFT-padded; every row needs >= 1 real token
        (for GPT-2 prepend ``<|endoftext|>`` to an empty context).
      continuation_ids: int ``[batch, continuation_length]``, RIGHT-padded.
      context_mask, continuation_mask: 1 = real token; None = all real.

    Returns:
      ``(sum_logprob [batch], num_tokens [batch], per_token [batch, continuation_length])``,
      per-token log-probabilities (float32) with 0 at padding.
    """
    context_ids = jnp.asarray(context_ids, jnp.int32)
    continuation_ids = jnp.asarray(continuation_ids, jnp.int32)
    context_mask = jnp.ones_like(context_ids) if context_mask is None else jnp.asarray(context_mask, jnp.int32)
    continuation_mask = (jnp.ones_like(continuation_ids) if continuation_mask is None
                         else jnp.asarray(continuation_mask, jnp.int32))
    if context_ids.ndim != 2 or continuation_ids.ndim != 2 or context_ids.shape[0] != continuation_ids.shape[0]:
        raise ValueError(f"score_continuations: want context [batch, n] and continuation [batch, m], got "
                         f"{context_ids.shape} and {continuation_ids.shape}")
    if context_ids.shape[1] < 1 or continuation_ids.shape[1] < 1:
        raise ValueError("score_continuations: context and continuation need at least one column")
    if context_mask.shape != context_ids.shape or continuation_mask.shape != continuation_ids.shape:
        raise ValueError("score_continuations: masks must have the shapes of their ids")
    return _score(model, params, context_ids, context_mask, continuation_ids, continuation_mask)


def choose(model: nn.Module, params: PyTree, context_ids: Array, choice_ids: Array, *,
           context_mask: Array | None = None, choice_mask: Array | None = None,
           normaliser: Array | None = None) -> dict[str, Array]:
    """Multiple choice: scores ``choices`` continuations of each context and picks the most likely.

    Args:
      context_ids: ``[batch, context_length]`` left-padded (mask ``context_mask``).
      choice_ids: ``[batch, choices, choice_length]`` right-padded (mask ``choice_mask``).
      normaliser: ``[batch, choices]`` lengths for the normalised score (e.g. byte lengths as in
        lm-eval's ``acc_norm``); default the number of tokens.

    Returns:
      ``dict(choice [batch] (argmax of the summed log-likelihood), choice_normalised [batch]
      (argmax of sum / normaliser), sum_logprob [batch, choices], num_tokens [batch, choices])``.
    """
    context_ids = jnp.asarray(context_ids, jnp.int32)
    choice_ids = jnp.asarray(choice_ids, jnp.int32)
    batch, choices, length = choice_ids.shape
    context_mask = jnp.ones_like(context_ids) if context_mask is None else jnp.asarray(context_mask, jnp.int32)
    choice_mask = jnp.ones_like(choice_ids) if choice_mask is None else jnp.asarray(choice_mask, jnp.int32)
    repeat = functools.partial(jnp.repeat, repeats=choices, axis=0)
    total, num_tokens, _ = score_continuations(
        model, params, repeat(context_ids), choice_ids.reshape(batch * choices, length),
        context_mask=repeat(context_mask), continuation_mask=choice_mask.reshape(batch * choices, length))
    total, num_tokens = total.reshape(batch, choices), num_tokens.reshape(batch, choices)
    denominator = num_tokens if normaliser is None else jnp.asarray(normaliser)
    normalised = total / jnp.maximum(denominator, 1).astype(jnp.float32)
    return dict(choice=jnp.argmax(total, axis=-1), choice_normalised=jnp.argmax(normalised, axis=-1),
                sum_logprob=total, num_tokens=num_tokens)
