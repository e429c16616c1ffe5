"""train/diffusion.py and train/diffusion_sample.py end to end on the tiny digits variant (CPU).

The run is cut to 4 steps (checkpoints at 2 and 4, one evaluation with its sample grid at the end), then resumed on
another mesh to 6; the digits recipe's loss curve is test_digits_recipe.py.
"""
import json

import numpy as np
import pytest

import jaxmodels
from vit_runs import logged, run_binary

pytestmark = pytest.mark.slow

TINY = ["--config=configs/diffusion.py:tiny", "--config.log_every_steps=2", "--config.checkpoint_every_steps=2",
        "--config.eval_every_steps=4"]


def test_tiny_run_resumes_loads_and_samples(tmp_path):
    workdir = tmp_path / "run"
    proc = run_binary("diffusion", *TINY, "--config.num_train_steps=4", f"--workdir={workdir}", num_devices=2,
                      timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "samples" / "step_0000004.png").exists() and "eval @ step 4" in proc.stdout
    resumed = run_binary("diffusion", *TINY, "--config.num_train_steps=6", f"--workdir={workdir}", num_devices=1,
                         timeout=600)  # resume on another mesh
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout and "Finished at step 6" in resumed.stdout
    assert sorted(logged(workdir)) == [2, 4, 6]

    model, variables, config = jaxmodels.load(workdir)
    assert config.model.name == "unet" and "params" in variables

    sample = run_binary("diffusion_sample", f"--workdir={workdir}", "--steps=3", "--samplers=ddim,dpm_solver",
                        "--quality_samples=0", "--grid_size=8", "--nll_examples=8", "--nll_batch=8",
                        num_devices=1, timeout=600)
    assert sample.returncode == 0, sample.stderr[-3000:]
    results = json.loads((workdir / "eval" / "results.json").read_text())
    assert results["meta"]["step"] == 6 and np.isfinite(results["nll"]["bpd"]) and results["nll"]["bpd"] > 0
    assert [(r["sampler"], r["steps"]) for r in results["samplers"]] == [("ddim", 3), ("dpm_solver", 3)]
    assert (workdir / "eval" / "grid_ddim_3.png").exists()

    too_many = run_binary("diffusion_sample", f"--workdir={workdir}", "--steps=101", "--samplers=ddim",
                          "--quality_samples=0", "--nll_examples=0", num_devices=1, timeout=300)
    assert too_many.returncode != 0 and "asked for 101 steps but the process has T=100" in too_many.stderr
