"""Dense and convolution layers whose parameters carry logical axis names, and those names.

Every family builds its projections through ``dense`` and its ``nn.Conv`` layers through ``conv`` so the
kernel/bias annotation (``nn.with_logical_partitioning``) is written once. The bias always takes the
kernel's output axis (``axes[-1]``), so one name per layer decides how both shard.

The axis names are those of ``jaxmodels.training.partitioning.LOGICAL_AXIS_RULES``: ``embed``
(FSDP-sharded), ``mlp`` and ``heads`` (tensor-parallel), ``classes`` and ``kv`` (replicated); the
convolution names below (``conv_height``, ``conv_width``, ``conv_in``, ``conv_out``, ``channels``) have no
rule, so they are replicated and only a layer's output width (``embed``) is sharded.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any

# [height, width, in, out] of an HWIO conv kernel: the output width is sharded over fsdp.
CONV_AXES = ("conv_height", "conv_width", "conv_in", "embed")
# [in, out] of a 1x1 convolution / per-pixel dense kernel in the convolutional families.
DENSE_AXES = ("conv_in", "embed")
# [channels] of a per-channel vector (norm scales, biases): replicated.
VECTOR_AXES = ("channels",)


def dense(features: int, axes: tuple[str, str], *,
          kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal(),
          bias_init: nn.initializers.Initializer = nn.initializers.zeros, use_bias: bool = True,
          dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, name: str | None = None) -> nn.Dense:
    """``nn.Dense`` with kernel ``[in, out]`` partitioned as ``axes`` and bias ``[out]`` as ``axes[1:]``.

    The parameters (``kernel``, ``bias``), their shapes and initialisers are exactly ``nn.Dense``'s, so
    switching a layer to this helper changes no checkpoint. ``dtype=None`` computes in the promoted dtype
    of the inputs and parameters, as ``nn.Dense`` does.
    """
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                    kernel_init=nn.with_logical_partitioning(kernel_init, tuple(axes)),
                    bias_init=nn.with_logical_partitioning(bias_init, tuple(axes[1:])), name=name)


def conv(features: int, kernel_size: int | Sequence[int], *, axes: tuple[str, ...] = CONV_AXES,
         kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal(),
         bias_init: nn.initializers.Initializer = nn.initializers.zeros, strides: int | Sequence[int] = 1,
         padding: Any = "SAME", use_bias: bool = True, dtype: Dtype | None = None,
         param_dtype: Dtype = jnp.float32, name: str | None = None) -> nn.Conv:
    """``nn.Conv`` (NHWC, HWIO kernel) with the kernel partitioned as ``axes`` and the bias as ``axes[-1:]``.

    ``kernel_size`` is an int for a square kernel or one size per spatial axis. Parameters are exactly
    ``nn.Conv``'s (``kernel [*kernel_size, in, features]``, ``bias [features]``).
    """
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    if len(axes) != len(kernel_size) + 2:
        raise ValueError(f"conv: {len(kernel_size)}-D kernel {tuple(kernel_size)} needs {len(kernel_size) + 2} "
                         f"axis names, got {tuple(axes)}")
    return nn.Conv(features, tuple(kernel_size), strides=strides, padding=padding, use_bias=use_bias, dtype=dtype,
                   param_dtype=param_dtype, kernel_init=nn.with_logical_partitioning(kernel_init, tuple(axes)),
                   bias_init=nn.with_logical_partitioning(bias_init, tuple(axes[-1:])), name=name)
