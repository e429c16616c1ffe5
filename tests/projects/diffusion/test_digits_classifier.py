"""The in-repo digits classifier: accuracy, digits FD / classifier score sanity, Orbax cache.

The default-recipe classifier is trained once per test run (``digits_classifier_cache`` in conftest.py)."""
import jax
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from jaxmodels.projects.diffusion import digits_classifier as dc
from jaxmodels.data.generative import digits_images
from jaxmodels.diffusion.evaluation import classifier_score, compute_statistics, frechet_distance_from_statistics


@pytest.fixture(scope="module")
def variables(digits_classifier_cache):
    return dc.load_or_train(digits_classifier_cache / "digits_classifier")  # the default recipe, trained once per run


@pytest.fixture(scope="module")
def digits():
    train, _ = digits_images("train")
    test, test_labels = digits_images("test")
    return train, test, test_labels


def test_accuracy(variables, digits):
    _, test, labels = digits
    probs = dc.digits_probs(variables, test)
    assert probs.shape == (len(test), 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert np.mean(probs.argmax(-1) == labels) >= 0.95


def test_digits_fd_separates_real_from_degraded(variables, digits):
    train, test, _ = digits
    extractor = dc.digits_extractor(variables)
    assert extractor(test[:3]).shape == (3, dc.FEATURE_DIM)
    reference = compute_statistics(extractor, test, batch_size=256)

    def fd(images):
        return frechet_distance_from_statistics(compute_statistics(extractor, images, batch_size=256), reference)

    rng = np.random.default_rng(0)
    subset = train[rng.choice(len(train), len(test), replace=False)]  # same sample count as the reference
    real = fd(subset)
    noise = fd(rng.uniform(-1.0, 1.0, test.shape).astype(np.float32))
    blurred = fd(np.stack([gaussian_filter(image[..., 0], 1.0) for image in subset])[..., None])
    shuffled = fd(np.stack([rng.permutation(image.reshape(-1)).reshape(image.shape) for image in subset]))
    # Measured (seed 0): real ~4, noise ~1000, blurred ~500, shuffled ~330.
    assert abs(fd(test)) < 1e-6
    assert real < 0.1 * min(noise, blurred, shuffled)
    assert noise > 50 * real


def test_classifier_score_and_quality_report(variables, digits):
    _, test, _ = digits
    assert classifier_score(dc.digits_probs(variables, test)) > 8.0
    assert classifier_score(np.full((100, 10), 0.1)) == pytest.approx(1.0)

    report = dc.digits_quality(test, variables)  # the test split against itself
    assert set(report) == {"fd", "classifier_score", "confidence", "num_samples"}
    assert abs(report["fd"]) < 1e-6 and report["classifier_score"] > 8.0 and report["confidence"] > 0.9
    noise = np.random.default_rng(1).uniform(-1, 1, (200, 16, 16, 1)).astype(np.float32)
    noisy = dc.digits_quality(noise, variables, reference="train")
    assert noisy["fd"] > 100 and noisy["num_samples"] == 200


def test_cache_round_trip(tmp_path, monkeypatch):
    """A short recipe (3 steps) trained into an empty cache, then read back instead of retrained."""
    cache_dir = tmp_path / "jaxmodels_cache" / "digits_classifier"
    trained = dc.load_or_train(cache_dir, steps=3)

    def no_training(*args, **kwargs):
        raise AssertionError("load_or_train retrained instead of reading the cache")

    monkeypatch.setattr(dc, "train_digits_classifier", no_training)
    restored = dc.load_or_train(cache_dir, steps=3)
    entries = sorted(p.name for p in cache_dir.iterdir())
    assert entries == [f"{dc.CACHE_VERSION}-seed0-steps3"]  # no temporary left behind
    jax.tree_util.tree_map(np.testing.assert_array_equal, restored, trained)  # same structure and values
    images = digits_images("test")[0][:40]
    np.testing.assert_array_equal(dc.digits_probs(restored, images), dc.digits_probs(trained, images))
    np.testing.assert_array_equal(dc.digits_extractor(restored)(images), dc.digits_extractor(trained)(images))

    # The environment variable picks the cache root when no directory is given.
    monkeypatch.setenv("JAXMODELS_CACHE", str(cache_dir.parent))
    assert dc.default_cache_dir() == str(cache_dir)
    from_env = dc.load_or_train(steps=3)
    np.testing.assert_array_equal(from_env["params"]["head"]["kernel"], trained["params"]["head"]["kernel"])
