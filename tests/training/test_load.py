"""``jaxmodels.load``: any device count, clear errors, and the bad-input contract."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxmodels
from jaxmodels.models import UnknownModelError
from jaxmodels.training import Checkpoints
from jaxmodels.projects.vit.experiment import train_and_evaluate
from vit_runs import REPO, binary_env, tiny_config

PROBE = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fsdp_run")
    config = tiny_config(num_train_steps=10, checkpoint_every_steps=5, eval_every_steps=0)
    config.mesh.update(dict(data=2, fsdp=4, model=1))
    result = train_and_evaluate(config, str(workdir))
    return str(workdir), result


def test_checkpoint_written_on_8_devices_loads_on_1(fsdp_run, tmp_path):
    workdir, result = fsdp_run
    model, variables, config = jaxmodels.load(workdir)
    expected = np.asarray(model.apply({"params": result.state["params"]}, PROBE, train=False))
    assert config.model.name == "vit" and config.num_train_steps == 10
    np.save(tmp_path / "probe.npy", PROBE)
    script = (
        "import sys, numpy as np, jax, jaxmodels\n"
        "assert jax.device_count() == 1, jax.devices()\n"
        f"model, variables, config = jaxmodels.load({workdir!r})\n"
        f"out = model.apply(variables, np.load({str(tmp_path / 'probe.npy')!r}), train=False)\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, np.asarray(out))\n")
    subprocess.run([sys.executable, "-c", script], cwd=REPO, env=binary_env(num_devices=1), check=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)


def test_load_in_process_gives_single_device_arrays_and_same_outputs(fsdp_run):
    workdir, result = fsdp_run
    model, variables, _ = jaxmodels.load(workdir)
    leaves = jax.tree.leaves(variables)
    assert all(len(leaf.devices()) == 1 for leaf in leaves)
    np.testing.assert_allclose(model.apply(variables, PROBE, train=False),
                               model.apply({"params": result.state["params"]}, PROBE, train=False), atol=1e-6)
    assert set(variables) == {"params"}  # no optimiser state


def test_load_earlier_step_and_step_directory(fsdp_run):
    workdir, _ = fsdp_run
    _, at5, _ = jaxmodels.load(workdir, step=5)
    _, direct5, _ = jaxmodels.load(os.path.join(workdir, "checkpoints", "5"))
    _, latest, _ = jaxmodels.load(workdir)
    jax.tree.map(np.testing.assert_array_equal, at5, direct5)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(at5), jax.tree.leaves(latest)))


def test_wrong_image_size_gives_clear_error(fsdp_run):
    model, variables, _ = jaxmodels.load(fsdp_run[0])
    with pytest.raises(ValueError, match=r"8x8.*16x16|16x16.*8x8"):
        model.apply(variables, np.zeros((1, 16, 16, 1), np.float32), train=False)


def test_path_without_checkpoint_gives_clear_error(tmp_path):
    with pytest.raises(jaxmodels.CheckpointNotFoundError, match="No checkpoint found at"):
        jaxmodels.load(tmp_path)


def test_missing_step_lists_available_steps(fsdp_run):
    with pytest.raises(jaxmodels.CheckpointNotFoundError, match=r"available steps: \[5, 10\]"):
        jaxmodels.load(fsdp_run[0], step=3)


def test_unknown_model_name_gives_clear_error(tmp_path):
    config = tiny_config(num_train_steps=1)
    config.model.name = "not_a_model"
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(1, {"params": {"w": np.zeros(2)}}, config, force=True)
    checkpoints.wait_until_finished()
    checkpoints.close()
    with pytest.raises(UnknownModelError, match=r"config.model.name='not_a_model'.*known models: \[.*'vit'"):
        jaxmodels.load(tmp_path)


def test_nan_loss_in_vit_run_names_step_and_leaves_only_complete_checkpoints(tmp_path):
    config = tiny_config(num_train_steps=40, checkpoint_every_steps=2, eval_every_steps=0, log_every_steps=100)
    config.optimizer.update(dict(lr=1e6, warmup_steps=0, schedule="constant", grad_clip_norm=0.0, name="sgd", b1=0.0))
    with pytest.raises(FloatingPointError, match=r"Non-finite loss \(nan\) at step (\d+)") as info:
        train_and_evaluate(config, str(tmp_path))
    step = info.value.step
    entries = sorted(os.listdir(tmp_path / "checkpoints"), key=int)
    assert all(name.isdigit() and int(name) < step for name in entries), entries
    if entries:  # the surviving checkpoints hold finite parameters and load
        _, variables, _ = jaxmodels.load(tmp_path)
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(variables))
