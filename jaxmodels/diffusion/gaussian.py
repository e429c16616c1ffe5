"""Discrete-time Gaussian diffusion: forward process, posterior and the model's reverse kernel.

Equations (Ho et al. 2020, "DDPM"; Nichol & Dhariwal 2021, "improved DDPM"):
  q(x_t | x_0)        = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                 (DDPM eq. 4)
  q(x_{t-1}|x_t, x_0) = N(coef1_t x_0 + coef2_t x_t, beta~_t I)                       (DDPM eq. 6-7)
  p(x_{t-1}|x_t)      = N(mu_theta(x_t, t), Sigma_theta(x_t, t)),
  mu_theta            = posterior mean at x^_0(x_t), the model's prediction of x_0    (DDPM eq. 11)
  Sigma_theta         = beta~_t ("fixed_small"), beta_t ("fixed_large", with beta~_1 at t = 0 as the
                        official code), or exp(v log beta_t + (1 - v) log beta~_t) ("learned_range",
                        improved DDPM eq. 15; the network outputs v in [-1, 1], frac = (v + 1) / 2).
The network predicts one of (``mean_type``)
  "eps": epsilon, x^_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)             (DDPM eq. 15)
  "x0":  x_0 directly
  "v":   v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022, sec. 4),
         x^_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v.

A *model function* is ``model_fn(x_t, model_t) -> output`` with ``model_t`` the float timestep the
network sees (the original-process index, times 1000 / T when ``rescale_timesteps``, as improved
DDPM does for T != 1000). ``output`` has the data's channels, or twice that with a learned variance
(``[prediction, v]`` along the last axis). Everything here is pure jnp and runs under ``jax.jit``.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.diffusion.schedules import Schedule, make_schedule

MEAN_TYPES = ("eps", "x0", "v")
VAR_TYPES = ("fixed_small", "fixed_large", "learned_range")


def _gather(values: jax.Array, t: jax.Array, ndim: int) -> jax.Array:
    """values[t] shaped [batch, 1, ..., 1] to broadcast against a rank-``ndim`` batch."""
    out = jnp.take(values, t)
    return out.reshape(out.shape + (1,) * (ndim - out.ndim))


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianDiffusion:
    """Forward/reverse Gaussian diffusion on a :class:`Schedule` (any data shape: pixels or latents)."""

    schedule: Schedule
    mean_type: str = "eps"
    var_type: str = "fixed_large"
    rescale_timesteps: bool = False

    def __post_init__(self):
        if self.mean_type not in MEAN_TYPES:
            raise ValueError(f"diffusion.mean_type={self.mean_type!r}: expected one of {MEAN_TYPES}")
        if self.var_type not in VAR_TYPES:
            raise ValueError(f"diffusion.var_type={self.var_type!r}: expected one of {VAR_TYPES}")
        s = self.schedule
        f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731  (float64 precomputation, then cast)
        fixed_large_log_var = np.log(np.append(s.posterior_variance[1], s.betas[1:])) if s.num_timesteps > 1 else np.log(s.betas)
        tables = dict(
            betas=s.betas, alphas_cumprod=s.alphas_cumprod, alphas_cumprod_prev=s.alphas_cumprod_prev,
            sqrt_alphas_cumprod=np.sqrt(s.alphas_cumprod), sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - s.alphas_cumprod),
            log_one_minus_alphas_cumprod=np.log(1.0 - s.alphas_cumprod),
            sqrt_recip_alphas_cumprod=np.sqrt(1.0 / s.alphas_cumprod),
            sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / s.alphas_cumprod - 1.0),
            posterior_variance=s.posterior_variance, posterior_log_variance_clipped=s.posterior_log_variance_clipped,
            posterior_mean_coef1=s.posterior_mean_coef1, posterior_mean_coef2=s.posterior_mean_coef2,
            fixed_large_variance=np.append(s.posterior_variance[1], s.betas[1:]) if s.num_timesteps > 1 else s.betas,
            fixed_large_log_variance=fixed_large_log_var, log_betas=np.log(s.betas),
            model_timesteps=s.timestep_map * (1000.0 / s.original_num_timesteps if self.rescale_timesteps else 1.0),
        )
        object.__setattr__(self, "_tables", {name: f32(value) for name, value in tables.items()})

    # ---- bookkeeping -------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_timesteps

    @property
    def learned_variance(self) -> bool:
        return self.var_type == "learned_range"

    def table(self, name: str) -> jax.Array:
        return jnp.asarray(self._tables[name])

    def _at(self, name: str, t: jax.Array, ndim: int) -> jax.Array:
        return _gather(self.table(name), t, ndim)

    def model_timesteps(self, t: jax.Array) -> jax.Array:
        """Step indices -> the float timesteps the network is conditioned on."""
        return jnp.take(self.table("model_timesteps"), t)

    def respaced(self, section_counts) -> "GaussianDiffusion":
        """The same model on a subset of the steps (improved DDPM respacing; see ``schedules``)."""
        from jaxmodels.diffusion.schedules import respaced
        return dataclasses.replace(self, schedule=respaced(self.schedule, section_counts))

    # ---- forward process ---------------------------------------------------------------------
    def q_mean_variance(self, x_start, t):
        """Mean, variance and log-variance of q(x_t | x_0)."""
        mean = self._at("sqrt_alphas_cumprod", t, x_start.ndim) * x_start
        variance = self._at("alphas_cumprod", t, x_start.ndim)
        return mean, 1.0 - variance, self._at("log_one_minus_alphas_cumprod", t, x_start.ndim)

    def q_sample(self, x_start, t, noise):
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise (DDPM eq. 4)."""
        return (self._at("sqrt_alphas_cumprod", t, x_start.ndim) * x_start
                + self._at("sqrt_one_minus_alphas_cumprod", t, x_start.ndim) * noise)

    def q_posterior(self, x_start, x_t, t):
        """Mean, variance, clipped log-variance of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7)."""
        nd = x_t.ndim
        mean = self._at("posterior_mean_coef1", t, nd) * x_start + self._at("posterior_mean_coef2", t, nd) * x_t
        return mean, self._at("posterior_variance", t, nd), self._at("posterior_log_variance_clipped", t, nd)

    # ---- parameterisations -------------------------------------------------------------------
    def predict_xstart_from_eps(self, x_t, t, eps):
        nd = x_t.ndim
        return self._at("sqrt_recip_alphas_cumprod", t, nd) * x_t - self._at("sqrt_recipm1_alphas_cumprod", t, nd) * eps

    def predict_eps_from_xstart(self, x_t, t, x_start):
        nd = x_t.ndim
        return (self._at("sqrt_recip_alphas_cumprod", t, nd) * x_t - x_start) / self._at("sqrt_recipm1_alphas_cumprod", t, nd)

    def predict_xstart_from_v(self, x_t, t, v):
        nd = x_t.ndim
        return self._at("sqrt_alphas_cumprod", t, nd) * x_t - self._at("sqrt_one_minus_alphas_cumprod", t, nd) * v

    def v_target(self, x_start, t, noise):
        nd = x_start.ndim
        return self._at("sqrt_alphas_cumprod", t, nd) * noise - self._at("sqrt_one_minus_alphas_cumprod", t, nd) * x_start

    def training_target(self, x_start, t, noise):
        """What the network regresses onto in the simple loss: eps, x_0 or v."""
        if self.mean_type == "eps":
            return noise
        if self.mean_type == "x0":
            return x_start
        return self.v_target(x_start, t, noise)

    def split_output(self, model_output, x_t):
        """(prediction, variance values or None) from the network output."""
        channels = x_t.shape[-1]
        if self.learned_variance:
            if model_output.shape[-1] != 2 * channels:
                raise ValueError(f"var_type='learned_range' needs a model output with 2x{channels} channels "
                                 f"(set model.learn_sigma=True); got {model_output.shape[-1]}")
            return model_output[..., :channels], model_output[..., channels:]
        if model_output.shape[-1] != channels:
            raise ValueError(f"the model output has {model_output.shape[-1]} channels but the data has {channels}; "
                             "a learn_sigma model needs diffusion.var_type='learned_range'")
        return model_output, None

    def model_predictions(self, model_output, x_t, t, clip_denoised: bool = False):
        """(x^_0, eps^) from the network's prediction (``x^_0`` clipped to [-1, 1] if asked)."""
        prediction, _ = self.split_output(model_output, x_t)
        if self.mean_type == "eps":
            x_start = self.predict_xstart_from_eps(x_t, t, prediction)
        elif self.mean_type == "x0":
            x_start = prediction
        else:
            x_start = self.predict_xstart_from_v(x_t, t, prediction)
        if clip_denoised:
            x_start = jnp.clip(x_start, -1.0, 1.0)
        eps = prediction if (self.mean_type == "eps" and not clip_denoised) else self.predict_eps_from_xstart(x_t, t, x_start)
        return x_start, eps

    def p_mean_variance(self, model_output, x_t, t, clip_denoised: bool = True) -> dict:
        """The reverse kernel p(x_{t-1} | x_t): mean, variance, log_variance, pred_xstart, eps."""
        nd = x_t.ndim
        _, var_values = self.split_output(model_output, x_t)
        if self.var_type == "learned_range":
            min_log = self._at("posterior_log_variance_clipped", t, nd)
            max_log = self._at("log_betas", t, nd)
            frac = (var_values.astype(jnp.float32) + 1.0) / 2.0
            log_variance = frac * max_log + (1.0 - frac) * min_log
            variance = jnp.exp(log_variance)
        elif self.var_type == "fixed_large":
            variance = jnp.broadcast_to(self._at("fixed_large_variance", t, nd), x_t.shape)
            log_variance = jnp.broadcast_to(self._at("fixed_large_log_variance", t, nd), x_t.shape)
        else:
            variance = jnp.broadcast_to(self._at("posterior_variance", t, nd), x_t.shape)
            log_variance = jnp.broadcast_to(self._at("posterior_log_variance_clipped", t, nd), x_t.shape)
        x_start, eps = self.model_predictions(model_output, x_t, t, clip_denoised)
        mean, _, _ = self.q_posterior(x_start, x_t, t)
        return {"mean": mean, "variance": variance, "log_variance": log_variance, "pred_xstart": x_start, "eps": eps}

    def apply_model(self, model_fn, x_t, t):
        """Calls ``model_fn`` with the network's timesteps for step indices ``t``."""
        return model_fn(x_t, self.model_timesteps(t))


def diffusion_from_config(diffusion_cfg) -> GaussianDiffusion:
    """A :class:`GaussianDiffusion` from ``config.diffusion`` (schedule, num_timesteps, mean_type,
    var_type, rescale_timesteps)."""
    get = diffusion_cfg.get
    return GaussianDiffusion(make_schedule(get("schedule", "linear"), int(get("num_timesteps", 1000))),
                             mean_type=get("mean_type", "eps"), var_type=get("var_type", "fixed_large"),
                             rescale_timesteps=bool(get("rescale_timesteps", False)))
