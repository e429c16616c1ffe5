"""A small digits classifier trained in the repo: an offline feature extractor for sample quality.

FID needs Inception-v3 weights (``jaxmodels.vision.inception``), which cannot be downloaded
here. For the 16x16 digits that the diffusion models train on (``digits_images``), this module
trains a small CNN in seconds and uses it the way FID and the Inception Score use Inception:

* "digits FD": the Frechet distance (``evaluation.frechet_distance``) between its penultimate
  features (128-d, post-ReLU) of generated samples and of real digits (the held-out test split
  by default);
* classifier score: exp(E KL(p(y|x) || p(y))) of its softmax (Inception-Score formula, 1..10);
* confidence: the mean max-probability of the samples.

Default recipe (400 Adam steps of 128, +-1 px shifts): 98.1-99.7% test accuracy over seeds 0-3
(98.1% for seed 0), classifier score ~9.1 on the test split, 10-20 s of training on 2 busy CPU
cores. Digits FD against the test split, seed 0: 360 training digits ~4, uniform noise ~1000,
Gaussian-blurred (sigma 1) digits ~500, pixel-shuffled digits ~330.

These numbers are an offline stand-in for FID/IS, useful to compare models and checkpoints of
this repo with each other. They are NOT comparable with published FIDs (different network,
features, data, image size and sample counts).

``load_or_train(cache_dir)`` caches the trained variables with Orbax in the directory it is given
(``train/diffusion_sample.py`` passes one), else in ``$JAXMODELS_CACHE/digits_classifier``; with
neither it trains in memory and writes nothing. The cache entry is written to a temporary
directory and renamed into place, so concurrent runs or a crash never leave a half-written
classifier.
"""
from __future__ import annotations

import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jaxmodels.data.generative import digits_images
from jaxmodels.diffusion.evaluation import (FeatureStatistics, classifier_score, compute_statistics,
                                            frechet_distance_from_statistics)
from jaxmodels.training.files import atomic_directory
from jaxmodels.training.step import gradient_step

IMAGE_SIZE = 16
NUM_CLASSES = 10
FEATURE_DIM = 128
DEFAULT_STEPS = 400
CACHE_VERSION = "v1"  # bump when the architecture or the training recipe changes
_EVAL_BATCH = 256


class DigitsCNN(nn.Module):
    """conv16-pool-conv32-pool-dense128-dense10 on [B, 16, 16, 1] in [-1, 1] (~0.4 M MACs/image).

    Returns (logits [B, 10], features [B, 128]); the features are the post-ReLU penultimate layer.
    """

    channels: tuple[int, ...] = (16, 32)
    feature_dim: int = FEATURE_DIM
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, images):
        x = jnp.asarray(images, jnp.float32)
        if x.ndim == 3:
            x = x[..., None]
        for features in self.channels:
            x = nn.relu(nn.Conv(features, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        features = nn.relu(nn.Dense(self.feature_dim, name="penultimate")(x))
        logits = nn.Dense(self.num_classes, name="head")(features)
        return logits, features


def _shift(image, offset):
    """Shifts one [16, 16, 1] image by ``offset - 1`` in {-1, 0, 1} pixels per axis (background -1 fills in)."""
    padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    return jax.lax.dynamic_slice(padded, (offset[0], offset[1], 0), image.shape)


def init_params(seed: int = 0) -> dict:
    """He-normal kernels and zero biases, drawn with NumPy (no per-initialiser XLA compiles)."""
    abstract = jax.eval_shape(DigitsCNN().init, jax.random.key(0),
                              jax.ShapeDtypeStruct((1, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32))["params"]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if path[-1].key == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.normal(0.0, np.sqrt(1.0 / fan_in), leaf.shape).astype(np.float32)
        return np.zeros(leaf.shape, np.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract)


def train_digits_classifier(steps: int = DEFAULT_STEPS, seed: int = 0, *, batch_size: int = 128,
                            learning_rate: float = 5e-3, verbose: bool = False) -> dict:
    """Trains ``DigitsCNN`` on ``digits_images("train")`` and returns its variables (NumPy).

    Adam with a cosine-decayed learning rate, cross-entropy, batches sampled with replacement,
    each image shifted by a random -1/0/+1 pixel on each axis. All randomness comes from NumPy's
    ``default_rng(seed)``, so a seed gives the same classifier on any backend (up to float rounding).
    """
    images, labels = digits_images("train", size=IMAGE_SIZE)
    rng = np.random.default_rng(seed)
    params = init_params(int(rng.integers(2**31)))
    indices = rng.integers(0, images.shape[0], (steps, batch_size))
    offsets = rng.integers(0, 3, (steps, batch_size, 2)).astype(np.int32)
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    model = DigitsCNN()
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    opt_state = jax.jit(optimizer.init)(params)

    def loss_fn(params, batch):
        logits, _ = model.apply({"params": params}, batch["image"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    @jax.jit
    def step(params, opt_state, index, offset):
        batch = {"image": jax.vmap(_shift)(images[index], offset), "label": labels[index]}
        result = gradient_step(loss_fn, params, opt_state, optimizer, batch)
        return result.params, result.opt_state, result.metrics["loss"]

    # A Python loop over a jitted step: XLA:CPU ran these convolutions ~20x slower inside a
    # lax.scan (while loop) body than as a top-level computation.
    start = time.perf_counter()
    for index, offset in zip(indices, offsets):
        params, opt_state, loss = step(params, opt_state, index, offset)
    params = jax.tree_util.tree_map(np.asarray, params)
    if verbose:
        logging.info("digits classifier: %d steps in %.1f s, final loss %.4f", steps, time.perf_counter() - start,
                     float(loss))
    return {"params": params}


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------

_MODEL = DigitsCNN()


@jax.jit
def _apply(variables, images):
    logits, features = _MODEL.apply(variables, images)
    return jax.nn.softmax(logits, axis=-1), features


def _prepare(images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ValueError(f"The digits classifier takes [N, {IMAGE_SIZE}, {IMAGE_SIZE}, 1] images in [-1, 1], "
                         f"got shape {images.shape}.")
    return images


def _quantize(images: np.ndarray) -> np.ndarray:
    """Rounds [-1, 1] images to the 256 levels of an 8-bit PNG (``data.to_uint8`` and back)."""
    return (np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0).astype(np.float32)


def _run(variables, images, quantize: bool) -> tuple[np.ndarray, np.ndarray]:
    """(probs [N, 10], features [N, 128]), in fixed batches of 256 (one compile)."""
    images = _prepare(images)
    if quantize:
        images = _quantize(images)
    probs, features = [], []
    for start in range(0, images.shape[0], _EVAL_BATCH):
        part = images[start:start + _EVAL_BATCH]
        n = part.shape[0]
        if n < _EVAL_BATCH:
            part = np.concatenate([part, np.full((_EVAL_BATCH - n,) + part.shape[1:], -1.0, np.float32)])
        p, f = _apply(variables, part)
        probs.append(np.asarray(p)[:n])
        features.append(np.asarray(f)[:n])
    return np.concatenate(probs), np.concatenate(features)


def digits_probs(variables, images, *, quantize: bool = True) -> np.ndarray:
    """Class probabilities [N, 10] of images [N, 16, 16, 1] in [-1, 1]."""
    return _run(variables, images, quantize)[0]


def digits_extractor(variables, *, quantize: bool = True):
    """A ``FeatureExtractor``: images [B, 16, 16, 1] in [-1, 1] -> penultimate features [B, 128].

    ``quantize`` rounds to 8-bit levels first, as when samples are saved as PNGs (the reference
    digits are 8-bit already, so it changes nothing for them).
    """
    def extract(images):
        return _run(variables, images, quantize)[1]

    extract.dim = FEATURE_DIM
    return extract


def accuracy(variables, split: str = "test") -> float:
    images, labels = digits_images(split, size=IMAGE_SIZE)
    return float(np.mean(np.argmax(digits_probs(variables, images), axis=-1) == labels))


# ----------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------

def default_cache_dir() -> str | None:
    """``$JAXMODELS_CACHE/digits_classifier``, or ``None`` (no cache) when the variable is unset.

    The library never picks a directory of its own: the caller or the environment does.
    """
    root = os.environ.get("JAXMODELS_CACHE")
    return os.path.join(root, "digits_classifier") if root else None


def _abstract_variables() -> Any:
    shapes = jax.eval_shape(DigitsCNN().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 16, 16, 1), np.float32))
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), {"params": shapes["params"]})


def load_or_train(cache_dir: str | os.PathLike | None = None, *, steps: int = DEFAULT_STEPS, seed: int = 0,
                  verbose: bool = False) -> dict:
    """The trained classifier's variables: restored from the cache, or trained and cached.

    ``cache_dir`` defaults to ``default_cache_dir()``; when that is ``None`` too, the classifier is
    trained (10-20 s) and nothing is written. Entries are keyed by recipe version, seed and steps.
    The Orbax checkpoint is written to a unique temporary directory and renamed into place (when
    another process got there first, its entry is kept and ours discarded).
    """
    import orbax.checkpoint as ocp

    cache_dir = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    if cache_dir is None:
        return train_digits_classifier(steps=steps, seed=seed, verbose=verbose)
    cache_dir = os.path.abspath(cache_dir)
    entry = os.path.join(cache_dir, f"{CACHE_VERSION}-seed{seed}-steps{steps}")
    if os.path.isdir(entry):
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(entry, _abstract_variables())
        return jax.tree_util.tree_map(np.asarray, restored)

    variables = train_digits_classifier(steps=steps, seed=seed, verbose=verbose)
    with atomic_directory(entry) as tmp, ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp, variables)
        checkpointer.wait_until_finished()
    if verbose:
        logging.info("digits classifier cached at %s", entry)
    return variables


# ----------------------------------------------------------------------------------------------
# Sample quality
# ----------------------------------------------------------------------------------------------

def digits_quality(samples, variables=None, reference="test", *, quantize: bool = True,
                   cache_dir: str | os.PathLike | None = None) -> dict:
    """Offline sample-quality figures of digit samples [N, 16, 16, 1] in [-1, 1].

    Returns ``{"fd", "classifier_score", "confidence", "num_samples"}``:
      fd                "digits FD", the Frechet distance between the classifier's penultimate
                        features of ``samples`` and of ``reference`` (a split name, "test" or
                        "train", or an image array); lower is better, ~0 for real digits
                        (small-sample bias aside: it grows as N shrinks);
      classifier_score  exp(E KL(p(y|x) || p(y))) in [1, 10]: ~10 for confident, balanced digits;
      confidence        mean max class probability.
    A stand-in for FID/IS when Inception weights are unavailable; not comparable with paper FIDs.
    ``variables`` defaults to ``load_or_train(cache_dir)``.
    """
    if variables is None:
        variables = load_or_train(cache_dir)
    samples = _prepare(samples)
    if isinstance(reference, str):
        reference, _ = digits_images(reference, size=IMAGE_SIZE)
    extractor = digits_extractor(variables, quantize=quantize)
    probs, features = _run(variables, samples, quantize)
    sample_stats = FeatureStatistics().update(features)
    reference_stats = compute_statistics(extractor, _prepare(reference), batch_size=_EVAL_BATCH)
    return {
        "fd": frechet_distance_from_statistics(sample_stats, reference_stats),
        "classifier_score": classifier_score(probs),
        "confidence": float(np.mean(np.max(probs, axis=-1))),
        "num_samples": int(samples.shape[0]),
    }
