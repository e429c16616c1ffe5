"""Training the scene segmenter (the s_c(x) of GAN Dissection) on the generic loop.

GAN Dissection (Bau et al., ICLR 2019, sec. 2.1) segments generated images with a pretrained semantic
segmenter; here it is :class:`jaxmodels.gan.segmenter.Segmenter`, trained on rendered scenes
(``data.source = "scenes"``, :mod:`jaxmodels.projects.gan_dissection.scenes`) whose label maps are exact.

Train step: per-pixel softmax cross-entropy, mean over pixels and images; the optimiser from
``config.optimizer``. Train state (a plain dict): step, params, opt_state, rng.

Evaluation on the held-out scenes (``data.num_test`` of them, disjoint from the training scenes):
  loss, pixel_accuracy  per image, averaged by the loop's ``eval_step`` pass;
  iou/<class>, mean_iou  from a confusion matrix summed over the whole held-out set (``eval_metrics_fn``):
                        IoU_c = sum |pred = c and true = c| / sum |pred = c or true = c| (the dataset-level
                        IoU of the paper's eq. 1 and of the segmentation benchmarks), the mean over the
                        classes that occur (non-zero union);
and ``<workdir>/results.json`` (rewritten after each evaluation) holds the step, pixel accuracy,
mean IoU, per-class IoU and per-class pixel frequency of the held-out set.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels import models
from jaxmodels.data.generative import to_model_range  # uint8 -> [-1, 1], the generator's range
from jaxmodels.data import make_eval_iterator, make_train_iterator
from jaxmodels.projects.gan_dissection.scenes import build_source
from jaxmodels.projects.gan_dissection.scenes import CLASSES
from jaxmodels.projects.gan_dissection.experiment import rbg_key  # fast-compiling init on XLA:CPU
from jaxmodels.training import mesh as mesh_lib
from jaxmodels.training.files import atomic_write_json
from jaxmodels.training.loop import Experiment, TrainResult, train
from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
from jaxmodels.training.step import gradient_step


def check_config(config) -> None:
    """Clear errors for configs that cannot train."""
    if config.data.get("source") != "scenes":
        raise ValueError(f"config.data.source={config.data.get('source')!r}: the segmenter trains on 'scenes'")
    if int(config.model.num_classes) != len(CLASSES):
        raise ValueError(f"config.model.num_classes={config.model.num_classes} but the scenes have "
                         f"{len(CLASSES)} classes {CLASSES}")


def build_preprocess(data_cfg, train: bool):
    """``preprocess(record, rng) -> {"image": float32 [S, S, 3] in [-1, 1], "segmentation": int32 [S, S]}``.

    With ``data.random_flip`` and ``train``, image and label map are mirrored together with probability 1/2.
    """
    flip = bool(data_cfg.get("random_flip", False)) and train

    def preprocess(record: dict, rng: np.random.Generator | None = None) -> dict:
        image, segmentation = np.asarray(record["image"]), np.asarray(record["segmentation"])
        if flip and rng is not None and rng.random() < 0.5:
            image, segmentation = image[:, ::-1], segmentation[:, ::-1]
        return {"image": np.ascontiguousarray(to_model_range(image)),
                "segmentation": np.ascontiguousarray(segmentation, np.int32)}

    return preprocess


def pixel_cross_entropy(logits: jax.Array, segmentation: jax.Array) -> jax.Array:
    """Per-image mean softmax cross-entropy over pixels: logits [B, H, W, C], labels [B, H, W] -> [B].

    -sum_c onehot_c log softmax_c, written with a one-hot product rather than a gather: XLA:CPU turns the
    gradient of a gather into a slow scatter-add.
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    onehot = jax.nn.one_hot(segmentation, logits.shape[-1], dtype=jnp.float32)  # [B, H, W, C]
    return -jnp.mean(jnp.sum(onehot * log_probs, axis=-1), axis=(1, 2))


def pixel_accuracy(logits: jax.Array, segmentation: jax.Array) -> jax.Array:
    """Per-image fraction of pixels whose argmax class is the label: [B]."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == segmentation, axis=(1, 2))


def confusion_matrix(predicted: jax.Array, target: jax.Array, num_classes: int,
                     weights: jax.Array | None = None) -> jax.Array:
    """``M[t, p]`` = (weighted) number of pixels of true class t predicted as p; int-valued float32 [C, C].

    ``predicted`` and ``target`` are class ids of the same shape; ``weights`` broadcasts against them
    (e.g. the eval batch's mask [B, 1, 1] to drop padding images).
    """
    weights = jnp.ones(target.shape, jnp.float32) if weights is None else jnp.broadcast_to(weights, target.shape)
    true = jax.nn.one_hot(target.reshape(-1), num_classes, dtype=jnp.float32) * weights.reshape(-1, 1)  # [P, C]
    pred = jax.nn.one_hot(predicted.reshape(-1), num_classes, dtype=jnp.float32)  # [P, C]
    return true.T @ pred  # [C, C]


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU = M[c, c] / (sum_p M[c, p] + sum_t M[t, c] - M[c, c]); NaN where the union is empty."""
    confusion = np.asarray(confusion, np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(axis=1) + confusion.sum(axis=0) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def segmentation_metrics(confusion: np.ndarray, class_names=CLASSES) -> dict[str, Any]:
    """Pixel accuracy, mean IoU (over classes with a non-empty union), per-class IoU and frequency."""
    confusion = np.asarray(confusion, np.float64)
    iou = iou_from_confusion(confusion)
    total = confusion.sum()
    return {"pixel_accuracy": float(np.trace(confusion) / total),
            "mean_iou": float(np.nanmean(iou)),
            "iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, iou)},
            "pixel_frequency": {name: float(v) for name, v in zip(class_names, confusion.sum(axis=1) / total)}}


def make_init_state(model, tx, image_size: int):
    def init_state(rng: jax.Array) -> dict[str, Any]:
        params_rng, state_rng = jax.random.split(rng)
        images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
        params = model.init({"params": rbg_key(params_rng)}, images, train=False)["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params), "rng": state_rng}
    return init_state


def train_step(state, batch, *, model, tx, lr_schedule):
    segmentation = batch["segmentation"].astype(jnp.int32)

    def loss_fn(params, batch):
        logits = model.apply({"params": params}, batch["image"], train=True)
        return jnp.mean(pixel_cross_entropy(logits, batch["segmentation"])), logits

    inputs = {"image": batch["image"].astype(jnp.float32), "segmentation": segmentation}
    result = gradient_step(loss_fn, state["params"], state["opt_state"], tx, inputs, has_aux=True,
                           schedule=lr_schedule, step=state["step"])
    metrics = {**result.metrics, "pixel_accuracy": jnp.mean(pixel_accuracy(result.aux, segmentation))}
    return {**state, "step": state["step"] + 1, "params": result.params, "opt_state": result.opt_state}, metrics


def eval_step(state, batch, *, model):
    """Sums over the real examples of the per-image loss and pixel accuracy, plus their count."""
    logits = model.apply({"params": state["params"]}, batch["image"].astype(jnp.float32), train=False)
    segmentation = batch["segmentation"].astype(jnp.int32)
    mask = batch["mask"].astype(jnp.float32)
    return {"loss": jnp.sum(pixel_cross_entropy(logits, segmentation) * mask),
            "pixel_accuracy": jnp.sum(pixel_accuracy(logits, segmentation) * mask), "count": jnp.sum(mask)}


def batch_confusion(state, batch, *, model, num_classes: int) -> jax.Array:
    logits = model.apply({"params": state["params"]}, batch["image"].astype(jnp.float32), train=False)
    mask = batch["mask"].astype(jnp.float32)[:, None, None]  # [B, 1, 1]
    return confusion_matrix(jnp.argmax(logits, axis=-1), batch["segmentation"].astype(jnp.int32), num_classes, mask)


def dataset_confusion(confusion_fn, state, batches) -> np.ndarray:
    """Confusion matrix summed over all eval batches (each placed on the state's mesh like the loop's)."""
    mesh = jax.tree.leaves(state["params"])[0].sharding.mesh
    sharding = mesh_lib.batch_sharding(mesh)
    total = None
    for batch in batches:
        counts = confusion_fn(state, mesh_lib.host_local_to_global(batch, sharding))
        total = counts if total is None else total + counts
    return np.asarray(jax.device_get(total), np.float64)


def make_experiment(config, workdir: str | None = None) -> Experiment:
    """Model, optimiser, scene iterators, step functions and the IoU evaluation for ``config``."""
    check_config(config)
    model = models.build_model(config.model)
    tx = build_optimizer(config.optimizer, config.num_train_steps)
    lr_schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
    train_source = build_source(config.data, "train")
    eval_source = build_source(config.data, "test")
    train_iter = make_train_iterator(train_source, preprocess=build_preprocess(config.data, train=True),
                                     global_batch_size=config.batch_size, seed=config.seed)
    eval_preprocess = build_preprocess(config.data, train=False)
    eval_batch_size = int(config.get("eval_batch_size", config.batch_size))

    def eval_iter_fn():
        return make_eval_iterator(eval_source, preprocess=eval_preprocess, global_batch_size=eval_batch_size)

    confusion_fn = jax.jit(functools.partial(batch_confusion, model=model, num_classes=len(CLASSES)))
    latest: dict[str, Any] = {}

    def eval_metrics_fn(step, state):
        latest.update(segmentation_metrics(dataset_confusion(confusion_fn, state, eval_iter_fn())))
        return {"mean_iou": latest["mean_iou"],
                **{f"iou/{name}": v for name, v in latest["iou"].items() if v is not None}}

    def on_eval(step, state, metrics):
        if workdir is not None and jax.process_index() == 0:
            atomic_write_json(os.path.join(workdir, "results.json"),
                              {"step": int(step), "num_test_scenes": len(eval_source), "classes": list(CLASSES),
                               "loss": metrics["loss"], **latest}, indent=2)
        return None

    return Experiment(
        init_state=make_init_state(model, tx, int(config.data.image_size)),
        train_step=functools.partial(train_step, model=model, tx=tx, lr_schedule=lr_schedule),
        train_iter=train_iter,
        eval_step=functools.partial(eval_step, model=model),
        eval_iter_fn=eval_iter_fn,
        eval_metrics_fn=eval_metrics_fn,
        on_eval=on_eval,
    )


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Trains the scene segmenter described by ``config`` in ``workdir`` (resuming if possible)."""
    workdir = os.path.abspath(workdir)
    return train(make_experiment(config, workdir), config, workdir)
