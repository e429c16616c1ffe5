"""The counting component (``jaxmodels.vqa.counting``) and the toy-task generator.

Hand-made cases use the initial (identity) f functions, under which the paper's argument (sec. 4)
gives exact counts: c non-overlapping boxes of weight 1 -> c; n identical boxes of weight 1 -> 1;
weight-0 boxes contribute nothing. Parity: the official PyTorch equations
(``benchmarks/torch_counting.py``) with the same random f weights give the same outputs and gradients.
"""
import functools
import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.projects.vqa_counting.toy_data import toy_batch
from jaxmodels.vqa.counting import Counter, pairwise_iou, piecewise_linear, to_one_hot

_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _official_piecewise(weight17, x):
    """The official PiecewiseLin formula in numpy, 17 weights with w_0 = 0."""
    n = len(weight17) - 1
    w = np.abs(weight17) / np.abs(weight17).sum()
    csum = np.cumsum(w)
    y = n * x
    idx = np.minimum(y.astype(int), n)
    return csum[idx] + (y - np.floor(y)) * w[np.minimum(idx + 1, n)]


def test_piecewise_linear_hand_values_identity_and_monotone():
    # d = 2, w = (0, 1, 3) -> w^ = (0, .25, .75): f(.25) = .5 * .25, f(.5) = .25, f(.75) = .25 + .5 * .75
    f = lambda x: np.asarray(piecewise_linear(jnp.array([1.0, 3.0]), jnp.asarray(x)))  # noqa: E731
    np.testing.assert_allclose(f([0.0, 0.25, 0.5, 0.75, 1.0]), [0.0, 0.125, 0.25, 0.625, 1.0], atol=1e-7)
    x = np.linspace(0, 1, 1001).astype(np.float32)
    np.testing.assert_allclose(np.asarray(piecewise_linear(jnp.ones(16), x)), x, atol=1e-6)
    weight = np.random.default_rng(0).normal(size=16).astype(np.float32)  # signs do not matter: |w|
    y = np.asarray(piecewise_linear(jnp.asarray(weight), x))
    assert y[0] == 0.0 and abs(y[-1] - 1.0) < 1e-6 and np.all(np.diff(y) >= -1e-7)
    np.testing.assert_allclose(y, _official_piecewise(np.concatenate([[0.0], weight]), x), atol=1e-6)


def test_to_one_hot_interpolates_and_clamps():
    out = np.asarray(to_one_hot(jnp.array([0.0, 2.75, 3.0, 7.0, -1.0]), 3))
    np.testing.assert_allclose(out, [[1, 0, 0, 0], [0, 0, .25, .75], [0, 0, 0, 1], [0, 0, 0, 1], [1, 0, 0, 0]],
                               atol=1e-6)


def _separate_boxes(n):
    return np.array([[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(n)], np.float32)


@functools.lru_cache(maxsize=None)
def _counter_fn(already_sigmoided: bool):
    """The initial (identity-f) counter, jitted once per mode and reused by every hand-made case."""
    counter = Counter(objects=10, already_sigmoided=already_sigmoided)
    variables = counter.init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 4)), jnp.zeros((1, 10)))
    return jax.jit(functools.partial(counter.apply, variables))


def _count(boxes, attention, already_sigmoided=True):
    boxes, attention = jnp.asarray(boxes, jnp.float32)[None], jnp.asarray(attention, jnp.float32)[None]
    return np.asarray(_counter_fn(already_sigmoided)(boxes, attention))[0]


@pytest.mark.parametrize("true_count", [0, 1, 4, 10])
def test_no_overlap_counts_exactly(true_count):
    attention = [1.0] * true_count + [0.0] * (10 - true_count)
    np.testing.assert_allclose(_count(_separate_boxes(10), attention), np.eye(11)[true_count], atol=1e-6)


@pytest.mark.parametrize("duplicates", [1, 2, 5, 10])
def test_identical_boxes_of_weight_one_count_once(duplicates):
    boxes = np.tile(np.array([[0.2, 0.2, 0.6, 0.7]], np.float32), (10, 1))
    attention = [1.0] * duplicates + [0.0] * (10 - duplicates)
    np.testing.assert_allclose(_count(boxes, attention), np.eye(11)[1], atol=1e-6)


def test_duplicated_objects_and_zero_weight_boxes():
    # three objects, each proposed twice (identical boxes, weight 1), plus four weight-0 proposals,
    # two of which sit exactly on objects: the count is 3
    objects = _separate_boxes(3)
    boxes = np.concatenate([objects, objects, objects[:2], _separate_boxes(10)[8:]])
    attention = [1.0] * 6 + [0.0] * 4
    np.testing.assert_allclose(_count(boxes, attention), np.eye(11)[3], atol=1e-6)


def test_only_the_top_k_proposals_are_read_and_logits_are_sigmoided():
    # 30 proposals, 5 separate ones with large logits, the rest strongly negative: count 5
    boxes = np.concatenate([_separate_boxes(5), np.tile(_separate_boxes(1), (25, 1))])
    logits = np.array([30.0] * 5 + [-30.0] * 25, np.float32)
    np.testing.assert_allclose(_count(boxes, logits, already_sigmoided=False), np.eye(11)[5], atol=1e-5)
    with pytest.raises(ValueError, match="need at least k proposals"):
        _count(boxes[:4], logits[:4])


def test_count_gradient_is_finite_everywhere():
    counter = Counter(already_sigmoided=True)
    rng = np.random.default_rng(1)
    cases = {
        "identical boxes": (np.tile([[0.2, 0.2, 0.6, 0.7]], (10, 1)), rng.uniform(size=10)),
        "zero weights": (_separate_boxes(10), np.zeros(10)),
        "identical boxes, zero weights": (np.tile([[0.2, 0.2, 0.6, 0.7]], (10, 1)), np.zeros(10)),
        "zero-area boxes": (np.zeros((10, 4)), rng.uniform(size=10)),
        "ones": (_separate_boxes(10), np.ones(10)),
        "random": (np.sort(rng.uniform(size=(10, 2, 2)), axis=1).transpose(0, 2, 1).reshape(10, 4), rng.uniform(size=10)),
    }
    boxes0 = jnp.asarray(cases["ones"][0], jnp.float32)[None]
    variables = counter.init(jax.random.PRNGKey(0), boxes0, jnp.ones((1, 10)))
    weights = jnp.arange(11.0)  # d(expected count)/d attention, through every output bin
    grad_fn = jax.jit(jax.grad(lambda a, v, b: jnp.sum(counter.apply(v, b, a) * weights), argnums=(0, 1)))
    for name, (boxes, attention) in cases.items():
        grad_a, grad_p = grad_fn(jnp.asarray(attention, jnp.float32)[None], variables,
                                 jnp.asarray(boxes, jnp.float32)[None])
        assert np.all(np.isfinite(grad_a)), name
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad_p)), name


def _torch_counting():
    pytest.importorskip("torch")
    if "torch_counting" not in sys.modules:
        spec = importlib.util.spec_from_file_location("torch_counting", _BENCHMARKS / "torch_counting.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["torch_counting"] = module
        spec.loader.exec_module(module)
    return sys.modules["torch_counting"]


@pytest.mark.parametrize("already_sigmoided", [True, False])
def test_matches_the_official_pytorch_equations(already_sigmoided):
    import torch

    torch_counting = _torch_counting()
    rng = np.random.default_rng(2)
    batch, proposals = 16, 14
    corners = rng.uniform(0, 0.7, size=(batch, proposals, 2))
    sizes = rng.uniform(0.05, 0.3, size=(batch, proposals, 2))
    boxes = np.concatenate([corners, corners + sizes], -1).astype(np.float32)
    boxes[:, 1] = boxes[:, 0]  # exact duplicates
    attention = (rng.uniform(size=(batch, proposals)) if already_sigmoided
                 else rng.normal(scale=2.0, size=(batch, proposals))).astype(np.float32)
    counter = Counter(already_sigmoided=already_sigmoided)
    variables = counter.init(jax.random.PRNGKey(0), boxes, attention)
    variables = jax.tree.map(lambda w: jnp.asarray(rng.uniform(0.2, 2.0, size=w.shape), jnp.float32), variables)
    weights = rng.normal(size=11).astype(np.float32)

    def ours(a, v):
        out = counter.apply(v, jnp.asarray(boxes), a)
        return jnp.sum(out * weights), out

    (_, out), (grad_a, grad_p) = jax.value_and_grad(ours, argnums=(0, 1), has_aux=True)(jnp.asarray(attention), variables)

    reference = torch_counting.load_jax_params(torch_counting.Counter(10, already_sigmoided), variables["params"])
    att_t = torch.tensor(attention, requires_grad=True)
    out_t = reference(torch.tensor(boxes).transpose(1, 2).contiguous(), att_t)
    (out_t * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(np.asarray(out), out_t.detach().numpy(), atol=2e-5)
    np.testing.assert_allclose(np.asarray(grad_a), att_t.grad.numpy(), atol=1e-4, rtol=1e-3)
    for i in range(8):
        np.testing.assert_allclose(np.asarray(grad_p["params"][f"f_{i}"]["weight"]),
                                   reference.f[i].weight.grad.numpy()[1:], atol=1e-4, rtol=1e-3)


def test_pairwise_iou_hand_values():
    a = jnp.array([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0]])
    iou = np.asarray(pairwise_iou(a, a))
    np.testing.assert_allclose(iou, [[1, 1 / 7, 0], [1 / 7, 1, 0], [0, 0, 1]], atol=1e-6)


def test_toy_generator_counts_and_determinism():
    key = jax.random.PRNGKey(3)
    batch = toy_batch(key, 512, 0.0, 0.0)
    again = toy_batch(key, 512, 0.0, 0.0)
    for name in batch:
        np.testing.assert_array_equal(np.asarray(batch[name]), np.asarray(again[name]))
    other = toy_batch(jax.random.PRNGKey(4), 512, 0.0, 0.0)
    assert not np.array_equal(np.asarray(other["boxes"]), np.asarray(batch["boxes"]))
    count, weight, boxes = (np.asarray(batch[k]) for k in ("count", "attention", "boxes"))
    assert count.min() == 0 and count.max() == 10 and boxes.shape == (512, 10, 4)
    # l -> 0: boxes almost never overlap, so each true box has weight 1 and every other box weight 0
    np.testing.assert_array_equal((weight > 0.5).sum(1), count)
    np.testing.assert_allclose(weight[np.arange(10)[None] < count[:, None]], 1.0)
    # with overlap and noise the first `count` boxes still have weight >= (1 - q) (IoU 1 with themselves)
    noisy = toy_batch(key, 512, 0.3, 0.5)
    w, c = np.asarray(noisy["attention"]), np.asarray(noisy["count"])
    assert np.all(w[np.arange(10)[None] < c[:, None]] >= 0.5 - 1e-6)
    assert np.all((w >= 0) & (w <= 1))
    sides = np.asarray(noisy["boxes"][..., 2] - noisy["boxes"][..., 0])
    np.testing.assert_allclose(sides, 0.3, atol=1e-6)
    assert np.all(np.asarray(noisy["boxes"]) >= 0) and np.all(np.asarray(noisy["boxes"]) <= 1 + 1e-6)
