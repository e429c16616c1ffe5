"""The DDPM U-Net (Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020).

After the official code, hojonathanho/diffusion ``diffusion_tf/models/unet.py`` and ``diffusion_tf/nn.py``
(the same network is yang-song/score_sde ``models/ddpm.py``), with the options of improved DDPM (Nichol &
Dhariwal 2021, openai/improved-diffusion ``improved_diffusion/unet.py``): learned variances, several
attention heads, scale-shift norm, class conditioning (with a null class for classifier-free guidance, Ho &
Salimans 2022). The network predicts eps_theta(x_t, t) of the paper's eq. 12 / Algorithm 1 (and, with
``learn_sigma``, the interpolation v of Nichol & Dhariwal's eq. 15).

Architecture (paper Appendix B; CIFAR-10: ch=128, ch_mult=(1, 2, 2, 2), 2 res blocks, attention at 16x16,
dropout 0.1, 35.7M parameters):

  temb   = Dense_4ch(swish(Dense_4ch(sinusoid(t))))     sinusoid: half = ch/2,
           f_i = exp(-log(10000) i / (half - 1)), [sin(t f), cos(t f)]        (``nn.get_timestep_embedding``)
           (+ Embed(y) with ``num_classes``, as improved-diffusion's ``label_emb``)
  h      = conv3x3(x); hs = [h]
  down   level i: num_res_blocks x { h = ResBlock(h, ch * ch_mult[i]); [h = Attn(h)]; hs += [h] },
         then (except the last level) h = conv3x3 stride 2 (TF 'SAME' padding: pad (0, 1)); hs += [h]
  middle ResBlock, Attn, ResBlock
  up     level i (reversed): (num_res_blocks + 1) x { h = ResBlock(concat[h, hs.pop()]); [h = Attn(h)] },
         then (except level 0) nearest-neighbour x2 and conv3x3
  out    conv3x3(swish(GN(h)))  -> C channels (2C with ``learn_sigma``: [eps, v])

  ResBlock(x) = x' + conv3x3(dropout(swish(GN(conv3x3(swish(GN(x))) + Dense(swish(temb))))))
               with x' = x, or a 1x1 conv ("nin_shortcut") of x when the width changes;
               scale-shift norm instead: GN(h) * (1 + scale) + shift, [scale, shift] = Dense(swish(temb))
  Attn(x)     = x + proj_out(softmax(q k^T / sqrt(d)) v),  q, k, v = 1x1 convs of GN(x) over the H*W positions
  GN          = GroupNorm(32 groups, eps 1e-6) (``tf.contrib.layers.group_norm`` defaults); swish(x) = x sigmoid(x)

Attention runs at the levels whose feature-map height is in ``attn_resolutions`` (the official
``h.shape[1] in attn_resolutions``), so which blocks exist depends on the input size. Initialisation is
the official one: every kernel ``variance_scaling(1, fan_avg, uniform)``, except the last conv of each
residual branch, ``proj_out`` and ``conv_out`` (``init_scale=0``: scale 1e-10), zero biases.

Parameter names follow the official TF scopes (``conv_in``, ``temb_dense0``, ``down_{i}_block_{j}``,
``down_{i}_attn_{j}``, ``down_{i}_downsample``, ``mid_block_1``, ``mid_attn_1``, ``mid_block_2``,
``up_{i}_block_{j}``, ``up_{i}_attn_{j}``, ``up_{i}_upsample``, ``norm_out``, ``conv_out``; inside blocks
``norm1``, ``conv1``, ``temb_proj``, ``norm2``, ``conv2``, ``nin_shortcut``, ``q``, ``k``, ``v``, ``proj_out``).
Conv kernels are HWIO ``[3, 3, in, out]``, 1x1 convs / dense kernels ``[in, out]``; the large output axis
carries the logical name ``embed`` (FSDP-sharded by ``jaxmodels.training.partitioning``), norms, biases
and the input axes are replicated. ``jaxmodels.convert.diffusers_unet`` maps diffusers' ``UNet2DModel``
(e.g. the published ``google/ddpm-cifar10-32``) onto this tree.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxmodels.layers import CONV_AXES, DENSE_AXES, VECTOR_AXES, dot_product_attention, dtype_from_name

Array = jax.Array
Dtype = Any

NUM_GROUPS = 32  # GroupNorm groups, tf.contrib.layers.group_norm's default in the official code
NORM_EPS = 1e-6  # its epsilon


def default_init(scale: float = 1.0) -> nn.initializers.Initializer:
    """The official ``nn.default_init``: variance scaling, fan_avg, uniform; ``scale=0`` means 1e-10."""
    return nn.initializers.variance_scaling(1e-10 if scale == 0 else scale, "fan_avg", "uniform")


def swish(x: Array) -> Array:
    return x * jax.nn.sigmoid(x)


def timestep_embedding(t: Array, dim: int) -> Array:
    """Sinusoidal embedding of the official ``nn.get_timestep_embedding`` (tensor2tensor / fairseq form).

    ``[sin(t f_0), ..., sin(t f_{half-1}), cos(t f_0), ...]`` with ``f_i = exp(-log(10000) i / (half - 1))``,
    ``half = dim // 2``; zero-padded to ``dim`` when it is odd. ``t`` may be fractional. Float32 ``[B, dim]``.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def _conv(x: Array, kernel: Array, stride: int) -> Array:
    padding = ((1, 1), (1, 1)) if stride == 1 else ((0, 1), (0, 1))  # stride 2: TF 'SAME' on even sizes
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _kernel_grad(x: Array, dy: Array, stride: int) -> Array:
    """d loss / d kernel of ``_conv``: for each of the 9 taps (i, j), the shifted input view times ``dy``,
    one ``[C, B*H'*W'] @ [B*H'*W', O]`` matmul each.

    XLA:CPU lowers the kernel gradient of a 3x3 convolution to a convolution with an H x W "kernel",
    about 2x slower than its forward convolution; these matmuls recover most of that (measured on the
    CIFAR-10 U-Net: ~10% faster train steps, 30-45% faster kernel gradients; benchmarks/diffusion_step.py).
    """
    channels, (out_h, out_w, out_c) = x.shape[-1], dy.shape[1:]
    pad = (1, 1) if stride == 1 else (0, 1)
    xt = jnp.pad(x.transpose(3, 0, 1, 2), ((0, 0), (0, 0), pad, pad))  # [C, B, H + pad, W + pad]
    d = dy.reshape(-1, out_c)  # [B*H'*W', O]
    taps = [jnp.dot(xt[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride].reshape(channels, -1), d)
            for i in range(3) for j in range(3)]
    return jnp.stack(taps).reshape(3, 3, channels, out_c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3(x: Array, kernel: Array, stride: int) -> Array:
    """3x3 convolution, NHWC x HWIO, stride 1 ('SAME') or 2 (pad (0, 1)); the kernel gradient by
    ``_kernel_grad``, the input gradient by XLA's transposed convolution."""
    return _conv(x, kernel, stride)


def _conv3x3_fwd(x, kernel, stride):
    return _conv(x, kernel, stride), (x, kernel)


def _conv3x3_bwd(stride, residuals, dy):
    x, kernel = residuals
    dx = jax.vjp(lambda x_: _conv(x_, kernel, stride), x)[1](dy)[0]
    return dx, _kernel_grad(x, dy, stride).astype(kernel.dtype)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


def _param(module: nn.Module, name: str, init, axes, shape):
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


class Conv3x3(nn.Module):
    """3x3 convolution, NHWC / HWIO, with bias. ``stride=2`` pads (0, 1) like TF 'SAME' on even sizes."""

    features: int
    stride: int = 1
    init_scale: float = 1.0
    axes: tuple[str, ...] = CONV_AXES
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = _param(self, "kernel", default_init(self.init_scale), self.axes, (3, 3, x.shape[-1], self.features))
        bias = _param(self, "bias", nn.initializers.zeros, VECTOR_AXES, (self.features,))
        y = conv3x3(x.astype(self.dtype), kernel.astype(self.dtype), self.stride)
        return y + bias.astype(self.dtype)


class Dense(nn.Module):
    """``x W + b`` over the last axis: the official ``nn.dense`` and ``nn.nin`` (a 1x1 conv)."""

    features: int
    init_scale: float = 1.0
    axes: tuple[str, str] = DENSE_AXES
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel, bias = self._params(x.shape[-1])
        return jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)

    def _params(self, in_features: int) -> tuple[Array, Array]:
        kernel = _param(self, "kernel", default_init(self.init_scale), self.axes, (in_features, self.features))
        bias = _param(self, "bias", nn.initializers.zeros, VECTOR_AXES, (self.features,))
        return kernel, bias


class DenseParams(Dense):
    """Creates exactly ``Dense``'s parameters without applying them (to fuse several projections)."""

    @nn.compact
    def __call__(self, in_features: int) -> tuple[Array, Array]:
        return self._params(in_features)


class GroupNorm(nn.Module):
    """GroupNorm (Wu & He 2018) over ``[B, H, W, C]``, statistics in float32, 32 groups, eps 1e-6.

    ``y = (x - mean_g) / sqrt(var_g + eps) * scale + bias`` computed as one fused ``x * a + b`` with per
    (batch, channel) ``a`` and ``b``; mean and variance come from one pass (E[x], E[x^2]).
    ``add`` (``[B, C]``, added to x first) and ``scale_shift`` (``([B, C], [B, C])``: ``y * (1 + scale) + shift``)
    fold the residual block's time conditioning into the same pass; ``activation`` appends swish.
    """

    num_groups: int = NUM_GROUPS
    epsilon: float = NORM_EPS
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, add: Array | None = None, scale_shift: tuple[Array, Array] | None = None,
                 activation: bool = False) -> Array:
        """GN(x + add[:, None, None]) [* (1 + scale) + shift] [then swish]."""
        batch, height, width, channels = x.shape
        groups = self.num_groups
        scale = _param(self, "scale", nn.initializers.ones, VECTOR_AXES, (channels,))
        bias = _param(self, "bias", nn.initializers.zeros, VECTOR_AXES, (channels,))
        x32 = x.astype(jnp.float32)
        if add is not None:
            x32 = x32 + add.astype(jnp.float32)[:, None, None, :]
        # per-channel sums over H, W (contiguous, vectorised along C), then the tiny per-group sums
        count = height * width * (channels // groups)
        mean = jnp.sum(x32, axis=(1, 2)).reshape(batch, groups, -1).sum(-1) / count  # [B, G]
        mean_sq = jnp.sum(jnp.square(x32), axis=(1, 2)).reshape(batch, groups, -1).sum(-1) / count
        inv = jax.lax.rsqrt(jnp.maximum(mean_sq - jnp.square(mean), 0.0) + self.epsilon)
        inv = jnp.repeat(inv, channels // groups, axis=1)  # [B, C]
        mean = jnp.repeat(mean, channels // groups, axis=1)
        a = inv * scale  # [B, C]
        b = bias - mean * a
        if scale_shift is not None:
            s, t = (v.astype(jnp.float32) for v in scale_shift)
            a, b = a * (1 + s), b * (1 + s) + t
        y = x32 * a[:, None, None, :] + b[:, None, None, :]
        if activation:
            y = swish(y)
        return y.astype(self.dtype)


class ResnetBlock(nn.Module):
    """The official ``resnet_block`` (``conv_shortcut=False``: 1x1 ``nin_shortcut`` when the width changes)."""

    out_ch: int
    dropout: float = 0.0
    use_scale_shift_norm: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, temb: Array, *, train: bool) -> Array:
        h = GroupNorm(dtype=self.dtype, name="norm1")(x, activation=True)
        h = Conv3x3(self.out_ch, dtype=self.dtype, name="conv1")(h)
        emb = Dense(self.out_ch * (2 if self.use_scale_shift_norm else 1), dtype=self.dtype,
                    axes=("temb", "embed"), name="temb_proj")(swish(temb))  # [B, out] or [B, 2 out]
        norm2 = GroupNorm(dtype=self.dtype, name="norm2")
        if self.use_scale_shift_norm:  # improved-diffusion: out_norm(h) * (1 + scale) + shift
            h = norm2(h, scale_shift=(emb[:, :self.out_ch], emb[:, self.out_ch:]), activation=True)
        else:
            h = norm2(h, add=emb, activation=True)
        h = nn.Dropout(rate=self.dropout)(h, deterministic=not train)
        h = Conv3x3(self.out_ch, init_scale=0.0, dtype=self.dtype, name="conv2")(h)
        if x.shape[-1] != self.out_ch:
            x = Dense(self.out_ch, dtype=self.dtype, name="nin_shortcut")(x)
        return x.astype(self.dtype) + h


class AttnBlock(nn.Module):
    """The official ``attn_block``: ``x + proj_out(softmax(q k^T / sqrt(d)) v)`` over the H*W positions.

    With ``num_heads > 1`` the channels split into heads of width d = C / heads (improved-diffusion).
    The q/k/v kernels (separate ``[C, C]`` parameters, as the official ``q``/``k``/``v`` nins) run as one
    matmul; the attention itself is ``jaxmodels.layers.dot_product_attention``, the one the transformer
    families use (their ``MultiHeadAttention`` stores ``[C, heads, d]`` kernels under other names, which
    the official checkpoints' layout rules out here).
    """

    num_heads: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        batch, height, width, channels = x.shape
        heads, tokens = self.num_heads, height * width
        head_dim = channels // heads
        h = GroupNorm(dtype=self.dtype, name="norm")(x).reshape(batch, tokens, channels)
        kernels, biases = zip(*(DenseParams(channels, name=name)(channels) for name in ("q", "k", "v")))
        kernel = jnp.concatenate(kernels, axis=1).astype(self.dtype)  # [C, 3C]
        qkv = jnp.dot(h, kernel) + jnp.concatenate(biases).astype(self.dtype)  # [B, T, 3C]
        q, k, v = (qkv[..., i * channels:(i + 1) * channels].reshape(batch, tokens, heads, head_dim)
                   for i in range(3))  # [B, T, heads, d]
        out = dot_product_attention(q, k, v).reshape(batch, tokens, channels)  # [B, T, C]
        out = Dense(channels, init_scale=0.0, dtype=self.dtype, name="proj_out")(out)
        return x.astype(self.dtype) + out.reshape(batch, height, width, channels)


def upsample_nearest(x: Array) -> Array:
    """Nearest-neighbour x2 (``tf.image.resize(..., NEAREST_NEIGHBOR)`` on exact doubling): a broadcast."""
    batch, height, width, channels = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (batch, height, 2, width, 2, channels))
    return x.reshape(batch, 2 * height, 2 * width, channels)


class UNet(nn.Module):
    """The DDPM U-Net; ``__call__(x, t, y=None, *, train)`` returns eps_theta(x_t, t) (``[eps, v]`` with
    ``learn_sigma``). See the module docstring for the equations and the official code it follows.

    Attributes:
      ch: base width (128 for CIFAR-10); must be divisible by the 32 GroupNorm groups.
      ch_mult: width multiplier per resolution level; the input's height and width must be divisible by
        ``2 ** (len(ch_mult) - 1)``.
      num_res_blocks: residual blocks per level on the way down (one more per level on the way up).
      attn_resolutions: feature-map side lengths (heights) at which self-attention follows each block.
      dropout: dropout rate inside the residual blocks (rng stream ``'dropout'``, only with ``train=True``).
      out_channels: output channels; None = the input's channels.
      learn_sigma: double the output channels: ``[eps, v]`` for improved DDPM's learned variance.
      num_classes: 0 = unconditional; > 0 adds ``Embed(num_classes + 1, 4 ch)(y)`` to the time embedding,
        label ``num_classes`` being the null class of classifier-free guidance.
      num_heads: attention heads (improved DDPM); the width at attention levels must be divisible by it.
      use_scale_shift_norm: residual blocks condition as ``GN(h) * (1 + scale) + shift`` (improved DDPM).
      dtype: computation dtype (parameters, normalisation statistics and the softmax stay float32).
    """

    ch: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.1
    out_channels: int | None = None
    learn_sigma: bool = False
    num_classes: int = 0
    num_heads: int = 1
    use_scale_shift_norm: bool = False
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        super().__post_init__()
        if self.ch <= 0 or self.ch % NUM_GROUPS:
            raise ValueError(f"UNet ch={self.ch} must be a positive multiple of the {NUM_GROUPS} GroupNorm groups")
        if not self.ch_mult or any(m <= 0 for m in self.ch_mult):
            raise ValueError(f"UNet ch_mult={tuple(self.ch_mult)} must be a non-empty tuple of positive ints")
        if self.num_res_blocks < 1:
            raise ValueError(f"UNet num_res_blocks={self.num_res_blocks} must be >= 1")
        if self.num_classes < 0:
            raise ValueError(f"UNet num_classes={self.num_classes} must be >= 0 (0 = unconditional)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNet dropout={self.dropout} must be in [0, 1)")
        widths = {self.ch * m for m in self.ch_mult}
        if self.num_heads < 1 or any(w % self.num_heads for w in widths):
            raise ValueError(f"UNet num_heads={self.num_heads} must divide every level width {sorted(widths)}")

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @nn.compact
    def __call__(self, x: Array, t: Array, y: Array | None = None, *, train: bool) -> Array:
        """Maps x_t ``[B, H, W, C]`` (NHWC), timesteps ``t [B]`` (int or float; a scalar is broadcast) and
        labels ``y [B]`` (int, with ``num_classes``) to ``[B, H, W, out]``, out = C (2C with ``learn_sigma``)."""
        batch, height, width, in_channels = self._check_inputs(x, t, y)
        ch, dtype = self.ch, self.dtype
        t = jnp.broadcast_to(jnp.asarray(t), (batch,))

        temb = timestep_embedding(t, ch)  # [B, ch]
        temb = Dense(4 * ch, dtype=dtype, axes=("temb_in", "embed"), name="temb_dense0")(temb)
        temb = Dense(4 * ch, dtype=dtype, axes=("temb", "embed"), name="temb_dense1")(swish(temb))  # [B, 4ch]
        if self.num_classes:
            label_emb = nn.Embed(self.num_classes + 1, 4 * ch, dtype=dtype, param_dtype=jnp.float32,
                                 embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0),
                                                                             ("classes", "embed")),
                                 name="label_emb")
            temb = temb + label_emb(jnp.asarray(y, jnp.int32))

        def res(h, out_ch, name):
            return ResnetBlock(out_ch, dropout=self.dropout, use_scale_shift_norm=self.use_scale_shift_norm,
                               dtype=dtype, name=name)(h, temb, train=train)

        def attn(h, name):
            return AttnBlock(num_heads=self.num_heads, dtype=dtype, name=name)(h)

        levels = len(self.ch_mult)
        hs = [Conv3x3(ch, dtype=dtype, name="conv_in")(x)]
        for level in range(levels):
            for block in range(self.num_res_blocks):
                h = res(hs[-1], ch * self.ch_mult[level], f"down_{level}_block_{block}")
                if h.shape[1] in self.attn_resolutions:
                    h = attn(h, f"down_{level}_attn_{block}")
                hs.append(h)
            if level != levels - 1:
                hs.append(Conv3x3(hs[-1].shape[-1], stride=2, dtype=dtype, name=f"down_{level}_downsample")(hs[-1]))

        h = hs[-1]
        h = res(h, h.shape[-1], "mid_block_1")
        h = attn(h, "mid_attn_1")
        h = res(h, h.shape[-1], "mid_block_2")

        for level in reversed(range(levels)):
            for block in range(self.num_res_blocks + 1):
                h = res(jnp.concatenate([h, hs.pop().astype(dtype)], axis=-1), ch * self.ch_mult[level],
                        f"up_{level}_block_{block}")
                if h.shape[1] in self.attn_resolutions:
                    h = attn(h, f"up_{level}_attn_{block}")
            if level != 0:
                h = Conv3x3(h.shape[-1], dtype=dtype, name=f"up_{level}_upsample")(upsample_nearest(h))
        assert not hs

        h = GroupNorm(dtype=dtype, name="norm_out")(h, activation=True)
        out_channels = (self.out_channels or in_channels) * (2 if self.learn_sigma else 1)
        h = Conv3x3(out_channels, init_scale=0.0, axes=("conv_height", "conv_width", "embed", "conv_out"),
                    dtype=dtype, name="conv_out")(h)
        return h.astype(jnp.float32)

    def _check_inputs(self, x, t, y) -> tuple[int, int, int, int]:
        if x.ndim != 4:
            raise ValueError(f"UNet expects x of shape [batch, height, width, channels] (NHWC), got {x.shape}")
        batch, height, width, channels = x.shape
        factor = self.downsampling_factor
        if height % factor or width % factor:
            raise ValueError(
                f"UNet input size {height}x{width} (x.shape={tuple(x.shape)}) is not divisible by "
                f"2 ** (len(ch_mult) - 1) = {factor} for ch_mult={tuple(self.ch_mult)}; pad or resize the images, "
                "or use fewer levels")
        t_shape = jnp.shape(t)
        if t_shape not in ((), (batch,)):
            raise ValueError(f"UNet t must be a scalar or of shape [batch] = ({batch},), got shape {t_shape}")
        if self.num_classes:
            if y is None:
                raise ValueError(f"UNet with num_classes={self.num_classes} needs labels y of shape [batch]; "
                                 f"pass y={self.num_classes} (the null class) for unconditional samples")
            if jnp.shape(y) != (batch,):
                raise ValueError(f"UNet labels y must have shape [batch] = ({batch},), got {jnp.shape(y)}")
            if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
                raise ValueError(f"UNet labels y must be integers in [0, num_classes], got dtype {jnp.result_type(y)}")
        elif y is not None:
            raise ValueError("UNet got labels y but num_classes=0 (unconditional); build it with num_classes > 0 "
                             "for class conditioning")
        return batch, height, width, channels


_FIELDS = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "out_channels", "learn_sigma",
           "num_classes", "num_heads", "use_scale_shift_norm", "dtype")
_CONFIG_KEYS = frozenset(("name",) + _FIELDS)


def unet_from_config(model_cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> UNet:
    """Builds a ``UNet`` from a model config (``name="unet"``); absent keys take the CIFAR-10 defaults.

    Keys: ``ch``, ``ch_mult``, ``num_res_blocks``, ``attn_resolutions``, ``dropout``, ``out_channels``
    (optional), ``learn_sigma``, ``num_classes``, ``num_heads``, ``use_scale_shift_norm``, ``dtype``
    (``"float32"`` or ``"bfloat16"``) and ``name`` (ignored).
    """
    cfg = model_cfg.to_dict() if isinstance(model_cfg, ml_collections.ConfigDict) else dict(model_cfg)
    unknown = sorted(set(cfg) - _CONFIG_KEYS)
    if unknown:
        raise ValueError(f"unet_from_config: unknown model config key(s) {unknown}; known keys are "
                         f"{sorted(_CONFIG_KEYS)}")
    kwargs = {key: cfg[key] for key in _FIELDS if cfg.get(key) is not None}
    for key in ("ch_mult", "attn_resolutions"):
        if key in kwargs:
            kwargs[key] = tuple(int(v) for v in kwargs[key])
    kwargs["dtype"] = dtype_from_name(kwargs.get("dtype", "float32"), "unet_from_config: model.dtype")
    return UNet(**kwargs)


def count_params(params) -> int:
    """Number of scalars in a parameter tree (boxed, abstract or concrete)."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(nn.unbox(params))))
