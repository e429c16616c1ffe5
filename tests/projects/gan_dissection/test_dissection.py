"""Tests for jaxmodels.projects.gan_dissection.dissection (Bau et al. 2019, sec. 3.1; official netdissect/dissection.py)."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.projects.gan_dissection import dissection as D

# A hand-made "generator": 8x8 unit maps, 32x32 images/segmentations (upsampling by 4), 3 classes.
#   unit 0: a 2x2 block (rows 6-7, columns j..j+1 with j from z) of height 1 + |z[1]| on a 0.25
#           background -> class 1 is exactly the support of its bilinear upsampling;
#   unit 1: noise (|z| values);
#   unit 2: rows 0-4 at 1.0 on a 0.25 background -> class 2 is its upsampled support (> 50% of pixels);
#   unit 3: constant 0.5.
LATENT, SIZE, SEG = 80, 8, 32
BACKGROUND = 0.25


@jax.jit
def _unit_maps(z):
    batch = z.shape[0]
    column = jnp.clip(jnp.floor((jnp.tanh(z[:, 0]) + 1) * 3.5), 0, 6).astype(jnp.int32)  # 0..6
    cols = jnp.arange(SIZE)
    rows = jnp.arange(SIZE)
    in_block = ((rows[None, :, None] >= 6)
                & (cols[None, None, :] >= column[:, None, None]) & (cols[None, None, :] <= column[:, None, None] + 1))
    amplitude = 1.0 + jnp.abs(z[:, 1])
    unit0 = jnp.where(in_block, amplitude[:, None, None], BACKGROUND)
    unit1 = jnp.abs(z[:, 16:80]).reshape(batch, SIZE, SIZE)
    unit2 = jnp.where(rows[None, :, None] <= 4, 1.0, BACKGROUND) * jnp.ones((batch, SIZE, SIZE))
    unit3 = jnp.full((batch, SIZE, SIZE), 0.5)
    return jnp.stack([unit0, unit1, unit2, unit3], axis=-1)


@jax.jit
def _concept_masks(maps):
    up = D.bilinear_upsample(maps, (SEG, SEG))
    return up[..., 0] > BACKGROUND + 1e-4, up[..., 2] > BACKGROUND + 1e-4


def generate_fn(z):
    maps = _unit_maps(z)
    block, region = _concept_masks(maps)
    images = jnp.stack([block, region, jnp.zeros_like(block)], -1).astype(jnp.float32) * 2 - 1
    return images, maps


def segment_fn(images):
    block, region = images[..., 0] > 0, images[..., 1] > 0
    labels = jnp.where(block, 1, jnp.where(region, 2, 0))
    return jax.nn.one_hot(labels, 3) * 0.9 + 0.05


@pytest.fixture(scope="module")
def result():
    return D.dissect(generate_fn, segment_fn, latent_dim=LATENT, num_samples=24, batch_size=10, top_k=5,
                     quantile_pixels=None, class_names=("background", "block", "region"))


def test_concepts_are_disjoint_as_designed():
    z = D.sample_z(0, np.arange(16), LATENT)
    block, region = _concept_masks(_unit_maps(z))
    assert not np.any(np.asarray(block & region))
    assert np.asarray(region).mean() > 0.5 and 0.02 < np.asarray(block).mean() < 0.2


def test_upsampling_matches_half_pixel_bilinear():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    ours = jax.jit(D.bilinear_upsample, static_argnums=1)(x, (32, 32))
    reference = jax.jit(lambda a: jax.image.resize(a, (2, 32, 32, 3), method="bilinear"))(x)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    # Hand-checked 1-D weights: output 3 of a 4x upsampling samples source 0.375 (official grid).
    matrix = D.interpolation_matrix(2, 8)
    np.testing.assert_allclose(matrix[3], [0.625, 0.375])
    np.testing.assert_allclose(matrix[0], [1.0, 0.0])  # border clamp
    np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-6)


def test_mask_unit_has_iou_one_and_threshold_recovers_mask(result):
    assert result.best_concept[0] == 1 and result.interpretable[0]
    assert result.iou[0, 1] == pytest.approx(1.0)
    assert result.iqr[0, 1] == pytest.approx(1.0)
    # The chosen threshold reproduces the concept mask exactly on fresh samples.
    z = D.sample_z(123, np.arange(8), LATENT)
    maps = _unit_maps(z)
    up = D.bilinear_upsample(maps, (SEG, SEG))
    block, _ = _concept_masks(maps)
    np.testing.assert_array_equal(np.asarray(up[..., 0] > result.thresholds[0, 1]), np.asarray(block))


def test_large_mask_unit_is_disqualified(result):
    assert result.iou[2, 2] == pytest.approx(1.0)
    assert result.coverage[2, 2] > 0.5
    assert result.best_concept[2] != 2
    assert not result.interpretable[2]


def test_noise_and_constant_units_are_not_interpretable(result):
    assert not result.interpretable[1] and not result.interpretable[3]
    np.testing.assert_array_equal(result.iqr[3], 0.0)  # a constant unit carries no information


def test_top_k_indices_are_the_largest_spatial_maxima(result):
    z = D.sample_z(1, np.arange(24), LATENT)
    amplitude = 1.0 + np.abs(np.asarray(z[:, 1]))
    np.testing.assert_array_equal(result.top_indices[0], np.argsort(-amplitude)[:5])
    np.testing.assert_allclose(result.top_values[0], np.sort(amplitude)[::-1][:5], rtol=1e-6)
    noise_max = np.abs(np.asarray(z[:, 16:80])).max(1)
    np.testing.assert_array_equal(result.top_indices[1], np.argsort(-noise_max)[:5])


def test_streaming_equals_one_big_batch(result):
    big = D.dissect(generate_fn, segment_fn, latent_dim=LATENT, num_samples=24, batch_size=24, top_k=5,
                    quantile_pixels=None, class_names=("background", "block", "region"))
    for name in D.DissectionResult._ARRAYS:
        np.testing.assert_array_equal(getattr(big, name), getattr(result, name), err_msg=name)


def test_hand_computed_two_by_two_case():
    # 4 pixels: m = [1, 1, 0, 0], s = [1, 0, 0, 0] -> p = [[1/4, 1/4], [0, 1/2]].
    iqr, iou = D.iqr_iou_from_counts(isect=1, pred=2, truth=1, total=4)
    mi = 0.25 * math.log(2) + 0.25 * math.log(2 / 3) + 0.5 * math.log(4 / 3)
    joint = 1.5 * math.log(2)
    assert float(iqr) == pytest.approx(mi / joint)
    assert float(iou) == pytest.approx(0.5)
    iqr_same, iou_same = D.iqr_iou_from_counts(isect=3, pred=3, truth=3, total=10)  # m == s
    assert float(iqr_same) == pytest.approx(1.0) and float(iou_same) == pytest.approx(1.0)
    iqr_indep, _ = D.iqr_iou_from_counts(isect=1, pred=2, truth=2, total=4)  # independent
    assert float(iqr_indep) == pytest.approx(0.0, abs=1e-12)


def test_select_thresholds_applies_official_masks():
    # One unit, two candidates, one concept: candidate 0 is perfect but its level is <= 0.
    isect = np.array([[[30], [30]]])
    pred = np.array([[30, 30]])
    truth = np.array([30])
    chosen = D.select_thresholds(isect, pred, truth, 100, thresholds=np.array([[0.0, 0.5]]),
                                 candidate_fractions=np.array([0.3, 0.31]))
    assert chosen.index[0, 0] == 1 and chosen.threshold[0, 0] == 0.5 and chosen.iqr[0, 0] == pytest.approx(1.0)
    # A too-rare concept (< 1e-3 of the pixels) gets IQR 0.
    rare = D.select_thresholds(np.array([[[1]]]), np.array([[1]]), np.array([1]), 10_000,
                               thresholds=np.array([[1.0]]), candidate_fractions=np.array([1e-4]))
    assert rare.iqr[0, 0] == 0.0 and rare.iou[0, 0] == pytest.approx(1.0)


def test_running_quantile_is_exact_when_small_and_close_when_compacted():
    data = np.arange(10, dtype=np.float32)[:, None]
    sketch = D.RunningQuantile(capacity=64).add(data)
    # Mid-point convention of the official sketch: q = (i + 0.5) / n hits item i.
    np.testing.assert_allclose(sketch.quantiles([0.05, 0.55, 0.0, 1.0])[0], [0, 5, 0, 9])
    rng = np.random.default_rng(0)
    big = rng.normal(size=(200_000, 2)).astype(np.float32)
    sketch = D.RunningQuantile(capacity=2048, seed=1)
    for chunk in np.array_split(big, 37):
        sketch.add(chunk)
    q = np.array([0.001, 0.1, 0.5, 0.9, 0.999])
    estimated = sketch.quantiles(q)
    exact = np.quantile(big, q, axis=0).T
    ranks = (big[:, :, None] <= estimated[None]).mean(0)
    np.testing.assert_allclose(ranks, np.broadcast_to(q, ranks.shape), atol=0.003)
    assert np.abs(estimated - exact).max() < 0.1


def test_json_round_trip_and_tables(result):
    again = D.DissectionResult.from_json(result.to_json())
    for name in D.DissectionResult._ARRAYS:
        np.testing.assert_allclose(getattr(again, name), getattr(result, name), err_msg=name)
    assert json.loads(result.to_json())["class_names"] == ["background", "block", "region"]
    table = result.markdown_table()
    assert table.splitlines()[2].startswith("| 0 | block | 1.000 |")
    assert "| block |" in result.concept_summary_markdown()
    np.testing.assert_array_equal(result.units_for_concept(1), [0])


def test_separate_threshold_seed_measures_on_the_dissection_samples():
    split = D.dissect(generate_fn, segment_fn, latent_dim=LATENT, num_samples=16, batch_size=10, top_k=3,
                      quantile_pixels=256, threshold_seed=2)
    assert split.best_concept[0] == 1 and split.iou[0, 1] == pytest.approx(1.0)
    z = D.sample_z(1, np.arange(16), LATENT)  # top-k refer to the seed-1 samples
    np.testing.assert_array_equal(split.top_indices[0], np.argsort(-np.abs(np.asarray(z[:, 1])))[:3])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_samples"):
        D.dissect(generate_fn, segment_fn, latent_dim=LATENT, num_samples=0)
    with pytest.raises(ValueError, match="ignore_classes"):
        D.dissect(generate_fn, segment_fn, latent_dim=LATENT, num_samples=4, ignore_classes=(7,))



def test_reported_statistics_are_exact_counts_at_the_reported_thresholds(result):
    z = D.sample_z(1, np.arange(24), LATENT)
    images, maps = jax.jit(generate_fn)(z)
    labels = np.asarray(jnp.argmax(segment_fn(images), -1))
    up = np.asarray(D.bilinear_upsample(maps, (SEG, SEG)))
    checked = 0
    for u in range(4):
        for c in range(3):
            m, s = up[..., u] > result.thresholds[u, c], labels == c
            assert result.coverage[u, c] == pytest.approx(m.mean())
            assert result.iou[u, c] == pytest.approx((m & s).sum() / ((m | s).sum() + 1e-20))
            iqr, _ = D.iqr_iou_from_counts((m & s).sum(), m.sum(), s.sum(), m.size)
            if result.iqr[u, c] > 0:  # 0 where every candidate was masked (agreement, level <= 0, ...)
                assert result.iqr[u, c] == pytest.approx(float(iqr))
                checked += 1
    assert checked >= 3
    np.testing.assert_allclose(result.concept_fraction, np.bincount(labels.ravel(), minlength=3) / labels.size)
