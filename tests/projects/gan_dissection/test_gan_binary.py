"""train/gan_dissection.py end to end on the tiny scenes config (CPU): trains, resumes, and loads as the EMA generator."""
import jax
import numpy as np
import pytest

import jaxmodels
from jaxmodels.gan.progan import Generator, sample_latents
from vit_runs import logged, run_binary

pytestmark = pytest.mark.slow


def test_tiny_run_resumes_and_loads_the_ema_generator(tmp_path):
    workdir = tmp_path / "run"
    proc = run_binary("gan_dissection", "--config=configs/gan_dissection.py:tiny", f"--workdir={workdir}", num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "samples" / "step_0000020.png").exists() and "eval @ step 20" in proc.stdout
    train_logs = logged(workdir, "train/g_loss")
    assert sorted(train_logs) == [10, 20] and all(np.isfinite(v) for v in train_logs.values())
    assert np.isfinite(logged(workdir, "eval/score_gap")[20])

    resumed = run_binary("gan_dissection", "--config=configs/gan_dissection.py:tiny", f"--workdir={workdir}",
                         "--config.num_train_steps=30", num_devices=1, timeout=600)  # resume on another mesh
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout and "Finished at step 30" in resumed.stdout
    assert sorted(logged(workdir, "train/loss")) == [10, 20, 30]

    model, variables, config = jaxmodels.load(workdir)
    assert isinstance(model, Generator) and config.model.name == "progan_generator"
    assert set(variables) == {"params"} and "layer1" in variables["params"]
    images = model.apply(variables, sample_latents(jax.random.PRNGKey(0), 4, model.latent_dim))
    assert images.shape == (4, 16, 16, 3) and bool(np.all(np.isfinite(images)))
