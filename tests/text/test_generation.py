"""Jitted generation with the KV cache against the no-cache reference, sampling filters and continuation scoring."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.text import generation as g
from jaxmodels.text.gpt import GPT

VOCAB = 61
PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]]


@pytest.fixture(scope="module")
def lm():
    """A tiny GPT with weights scaled up x10 so its next-token distributions are peaked and varied."""
    model = GPT(vocab_size=VOCAB, n_positions=48, width=32, depth=2, num_heads=4)
    params = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"])()
    return model, jax.tree.map(lambda a: a * 10, nn.unbox(params))


@functools.partial(jax.jit, static_argnums=0)
def forward(model, params, ids, mask):
    return model.apply({"params": params}, ids, attention_mask=mask)


@pytest.fixture(scope="module")
def greedy(lm):
    model, params = lm
    ids, mask = g.left_pad(PROMPTS)
    return g.generate(model, params, ids, mask, max_new_tokens=10, temperature=0.0)


def test_left_pad_and_right_to_left_pad():
    ids, mask = g.left_pad([[5, 6], [7], []], pad_id=9)
    np.testing.assert_array_equal(ids, [[5, 6], [9, 7], [9, 9]])
    np.testing.assert_array_equal(mask, [[1, 1], [0, 1], [0, 0]])
    assert g.left_pad([[1]], length=3)[0].tolist() == [[0, 0, 1]]
    with pytest.raises(ValueError, match="length=1"):
        g.left_pad([[1, 2]], length=1)
    right = np.array([[5, 6, 7], [8, 0, 0], [1, 2, 0]])
    left_ids, left_mask = g.right_to_left_pad(right, right > 0, pad_id=-1)
    np.testing.assert_array_equal(left_ids, [[5, 6, 7], [-1, -1, 8], [-1, 1, 2]])
    np.testing.assert_array_equal(left_mask, [[1, 1, 1], [0, 0, 1], [0, 1, 1]])


def test_greedy_with_cache_equals_without_cache_and_reference_loop(lm, greedy):
    model, params = lm
    ids, mask = g.left_pad(PROMPTS)
    reference = g.generate_without_cache(model, params, ids, mask, max_new_tokens=10, temperature=0.0)
    np.testing.assert_array_equal(greedy["tokens"], reference["tokens"])
    np.testing.assert_array_equal(greedy["lengths"], [10, 10, 10])
    assert greedy["tokens"].shape == (3, 10) and greedy["tokens"].dtype == jnp.int32
    # A host loop of full forwards on the unpadded first prompt.
    sequence = list(PROMPTS[0])
    for _ in range(10):
        logits = forward(model, params, jnp.array([sequence + [0] * (13 - len(sequence))]),
                         jnp.array([[1] * len(sequence) + [0] * (13 - len(sequence))]))
        sequence.append(int(jnp.argmax(logits[0, len(sequence) - 1])))
    assert greedy["tokens"][0].tolist() == sequence[3:]


def test_left_padded_batch_equals_each_prompt_alone(lm, greedy):
    model, params = lm
    for row, prompt in enumerate(PROMPTS):
        alone = g.generate(model, params, jnp.array([prompt]), max_new_tokens=10, temperature=0.0)
        np.testing.assert_array_equal(alone["tokens"][0], greedy["tokens"][row])


def test_stop_tokens_end_sequences_with_padding_after(lm, greedy):
    model, params = lm
    tokens = np.asarray(greedy["tokens"])
    stop = int(tokens[0, 2])  # row 0 stops at its first occurrence of this token (<= step 2)
    first = {row: next((i for i, t in enumerate(tokens[row]) if t == stop), None) for row in range(3)}
    ids, mask = g.left_pad(PROMPTS)
    out = g.generate(model, params, ids, mask, max_new_tokens=10, temperature=0.0, stop_tokens=(stop,), pad_id=-1)
    for row in range(3):
        got = np.asarray(out["tokens"][row])
        if first[row] is None:
            np.testing.assert_array_equal(got, tokens[row])
            assert int(out["lengths"][row]) == 10
        else:
            k = first[row]
            np.testing.assert_array_equal(got[:k + 1], tokens[row, :k + 1])
            assert np.all(got[k + 1:] == -1) and int(out["lengths"][row]) == k + 1
    # All rows stopping ends the loop early: everything after is padding; no-cache path agrees.
    stops = tuple(int(t) for t in tokens[:, 0])
    early = g.generate(model, params, ids, mask, max_new_tokens=10, temperature=0.0, stop_tokens=stops, pad_id=-1)
    np.testing.assert_array_equal(early["lengths"], [1, 1, 1])
    assert np.all(np.asarray(early["tokens"])[:, 1:] == -1)
    reference = g.generate_without_cache(model, params, ids, mask, max_new_tokens=10, temperature=0.0,
                                         stop_tokens=(stop,), pad_id=-1)
    np.testing.assert_array_equal(reference["tokens"], out["tokens"])


def test_top_k_one_is_greedy_and_sampling_is_deterministic_per_rng(lm, greedy):
    model, params = lm
    ids, mask = g.left_pad(PROMPTS)
    top1 = g.generate(model, params, ids, mask, max_new_tokens=10, rng=jax.random.key(5), temperature=1.3, top_k=1)
    np.testing.assert_array_equal(top1["tokens"], greedy["tokens"])
    sample = functools.partial(g.generate, model, params, ids, mask, max_new_tokens=10, temperature=1.0, top_p=0.9)
    a, b, c = sample(rng=jax.random.key(1)), sample(rng=jax.random.key(1)), sample(rng=jax.random.key(2))
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    assert not np.array_equal(a["tokens"], c["tokens"])
    reference = g.generate_without_cache(model, params, ids, mask, max_new_tokens=10, temperature=1.0, top_p=0.9,
                                         rng=jax.random.key(1))
    np.testing.assert_array_equal(reference["tokens"], a["tokens"])


def test_top_p_keeps_the_smallest_nucleus():
    probs = np.array([0.15, 0.5, 0.05, 0.3])  # sorted: 1 (0.5), 3 (0.3), 0 (0.15), 2 (0.05)
    logits = jnp.log(jnp.asarray(probs))[None]
    kept = lambda **kw: set(np.flatnonzero(np.isfinite(g.filter_logits(logits, **kw)[0])).tolist())  # noqa: E731
    assert kept(top_p=0.3) == {1}
    assert kept(top_p=0.5) == {1}
    assert kept(top_p=0.6) == {1, 3}
    assert kept(top_p=0.79) == {1, 3}
    assert kept(top_p=0.81) == {0, 1, 3}
    assert kept(top_p=0.999) == {0, 1, 2, 3}
    assert kept(top_p=1e-6) == {1}  # always at least the most likely token
    assert kept(top_k=2) == {1, 3}
    assert kept(top_k=3, top_p=0.6) == {1, 3}
    assert kept(top_k=1, top_p=0.99) == {1}
    np.testing.assert_allclose(g.filter_logits(logits, top_p=0.6)[0, [1, 3]], logits[0, [1, 3]])


def test_sampled_frequencies_follow_the_filtered_distribution():
    probs = np.array([0.15, 0.5, 0.05, 0.3])
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(probs)), (20000, 4))
    draws = np.asarray(g.sample_logits(logits, jax.random.key(0), top_p=0.6))
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / draws.size, [0, 0.625, 0, 0.375], atol=0.015)
    draws = np.asarray(g.sample_logits(logits, jax.random.key(1), temperature=2.0))
    tempered = np.sqrt(probs) / np.sqrt(probs).sum()
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / draws.size, tempered, atol=0.015)
    np.testing.assert_array_equal(g.sample_logits(logits[:2], jax.random.key(2), temperature=0.0), [1, 1])


def test_argument_checks(lm):
    model, params = lm
    with pytest.raises(ValueError, match="n_positions=48"):
        g.generate(model, params, jnp.ones((1, 40), jnp.int32), max_new_tokens=9)
    with pytest.raises(ValueError, match="top_p"):
        g.generate(model, params, jnp.ones((1, 4), jnp.int32), max_new_tokens=2, top_p=0.0)
    with pytest.raises(ValueError, match="shape"):
        g.generate(model, params, jnp.ones((1, 4), jnp.int32), jnp.ones((1, 3)), max_new_tokens=2)


def test_score_continuations_equals_log_softmax_of_the_full_forward(lm):
    model, params = lm
    context, context_mask = g.left_pad([[3, 4, 5], [6]])
    continuation = np.array([[7, 8, 9], [10, 11, 0]])
    continuation_mask = np.array([[1, 1, 1], [1, 1, 0]])
    total, count, per_token = g.score_continuations(model, params, context, continuation, context_mask=context_mask,
                                                    continuation_mask=continuation_mask)
    np.testing.assert_array_equal(count, [3, 2])
    for row, (ctx, cont) in enumerate([([3, 4, 5], [7, 8, 9]), ([6], [10, 11])]):
        sequence = jnp.array([ctx + cont])
        log_probs = jax.nn.log_softmax(forward(model, params, sequence, jnp.ones_like(sequence))[0], axis=-1)
        expected = [float(log_probs[len(ctx) - 1 + i, token]) for i, token in enumerate(cont)]
        np.testing.assert_allclose(per_token[row, :len(cont)], expected, atol=1e-5)
        np.testing.assert_allclose(total[row], sum(expected), atol=1e-4)
    assert float(per_token[1, 2]) == 0.0


def test_choose_picks_the_most_likely_choice(lm, greedy):
    model, params = lm
    context, context_mask = g.left_pad([PROMPTS[0], PROMPTS[1]])
    likely = np.asarray(greedy["tokens"])[:2, :2]  # each prompt's own greedy continuation
    choices = np.stack([np.stack([(likely[b] + 17) % VOCAB, likely[b], (likely[b] + 29) % VOCAB]) for b in range(2)])
    result = g.choose(model, params, context, choices, context_mask=context_mask)
    np.testing.assert_array_equal(result["choice"], [1, 1])
    np.testing.assert_array_equal(result["choice_normalised"], [1, 1])
    assert result["sum_logprob"].shape == (2, 3)
    single, _, _ = g.score_continuations(model, params, context[:1], choices[0, :1], context_mask=context_mask[:1])
    np.testing.assert_allclose(result["sum_logprob"][0, 0], single[0], atol=1e-5)
    # Normalised scores divide by the token counts (or the given normaliser, e.g. byte lengths).
    choice_mask = np.ones((2, 3, 2), np.int32)
    choice_mask[:, 1, 1] = 0
    result = g.choose(model, params, context, choices, context_mask=context_mask, choice_mask=choice_mask)
    np.testing.assert_array_equal(result["num_tokens"], [[2, 1, 2]] * 2)
    np.testing.assert_array_equal(result["choice_normalised"],
                                  np.argmax(np.asarray(result["sum_logprob"]) / [2, 1, 2], axis=-1))
    normaliser = np.array([[1.0, 100.0, 1.0]] * 2)
    result = g.choose(model, params, context, choices, context_mask=context_mask, choice_mask=choice_mask,
                      normaliser=normaliser)
    np.testing.assert_array_equal(result["choice_normalised"],
                                  np.argmax(np.asarray(result["sum_logprob"]) / normaliser, axis=-1))
