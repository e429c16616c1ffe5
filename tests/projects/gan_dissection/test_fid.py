"""Tests for jaxmodels.projects.gan_dissection.fid (Frechet distance, per-unit FID, artifact-unit ablation; Bau et al. sec. 4.3)."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg

from jaxmodels.projects.gan_dissection import fid as F
from jaxmodels.projects.gan_dissection.dissection import sample_z
from jaxmodels.projects.gan_dissection.intervention import blend

UNITS, ARTIFACT, LATENT = 8, 2, 3


def _spd(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def test_frechet_distance_zero_symmetric_and_closed_forms():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = _spd(rng, 5), _spd(rng, 5)
    assert F.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)
    assert F.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(F.frechet_distance(mu2, s2, mu1, s1), rel=1e-8)
    # 1-D: (m1 - m2)^2 + (sqrt(v1) - sqrt(v2))^2.
    assert F.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # Diagonal covariances: the 1-D formula summed over dimensions.
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1[:3] - mu2[:3]) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert F.frechet_distance(mu1[:3], np.diag(v1), mu2[:3], np.diag(v2)) == pytest.approx(expected)
    # General case against the symmetric form Tr((S1^1/2 S2 S1^1/2)^1/2) via eigendecompositions.
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))
    assert F.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)
    assert np.allclose(linalg.sqrtm(np.eye(2)), np.eye(2))  # the sqrtm the implementation relies on


# Toy generator: images are z (3 channels, constant over 8x8) plus 3 * unit 2, an always-on
# "artifact" unit; features are the spatial means. Real images: constant images with N(0, I) colours.
def render_fn(z, alpha, value):
    r = jnp.ones((z.shape[0], 2, 2, UNITS))
    r = blend(r, alpha, value)
    shift = 3.0 * r[..., ARTIFACT].mean((1, 2))
    return jnp.broadcast_to((z[:, :3] + shift[:, None])[:, None, None, :], (z.shape[0], 8, 8, 3))


def feature_extractor(images):
    return images.mean((1, 2))


@pytest.fixture(scope="module")
def real():
    colours = np.random.default_rng(1).normal(size=(600, 3)).astype(np.float32)
    return F.real_statistics(feature_extractor, np.broadcast_to(colours[:, None, None, :], (600, 8, 8, 3)),
                             batch_size=128)


def test_streaming_generated_statistics_match_direct_computation():
    zeros = np.zeros(UNITS)
    stats = F.generated_statistics(render_fn, feature_extractor, zeros, seed=4, num_samples=70, latent_dim=LATENT,
                                   batch_size=64)
    features = np.asarray(sample_z(4, np.arange(70), LATENT))[:, :3] + 3.0
    np.testing.assert_allclose(stats.mean, features.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.cov, np.cov(features, rowvar=False), rtol=1e-4, atol=1e-6)


def test_per_unit_fid_ranks_biased_top_sets_worst(real):
    z = np.asarray(sample_z(0, np.arange(300), LATENT))
    rng = np.random.default_rng(2)
    top = np.stack([rng.choice(300, 60, replace=False) for _ in range(UNITS)])
    top[5] = np.argsort(-z[:, 0])[:60]   # unit 5's top samples all have a large first colour
    scores = F.per_unit_fid(render_fn, feature_extractor, top, real, seed=0, latent_dim=LATENT, batch_size=64)
    assert F.artifact_units(scores, 1)[0] == 5
    features = z[top[5], :3] + 3.0
    expected = F.frechet_distance(features.mean(0), np.cov(features, rowvar=False), real.mean, real.cov)
    assert scores[5] == pytest.approx(expected, rel=1e-6)


def test_ablating_the_artifact_unit_lowers_fid_random_units_do_not(real):
    unit_fid = np.zeros(UNITS)
    unit_fid[ARTIFACT] = 10.0
    out = F.artifact_ablation(render_fn, feature_extractor, unit_fid, real, num_ablate=1, num_random=4, seed=3,
                              num_samples=200, latent_dim=LATENT, batch_size=64, random_seed=0)
    assert out["units"] == [ARTIFACT]
    assert out["fid_original"] > 8.0          # a shift of 3 in each of 3 channels: about 27
    assert out["fid_ablated"] < 0.2
    hits = [ARTIFACT in units for units in out["random_units"]]
    assert any(hits) and not all(hits)        # random_seed 0 draws the artifact unit once in four
    for units, value in zip(out["random_units"], out["fid_random_draws"]):
        if ARTIFACT in units:
            assert value == pytest.approx(out["fid_ablated"])
        else:
            assert value == pytest.approx(out["fid_original"])
    with pytest.raises(ValueError, match="k must be"):
        F.artifact_units(unit_fid, 0)
