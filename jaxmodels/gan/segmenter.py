"""A small fully convolutional scene segmenter: the s_c(x) of GAN Dissection on procedural scenes.

GAN Dissection (Bau et al., ICLR 2019, sec. 2.1) labels generated images with a semantic segmenter
(Unified Perceptual Parsing, Xiao et al. 2018) and measures IoU_{u,c} = E|m_u ^ s_c| / E|m_u v s_c|
between thresholded unit maps m_u and the segmenter's class masks s_c. Generated images carry no
labels, so the generative fact sheet (sec. 4, "small reproduction") trains a small FCN on the rendered
(image, label map) pairs of :mod:`jaxmodels.projects.gan_dissection.scenes`; this is that network.

Architecture: a U-Net (Ronneberger et al. 2015) without normalisation layers:

  x [B, S, S, 3] in [-1, 1]
  encoder  level i = 0..L-1: (i > 0: 2x2 max-pool) -> ConvBlock(widths[i]);  skips e_0..e_{L-2}
           bottleneck e_{L-1} [B, S / 2^{L-1}, S / 2^{L-1}, widths[-1]]
  decoder  level i = L-2..0: nearest x2 upsample -> concat [h, e_i] -> ConvBlock(widths[i])
  head     1x1 conv -> logits [B, S, S, num_classes]
  ConvBlock(w) = relu(conv3x3_w(relu(conv3x3_w(.))))

``features(images)`` is the global average pool of the bottleneck e_{L-1}, [B, widths[-1]]: the
feature space the reproduction uses in place of Inception's pool features for (per-unit) FID
(Bau et al. sec. 4.3 rank artifact units by the FID of their top-activating images).

Kernels are He-normal (fan-in, for ReLU), biases zero. Conv kernels carry the logical axes
``(conv_height, conv_width, conv_in, embed)`` and biases ``(embed,)``, as the diffusion U-Net's.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxmodels.layers import conv, dtype_from_name

Array = jax.Array

DEFAULT_WIDTHS = (16, 32, 64, 128)


def _conv(features: int, kernel: int, name: str, dtype) -> nn.Conv:
    """A 'SAME' conv with He-normal kernel (fan-in, for the ReLU that follows) and zero bias."""
    return conv(features, kernel, kernel_init=nn.initializers.he_normal(), dtype=dtype, name=name)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with ReLU: [B, H, W, C] -> [B, H, W, features]."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = nn.relu(_conv(self.features, 3, "conv1", self.dtype)(x))
        return nn.relu(_conv(self.features, 3, "conv2", self.dtype)(x))


class Segmenter(nn.Module):
    """U-Net segmenter: images [B, S, S, 3] in [-1, 1] -> per-pixel class logits [B, S, S, num_classes].

    S must be divisible by 2^(len(widths) - 1). ``train`` is accepted for the loop's calling
    convention; the network has no dropout or batch statistics, so it changes nothing.
    """

    num_classes: int
    widths: Sequence[int] = DEFAULT_WIDTHS
    dtype: Any = jnp.float32

    def setup(self):
        if len(self.widths) < 2:
            raise ValueError(f"Segmenter needs at least 2 widths (one downsampling), got {tuple(self.widths)}")
        self.encoder = [ConvBlock(w, self.dtype, name=f"down_{i}") for i, w in enumerate(self.widths)]
        self.decoder = [ConvBlock(self.widths[i], self.dtype, name=f"up_{i}") for i in range(len(self.widths) - 1)]
        self.head = _conv(self.num_classes, 1, "head", self.dtype)

    def _check(self, images: Array) -> Array:
        chex.assert_rank(images, 4)
        size, factor = images.shape[1], 2 ** (len(self.widths) - 1)
        if images.shape[-1] != 3 or images.shape[1] != images.shape[2] or size % factor:
            raise ValueError(f"Segmenter expects square RGB images [B, S, S, 3] with S divisible by {factor} "
                             f"(widths={tuple(self.widths)}), got shape {images.shape}")
        return jnp.asarray(images, self.dtype)

    def _encode(self, images: Array) -> list[Array]:
        """Encoder outputs of every level, finest first; the last one is the bottleneck."""
        x = self._check(images)
        outputs = []
        for i, block in enumerate(self.encoder):
            if i:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))  # [B, H/2, W/2, C]
            x = block(x)
            outputs.append(x)
        return outputs

    def __call__(self, images: Array, train: bool = False) -> Array:
        del train
        *skips, x = self._encode(images)
        for i in reversed(range(len(skips))):
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest x2: [B, 2h, 2w, C]
            x = self.decoder[i](jnp.concatenate([x, skips[i]], axis=-1))
        return self.head(x).astype(jnp.float32)  # [B, S, S, num_classes]

    def features(self, images: Array) -> Array:
        """Globally average-pooled bottleneck features, float32 [B, widths[-1]]."""
        bottleneck = self._encode(images)[-1]  # [B, S / 2^(L-1), S / 2^(L-1), widths[-1]]
        return jnp.mean(bottleneck, axis=(1, 2)).astype(jnp.float32)


_CONFIG_KEYS = {"name", "num_classes", "widths", "dtype"}


def segmenter_from_config(model_cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> Segmenter:
    """Builds a ``Segmenter`` from ``model.num_classes`` (required), ``model.widths`` and ``model.dtype``."""
    cfg = model_cfg.to_dict() if isinstance(model_cfg, ml_collections.ConfigDict) else dict(model_cfg)
    unknown = sorted(set(cfg) - _CONFIG_KEYS)
    if unknown:
        raise ValueError(f"segmenter_from_config: unknown model config key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}")
    if not cfg.get("num_classes"):
        raise ValueError("segmenter_from_config: config.model.num_classes must be set (len(scenes.CLASSES) for scenes)")
    return Segmenter(num_classes=int(cfg["num_classes"]), widths=tuple(cfg.get("widths", DEFAULT_WIDTHS)),
                     dtype=dtype_from_name(cfg.get("dtype") or "float32", "segmenter_from_config: model.dtype"))
