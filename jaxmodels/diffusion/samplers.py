"""Diffusion samplers as pure functions: ``lax.scan`` over the steps, batched, seeded, jittable.

Samplers (all return float32 arrays shaped like ``shape`` / the input):

* :func:`ddpm_sample` -- ancestral sampling, Ho et al. 2020 ("DDPM") Algorithm 2 in the form of
  improved DDPM's ``p_sample_loop`` (Nichol & Dhariwal 2021): x_{t-1} = mu_theta(x_t, t) +
  exp(0.5 log Sigma_theta) z, no noise at the last step. ``num_steps`` respaces the process first
  (improved DDPM sec. 4, ``respace.py``).
* :func:`ddim_sample` -- DDIM, Song, Meng & Ermon 2021 ("Denoising diffusion implicit models"),
  eq. 12 with sigma_t(eta) of eq. 16. The steps are chosen with ``skip`` ("uniform": improved DDPM's
  ``"ddimN"`` stride, or even spacing when no integer stride gives N steps; "quadratic": the DDIM
  repository's ``(linspace(0, sqrt(0.8 T), N) ** 2).astype(int)``; or an explicit list) and the
  process is *respaced* to them as improved DDPM does, so alpha_bar at every kept step is exact and
  alpha_bar_prev of the first kept step is 1 (the last update returns x^_0).
* :func:`ddim_encode` / :func:`ddim_decode` -- the deterministic DDIM ODE run forwards
  (improved DDPM's ``ddim_reverse_sample``, DDIM paper sec. 4.3 / eq. 13) and backwards.
* :func:`classifier_free_guidance` -- wraps a conditional ``model_fn(x, t, y)`` into a guided
  ``model_fn(x, t)`` (Ho & Salimans 2021, eq. 6) evaluated with one batched network call.
* :func:`make_sampler` -- the recommended way to jit a sampler with the parameters as an argument.
* DPM-Solver (Lu et al. 2022) lives in :mod:`jaxmodels.diffusion.dpm_solver` (``dpm_solver_sample``).

A *model function* is ``model_fn(x_t, model_t) -> output`` (see :mod:`jaxmodels.diffusion.gaussian`;
``model_t`` are the network's float timesteps, obtained from step indices by
``GaussianDiffusion.apply_model``; a learned-variance output has twice the data's channels).

Jitting. ``model_fn`` and ``diffusion`` are Python objects closed over at trace time, so jit a
closure that takes the parameters as an argument, otherwise they are baked in as constants::

    sample = jax.jit(lambda params, rng: ddim_sample(
        lambda x, t: unet.apply(params, x, t), diffusion, (64, 32, 32, 3), rng, num_steps=50))

(:func:`make_sampler` builds exactly this). Randomness: ``rng`` is split once into a key for x_T
and a key for the per-step noise; step ``i`` (the step index, counted in the respaced process)
uses ``jax.random.fold_in(noise_key, i)``, so the same ``rng`` gives bit-identical samples.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.diffusion.gaussian import GaussianDiffusion
from jaxmodels.diffusion.schedules import space_timesteps

SKIP_TYPES = ("uniform", "quadratic")

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _check_num_steps(num_steps, num_timesteps: int, name: str = "num_steps") -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {num_steps!r}")
    num_steps = int(num_steps)
    if num_steps < 1:
        raise ValueError(f"{name}={num_steps}: need at least 1 sampling step")
    if num_steps > num_timesteps:
        raise ValueError(f"{name}={num_steps}: asked for {num_steps} sampling steps but the process has only "
                         f"T={num_timesteps} steps")
    return num_steps


def _check_shape(shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"shape must be a tuple of ints (batch first), got {shape!r}") from None
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (batch, ...) with positive sizes and at least one data axis, got {shape}")
    return shape


def _resolve_shape(shape, x_T) -> tuple[int, ...]:
    """The sample shape: ``shape``, or x_T's shape when ``shape`` is None (they must agree if both given)."""
    if x_T is None:
        if shape is None:
            raise ValueError("give shape or x_T")
        return _check_shape(shape)
    x_shape = _check_shape(jnp.shape(x_T))
    if shape is not None and _check_shape(shape) != x_shape:
        raise ValueError(f"x_T has shape {x_shape} but shape={tuple(shape)}")
    return x_shape


def _initial_noise(shape, rng, x_T, needs_noise: bool):
    """(x_T as float32, key for the per-step noise or None)."""
    if x_T is not None:
        x_T = jnp.asarray(x_T, jnp.float32)
    if rng is None:
        if x_T is None or needs_noise:
            raise ValueError("rng is required (x_T is not given or the sampler is stochastic)")
        return x_T, None
    init_key, noise_key = jax.random.split(rng)
    if x_T is None:
        x_T = jax.random.normal(init_key, shape, jnp.float32)
    return x_T, noise_key


def _batch_t(i, x):
    return jnp.full((x.shape[0],), i, jnp.int32)


def _gather(values, t, ndim):
    out = jnp.take(values, t)
    return out.reshape(out.shape + (1,) * (ndim - out.ndim))


def _respace_to(diffusion: GaussianDiffusion, steps: Sequence[int]) -> GaussianDiffusion:
    """``diffusion`` restricted to the given step indices (improved DDPM respacing)."""
    return dataclasses.replace(diffusion, schedule=diffusion.schedule.respace(steps))


def ddim_timesteps(num_timesteps: int, num_steps: int, skip: str | Sequence[int] = "uniform") -> list[int]:
    """The (sorted, distinct) step indices DDIM visits.

    * ``"uniform"``: improved DDPM's ``"ddimN"`` (the integer stride giving exactly N steps, starting
      at 0: stride 20 for N = 50 of T = 1000, as the DDIM paper); if no integer stride gives exactly
      N steps, N evenly spaced steps including the first and last (``space_timesteps(T, [N])``).
    * ``"quadratic"``: the DDIM repository's ``(np.linspace(0, sqrt(0.8 T), N) ** 2).astype(int)``;
      duplicated small indices (e.g. two zeros for N = 50) are merged -- a DDIM step between equal
      alpha_bar is the identity for every eta, so this gives the repository's result with fewer
      network calls (and fewer than N steps). Sampling starts at step int(0.8 T) as in the DDIM
      repository: meant for the linear schedule, where alpha_bar there is ~1e-3; with the cosine
      schedule (alpha_bar ~ 0.09 at 0.8 T) x_T ~ N(0, I) is then a poor start.
    * a sequence of ints: exactly those steps (``num_steps`` is then ignored).
    """
    if not isinstance(skip, str):
        steps = sorted(set(int(s) for s in skip))
        if not steps:
            raise ValueError("skip: an explicit list of timesteps must not be empty")
        if steps[0] < 0 or steps[-1] >= num_timesteps:
            raise ValueError(f"skip: timesteps must lie in [0, {num_timesteps - 1}], got {steps[0]}..{steps[-1]}")
        return steps
    num_steps = _check_num_steps(num_steps, num_timesteps)
    if skip == "uniform":
        try:
            return space_timesteps(num_timesteps, f"ddim{num_steps}")
        except ValueError:
            return space_timesteps(num_timesteps, [num_steps])
    if skip == "quadratic":
        seq = (np.linspace(0, np.sqrt(num_timesteps * 0.8), num_steps) ** 2).astype(int)
        return sorted(set(int(s) for s in seq))
    raise ValueError(f"skip={skip!r}: expected one of {SKIP_TYPES} or a list of timesteps")


# ---------------------------------------------------------------------------------------------
# DDPM ancestral sampling
# ---------------------------------------------------------------------------------------------
def ddpm_sample(model_fn: ModelFn, diffusion: GaussianDiffusion, shape, rng, *, clip_denoised: bool = True,
                num_steps: int | None = None, x_T=None, return_trajectory: bool = False):
    """Ancestral sampling from p_theta (DDPM Algorithm 2; improved DDPM ``p_sample_loop``).

    For i = S-1, ..., 0 (S = the number of steps of ``diffusion``, or ``num_steps`` after respacing
    with ``diffusion.respaced(num_steps)``)::

        x_{i-1} = mu_theta(x_i, i) + [i > 0] exp(0.5 log Sigma_theta(x_i, i)) z,   z ~ N(0, I)

    with mu_theta the posterior mean at the predicted x^_0 (DDPM eq. 11/7, optionally clipped to
    [-1, 1]) and Sigma_theta given by ``diffusion.var_type`` (fixed_small beta~, fixed_large beta,
    or improved DDPM's learned interpolation, eq. 15). x_T ~ N(0, I) from ``rng`` unless given
    (``shape`` = (batch, ...) may then be None).

    Returns float32 samples, or ``(samples, {"samples": [S, *shape], "pred_xstart": [S, *shape]})``
    with the state after each step (and its x^_0 prediction) when ``return_trajectory``.
    """
    shape = _resolve_shape(shape, x_T)
    if num_steps is not None:
        num_steps = _check_num_steps(num_steps, diffusion.num_timesteps)
        if num_steps != diffusion.num_timesteps:
            diffusion = diffusion.respaced(num_steps)
    x, noise_key = _initial_noise(shape, rng, x_T, needs_noise=True)

    def step(x, i):
        t = _batch_t(i, x)
        out = diffusion.p_mean_variance(diffusion.apply_model(model_fn, x, t), x, t, clip_denoised=clip_denoised)
        noise = jax.random.normal(jax.random.fold_in(noise_key, i), x.shape, jnp.float32)
        nonzero = (i > 0).astype(jnp.float32)  # no noise at the last step (t == 0)
        x = (out["mean"] + nonzero * jnp.exp(0.5 * out["log_variance"]) * noise).astype(jnp.float32)
        return x, ((x, out["pred_xstart"].astype(jnp.float32)) if return_trajectory else None)

    indices = jnp.arange(diffusion.num_timesteps - 1, -1, -1, dtype=jnp.int32)
    x, traj = jax.lax.scan(step, x, indices)
    if return_trajectory:
        return x, {"samples": traj[0], "pred_xstart": traj[1]}
    return x


# ---------------------------------------------------------------------------------------------
# DDIM
# ---------------------------------------------------------------------------------------------
def ddim_sample(model_fn: ModelFn, diffusion: GaussianDiffusion, shape, rng, *, num_steps: int = 50,
                eta: float = 0.0, skip: str | Sequence[int] = "uniform", clip_denoised: bool = True, x_T=None,
                return_trajectory: bool = False):
    """DDIM sampling (Song et al. 2021, eq. 12) on ``num_steps`` steps chosen by ``skip``.

    The process is respaced to the kept steps tau_1 < ... < tau_S (see :func:`ddim_timesteps`), so
    a_i = alpha_bar_{tau_i} exactly and a_0 := 1 before the first kept step. For i = S, ..., 1::

        x^_0 = (x_i - sqrt(1 - a_i) eps_theta(x_i)) / sqrt(a_i)   (clipped to [-1, 1] if asked;
                                                                   eps re-derived from it)
        sigma_i = eta sqrt((1 - a_{i-1}) / (1 - a_i)) sqrt(1 - a_i / a_{i-1})          (eq. 16)
        x_{i-1} = sqrt(a_{i-1}) x^_0 + sqrt(1 - a_{i-1} - sigma_i^2) eps + sigma_i z    (eq. 12)

    eta = 0 is the deterministic DDIM (no noise is drawn; ``rng`` may be None when x_T is given, and
    ``shape`` may be None whenever x_T is given);
    eta = 1 is DDPM's ancestral sampler with the fixed_small variance on the respaced process.
    Non-eps models (x0 / v) and learned-variance outputs go through
    ``diffusion.model_predictions`` (the variance channels are ignored).

    Returns float32 samples, or ``(samples, {"samples", "pred_xstart"})`` with ``return_trajectory``.
    """
    eta = float(eta)
    if not np.isfinite(eta) or eta < 0:
        raise ValueError(f"eta={eta}: expected eta >= 0 (0: deterministic DDIM, 1: DDPM-like)")
    shape = _resolve_shape(shape, x_T)
    steps = ddim_timesteps(diffusion.num_timesteps, num_steps, skip)
    diffusion = _respace_to(diffusion, steps)
    x, noise_key = _initial_noise(shape, rng, x_T, needs_noise=eta > 0)
    alphas_cumprod = diffusion.table("alphas_cumprod")
    alphas_cumprod_prev = diffusion.table("alphas_cumprod_prev")

    def step(x, i):
        t = _batch_t(i, x)
        x0, eps = diffusion.model_predictions(diffusion.apply_model(model_fn, x, t), x, t, clip_denoised)
        a = _gather(alphas_cumprod, t, x.ndim)
        a_prev = _gather(alphas_cumprod_prev, t, x.ndim)
        x_new = x0 * jnp.sqrt(a_prev)
        if eta > 0:
            sigma = eta * jnp.sqrt((1.0 - a_prev) / (1.0 - a)) * jnp.sqrt(1.0 - a / a_prev)
            noise = jax.random.normal(jax.random.fold_in(noise_key, i), x.shape, jnp.float32)
            x_new = x_new + jnp.sqrt(jnp.maximum(1.0 - a_prev - sigma ** 2, 0.0)) * eps + sigma * noise
        else:
            x_new = x_new + jnp.sqrt(1.0 - a_prev) * eps
        x_new = x_new.astype(jnp.float32)
        return x_new, ((x_new, x0.astype(jnp.float32)) if return_trajectory else None)

    indices = jnp.arange(diffusion.num_timesteps - 1, -1, -1, dtype=jnp.int32)
    x, traj = jax.lax.scan(step, x, indices)
    if return_trajectory:
        return x, {"samples": traj[0], "pred_xstart": traj[1]}
    return x


def ddim_encode(model_fn: ModelFn, diffusion: GaussianDiffusion, x_0, *, num_steps: int = 50,
                skip: str | Sequence[int] = "uniform"):
    """x_0 -> x_T by the deterministic DDIM ODE run forwards (DDIM sec. 4.3; improved DDPM
    ``ddim_reverse_sample``), the inverse of :func:`ddim_decode` up to discretisation error.

    On the respaced process (a_i = alpha_bar_{tau_i}, a_0 := 1 for the data), step i = 1..S maps
    x_{i-1} to x_i by eq. 12 reversed, with eps evaluated at the current point::

        x^_0 = (x_{i-1} - sqrt(1 - a_{i-1}) eps) / sqrt(a_{i-1}),  x_i = sqrt(a_i) x^_0 + sqrt(1 - a_i) eps

    where eps = eps_theta(x_{i-1}, tau_{i-1}) (exactly ``ddim_reverse_sample``) for i >= 2, and
    eps_theta(x_0, tau_1) for the first step out of the data (the network has no time for a = 1).
    Improved DDPM's loop instead treats the data as x at tau_1 and skips that first step; taking it
    makes encode mirror decode step for step (S network calls each) and decode(encode(x)) closer
    to x. No clipping. Returns the float32 latent at the last kept step (what decode starts from).
    """
    x = jnp.asarray(x_0, jnp.float32)
    _check_shape(x.shape)
    steps = ddim_timesteps(diffusion.num_timesteps, num_steps, skip)
    diffusion = _respace_to(diffusion, steps)
    alphas_cumprod = diffusion.table("alphas_cumprod")
    alphas_cumprod_prev = diffusion.table("alphas_cumprod_prev")

    def step(x, i):
        t_eval = _batch_t(jnp.maximum(i - 1, 0), x)
        a_cur = _gather(alphas_cumprod_prev, _batch_t(i, x), x.ndim)  # a_{i-1}; 1 for the data
        a_next = _gather(alphas_cumprod, _batch_t(i, x), x.ndim)
        _, eps = diffusion.model_predictions(diffusion.apply_model(model_fn, x, t_eval), x, t_eval, False)
        x0 = (x - jnp.sqrt(1.0 - a_cur) * eps) / jnp.sqrt(a_cur)
        return (jnp.sqrt(a_next) * x0 + jnp.sqrt(1.0 - a_next) * eps).astype(jnp.float32), None

    x, _ = jax.lax.scan(step, x, jnp.arange(diffusion.num_timesteps, dtype=jnp.int32))
    return x


def ddim_decode(model_fn: ModelFn, diffusion: GaussianDiffusion, x_T, *, num_steps: int = 50,
                skip: str | Sequence[int] = "uniform"):
    """x_T -> x_0 by deterministic DDIM (eta = 0, no clipping): :func:`ddim_sample` from ``x_T``."""
    return ddim_sample(model_fn, diffusion, jnp.shape(x_T), None, num_steps=num_steps, eta=0.0, skip=skip,
                       clip_denoised=False, x_T=x_T)


# ---------------------------------------------------------------------------------------------
# classifier-free guidance
# ---------------------------------------------------------------------------------------------
def _validate_labels(labels, num_classes, null_label):
    if num_classes is None and null_label is None:
        raise ValueError("classifier_free_guidance needs num_classes or null_label (the null class index)")
    if num_classes is None:
        num_classes = int(null_label)
    if null_label is None:
        null_label = int(num_classes)
    num_classes, null_label = int(num_classes), int(null_label)
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes}: expected >= 1")
    if not 0 <= null_label <= num_classes:
        raise ValueError(f"null_label={null_label} must lie in [0, {num_classes}] (num_classes={num_classes})")
    if isinstance(labels, jax.core.Tracer):
        return labels, null_label  # traced labels are not checked (their values are unknown here)
    values = np.asarray(labels)
    if values.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class indices [batch], got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {values.dtype}")
    bad = (values < 0) | (values > num_classes)
    if bad.any():
        raise ValueError(f"labels must lie in [0, {num_classes}] (classes 0..{num_classes - 1}, null class "
                         f"{num_classes}); got {values[bad][:5].tolist()} at positions "
                         f"{np.nonzero(bad)[0][:5].tolist()}")
    return jnp.asarray(values, jnp.int32), null_label


def classifier_free_guidance(model_fn: Callable, labels, guidance_scale: float, *, num_classes: int | None = None,
                             null_label: int | None = None) -> ModelFn:
    """A guided unconditional-signature ``model_fn(x, t)`` from a conditional ``model_fn(x, t, y)``.

    Ho & Salimans 2021 ("Classifier-free diffusion guidance"), eq. 6::

        eps~(x, t) = (1 + w) eps(x, t, y) - w eps(x, t, null)

    with w = ``guidance_scale`` (w = 0: the conditional model; larger w: stronger guidance; w = -1:
    the unconditional model). Both terms come from ONE network call on the batch
    ``[x; x]`` with labels ``[labels; null]``. If the output has twice the data's channels (a
    learned variance, ``[prediction, v]`` on the last axis), only the prediction half is guided and
    the conditional variance values are kept, as GLIDE does. Guiding an x0- or v-prediction the same
    way is equivalent to guiding eps (the weights sum to one and eps is affine in the prediction at a
    fixed x_t), so the guided function works with every ``diffusion.mean_type``.

    ``labels``: int [batch] in [0, num_classes], index ``num_classes`` being the null (dropped)
    class; checked here when concrete (a ValueError names ``labels`` and the valid range), not
    when traced. ``null_label`` defaults to ``num_classes`` (and ``num_classes`` to ``null_label``).
    """
    w = float(guidance_scale)
    if not np.isfinite(w):
        raise ValueError(f"guidance_scale={guidance_scale}: expected a finite number")
    labels, null_label = _validate_labels(labels, num_classes, null_label)

    def guided(x, t):
        batch = x.shape[0]
        if labels.shape[0] != batch:
            raise ValueError(f"labels has {labels.shape[0]} entries but the batch has {batch}")
        t = jnp.broadcast_to(t, (batch,))
        y = jnp.concatenate([labels.astype(jnp.int32), jnp.full((batch,), null_label, jnp.int32)])
        out = model_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]), y)
        cond, uncond = out[:batch], out[batch:]
        channels = x.shape[-1]
        if out.shape[-1] == channels:
            return (1.0 + w) * cond - w * uncond
        if out.shape[-1] == 2 * channels:  # [prediction, variance values]: guide the prediction only
            guided_pred = (1.0 + w) * cond[..., :channels] - w * uncond[..., :channels]
            return jnp.concatenate([guided_pred, cond[..., channels:]], axis=-1)
        raise ValueError(f"the model output has {out.shape[-1]} channels; expected {channels} or {2 * channels}")

    return guided


guided_model_fn = classifier_free_guidance


# ---------------------------------------------------------------------------------------------
# jitting
# ---------------------------------------------------------------------------------------------
def make_sampler(sampler: Callable, apply_fn: Callable, diffusion: GaussianDiffusion, shape, **options):
    """``jax.jit(lambda params, rng, x_T=None: sampler(lambda x, t: apply_fn(params, x, t), diffusion,
    shape, rng, x_T=x_T, **options))``: the network's parameters are an argument (not constants
    baked into the executable), the sampler's options are static. ``sampler`` is
    :func:`ddpm_sample`, :func:`ddim_sample` or ``dpm_solver.dpm_solver_sample``."""
    shape = _check_shape(shape)

    def run(params, rng, x_T=None):
        return sampler(lambda x, t: apply_fn(params, x, t), diffusion, shape, rng, x_T=x_T, **options)

    return jax.jit(run)
