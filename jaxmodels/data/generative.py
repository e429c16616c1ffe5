"""Images for diffusion models: uint8 records -> float32 in [-1, 1] (DDPM's data scaling).

Ho et al. (2020), sec. 3.3: "image data consists of integers in {0, 1, ..., 255} scaled linearly
to [-1, 1]". Digits (scikit-learn's 8x8, values 0..16 stored as 0..255) are padded with the
background value -1 to ``image_size`` (16 by default), as the generative fact sheet prescribes.

Keys of ``config.data`` read here:
  source, name, data_dir, train_split, eval_split   as for ``jaxmodels.data.build_source``
  image_size   S: images are padded (centred, with -1) to S when ``pad`` (default for digits; MNIST's
               28 px -> 32), otherwise resized to S
  channels     C of the stored images (1 for digits/MNIST, 3 for CIFAR-10/CelebA)
  random_flip  horizontal flips in training (CIFAR-10/CelebA recipes; never for digits)
  center_crop  centre-crop to a square before resizing (CelebA's 178x218 faces: 140 px crop)
"""
from __future__ import annotations

import numpy as np

from jaxmodels.data.image import resize
from jaxmodels.data.sources import DigitsSource


def to_model_range(image: np.ndarray) -> np.ndarray:
    """uint8 {0..255} -> float32 in [-1, 1] (x / 127.5 - 1)."""
    return np.asarray(image, np.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
    """Model-range images in [-1, 1] -> uint8 {0..255} (rounded, clipped), for PNGs and FID."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def pad_to(image: np.ndarray, size: int, value: float = -1.0) -> np.ndarray:
    """Centres ``image`` [h, w, c] on a ``size`` x ``size`` canvas filled with ``value``."""
    height, width = image.shape[:2]
    if height > size or width > size:
        raise ValueError(f"Cannot pad a {height}x{width} image to {size}x{size}: it is larger.")
    top, left = (size - height) // 2, (size - width) // 2
    out = np.full((size, size, image.shape[2]), value, np.float32)
    out[top:top + height, left:left + width] = image
    return out


def center_crop(image: np.ndarray, crop: int) -> np.ndarray:
    height, width = image.shape[:2]
    crop = min(crop, height, width)
    top, left = (height - crop) // 2, (width - crop) // 2
    return image[top:top + crop, left:left + crop]


def build_preprocess(data_cfg, train: bool):
    """``preprocess(record, rng) -> {"image": float32 [S, S, C] in [-1, 1], "label": int32}``."""
    size = int(data_cfg.image_size)
    pad = bool(data_cfg.get("pad", data_cfg.get("source") == "digits"))
    flip = bool(data_cfg.get("random_flip", False)) and train
    crop = int(data_cfg.get("center_crop", 0) or 0)

    def preprocess(record: dict, rng: np.random.Generator | None = None) -> dict:
        image = np.asarray(record["image"])
        if crop:
            image = center_crop(image, crop)
        if pad:
            image = pad_to(to_model_range(image), size)
        else:
            if image.shape[:2] != (size, size):
                image = resize(image, (size, size))
            image = to_model_range(image)
        if flip and rng is not None and rng.random() < 0.5:
            image = image[:, ::-1]
        return {"image": np.ascontiguousarray(image, np.float32), "label": np.int32(record.get("label", 0))}

    return preprocess


def digits_images(split: str = "train", *, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All digits of ``split`` as (float32 [n, size, size, 1] in [-1, 1], int32 labels [n])."""
    source = DigitsSource(split, seed=seed)
    images = np.stack([pad_to(to_model_range(source[i]["image"]), size) for i in range(len(source))])
    labels = np.array([source[i]["label"] for i in range(len(source))], np.int32)
    return images, labels
