"""Supervised image classification on the generic loop (ViT now; any image classifier later).

Loss: softmax cross-entropy against one-hot targets with label smoothing (Szegedy et al. 2016,
eq. in sec. 7: q' = (1 - eps) * onehot + eps / K) and optional mixup (Zhang et al. 2018,
x~ = lam x_i + (1 - lam) x_j, y~ = lam y_i + (1 - lam) y_j, lam ~ Beta(alpha, alpha)), as in the
DeiT recipe. The train state is a plain dict (big_vision style):
``{"step", "params", "opt_state", "rng"}``.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxmodels import models
from jaxmodels.data import build_preprocess, build_source, make_eval_iterator, make_train_iterator
from jaxmodels.training.loop import Experiment, TrainResult, train
from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
from jaxmodels.training.step import gradient_step


def smooth_labels(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
    """One-hot targets with label smoothing: (1 - eps) * onehot + eps / K."""
    onehot = jax.nn.one_hot(labels, num_classes)  # [batch, classes]
    return onehot * (1.0 - smoothing) + smoothing / num_classes


def mixup(rng: jax.Array, images: jax.Array, targets: jax.Array, alpha: float):
    """Mixes each example with the batch reversed, with one lam ~ Beta(alpha, alpha) per batch."""
    lam = jax.random.beta(rng, alpha, alpha)
    mixed_images = lam * images + (1.0 - lam) * images[::-1]
    mixed_targets = lam * targets + (1.0 - lam) * targets[::-1]
    return mixed_images, mixed_targets


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy, computed in float32. [batch]"""
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def example_images(model_cfg, data_cfg) -> jax.ShapeDtypeStruct:
    size = data_cfg.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return jnp.zeros((1, height, width, int(data_cfg.get("channels", 3))), jnp.float32)


def make_init_state(model, tx, images: jax.Array):
    def init_state(rng: jax.Array) -> dict[str, Any]:
        params_rng, state_rng = jax.random.split(rng)
        params = model.init({"params": params_rng}, images, train=False)["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params),
                "rng": state_rng}
    return init_state


def train_step(state, batch, *, model, tx, schedule, num_classes: int, label_smoothing: float,
               mixup_alpha: float):
    """One optimiser step; the per-step rng is ``fold_in(state.rng, step)`` (same on every mesh)."""
    step_rng = jax.random.fold_in(state["rng"], state["step"])
    dropout_rng, mixup_rng = jax.random.split(step_rng)
    images, labels = batch["image"], batch["label"]
    targets = smooth_labels(labels, num_classes, label_smoothing)  # [batch, classes]
    if mixup_alpha > 0:
        images, targets = mixup(mixup_rng, images, targets, mixup_alpha)

    def loss_fn(params, batch, rng):
        logits = model.apply({"params": params}, batch["image"], train=True, rngs={"dropout": rng})
        return jnp.mean(cross_entropy(logits, batch["target"])), logits

    result = gradient_step(loss_fn, state["params"], state["opt_state"], tx, {"image": images, "target": targets},
                           has_aux=True, rng=dropout_rng, schedule=schedule, step=state["step"])
    metrics = {**result.metrics, "accuracy": jnp.mean(jnp.argmax(result.aux, -1) == labels)}
    new_state = {**state, "step": state["step"] + 1, "params": result.params, "opt_state": result.opt_state}
    return new_state, metrics


def eval_step(state, batch, *, model, num_classes: int):
    """Sums of loss and correct predictions over the real (mask == 1) examples of a padded batch."""
    logits = model.apply({"params": state["params"]}, batch["image"], train=False)
    mask = batch["mask"].astype(jnp.float32)  # [batch]
    loss = cross_entropy(logits, jax.nn.one_hot(batch["label"], num_classes))
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {"loss": jnp.sum(loss * mask), "accuracy": jnp.sum(correct * mask), "count": jnp.sum(mask)}


def make_experiment(config) -> Experiment:
    """Model, optimiser, data iterators and step functions for ``config``."""
    model = models.build_model(config.model)
    num_classes = int(config.model.num_classes)
    tx = build_optimizer(config.optimizer, config.num_train_steps)
    schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
    train_source = build_source(config.data, config.data.train_split)
    eval_source = build_source(config.data, config.data.eval_split)
    train_iter = make_train_iterator(train_source, preprocess=build_preprocess(config.data, train=True),
                                     global_batch_size=config.batch_size, seed=config.seed)
    eval_preprocess = build_preprocess(config.data, train=False)
    eval_batch_size = int(config.get("eval_batch_size", config.batch_size))
    return Experiment(
        init_state=make_init_state(model, tx, example_images(config.model, config.data)),
        train_step=functools.partial(
            train_step, model=model, tx=tx, schedule=schedule, num_classes=num_classes,
            label_smoothing=float(config.loss.label_smoothing), mixup_alpha=float(config.loss.mixup_alpha)),
        train_iter=train_iter,
        eval_step=functools.partial(eval_step, model=model, num_classes=num_classes),
        eval_iter_fn=lambda: make_eval_iterator(eval_source, preprocess=eval_preprocess,
                                                global_batch_size=eval_batch_size),
    )


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Trains and evaluates an image classifier described by ``config`` in ``workdir``."""
    return train(make_experiment(config), config, workdir)
