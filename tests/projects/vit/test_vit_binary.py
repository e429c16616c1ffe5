"""train/vit.py as a user runs it: tiny end to end, bad overrides, SIGTERM and SIGKILL recovery.

One uninterrupted run of LONG (the tiny config for 300 steps, a checkpoint every 50) is both the end-to-end check
(relative --workdir as in the README, progress lines, checkpoints, TensorBoard, load) and the reference for one
interrupted run of the same command: stopped with SIGTERM (it checkpoints and exits cleanly), restarted, killed
with SIGKILL between checkpoints, and resumed: its final parameters must equal the uninterrupted run's bit for bit.
"""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import jaxmodels
from vit_runs import REPO, binary_env, run_binary

TINY = f"--config={REPO}/configs/vit.py:tiny"
LONG = [TINY, "--config.num_train_steps=300", "--config.checkpoint_every_steps=50",
        "--config.log_every_steps=25", "--config.eval_every_steps=0"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run, started as in the README: --workdir relative to the working directory."""
    cwd = tmp_path_factory.mktemp("vit_binary")
    proc = run_binary("vit", *LONG, "--workdir=straight", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "straight", proc


def test_tiny_runs_end_to_end_and_says_how_to_load(straight):
    workdir, proc = straight
    assert "step 300/300 | loss" in proc.stdout and "steps/s | ETA" in proc.stdout
    assert f"jaxmodels.load('{workdir}')" in proc.stdout
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == ["200", "250", "300"]  # keep_checkpoints=3
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(workdir / "tensorboard"))
    model, variables, config = jaxmodels.load(workdir)
    assert config.num_train_steps == 300
    assert model.apply(variables, np.zeros((2, 8, 8, 1), np.float32), train=False).shape == (2, 10)


def test_unknown_override_fails_clearly_and_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    proc = run_binary("vit", TINY, f"--workdir={workdir}", "--config.foo=1")
    assert proc.returncode != 0
    assert "--config.foo: the config has no field 'foo'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workdir / "checkpoints").exists()


def test_unknown_variant_fails_clearly(tmp_path):
    proc = run_binary("vit", "--config=configs/vit.py:huge", f"--workdir={tmp_path}")
    assert proc.returncode != 0 and "unknown variant" in proc.stderr and "digits" in proc.stderr


def _start(workdir):
    command = [sys.executable, os.path.join(REPO, "train", "vit.py"), *LONG, f"--workdir={workdir}"]
    return subprocess.Popen(command, cwd=REPO, env=binary_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(workdir, step, proc, timeout=180):
    target = workdir / "checkpoints" / str(step)
    deadline = time.time() + timeout
    while not target.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.005)


def _params(workdir):
    return jax.device_get(jaxmodels.load(workdir)[1])


def test_sigterm_then_sigkill_then_resume_equals_uninterrupted(straight, tmp_path):
    workdir = tmp_path / "interrupted"

    # SIGTERM: the run saves a checkpoint at the step it is on and exits cleanly.
    proc = _start(workdir)
    _wait_for_checkpoint(workdir, 50, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-3000:]
    assert "Stop requested: saved checkpoint at step" in output
    stopped_at = int(output.split("Stop requested: saved checkpoint at step ")[1].split(";")[0])
    assert 50 <= stopped_at < 250, "the run got too far before it stopped; the test proves too little"
    assert str(stopped_at) in os.listdir(workdir / "checkpoints")

    # Restarted, it resumes from that checkpoint; SIGKILL once it has written the next one.
    proc = _start(workdir)
    next_checkpoint = (stopped_at // 50 + 1) * 50
    _wait_for_checkpoint(workdir, next_checkpoint, proc)
    proc.send_signal(signal.SIGKILL)
    output, _ = proc.communicate(timeout=60)
    assert f"Resumed from {workdir}/checkpoints/{stopped_at}" in output, output[-3000:]
    finished = {n for n in os.listdir(workdir / "checkpoints") if n.isdigit()}
    assert "300" not in finished, "the run finished before it was killed; the test proved nothing"

    resumed = run_binary("vit", *LONG, f"--workdir={workdir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout
    jax.tree.map(np.testing.assert_array_equal, _params(workdir), _params(straight[0]))
