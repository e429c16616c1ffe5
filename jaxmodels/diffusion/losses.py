"""Diffusion objectives: L_simple, the VLB terms, improved DDPM's L_hybrid and L_vlb.

* L_simple = E_{t, x_0, eps} ||target - f_theta(x_t, t)||^2, target = eps (Ho et al. 2020, eq. 14),
  x_0 or v (Salimans & Ho 2022); mean over the data dimensions.
* VLB terms (Ho et al. eq. 5; improved DDPM eq. 4-6, in bits per dimension):
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))     for t >= 2 (index t >= 1),
    L_0     = -log p_theta(x_0 | x_1) with the discretised Gaussian decoder (Ho et al. eq. 13),
    L_T     = KL(q(x_T | x_0) || N(0, I)) (the prior term, no parameters).
* L_hybrid = L_simple + lambda L_vlb, lambda = 0.001, with a stop-gradient on the mean so the VLB
  only trains the variance (improved DDPM sec. 3.1). L_vlb = sum_t L_t = T E_t[L_t], so the per-step
  VB term is weighted lambda * T (the official ``RESCALED_MSE`` multiplies it by T / 1000).
* L_vlb alone with importance sampling of t (improved DDPM sec. 3.3, eq. 18): t ~ p_t, the loss is
  L_t / (T p_t) (unbiased for E_uniform[L_t]); see :mod:`jaxmodels.diffusion.resample`.

Reference implementation: openai/improved-diffusion ``losses.py`` and ``gaussian_diffusion.py``
(``normal_kl``, ``discretized_gaussian_log_likelihood``, ``_vb_terms_bpd``, ``training_losses``).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmodels.diffusion.gaussian import GaussianDiffusion

LOSS_TYPES = ("simple", "hybrid", "vlb")
BIN_HALF_WIDTH = 1.0 / 255.0  # data in [-1, 1] from 256 levels: bins of width 2/255 around each level


def mean_flat(x: jax.Array) -> jax.Array:
    """Mean over every axis but the batch axis. [batch]"""
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * jnp.exp(-logvar2))


def approx_standard_normal_cdf(x):
    """Phi(x) ~= 0.5 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (the official code's approximation)."""
    return 0.5 * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales, *, exact_cdf: bool = False):
    """log P(x) for x in [-1, 1] on the 256-level grid under a Gaussian discretised into bins.

    Ho et al. (2020) eq. 13: the bin of x_0^i is [x - 1/255, x + 1/255], except that the first bin
    extends to -inf (x < -0.999) and the last to +inf (x > 0.999), so the 256 bin probabilities
    sum to one. As the official code: tanh CDF (``exact_cdf=False``), logs clamped at 1e-12.
    """
    cdf = jax.scipy.stats.norm.cdf if exact_cdf else approx_standard_normal_cdf
    centered = x - means
    inv_stdv = jnp.exp(-log_scales)
    cdf_plus = cdf(inv_stdv * (centered + BIN_HALF_WIDTH))
    cdf_min = cdf(inv_stdv * (centered - BIN_HALF_WIDTH))
    log_cdf_plus = jnp.log(jnp.maximum(cdf_plus, 1e-12))
    log_one_minus_cdf_min = jnp.log(jnp.maximum(1.0 - cdf_min, 1e-12))
    log_cdf_delta = jnp.log(jnp.maximum(cdf_plus - cdf_min, 1e-12))
    return jnp.where(x < -0.999, log_cdf_plus, jnp.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def vb_terms_bpd(diffusion: GaussianDiffusion, model_output, x_start, x_t, t, *, clip_denoised: bool = False) -> dict:
    """The VLB term L_t for each example, in bits/dim: KL for t > 0, the decoder NLL at t = 0.

    Returns ``{"output": [B], "pred_xstart": x^_0}``.
    """
    true_mean, _, true_log_variance = diffusion.q_posterior(x_start, x_t, t)
    out = diffusion.p_mean_variance(model_output, x_t, t, clip_denoised=clip_denoised)
    kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])) / math.log(2.0)
    decoder_nll = -mean_flat(discretized_gaussian_log_likelihood(
        x_start, out["mean"], 0.5 * out["log_variance"])) / math.log(2.0)
    return {"output": jnp.where(t == 0, decoder_nll, kl), "pred_xstart": out["pred_xstart"]}


def prior_bpd(diffusion: GaussianDiffusion, x_start) -> jax.Array:
    """L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim. [B]"""
    t = jnp.full(x_start.shape[:1], diffusion.num_timesteps - 1, jnp.int32)
    mean, _, log_variance = diffusion.q_mean_variance(x_start, t)
    return mean_flat(normal_kl(mean, log_variance, 0.0, 0.0)) / math.log(2.0)


def training_losses(diffusion: GaussianDiffusion, model_fn, x_start, t, noise, *, loss_type: str = "simple",
                    hybrid_lambda: float = 0.001) -> dict:
    """Per-example losses at step indices ``t`` [B] for noise ``noise`` (shape of ``x_start``).

    ``loss_type``:
      "simple"  L_simple (plus, for a learned variance, lambda T L_t with a stop-gradient on the
                prediction: that is improved DDPM's L_hybrid, so "hybrid" is an alias that checks
                the model learns its variance);
      "hybrid"  L_simple + lambda T L_t[stop_grad(prediction), v], lambda = ``hybrid_lambda``;
      "vlb"     L_t, the VLB term alone (weight by 1 / (T p_t) for importance sampling; the caller
                multiplies by T to report the full bound).
    Returns ``{"loss": [B], "mse": [B], "vb": [B]}`` (absent terms are zeros).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"diffusion.loss_type={loss_type!r}: expected one of {LOSS_TYPES}")
    if loss_type == "hybrid" and not diffusion.learned_variance:
        raise ValueError("diffusion.loss_type='hybrid' trains the variance: it needs var_type='learned_range' "
                         "and model.learn_sigma=True")
    x_t = diffusion.q_sample(x_start, t, noise)
    model_output = diffusion.apply_model(model_fn, x_t, t).astype(jnp.float32)
    zeros = jnp.zeros(x_start.shape[:1], jnp.float32)
    if loss_type == "vlb":
        vb = vb_terms_bpd(diffusion, model_output, x_start, x_t, t)["output"]
        return {"loss": vb, "mse": zeros, "vb": vb}
    prediction, var_values = diffusion.split_output(model_output, x_t)
    mse = mean_flat((diffusion.training_target(x_start, t, noise) - prediction) ** 2)
    vb = zeros
    if var_values is not None:
        frozen = jnp.concatenate([jax.lax.stop_gradient(prediction), var_values], axis=-1)
        vb = vb_terms_bpd(diffusion, frozen, x_start, x_t, t)["output"] * (hybrid_lambda * diffusion.num_timesteps)
    return {"loss": mse + vb, "mse": mse, "vb": vb}
