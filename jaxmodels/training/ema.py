"""Exponential moving average (EMA) of a parameter tree, the weights that DDPM and ProGAN evaluate.

theta_ema <- d * theta_ema + (1 - d) * theta after every optimiser step (Polyak & Juditsky 1992;
DDPM, Ho et al. 2020, sec. 4, d = 0.9999; ProGAN's G smoothing, Karras et al. 2018, d = 0.999).
With warm-up the decay is min(d, (1 + n) / (10 + n)) at step n, TensorFlow's
``ExponentialMovingAverage(num_updates=n)``: the average forgets its random initialisation quickly
in short runs, and is the plain EMA once (1 + n) / (10 + n) exceeds d.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def ema_decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """The decay used after optimiser step ``step`` (0-based): ``decay``, or min(decay, (1 + n) / (10 + n))."""
    decay = jnp.float32(decay)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


def ema_update(ema_params: PyTree, params: PyTree, decay: jax.Array | float) -> PyTree:
    """decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
