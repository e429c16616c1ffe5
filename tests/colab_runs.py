"""Runs a notebook of ``colabs/`` top to bottom with nbclient, as a user's kernel would (tests/ is on sys.path).

Each paper's notebook test is ``tests/projects/<paper>/test_<paper>_colab.py`` (one file per notebook, so that
``--dist loadfile`` spreads them over the workers). The kernel runs in ``colabs/`` with one CPU device (not the
8 fake devices conftest gives this process) and ``JAXMODELS_NOTEBOOK_STEPS`` set low: the notebooks' quick mode,
which trains for seconds. Any cell error fails the test; each notebook must also draw at least one plot (an
``image/png`` output).
"""
import glob
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLABS = os.path.join(REPO, "colabs")
NOTEBOOKS = sorted(glob.glob(os.path.join(COLABS, "*.ipynb")))
NOTEBOOK_STEPS = 30
CELL_TIMEOUT_S = 300


def kernel_env(tmp_path, steps: int = NOTEBOOK_STEPS, **extra: str) -> dict:
    env = dict(os.environ)
    # A user's machine (one device, not the test mesh); level 0 compiles ~20% faster (CI time).
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAXMODELS_NOTEBOOK_STEPS"] = str(steps)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    env["TMPDIR"] = str(tmp_path)  # the notebooks' tempfile run directories land under pytest's tmp
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    # The kernel must import the jaxmodels this test imports (this checkout), however it was installed.
    env["PYTHONPATH"] = os.pathsep.join([REPO, *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def python3_kernel(tmp_path) -> str:
    """Installs a ``python3`` kernelspec that runs this interpreter; returns its JUPYTER_PATH entry."""
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter"
    install(prefix=str(prefix), kernel_name="python3")
    return str(prefix / "share" / "jupyter")


def run_notebook(name: str, tmp_path, monkeypatch, steps: int = NOTEBOOK_STEPS, **env: str):
    """Executes ``colabs/<name>`` in a fresh ``python3`` kernel of this interpreter; returns the executed notebook.

    ``steps``: the kernel's ``JAXMODELS_NOTEBOOK_STEPS`` (below 200 the notebooks run their quick mode);
    ``env``: more environment variables for the kernel.
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = os.path.join(COLABS, name)
    # A kernelspec pointing at sys.executable, first on JUPYTER_PATH, so "python3" is this venv's python.
    jupyter_path = [python3_kernel(tmp_path), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(jupyter_path))
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3", "notebooks must use the python3 kernel"
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        f"{name} is saved with outputs; clear them before committing"

    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable, spec.argv

    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": COLABS}}, allow_errors=False)
    client.execute(env=kernel_env(tmp_path, steps, **env))  # raises CellExecutionError at the first failing cell

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert images, f"{name} drew no plot (no image/png output)"
    return notebook
