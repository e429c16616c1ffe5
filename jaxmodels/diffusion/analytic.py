"""The Bayes-optimal denoiser for Gaussian data, in closed form: a "model" that needs no training.

For x_0 ~ N(m, S) and x_t = a x_0 + s eps (a = sqrt(alpha_bar_t), s^2 = 1 - a^2), x_t is Gaussian
and the minimum-MSE predictions are

  E[x_0 | x_t] = m + a S (a^2 S + s^2 I)^{-1} (x_t - a m),
  E[eps | x_t] = (x_t - a E[x_0 | x_t]) / s,
  Cov[x_0 | x_t] = S - a^2 S (a^2 S + s^2 I)^{-1} S.

Plugging ``E[eps | x_t]`` in as epsilon_theta makes the reverse process the exact score model of the
data, so samplers must reproduce N(m, S) (up to their discretisation error) and the VLB has a closed
form; the tests of samplers and likelihood rely on this. Fractional timesteps (DPM-Solver queries
the model between integer steps) interpolate log(alpha_t) = 0.5 log(alpha_bar) piecewise linearly, as
DPM-Solver's ``NoiseScheduleVP("discrete")`` does.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.diffusion.schedules import Schedule


def gaussian_alpha(schedule: Schedule, model_t: jax.Array, rescale_timesteps: bool = False) -> jax.Array:
    """a = sqrt(alpha_bar) at (possibly fractional) original-process timesteps ``model_t``."""
    if schedule.original_num_timesteps != schedule.num_timesteps:
        raise ValueError("pass the original (not respaced) schedule: the model is indexed by original steps")
    steps = model_t * (schedule.num_timesteps / 1000.0) if rescale_timesteps else model_t
    log_alpha = jnp.asarray(0.5 * np.log(schedule.alphas_cumprod), jnp.float32)
    return jnp.exp(jnp.interp(steps, jnp.arange(schedule.num_timesteps, dtype=jnp.float32), log_alpha))


def gaussian_posterior(mean, cov, x_t, a):
    """(E[x_0 | x_t], Cov[x_0 | x_t]) for x_t [B, D] with per-example a [B]."""
    mean, cov = jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32)
    dim = mean.shape[0]
    a = a[:, None, None]
    system = a ** 2 * cov + (1.0 - a ** 2) * jnp.eye(dim)  # [B, D, D] = Cov[x_t]
    gain = a * jnp.linalg.solve(system, jnp.broadcast_to(cov, system.shape))  # (a^2 S + s^2 I)^{-1} a S
    resid = x_t - a[:, :, 0] * mean
    x0 = mean + jnp.einsum("bij,bi->bj", gain, resid)  # S symmetric: (gain^T resid) = a S A^{-1} resid
    posterior_cov = cov - a * jnp.einsum("ij,bjk->bik", cov, gain)
    return x0, posterior_cov


def gaussian_data_model(schedule: Schedule, mean, cov, mean_type: str = "eps", rescale_timesteps: bool = False):
    """``model_fn(x_t [B, D], model_t [B]) -> prediction [B, D]`` optimal for x_0 ~ N(mean, cov)."""
    def model_fn(x_t, model_t):
        a = gaussian_alpha(schedule, jnp.broadcast_to(model_t, x_t.shape[:1]).astype(jnp.float32), rescale_timesteps)
        x0, _ = gaussian_posterior(mean, cov, x_t, a)
        s = jnp.sqrt(1.0 - a ** 2)[:, None]
        eps = (x_t - a[:, None] * x0) / s
        if mean_type == "eps":
            return eps
        if mean_type == "x0":
            return x0
        if mean_type == "v":
            return a[:, None] * eps - s * x0
        raise ValueError(f"mean_type={mean_type!r}")
    return model_fn
