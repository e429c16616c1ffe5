"""Transformer feed-forward block (Vaswani et al. 2017, eq. 2; Dosovitskiy et al. 2021, eq. 3)."""
from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.layers.dense import dense

Array = jax.Array
Dtype = Any

def exact_gelu(x: Array) -> Array:
    """GELU(x) = x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)) (Hendrycks & Gimpel 2016), the erf form.

    Written with ``lax.erf`` rather than ``nn.gelu(approximate=False)`` (which goes through
    ``erfc``): the same function, but it compiles to a shorter kernel on XLA:CPU (about 4% of a
    ViT-Ti train step, ``benchmarks/vit_step.py``).
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def _activation_axes(ndim: int, feature_axis: str) -> tuple[str, ...]:
    """Logical names of a ``[batch, ..., features]`` activation: the middle axes are sequence-like."""
    return ("act_batch",) + ("act_seq",) * (ndim - 2) + (feature_axis,)


class MlpBlock(nn.Module):
    """Dense -> activation -> Dropout -> Dense -> Dropout, as ``MlpBlock`` in google-research/vision_transformer.

    Submodules are named ``Dense_0`` and ``Dense_1`` like the official ViT checkpoints.

    Attributes:
      mlp_dim: hidden width.
      dropout_rate: dropout after the output projection, and after the activation when
        ``activation_dropout`` (ViT) -- BERT's intermediate layer has none there.
      activation_dropout: whether dropout also follows the activation.
      out_dim: output width; defaults to the input width.
      activation: elementwise non-linearity; exact (erf) GELU by default. The official ViT code
        uses ``nn.gelu``'s tanh approximation; pass ``nn.gelu`` to reproduce it bit for bit.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      kernel_init: xavier uniform, as in the ViT code.
      bias_init: normal(1e-6), as in the ViT code.
    """

    mlp_dim: int
    dropout_rate: float = 0.0
    activation_dropout: bool = True
    out_dim: int | None = None
    activation: Callable[[Array], Array] = exact_gelu
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()
    bias_init: nn.initializers.Initializer = nn.initializers.normal(stddev=1e-6)

    @nn.compact
    def __call__(self, inputs: Array, *, deterministic: bool = True) -> Array:
        """Maps ``[batch, ..., embed]`` to ``[batch, ..., out_dim]``."""
        out_dim = inputs.shape[-1] if self.out_dim is None else self.out_dim
        x = self._dense(self.mlp_dim, ("embed", "mlp"), "Dense_0")(inputs)  # [batch, ..., mlp]
        x = nn.with_logical_constraint(self.activation(x), _activation_axes(x.ndim, "act_mlp"))
        if self.activation_dropout:
            x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
        x = self._dense(out_dim, ("mlp", "embed"), "Dense_1")(x)  # [batch, ..., out_dim]
        x = nn.with_logical_constraint(x, _activation_axes(x.ndim, "act_embed"))
        return nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)

    def _dense(self, features: int, kernel_axes: tuple[str, str], name: str) -> nn.Dense:
        return dense(features, kernel_axes, kernel_init=self.kernel_init, bias_init=self.bias_init,
                     dtype=self.dtype, param_dtype=self.param_dtype, name=name)
