"""train/diffusion.py on the digits recipe (CPU): the loss falls. A file of its own so that pytest-xdist's
``--dist loadfile`` can run it beside the tiny end-to-end test rather than after it (both take minutes)."""
import numpy as np
import pytest

from vit_runs import logged, run_binary

pytestmark = pytest.mark.slow


def test_digits_config_loss_falls(tmp_path):
    """100 steps of the digits recipe (smaller batch for CI): the training loss falls (~1.0 -> ~0.1)."""
    workdir = tmp_path / "digits"
    proc = run_binary("diffusion", "--config=configs/diffusion.py:digits", f"--workdir={workdir}",
                      "--config.num_train_steps=100", "--config.batch_size=32", "--config.log_every_steps=20",
                      "--config.eval_every_steps=100", "--config.sample.num_samples=0", num_devices=1, timeout=900,
                      fast_compile=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loss = logged(workdir)
    first, last = loss[20], np.mean([loss[80], loss[100]])
    assert last < 0.6 * first, loss
