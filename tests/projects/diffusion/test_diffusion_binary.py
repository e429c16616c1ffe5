"""train/diffusion.py and train/diffusion_sample.py end to end on digits (CPU)."""
import json

import numpy as np
import pytest

import jaxmodels
from vit_runs import logged, run_binary

pytestmark = pytest.mark.slow


def test_tiny_run_resumes_loads_and_samples(tmp_path):
    workdir = tmp_path / "run"
    proc = run_binary("diffusion", "--config=configs/diffusion.py:tiny", f"--workdir={workdir}", num_devices=2,
                      timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "samples" / "step_0000020.png").exists() and "eval @ step 20" in proc.stdout
    resumed = run_binary("diffusion", "--config=configs/diffusion.py:tiny", f"--workdir={workdir}",
                         "--config.num_train_steps=30", num_devices=1, timeout=600)  # resume on another mesh
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout and "Finished at step 30" in resumed.stdout
    assert sorted(logged(workdir)) == [10, 20, 30]

    model, variables, config = jaxmodels.load(workdir)
    assert config.model.name == "unet" and "params" in variables

    sample = run_binary("diffusion_sample", f"--workdir={workdir}", "--steps=3", "--samplers=ddim,dpm_solver",
                        "--quality_samples=0", "--grid_size=8", "--nll_examples=8", "--nll_batch=8",
                        num_devices=1, timeout=600)
    assert sample.returncode == 0, sample.stderr[-3000:]
    results = json.loads((workdir / "eval" / "results.json").read_text())
    assert results["meta"]["step"] == 30 and np.isfinite(results["nll"]["bpd"]) and results["nll"]["bpd"] > 0
    assert [(r["sampler"], r["steps"]) for r in results["samplers"]] == [("ddim", 3), ("dpm_solver", 3)]
    assert (workdir / "eval" / "grid_ddim_3.png").exists()

    too_many = run_binary("diffusion_sample", f"--workdir={workdir}", "--steps=101", "--samplers=ddim",
                          "--quality_samples=0", "--nll_examples=0", num_devices=1, timeout=300)
    assert too_many.returncode != 0 and "asked for 101 steps but the process has T=100" in too_many.stderr
