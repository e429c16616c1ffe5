"""A progressive-GAN-style generator and discriminator (Karras et al., "Progressive Growing of GANs for
Improved Quality, Stability, and Variation", ICLR 2018), laid out as GAN Dissection's generator.

After the official code, tkarras/progressive_growing_of_gans ``networks.py`` (``G_paper``, ``D_paper``,
``get_weight``, ``pixel_norm``, ``minibatch_stddev_layer``) and the PyTorch port GAN Dissection dissects,
CSAILVision/gandissect ``netdissect/proggan.py`` (``ProgressiveGenerator``: layer names, the order of pixel
norm inside each block, ``WScaleLayer``).

Equalised learning rate (sec. 4.1): every weight is stored as ``w_hat ~ N(0, 1)`` and used as
``w = w_hat * c`` at run time, ``c = gain / sqrt(fan_in)`` (He's constant; ``fan_in`` = k * k * in for a
k x k conv, ``in`` for a dense layer; gain sqrt(2), except the first dense layer, sqrt(2) / 4 "to match the
original Theano implementation", and the toRGB / final score layers, 1). Biases start at 0.

Pixelwise feature normalisation (sec. 4.2): ``b = a / sqrt(mean_j a_j^2 + 1e-8)`` over the channels of each
pixel; it also puts the latent on the sphere of radius sqrt(latent_dim) ("normalize_latents").

Generator (resolution R = 2^r, ``nf(s) = min(fmap_base // 2^s, fmap_max)``), as ``netdissect/proggan.py``:

  layer1        PN(z) -> dense latent -> 4*4*nf(1) (gain sqrt(2)/4) -> [B, 4, 4, nf(1)] + b -> lrelu
  layer2        PN -> conv3x3 nf(1) + b -> lrelu                                            4 x 4
  layer{2k+1}   PN -> nearest-neighbour x2 -> conv3x3 nf(k+1) + b -> lrelu                  4 * 2^k
  layer{2k+2}   PN -> conv3x3 nf(k+1) + b -> lrelu                                          4 * 2^k
  output        PN -> conv1x1 to C channels (gain 1) + b        (linear: images in about [-1, 1])

so there are 2 (r - 1) layers, two per resolution (4x4: layer1-2, 8x8: layer3-4, ..., 64x64: layer9-10).
This is ``G_paper`` with ``PN(act(conv(x)))`` regrouped as ``act(conv(PN(x)))``: the same function, but a
layer's output (what ``capture`` returns and an ``Intervention`` edits) is its activation *before* the next
layer's pixel norm, exactly the tensor GAN Dissection's hooks see on ``layer{n}`` of ``ProgressiveGenerator``;
an ablated or inserted unit is therefore renormalised with the rest of its pixel by the next layer, as in
the paper's experiments. The up-sampling conv is ``G_paper``'s fused ``upscale2d_conv2d``, computed unfused
(nearest-neighbour x2, then a 3x3 conv: the same map). The generator is built and trained at its final
resolution: there is no progressive growing (no lod fade-in between toRGB outputs), which small 64 px
models do not need.

Discriminator (``D_paper``, fused-scale form):

  fromrgb       conv1x1 nf(r-1) + b -> lrelu
  {2^k}x{2^k}   conv3x3 nf(k-1) + b -> lrelu; conv3x3 nf(k-2) -> avg-pool 2x2 + b -> lrelu   (k = r .. 3)
  4x4           minibatch stddev (+1 channel); conv3x3 nf(1) + b -> lrelu;
                dense nf(0) + b -> lrelu; dense 1 (gain 1) + b   -> score [B]

Minibatch standard deviation (sec. 3): the batch is split into groups of ``G = min(group_size, B)``
examples taken with stride B / G (example n is in group n mod B/G, the official reshape ``[G, -1, ...]``);
per group, the standard deviation over its G members of every feature at every pixel (sqrt(var + 1e-8)),
averaged over features and pixels, is appended to each member as a constant feature map. As in the official
code, a batch that is larger than ``group_size`` must be divisible by it (a clear error here; a reshape
error there).

Parameters are annotated with logical axes as ``jaxmodels.diffusion.unet`` does: conv kernels
``(conv_height, conv_width, conv_in, embed)`` and dense kernels ``(conv_in, embed)`` (the output width
"embed" is FSDP-sharded by ``jaxmodels.training.partitioning``), the RGB / score outputs ``conv_out`` and
biases ``channels`` (replicated).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from jaxmodels.layers import CONV_AXES, DENSE_AXES, VECTOR_AXES

Array = jax.Array

LRELU_SLOPE = 0.2  # networks.py leaky_relu(alpha=0.2)
PIXEL_NORM_EPS = 1e-8  # pixelnorm_epsilon
MBSTD_EPS = 1e-8  # minibatch_stddev_layer: sqrt(var + 1e-8)
HE_GAIN = math.sqrt(2.0)

# The image / score outputs are narrow (3 channels, 1 score): their kernels are replicated whole.
CONV_OUT_AXES = ("conv_height", "conv_width", "conv_in", "conv_out")
DENSE_OUT_AXES = ("conv_in", "conv_out")


# ----------------------------------------------------------------------------- building blocks

def num_features(stage: int, fmap_base: int, fmap_max: int) -> int:
    """``nf(stage) = min(fmap_base / 2^stage, fmap_max)`` (``G_paper``/``D_paper`` with fmap_decay 1), at least 1."""
    return max(1, min(int(fmap_base / 2.0 ** stage), fmap_max))


def he_scale(fan_in: int, gain: float = HE_GAIN) -> float:
    """The equalised-learning-rate constant ``c = gain / sqrt(fan_in)`` of ``get_weight(use_wscale=True)``."""
    return gain / math.sqrt(fan_in)


def pixel_norm(x: Array, epsilon: float = PIXEL_NORM_EPS) -> Array:
    """``x / sqrt(mean(x^2 over channels) + eps)`` per pixel (Karras et al. eq. in sec. 4.2); channels last."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + epsilon)


def leaky_relu(x: Array, slope: float = LRELU_SLOPE) -> Array:
    return jnp.maximum(x, slope * x)


def upscale2d(x: Array) -> Array:
    """Nearest-neighbour x2 of ``[B, H, W, C]`` (``networks.py upscale2d``: reshape + tile)."""
    batch, height, width, channels = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (batch, height, 2, width, 2, channels))
    return x.reshape(batch, 2 * height, 2 * width, channels)


def downscale2d(x: Array) -> Array:
    """2x2 box-filter average pooling of ``[B, H, W, C]`` (``networks.py downscale2d``)."""
    batch, height, width, channels = x.shape
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


def minibatch_stddev(x: Array, group_size: int = 4, epsilon: float = MBSTD_EPS) -> Array:
    """Appends the minibatch-stddev feature map: ``[B, H, W, C] -> [B, H, W, C + 1]`` (``minibatch_stddev_layer``).

    Groups of ``G = min(group_size, B)`` examples n, n + M, n + 2M, ... (M = B / G); each member gets
    ``mean_{h,w,c} sqrt(Var_group[x_{h,w,c}] + eps)`` (the biased variance over the group).
    """
    batch, height, width, channels = x.shape
    group = min(group_size, batch)
    if batch % group:
        raise ValueError(f"minibatch_stddev: batch size {batch} is not divisible by the group size {group} "
                         f"(config.discriminator.mbstd_group_size={group_size}); use a batch that is a multiple "
                         "of it, as the official minibatch_stddev_layer requires")
    y = x.astype(jnp.float32).reshape(group, batch // group, height, width, channels)  # [G, M, H, W, C]
    y = y - jnp.mean(y, axis=0, keepdims=True)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + epsilon)  # [M, H, W, C]
    y = jnp.mean(y, axis=(1, 2, 3))  # [M]
    y = jnp.tile(y, group)  # [B]: example n gets group n mod M
    y = jnp.broadcast_to(y[:, None, None, None].astype(x.dtype), (batch, height, width, 1))
    return jnp.concatenate([x, y], axis=-1)


class EqualizedDense(nn.Module):
    """Dense layer with the equalised learning rate: ``x @ (w_hat * gain / sqrt(in)) [+ b]``, ``w_hat ~ N(0, 1)``."""

    features: int
    gain: float = HE_GAIN
    use_bias: bool = True
    axes: tuple[str, str] = DENSE_AXES

    @nn.compact
    def __call__(self, x: Array) -> Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", nn.with_logical_partitioning(nn.initializers.normal(1.0), self.axes),
                            (fan_in, self.features), jnp.float32)
        y = jnp.dot(x, kernel * he_scale(fan_in, self.gain))
        if self.use_bias:
            y = y + self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, VECTOR_AXES),
                               (self.features,), jnp.float32)
        return y


class EqualizedConv(nn.Module):
    """k x k 'SAME' convolution (NHWC, HWIO) with the equalised learning rate: kernel ``w_hat * gain / sqrt(k k in)``.

    ``downscale=True`` average-pools the convolution's output 2x2 before the bias (``conv2d_downscale2d``).
    """

    features: int
    kernel_size: int = 3
    gain: float = HE_GAIN
    use_bias: bool = True
    downscale: bool = False
    axes: tuple[str, ...] = CONV_AXES

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        fan_in = k * k * x.shape[-1]
        kernel = self.param("kernel", nn.with_logical_partitioning(nn.initializers.normal(1.0), self.axes),
                            (k, k, x.shape[-1], self.features), jnp.float32)
        y = jax.lax.conv_general_dilated(x, kernel * he_scale(fan_in, self.gain), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.downscale:
            y = downscale2d(y)
        if self.use_bias:
            y = y + self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, VECTOR_AXES),
                               (self.features,), jnp.float32)
        return y


# ----------------------------------------------------------------------------- interventions

def _broadcast_units(a: Array, r: Array, what: str, layer: str) -> Array:
    """``a`` of shape [], [C], [B, C] or [B or 1, h, w, C] -> broadcastable against ``r`` [B, h, w, C]."""
    a = jnp.asarray(a, r.dtype)
    channels = r.shape[-1]
    if a.ndim and a.shape[-1] not in (1, channels):
        raise ValueError(f"Intervention at {layer!r}: {what} has {a.shape[-1]} units but the layer has {channels}")
    if a.ndim in (0, 1):
        return a
    if a.ndim == 2:
        return a[:, None, None, :]  # [B, 1, 1, C]
    if a.ndim == 4:
        return a
    raise ValueError(f"Intervention at {layer!r}: {what} must have shape [], [C], [B, C] or [B, h, w, C], "
                     f"got {a.shape}")


@flax.struct.dataclass
class Intervention:
    """Edits the units of one generator layer: ``r' = (1 - alpha) * r + alpha * value`` (Bau et al. sec. 3.2).

    ``alpha``: [C] (or [B, C], or [B, h, w, C] for a spatial edit) in [0, 1]; ``value``: a scalar k, [C], [B, C]
    or [B, h, w, C]. alpha = 0 leaves the layer unchanged; alpha = 1 with value 0 ablates the units, with a
    constant k inserts them. Differentiable in alpha and value (ACE's relaxation optimises alpha). A pytree
    (``layer`` is static), so it can be passed through ``jax.jit`` and ``jax.grad``.
    """

    layer: str = flax.struct.field(pytree_node=False)
    alpha: Any
    value: Any = 0.0

    def apply(self, r: Array) -> Array:
        alpha = _broadcast_units(self.alpha, r, "alpha", self.layer)
        value = _broadcast_units(self.value, r, "value", self.layer)
        return (1.0 - alpha) * r + alpha * value

    @classmethod
    def ablate(cls, layer: str, units: Sequence[int], num_units: int) -> "Intervention":
        """alpha = 1 on ``units`` (0 elsewhere), value 0: sets those units' maps to zero."""
        return cls(layer=layer, alpha=jnp.zeros((num_units,), jnp.float32).at[jnp.asarray(units)].set(1.0), value=0.0)


def LAYER_NAMES(resolution: int) -> list[str]:  # noqa: N802  (the name the shared interface fixes)
    """``["layer1", ..., "layer{2 (log2 R - 1)}", "output"]``: the generator's named outputs for resolution R."""
    _check_resolution(resolution, "resolution")
    return [f"layer{i}" for i in range(1, 2 * (int(math.log2(resolution)) - 1) + 1)] + ["output"]


def _check_resolution(resolution: int, field: str) -> None:
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"{field}={resolution}: the progressive GAN needs a power of two >= 8")


# ----------------------------------------------------------------------------- generator

class Generator(nn.Module):
    """The progressive-GAN generator z [B, latent_dim] -> images [B, R, R, num_channels] (see module docstring).

    ``__call__(z, *, intervention=None, capture=())`` returns the images, or ``(images, {name: map})`` when
    ``capture`` names layers (``LAYER_NAMES(resolution)``); a map is the layer's output [B, h, w, units]
    after any ``intervention`` (one ``Intervention`` or a sequence of them, at distinct layers) is applied.

    Attributes:
      resolution: output side R, a power of two >= 8.
      latent_dim: size of z (512 in the paper); z ~ N(0, I) is pixel-normalised onto the sphere first.
      fmap_base, fmap_max: widths ``nf(s) = min(fmap_base / 2^s, fmap_max)``; resolution 4 * 2^k uses nf(k + 1)
        (the paper: 8192 and 512).
      num_channels: image channels (3).
      normalize_latents: pixel-normalise z (``G_paper`` default True).
    """

    resolution: int = 64
    latent_dim: int = 512
    fmap_base: int = 8192
    fmap_max: int = 512
    num_channels: int = 3
    normalize_latents: bool = True

    def __post_init__(self):
        super().__post_init__()
        _check_resolution(self.resolution, "Generator resolution")
        if self.latent_dim < 1 or self.fmap_base < 1 or self.fmap_max < 1 or self.num_channels < 1:
            raise ValueError(f"Generator: latent_dim={self.latent_dim}, fmap_base={self.fmap_base}, "
                             f"fmap_max={self.fmap_max}, num_channels={self.num_channels} must be positive")

    @property
    def layer_names(self) -> list[str]:
        return LAYER_NAMES(self.resolution)

    def nf(self, stage: int) -> int:
        return num_features(stage, self.fmap_base, self.fmap_max)

    def feature_shapes(self) -> dict[str, tuple[int, int, int]]:
        """``{layer name: (h, w, units)}`` of every named output (per example)."""
        shapes = {}
        for index, name in enumerate(self.layer_names[:-1]):
            size = 4 * 2 ** (index // 2)
            shapes[name] = (size, size, self.nf(index // 2 + 1))
        shapes["output"] = (self.resolution, self.resolution, self.num_channels)
        return shapes

    def _interventions(self, intervention) -> dict[str, Intervention]:
        if intervention is None:
            return {}
        items = [intervention] if isinstance(intervention, Intervention) else list(intervention)
        by_layer = {}
        for item in items:
            if not isinstance(item, Intervention):
                raise TypeError(f"intervention must be an Intervention or a sequence of them, got {type(item)}")
            self._check_name(item.layer, "intervention.layer")
            if item.layer in by_layer:
                raise ValueError(f"Two interventions at layer {item.layer!r}; combine them into one")
            by_layer[item.layer] = item
        return by_layer

    def _check_name(self, name: str, what: str) -> None:
        if name not in self.layer_names:
            raise ValueError(f"{what}={name!r} is not a layer of this {self.resolution}px generator; "
                             f"layers: {self.layer_names}")

    @nn.compact
    def __call__(self, z: Array, *, intervention: Intervention | Sequence[Intervention] | None = None,
                 capture: Sequence[str] | str = ()):
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"Generator expects z of shape [batch, {self.latent_dim}], got {z.shape}")
        capture = (capture,) if isinstance(capture, str) else tuple(capture)
        for name in capture:
            self._check_name(name, "capture")
        edits = self._interventions(intervention)
        features: dict[str, Array] = {}

        def emit(name: str, r: Array) -> Array:
            if name in edits:
                r = edits[name].apply(r)
            if name in capture:
                features[name] = r
            return r

        names = self.layer_names
        x = z.astype(jnp.float32)
        if self.normalize_latents:
            x = pixel_norm(x)
        x = _DenseLayer(self.nf(1), name=names[0])(x)  # [B, 4, 4, nf(1)]
        x = emit(names[0], x)
        for index, name in enumerate(names[1:-1], start=1):
            upsample = index % 2 == 0
            x = _ConvLayer(self.nf(index // 2 + 1), upsample=upsample, name=name)(x)  # [B, h, w, nf]
            x = emit(name, x)
        x = pixel_norm(x)
        x = EqualizedConv(self.num_channels, kernel_size=1, gain=1.0, axes=CONV_OUT_AXES, name="output")(x)
        x = emit("output", x)  # [B, R, R, num_channels]
        return (x, features) if capture else x


class _DenseLayer(nn.Module):
    """``layer1``: dense latent -> 4 x 4 x features (gain sqrt(2)/4, per-channel bias), leaky ReLU."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = EqualizedDense(16 * self.features, gain=HE_GAIN / 4, use_bias=False, name="dense")(x)
        x = x.reshape(x.shape[0], 4, 4, self.features)  # [B, 4, 4, C]
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, VECTOR_AXES),
                          (self.features,), jnp.float32)
        return leaky_relu(x + bias)


class _ConvLayer(nn.Module):
    """``NormConvBlock`` / ``NormUpscaleConvBlock``: pixel norm, [nearest x2], conv3x3 + bias, leaky ReLU."""

    features: int
    upsample: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = pixel_norm(x)
        if self.upsample:
            x = upscale2d(x)
        return leaky_relu(EqualizedConv(self.features, kernel_size=3, name="conv")(x))


# ----------------------------------------------------------------------------- discriminator

class Discriminator(nn.Module):
    """The progressive-GAN critic: images [B, R, R, C] -> scores [B] (see module docstring).

    Attributes:
      resolution, num_channels: the images it judges.
      fmap_base, fmap_max: widths ``nf(s)`` as for the generator (the paper uses the same for both).
      mbstd_group_size: minibatch-stddev group size (4; 0 or 1 disables the layer).
    """

    resolution: int = 64
    fmap_base: int = 8192
    fmap_max: int = 512
    num_channels: int = 3
    mbstd_group_size: int = 4

    def __post_init__(self):
        super().__post_init__()
        _check_resolution(self.resolution, "Discriminator resolution")

    def nf(self, stage: int) -> int:
        return num_features(stage, self.fmap_base, self.fmap_max)

    @nn.compact
    def __call__(self, images: Array) -> Array:
        if images.ndim != 4 or images.shape[1:] != (self.resolution, self.resolution, self.num_channels):
            raise ValueError(f"Discriminator expects images [batch, {self.resolution}, {self.resolution}, "
                             f"{self.num_channels}], got {images.shape}")
        log2 = int(math.log2(self.resolution))
        x = leaky_relu(EqualizedConv(self.nf(log2 - 1), kernel_size=1, name="fromrgb")(images.astype(jnp.float32)))
        for res in range(log2, 2, -1):
            size = 2 ** res
            x = _DiscriminatorBlock(self.nf(res - 1), self.nf(res - 2), name=f"{size}x{size}")(x)  # [B, size/2, ...]
        if self.mbstd_group_size > 1:
            x = minibatch_stddev(x, self.mbstd_group_size)  # [B, 4, 4, nf(1) + 1]
        x = leaky_relu(EqualizedConv(self.nf(1), kernel_size=3, name="4x4_conv")(x))
        x = x.reshape(x.shape[0], -1)  # [B, 16 nf(1)]
        x = leaky_relu(EqualizedDense(self.nf(0), name="4x4_dense0")(x))
        x = EqualizedDense(1, gain=1.0, axes=DENSE_OUT_AXES, name="4x4_dense1")(x)  # [B, 1]
        return x[:, 0]


class _DiscriminatorBlock(nn.Module):
    """``D_paper`` block at one resolution: conv3x3 + lrelu, then conv3x3 -> avg-pool + bias -> lrelu."""

    features0: int
    features1: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = leaky_relu(EqualizedConv(self.features0, name="conv0")(x))
        return leaky_relu(EqualizedConv(self.features1, downscale=True, name="conv1_down")(x))


# ----------------------------------------------------------------------------- configs

_GENERATOR_FIELDS = tuple(f.name for f in dataclasses.fields(Generator) if f.name not in ("parent", "name"))
_DISCRIMINATOR_FIELDS = tuple(f.name for f in dataclasses.fields(Discriminator) if f.name not in ("parent", "name"))


def _as_dict(cfg) -> dict:
    if cfg is None:
        return {}
    return cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)


def generator_from_config(model_cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> Generator:
    """``Generator`` from ``config.model`` (``name="progan_generator"``); absent keys take the paper's values.

    Keys: ``resolution``, ``latent_dim``, ``fmap_base``, ``fmap_max``, ``num_channels``, ``normalize_latents``
    and ``name`` (ignored).
    """
    cfg = _as_dict(model_cfg)
    unknown = sorted(set(cfg) - set(_GENERATOR_FIELDS) - {"name"})
    if unknown:
        raise ValueError(f"generator_from_config: unknown config.model key(s) {unknown}; known keys are "
                         f"{sorted(_GENERATOR_FIELDS)}")
    return Generator(**{key: cfg[key] for key in _GENERATOR_FIELDS if cfg.get(key) is not None})


def discriminator_from_config(disc_cfg: ml_collections.ConfigDict | Mapping[str, Any] | None,
                              model_cfg: ml_collections.ConfigDict | Mapping[str, Any] | None = None) -> Discriminator:
    """``Discriminator`` from ``config.discriminator``; ``resolution`` and ``num_channels`` default to the
    generator's (``config.model``), and must equal them when both are given.

    Keys: ``resolution``, ``num_channels``, ``fmap_base``, ``fmap_max``, ``mbstd_group_size``.
    """
    cfg, generator = _as_dict(disc_cfg), _as_dict(model_cfg)
    unknown = sorted(set(cfg) - set(_DISCRIMINATOR_FIELDS) - {"name"})
    if unknown:
        raise ValueError(f"discriminator_from_config: unknown config.discriminator key(s) {unknown}; known keys "
                         f"are {sorted(_DISCRIMINATOR_FIELDS)}")
    for key in ("resolution", "num_channels"):
        if cfg.get(key) is not None and generator.get(key) is not None and cfg[key] != generator[key]:
            raise ValueError(f"config.discriminator.{key}={cfg[key]} differs from config.model.{key}="
                             f"{generator[key]}: the critic must judge the generator's images")
        if cfg.get(key) is None and generator.get(key) is not None:
            cfg[key] = generator[key]
    return Discriminator(**{key: cfg[key] for key in _DISCRIMINATOR_FIELDS if cfg.get(key) is not None})


def sample_latents(rng: Array, num: int, latent_dim: int) -> Array:
    """z ~ N(0, I) [num, latent_dim] (``G_wgan_acgan``'s ``tf.random_normal``; the generator normalises it)."""
    return jax.random.normal(rng, (num, latent_dim), jnp.float32)
