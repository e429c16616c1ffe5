"""Interventions on GAN units: ablation, insertion, average causal effect, unit-set optimisation.

Bau et al., ICLR 2019, "GAN Dissection", sec. 3.2 (Measuring causal relationships using
intervention). With r = h(z) split into the units U and the rest, the generator is run with the
units forced: ablation r_{U,P} := 0, insertion r_{U,P} := k. The *average causal effect* of U on
class c is

    delta_{U->c} = E_{z,P}[ s_c(f(r with U := k)) ] - E_{z,P}[ s_c(f(r with U := 0)) ]

and the unit set is found by relaxing U to alpha in [0, 1]^d,

    r' = (1 - alpha) . r + alpha . k,      alpha* = argmin_alpha  -delta_alpha + lambda ||alpha||^2

(with ``render_fn(z, alpha, value)`` implementing r' at the dissected layer).

Official code, ``netdissect/aceoptimize.py``:

* ``compute_present_locations``: search 10,000 z (seed 10); per image the class mask is average-pooled
  to the feature grid (``adaptive_avg_pool2d``) and its maximum cell is the image's presence; the
  top ``train_size + eval_size`` (1,000 + 200) images, sorted by index, split into the first 1,000 for
  training and the last 200 for evaluation. ``weighted_mean_present_feature`` = sum over images and
  cells of r * pooled mask / sum of pooled mask: the insertion value k (default variant; ``_h99``
  and ``_tcm`` use the 99th percentile / the mean at the best cell). Here: :func:`class_statistics`,
  :func:`select_samples`.
* ``compute_candidate_locations``: a second 10,000 z (seed 11), locations where inserting k raises
  the class and where the class is absent. ``ace_loss``: ablate alpha at the present location
  (replacement 0) and add the class probability that remains there; insert alpha * k at the
  candidate location and subtract the class probability there (the official code indexes the
  insertion effect with ``ploc``, the present location, where ``cloc`` is evidently meant; here it
  is read at the candidate pixels); ``train_ablation``: Adam, lr 0.01,
  l2_lambda 0.005 (scaled by the 20 samples of one update: batches of 2, 10 batches per update),
  ``ablation.clamp_(0, 1)`` after every step, 10 epochs, alpha initialised from the dissection IoU
  ranking (iou / max iou); evaluation of the top 20 units (``dboth20``: top-20 alpha set to 1,
  hard class pixels).

Deviations (deliberate): interventions here act on *every* location of the feature map (the
``render_fn`` contract has one alpha per unit, broadcast over space; the official code has the
full-image variants ``_fim`` / ``_fia``), so the present term is the class probability remaining at
the pixels where the class was present before the ablation, and the insertion term the class
probability gained at the pixels where it was absent ("candidate locations"); candidate samples
are those with the least class (:func:`select_samples` with ``largest=False``) rather than those
where a single-location insertion worked. Per-sample terms are means over those pixels (in [0, 1],
like the official per-cell average), so lambda = 0.005 keeps its meaning; a 20-sample batch mean
with lambda ||alpha||^2 gives the same gradient direction as the official 20-sample sum with
20 * lambda ||alpha||^2.

Insertion at a location (sec. 4.3, Figs. 8-9: "inserting door units at one pixel of the featuremap"):
:func:`insertion_at_locations` sets the units to k inside one ``window x window`` square of the
featuremap (alpha [1, h, w, U], the rest untouched), at every location in turn, and measures the
class pixels gained inside the square's image region; its mean per location is the context map.

Callables (JAX-traceable; jitted with the per-batch work):

* ``render_fn(z [B, latent], alpha [U], value [U]) -> images [B, H, W, 3]``, r' = (1 - alpha) r + alpha value
  at the layer (alpha = 0: no change), differentiable in alpha;
* ``generate_fn(z) -> (images, unit maps [B, h, w, U])`` (see ``dissection.make_generate_fn``);
* ``segment_fn(images) -> class probabilities [B, Hs, Ws, C]`` (argmax = label map).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmodels.projects.gan_dissection.dissection import GenerateFn, SegmentFn, sample_z
from jaxmodels.training.step import gradient_step

RenderFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


# ----------------------------------------------------------------------------------------------
# Small pieces
# ----------------------------------------------------------------------------------------------

def blend(features: jax.Array, alpha, value) -> jax.Array:
    """r' = (1 - alpha) * r + alpha * value (paper sec. 3.2) for features [B, h, w, U].

    alpha: [U] or [B, U] in [0, 1]; value: scalar, [U] or [B, U]. alpha = 0 leaves r unchanged,
    alpha = 1 with value = 0 ablates, alpha = 1 with value = k inserts.
    """
    alpha = jnp.asarray(alpha, features.dtype)
    value = jnp.asarray(value, features.dtype)
    if alpha.ndim == 2:
        alpha = alpha[:, None, None, :]
    if value.ndim == 2:
        value = value[:, None, None, :]
    return (1 - alpha) * features + alpha * value


def unit_alpha(units: Sequence[int], num_units: int) -> np.ndarray:
    """alpha [num_units] with 1 at ``units`` and 0 elsewhere (a hard unit set)."""
    units = np.asarray(list(units), np.int64)
    if units.size and (units.min() < 0 or units.max() >= num_units):
        raise ValueError(f"units {units.tolist()} outside [0, {num_units}).")
    alpha = np.zeros(num_units, np.float32)
    alpha[units] = 1.0
    return alpha


def adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] averaging weights of PyTorch ``adaptive_avg_pool`` (bin i = [floor(i*in/out),
    ceil((i+1)*in/out)))."""
    matrix = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start, end = (i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool(masks: jax.Array, size: tuple[int, int]) -> jax.Array:
    """[B, H, W] -> [B, h, w] (official ``torch.nn.functional.adaptive_avg_pool2d``)."""
    rows = jnp.asarray(adaptive_pool_matrix(masks.shape[1], size[0]))
    cols = jnp.asarray(adaptive_pool_matrix(masks.shape[2], size[1]))
    return jnp.einsum("yY,bYX,xX->byx", rows, masks, cols, precision=jax.lax.Precision.HIGHEST)


def initial_alpha_from_iou(iou_for_class) -> np.ndarray:
    """The official initialisation (``aceoptimize.initial_ablation``): IoU_{u,c} / max_u IoU_{u,c}."""
    iou = np.asarray(iou_for_class, np.float32)
    top = iou.max(initial=0.0)
    return iou / top if top > 0 else np.zeros_like(iou)


def _check_positive_int(**kwargs):
    for name, value in kwargs.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _latents(z, seed, num_samples, latent_dim) -> np.ndarray:
    if z is not None:
        z = np.asarray(z, np.float32)
        if z.ndim != 2:
            raise ValueError(f"z must be [samples, latent_dim], got shape {z.shape}.")
        return z
    if num_samples is None or latent_dim is None:
        raise ValueError("pass either z or both num_samples and latent_dim.")
    _check_positive_int(num_samples=num_samples, latent_dim=latent_dim)
    return np.asarray(sample_z(seed, np.arange(num_samples), latent_dim))


def _padded_batches(z: np.ndarray, batch_size: int):
    """(z batch [batch_size, latent] zero-padded, valid [batch_size]) covering all rows of z."""
    for start in range(0, z.shape[0], batch_size):
        part = z[start:start + batch_size]
        valid = np.zeros(batch_size, bool)
        valid[:part.shape[0]] = True
        if part.shape[0] < batch_size:
            part = np.concatenate([part, np.zeros((batch_size - part.shape[0], z.shape[1]), z.dtype)])
        yield jnp.asarray(part), jnp.asarray(valid)


def _class_mask(segment_fn, images, class_id):
    return (jnp.argmax(segment_fn(images), axis=-1) == class_id).astype(jnp.float32)  # [B, Hs, Ws]


# ----------------------------------------------------------------------------------------------
# Class statistics: presence per sample and the insertion value k
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ClassStatistics:
    """Per-sample class presence and the insertion value of one class (``aceoptimize`` phase 1).

    fraction [N]: fraction of the sample's pixels labelled c.
    presence [N]: max over feature cells of the cell's class fraction (official
      ``object_presence_at_image``); location [N]: that cell (flat index).
    insertion_value [U]: k = sum r * pooled mask / sum pooled mask (official
      ``weighted_mean_present_feature``): the mean activation where the class is present.
    """
    class_id: int
    seed: int
    fraction: np.ndarray
    presence: np.ndarray
    location: np.ndarray
    insertion_value: np.ndarray


@functools.lru_cache(maxsize=4)
def _class_statistics_step(generate_fn, segment_fn, class_id):
    @jax.jit
    def step(z, valid):
        images, maps = generate_fn(z)
        mask = _class_mask(segment_fn, images, class_id)                         # [B, Hs, Ws]
        score = adaptive_avg_pool(mask, maps.shape[1:3])                         # [B, h, w]
        score = score * valid[:, None, None]
        flat = score.reshape(score.shape[0], -1)
        weighted = jnp.einsum("bhwu,bhw->u", maps.astype(jnp.float32), score,
                              precision=jax.lax.Precision.HIGHEST)
        return mask.mean((1, 2)), flat.max(1), jnp.argmax(flat, 1), weighted, score.sum()

    return step


def class_statistics(generate_fn: GenerateFn, segment_fn: SegmentFn, class_id: int, *, latent_dim: int,
                     num_samples: int, seed: int = 10, batch_size: int = 100) -> ClassStatistics:
    """Presence of class ``class_id`` in z_i = sample_z(seed, i), i < num_samples, and its k.

    Official ``aceoptimize.compute_present_locations`` (search set: 10,000 z, seed 10).
    """
    _check_positive_int(num_samples=num_samples, batch_size=batch_size, latent_dim=latent_dim)
    step = _class_statistics_step(generate_fn, segment_fn, int(class_id))
    fractions, presences, locations = [], [], []
    weighted, total = 0.0, 0.0
    z = np.asarray(sample_z(seed, np.arange(num_samples), latent_dim))
    for z_batch, valid in _padded_batches(z, batch_size):
        fraction, presence, location, batch_weighted, batch_total = step(z_batch, valid)
        n = int(valid.sum())
        fractions.append(np.asarray(fraction)[:n])
        presences.append(np.asarray(presence)[:n])
        locations.append(np.asarray(location)[:n])
        weighted = weighted + np.asarray(batch_weighted, np.float64)
        total += float(batch_total)
    return ClassStatistics(class_id=int(class_id), seed=int(seed), fraction=np.concatenate(fractions),
                           presence=np.concatenate(presences), location=np.concatenate(locations),
                           insertion_value=(weighted / (1e-20 + total)).astype(np.float32))


def select_samples(scores, num_train: int, num_eval: int, *, largest: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, eval indices): the ``num_train + num_eval`` samples with the largest (or
    smallest) score, sorted by index, split into the first ``num_train`` and the last ``num_eval``
    (official ``compute_present_locations`` / ``compute_candidate_locations``)."""
    scores = np.asarray(scores)
    _check_positive_int(num_train=num_train)
    if num_eval < 0 or num_train + num_eval > scores.shape[0]:
        raise ValueError(f"num_train + num_eval = {num_train + num_eval} must be at most the "
                         f"{scores.shape[0]} scores (and num_eval >= 0).")
    order = np.argsort(-scores if largest else scores, kind="stable")
    chosen = np.sort(order[:num_train + num_eval])
    return chosen[:num_train], chosen[num_train:]


# ----------------------------------------------------------------------------------------------
# Average causal effect (paper sec. 3.2)
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _class_score_step(render_fn, segment_fn, class_id):
    @jax.jit
    def step(z, valid, alphas, values):
        """Soft and hard class-c pixel sums [A] of the batch under each (alpha, value) row."""

        def one(args):
            alpha, value = args
            probs = segment_fn(render_fn(z, alpha, value))
            weight = valid[:, None, None].astype(jnp.float32)
            soft = jnp.sum(probs[..., class_id] * weight)
            hard = jnp.sum((jnp.argmax(probs, -1) == class_id) * weight)
            return soft, hard, jnp.sum(jnp.ones(probs.shape[:3]) * weight)

        return jax.lax.map(one, (alphas, values))

    return step


def _class_pixel_sums(render_fn, segment_fn, class_id, z, alphas, values, batch_size):
    """Summed soft / hard class pixels and pixel count under each of the A interventions."""
    step = _class_score_step(render_fn, segment_fn, int(class_id))
    alphas, values = jnp.asarray(alphas, jnp.float32), jnp.asarray(values, jnp.float32)
    soft = hard = pixels = 0.0
    for z_batch, valid in _padded_batches(z, batch_size):
        batch_soft, batch_hard, batch_pixels = step(z_batch, valid, alphas, values)
        soft = soft + np.asarray(batch_soft, np.float64)
        hard = hard + np.asarray(batch_hard, np.float64)
        pixels = pixels + np.asarray(batch_pixels, np.float64)
    return soft, hard, pixels


def average_causal_effect(render_fn: RenderFn, segment_fn: SegmentFn, class_id: int, units: Sequence[int],
                          insertion_value, *, z=None, latent_dim: int | None = None,
                          num_samples: int | None = None, seed: int = 0, batch_size: int = 100) -> dict:
    """delta_{U->c} = E_{z,P}[s_c(f(r with U := k))] - E_{z,P}[s_c(f(r with U := 0))] (paper sec. 3.2).

    Args:
      units: the unit set U.   insertion_value: k [num_units] (e.g. ``ClassStatistics.insertion_value``).
      z: latents [N, latent] to average over, or None for sample_z(seed, range(num_samples), latent_dim).
    Returns a dict: ``ace`` with s_c the segmentation mask [argmax = c] (pixel fractions), ``ace_soft``
    with s_c the class probability, and the underlying means ``inserted`` / ``ablated`` / ``original``
    (hard) and ``*_soft``.
    """
    k = np.asarray(insertion_value, np.float32).reshape(-1)
    z = _latents(z, seed, num_samples, latent_dim)
    _check_positive_int(batch_size=batch_size)
    alpha = unit_alpha(units, k.shape[0])
    zeros = np.zeros_like(k)
    alphas = np.stack([alpha, alpha, zeros])
    values = np.stack([k, zeros, zeros])
    soft, hard, pixels = _class_pixel_sums(render_fn, segment_fn, class_id, z, alphas, values, batch_size)
    soft, hard = soft / pixels, hard / pixels
    return dict(ace=float(hard[0] - hard[1]), ace_soft=float(soft[0] - soft[1]),
                inserted=float(hard[0]), ablated=float(hard[1]), original=float(hard[2]),
                inserted_soft=float(soft[0]), ablated_soft=float(soft[1]), original_soft=float(soft[2]),
                units=[int(u) for u in units], num_samples=int(z.shape[0]))


# ----------------------------------------------------------------------------------------------
# Relaxed unit-set optimisation (paper sec. 3.2; official ``aceoptimize.train_ablation``)
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class UnitSetResult:
    """alpha [U] after training; ranking [U]: units by decreasing alpha (ties by unit index).

    train_loss [epochs]: mean data term over each epoch; eval_loss [epochs + 1]: data term on the
    eval samples before training and after each epoch; eval_top_n_loss [epochs + 1]: the same with
    the top ``top_n`` units set to alpha = 1 and hard class pixels (official ``dboth20``).
    """
    alpha: np.ndarray
    ranking: np.ndarray
    train_loss: np.ndarray
    eval_loss: np.ndarray
    eval_top_n_loss: np.ndarray
    top_n: int

    def top_units(self, n: int | None = None) -> np.ndarray:
        return self.ranking[:self.top_n if n is None else n]


def _ace_terms(render_fn, segment_fn, class_id, alpha, insertion_value, z_present, z_candidate, hard: bool):
    """Per-sample (erase [B], add [B]) of the full-image ACE loss.

    erase: class score remaining at the originally-present pixels after ablating alpha (value 0);
    add: class score at the originally-absent pixels after inserting alpha * k.
    """
    zeros = jnp.zeros_like(insertion_value)

    def score(images):
        probs = segment_fn(images)
        if hard:
            return (jnp.argmax(probs, -1) == class_id).astype(jnp.float32)
        return probs[..., class_id]

    present = jax.lax.stop_gradient(_class_mask(segment_fn, render_fn(z_present, zeros, zeros), class_id))
    erased = score(render_fn(z_present, alpha, zeros))
    erase = jnp.sum(erased * present, (1, 2)) / jnp.maximum(jnp.sum(present, (1, 2)), 1.0)
    absent = 1.0 - jax.lax.stop_gradient(
        _class_mask(segment_fn, render_fn(z_candidate, zeros, zeros), class_id))
    added = score(render_fn(z_candidate, alpha, insertion_value))
    add = jnp.sum(added * absent, (1, 2)) / jnp.maximum(jnp.sum(absent, (1, 2)), 1.0)
    return erase, add


def _weighted_data_term(erase, add, weight):
    return jnp.sum(weight * (erase - add)) / jnp.maximum(jnp.sum(weight), 1.0)


def _paired_batches(num_present: int, num_candidate: int, batch_size: int, rng: np.random.Generator | None):
    """Index batches pairing present and candidate samples (the shorter list cycles); weights mask padding."""
    present = rng.permutation(num_present) if rng is not None else np.arange(num_present)
    candidate = rng.permutation(num_candidate) if rng is not None else np.arange(num_candidate)
    count = max(num_present, num_candidate)
    for start in range(0, count, batch_size):
        positions = np.arange(start, start + batch_size)
        yield present[positions % num_present], candidate[positions % num_candidate], \
            (positions < count).astype(np.float32)


def optimize_unit_set(render_fn: RenderFn, segment_fn: SegmentFn, class_id: int, insertion_value,
                      present_z, candidate_z, *, eval_present_z=None, eval_candidate_z=None, init_alpha=None,
                      learning_rate: float = 0.01, l2_lambda: float = 0.005, epochs: int = 10,
                      batch_size: int = 20, top_n: int = 20, seed: int = 0) -> UnitSetResult:
    """Relaxed unit-set search for class ``class_id`` (paper sec. 3.2, official ``train_ablation``).

    Minimises  mean_i [erase_i(alpha) - add_i(alpha)] + l2_lambda ||alpha||^2  over alpha in [0, 1]^U
    with Adam (``optax.adam(learning_rate)``) and clipping to [0, 1] after every step.

    Args:
      insertion_value: k [U].   present_z: [Np, latent] samples where the class is present (training).
      candidate_z: [Nc, latent] samples where it is absent (insertion targets).
      eval_present_z, eval_candidate_z: held-out sets for the per-epoch evaluation (default: the
        training sets).   init_alpha: [U] start (official: :func:`initial_alpha_from_iou`; default 0).
      learning_rate, l2_lambda, epochs: official 0.01, 0.005, 10.   batch_size: samples per update
        (official 2 x 10 accumulated = 20).   top_n: units set to 1 in the discrete evaluation
        (official 20).   seed: shuffling.
    """
    k = jnp.asarray(insertion_value, jnp.float32).reshape(-1)
    num_units = k.shape[0]
    present_z, candidate_z = np.asarray(present_z, np.float32), np.asarray(candidate_z, np.float32)
    eval_present_z = present_z if eval_present_z is None else np.asarray(eval_present_z, np.float32)
    eval_candidate_z = candidate_z if eval_candidate_z is None else np.asarray(eval_candidate_z, np.float32)
    for name, array in (("present_z", present_z), ("candidate_z", candidate_z),
                        ("eval_present_z", eval_present_z), ("eval_candidate_z", eval_candidate_z)):
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty [samples, latent_dim] array, got shape {array.shape}.")
    _check_positive_int(epochs=epochs, batch_size=batch_size, top_n=top_n)
    if learning_rate <= 0 or l2_lambda < 0:
        raise ValueError(f"need learning_rate > 0 and l2_lambda >= 0, got {learning_rate}, {l2_lambda}.")
    top_n = min(top_n, num_units)
    alpha = jnp.zeros(num_units) if init_alpha is None else jnp.clip(jnp.asarray(init_alpha, jnp.float32), 0, 1)
    if alpha.shape != (num_units,):
        raise ValueError(f"init_alpha must have shape ({num_units},), got {alpha.shape}.")

    terms = functools.partial(_ace_terms, render_fn, segment_fn, int(class_id))
    optimizer = optax.adam(learning_rate)

    def loss_fn(alpha, batch):
        zp, zc, weight = batch
        erase, add = terms(alpha, k, zp, zc, False)
        data = _weighted_data_term(erase, add, weight)
        return data + l2_lambda * jnp.sum(alpha ** 2), data

    @jax.jit
    def train_step(alpha, opt_state, zp, zc, weight):
        result = gradient_step(loss_fn, alpha, opt_state, optimizer, (zp, zc, weight), has_aux=True)
        return jnp.clip(result.params, 0.0, 1.0), result.opt_state, result.aux   # ablation.clamp_(0, 1)

    @functools.partial(jax.jit, static_argnums=4)
    def eval_step(alpha, zp, zc, weight, hard):
        erase, add = terms(alpha, k, zp, zc, hard)
        return jnp.sum(weight * (erase - add)), jnp.sum(weight)

    def evaluate(alpha, hard):
        total = count = 0.0
        for ip, ic, weight in _paired_batches(len(eval_present_z), len(eval_candidate_z), batch_size, None):
            batch_total, batch_count = eval_step(alpha, jnp.asarray(eval_present_z[ip]),
                                                 jnp.asarray(eval_candidate_z[ic]), jnp.asarray(weight), hard)
            total += float(batch_total)
            count += float(batch_count)
        return total / count

    def discrete(alpha):
        return jnp.asarray(unit_alpha(_ranking(np.asarray(alpha))[:top_n], num_units))

    rng = np.random.default_rng(seed)
    opt_state = optimizer.init(alpha)
    eval_loss = [evaluate(alpha, False)]
    eval_top = [evaluate(discrete(alpha), True)]
    train_loss = []
    for _ in range(epochs):
        losses, weights = [], []
        for ip, ic, weight in _paired_batches(len(present_z), len(candidate_z), batch_size, rng):
            alpha, opt_state, data = train_step(alpha, opt_state, jnp.asarray(present_z[ip]),
                                                jnp.asarray(candidate_z[ic]), jnp.asarray(weight))
            losses.append(float(data))
            weights.append(float(weight.sum()))
        train_loss.append(float(np.average(losses, weights=weights)))
        eval_loss.append(evaluate(alpha, False))
        eval_top.append(evaluate(discrete(alpha), True))
    alpha = np.asarray(alpha)
    return UnitSetResult(alpha=alpha, ranking=_ranking(alpha), train_loss=np.asarray(train_loss),
                         eval_loss=np.asarray(eval_loss), eval_top_n_loss=np.asarray(eval_top), top_n=top_n)


def _ranking(alpha: np.ndarray) -> np.ndarray:
    return np.argsort(-alpha, kind="stable")


# ----------------------------------------------------------------------------------------------
# Ablation curves (paper sec. 4: fraction of class pixels removed vs number of ablated units)
# ----------------------------------------------------------------------------------------------

def ablation_curve(render_fn: RenderFn, segment_fn: SegmentFn, class_id: int, ranking: Sequence[int], *,
                   num_units: int, z=None, latent_dim: int | None = None, num_samples: int | None = None,
                   seed: int = 0, sizes: Sequence[int] = (1, 2, 4, 8, 16, 20), num_random: int = 5,
                   random_seed: int = 0, batch_size: int = 100) -> dict:
    """Fraction of class-c pixels removed by ablating the top-n units of ``ranking`` vs n random units.

    removed(U) = (sum_z |s_c(f(r))| - sum_z |s_c(f(r with U := 0))|) / sum_z |s_c(f(r))|, hard
    segmentation pixels summed over the samples (the paper's "fraction of class pixels removed").
    Random sets: ``num_random`` draws of n distinct units per size (uniform over all units).

    Returns a dict: sizes, top [len(sizes)], random_mean, random_std, random [sizes x draws],
    random_units (the drawn sets), top_units, original_pixels.
    """
    sizes = [int(n) for n in sizes]
    _check_positive_int(num_units=num_units, num_random=num_random, batch_size=batch_size)
    ranking = [int(u) for u in ranking]
    if not sizes or min(sizes) < 1 or max(sizes) > min(num_units, len(ranking)):
        raise ValueError(f"sizes {sizes} must be positive and at most min(num_units={num_units}, "
                         f"len(ranking)={len(ranking)}).")
    z = _latents(z, seed, num_samples, latent_dim)
    rng = np.random.default_rng(random_seed)
    random_units = [[np.sort(rng.choice(num_units, n, replace=False)).tolist() for _ in range(num_random)]
                    for n in sizes]
    unit_sets = [[]] + [ranking[:n] for n in sizes] + [s for draws in random_units for s in draws]
    alphas = np.stack([unit_alpha(s, num_units) for s in unit_sets])
    _, hard, _ = _class_pixel_sums(render_fn, segment_fn, class_id, z, alphas, np.zeros_like(alphas), batch_size)
    original = hard[0]
    if original <= 0:
        raise ValueError(f"class {class_id} has no pixels in the {z.shape[0]} samples; nothing to remove.")
    removed = (original - hard[1:]) / original
    top = removed[:len(sizes)]
    random = removed[len(sizes):].reshape(len(sizes), num_random)
    return dict(sizes=sizes, top=top.tolist(), random_mean=random.mean(1).tolist(),
                random_std=random.std(1).tolist(), random=random.tolist(), random_units=random_units,
                top_units=ranking[:max(sizes)], original_pixels=int(round(original)),
                num_samples=int(z.shape[0]))


# ----------------------------------------------------------------------------------------------
# Insertion at a location (paper sec. 4.3, Figs. 8-9: the units forced to k at one place of the
# featuremap; whether the object appears depends on the context there)
# ----------------------------------------------------------------------------------------------

def window_locations(grid: tuple[int, int], window: int, stride: int = 1) -> np.ndarray:
    """Top-left cells [L, 2] of every ``window x window`` square of a ``grid`` featuremap at ``stride``."""
    _check_positive_int(window=window, stride=stride)
    h, w = (int(g) for g in grid)
    if window > min(h, w):
        raise ValueError(f"window={window} cells does not fit the {h}x{w} featuremap.")
    return np.asarray([(y, x) for y in range(0, h - window + 1, stride) for x in range(0, w - window + 1, stride)],
                      np.int64)


def window_alpha(units: Sequence[int], num_units: int, grid: tuple[int, int], top: int, left: int,
                 window: int) -> np.ndarray:
    """alpha [1, h, w, num_units]: 1 on ``units`` inside the window of cells [top, top+window) x
    [left, left+window), 0 elsewhere (a spatial insertion / ablation; see ``progan.Intervention``)."""
    h, w = (int(g) for g in grid)
    if not (0 <= top <= h - window and 0 <= left <= w - window):
        raise ValueError(f"window of {window} cells at ({top}, {left}) is outside the {h}x{w} featuremap.")
    alpha = np.zeros((1, h, w, num_units), np.float32)
    alpha[0, top:top + window, left:left + window, :] = unit_alpha(units, num_units)
    return alpha


def window_region(grid: tuple[int, int], size: tuple[int, int], top: int, left: int, window: int) -> np.ndarray:
    """The image pixels [H, W] (bool) under the featuremap window: cell (y, x) covers rows
    [y H / h, (y + 1) H / h) and the matching columns (each cell upsampled to its share of the image)."""
    (h, w), (big_h, big_w) = grid, size
    if big_h % h or big_w % w:
        raise ValueError(f"the {big_h}x{big_w} segmentation is not a whole multiple of the {h}x{w} featuremap.")
    sy, sx = big_h // h, big_w // w
    region = np.zeros((big_h, big_w), bool)
    region[top * sy:(top + window) * sy, left * sx:(left + window) * sx] = True
    return region


@functools.lru_cache(maxsize=4)
def _window_step(render_fn, segment_fn, class_id):
    def fractions(z, alpha, value, regions):
        """Class-c fraction of every region [L, B] and of the whole image [B] under one intervention."""
        labels = (jnp.argmax(segment_fn(render_fn(z, alpha, value)), -1) == class_id).astype(jnp.float32)
        inside = jnp.einsum("bhw,lhw->lb", labels, regions) / jnp.sum(regions, axis=(1, 2))[:, None]
        return inside, jnp.mean(labels, axis=(1, 2))

    @jax.jit
    def step(z, alphas, value, regions):
        """Before: [L, B] region fractions and [B] image fraction without intervention. After: for location l,
        inserting inside region l, that region's fraction [L, B] and the image fraction [L, B]."""
        before, image_before = fractions(z, jnp.zeros_like(alphas[0]), value, regions)

        def one(args):
            alpha, index = args
            inside, image = fractions(z, alpha, value, regions[index][None])
            return inside[0], image

        after, image_after = jax.lax.map(one, (alphas, jnp.arange(alphas.shape[0])))
        return before, image_before, after, image_after

    return step


def insertion_at_locations(render_fn: RenderFn, segment_fn: SegmentFn, class_id: int, units: Sequence[int],
                           insertion_value, *, grid: tuple[int, int], z, window: int = 2, stride: int = 1,
                           batch_size: int = 50) -> dict:
    """Inserts U := k inside one ``window x window`` square of the featuremap at every location, one at a time.

    For each sample and location P the fraction of P's image region segmented as class c is measured
    before (no intervention) and after r_{U,P} := k (the rest of the featuremap untouched); the paper's
    observation (sec. 4.3) is that the gain depends on the location's context (a door appears on a
    building, not in the sky). ``render_fn`` must accept alpha [1, h, w, U] (``progan.Intervention`` does).

    Returns a dict: locations [L, 2] (top-left cells), before / after [N, L] (class fraction in the
    window), image_before [N] / image_after [N, L] (class fraction of the whole image), gain [N, L]
    (after - before), mean_gain [L], best_location [N] (argmax gain per sample), best_gain [N].
    """
    k = np.asarray(insertion_value, np.float32).reshape(-1)
    num_units = k.shape[0]
    z = _latents(z, 0, None, None)
    _check_positive_int(batch_size=batch_size)
    locations = window_locations(grid, window, stride)
    alphas = np.stack([window_alpha(units, num_units, grid, y, x, window) for y, x in locations])  # [L, 1, h, w, U]
    probe = jax.eval_shape(lambda zz: segment_fn(render_fn(zz, jnp.zeros((num_units,)), jnp.zeros((num_units,)))),
                           jax.ShapeDtypeStruct((1, z.shape[1]), jnp.float32))
    size = probe.shape[1:3]
    regions = np.stack([window_region(grid, size, y, x, window) for y, x in locations]).astype(np.float32)
    step = _window_step(render_fn, segment_fn, int(class_id))
    after, image_after, before, image_before = [], [], [], []
    for z_batch, valid in _padded_batches(z, batch_size):
        n = int(np.asarray(valid).sum())
        b, ib, a, ia = step(z_batch, jnp.asarray(alphas), jnp.asarray(k), jnp.asarray(regions))
        before.append(np.asarray(b)[:, :n].T)
        image_before.append(np.asarray(ib)[:n])
        after.append(np.asarray(a)[:, :n].T)
        image_after.append(np.asarray(ia)[:, :n].T)
    after, before = np.concatenate(after), np.concatenate(before)
    gain = after - before
    best = np.argmax(gain, axis=1)
    return dict(locations=locations.tolist(), window=int(window), grid=[int(g) for g in grid],
                before=before.tolist(), after=after.tolist(), gain=gain.tolist(),
                image_before=np.concatenate(image_before).tolist(), image_after=np.concatenate(image_after).tolist(),
                mean_gain=gain.mean(0).tolist(), best_location=best.tolist(),
                best_gain=gain[np.arange(gain.shape[0]), best].tolist(),
                units=[int(u) for u in units], num_samples=int(z.shape[0]))
