"""Training a diffusion model on the generic loop (DDPM / improved DDPM / classifier-free guidance).

One train step (Ho et al. 2020, Alg. 1; improved DDPM sec. 3): draw t (uniform, or importance-sampled
for L_vlb), eps ~ N(0, I), form x_t, regress the network onto eps / x_0 / v (``diffusion.loss_type``
simple | hybrid | vlb), update with the optimiser, then the EMA of the parameters
(``ema_decay``, 0.9999 in DDPM; ``ema_warmup`` uses min(decay, (1 + n) / (10 + n)) for short runs).
For classifier-free guidance (Ho & Salimans 2021) labels are replaced by the null class
``num_classes`` with probability ``diffusion.p_uncond``.

Train state (a plain dict; ``jaxmodels.load`` returns the EMA parameters as ``params``):
  step, params, ema_params, opt_state, rng, and ``resampler`` (improved DDPM's loss history) when
  ``diffusion.timestep_sampler == "importance"``.

Evaluation (EMA parameters, test split): the simple loss at a random t per image and an unbiased
one-sample estimate of the whole bound in bits/dim, T * L_t + L_T (the full all-T bound is
``train/diffusion_sample.py --nll_examples``). After each evaluation a grid of samples from the EMA
parameters is written to ``<workdir>/samples/step_<n>.png`` (``config.sample``).
"""
from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp

from jaxmodels import models
from jaxmodels.data import make_eval_iterator, make_train_iterator
from jaxmodels.data.sources import build_source
from jaxmodels.diffusion import losses, resample
from jaxmodels.data.generative import build_preprocess
from jaxmodels.diffusion.gaussian import GaussianDiffusion, diffusion_from_config
from jaxmodels.diffusion.pipeline import SampleGridWriter, image_shape
from jaxmodels.training.loop import Experiment, TrainResult, train
from jaxmodels.training.ema import ema_decay_at, ema_update
from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
from jaxmodels.training.step import gradient_step

TIMESTEP_SAMPLERS = ("uniform", "importance")


def check_config(config) -> None:
    """Clear errors for combinations that cannot train."""
    d = config.diffusion
    if d.get("timestep_sampler", "uniform") not in TIMESTEP_SAMPLERS:
        raise ValueError(f"config.diffusion.timestep_sampler={d.timestep_sampler!r}: expected one of {TIMESTEP_SAMPLERS}")
    learned = d.get("var_type", "fixed_large") == "learned_range"
    if learned != bool(config.model.get("learn_sigma", False)):
        raise ValueError(f"config.model.learn_sigma={config.model.get('learn_sigma', False)} does not match "
                         f"config.diffusion.var_type={d.get('var_type')!r}: a learned variance needs both")
    if float(d.get("p_uncond", 0.0)) > 0 and int(config.model.get("num_classes", 0)) <= 0:
        raise ValueError("config.diffusion.p_uncond > 0 (classifier-free guidance) needs a class-conditional "
                         "model: set config.model.num_classes")


def make_init_state(model, tx, shape, num_classes: int, num_timesteps: int, importance: bool):
    def init_state(rng: jax.Array) -> dict[str, Any]:
        params_rng, state_rng = jax.random.split(rng)
        x = jnp.zeros((1, *shape), jnp.float32)
        t = jnp.zeros((1,), jnp.float32)
        y = jnp.zeros((1,), jnp.int32) if num_classes else None
        params = model.init({"params": params_rng}, x, t, y, train=False)["params"]
        state = {"step": jnp.zeros((), jnp.int32), "params": params, "ema_params": params,
                 "opt_state": tx.init(params), "rng": state_rng}
        if importance:
            state["resampler"] = resample.init_state(num_timesteps)
        return state
    return init_state


def conditioning(rng, batch, num_classes: int, p_uncond: float):
    """Labels for a conditional model, dropped to the null class w.p. ``p_uncond`` (or None)."""
    if not num_classes:
        return None
    labels = batch["label"].astype(jnp.int32)
    if p_uncond > 0:
        drop = jax.random.bernoulli(rng, p_uncond, labels.shape)
        labels = jnp.where(drop, num_classes, labels)
    return labels


def train_step(state, batch, *, model, diffusion: GaussianDiffusion, tx, lr_schedule, loss_type: str,
               hybrid_lambda: float, importance: bool, num_classes: int, p_uncond: float,
               ema_decay: float, ema_warmup: bool):
    step_rng = jax.random.fold_in(state["rng"], state["step"])
    t_rng, noise_rng, dropout_rng, label_rng = jax.random.split(step_rng, 4)
    x_start = batch["image"].astype(jnp.float32)
    batch_size = x_start.shape[0]
    if importance:
        t, weights = resample.sample(t_rng, batch_size, resample.weights(state["resampler"]))
    else:
        t, weights = resample.sample_uniform(t_rng, batch_size, diffusion.num_timesteps)
    noise = jax.random.normal(noise_rng, x_start.shape, jnp.float32)
    labels = conditioning(label_rng, batch, num_classes, p_uncond)

    def loss_fn(params, batch, rng):
        def model_fn(x, s):
            return model.apply({"params": params}, x, s, batch["label"], train=True, rngs={"dropout": rng})
        terms = losses.training_losses(diffusion, model_fn, batch["x_start"], batch["t"], batch["noise"],
                                       loss_type=loss_type, hybrid_lambda=hybrid_lambda)
        return jnp.mean(terms["loss"] * batch["weight"]), terms

    inputs = {"x_start": x_start, "t": t, "noise": noise, "label": labels, "weight": weights}
    result = gradient_step(loss_fn, state["params"], state["opt_state"], tx, inputs, has_aux=True, rng=dropout_rng,
                           schedule=lr_schedule, step=state["step"])
    terms = result.aux
    ema_params = ema_update(state["ema_params"], result.params, ema_decay_at(state["step"], ema_decay, ema_warmup))
    new_state = {**state, "step": state["step"] + 1, "params": result.params, "ema_params": ema_params,
                 "opt_state": result.opt_state}
    if importance:
        new_state["resampler"] = resample.update(state["resampler"], t, terms["loss"])
    metrics = {**result.metrics, "mse": jnp.mean(terms["mse"]), "vb": jnp.mean(terms["vb"])}
    return new_state, metrics


def eval_step(state, batch, *, model, diffusion: GaussianDiffusion, num_classes: int, seed: int = 1234):
    """Sums over the real examples: simple loss at a random t, one-sample estimate of the bound (bits/dim)."""
    rng = jax.random.PRNGKey(seed)
    t_rng, noise_rng = jax.random.split(rng)
    x_start = batch["image"].astype(jnp.float32)
    mask = batch["mask"].astype(jnp.float32)
    t, _ = resample.sample_uniform(t_rng, x_start.shape[0], diffusion.num_timesteps)
    noise = jax.random.normal(noise_rng, x_start.shape, jnp.float32)
    labels = batch["label"].astype(jnp.int32) if num_classes else None

    def model_fn(x, s):
        return model.apply({"params": state["ema_params"]}, x, s, labels, train=False)

    x_t = diffusion.q_sample(x_start, t, noise)
    output = diffusion.apply_model(model_fn, x_t, t).astype(jnp.float32)
    prediction, _ = diffusion.split_output(output, x_t)
    mse = losses.mean_flat((diffusion.training_target(x_start, t, noise) - prediction) ** 2)
    vb = losses.vb_terms_bpd(diffusion, output, x_start, x_t, t)["output"]
    bound = diffusion.num_timesteps * vb + losses.prior_bpd(diffusion, x_start)
    return {"mse": jnp.sum(mse * mask), "vlb_bpd_estimate": jnp.sum(bound * mask), "count": jnp.sum(mask)}


def make_experiment(config, workdir: str | None = None) -> Experiment:
    """Model, diffusion, optimiser, data iterators and step functions for ``config``."""
    check_config(config)
    model = models.build_model(config.model)
    diffusion = diffusion_from_config(config.diffusion)
    num_classes = int(config.model.get("num_classes", 0))
    importance = config.diffusion.get("timestep_sampler", "uniform") == "importance"
    tx = build_optimizer(config.optimizer, config.num_train_steps)
    lr_schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
    train_source = build_source(config.data, config.data.train_split)
    eval_source = build_source(config.data, config.data.eval_split)
    train_iter = make_train_iterator(train_source, preprocess=build_preprocess(config.data, train=True),
                                     global_batch_size=config.batch_size, seed=config.seed)
    eval_preprocess = build_preprocess(config.data, train=False)
    eval_batch_size = int(config.get("eval_batch_size", config.batch_size))
    on_eval = None
    if workdir is not None and int(config.get("sample", {}).get("num_samples", 0)) > 0:
        on_eval = SampleGridWriter(model, diffusion, config, os.path.join(workdir, "samples"))
    return Experiment(
        init_state=make_init_state(model, tx, image_shape(config), num_classes, diffusion.num_timesteps, importance),
        train_step=functools.partial(
            train_step, model=model, diffusion=diffusion, tx=tx, lr_schedule=lr_schedule,
            loss_type=config.diffusion.get("loss_type", "simple"),
            hybrid_lambda=float(config.diffusion.get("hybrid_lambda", 0.001)), importance=importance,
            num_classes=num_classes, p_uncond=float(config.diffusion.get("p_uncond", 0.0)),
            ema_decay=float(config.get("ema_decay", 0.9999)), ema_warmup=bool(config.get("ema_warmup", False))),
        train_iter=train_iter,
        eval_step=functools.partial(eval_step, model=model, diffusion=diffusion, num_classes=num_classes),
        eval_iter_fn=lambda: make_eval_iterator(eval_source, preprocess=eval_preprocess,
                                                global_batch_size=eval_batch_size),
        on_eval=on_eval,
    )


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Trains the diffusion model described by ``config`` in ``workdir`` (resuming if possible)."""
    return train(make_experiment(config, workdir), config, workdir)
