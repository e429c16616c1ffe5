"""colabs/gan_dissection.ipynb runs top to bottom in its quick mode and draws its plots (tests/colab_runs.py)."""
import pytest

from colab_runs import run_notebook

pytestmark = pytest.mark.slow


def test_notebook_runs(tmp_path, monkeypatch):
    run_notebook("gan_dissection.ipynb", tmp_path, monkeypatch)
