"""Fixtures shared by the diffusion paper's tests."""
import contextlib
import os

import pytest

from jaxmodels.projects.diffusion import digits_classifier


@pytest.fixture(scope="session")
def digits_classifier_cache(tmp_path_factory):
    """A ``$JAXMODELS_CACHE`` root holding the default-recipe digits classifier, trained once per test run.

    The xdist workers share it (the first to get here trains, under a file lock; the others read the cache):
    test_digits_classifier.py measures that classifier and the colab's kernel loads it instead of training
    its own (10-20 s each).
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's directory, above the workers' own
    try:
        from filelock import FileLock
        lock = FileLock(str(root / "jaxmodels_cache.lock"))
    except ImportError:  # no lock: this worker's own cache
        root, lock = tmp_path_factory.getbasetemp(), contextlib.nullcontext()
    cache = root / "jaxmodels_cache"
    with lock:
        digits_classifier.load_or_train(cache / "digits_classifier")
    return cache
