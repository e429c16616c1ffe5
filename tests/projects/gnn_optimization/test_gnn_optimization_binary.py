"""train/gnn_optimization.py as a user runs it, on the tiny config: figures, rate table, JSON, metrics."""
import json
import math
import os
import subprocess
import sys

from vit_runs import REPO  # noqa: E402
FIGURES = ("skip_vs_noskip.png", "depth.png", "labels.png", "lambda_min.png", "linear_vs_relu.png")


def _numbers(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def test_tiny_study_writes_figures_table_and_finite_json(tmp_path):
    workdir = tmp_path / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device is all the study uses
    command = [sys.executable, os.path.join(REPO, "train", "gnn_optimization.py"),
               "--config=configs/gnn_optimization.py:tiny", f"--workdir={workdir}"]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Findings over 1 (aggregation, seed) pairs" in proc.stdout and "skip faster than no skip" in proc.stdout

    for name in FIGURES:
        data = (workdir / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000, name

    results = json.loads((workdir / "results.json").read_text())
    runs = results["runs"]
    # tiny: study = 2 depths x 2 models x 2 label modes; nonlinear = 1 depth x 2 models x 1 label mode
    assert len(runs) == 10
    assert {r["group"] for r in runs} == {"study", "nonlinear"}
    numbers = list(_numbers(results["runs"])) + list(_numbers(results["graph"]))
    assert numbers and all(math.isfinite(x) for x in numbers)
    for r in runs:
        assert r["rate"] is not None and r["final_gap"] is not None and r["lambda_T"] > 0
        assert r["final_gap"] < r["initial_gap"], f"{r['model']} H={r['depth']} did not train"
        if r["activation"] == "linear":
            assert r["lstar"] >= 0 and r["rate_bound"] is not None and r["sigma_min2"] > 0

    means, every_run = (workdir / "rates.md").read_text().split("## Every run")
    assert every_run.count("\n| study |") == 8 and every_run.count("\n| nonlinear |") == 2
    assert means.count("\n| study |") == 8  # one seed: one mean row per run
    assert "| rate (all) |" in every_run and "| rate (all) |" in means
    assert len(results["mean_over_seeds"]) == 10

    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert records[0]["step"] == 0
    assert any(key.endswith("/loss_minus_lstar") for key in records[0])
