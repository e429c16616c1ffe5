"""Every notebook in ``colabs/`` has a test that runs it: ``tests/projects/<paper>/test_<paper>_colab.py``.

One file per notebook, in its paper's folder, so that ``--dist loadfile`` can run them on both workers; the
runner itself (kernel, environment, the checks on every notebook) is ``tests/colab_runs.py``.
"""
import glob
import os

import pytest

from colab_runs import NOTEBOOKS, REPO

COLAB_TESTS = sorted(glob.glob(os.path.join(REPO, "tests", "projects", "*", "test_*_colab.py")))


def test_found_notebooks():
    assert NOTEBOOKS, "no notebooks in colabs/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_every_notebook_has_a_test_that_runs_it(path):
    name = os.path.basename(path)
    runners = [test for test in COLAB_TESTS if f'run_notebook("{name}"' in open(test, encoding="utf-8").read()]
    assert len(runners) == 1, f"colabs/{name}: expected one tests/projects/<paper>/test_*_colab.py to run it: {runners}"
