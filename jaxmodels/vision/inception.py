"""Inception-v3 as used for FID: pytorch-fid's ``fid_inception_v3``, in Flax linen (inference only).

Architecture (Szegedy et al. 2016, "Rethinking the Inception Architecture"), as torchvision's
``Inception3`` with the FID patches of pytorch-fid (``pytorch_fid/inception.py``), which reproduce
the TensorFlow graph ``inception-2015-12-05`` that the original FID code (Heusel et al. 2017) uses:

* ``Mixed_5b/5c/5d`` (FIDInceptionA), ``Mixed_6b..6e`` (FIDInceptionC) and ``Mixed_7b``
  (FIDInceptionE_1): the pool branch is a 3x3/1 average pool with padding 1 that does NOT count
  the padded zeros (``count_include_pad=False``, TensorFlow's SAME average pool);
* ``Mixed_7c`` (FIDInceptionE_2): the pool branch is a 3x3/1 MAX pool with padding 1;
* everything else is torchvision's: ``Mixed_6a`` (InceptionB) and ``Mixed_7a`` (InceptionD) have
  a 3x3/2 max pool without padding, as do ``maxpool1``/``maxpool2`` of the stem;
* every convolution is ``BasicConv2d``: conv (no bias) -> BatchNorm(eps=0.001, running
  statistics, i.e. eval mode) -> ReLU;
* 2048-d "pool3" features = global average of ``Mixed_7c``; ``fc`` maps them to the 1008 logits
  of the TF graph (1001 ImageNet classes + 7 unused) when ``num_classes`` is set.

``fid=False`` gives plain torchvision ``Inception3`` pooling (average pools counting the padding,
average pool in ``Mixed_7c``), for torchvision's own ImageNet weights.

Input convention. pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)`` takes
NCHW images in [0, 1], resizes them to 299x299 (``F.interpolate(mode="bilinear",
align_corners=False)``, no antialiasing) and maps them to [-1, 1] with ``2 x - 1``. This module
takes NHWC images already in [-1, 1] (the diffusion models' range, ``x01 = (x + 1) / 2``), so
the normalisation is the identity; the bilinear resize is linear with weights summing to 1, so
resizing in [-1, 1] equals resizing in [0, 1] then normalising. Grayscale (C=1) inputs are
repeated to 3 channels, as PIL's ``convert("RGB")`` in pytorch-fid's image loader does.

Weights: ``jaxmodels.convert.torch_inception.load_torch_inception`` converts pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (which the user downloads; nothing here fetches it).
``inception_extractor(variables)`` wraps the model as a ``FeatureExtractor`` for
``jaxmodels.diffusion.evaluation``.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INCEPTION_SIZE = 299
FID_NUM_CLASSES = 1008
POOL3_DIM = 2048
BN_EPSILON = 1e-3

Pad = tuple[int, int]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eval mode, eps 1e-3) -> ReLU, torchvision's ``BasicConv2d``.

    ``padding`` is torch's symmetric (pad_h, pad_w).
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        ph, pw = _pair(self.padding)
        x = nn.Conv(self.features, _pair(self.kernel_size), strides=_pair(self.strides),
                    padding=((ph, ph), (pw, pw)), use_bias=False, precision=self.precision, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x, count_include_pad: bool):
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=count_include_pad)


def _pool_branch(x, pool: str):
    """The 3x3/1, padding-1 pool of an Inception A/C/E block's pool branch."""
    if pool == "avg_exclude_pad":  # FID blocks: F.avg_pool2d(..., count_include_pad=False)
        return _avg_pool_3x3(x, count_include_pad=False)
    if pool == "avg":  # torchvision: F.avg_pool2d(..., padding=1) counts the zeros
        return _avg_pool_3x3(x, count_include_pad=True)
    if pool == "max":  # FIDInceptionE_2: F.max_pool2d(..., padding=1) pads with -inf
        return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    raise ValueError(f"Unknown pool {pool!r}.")


def _max_pool_3x3_s2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    pool_features: int
    pool: str = "avg_exclude_pad"
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv2d(*a, precision=self.precision, **k)  # noqa: E731
        branch1x1 = conv(64, 1, name="branch1x1")(x)
        branch5x5 = conv(48, 1, name="branch5x5_1")(x)
        branch5x5 = conv(64, 5, padding=2, name="branch5x5_2")(branch5x5)
        branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x)
        branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_3")(branch3x3dbl)
        branch_pool = conv(self.pool_features, 1, name="branch_pool")(_pool_branch(x, self.pool))
        return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv2d(*a, precision=self.precision, **k)  # noqa: E731
        branch3x3 = conv(384, 3, strides=2, name="branch3x3")(x)
        branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x)
        branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = conv(96, 3, strides=2, name="branch3x3dbl_3")(branch3x3dbl)
        return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int
    pool: str = "avg_exclude_pad"
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv2d(*a, precision=self.precision, **k)  # noqa: E731
        c7 = self.channels_7x7
        branch1x1 = conv(192, 1, name="branch1x1")(x)
        branch7x7 = conv(c7, 1, name="branch7x7_1")(x)
        branch7x7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
        branch7x7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7)
        branch7x7dbl = conv(c7, 1, name="branch7x7dbl_1")(x)
        branch7x7dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(branch7x7dbl)
        branch7x7dbl = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(branch7x7dbl)
        branch7x7dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(branch7x7dbl)
        branch7x7dbl = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(branch7x7dbl)
        branch_pool = conv(192, 1, name="branch_pool")(_pool_branch(x, self.pool))
        return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv2d(*a, precision=self.precision, **k)  # noqa: E731
        branch3x3 = conv(192, 1, name="branch3x3_1")(x)
        branch3x3 = conv(320, 3, strides=2, name="branch3x3_2")(branch3x3)
        branch7x7x3 = conv(192, 1, name="branch7x7x3_1")(x)
        branch7x7x3 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
        branch7x7x3 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
        branch7x7x3 = conv(192, 3, strides=2, name="branch7x7x3_4")(branch7x7x3)
        return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    pool: str = "avg_exclude_pad"
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        conv = lambda *a, **k: BasicConv2d(*a, precision=self.precision, **k)  # noqa: E731
        branch1x1 = conv(320, 1, name="branch1x1")(x)
        branch3x3 = conv(384, 1, name="branch3x3_1")(x)
        branch3x3 = jnp.concatenate([
            conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3),
            conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3),
        ], axis=-1)
        branch3x3dbl = conv(448, 1, name="branch3x3dbl_1")(x)
        branch3x3dbl = conv(384, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = jnp.concatenate([
            conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(branch3x3dbl),
            conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(branch3x3dbl),
        ], axis=-1)
        branch_pool = conv(192, 1, name="branch_pool")(_pool_branch(x, self.pool))
        return jnp.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1)


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of torch's ``F.interpolate(mode="bilinear", align_corners=False)`` on one axis.

    ATen: src = (dst + 0.5) * in / out - 0.5, clamped at 0; taps floor(src) and the next index
    (clamped to the last), weighted by the fractional part. No antialiasing when downsampling.
    The arithmetic mirrors ATen's CPU kernel (opmath of float32, its multiply-add fused: one
    rounding), which makes these weights equal torch's bit for bit.
    """
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    dst = np.arange(out_size, dtype=np.float64)
    src = np.maximum(scale * (dst + 0.5) - 0.5, 0.0).astype(np.float32)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = (src - i0.astype(np.float32)).astype(np.float32)
    weights = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, i0), np.float32(1.0) - frac)
    np.add.at(weights, (rows, i1), frac)
    return weights.astype(np.float32)


def resize_bilinear(images, size: tuple[int, int], precision=jax.lax.Precision.HIGHEST):
    """NHWC bilinear resize with torch's ``align_corners=False`` semantics (as pytorch-fid)."""
    height, width = images.shape[1:3]
    if (height, width) == tuple(size):
        return images  # F.interpolate to the same size is the identity
    wh = jnp.asarray(_bilinear_matrix(height, size[0]))
    ww = jnp.asarray(_bilinear_matrix(width, size[1]))
    return jnp.einsum("oh,bhwc,pw->bopc", wh, images, ww, precision=precision)


class InceptionV3(nn.Module):
    """FID Inception-v3 (pytorch-fid's ``fid_inception_v3``) on NHWC images in [-1, 1].

    Returns ``{"pool3": [B, 2048]}`` plus ``"logits": [B, num_classes]`` when ``num_classes`` is
    not None (the 1008-way ``fc`` of the TF graph; ``None`` builds the model without it).
    Parameter names follow torchvision's module names (``Mixed_5b/branch1x1/conv/kernel``), so
    the converted state dict maps one-to-one. Inference only: BatchNorm uses running statistics.
    """

    num_classes: int | None = FID_NUM_CLASSES
    fid: bool = True
    resize_input: bool = True
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images):
        x = jnp.asarray(images, jnp.float32)
        if x.ndim != 4:
            raise ValueError(f"InceptionV3 takes NHWC images, got shape {x.shape}.")
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        if x.shape[-1] != 3:
            raise ValueError(f"InceptionV3 takes 1 or 3 channels, got {x.shape[-1]}.")
        if self.resize_input:
            x = resize_bilinear(x, (INCEPTION_SIZE, INCEPTION_SIZE), self.precision)
        # pytorch-fid's normalize_input (2 x01 - 1) is the identity here: inputs are in [-1, 1].

        conv = lambda *a, **k: BasicConv2d(*a, precision=self.precision, **k)  # noqa: E731
        a_pool = "avg_exclude_pad" if self.fid else "avg"
        x = conv(32, 3, strides=2, name="Conv2d_1a_3x3")(x)
        x = conv(32, 3, name="Conv2d_2a_3x3")(x)
        x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3_s2(x)  # maxpool1
        x = conv(80, 1, name="Conv2d_3b_1x1")(x)
        x = conv(192, 3, name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3_s2(x)  # maxpool2
        x = InceptionA(32, a_pool, self.precision, name="Mixed_5b")(x)
        x = InceptionA(64, a_pool, self.precision, name="Mixed_5c")(x)
        x = InceptionA(64, a_pool, self.precision, name="Mixed_5d")(x)
        x = InceptionB(self.precision, name="Mixed_6a")(x)
        x = InceptionC(128, a_pool, self.precision, name="Mixed_6b")(x)
        x = InceptionC(160, a_pool, self.precision, name="Mixed_6c")(x)
        x = InceptionC(160, a_pool, self.precision, name="Mixed_6d")(x)
        x = InceptionC(192, a_pool, self.precision, name="Mixed_6e")(x)
        x = InceptionD(self.precision, name="Mixed_7a")(x)
        x = InceptionE(a_pool, self.precision, name="Mixed_7b")(x)  # FIDInceptionE_1
        x = InceptionE("max" if self.fid else "avg", self.precision, name="Mixed_7c")(x)  # FIDInceptionE_2
        pool3 = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1))
        outputs = {"pool3": pool3}
        if self.num_classes is not None:
            # torchvision: avgpool -> dropout (identity in eval) -> flatten -> fc
            outputs["logits"] = nn.Dense(self.num_classes, precision=self.precision, name="fc")(pool3)
        return outputs


def num_classes_of(variables) -> int | None:
    """The ``fc`` width of converted variables, or None when they have no classifier head."""
    fc = variables["params"].get("fc")
    return None if fc is None else int(fc["kernel"].shape[-1])


def inception_extractor(variables, *, output: str = "pool3", fid: bool = True, quantize: bool = True):
    """A ``FeatureExtractor`` (see ``jaxmodels.diffusion.evaluation``) from converted variables.

    ``images`` [B, H, W, C] in [-1, 1] -> ``output`` features as NumPy: "pool3" [B, 2048] (FID),
    "logits" [B, 1008], or "probs" (softmax of the logits, for the Inception Score).

    ``quantize`` (default) rounds images to the 256 levels of an 8-bit PNG first
    (``round((x + 1) * 127.5) / 127.5 - 1``), which is what pytorch-fid sees when it reads
    saved samples; without it FIDs of float samples differ slightly from the published protocol.
    """
    if output not in ("pool3", "logits", "probs"):
        raise ValueError(f"output must be 'pool3', 'logits' or 'probs', got {output!r}.")
    num_classes = num_classes_of(variables)
    if output != "pool3" and num_classes is None:
        raise ValueError(f"output={output!r} needs the fc layer, which these variables do not have.")
    model = InceptionV3(num_classes=num_classes, fid=fid)
    variables = jax.tree_util.tree_map(jnp.asarray, {k: variables[k] for k in ("params", "batch_stats")})

    @jax.jit
    def apply(variables, images):
        if quantize:
            images = jnp.round((jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0
        outputs = model.apply(variables, images)
        if output == "probs":
            return jax.nn.softmax(outputs["logits"], axis=-1)
        return outputs[output]

    def extract(images):
        return np.asarray(apply(variables, jnp.asarray(images, jnp.float32)))

    extract.dim = POOL3_DIM if output == "pool3" else num_classes
    extract.model = model
    return extract
