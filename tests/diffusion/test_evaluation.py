"""Frechet distance, streaming feature statistics and the classifier score."""
import os

import numpy as np
import pytest
from scipy import linalg

from jaxmodels.diffusion.evaluation import (
    FeatureStatistics, classifier_score, compute_statistics, frechet_distance, frechet_distance_from_images,
    frechet_distance_from_statistics, load_mu_sigma)


def _random_psd(rng, dim, rank=None):
    a = rng.normal(size=(dim, rank or dim))
    return a @ a.T / (rank or dim) + (0.0 if rank else 0.1) * np.eye(dim)


def test_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    a, b = rng.uniform(0.1, 3.0, 16), rng.uniform(0.1, 3.0, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # 1-d scalars, as pytorch-fid's atleast_1d/atleast_2d allow
    assert frechet_distance(1.0, 4.0, 3.0, 1.0) == pytest.approx(4.0 + 1.0)


def test_matches_direct_scipy_reference():
    rng = np.random.default_rng(1)
    for dim in (3, 20, 64):
        mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
        s1, s2 = _random_psd(rng, dim), _random_psd(rng, dim)
        reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-9)
        # Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2): a second, symmetric route.
        r1 = np.real(linalg.sqrtm(s1))
        symmetric = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(np.real(linalg.sqrtm(r1 @ s2 @ r1)))
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(symmetric, rel=1e-6)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_distance_to_itself_is_zero_also_when_singular():
    rng = np.random.default_rng(2)
    mu, sigma = rng.normal(size=32), _random_psd(rng, 32)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    singular = _random_psd(rng, 32, rank=5)  # fewer samples than dimensions, as often with FID
    assert abs(frechet_distance(mu, singular, mu, singular)) < 1e-4


def test_non_finite_root_retries_with_eps(monkeypatch):
    from jaxmodels.diffusion import evaluation
    calls = []
    real_sqrtm = evaluation._sqrtm

    def flaky_sqrtm(matrix):
        calls.append(matrix.copy())
        return np.full_like(matrix, np.inf) if len(calls) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(evaluation, "_sqrtm", flaky_sqrtm)
    s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 4.0])
    with pytest.warns(RuntimeWarning, match="singular product"):
        value = frechet_distance(np.zeros(2), s1, np.zeros(2), s2, eps=1e-3)
    np.testing.assert_allclose(calls[1], (s1 + 1e-3 * np.eye(2)) @ (s2 + 1e-3 * np.eye(2)))
    expected = 10.0 - 2 * np.sum(np.sqrt((np.array([1, 2]) + 1e-3) * (np.array([3, 4]) + 1e-3)))
    assert value == pytest.approx(expected)


def test_imaginary_component_is_an_error(monkeypatch):
    from jaxmodels.diffusion import evaluation
    monkeypatch.setattr(evaluation, "_sqrtm", lambda m: np.eye(2) * (1 + 0.5j))
    with pytest.raises(ValueError, match="Imaginary component"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))
    monkeypatch.setattr(evaluation, "_sqrtm", lambda m: np.eye(2) * (1 + 1e-6j))
    assert frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2)) == pytest.approx(0.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="Mean vectors"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(2))


def test_streaming_statistics_with_uneven_batches_and_mask(tmp_path):
    rng = np.random.default_rng(3)
    # float32 features (what extractors return) with a large mean; the statistics are float64.
    features = (rng.normal(size=(103, 7)) * rng.uniform(0.5, 5, 7) + rng.normal(size=7) * 100).astype(np.float32)
    keep = rng.random(103) < 0.7
    stats = FeatureStatistics()
    start = 0
    for size in (1, 10, 33, 2, 50, 7):
        stats.update(features[start:start + size], mask=keep[start:start + size])
        start += size
    assert start == 103
    assert stats.count == keep.sum()
    kept = features[keep].astype(np.float64)
    np.testing.assert_allclose(stats.mean, np.mean(kept, 0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(kept, rowvar=False), rtol=1e-9, atol=1e-12)

    path = tmp_path / "sub" / "stats.npz"
    stats.save(path)
    assert os.listdir(path.parent) == ["stats.npz"]  # no temporary file left behind
    loaded = FeatureStatistics.load(path)
    assert loaded.count == stats.count
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.cov, stats.cov)
    mu, sigma = load_mu_sigma(path)  # the keys pytorch-fid reads
    np.testing.assert_array_equal(mu, stats.mean)
    np.testing.assert_array_equal(sigma, stats.cov)
    # Loaded statistics keep streaming.
    loaded.update(features[~keep])
    everything = np.concatenate([kept, features[~keep].astype(np.float64)])
    np.testing.assert_allclose(loaded.cov, np.cov(everything, rowvar=False), rtol=1e-9, atol=1e-12)


def test_statistics_errors():
    stats = FeatureStatistics()
    with pytest.raises(ValueError, match="empty"):
        stats.mean
    stats.update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        stats.cov
    with pytest.raises(ValueError, match="dimension"):
        stats.update(np.ones((2, 4)))


def test_compute_statistics_pads_batches_and_accepts_iterables():
    rng = np.random.default_rng(4)
    images = rng.uniform(-1, 1, (23, 4, 4, 1)).astype(np.float32)
    shapes = []

    def extractor(batch):
        shapes.append(batch.shape)
        return batch.reshape(batch.shape[0], -1)[:, :5] * 2.0

    stats = compute_statistics(extractor, images, batch_size=8)
    assert set(shapes) == {(8, 4, 4, 1)}  # the last batch of 7 is padded: one compile
    features = images.reshape(23, -1)[:, :5] * 2.0
    np.testing.assert_allclose(stats.mean, features.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.cov, np.cov(features, rowvar=False), rtol=1e-6)

    batches = [images[:5], {"image": images[5:20]}, images[20:]]
    streamed = compute_statistics(extractor, iter(batches), batch_size=8)
    np.testing.assert_allclose(streamed.cov, stats.cov, rtol=1e-9)
    assert frechet_distance_from_statistics(streamed, stats) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance_from_images(extractor, images, stats, batch_size=8) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance_from_images(extractor, images, images + 0.5, batch_size=8) == pytest.approx(
        5 * 1.0 ** 2, rel=1e-6)  # features shift by 2 * 0.5 in each of 5 dims


def test_classifier_score():
    k = 10
    confident_balanced = np.eye(k)[np.arange(200) % k]
    assert classifier_score(confident_balanced) == pytest.approx(k)
    assert classifier_score(np.full((50, k), 1.0 / k)) == pytest.approx(1.0)
    assert classifier_score(np.eye(k)[np.zeros(30, int)]) == pytest.approx(1.0)  # confident, one class
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(k) * 0.3, size=100)
    marginal = p.mean(0)
    expected = np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1)))
    assert classifier_score(p) == pytest.approx(expected)
    assert 1.0 <= classifier_score(p, splits=4) <= k
    with pytest.raises(ValueError, match="probability"):
        classifier_score(p * 2)
