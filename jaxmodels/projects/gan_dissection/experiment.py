"""Training the progressive-GAN-style generator of GAN Dissection on the generic loop.

One train step of the generic loop is one round of the official alternation (tkarras/progressive_growing_of_gans
``train.py``: ``D_repeats`` critic updates, then one generator update): ``config.gan.n_critic`` critic updates,
each on its own ``batch_size / n_critic`` real images (Gulrajani et al. 2017, Alg. 1, draws fresh reals per
critic iteration) and fresh fakes, then one generator update on ``batch_size / n_critic`` fresh latents judged
by the updated critic, then the generator EMA (``ema_decay``, ProGAN's G_smoothing 0.999; ``ema_warmup`` uses
min(decay, (1 + n) / (10 + n)) for short runs). The critic updates are unrolled in the compiled step, not a
``lax.scan``: XLA:CPU ran the convolutions inside the loop ~15x slower (measured 9.2 s vs 0.57 s per step).
Losses (``config.gan.loss``): "wgan_gp" (Gulrajani et al. eq. 3 with ProGAN's drift term; lambda
``gp_lambda``, target ``gp_target``, epsilon_drift ``drift``) or "nonsaturating" (Goodfellow et al. 2014;
R1 weight ``r1_gamma``, 0 = off).
Both networks use their own Adam, built from ``config.optimizer`` (``config.disc_optimizer`` overrides it
for the critic; ProGAN: lr 0.001, beta1 0, beta2 0.99, eps 1e-8 for both).

Train state (a plain dict; ``jaxmodels.load`` returns the EMA generator as ``params``):
  step, params (G), ema_params (G EMA), disc_params, opt_state {"generator", "discriminator"}, rng.

Metrics: loss (= d_loss), d_loss, g_loss, gp (the mean squared-norm penalty term before lambda), gp_grad_norm
(||grad D|| at the interpolates, or at the reals for R1), real_score, fake_score, wasserstein (their
difference), d_grad_norm, g_grad_norm; means over the critic updates of a step.

Evaluation (test split, EMA generator, fixed latents per batch): the critic's mean score on held-out reals
and on fakes, their gap (a held-out estimate of the critic's Wasserstein distance), and ``pair_accuracy``,
the fraction of (real, fake) pairs the critic orders correctly. After each evaluation a grid of
``config.sample.num_samples`` EMA samples (fixed latents, ``config.sample.seed``) is written to
``<workdir>/samples/step_<n>.png``.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels import models
from jaxmodels.data import make_eval_iterator, make_train_iterator
from jaxmodels.projects.gan_dissection.scenes import build_source
from jaxmodels.data.generative import build_preprocess
from jaxmodels.diffusion.pipeline import save_grid
from jaxmodels.gan import losses
from jaxmodels.gan.progan import Discriminator, Generator, discriminator_from_config, sample_latents
from jaxmodels.training.loop import Experiment, TrainResult, train
from jaxmodels.training.ema import ema_decay_at, ema_update
from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
from jaxmodels.training.step import gradient_step

GAN_LOSSES = ("wgan_gp", "nonsaturating")


def check_config(config, generator: Generator, discriminator: Discriminator) -> None:
    """Clear errors, naming the field, for combinations that cannot train."""
    gan = config.gan
    if gan.get("loss", "wgan_gp") not in GAN_LOSSES:
        raise ValueError(f"config.gan.loss={gan.loss!r}: expected one of {GAN_LOSSES}")
    n_critic = int(gan.get("n_critic", 1))
    if n_critic < 1:
        raise ValueError(f"config.gan.n_critic={n_critic} must be >= 1")
    if config.batch_size % n_critic:
        raise ValueError(f"config.batch_size={config.batch_size} must be divisible by config.gan.n_critic="
                         f"{n_critic}: each critic update uses batch_size / n_critic real images")
    group = discriminator.mbstd_group_size
    for field, size in (("batch_size / config.gan.n_critic", config.batch_size // n_critic),
                        ("eval_batch_size", int(config.get("eval_batch_size", config.batch_size)))):
        if group > 1 and size > group and size % group:
            raise ValueError(f"config.{field}={size} must be a multiple of config.discriminator.mbstd_group_size="
                             f"{group} (the minibatch-stddev groups)")
    if int(config.data.image_size) != generator.resolution:
        raise ValueError(f"config.data.image_size={config.data.image_size} differs from config.model.resolution="
                         f"{generator.resolution}")
    channels = int(config.data.get("channels", 3))
    if channels != generator.num_channels:
        raise ValueError(f"config.data.channels={channels} differs from config.model.num_channels="
                         f"{generator.num_channels}")


def rbg_key(rng: jax.Array) -> jax.Array:
    """An RBG-implementation key drawn from a threefry key, for sampling inside compiled steps.

    XLA:CPU compiles threefry sampling slowly (about a second per sampling kernel on 2 cores; tens of seconds
    for a parameter init), ``RngBitGenerator`` sampling several times faster (the scene segmenter's
    init uses it too). RBG streams may differ between backends and
    shardings, which only matters for bitwise-reproducible runs across them.
    """
    return jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="rbg")


def make_init_state(generator: Generator, discriminator: Discriminator, g_tx, d_tx):
    def init_state(rng: jax.Array) -> dict[str, Any]:
        params_rng, state_rng = jax.random.split(rng)
        g_rng, d_rng = jax.random.split(rbg_key(params_rng))
        z = jnp.zeros((1, generator.latent_dim), jnp.float32)
        images = jnp.zeros((1, generator.resolution, generator.resolution, generator.num_channels), jnp.float32)
        g_params = generator.init({"params": g_rng}, z)["params"]
        d_params = discriminator.init({"params": d_rng}, images)["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": g_params, "ema_params": g_params,
                "disc_params": d_params,
                "opt_state": {"generator": g_tx.init(g_params), "discriminator": d_tx.init(d_params)},
                "rng": state_rng}
    return init_state


def discriminator_loss(d_params, real: jax.Array, fake: jax.Array, rng: jax.Array, *, discriminator: Discriminator,
                       loss: str, gp_lambda: float, gp_target: float, drift: float, r1_gamma: float):
    """The critic's loss on one batch of reals and fakes, and its metrics (see the module docstring)."""
    def d_fn(x):
        return discriminator.apply({"params": d_params}, x)

    real_scores, fake_scores = d_fn(real), d_fn(fake)  # [m], [m]: separate passes, as the official loss.py
    if loss == "wgan_gp":
        penalty, norms = losses.gradient_penalty(d_fn, real, fake, rng, target=gp_target)
        value = losses.wgan_gp_discriminator_loss(real_scores, fake_scores, penalty, gp_lambda=gp_lambda,
                                                  drift=drift)
    else:
        value = losses.nonsaturating_discriminator_loss(real_scores, fake_scores)
        penalty = norms = jnp.zeros_like(real_scores)
        if r1_gamma:
            penalty, norms = losses.r1_penalty(d_fn, real)
            value = value + 0.5 * r1_gamma * jnp.mean(penalty)
    aux = {"real_score": jnp.mean(real_scores), "fake_score": jnp.mean(fake_scores),
           "wasserstein": jnp.mean(real_scores) - jnp.mean(fake_scores), "gp": jnp.mean(penalty),
           "gp_grad_norm": jnp.mean(norms)}
    return value, aux


def train_step(state, batch, *, generator: Generator, discriminator: Discriminator, g_tx, d_tx, lr_schedule,
               loss: str, n_critic: int, gp_lambda: float, gp_target: float, drift: float, r1_gamma: float,
               ema_decay: float, ema_warmup: bool):
    step_rng = rbg_key(jax.random.fold_in(state["rng"], state["step"]))
    d_rng, g_rng = jax.random.split(step_rng)
    real = batch["image"].astype(jnp.float32)  # [B, R, R, C]
    reals = real.reshape(n_critic, real.shape[0] // n_critic, *real.shape[1:])  # [n_critic, m, R, R, C]
    m = reals.shape[1]
    g_params = state["params"]
    d_loss_fn = functools.partial(discriminator_loss, discriminator=discriminator, loss=loss, gp_lambda=gp_lambda,
                                  gp_target=gp_target, drift=drift, r1_gamma=r1_gamma)

    def critic_update(d_params, d_opt_state, real_i, key):
        z_key, mix_key = jax.random.split(key)
        fake = generator.apply({"params": g_params}, sample_latents(z_key, m, generator.latent_dim))
        result = gradient_step(lambda params, pair, rng: d_loss_fn(params, *pair, rng), d_params, d_opt_state, d_tx,
                               (real_i, fake), has_aux=True, rng=mix_key)
        metrics = {"d_loss": result.metrics["loss"], "d_grad_norm": result.metrics["grad_norm"], **result.aux}
        return result.params, result.opt_state, metrics

    d_params, d_opt_state, history = state["disc_params"], state["opt_state"]["discriminator"], []
    for real_i, key in zip(reals, jax.random.split(d_rng, n_critic)):  # unrolled: n_critic is small
        d_params, d_opt_state, step_metrics = critic_update(d_params, d_opt_state, real_i, key)
        history.append(step_metrics)
    d_metrics = jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)), *history)  # mean over the critic updates

    z = sample_latents(g_rng, m, generator.latent_dim)
    g_loss_of_scores = losses.wgan_generator_loss if loss == "wgan_gp" else losses.nonsaturating_generator_loss

    def g_loss_fn(params, latents):
        return g_loss_of_scores(discriminator.apply({"params": d_params}, generator.apply({"params": params}, latents)))

    g = gradient_step(g_loss_fn, g_params, state["opt_state"]["generator"], g_tx, z, schedule=lr_schedule,
                      step=state["step"])
    ema_params = ema_update(state["ema_params"], g.params, ema_decay_at(state["step"], ema_decay, ema_warmup))
    new_state = {**state, "step": state["step"] + 1, "params": g.params, "ema_params": ema_params,
                 "disc_params": d_params, "opt_state": {"generator": g.opt_state, "discriminator": d_opt_state}}
    metrics = {"loss": d_metrics["d_loss"], **d_metrics, "g_loss": g.metrics["loss"],
               "g_grad_norm": g.metrics["grad_norm"], "learning_rate": g.metrics["learning_rate"]}
    return new_state, metrics


def eval_step(state, batch, *, generator: Generator, discriminator: Discriminator, seed: int = 1234):
    """Sums over the real examples: critic scores of held-out reals and of EMA fakes (fixed latents per batch)."""
    real = batch["image"].astype(jnp.float32)
    mask = batch["mask"].astype(jnp.float32)
    key = rbg_key(jax.random.fold_in(jax.random.PRNGKey(seed), batch["batch_index"][0]))
    fake = generator.apply({"params": state["ema_params"]}, sample_latents(key, real.shape[0], generator.latent_dim))
    real_scores = discriminator.apply({"params": state["disc_params"]}, real)
    fake_scores = discriminator.apply({"params": state["disc_params"]}, fake)
    return {"real_score": jnp.sum(real_scores * mask), "fake_score": jnp.sum(fake_scores * mask),
            "score_gap": jnp.sum((real_scores - fake_scores) * mask),
            "pair_accuracy": jnp.sum((real_scores > fake_scores) * mask), "count": jnp.sum(mask)}


def with_batch_index(batches):
    """Adds ``"batch_index"`` (the batch's position in the pass, repeated per example) to each eval batch."""
    for index, batch in enumerate(batches):
        yield {**batch, "batch_index": np.full((len(batch["mask"]),), index, np.int32)}


class SampleGridWriter:
    """``on_eval`` hook: a grid of EMA-generator samples from fixed latents after each evaluation."""

    def __init__(self, generator: Generator, num_samples: int, seed: int, out_dir: str):
        self.generator, self.out_dir = generator, out_dir
        self.latents = sample_latents(jax.random.PRNGKey(seed), num_samples, generator.latent_dim)
        self._generate = jax.jit(lambda params, z: generator.apply({"params": params}, z))

    def __call__(self, step: int, state: Any, eval_metrics) -> None:
        images = self._generate(state["ema_params"], self.latents)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            images = multihost_utils.process_allgather(images, tiled=True)
        if jax.process_index() == 0:
            save_grid(np.asarray(jax.device_get(images)),  # to_uint8 clips to [-1, 1]
                      os.path.join(self.out_dir, f"step_{step:07d}.png"))


def make_experiment(config, workdir: str | None = None) -> Experiment:
    """Generator, critic, optimisers, data iterators and step functions for ``config``."""
    generator = models.build_model(config.model)
    discriminator = discriminator_from_config(config.get("discriminator"), config.model)
    check_config(config, generator, discriminator)
    gan = config.gan
    g_tx = build_optimizer(config.optimizer, config.num_train_steps)
    d_tx = build_optimizer(config.get("disc_optimizer") or config.optimizer, config.num_train_steps)
    lr_schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
    train_source = build_source(config.data, config.data.get("train_split", "train"))
    eval_source = build_source(config.data, config.data.get("eval_split", "test"))
    train_iter = make_train_iterator(train_source, preprocess=build_preprocess(config.data, train=True),
                                     global_batch_size=config.batch_size, seed=config.seed)
    eval_preprocess = build_preprocess(config.data, train=False)
    eval_batch_size = int(config.get("eval_batch_size", config.batch_size))
    on_eval = None
    sample = config.get("sample", {})
    if workdir is not None and int(sample.get("num_samples", 0)) > 0:
        on_eval = SampleGridWriter(generator, int(sample.num_samples), int(sample.get("seed", 0)),
                                   os.path.join(workdir, "samples"))
    return Experiment(
        init_state=make_init_state(generator, discriminator, g_tx, d_tx),
        train_step=functools.partial(
            train_step, generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
            lr_schedule=lr_schedule, loss=gan.get("loss", "wgan_gp"), n_critic=int(gan.get("n_critic", 1)),
            gp_lambda=float(gan.get("gp_lambda", losses.GP_LAMBDA)),
            gp_target=float(gan.get("gp_target", losses.GP_TARGET)),
            drift=float(gan.get("drift", losses.DRIFT_EPSILON)), r1_gamma=float(gan.get("r1_gamma", 0.0)),
            ema_decay=float(config.get("ema_decay", 0.999)), ema_warmup=bool(config.get("ema_warmup", False))),
        train_iter=train_iter,
        eval_step=functools.partial(eval_step, generator=generator, discriminator=discriminator),
        eval_iter_fn=lambda: with_batch_index(make_eval_iterator(eval_source, preprocess=eval_preprocess,
                                                                 global_batch_size=eval_batch_size)),
        on_eval=on_eval,
    )


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Trains the GAN described by ``config`` in ``workdir`` (resuming if possible)."""
    return train(make_experiment(config, workdir), config, workdir)
