"""The differentiable counting component (Zhang, Hare & Prügel-Bennett, ICLR 2018, "Learning to Count
Objects in Natural Images for Visual Question Answering", sec. 4; official code
``Cyanogenoid/vqa-counting/vqa-v2/counting.py``).

Given object proposals (boxes) and their attention logits, the counter builds a graph whose vertices
are the top-k proposals and whose edges carry A = a a^T (sec. 4.1), removes intra-object edges with
D = 1 - IoU (sec. 4.2, eq. 3) and scales inter-object duplicates by their similarity (sec. 4.3,
eqs. 4-7), and returns the count as an interpolated one-hot over k + 1 bins scaled by a confidence
(sec. 4.4, eqs. 8-9). Every nonlinearity is a learned monotone piecewise-linear function f with
f(0) = 0 and f(1) = 1 (sec. 4.1, eq. 2). The eight functions are indexed 0..7 as in the official
code and the parameter names ``f_0``..``f_7`` (the paper's f_1..f_8; f0 is reused for the self-loop
term):

  f0, f1   intra-object score  S = f0(A) * f1(D)
  f2       similarity          Sim_ij = f2(1 - |a_i - a_j|) * prod_k f2(1 - |X_ik - X_jk|)
  f3, f4   inter-object score  X = f3(A) * f4(D)
  f5, f6   confidence inputs   |f5(a) - 1/2|, |f6(D) - 1/2|
  f7       confidence          f7(mean_i |f5(a_i) - 1/2| + mean_ij |f6(D_ij) - 1/2|)

Shapes here are batch-major with coordinates last: ``boxes`` [batch, proposals, 4] as
(x1, y1, x2, y2), ``attention`` [batch, proposals]. The official code's boxes are [batch, 4, proposals].
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NUM_FUNCTIONS = 8


def piecewise_linear(weight: jax.Array, x: jax.Array) -> jax.Array:
    """Monotone piecewise-linear f on [0, 1] with d = ``weight.shape[-1]`` pieces (paper eq. 2).

    The official ``PiecewiseLin`` holds d + 1 weights w_0..w_d with w_0 = 0 and a zero gradient; here
    w_0 = 0 is hard-coded and ``weight`` holds w_1..w_d, so no parameter has to be pinned. With
    w^ = |w| / sum |w|:  f(x) = sum_{j <= floor(dx)} w^_j + frac(dx) * w^_{floor(dx) + 1}.
    Hence f is non-decreasing, f(0) = 0, f(1) = 1, and all-equal weights give f(x) = x.
    """
    pieces = weight.shape[-1]
    w = jnp.abs(weight)
    w = jnp.concatenate([jnp.zeros((1,), w.dtype), w / jnp.sum(w)])  # [d + 1], w_0 = 0
    csum = jnp.cumsum(w)
    y = pieces * x
    floor = jnp.floor(y)
    frac = y - floor
    idx = jnp.clip(floor.astype(jnp.int32), 0, pieces)
    return csum[idx] + frac * w[jnp.minimum(idx + 1, pieces)]


class PiecewiseLinear(nn.Module):
    """One learned f: the parameter ``weight`` holds w_1..w_d, initialised to 1 (f starts as identity)."""

    pieces: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        weight = self.param("weight", nn.initializers.ones, (self.pieces,), jnp.float32)
        return piecewise_linear(weight, x)


def box_area(boxes: jax.Array) -> jax.Array:
    """Area of (x1, y1, x2, y2) boxes, zero for degenerate ones. [..., n]"""
    return jnp.maximum(boxes[..., 2] - boxes[..., 0], 0) * jnp.maximum(boxes[..., 3] - boxes[..., 1], 0)


def pairwise_iou(a: jax.Array, b: jax.Array, eps: float = 1e-12) -> jax.Array:
    """IoU between every box of ``a`` [..., n, 4] and of ``b`` [..., m, 4] -> [..., n, m].

    ``eps`` in the denominator as the counting code (``+ 1e-12``), so zero-area boxes give 0, not NaN;
    the toy-task generator uses ``eps=0`` like the official ``toy/data.py``.
    """
    lo = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
    hi = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = jnp.maximum(hi - lo, 0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
    return inter / (union + eps)


def to_one_hot(count: jax.Array, objects: int) -> jax.Array:
    """Linear interpolation between the one-hots of floor(c) and floor(c) + 1 (eq. 9). [batch, k + 1]

    ``count`` [batch] is clamped to [0, k]; e.g. with k = 3: 0 -> [1 0 0 0], 2.75 -> [0 0 .25 .75].
    The gradient flows through the fractional part only.
    """
    count = jnp.clip(count, 0.0, float(objects))
    floor = jnp.floor(count)
    frac = (count - floor)[:, None]
    low = jax.nn.one_hot(floor.astype(jnp.int32), objects + 1, dtype=count.dtype)
    high = jax.nn.one_hot(jnp.minimum(floor.astype(jnp.int32) + 1, objects), objects + 1, dtype=count.dtype)
    return (1.0 - frac) * low + frac * high


def top_k_proposals(boxes: jax.Array, attention: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The k proposals with the highest attention (sec. 4: the rest barely change the count)."""
    if attention.shape[-1] < k:
        raise ValueError(f"Counter: {attention.shape[-1]} proposals but objects={k}; need at least k proposals")
    attention, idx = jax.lax.top_k(attention, k)
    return jnp.take_along_axis(boxes, idx[..., None], axis=-2), attention


def _row_similarity(f2, X: jax.Array) -> jax.Array:
    """prod_k f2(1 - |X_ik - X_jk|) for all i, j [b, k, k] (eq. 5; the official product over dim 1,
    which is the same since X is symmetric).

    The b k^3 evaluations of f2 dominate the counter's cost, so only the pairs i < j are evaluated
    and mirrored; the diagonal is exactly 1 (f2(1) = 1 for any weights). Same values and gradients
    as the full product.
    """
    k = X.shape[-1]
    iu, ju = np.triu_indices(k, 1)
    upper = jnp.prod(f2(1.0 - jnp.abs(X[:, iu, :] - X[:, ju, :])), axis=-1)  # [b, k (k - 1) / 2]
    sim = jnp.zeros(X.shape, X.dtype).at[:, iu, ju].set(upper).at[:, ju, iu].set(upper)
    return sim + jnp.eye(k, dtype=X.dtype)


def count_from_functions(f, boxes: jax.Array, attention: jax.Array, objects: int) -> tuple[jax.Array, jax.Array, dict]:
    """The counter's equations given the eight functions ``f`` (callables) and sigmoided top-k weights.

    Returns ``(count, confidence, parts)``: the scalar count c [batch] (eq. 8), the confidence [batch]
    and the intermediate matrices (``A``, ``D``, ``S``, ``X``, ``Sim``, ``row_sim``) for inspection.
    """
    a = attention  # [b, k] in [0, 1]
    A = a[:, :, None] * a[:, None, :]  # relevancy, sec. 4.1: [b, k, k]
    D = 1.0 - pairwise_iou(boxes, boxes)  # distance, sec. 4.2: [b, k, k]

    S = f[0](A) * f[1](D)  # intra-object dedup, eq. 3; the diagonal is 0 since D_ii = 0 and f(0) = 0

    X = f[3](A) * f[4](D)  # inter-object dedup, eq. 4
    att_sim = f[2](1.0 - jnp.abs(a[:, :, None] - a[:, None, :]))  # [b, i, j]
    score_sim = _row_similarity(f[2], X)  # prod_k f2(1 - |X_ik - X_jk|), eq. 5
    sim = att_sim * score_sim
    row_sim = jnp.sum(sim, axis=-1)  # s_i >= Sim_ii = 1, so the divisions below are safe
    S = S / (row_sim[:, :, None] * row_sim[:, None, :])  # eq. 6
    self_loops = f[0](a * a) / row_sim  # eq. 7: the diagonal, added separately
    total = jnp.sum(S, axis=(1, 2)) + jnp.sum(self_loops, axis=1)
    count = jnp.sqrt(total + 1e-20)  # eq. 8; the 1e-20 keeps the gradient finite at 0

    att_conf = jnp.abs(f[5](a) - 0.5)
    dist_conf = jnp.abs(f[6](D) - 0.5)
    confidence = f[7](jnp.mean(att_conf, axis=1) + jnp.mean(dist_conf, axis=(1, 2)))  # sec. 4.4
    parts = {"A": A, "D": D, "S": S, "X": X, "Sim": sim, "row_sim": row_sim}
    return count, confidence, parts


class Counter(nn.Module):
    """Count features [batch, objects + 1] from proposal boxes and attention logits.

    Attributes:
      objects: k, the number of top-attention proposals kept and the largest count (10 in the paper).
      pieces: d, pieces of every piecewise-linear function (16 in the paper).
      already_sigmoided: attention is already in [0, 1] (the toy task) instead of logits (VQA).
    """

    objects: int = 10
    pieces: int = 16
    already_sigmoided: bool = False

    def setup(self):
        self.f = [PiecewiseLinear(self.pieces) for _ in range(NUM_FUNCTIONS)]  # params f_0..f_7

    def count(self, boxes: jax.Array, attention: jax.Array) -> tuple[jax.Array, jax.Array, dict]:
        """``(count, confidence, parts)`` before the one-hot (see :func:`count_from_functions`)."""
        boxes, attention = top_k_proposals(boxes.astype(jnp.float32), attention.astype(jnp.float32), self.objects)
        if not self.already_sigmoided:
            attention = jax.nn.sigmoid(attention)
        count, confidence, parts = count_from_functions(self.f, boxes, attention, self.objects)
        parts.update(attention=attention, boxes=boxes)
        return count, confidence, parts

    def __call__(self, boxes: jax.Array, attention: jax.Array) -> jax.Array:
        count, confidence, _ = self.count(boxes, attention)
        return to_one_hot(count, self.objects) * confidence[:, None]


def counter_weights_from_torch(state_dict, prefix: str = "counter.") -> dict:
    """Our Counter params from an official ``Counter`` state dict (``f.{i}.weight``, 17 weights each).

    The official module holds 16 ``PiecewiseLin`` of which 8 are used; w_0 (always 0) is dropped.
    """
    params = {}
    for i in range(NUM_FUNCTIONS):
        key = f"{prefix}f.{i}.weight"
        if key not in state_dict:
            raise KeyError(f"counter weights: {key!r} missing from the state dict")
        weight = jnp.asarray(state_dict[key], jnp.float32)
        params[f"f_{i}"] = {"weight": weight[1:]}
    return params
