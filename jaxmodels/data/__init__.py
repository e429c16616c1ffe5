"""Data: random-access sources, numpy image preprocessing and grain pipelines.

Typical use::

  source = build_source(config.data, "train")
  preprocess = build_preprocess(config.data, train=True)
  it = make_train_iterator(source, preprocess=preprocess, global_batch_size=128, seed=0)
"""
from jaxmodels.data.image import (
    AUGMENTS,
    build_preprocess,
    inception_crop,
    normalize,
    pad_and_random_crop,
    random_flip,
    random_shift,
    resize,
    resize_small_and_central_crop,
)
from jaxmodels.data.pipeline import make_eval_iterator, make_train_iterator
from jaxmodels.data.sources import SOURCES, DigitsSource, TfdsSource, build_source, tfds_source

__all__ = [
    "AUGMENTS",
    "DigitsSource",
    "SOURCES",
    "TfdsSource",
    "build_preprocess",
    "build_source",
    "inception_crop",
    "make_eval_iterator",
    "make_train_iterator",
    "normalize",
    "pad_and_random_crop",
    "random_flip",
    "random_shift",
    "resize",
    "resize_small_and_central_crop",
    "tfds_source",
]
