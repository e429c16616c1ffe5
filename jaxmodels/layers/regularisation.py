"""Stochastic depth / DropPath (Huang et al. 2016; the per-sample form used by DeiT, Touvron et al. 2021)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


class DropPath(nn.Module):
    """Drops a residual branch for whole examples with probability ``rate``.

    In training each example's branch output is either zeroed or scaled by ``1 / (1 - rate)``, so
    its expectation is unchanged; at evaluation (``deterministic=True``) it is the identity. Uses
    the ``'dropout'`` rng stream.
    """

    rate: float

    @nn.compact
    def __call__(self, inputs: Array, *, deterministic: bool) -> Array:
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {self.rate}")
        if deterministic or self.rate == 0.0:
            return inputs
        keep_prob = 1.0 - self.rate
        per_example = (inputs.shape[0],) + (1,) * (inputs.ndim - 1)
        keep = jax.random.bernoulli(self.make_rng("dropout"), keep_prob, per_example)  # [batch, 1, ...]
        return jnp.where(keep, inputs / jnp.asarray(keep_prob, inputs.dtype), jnp.zeros_like(inputs))
