"""train/vit.py as a user runs it: tiny end to end, bad overrides, SIGKILL and SIGTERM recovery."""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

import jaxmodels
from vit_runs import REPO, binary_env, run_binary

TINY = "--config=configs/vit.py:tiny"


def test_tiny_runs_end_to_end_and_says_how_to_load(tmp_path):
    workdir = tmp_path / "run"  # passed relative to the working directory, as in the README
    proc = run_binary("vit", f"--config={REPO}/configs/vit.py:tiny", "--workdir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 20/20 | loss" in proc.stdout and "steps/s | ETA" in proc.stdout
    assert f"jaxmodels.load('{workdir}')" in proc.stdout
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == ["10", "20"]
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(workdir / "tensorboard"))
    model, variables, config = jaxmodels.load(workdir)
    assert config.num_train_steps == 20
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


LONG = [TINY, "--config.num_train_steps=300", "--config.checkpoint_every_steps=50",
        "--config.log_every_steps=25", "--config.eval_every_steps=0"]


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


def test_sigkill_between_checkpoints_then_resume_equals_uninterrupted(tmp_path):
    straight = tmp_path / "straight"
    assert run_binary("vit", *LONG, f"--workdir={straight}").returncode == 0

    killed = tmp_path / "killed"
    proc = _start(killed)
    _wait_for_checkpoint(killed, 50, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {n for n in os.listdir(killed / "checkpoints") if n.isdigit()}
    assert "300" not in finished, "the run finished before it was killed; the test proved nothing"

    resumed = run_binary("vit", *LONG, f"--workdir={killed}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout
    jax.tree.map(np.testing.assert_array_equal, _params(killed), _params(straight))


def test_sigterm_checkpoints_then_exits_cleanly_and_resumes(tmp_path):
    workdir = tmp_path / "run"
    proc = _start(workdir)
    _wait_for_checkpoint(workdir, 50, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-3000:]
    assert "Stop requested: saved checkpoint at step" in output
    stopped_at = int(output.split("Stop requested: saved checkpoint at step ")[1].split(";")[0])
    assert 50 <= stopped_at < 300
    assert str(stopped_at) in os.listdir(workdir / "checkpoints")
    resumed = run_binary("vit", *LONG, f"--workdir={workdir}")
    assert resumed.returncode == 0 and f"Resumed from {workdir}/checkpoints/{stopped_at}" in resumed.stdout
