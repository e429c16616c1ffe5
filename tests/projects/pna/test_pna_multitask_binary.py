"""train/pna_multitask.py end to end on a scaled-down benchmark: results, best weights, resume, load."""
import json
import os

import numpy as np
import pytest

import jaxmodels
from jaxmodels.projects.pna import multitask_data as mt_data
from jaxmodels.projects.pna import multitask
from jaxmodels.training.mesh import make_mesh
from vit_runs import run_binary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pna_multitask")
    workdir, cache = root / "run", root / "cache"
    proc = run_binary("pna_multitask", "--config=configs/pna_multitask.py:tiny", f"--workdir={workdir}",
                      f"--config.data.cache_dir={cache}", "--config.model.conv=pna", num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, cache, proc


def test_writes_results_table_plot_and_best_weights(tiny_run):
    workdir, _, proc = tiny_run
    results = json.loads((workdir / "results.json").read_text())
    for split in ("val", "test"):
        scores = results["results"][split]
        assert set(scores["log10_mse"]) == set(mt_data.TASKS)
        assert np.isfinite(scores["average"]) and np.isfinite(scores["baseline_average"])
        assert scores["average"] == pytest.approx(np.mean(list(scores["log10_mse"].values())))
    assert results["delta"] > 0 and results["best_step"] is not None
    assert "| test |" in (workdir / "results.md").read_text()
    assert (workdir / "results.png").stat().st_size > 1000
    assert "test: average log10 MSE" in proc.stdout
    assert os.listdir(workdir / "best")


def test_best_weights_load_and_reproduce_the_test_score(tiny_run):
    workdir, cache, _ = tiny_run
    model, variables, config = jaxmodels.load(workdir / "best")
    assert config.model.conv_options.delta > 0  # the training set's delta travels with the checkpoint
    dataset = mt_data.load_or_generate(str(cache), graphs_per_batch=dict(config.data.graphs_per_batch)).normalised()
    mse = multitask.test_variables(model.clone(axis_name=None), variables, dataset, ["test"], 1,
                                   make_mesh({"data": 1, "fsdp": 1, "model": 1}))
    results = json.loads((workdir / "results.json").read_text())["results"]["test"]["mse"]
    for task, value in results.items():
        assert mse["test"][task] == pytest.approx(value, rel=1e-4)


def test_rerun_resumes_and_does_not_retrain(tiny_run):
    workdir, cache, _ = tiny_run
    proc = run_binary("pna_multitask", "--config=configs/pna_multitask.py:tiny", f"--workdir={workdir}",
                      f"--config.data.cache_dir={cache}", num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resumed from" in proc.stdout and "step 5/" not in proc.stdout


def test_unknown_variant_is_named():
    proc = run_binary("pna_multitask", "--config=configs/pna_multitask.py:resnet", "--workdir=/tmp/never", timeout=120)
    assert proc.returncode != 0 and "resnet" in proc.stderr


def test_compare_runs_table_and_plot(tiny_run, tmp_path):
    workdir, _, _ = tiny_run
    proc = run_binary("pna_multitask_compare", f"--runs={workdir}", f"--out={tmp_path}", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = (tmp_path / "comparison.md").read_text()
    assert "| tiny |" in table and "baseline (train mean)" in table and table == proc.stdout
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    missing = run_binary("pna_multitask_compare", f"--runs={tmp_path / 'nope'}", f"--out={tmp_path}", timeout=120)
    assert missing.returncode != 0 and "results.json" in missing.stderr
