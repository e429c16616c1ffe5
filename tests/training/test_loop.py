"""The generic loop on a tiny linear-regression experiment (fast; no ViT needed)."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxmodels.training import Checkpoints, Experiment, NonFiniteLossError, train

TRUE_W = np.arange(1, 9, dtype=np.float32) / 8.0


class Linear(nn.Module):
    @nn.compact
    def __call__(self, x):
        kernel_init = nn.with_logical_partitioning(nn.initializers.zeros, ("embed", "mlp"))
        return nn.Dense(1, use_bias=False, kernel_init=kernel_init)(x)[:, 0]


class RegressionBatches:
    """Deterministic batches indexed by position; ``get_state``/``set_state`` like a grain iterator."""

    def __init__(self, batch_size=16):
        self.batch_size, self.position = batch_size, 0

    def __next__(self):
        rng = np.random.default_rng(self.position)
        self.position += 1
        x = rng.normal(size=(self.batch_size, 8)).astype(np.float32)
        return {"x": x, "y": x @ TRUE_W}

    def __iter__(self):
        return self

    def get_state(self):
        return {"position": self.position}

    def set_state(self, state):
        self.position = int(state["position"])


def regression_experiment(nan_at_step=None, lr=0.2):
    model, tx = Linear(), optax.sgd(lr)

    def init_state(rng):
        params = model.init(rng, jnp.zeros((1, 8)))["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    def train_step(state, batch):
        def loss_fn(params):
            return jnp.mean((model.apply({"params": params}, batch["x"]) - batch["y"]) ** 2)
        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        if nan_at_step is not None:  # the loss of (1-based) step `nan_at_step` becomes NaN
            loss = jnp.where(state["step"] + 1 == nan_at_step, jnp.nan, loss)
            grads = jax.tree.map(lambda g: g * loss / jax.lax.stop_gradient(loss), grads)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        return ({"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
                 "opt_state": opt_state}, {"loss": loss})

    def eval_step(state, batch):
        err = (model.apply({"params": state["params"]}, batch["x"]) - batch["y"]) ** 2
        return {"mse": jnp.sum(err), "count": jnp.asarray(err.shape[0], jnp.float32)}

    def eval_batches():
        return [RegressionBatches(16).__next__() for _ in range(2)]

    return Experiment(init_state=init_state, train_step=train_step, train_iter=RegressionBatches(),
                      eval_step=eval_step, eval_iter_fn=eval_batches)


def loop_config(steps, **overrides):
    config = ml_collections.ConfigDict(dict(
        seed=0, num_train_steps=steps, log_every_steps=1, eval_every_steps=0,
        checkpoint_every_steps=5, keep_checkpoints=10, async_checkpoints=True,
        mesh=dict(data=2, fsdp=4, model=1)))
    config.update(overrides)
    return config


def checkpoint_entries(workdir):
    return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def test_loop_learns_writes_metrics_and_checkpoints(tmp_path, capsys):
    result = train(regression_experiment(), loop_config(30), str(tmp_path))
    kernel = np.asarray(result.state["params"]["Dense_0"]["kernel"])[:, 0]
    np.testing.assert_allclose(kernel, TRUE_W, atol=2e-3)
    assert result.eval_metrics["mse"] < 1e-4
    assert checkpoint_entries(tmp_path) == ["10", "15", "20", "25", "30", "5"]
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert len(train_losses) == 30 and train_losses[-1] < train_losses[0] / 100
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tensorboard"))
    assert json.load(open(tmp_path / "config.json"))["num_train_steps"] == 30
    out = capsys.readouterr().out
    assert "step 30/30 | loss" in out and "steps/s | ETA 0:00:00" in out


def test_resume_continues_exactly(tmp_path):
    straight = train(regression_experiment(), loop_config(12), str(tmp_path / "straight"))
    train(regression_experiment(), loop_config(6), str(tmp_path / "resumed"))
    resumed = train(regression_experiment(), loop_config(12), str(tmp_path / "resumed"))
    np.testing.assert_array_equal(np.asarray(resumed.state["params"]["Dense_0"]["kernel"]),
                                  np.asarray(straight.state["params"]["Dense_0"]["kernel"]))


def test_parameters_are_sharded_over_fsdp(tmp_path):
    result = train(regression_experiment(), loop_config(1, mesh=dict(data=1, fsdp=8, model=1)), str(tmp_path))
    kernel = result.state["params"]["Dense_0"]["kernel"]
    assert kernel.sharding.spec[0] == "fsdp"
    assert {shard.data.shape for shard in kernel.addressable_shards} == {(1, 1)}


@pytest.mark.parametrize("log_every", [1, 100])
def test_nan_loss_names_step_and_keeps_last_good_checkpoint(tmp_path, log_every):
    experiment = regression_experiment(nan_at_step=7)
    with pytest.raises(NonFiniteLossError, match=r"at step 7\b.*last good checkpoint is step 5") as info:
        train(experiment, loop_config(20, log_every_steps=log_every), str(tmp_path))
    assert info.value.step == 7
    assert checkpoint_entries(tmp_path) == ["5"]  # nothing half-written, nothing after the NaN
    restored = Checkpoints(tmp_path, read_only=True)
    assert restored.latest_step() == 5
    if log_every == 1:  # steps before the NaN were logged; the NaN step was not
        logged = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
        assert logged == [1, 2, 3, 4, 5, 6]


def test_eval_averages_sums_over_count(tmp_path):
    experiment = regression_experiment()
    result = train(experiment, loop_config(1), str(tmp_path))
    x = np.concatenate([b["x"] for b in experiment.eval_iter_fn()])
    y = x @ TRUE_W
    pred = x @ np.asarray(result.state["params"]["Dense_0"]["kernel"])[:, 0]
    np.testing.assert_allclose(result.eval_metrics["mse"], np.mean((pred - y) ** 2), rtol=1e-5)


def test_on_eval_can_stop_training_early_with_a_checkpoint(tmp_path, capsys):
    experiment = regression_experiment()
    seen = []

    def on_eval(step, state, metrics):
        seen.append((step, metrics["mse"]))
        return step >= 6  # e.g. early stopping: stop at the second evaluation

    experiment.on_eval = on_eval
    result = train(experiment, loop_config(30, eval_every_steps=3), str(tmp_path))
    assert [s for s, _ in seen] == [3, 6] and result.step == 6 and result.stopped_early
    assert not result.preempted and "6" in checkpoint_entries(tmp_path)
    assert "Stopped early at step 6" in capsys.readouterr().out
