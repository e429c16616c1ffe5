"""Per-example image preprocessing in numpy, for grain ``map`` / ``random_map`` transforms.

Images are ``[height, width, channels]`` arrays (uint8 as stored, float32 after ``normalize``).
Random ops take a ``np.random.Generator`` (the one grain's ``random_map`` hands each example),
so a pipeline stays deterministic given its seed. ``build_preprocess`` assembles the ops named
by a data config into the function the pipelines in ``jaxmodels.data.pipeline`` apply.
"""
from __future__ import annotations

import math
from typing import Callable

import ml_collections
import numpy as np
from PIL import Image

AUGMENTS = ("none", "shift", "crop_flip", "inception")

Preprocess = Callable[[dict, "np.random.Generator | None"], dict]
Geometry = Callable[[np.ndarray, "np.random.Generator | None"], np.ndarray]


def normalize(image: np.ndarray, mean, std) -> np.ndarray:
    """Scales a uint8 image to [0, 1] and standardises it: ``(x / 255 - mean) / std``.

    ``mean`` and ``std`` are scalars or one value per channel.
    """
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return ((image.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes ``[h, w, c]`` to ``[size[0], size[1], c]`` with PIL bilinear filtering, per channel.

    Keeps the dtype: uint8 planes are resized as PIL "L" images (rounded), others as "F" (float32).
    """
    if image.shape[:2] == tuple(size):
        return image
    planes = [_resize_plane(image[..., c], size) for c in range(image.shape[-1])]
    return np.stack(planes, axis=-1).astype(image.dtype)  # [size[0], size[1], c]


def _resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear PIL resize of one ``[h, w]`` channel."""
    if plane.dtype != np.uint8:
        plane = plane.astype(np.float32)
    height, width = size
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize((width, height), Image.BILINEAR))


def pad_and_random_crop(image: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """Zero-pads ``padding`` pixels on every side, then crops a random window of the original size.

    The standard CIFAR augmentation (He et al. 2016, "Deep Residual Learning", sec. 4.2).
    """
    height, width = image.shape[:2]
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))  # [h+2p, w+2p, c]
    top, left = rng.integers(0, 2 * padding + 1, size=2)
    return padded[top:top + height, left:left + width]


def random_shift(image: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Translates the image by up to ``max_shift`` pixels along each axis, filling with zeros.

    A shift by (dy, dx) with zero fill is exactly a crop of the zero-padded image, so this is
    ``pad_and_random_crop`` with ``padding=max_shift``; the name says what it does to digits.
    """
    return pad_and_random_crop(image, rng, padding=max_shift)


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrors the image left-right with probability 1/2."""
    return image[:, ::-1] if rng.random() < 0.5 else image


def _central_crop_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """The largest centred box whose aspect ratio is clamped into ``ratio`` (RandomResizedCrop fallback)."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_w, crop_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        crop_w, crop_h = int(round(height * max(ratio))), height
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def _random_crop_box(height: int, width: int, rng: np.random.Generator, scale, ratio,
                     attempts: int = 10) -> tuple[int, int, int, int]:
    """Samples (top, left, h, w) covering ``scale`` of the area at a log-uniform aspect ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    return _central_crop_box(height, width, ratio)


def inception_crop(image: np.ndarray, rng: np.random.Generator, size: int,
                   scale: tuple[float, float] = (0.08, 1.0),
                   ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """Random-resized crop (Szegedy et al. 2015, "Going Deeper with Convolutions", sec. 6).

    Samples a box covering a ``scale`` fraction of the area with aspect ratio log-uniform in
    ``ratio`` (10 attempts, then the centred fallback), as torchvision's ``RandomResizedCrop``
    and big_vision's ``inception_crop``; the box is resized to ``[size, size]`` bilinearly.
    """
    top, left, crop_h, crop_w = _random_crop_box(*image.shape[:2], rng, scale, ratio)
    return resize(image[top:top + crop_h, left:left + crop_w], (size, size))


def resize_small_and_central_crop(image: np.ndarray, size: int, crop_fraction: float = 0.875) -> np.ndarray:
    """Evaluation crop: resize the shorter side to ``size / crop_fraction``, then centre-crop ``size``.

    The standard ImageNet evaluation geometry (resize 256, centre crop 224 for ``size=224``).
    """
    height, width = image.shape[:2]
    short = int(round(size / crop_fraction))
    factor = short / min(height, width)
    new_h = max(size, int(round(height * factor)))
    new_w = max(size, int(round(width * factor)))
    resized = resize(image, (new_h, new_w))  # [new_h, new_w, c]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top:top + size, left:left + size]


def _resize_to(size: int) -> Geometry:
    """Geometry that only brings the image to ``[size, size]`` (a no-op when it already is)."""
    return lambda image, rng: resize(image, (size, size))


def _train_geometry(data_cfg: ml_collections.ConfigDict) -> Geometry:
    """The random spatial augmentation ``data_cfg.augment`` names, ending at ``image_size``."""
    size = data_cfg.image_size
    fit = _resize_to(size)
    if data_cfg.augment == "none":
        return fit
    if data_cfg.augment == "shift":
        max_shift = data_cfg.get("max_shift", 2)
        return lambda image, rng: random_shift(fit(image, rng), rng, max_shift)
    if data_cfg.augment == "crop_flip":
        padding = data_cfg.get("crop_padding", 4)
        return lambda image, rng: random_flip(pad_and_random_crop(fit(image, rng), rng, padding), rng)
    scale = tuple(data_cfg.get("crop_scale", (0.08, 1.0)))
    return lambda image, rng: random_flip(inception_crop(image, rng, size, scale=scale), rng)


def _eval_geometry(data_cfg: ml_collections.ConfigDict) -> Geometry:
    """The deterministic evaluation counterpart of ``_train_geometry``."""
    size = data_cfg.image_size
    if data_cfg.augment == "inception":
        crop_fraction = data_cfg.get("crop_fraction", 0.875)
        return lambda image, rng: resize_small_and_central_crop(image, size, crop_fraction)
    return _resize_to(size)


def build_preprocess(data_cfg: ml_collections.ConfigDict, train: bool) -> Preprocess:
    """Returns ``preprocess(record, rng) -> {"image": float32 [S, S, C], "label": int32}``.

    Reads ``data_cfg.augment`` (one of ``AUGMENTS``), ``image_size`` (S), ``mean`` and ``std``
    (per-channel tuples) and, where the augmentation uses them, ``max_shift`` (default 2),
    ``crop_padding`` (4), ``crop_scale`` ((0.08, 1.0)) and ``crop_fraction`` (0.875).
    Training with ``rng``: "none" only resizes to S; "shift" resizes then ``random_shift``;
    "crop_flip" resizes then ``pad_and_random_crop`` + ``random_flip``; "inception" applies
    ``inception_crop`` to S + ``random_flip``. Evaluation never draws random numbers (``rng``
    may be None): ``resize_small_and_central_crop`` for "inception", otherwise a resize to S.
    """
    if data_cfg.augment not in AUGMENTS:
        raise ValueError(f"data.augment={data_cfg.augment!r} is not one of {AUGMENTS}.")
    geometry = _train_geometry(data_cfg) if train else _eval_geometry(data_cfg)
    mean, std = tuple(data_cfg.mean), tuple(data_cfg.std)

    def preprocess(record: dict, rng: np.random.Generator | None = None) -> dict:
        image = geometry(np.asarray(record["image"]), rng)
        return {"image": normalize(image, mean, std), "label": np.int32(record["label"])}

    return preprocess
