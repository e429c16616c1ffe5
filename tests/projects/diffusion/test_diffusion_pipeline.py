"""The training step's pieces (EMA, guidance dropout, config checks) and the sampling facade."""
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxmodels import models
from vit_runs import REPO
from jaxmodels.diffusion import pipeline
from jaxmodels.projects.diffusion import experiment
from jaxmodels.diffusion.gaussian import diffusion_from_config

sys.path.insert(0, os.path.join(REPO, "configs"))
import diffusion as diffusion_configs  # noqa: E402  (configs/diffusion.py)


def tiny(**overrides):
    """The tiny variant with a one-level U-Net without attention: nothing checked here depends on the network's
    depth, and its programs compile in half the time (CI)."""
    config = diffusion_configs.get_config("tiny")
    config.update_from_flattened_dict({"model.ch_mult": (1,), "model.attn_resolutions": (), **overrides})
    return config


@pytest.fixture(scope="module")
def conditional():
    config = tiny(**{"model.num_classes": 10, "diffusion.p_uncond": 0.1})
    config.diffusion.num_timesteps = 50
    model = models.build_model(config.model)
    init = jax.jit(functools.partial(model.init, train=False))  # one compile, not one per initialiser
    params = init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1)), jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))["params"]
    return model, {"params": params}, config


def test_ema_update_and_warmup():
    config = tiny()
    exp = experiment.make_experiment(config)
    state = jax.jit(exp.init_state)(jax.random.PRNGKey(0))
    batch = next(exp.train_iter)
    new, metrics = jax.jit(exp.train_step)(state, batch)
    decay = float(experiment.ema_decay_at(jnp.int32(0), 0.999, True))
    assert decay == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    expected = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state["ema_params"], new["params"])
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(new["ema_params"])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert float(experiment.ema_decay_at(jnp.int32(10**6), 0.9999, True)) == pytest.approx(0.9999)
    assert float(experiment.ema_decay_at(jnp.int32(0), 0.9999, False)) == pytest.approx(0.9999)
    assert np.isfinite(float(metrics["loss"])) and int(new["step"]) == 1


def test_guidance_dropout_replaces_labels_with_the_null_class():
    batch = {"label": jnp.arange(1000) % 10}
    rng = jax.random.PRNGKey(0)
    assert experiment.conditioning(rng, batch, 0, 0.5) is None
    np.testing.assert_array_equal(experiment.conditioning(rng, batch, 10, 0.0), batch["label"])
    dropped = np.asarray(experiment.conditioning(rng, batch, 10, 0.2))
    null = dropped == 10
    assert 0.15 < null.mean() < 0.25
    np.testing.assert_array_equal(dropped[~null], np.asarray(batch["label"])[~null])


def test_config_mismatches_are_named():
    with pytest.raises(ValueError, match="learn_sigma"):
        experiment.check_config(tiny(**{"diffusion.var_type": "learned_range"}))
    with pytest.raises(ValueError, match="num_classes"):
        experiment.check_config(tiny(**{"diffusion.p_uncond": 0.1}))
    with pytest.raises(ValueError, match="timestep_sampler"):
        experiment.check_config(tiny(**{"diffusion.timestep_sampler": "loss_aware"}))


def test_importance_sampling_state_is_trained_and_checkpointable():
    config = tiny(**{"diffusion.loss_type": "vlb", "diffusion.timestep_sampler": "importance",
                     "diffusion.num_timesteps": 40})
    exp = experiment.make_experiment(config)
    state = jax.jit(exp.init_state)(jax.random.PRNGKey(0))
    step = jax.jit(exp.train_step)
    batch = next(exp.train_iter)
    state, metrics = step(state, batch)
    assert int(state["resampler"]["count"].sum()) == config.batch_size
    assert np.isfinite(float(metrics["loss"])) and float(metrics["vb"]) > 0


def test_sampling_facade_conditional_guided_and_errors(conditional):
    model, variables, config = conditional
    images = pipeline.sample(model, variables, config, num_samples=4, sampler="ddim", num_steps=3,
                             labels=np.array([0, 1, 2, 10]), guidance_scale=2.0)
    assert images.shape == (4, 16, 16, 1) and np.isfinite(images).all() and np.abs(images).max() <= 1.0
    again = pipeline.sample(model, variables, config, num_samples=4, sampler="ddim", num_steps=3,
                            labels=np.array([0, 1, 2, 10]), guidance_scale=2.0)
    np.testing.assert_array_equal(images, again)  # seeded
    with pytest.raises(ValueError, match=r"labels \[11\] out of range.*10 classes"):
        pipeline.sample(model, variables, config, num_samples=2, labels=np.array([3, 11]))
    with pytest.raises(ValueError, match="labels"):
        pipeline.sample(model, variables, config, num_samples=2, labels=np.array([-1, 0]))
    with pytest.raises(ValueError, match="asked for 51 steps but the process has T=50"):
        pipeline.sample(model, variables, config, num_samples=2, sampler="ddpm", num_steps=51)
    with pytest.raises(ValueError, match="asked for 60 steps"):
        pipeline.sample(model, variables, config, num_samples=2, sampler="dpm_solver", num_steps=60)
    with pytest.raises(ValueError, match="sampler="):
        pipeline.sample(model, variables, config, num_samples=2, sampler="euler")


def test_unconditional_model_rejects_labels_and_guidance():
    config = tiny()
    config.diffusion.num_timesteps = 50
    model = models.build_model(config.model)
    params = jax.jit(functools.partial(model.init, train=False))(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1)),
                                                                 jnp.zeros((1,)))["params"]
    with pytest.raises(ValueError, match="unconditional"):
        pipeline.sample(model, {"params": params}, config, num_samples=2, labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="class-conditional"):
        pipeline.sample(model, {"params": params}, config, num_samples=2, guidance_scale=1.0)


def test_grid_png(tmp_path):
    images = np.linspace(-1, 1, 10 * 16 * 16).reshape(10, 16, 16, 1)
    path = pipeline.save_grid(images, str(tmp_path / "g.png"), nrow=5, scale=2)
    png = np.asarray(Image.open(path))
    assert png.shape == ((2 * 17 + 1) * 2, (5 * 17 + 1) * 2)
    assert not [p for p in os.listdir(tmp_path) if p != "g.png"]  # atomic: no temporary left behind
    canvas = pipeline.grid(images, nrow=5)
    np.testing.assert_array_equal(canvas[1:17, 1:17, 0], np.clip(np.round((images[0, ..., 0] + 1) * 127.5), 0, 255))


def test_diffusion_from_config_matches_the_recipes():
    d = diffusion_from_config(diffusion_configs.get_config("cifar10_improved").diffusion)
    assert d.num_timesteps == 4000 and d.var_type == "learned_range" and d.rescale_timesteps
    assert float(d.model_timesteps(jnp.array([3999]))[0]) == pytest.approx(999.75)
    c = diffusion_configs.get_config("cifar10")
    assert (c.optimizer.lr, c.optimizer.warmup_steps, c.optimizer.grad_clip_norm, c.batch_size,
            c.num_train_steps, c.ema_decay) == (2e-4, 5000, 1.0, 128, 800_000, 0.9999)
