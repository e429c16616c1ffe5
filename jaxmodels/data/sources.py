"""Random-access image-classification sources for ``grain.MapDataset.source``.

Every source has ``__len__`` and ``__getitem__(index) -> {"image": uint8 [h, w, c],
"label": int32}``. ``DigitsSource`` reads scikit-learn's bundled 8x8 digits (offline);
``tfds_source`` reads a prepared TFDS dataset through ``tfds.data_source`` (ArrayRecord files,
no TensorFlow at run time). ``build_source`` picks one from a data config.
"""
from __future__ import annotations

import functools

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


SOURCES = ("digits", "tfds")


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as (uint8 images [n, 8, 8, 1] scaled 0..16 -> 0..255, int32 labels [n])."""
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # [n, 8, 8, 1]
    return images, digits.target.astype(np.int32)


class DigitsSource:
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test set, 1797 images, 10 classes).

    The split is stratified by label and fixed by ``seed``: "train" and "test" are disjoint,
    together cover all 1797 images, and ``test_fraction`` of each class is held out.
    """

    def __init__(self, split: str, seed: int = 0, test_fraction: float = 0.2):
        if split not in ("train", "test"):
            raise ValueError(f"DigitsSource split must be 'train' or 'test', got {split!r}.")
        self._images, self._labels = _digits_arrays()
        train_indices, test_indices = train_test_split(
            np.arange(len(self._labels)), test_size=test_fraction, random_state=seed, stratify=self._labels)
        self.indices = np.sort(train_indices if split == "train" else test_indices)
        self.split = split

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        row = self.indices[index]
        return {"image": self._images[row], "label": self._labels[row]}

    def __repr__(self) -> str:
        return f"DigitsSource(split={self.split!r}, num_examples={len(self)})"


class TfdsSource:
    """Wraps a TFDS random-access source so records come out as ``{"image", "label"}`` only.

    ``image_key`` / ``label_key`` name the fields in the TFDS features; other fields are dropped.
    An empty ``label_key`` (unlabelled data such as CelebA faces for a generative model) gives label 0.
    """

    def __init__(self, records, image_key: str = "image", label_key: str = "label"):
        self._records = records
        self._image_key = image_key
        self._label_key = label_key

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        record = self._records[index]
        image = np.asarray(record[self._image_key], dtype=np.uint8)
        if image.ndim == 2:
            image = image[..., None]  # [h, w, 1]
        label = np.int32(record[self._label_key]) if self._label_key else np.int32(0)  # unlabelled: 0
        return {"image": image, "label": label}

    def __repr__(self) -> str:
        return f"TfdsSource({self._records!r})"


def _not_prepared_message(name: str, split: str, data_dir: str | None) -> str:
    """How to get an ArrayRecord copy of ``name`` onto a machine without internet."""
    data_dir = data_dir or tfds.core.constants.get_default_data_dir()
    return (
        f"TFDS dataset {name!r} (split {split!r}) is not prepared as ArrayRecord in data_dir "
        f"{data_dir!r}. Prepare it on a machine with internet (and TensorFlow) with\n"
        f"  tfds build {name} --data_dir={data_dir} --file_format=array_record\n"
        f"or copy an already prepared folder {data_dir}/{name}/<version>/ here. "
        "TFRecord-only copies cannot be read at random: rebuild them with --file_format=array_record.")


def tfds_source(name: str, split: str, data_dir: str | None = None, *,
                image_key: str = "image", label_key: str = "label") -> TfdsSource:
    """Opens a prepared TFDS split with ``tfds.data_source`` (never downloads).

    Raises:
        FileNotFoundError: the dataset is not prepared (as ArrayRecord) under ``data_dir``; the
            message says how to prepare it.
    """
    try:
        records = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except (NotImplementedError, FileNotFoundError, AssertionError) as error:
        raise FileNotFoundError(_not_prepared_message(name, split, data_dir)) from error
    return TfdsSource(records, image_key=image_key, label_key=label_key)


def build_source(data_cfg: ml_collections.ConfigDict, split: str):
    """The source ``data_cfg.source`` names, for ``split``.

    "digits": ``DigitsSource(split, seed=data_cfg.split_seed, test_fraction=data_cfg.test_fraction)``
    (defaults 0 and 0.2). "tfds": ``tfds_source(data_cfg.name, split, data_cfg.data_dir)`` with
    optional ``image_key`` / ``label_key``.
    """
    if data_cfg.source == "digits":
        return DigitsSource(split, seed=data_cfg.get("split_seed", 0),
                            test_fraction=data_cfg.get("test_fraction", 0.2))
    if data_cfg.source == "tfds":
        return tfds_source(data_cfg.name, split, data_dir=data_cfg.get("data_dir"),
                           image_key=data_cfg.get("image_key", "image"),
                           label_key=data_cfg.get("label_key", "label"))
    raise ValueError(f"data.source={data_cfg.source!r} is not one of {SOURCES}.")
