"""train/pna_zinc.py on small ZINC files written by the test (PyG raw layout)."""
import json

import numpy as np
import pytest

import jaxmodels
from jaxmodels.projects.pna import zinc_data as zinc
from vit_runs import run_binary

pytestmark = pytest.mark.slow


def _molecules(rng, count):
    out = []
    for _ in range(count):
        n = int(rng.integers(5, 12))
        bonds = np.zeros((n, n), np.int64)
        for i in range(1, n):
            j, kind = int(rng.integers(0, i)), int(rng.integers(1, 4))
            bonds[i, j] = bonds[j, i] = kind
        out.append({"atom_type": rng.integers(0, 28, n), "bond_type": bonds,
                    "logP_SA_cycle_normalized": float(rng.normal())})
    return out


def test_zinc_tiny_run_reports_mae_and_loads(tmp_path):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("val", 12), ("test", 12)):
        zinc.write_zinc_raw(str(tmp_path / "ZINC"), split, _molecules(rng, count), indices=list(range(count)))
    workdir = tmp_path / "run"
    proc = run_binary("pna_zinc", "--config=configs/pna_zinc.py:tiny", f"--config.data.root={tmp_path / 'ZINC'}",
                      f"--workdir={workdir}", num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["mae"]["test"] > 0 and np.isfinite(results["mae"]["test"])
    assert "ZINC MAE" in proc.stdout
    model, variables, config = jaxmodels.load(workdir / "best")
    assert config.model.edge_features and "batch_stats" in variables


def test_missing_zinc_files_are_named(tmp_path):
    proc = run_binary("pna_zinc", "--config=configs/pna_zinc.py:tiny", f"--config.data.root={tmp_path}",
                      f"--workdir={tmp_path / 'run'}", num_devices=1, timeout=300)
    assert proc.returncode != 0 and "train.pickle" in proc.stderr
