"""Optax optimisers and learning-rate schedules built from ``config.optimizer``.

Keys of ``config.optimizer``:
  name            adamw | adam | adam_l2 | sgd | lamb  (adam_l2 = PyTorch's Adam(weight_decay=...):
                  L2 added to the gradient of every parameter before the Adam moments)
  lr              peak learning rate
  schedule        constant | warmup_cosine | warmup_linear | warmup_rsqrt | exponential
                  (exponential: lr * 0.5 ** (step / halflife_steps), PyTorch's ExponentialLR stepped
                  every iteration with gamma 0.5 ** (1 / halflife), as the VQA counting recipe)
  warmup_steps    linear warm-up from 0 to ``lr``
  end_lr          final learning rate of the cosine / linear decay (default 0)
  weight_decay    decoupled weight decay (adamw, lamb); applied to kernels only (ndim > 1) and
                  never to names in ``weight_decay_exclude`` (default: position embeddings, class token)
  b1, b2, eps     Adam moments (defaults 0.9, 0.999, 1e-8); momentum for sgd (b1)
  grad_clip_norm  global-norm clipping (0 or None disables)
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import optax

DEFAULT_WEIGHT_DECAY_EXCLUDE = ("pos_embedding", "cls")


def learning_rate_schedule(opt_cfg: Mapping[str, Any], num_train_steps: int) -> optax.Schedule:
    """Peak ``lr`` with the named warm-up/decay shape over ``num_train_steps``."""
    lr = float(opt_cfg["lr"])
    name = opt_cfg.get("schedule", "constant")
    warmup = int(opt_cfg.get("warmup_steps", 0))
    end_lr = float(opt_cfg.get("end_lr", 0.0))
    if name == "constant":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]) if warmup else optax.constant_schedule(lr)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(num_train_steps, warmup + 1), end_lr)
    if name == "warmup_linear":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup),
             optax.linear_schedule(lr, end_lr, max(num_train_steps - warmup, 1))], [warmup])
    if name == "exponential":
        halflife = float(opt_cfg.get("halflife_steps", 0))
        if halflife <= 0:
            raise ValueError("config.optimizer.halflife_steps must be > 0 for schedule='exponential'")
        return optax.exponential_decay(lr, transition_steps=1, decay_rate=0.5 ** (1.0 / halflife))
    if name == "warmup_rsqrt":
        return lambda step: lr * jax.numpy.minimum((step + 1) / max(warmup, 1), jax.numpy.sqrt(max(warmup, 1) / (step + 1)))
    raise ValueError(f"config.optimizer.schedule={name!r}: expected constant, warmup_cosine, warmup_linear, warmup_rsqrt or exponential")


def weight_decay_mask(params, exclude=DEFAULT_WEIGHT_DECAY_EXCLUDE):
    """True for leaves that get weight decay: matrices/kernels, except the excluded names."""
    def decays(path, leaf):
        names = {str(getattr(key, "key", getattr(key, "name", key))) for key in path}
        return leaf.ndim > 1 and not names & set(exclude)
    return jax.tree_util.tree_map_with_path(decays, params)


def build_optimizer(opt_cfg: Mapping[str, Any], num_train_steps: int) -> optax.GradientTransformation:
    """The optax chain for ``config.optimizer`` (clipping first, then the optimiser)."""
    schedule = learning_rate_schedule(opt_cfg, num_train_steps)
    name = opt_cfg.get("name", "adamw")
    b1, b2, eps = float(opt_cfg.get("b1", 0.9)), float(opt_cfg.get("b2", 0.999)), float(opt_cfg.get("eps", 1e-8))
    weight_decay = float(opt_cfg.get("weight_decay", 0.0))
    exclude = tuple(opt_cfg.get("weight_decay_exclude", DEFAULT_WEIGHT_DECAY_EXCLUDE))
    mask = lambda params: weight_decay_mask(params, exclude)  # noqa: E731
    if name == "adamw":
        tx = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
    elif name == "adam":
        tx = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
    elif name == "adam_l2":
        tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
                         optax.scale_by_learning_rate(schedule))
    elif name == "sgd":
        tx = optax.sgd(schedule, momentum=b1 or None, nesterov=bool(opt_cfg.get("nesterov", False)))
    elif name == "lamb":
        tx = optax.lamb(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
    else:
        raise ValueError(f"config.optimizer.name={name!r}: expected adamw, adam, adam_l2, sgd or lamb")
    clip = opt_cfg.get("grad_clip_norm")
    return optax.chain(optax.clip_by_global_norm(float(clip)), tx) if clip else tx
