"""Streaming GAN dissection: unit-concept IQR thresholds, IoU, interpretable units, top-k samples.

Bau et al., ICLR 2019, "GAN Dissection: Visualizing and Understanding Generative Adversarial
Networks", sec. 3.1 (Characterizing units by dissection). For a generator x = G(z) = f(r), r = h(z),
and a unit u (a channel of the feature map r at one layer):

* the unit map r_u [h, w] is upsampled to the segmentation size, r^_u;
* for every concept c a threshold t_{u,c} is chosen that maximises the *information quality
  ratio* IQR = I(m; s_c) / H(m, s_c) of the mask m = [r^_u > t] against the concept mask
  s_c = [argmax segmenter(x) == c] (paper sec. 3.1; the official ``--gan`` default
  ``quantile_threshold='iqr'``);
* the agreement is IoU_{u,c} = E|m ^ s_c| / E|m v s_c| (paper sec. 3.1), expectations over z and
  pixels;
* a unit is *interpretable* when IQR > 0.01 and IoU > 0.05 (official ``dissection.dissect``
  defaults ``iqr_threshold=0.01``, ``iou_threshold=0.05``), and (official
  ``dissection.generate_report``: ``qualified_iqr[max_iqr_quantile > 0.5] = 0``) unit masks covering
  more than half of all pixels are disqualified.

Procedure (official ``netdissect/dissection.py``, function by function):

* ``collect_iqr``: candidate thresholds are the per-unit quantiles ``1 - fracs`` of the upsampled
  activations, ``fracs = logspace(-3, 0, 100)`` (so candidate t covers a nominal fraction ``fracs[t]``
  of all pixels); the 2x2 joint distribution of (m, s_c) at every candidate gives
  ``mutual_information`` / ``joint_entropy`` (natural log, 0 log 0 = 0, 0/0 -> 0). Before maximising,
  the MI is zeroed at the fraction-1.0 candidate and for concepts covering < 1e-3 of all pixels, and
  the IQR is zeroed where the *agreement* P(m = s_c) <= 0.8 or the threshold level is <= 0. The
  maximising candidate gives ``max_iqr``, ``max_iqr_level`` and ``max_iqr_quantile`` per (concept,
  unit). Here: :func:`select_thresholds`.
* ``score_tally_stats``: IoU = isect / (pred + truth - isect + 1e-20), IQR from the same 2x2 table.
  Here: :func:`iqr_iou_from_counts`.
* ``collect_quantiles_and_topk`` + ``runningstats.RunningTopK``: per unit the top-k samples by the
  *spatial maximum of the raw (not upsampled) unit map*, reported with their sample index
  (``imgnum``) so the images can be regenerated from (seed, index). Here: the final pass of
  :func:`dissect`, ``DissectionResult.top_indices`` / ``top_values``.
* ``upsample_grid`` + ``torch.nn.functional.grid_sample(..., padding_mode='border')``: target pixel
  y samples source coordinate (y + 0.5) * h / H - 0.5, clamped to the border, bilinearly (the
  half-pixel-centre convention, i.e. PyTorch ``interpolate(mode='bilinear', align_corners=False)``).
  Here: :func:`bilinear_upsample`.
* ``__main__``: for ``--gan`` thresholds are fitted on z drawn with seed 2 (``train_dataset``), IoU,
  IQR and top-k measured on z drawn with seed 1 (``dataset``), 10,000 samples each by default.
  Here: ``dissect(seed=1, threshold_seed=2)``; ``threshold_seed=None`` (the default) fits and
  measures on the same samples (one pass fewer).

Deviations from the official code, all deliberate:

* The official code estimates the joint counts at every candidate from *conditional quantile
  sketches* (``RunningConditionalQuantile``, one sketch per concept). Here pass 1 only estimates the
  candidate thresholds (a KLL-style sketch, :class:`RunningQuantile`, over a deterministic random
  subset of ``quantile_pixels`` upsampled pixels per sample), each candidate is snapped to the nearest
  level of a per-unit uniform grid of ``threshold_levels`` levels spanning the unit's observed range,
  and pass 2 counts the joint histogram [U, levels+1, C] of (grid bucket, label) *exactly* on device
  (a scatter-add; no per-pixel search), so IQR, IoU and coverage at every candidate are exact counts
  at the reported thresholds.
* IoU is reported for every (u, c) at that pair's own threshold t_{u,c}; the official code
  re-counts all concepts at the single per-unit level of the unit's best concept (the two agree for
  the best concept, which is what decides interpretability).
* The >50% rule uses the *exact* coverage (fraction of pixels with m = 1 at t_{u,c}) instead of the
  nominal quantile fraction, and it is applied when choosing the best concept (the official
  ``dissect`` comments the rule out when choosing the unit levels and applies it to the report's
  ``iqr_label``); a unit is interpretable only if its best qualified concept passes both thresholds.
* z_i = N(0, I) drawn from ``jax.random.fold_in(PRNGKey(seed), i)`` (:func:`sample_z`), so sample i is
  reproducible from (seed, i) alone, as ``zdataset.standard_z_sample`` intends (numpy RandomState there).

Callables (all must be JAX-traceable: they are jitted together with the per-batch counting):

* ``generate_fn(z [B, latent]) -> (images [B, H, W, 3], unit maps [B, h, w, U])``; build one from
  ``feature_fn`` and ``render_fn`` with :func:`make_generate_fn`.
* ``segment_fn(images) -> class probabilities (or logits) [B, Hs, Ws, C]``; the label map is the argmax.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Official ``collect_iqr``: ``fracs = torch.logspace(-3, 0, 100)``; candidate t thresholds the unit at
# its (1 - fracs[t]) quantile, i.e. nominally covers fracs[t] of all pixels.
DEFAULT_CANDIDATE_FRACTIONS = np.logspace(-3, 0, 100)

GenerateFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
SegmentFn = Callable[[jax.Array], jax.Array]


# ----------------------------------------------------------------------------------------------
# Latents and the generator interface
# ----------------------------------------------------------------------------------------------

def sample_z(seed: int, indices, latent_dim: int) -> jax.Array:
    """Standard-normal latents z_i [len(indices), latent_dim], z_i from fold_in(PRNGKey(seed), i).

    Sample i depends only on (seed, i), so any subset (e.g. a unit's top-k indices) can be
    regenerated (the role of ``netdissect/zdataset.py::standard_z_sample``).
    """
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be positive, got {latent_dim}.")
    indices = jnp.asarray(indices, jnp.int32).reshape(-1)
    return _sample_z(jax.random.PRNGKey(seed), indices, latent_dim)


@functools.partial(jax.jit, static_argnums=2)
def _sample_z(key: jax.Array, indices: jax.Array, latent_dim: int) -> jax.Array:
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (latent_dim,)))(indices)


def make_generate_fn(feature_fn: Callable, render_fn: Callable) -> GenerateFn:
    """``z -> (render_fn(z, alpha=0, value=0), feature_fn(z))``: images and unit maps from the two
    plain callables (``feature_fn(z) -> [B, h, w, U]``, ``render_fn(z, alpha [U], value [U])``)."""

    def generate_fn(z):
        maps = feature_fn(z)
        zeros = jnp.zeros((maps.shape[-1],), maps.dtype)
        return render_fn(z, zeros, zeros), maps

    return generate_fn


# ----------------------------------------------------------------------------------------------
# Upsampling (official ``upsample_grid`` + ``grid_sample(padding_mode='border')``)
# ----------------------------------------------------------------------------------------------

def interpolation_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] linear-interpolation weights with half-pixel centres and border clamping.

    Output pixel y samples source coordinate clip((y + 0.5) * in / out - 0.5, 0, in - 1), the grid of
    the official ``dissection.upsample_grid`` (scale = out / in, offset = 0.5 * scale - 0.5) sampled
    with ``grid_sample(..., padding_mode='border')``.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got in_size={in_size}, out_size={out_size}.")
    src = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    w_hi = src - lo
    matrix = np.zeros((out_size, in_size), np.float64)
    np.add.at(matrix, (np.arange(out_size), lo), 1 - w_hi)
    np.add.at(matrix, (np.arange(out_size), hi), w_hi)
    return matrix.astype(np.float32)


def bilinear_upsample(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of unit maps [B, h, w, U] -> [B, H, W, U] (official ``upsample_grid``)."""
    if maps.ndim != 4:
        raise ValueError(f"maps must be [batch, height, width, units], got shape {maps.shape}.")
    rows = jnp.asarray(interpolation_matrix(maps.shape[1], size[0]))  # [H, h]
    cols = jnp.asarray(interpolation_matrix(maps.shape[2], size[1]))  # [W, w]
    return jnp.einsum("Yy,byxu,Xx->bYXu", rows, maps.astype(jnp.float32), cols,
                      precision=jax.lax.Precision.HIGHEST)


# ----------------------------------------------------------------------------------------------
# Streaming quantiles (pass 1)
# ----------------------------------------------------------------------------------------------

class RunningQuantile:
    """Mergeable randomized quantile sketch over the columns of [N, D] data (NumPy, float32).

    A simplified version of the official ``runningstats.RunningQuantile`` (Karnin, Lang & Liberty
    2016, KLL): levels of equal ``capacity``; a full level is sorted and every other item (random
    offset) promoted to the next level with twice the weight. Extremes are tracked exactly and enter
    the summary with weight 0; ``quantiles`` interpolates the weighted summary at the mid-points of
    the cumulative weights, exactly as the official ``quantiles``. Rank error is about
    log2(N / capacity) / capacity; below ``capacity`` rows the result is exact (mid-point
    convention). The state depends only on the sequence of rows added, not on how they were
    batched.
    """

    def __init__(self, capacity: int = 2048, seed: int = 0):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even integer >= 2, got {capacity}.")
        self.capacity = capacity
        self.seed = seed
        self._rngs: list[np.random.Generator] = []  # one stream per level: batching-independent
        self.depth: int | None = None
        self.levels: list[np.ndarray] = []
        self.size = 0
        self._min = None
        self._max = None

    def add(self, values) -> "RunningQuantile":
        values = np.asarray(values, np.float32)
        if values.ndim != 2:
            raise ValueError(f"values must be [rows, columns], got shape {values.shape}.")
        if self.depth is None:
            self.depth = values.shape[1]
            self.levels = [np.zeros((self.depth, 0), np.float32)]
            self._min = np.full(self.depth, np.inf, np.float32)
            self._max = np.full(self.depth, -np.inf, np.float32)
        if values.shape[1] != self.depth:
            raise ValueError(f"values have {values.shape[1]} columns, the sketch {self.depth}.")
        if values.shape[0] == 0:
            return self
        self.size += values.shape[0]
        self._min = np.minimum(self._min, values.min(0))
        self._max = np.maximum(self._max, values.max(0))
        self.levels[0] = np.concatenate([self.levels[0], values.T], axis=1)
        level = 0
        while level < len(self.levels):
            while self.levels[level].shape[1] >= self.capacity:
                chunk = np.sort(self.levels[level][:, :self.capacity], axis=1)
                self.levels[level] = self.levels[level][:, self.capacity:]
                kept = chunk[:, int(self._level_rng(level).integers(2))::2]
                if level + 1 == len(self.levels):
                    self.levels.append(np.zeros((self.depth, 0), np.float32))
                self.levels[level + 1] = np.concatenate([self.levels[level + 1], kept], axis=1)
            level += 1
        return self

    def minmax(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact per-column (minimum [D], maximum [D]) of everything added."""
        if not self.size:
            raise ValueError("RunningQuantile is empty: call add() first.")
        return self._min.copy(), self._max.copy()

    def _level_rng(self, level: int) -> np.random.Generator:
        while len(self._rngs) <= level:
            self._rngs.append(np.random.default_rng([self.seed, len(self._rngs)]))
        return self._rngs[level]

    def quantiles(self, q) -> np.ndarray:
        """Estimated quantiles [D, len(q)] for q in [0, 1]."""
        if not self.size:
            raise ValueError("RunningQuantile is empty: call add() first.")
        q = np.asarray(q, np.float64).reshape(-1)
        if np.any((q < 0) | (q > 1)):
            raise ValueError(f"quantiles must lie in [0, 1], got {q}.")
        summary = np.concatenate([self._min[:, None], self._max[:, None]] + self.levels, axis=1)
        weights = np.concatenate([np.zeros(2)] + [np.full(lev.shape[1], 2.0 ** i)
                                                  for i, lev in enumerate(self.levels)])
        order = np.argsort(summary, axis=1, kind="stable")
        summary = np.take_along_axis(summary, order, axis=1)
        sorted_weights = weights[order]  # [D, M]
        cumulative = np.cumsum(sorted_weights, axis=1) - sorted_weights / 2
        cumulative /= sorted_weights.sum(axis=1, keepdims=True)
        return np.stack([np.interp(q, cumulative[d], summary[d]) for d in range(self.depth)]
                        ).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# IQR and IoU from counts (official ``score_tally_stats``, ``mutual_information``, ``joint_entropy``)
# ----------------------------------------------------------------------------------------------

def _joint_table(isect, pred, truth, total) -> np.ndarray:
    """[2, 2, ...] joint distribution of (m, s): rows m = 1 / 0, columns s = 1 / 0."""
    isect, pred, truth = (np.asarray(x, np.float64) for x in (isect, pred, truth))
    total = np.asarray(total, np.float64)
    table = np.stack([np.stack([isect, pred - isect]),
                      np.stack([truth - isect, total - pred - truth + isect])])
    return np.clip(table / total, 0.0, 1.0)


def _xlogy_ratio(p, q):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(p / np.where(q > 0, q, 1.0)), 0.0)


def mutual_information(table: np.ndarray) -> np.ndarray:
    """I(m; s) of a [2, 2, ...] joint table, natural log, 0 log 0 = 0, clamped at 0 (official)."""
    rows = table.sum(axis=1, keepdims=True)
    cols = table.sum(axis=0, keepdims=True)
    return np.maximum(_xlogy_ratio(table, rows * cols).sum(axis=(0, 1)), 0.0)


def joint_entropy(table: np.ndarray) -> np.ndarray:
    """H(m, s) of a [2, 2, ...] joint table, natural log, clamped at 0 (official)."""
    return np.maximum(-_xlogy_ratio(table, np.ones_like(table)).sum(axis=(0, 1)), 0.0)


def iqr_iou_from_counts(isect, pred, truth, total) -> tuple[np.ndarray, np.ndarray]:
    """(IQR, IoU) from pixel counts; arrays broadcast together.

    isect = |m ^ s|, pred = |m|, truth = |s|, total = number of pixels. IQR = I(m;s) / H(m,s)
    (0/0 -> 0), IoU = isect / (pred + truth - isect + 1e-20) (paper sec. 3.1); official
    ``dissection.score_tally_stats``.
    """
    if np.any(np.asarray(total) <= 0):
        raise ValueError(f"total must be positive, got {total}.")
    table = _joint_table(isect, pred, truth, total)
    mi, je = mutual_information(table), joint_entropy(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        iqr = np.where(je > 0, mi / np.where(je > 0, je, 1.0), 0.0)
    isect, pred, truth = (np.asarray(x, np.float64) for x in (isect, pred, truth))
    iou = isect / (pred + truth - isect + 1e-20)
    return iqr, iou


@dataclasses.dataclass
class ThresholdSelection:
    """Per (unit, concept) best candidate of :func:`select_thresholds` (arrays [U, C])."""
    index: np.ndarray       # candidate index t*
    threshold: np.ndarray   # t_{u,c}
    iqr: np.ndarray         # max of the masked IQR (official ``max_iqr``)
    iou: np.ndarray         # IoU at t_{u,c} (official ``max_iqr_iou``)
    coverage: np.ndarray    # |m| / total at t_{u,c}
    nominal_fraction: np.ndarray  # candidate fraction at t* (official ``max_iqr_quantile``)


def select_thresholds(isect, pred, truth, total, thresholds, candidate_fractions, *,
                      min_concept_fraction: float = 1e-3, min_agreement: float = 0.8
                      ) -> ThresholdSelection:
    """The IQR-maximising candidate threshold per (unit, concept) (official ``collect_iqr``).

    Args:
      isect: [U, T, C] pixels with m = 1 and label c at candidate t.
      pred: [U, T] pixels with m = 1 at candidate t.
      truth: [C] pixels labelled c.   total: number of pixels.
      thresholds: [U, T] candidate levels.   candidate_fractions: [T] their nominal coverage.
      min_concept_fraction: concepts rarer than this get MI 0 (official 1e-3).
      min_agreement: IQR is zeroed where P(m = s) <= this (official 0.8).
    Candidates with nominal fraction >= 1 get MI 0 and levels <= 0 are skipped, as in the official
    code. Ties go to the first candidate (official order: smallest fraction, highest level first).
    """
    isect = np.asarray(isect, np.int64)
    pred = np.asarray(pred, np.int64)
    truth = np.asarray(truth, np.int64)
    thresholds = np.asarray(thresholds, np.float32)
    fractions = np.asarray(candidate_fractions, np.float64)
    num_units, num_candidates, num_classes = isect.shape
    if pred.shape != (num_units, num_candidates) or thresholds.shape != pred.shape:
        raise ValueError(f"pred {pred.shape} and thresholds {thresholds.shape} must be "
                         f"{(num_units, num_candidates)} to match isect {isect.shape}.")
    if truth.shape != (num_classes,) or fractions.shape != (num_candidates,):
        raise ValueError(f"truth {truth.shape} must be ({num_classes},) and candidate_fractions "
                         f"{fractions.shape} ({num_candidates},).")
    table = _joint_table(isect, pred[:, :, None], truth[None, None, :], total)  # [2, 2, U, T, C]
    mi = mutual_information(table)
    mi[:, fractions >= 1.0, :] = 0.0                                  # "at the 1.0 quantile no MI"
    mi[:, :, truth / total < min_concept_fraction] = 0.0              # too rare to trust
    je = joint_entropy(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        iqr = np.where(je > 0, mi / np.where(je > 0, je, 1.0), 0.0)
    agreement = table[0, 0] + table[1, 1]
    iqr[agreement <= min_agreement] = 0.0
    iqr[np.broadcast_to((thresholds <= 0)[:, :, None], iqr.shape)] = 0.0
    best = np.argmax(iqr, axis=1)                                     # [U, C]
    take = lambda a: np.take_along_axis(a, best[:, None, :], axis=1)[:, 0, :]
    best_isect = take(isect)
    best_pred = np.take_along_axis(pred, best, axis=1)
    union = best_pred + truth[None, :] - best_isect
    return ThresholdSelection(
        index=best,
        threshold=np.take_along_axis(thresholds, best, axis=1),
        iqr=take(iqr),
        iou=best_isect / (union + 1e-20),
        coverage=best_pred / total,
        nominal_fraction=fractions[best])


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class DissectionResult:
    """Dissection of one layer (U units, C concepts, k top samples per unit).

    thresholds [U, C]: t_{u,c}, the IQR-maximising level (on the threshold samples).
    iqr, iou, coverage [U, C]: IQR, IoU and |m|/pixels of [r^_u > t_{u,c}] vs concept c (on the
      dissection samples).
    best_concept [U]: argmax_c of the IQR with masks covering > ``max_coverage`` (and
      ``ignore_classes``) disqualified; unit_threshold [U] = thresholds[u, best_concept[u]].
    interpretable [U]: iqr > iqr_threshold and iou > iou_threshold and coverage <= max_coverage at
      the best concept.
    top_indices, top_values [U, k]: sample indices (z = sample_z(seed, index)) with the largest
      spatial-max activation of the unit, descending.
    concept_fraction [C]: fraction of all pixels labelled c.
    """
    thresholds: np.ndarray
    iqr: np.ndarray
    iou: np.ndarray
    coverage: np.ndarray
    best_concept: np.ndarray
    interpretable: np.ndarray
    top_indices: np.ndarray
    top_values: np.ndarray
    concept_fraction: np.ndarray
    num_samples: int
    seed: int
    threshold_seed: int | None = None
    iqr_threshold: float = 0.01
    iou_threshold: float = 0.05
    max_coverage: float = 0.5
    class_names: tuple[str, ...] | None = None

    _ARRAYS = ("thresholds", "iqr", "iou", "coverage", "best_concept", "interpretable",
               "top_indices", "top_values", "concept_fraction")

    @property
    def num_units(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def unit_threshold(self) -> np.ndarray:
        return self.thresholds[np.arange(self.num_units), self.best_concept]

    @property
    def best_iou(self) -> np.ndarray:
        return self.iou[np.arange(self.num_units), self.best_concept]

    @property
    def best_iqr(self) -> np.ndarray:
        return self.iqr[np.arange(self.num_units), self.best_concept]

    def concept_name(self, c: int) -> str:
        return self.class_names[c] if self.class_names is not None else str(int(c))

    def units_for_concept(self, concept: int) -> np.ndarray:
        """Interpretable units whose best concept is ``concept``, by decreasing IoU."""
        units = np.flatnonzero(self.interpretable & (self.best_concept == concept))
        return units[np.argsort(-self.best_iou[units], kind="stable")]

    def to_dict(self) -> dict:
        out = {name: np.asarray(getattr(self, name)).tolist() for name in self._ARRAYS}
        out.update(num_samples=self.num_samples, seed=self.seed, threshold_seed=self.threshold_seed,
                   iqr_threshold=self.iqr_threshold, iou_threshold=self.iou_threshold,
                   max_coverage=self.max_coverage,
                   class_names=list(self.class_names) if self.class_names is not None else None)
        return out

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> "DissectionResult":
        dtypes = {"best_concept": np.int64, "interpretable": bool, "top_indices": np.int64}
        kwargs = {name: np.asarray(data[name], dtypes.get(name, np.float64)) for name in cls._ARRAYS}
        names = data.get("class_names")
        return cls(**kwargs, num_samples=int(data["num_samples"]), seed=int(data["seed"]),
                   threshold_seed=data.get("threshold_seed"),
                   iqr_threshold=float(data.get("iqr_threshold", 0.01)),
                   iou_threshold=float(data.get("iou_threshold", 0.05)),
                   max_coverage=float(data.get("max_coverage", 0.5)),
                   class_names=tuple(names) if names is not None else None)

    @classmethod
    def from_json(cls, text: str) -> "DissectionResult":
        return cls.from_dict(json.loads(text))

    def markdown_table(self, only_interpretable: bool = False, max_rows: int | None = None) -> str:
        """Units sorted by decreasing IoU at their best concept, one row each."""
        order = np.argsort(-self.best_iou, kind="stable")
        if only_interpretable:
            order = order[self.interpretable[order]]
        if max_rows is not None:
            order = order[:max_rows]
        lines = ["| unit | concept | IoU | IQR | threshold | coverage | interpretable |",
                 "|---:|---|---:|---:|---:|---:|:---:|"]
        for u in order:
            c = self.best_concept[u]
            lines.append(f"| {u} | {self.concept_name(c)} | {self.iou[u, c]:.3f} | {self.iqr[u, c]:.3f} | "
                         f"{self.thresholds[u, c]:.3g} | {self.coverage[u, c]:.3f} | "
                         f"{'yes' if self.interpretable[u] else 'no'} |")
        return "\n".join(lines)

    def concept_summary_markdown(self) -> str:
        """Number of interpretable units per concept (the paper's per-layer bar charts)."""
        counts = np.bincount(self.best_concept[self.interpretable], minlength=self.iou.shape[1])
        lines = ["| concept | pixel fraction | interpretable units | mean IoU |", "|---|---:|---:|---:|"]
        for c in np.argsort(-counts, kind="stable"):
            units = self.units_for_concept(c)
            mean_iou = f"{self.iou[units, c].mean():.3f}" if len(units) else "-"
            lines.append(f"| {self.concept_name(c)} | {self.concept_fraction[c]:.4f} | {counts[c]} | {mean_iou} |")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Jitted per-batch work
# ----------------------------------------------------------------------------------------------

def _labels_and_maps(generate_fn, segment_fn, key, indices, latent_dim):
    z = _sample_z(key, indices, latent_dim)
    images, maps = generate_fn(z)
    labels = jnp.argmax(segment_fn(images), axis=-1).astype(jnp.int32)  # [B, Hs, Ws]
    upsampled = bilinear_upsample(maps, labels.shape[1:3])               # [B, Hs, Ws, U]
    unit_max = jnp.max(maps.reshape(maps.shape[0], -1, maps.shape[-1]), axis=1)  # [B, U]
    return labels, upsampled, unit_max


@functools.lru_cache(maxsize=4)  # repeated dissections of one generator reuse the compiled steps
def _make_quantile_batch(generate_fn, latent_dim, seg_size, num_pixels):
    """indices -> upsampled unit values at ``num_pixels`` deterministic random pixels [B, P, U]."""
    height, width = seg_size

    @jax.jit
    def batch_fn(key, pixel_key, indices):
        z = _sample_z(key, indices, latent_dim)
        _, maps = generate_fn(z)
        upsampled = bilinear_upsample(maps, seg_size).reshape(maps.shape[0], height * width, -1)
        if num_pixels is None:
            return upsampled
        positions = jax.vmap(lambda i: jax.random.permutation(
            jax.random.fold_in(pixel_key, i), height * width)[:num_pixels])(indices)  # [B, P]
        return jnp.take_along_axis(upsampled, positions[:, :, None], axis=1)

    return batch_fn


@functools.lru_cache(maxsize=4)
def _make_count_batch(generate_fn, segment_fn, latent_dim, num_classes, num_levels):
    """indices, valid, grid (low [U], width [U]) -> (histogram [U, L+1, C] int32, unit max [B, U]).

    The grid has L levels e_j = low + j * width, j < L. bucket(a) = clip(ceil((a - low) / width), 0, L)
    is the number of levels strictly below a, so [a > e_j] <=> bucket(a) > j, and suffix sums of
    histogram[u, :, c] give |[r^_u > e_j] ^ s_c| at every level (exact; values outside the grid fall
    into bucket 0 or L, which is still exact).
    """
    num_buckets = num_levels + 1

    @jax.jit
    def batch_fn(key, indices, valid, low, width):
        labels, upsampled, unit_max = _labels_and_maps(generate_fn, segment_fn, key, indices, latent_dim)
        num_units = upsampled.shape[-1]
        offsets = jnp.arange(num_units, dtype=jnp.int32)[None, :] * num_buckets

        def add_image(hist, args):  # a scan over the images bounds memory to one image's pixels
            values, label, ok = args
            values = values.reshape(-1, num_units)                                          # [P, U]
            bucket = jnp.clip(jnp.ceil((values - low) / width), 0, num_levels).astype(jnp.int32)
            flat = (offsets + bucket) * num_classes + label.reshape(-1, 1)                  # [P, U]
            return hist.at[flat.reshape(-1)].add(ok.astype(jnp.int32)), None

        hist = jnp.zeros(num_units * num_buckets * num_classes, jnp.int32)
        hist, _ = jax.lax.scan(add_image, hist, (upsampled, labels, valid))
        unit_max = jnp.where(valid[:, None], unit_max, -jnp.inf)
        return hist.reshape(num_units, num_buckets, num_classes), unit_max

    return batch_fn


@jax.jit
def _merge_top_k(values, indices, batch_values, batch_indices):
    """Running top-k (official ``RunningTopK``): [U, k] state merged with a batch [B, U]."""
    k = values.shape[1]
    all_values = jnp.concatenate([values, batch_values.T], axis=1)            # [U, k + B]
    all_indices = jnp.concatenate(
        [indices, jnp.broadcast_to(batch_indices[None, :], (values.shape[0], batch_indices.shape[0]))], axis=1)
    top_values, position = jax.lax.top_k(all_values, k)
    return top_values, jnp.take_along_axis(all_indices, position, axis=1)


def _batches(num_samples: int, batch_size: int):
    for start in range(0, num_samples, batch_size):
        indices = np.arange(start, start + batch_size, dtype=np.int32)
        yield indices, indices < num_samples


def _counts_at_levels(hist: np.ndarray, level_index: np.ndarray):
    """(isect [U, T, C], pred [U, T], truth [C], total) at grid levels ``level_index`` [U, T]."""
    suffix = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]        # suffix[u, b] = sum_{b' >= b} hist[u, b']
    isect = np.take_along_axis(suffix, (level_index + 1)[:, :, None], axis=1)  # bucket > j
    truth = hist[0].sum(axis=0)
    return isect, isect.sum(axis=2), truth, int(truth.sum())


def _histogram_pass(count_batch, key, num_samples, batch_size, low, width, top_k):
    """The [U, L+1, C] histogram (int64) and the running top-k over one sample set."""
    low, width = jnp.asarray(low, jnp.float32), jnp.asarray(width, jnp.float32)
    num_units = low.shape[0]
    hist = None
    top_values = jnp.full((num_units, top_k), -jnp.inf, jnp.float32)
    top_indices = jnp.full((num_units, top_k), -1, jnp.int32)
    for indices, valid in _batches(num_samples, batch_size):
        batch_hist, unit_max = count_batch(key, jnp.asarray(indices), jnp.asarray(valid), low, width)
        batch_hist = np.asarray(batch_hist, np.int64)
        hist = batch_hist if hist is None else hist + batch_hist
        top_values, top_indices = _merge_top_k(top_values, top_indices, unit_max.astype(jnp.float32),
                                               jnp.asarray(indices))
    return hist, (np.asarray(top_values), np.asarray(top_indices, np.int64))


def threshold_grid(minimum, maximum, num_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(low [U], width [U]) of the per-unit grid of ``num_levels`` levels spanning [minimum, maximum]."""
    low = np.asarray(minimum, np.float32)
    span = np.asarray(maximum, np.float32) - low
    width = np.where(span > 0, span / (num_levels - 1), 1.0).astype(np.float32)
    return low, width


def snap_to_grid(values, low, width, num_levels: int) -> np.ndarray:
    """Index [U, T] of the grid level nearest to each of ``values`` [U, T]."""
    index = np.rint((np.asarray(values, np.float64) - low[:, None]) / width[:, None])
    return np.clip(index, 0, num_levels - 1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Dissection
# ----------------------------------------------------------------------------------------------

def dissect(generate_fn: GenerateFn, segment_fn: SegmentFn, *, latent_dim: int, num_samples: int,
            seed: int = 1, threshold_seed: int | None = None, batch_size: int = 100, top_k: int = 100,
            candidate_fractions=None, quantile_pixels: int | None = 64,
            quantile_capacity: int = 2048, threshold_levels: int = 1024, iqr_threshold: float = 0.01, iou_threshold: float = 0.05,
            max_coverage: float = 0.5, min_concept_fraction: float = 1e-3, min_agreement: float = 0.8,
            ignore_classes: Sequence[int] = (), class_names: Sequence[str] | None = None
            ) -> DissectionResult:
    """Streaming IQR/IoU dissection of one layer over ``num_samples`` generated samples.

    Args:
      generate_fn: z [B, latent_dim] -> (images [B, H, W, 3], unit maps [B, h, w, U]); jittable.
      segment_fn: images -> class scores [B, Hs, Ws, C] (argmax = label map); jittable. Unit maps are
        upsampled to (Hs, Ws).
      latent_dim: size of z.   num_samples: N, the samples z_i = sample_z(seed, i), i < N.
      seed: seed of the dissection samples (IoU, IQR, top-k; official ``dataset``, seed 1).
      threshold_seed: if given, thresholds are fitted on N other samples drawn with this seed and
        the statistics re-measured on ``seed``'s samples at those thresholds (official ``--gan``:
        ``train_dataset`` seed 2), one extra pass; None fits and measures on the same samples.
      batch_size: samples per jitted step (the last batch is padded and masked).
      top_k: samples kept per unit by spatial-max activation (official ``examples_per_unit``).
      candidate_fractions: [T] nominal coverages of the candidate thresholds; candidate t is the
        (1 - fraction_t) quantile of the unit's upsampled activations (None: the official
        ``DEFAULT_CANDIDATE_FRACTIONS`` = logspace(-3, 0, 100)).
      quantile_pixels: upsampled pixels per sample fed to the quantile sketch (deterministic random
        subset, None = all pixels).   quantile_capacity: sketch level size (accuracy ~ 1/capacity).
      threshold_levels: L, the per-unit uniform grid of levels spanning the unit's observed range that
        the candidates are snapped to (resolution (max - min) / (L - 1)); the counts are exact there.
      iqr_threshold, iou_threshold: interpretability criteria (official 0.01, 0.05).
      max_coverage: masks covering more than this fraction are disqualified (official 0.5).
      min_concept_fraction, min_agreement: see :func:`select_thresholds` (official 1e-3, 0.8).
      ignore_classes: labels never chosen as a unit's concept (e.g. an "unlabelled" class 0, which
        the official ``collect_bincounts`` skips).
      class_names: optional names for the report.

    Passes over the samples (each a jitted step per batch; nothing per-sample is kept on the host
    but the top-k state): 1) quantile sketch -> candidate thresholds [U, T] (snapped to the grid);
    2) exact joint histogram [U, L+1, C] of (grid bucket, label) on device -> counts at every
    candidate -> t_{u,c}, IQR, IoU, coverage, top-k; 3) only with ``threshold_seed``: the same
    histogram on the dissection samples, read at t_{u,c}.
    """
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size), ("top_k", top_k),
                        ("latent_dim", latent_dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if quantile_pixels is not None and quantile_pixels < 1:
        raise ValueError(f"quantile_pixels must be positive or None, got {quantile_pixels}.")
    if candidate_fractions is None:
        candidate_fractions = DEFAULT_CANDIDATE_FRACTIONS
    fractions = np.asarray(candidate_fractions, np.float64).reshape(-1)
    if fractions.size == 0 or np.any((fractions <= 0) | (fractions > 1)):
        raise ValueError(f"candidate_fractions must be non-empty and in (0, 1], got {fractions}.")
    if isinstance(threshold_levels, bool) or not isinstance(threshold_levels, (int, np.integer)) \
            or threshold_levels < 2:
        raise ValueError(f"threshold_levels must be an integer >= 2, got {threshold_levels!r}.")
    if not 0 < max_coverage <= 1:
        raise ValueError(f"max_coverage must be in (0, 1], got {max_coverage}.")
    top_k = min(top_k, num_samples)

    z_spec = jax.ShapeDtypeStruct((batch_size, latent_dim), jnp.float32)
    images_spec, maps_spec = jax.eval_shape(generate_fn, z_spec)
    if len(maps_spec.shape) != 4 or maps_spec.shape[0] != batch_size:
        raise ValueError(f"generate_fn must return unit maps [batch, h, w, units]; got {maps_spec.shape}.")
    seg_spec = jax.eval_shape(segment_fn, images_spec)
    if len(seg_spec.shape) != 4 or seg_spec.shape[0] != batch_size:
        raise ValueError(f"segment_fn must return class scores [batch, H, W, classes]; got {seg_spec.shape}.")
    seg_size, num_classes = tuple(seg_spec.shape[1:3]), int(seg_spec.shape[3])
    bad = [c for c in ignore_classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"ignore_classes {bad} outside [0, {num_classes}).")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes.")
    num_pixels = None if quantile_pixels is None or quantile_pixels >= seg_size[0] * seg_size[1] \
        else int(quantile_pixels)

    fit_seed = seed if threshold_seed is None else threshold_seed
    fit_key = jax.random.PRNGKey(fit_seed)

    # Pass 1: candidate thresholds from streaming quantiles of the upsampled activations.
    quantile_batch = _make_quantile_batch(generate_fn, latent_dim, seg_size, num_pixels)
    sketch = RunningQuantile(quantile_capacity, seed=fit_seed)
    pixel_key = jax.random.fold_in(fit_key, 0x5EED)
    for indices, valid in _batches(num_samples, batch_size):
        values = np.asarray(quantile_batch(fit_key, pixel_key, jnp.asarray(indices)))
        sketch.add(values[valid].reshape(-1, values.shape[-1]))
    low, width = threshold_grid(*sketch.minmax(), threshold_levels)
    levels = snap_to_grid(sketch.quantiles(1.0 - fractions), low, width, threshold_levels)  # [U, T]
    candidates = low[:, None] + levels * width[:, None]

    # Pass 2: exact joint counts at every grid level; the IQR-maximising candidate per (u, c).
    count_batch = _make_count_batch(generate_fn, segment_fn, latent_dim, num_classes, threshold_levels)
    hist, top = _histogram_pass(count_batch, fit_key, num_samples, batch_size, low, width, top_k)
    isect, pred, truth, total = _counts_at_levels(hist, levels)
    chosen = select_thresholds(isect, pred, truth, total, candidates, fractions,
                               min_concept_fraction=min_concept_fraction, min_agreement=min_agreement)
    qualified = np.where(chosen.coverage > max_coverage, 0.0, chosen.iqr)
    qualified[:, list(ignore_classes)] = -1.0
    best_concept = np.argmax(qualified, axis=1)
    iqr, iou, coverage, concept_fraction = chosen.iqr, chosen.iou, chosen.coverage, truth / total

    # Pass 3 (official split): re-measure at t_{u,c} on the dissection samples.
    if threshold_seed is not None:
        hist, top = _histogram_pass(count_batch, jax.random.PRNGKey(seed), num_samples, batch_size, low, width,
                                    top_k)
        isect, pred, truth, total = _counts_at_levels(hist, np.take_along_axis(levels, chosen.index, axis=1))
        diagonal = np.arange(num_classes)
        isect = isect[:, diagonal, diagonal]                             # [U, C] at t_{u,c}
        iqr, iou = iqr_iou_from_counts(isect, pred, truth[None, :], total)
        coverage, concept_fraction = pred / total, truth / total

    units = np.arange(iou.shape[0])
    interpretable = ((iqr[units, best_concept] > iqr_threshold) & (iou[units, best_concept] > iou_threshold)
                     & (coverage[units, best_concept] <= max_coverage))
    for c in ignore_classes:
        interpretable &= best_concept != c
    top_values, top_indices = top
    return DissectionResult(
        thresholds=chosen.threshold.astype(np.float32), iqr=np.asarray(iqr, np.float64),
        iou=np.asarray(iou, np.float64), coverage=np.asarray(coverage, np.float64),
        best_concept=best_concept.astype(np.int64), interpretable=interpretable,
        top_indices=top_indices, top_values=top_values.astype(np.float64),
        concept_fraction=np.asarray(concept_fraction, np.float64), num_samples=int(num_samples), seed=int(seed),
        threshold_seed=None if threshold_seed is None else int(threshold_seed),
        iqr_threshold=float(iqr_threshold), iou_threshold=float(iou_threshold), max_coverage=float(max_coverage),
        class_names=tuple(class_names) if class_names is not None else None)
