"""colabs/diffusion.ipynb runs top to bottom in its quick mode and draws its plots (tests/colab_runs.py).

Quick mode trains the tiny variant; 10 steps are enough to run every cell (the samples are noise, the FD
and NLL cells still compute). The kernel reads the run's digits classifier from ``digits_classifier_cache``
instead of training its own.
"""
import pytest

from colab_runs import run_notebook

pytestmark = pytest.mark.slow


def test_notebook_runs(tmp_path, monkeypatch, digits_classifier_cache):
    run_notebook("diffusion.ipynb", tmp_path, monkeypatch, steps=10, JAXMODELS_CACHE=str(digits_classifier_cache))
