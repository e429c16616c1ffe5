"""VQA v2 training with the counting component on the generic loop (Zhang et al., ICLR 2018, sec. 5.2).

Data (``config.data``): VQA v2 question/annotation JSON files for a train and a val split and the
bottom-up-attention features (``features``: the HDF5 layout of the official ``preprocess-features.py``,
or ``features_tsv``: the original TSV files, converted once to HDF5 in ``cache_dir``). With
``synthetic=True`` the run first writes a synthetic counting dataset in exactly that layout
(:mod:`jaxmodels.projects.vqa_counting.synthetic_scenes`) into ``<workdir>/data`` and trains on it through the
same readers. The answer vocabulary (the ``max_answers`` most frequent training answers) and the
question vocabulary are built from the training split, or read from ``vocab_path``, and saved to
``<workdir>/vocab.json``.

Training follows the official ``train.py``: soft cross-entropy over the answer counts / 10, Adam
1.5e-3 decayed by half every 50k iterations (``schedule="exponential"``), batch 256, only questions
with an in-vocabulary answer. Evaluation reports the loss and the batch VQA accuracy
(min(0.3 x agreeing, 1)), and, from a full prediction pass, the official VQA accuracy (normalised
answers, 10-choose-9 average) overall and per answer type (yes/no, number, other); the predictions
are written as ``<workdir>/eval/predictions_<step>.json`` in the submission format.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxmodels import models
from jaxmodels.projects.vqa_counting import data as vqa_data
from jaxmodels.training.loop import Experiment, TrainResult, train
from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
from jaxmodels.training.files import atomic_write_json
from jaxmodels.training.step import gradient_step
from jaxmodels.projects.vqa_counting.metrics import accuracy_by_type, batch_accuracy, vqa_accuracy
from jaxmodels.vqa.model import soft_cross_entropy


def prepare_data(config, workdir: str) -> dict[str, Any]:
    """Paths -> train/val :class:`VQADataset` (writing synthetic data / converting TSV first if asked)."""
    data_cfg = config.data
    paths = {"features": data_cfg.get("features", ""), "train_questions": data_cfg.get("train_questions", ""),
             "train_annotations": data_cfg.get("train_annotations", ""),
             "val_questions": data_cfg.get("val_questions", ""), "val_annotations": data_cfg.get("val_annotations", ""),
             "vocab": data_cfg.get("vocab_path", "")}
    if data_cfg.get("synthetic", False):
        from jaxmodels.projects.vqa_counting.synthetic_scenes import write_synthetic_vqa

        syn = data_cfg.synthetic_scenes
        paths.update(write_synthetic_vqa(
            os.path.join(workdir, "data"), num_train_images=int(syn.num_train_images),
            num_val_images=int(syn.num_val_images), seed=int(syn.seed), num_boxes=int(data_cfg.num_boxes),
            num_classes=int(syn.num_classes), feature_dim=int(syn.feature_dim), max_objects=int(syn.max_objects),
            max_duplicates=int(syn.max_duplicates), max_answers=int(data_cfg.max_answers)))
        paths["vocab"] = ""  # rebuilt from the training split below, as for real data
    elif data_cfg.get("features_tsv", ""):
        cache = data_cfg.get("cache_dir", "") or os.path.join(workdir, "data")
        os.makedirs(cache, exist_ok=True)
        h5_path = os.path.join(cache, "features.h5")
        if not os.path.exists(h5_path):
            tsv = [p for p in str(data_cfg.features_tsv).split(",") if p]
            vqa_data.convert_tsv_to_hdf5(tsv, h5_path, num_boxes=int(data_cfg.num_boxes),
                                         feature_dim=int(data_cfg.feature_dim))
        paths["features"] = h5_path
    for key in ("features", "train_questions", "train_annotations", "val_questions", "val_annotations"):
        if not paths[key]:
            raise ValueError(f"config.data.{key}: required (a path), unless config.data.synthetic=True")

    if paths["vocab"]:
        vocab = vqa_data.load_vocab(paths["vocab"])
    else:
        vocab = vqa_data.build_vocab(paths["train_questions"], paths["train_annotations"],
                                     max_answers=int(data_cfg.max_answers))
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        vqa_data.save_vocab(vocab, os.path.join(workdir, "vocab.json"))
    features = vqa_data.FeatureStore(paths["features"], int(data_cfg.num_boxes))
    max_len = int(data_cfg.max_question_length) or None
    train_set = vqa_data.VQADataset(paths["train_questions"], paths["train_annotations"], features, vocab,
                                    answerable_only=True, max_question_length=max_len)
    val_set = vqa_data.VQADataset(paths["val_questions"], paths["val_annotations"], features, vocab,
                                  max_question_length=train_set.max_question_length)
    return {"train": train_set, "val": val_set, "vocab": vocab, "paths": paths}


def make_init_state(model, tx, example: dict):
    def init_state(rng):
        params_rng, state_rng = jax.random.split(rng)
        variables = model.init({"params": params_rng}, example["features"], example["boxes"], example["question"],
                               example["question_length"], train=False)
        return {"step": jnp.zeros((), jnp.int32), "params": variables["params"],
                "batch_stats": variables.get("batch_stats", {}), "opt_state": tx.init(variables["params"]),
                "rng": state_rng}
    return init_state


def train_step(state, batch, *, model, tx, schedule):
    def loss_fn(params, batch, collections, rng):
        logits, updates = model.apply(
            {"params": params, "batch_stats": collections}, batch["features"], batch["boxes"],
            batch["question"], batch["question_length"], train=True, rngs={"dropout": rng},
            mutable=["batch_stats"])
        return jnp.mean(soft_cross_entropy(logits, batch["answers"])), (logits, updates["batch_stats"])

    result = gradient_step(loss_fn, state["params"], state["opt_state"], tx, batch, has_aux=True,
                           collections=state["batch_stats"], rng=jax.random.fold_in(state["rng"], state["step"]),
                           schedule=schedule, step=state["step"])
    metrics = {**result.metrics, "accuracy": jnp.mean(batch_accuracy(result.aux, batch["answers"]))}
    return {**state, "step": state["step"] + 1, "params": result.params, "batch_stats": result.collections,
            "opt_state": result.opt_state}, metrics


def predict_logits(state, batch, *, model):
    return model.apply({"params": state["params"], "batch_stats": state["batch_stats"]}, batch["features"],
                       batch["boxes"], batch["question"], batch["question_length"], train=False)


def eval_step(state, batch, *, model):
    logits = predict_logits(state, batch, model=model)
    mask = batch["mask"]
    return {"loss": jnp.sum(soft_cross_entropy(logits, batch["answers"]) * mask),
            "batch_accuracy": jnp.sum(batch_accuracy(logits, batch["answers"]) * mask), "count": jnp.sum(mask)}


def official_evaluation(state, dataset: vqa_data.VQADataset, predict, batch_size: int) -> tuple[dict, list]:
    """The official VQA accuracy per answer type from a full prediction pass; and the predictions."""
    records, predictions = [], []
    for batch in dataset.eval_iterator(batch_size):
        host = {k: v for k, v in batch.items() if k in ("features", "boxes", "question", "question_length")}
        answer_index = np.asarray(jax.device_get(jnp.argmax(predict(state, host), axis=-1)))
        for row, q in enumerate(batch["question_index"]):
            if q < 0:
                continue
            answer = dataset.index_to_answer[int(answer_index[row])]
            predictions.append({"question_id": int(dataset.question_ids[q]), "answer": answer})
            if dataset.has_answers:
                records.append({"answer_type": dataset.answer_types[q] or "all",
                                "accuracy": vqa_accuracy(answer, dataset.human_answers[q])})
    return accuracy_by_type(records), predictions


def configure(config, data: dict) -> ml_collections.ConfigDict:
    """An unlocked copy of ``config`` with the vocabulary sizes and the step count filled in."""
    config = ml_collections.ConfigDict(config.to_dict())
    train_set = data["train"]
    for field, value in (("vocab_size", train_set.num_tokens), ("num_answers", train_set.num_answers)):
        given = config.model.get(field)
        if given not in (None, value):
            raise ValueError(f"config.model.{field}={given} but the data's vocabulary gives {value}")
        config.model[field] = value
    if not int(config.get("num_train_steps") or 0):
        config.num_train_steps = int(math.ceil(float(config.num_epochs) * len(train_set) / int(config.batch_size)))
    return config


def make_experiment(config, data: dict, workdir: str) -> Experiment:
    model = models.build_model(config.model)
    tx = build_optimizer(config.optimizer, config.num_train_steps)
    schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
    train_set, val_set = data["train"], data["val"]
    example = {k: v[:1] for k, v in train_set.batch(np.arange(1)).items()}
    eval_batch = int(config.get("eval_batch_size", config.batch_size))
    predict = jax.jit(functools.partial(predict_logits, model=model))

    def eval_metrics_fn(step, state):
        metrics, predictions = official_evaluation(state, val_set, predict, eval_batch)
        if jax.process_index() == 0:
            atomic_write_json(os.path.join(workdir, "eval", f"predictions_{step}.json"), predictions)
        return {f"vqa_accuracy/{k.replace('/', '_')}": v for k, v in metrics.items()}

    return Experiment(
        init_state=make_init_state(model, tx, example),
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule),
        train_iter=train_set.train_iterator(int(config.batch_size), seed=int(config.seed)),
        eval_step=functools.partial(eval_step, model=model),
        eval_iter_fn=lambda: val_set.eval_iterator(eval_batch),
        eval_metrics_fn=eval_metrics_fn,
    )


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Trains the VQA counting model described by ``config`` in ``workdir`` (resuming if possible)."""
    workdir = os.path.abspath(workdir)
    data = prepare_data(config, workdir)
    config = configure(config, data)
    return train(make_experiment(config, data, workdir), config, workdir)
