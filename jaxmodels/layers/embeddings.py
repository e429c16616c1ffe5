"""Patch and position embeddings (Dosovitskiy et al. 2021, eq. 1)."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any


def to_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``16 -> (16, 16)``; ``(h, w)`` is returned as a tuple of ints."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


class PatchEmbedding(nn.Module):
    """Splits an image into non-overlapping P x P patches and projects each linearly: x_p^i E (eq. 1).

    Implemented as a convolution with kernel and stride P. Parameters ``kernel [P, P, channels,
    hidden]`` and ``bias [hidden]`` sit directly under the module, like the official ViT
    ``embedding`` conv.

    Attributes:
      patch_size: P, an int or ``(P_h, P_w)``.
      hidden_size: D, the width of each patch token.
      use_bias: CLIP's patch conv has no bias.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      kernel_init: lecun normal, flax's ``nn.Conv`` default used by the ViT code.
    """

    patch_size: int | Sequence[int]
    hidden_size: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, images: Array) -> Array:
        """Maps ``[batch, height, width, channels]`` to ``[batch, (height/P_h) * (width/P_w), hidden]``."""
        patch = to_pair(self.patch_size)
        height, width, channels = images.shape[-3:]
        if height % patch[0] or width % patch[1]:
            raise ValueError(f"PatchEmbedding: image size {height}x{width} is not divisible by the patch size "
                             f"{patch[0]}x{patch[1]}")
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(self.kernel_init, ("patch_height", "patch_width", "channels", "embed")),
            (*patch, channels, self.hidden_size), self.param_dtype)
        x = jax.lax.conv_general_dilated(
            images.astype(self.dtype), kernel.astype(self.dtype), window_strides=patch, padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"))  # [batch, grid_h, grid_w, hidden]
        if self.use_bias:
            bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                              (self.hidden_size,), self.param_dtype)
            x = x + bias.astype(self.dtype)
        batch, grid_h, grid_w, hidden = x.shape
        x = x.reshape(batch, grid_h * grid_w, hidden)  # [batch, patches, hidden]
        return nn.with_logical_constraint(x, ("act_batch", "act_seq", "act_embed"))


class LearnedPositionEmbedding(nn.Module):
    """Adds a learned E_pos to the token sequence (eq. 1).

    The parameter is ``pos_embedding [1, max_length, hidden]``, initialised normal(0.02) as in
    BERT and the ViT code. With ``max_length=None`` (ViT) its length is the input's; otherwise
    the first ``tokens`` rows are added (BERT/GPT with shorter inputs).
    """

    max_length: int | None = None
    param_dtype: Dtype = jnp.float32
    embedding_init: nn.initializers.Initializer = nn.initializers.normal(stddev=0.02)

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Maps ``[batch, tokens, hidden]`` to the same shape."""
        _, tokens, hidden = inputs.shape
        length = tokens if self.max_length is None else self.max_length
        if tokens > length:
            raise ValueError(f"LearnedPositionEmbedding: {tokens} tokens exceed max_length={length}")
        embedding = self.param("pos_embedding",
                               nn.with_logical_partitioning(self.embedding_init, (None, "seq", "embed")),
                               (1, length, hidden), self.param_dtype)
        return inputs + embedding[:, :tokens].astype(inputs.dtype)
