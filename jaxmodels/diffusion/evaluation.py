"""Sample-quality metrics for diffusion models: Frechet distance of features, classifier score.

Frechet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium", eq. in sec. "FID"): features of real and of generated
images are summarised by Gaussians N(mu1, S1), N(mu2, S2), and

    FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).

``frechet_distance`` reproduces pytorch-fid's ``calculate_frechet_distance`` (the de-facto
reference implementation, Dougal Sutherland's stable version) in float64 NumPy/SciPy.

Feature extractors are plain callables ``images [B, H, W, C] float in [-1, 1] -> features [B, D]``
(the diffusion models' data range; see ``jaxmodels.data.generative``). Two ship with the repo:

* ``jaxmodels.vision.inception.inception_extractor``: pytorch-fid's FID Inception-v3 (pool3,
  2048-d) with weights converted from the user's ``pt_inception-2015-12-05-6726825d.pth``. Only
  this one gives FIDs comparable with papers.
* ``jaxmodels.projects.diffusion.digits_classifier.digits_extractor``: a small CNN trained in the repo on
  the 16x16 digits, an offline stand-in ("digits FD") when the Inception weights are unavailable.

``compute_statistics`` streams images through an extractor into a ``FeatureStatistics``
(float64 running mean and covariance, savable as ``.npz`` with pytorch-fid's ``mu``/``sigma``
keys), and ``classifier_score`` is the Inception Score formula exp(E_x KL(p(y|x) || p(y)))
(Salimans et al. 2016) applied to any classifier's probabilities.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, Protocol, Union

import numpy as np
from scipy import linalg

from jaxmodels.training.files import atomic_save_npz


# ----------------------------------------------------------------------------------------------
# Frechet distance
# ----------------------------------------------------------------------------------------------

def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017).

        d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})

    Same semantics as pytorch-fid's ``calculate_frechet_distance``: the matrix square root is
    ``scipy.linalg.sqrtm`` of the product; when that is not finite (a singular product), ``eps``
    is added to both diagonals and the root recomputed; a complex root is accepted (its real part
    used) only when the imaginary parts of its diagonal are within 1e-3 of zero, otherwise
    ``ValueError``. Everything is computed in float64.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"Mean vectors have different shapes: {mu1.shape} vs {mu2.shape}.")
    if sigma1.shape != sigma2.shape:
        raise ValueError(f"Covariances have different shapes: {sigma1.shape} vs {sigma2.shape}.")
    if sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"Covariance shape {sigma1.shape} does not match mean shape {mu1.shape}.")

    diff = mu1 - mu2
    # The product might be almost singular.
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"Frechet distance: singular product; adding {eps} to the diagonal of both "
                      "covariance estimates.", RuntimeWarning, stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    # Numerical error might give a slight imaginary component.
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm``, quietly: its singular/ill-conditioned warnings are expected for
    covariances estimated from fewer samples than dimensions (as pytorch-fid's ``disp=False``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.asarray(linalg.sqrtm(matrix))


# ----------------------------------------------------------------------------------------------
# Streaming feature statistics
# ----------------------------------------------------------------------------------------------

class FeatureStatistics:
    """Running mean and covariance of feature vectors, in float64.

    ``update(features [B, D], mask [B] | None)`` adds the rows where ``mask`` is true (all rows
    without a mask), merging batches with Chan et al.'s pairwise formula, so the result equals
    ``np.mean(x, 0)`` / ``np.cov(x, rowvar=False)`` of all rows however they were batched.
    """

    def __init__(self, dim: int | None = None):
        self.dim = dim
        self.count = 0
        self._mean = None if dim is None else np.zeros(dim, np.float64)
        self._m2 = None if dim is None else np.zeros((dim, dim), np.float64)

    def update(self, features, mask=None) -> "FeatureStatistics":
        x = np.asarray(features, np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be [batch, dim], got shape {x.shape}.")
        if mask is not None:
            mask = np.asarray(mask).astype(bool).reshape(-1)
            if mask.shape[0] != x.shape[0]:
                raise ValueError(f"mask has {mask.shape[0]} entries for {x.shape[0]} feature rows.")
            x = x[mask]
        if self.dim is None:
            self.dim = x.shape[1]
            self._mean = np.zeros(self.dim, np.float64)
            self._m2 = np.zeros((self.dim, self.dim), np.float64)
        if x.shape[1] != self.dim:
            raise ValueError(f"features have dimension {x.shape[1]}, the statistics {self.dim}.")
        n_b = x.shape[0]
        if n_b == 0:
            return self
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        m2_b = centred.T @ centred
        n_a = self.count
        total = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / total)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / total)
        self.count = total
        return self

    @property
    def mean(self) -> np.ndarray:
        if not self.count:
            raise ValueError("FeatureStatistics is empty: call update() first.")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (divides by n - 1), as ``np.cov(features, rowvar=False)``."""
        if self.count < 2:
            raise ValueError(f"The covariance needs at least 2 feature vectors, have {self.count}.")
        return self._m2 / (self.count - 1)

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``.npz`` atomically (a temporary file beside ``path``, then ``os.replace``).

        Keys: ``mu`` and ``sigma`` (what pytorch-fid reads from precomputed statistics), plus
        ``count`` and ``m2`` so that ``load`` can resume streaming.
        """
        if not self.count:
            raise ValueError("Refusing to save empty FeatureStatistics.")
        sigma = self.cov if self.count >= 2 else np.full_like(self._m2, np.nan)
        atomic_save_npz(path, {"mu": self._mean, "sigma": sigma, "count": np.int64(self.count), "m2": self._m2})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStatistics":
        with np.load(os.fspath(path)) as f:
            missing = {"mu", "count", "m2"} - set(f.files)
            if missing:
                raise ValueError(f"{path} is not a FeatureStatistics file: missing {sorted(missing)} "
                                 f"(has {sorted(f.files)}); for bare mu/sigma files use load_mu_sigma.")
            stats = cls(int(f["mu"].shape[0]))
            stats._mean = np.asarray(f["mu"], np.float64)
            stats._m2 = np.asarray(f["m2"], np.float64)
            stats.count = int(f["count"])
        return stats

    def __repr__(self) -> str:
        return f"FeatureStatistics(dim={self.dim}, count={self.count})"


def load_mu_sigma(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) from any ``.npz`` with those keys: ours, or pytorch-fid's precomputed statistics."""
    with np.load(os.fspath(path)) as f:
        return np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)


# ----------------------------------------------------------------------------------------------
# Feature extractors and image -> statistics
# ----------------------------------------------------------------------------------------------

class FeatureExtractor(Protocol):
    """``images`` float [B, H, W, C] in [-1, 1] -> features [B, D] (NumPy); jitted inside.

    Implementations may carry ``dim`` (D) as an attribute. Callers keep B fixed (padding the last
    batch) so that a jitted extractor compiles once.
    """

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


ImagesOrBatches = Union[np.ndarray, Iterable]


def _batches(images_or_iterable: ImagesOrBatches, batch_size: int):
    """Yields (batch [batch_size, ...] padded with zeros, mask [batch_size] bool)."""

    def chunks(array):
        array = np.asarray(array, np.float32)
        for start in range(0, array.shape[0], batch_size):
            part = array[start:start + batch_size]
            n = part.shape[0]
            if n < batch_size:
                part = np.concatenate([part, np.zeros((batch_size - n,) + part.shape[1:], part.dtype)])
            mask = np.zeros(batch_size, bool)
            mask[:n] = True
            yield part, mask

    if isinstance(images_or_iterable, np.ndarray) or hasattr(images_or_iterable, "__array__"):
        yield from chunks(images_or_iterable)
        return
    for item in images_or_iterable:
        if isinstance(item, dict):  # a data-pipeline batch
            item = item["image"]
        yield from chunks(item)


def compute_statistics(extractor: FeatureExtractor, images_or_iterable: ImagesOrBatches,
                       batch_size: int = 100) -> FeatureStatistics:
    """Feature statistics of images [N, H, W, C] (or an iterable of such batches, or of dicts with
    an ``"image"`` entry), fed to ``extractor`` in fixed-size batches of ``batch_size``.

    The last (or any short) batch is zero-padded and its padding masked out, so a jitted extractor
    compiles once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    stats = FeatureStatistics()
    for batch, mask in _batches(images_or_iterable, batch_size):
        features = np.asarray(extractor(batch))
        if features.ndim != 2 or features.shape[0] != batch.shape[0]:
            raise ValueError(f"The extractor returned shape {features.shape} for a batch of {batch.shape[0]}; "
                             "expected [batch, dim].")
        stats.update(features, mask)
    if stats.count == 0:
        raise ValueError("compute_statistics got no images.")
    return stats


def frechet_distance_from_statistics(a: FeatureStatistics, b: FeatureStatistics, eps: float = 1e-6) -> float:
    return frechet_distance(a.mean, a.cov, b.mean, b.cov, eps=eps)


def frechet_distance_from_images(extractor: FeatureExtractor, images_a: ImagesOrBatches,
                                 images_b: ImagesOrBatches | FeatureStatistics, batch_size: int = 100) -> float:
    """Frechet distance between the ``extractor`` features of two image sets.

    ``images_b`` may also be precomputed ``FeatureStatistics`` (e.g. of the training set). With the
    Inception extractor this is FID; with the digits classifier it is the "digits FD".
    """
    stats_a = compute_statistics(extractor, images_a, batch_size)
    stats_b = images_b if isinstance(images_b, FeatureStatistics) else compute_statistics(extractor, images_b,
                                                                                            batch_size)
    return frechet_distance_from_statistics(stats_a, stats_b)


# ----------------------------------------------------------------------------------------------
# Classifier (Inception-style) score
# ----------------------------------------------------------------------------------------------

def classifier_score(probs, splits: int = 1) -> float:
    """exp(E_x KL(p(y|x) || p(y))) of a probability matrix [N, K] (Salimans et al. 2016's IS formula).

    p(y) is the mean of the rows. It lies in [1, K]: K for confident predictions spread evenly
    over K classes, 1 when every row is the same. With ``splits`` > 1 the rows are cut into that
    many consecutive chunks and the mean score of the chunks is returned (the IS convention is 10).
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be [N, K], got shape {p.shape}.")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probs rows must be probability vectors (non-negative, summing to 1).")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        # Terms with p(y|x) = 0 contribute 0 (x log x -> 0).
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores))
