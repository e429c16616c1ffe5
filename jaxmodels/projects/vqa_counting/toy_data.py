"""The counting toy task (Zhang et al., ICLR 2018, sec. 5.1; official ``toy/data.py``).

Each example has ``max_objects`` (10) axis-aligned squares of side l with top-left corners uniform
in [0, 1 - l]^2. The count c ~ U{0, ..., 10} and the first c squares are the true objects. Every
square's attention weight is its largest IoU with a true square (0 when c = 0), mixed with noise:
a <- (1 - q) a + q U(0, 1). Small l: squares rarely overlap; l -> 1: they all coincide, so the
weights alone cannot tell how many true objects there are. As in the official code l is floored at
1e-6 (zero-area boxes would make the IoU 0/0).

Written in jax.numpy so a training step draws its batch on the device from a key (no host round
trip); the same key gives the same batch. ``side`` and ``noise`` may be traced scalars, so one
compiled step serves a whole sweep (``jax.vmap`` over the sweep values).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.vqa.counting import pairwise_iou

MIN_SIDE = 1e-6


def toy_batch(key: jax.Array, batch_size: int, side, noise, max_objects: int = 10) -> dict[str, jax.Array]:
    """One batch: ``attention`` [b, n] in [0, 1], ``boxes`` [b, n, 4] (x1, y1, x2, y2), ``count`` [b] int32.

    ``n = max_objects`` proposals; ``count`` is the number of true boxes (the first ``count``).
    """
    k_pos, k_count, k_noise = jax.random.split(key, 3)
    side = jnp.maximum(jnp.asarray(side, jnp.float32), MIN_SIDE)
    corners = jax.random.uniform(k_pos, (batch_size, max_objects, 2)) * (1.0 - side)
    boxes = jnp.concatenate([corners, corners + side], axis=-1)
    count = jax.random.randint(k_count, (batch_size,), 0, max_objects + 1)
    iou = pairwise_iou(boxes, boxes, eps=0.0)  # [b, proposal, candidate true box]
    is_true = jnp.arange(max_objects)[None, :] < count[:, None]  # [b, n]
    weight = jnp.max(jnp.where(is_true[:, None, :], iou, 0.0), axis=-1)  # 0 when count == 0
    noise = jnp.asarray(noise, jnp.float32)
    weight = (1.0 - noise) * weight + noise * jax.random.uniform(k_noise, weight.shape)
    return {"attention": weight, "boxes": boxes, "count": count.astype(jnp.int32)}
