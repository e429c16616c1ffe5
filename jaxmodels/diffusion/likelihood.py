"""Negative log-likelihood in bits/dim by the variational bound, all T terms (improved DDPM sec. 2.2).

  NLL <= L_vlb = L_T + sum_{t=2}^T L_{t-1} + L_0       (Ho et al. 2020, eq. 5)

with every term evaluated for each example (not sampled): L_T is the prior KL, L_{t-1} the KL between
the true posterior and the model's reverse kernel at a fresh x_t ~ q(x_t | x_0), and L_0 the
discretised Gaussian decoder's NLL. This is the official ``calc_bpd_loop`` (openai/improved-diffusion):
one noise draw per (example, t), no clipping of x^_0, bits = nats / ln 2, mean over dimensions.
The T model evaluations run in one ``lax.scan``; jit the call with the parameters as an argument.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmodels.diffusion.gaussian import GaussianDiffusion
from jaxmodels.diffusion.losses import mean_flat, prior_bpd, vb_terms_bpd


def calc_bpd_loop(model_fn, diffusion: GaussianDiffusion, x_start: jax.Array, rng: jax.Array,
                  *, clip_denoised: bool = False) -> dict:
    """Per-example bound in bits/dim.

    Returns ``{"total_bpd": [B], "prior_bpd": [B], "vb": [B, T] (L_t per step index t),
    "xstart_mse": [B, T], "decoder_bpd": [B]}``.
    """
    batch = x_start.shape[0]

    def term(_, t):
        noise = jax.random.normal(jax.random.fold_in(rng, t), x_start.shape, x_start.dtype)
        t_batch = jnp.full((batch,), t, jnp.int32)
        x_t = diffusion.q_sample(x_start, t_batch, noise)
        output = diffusion.apply_model(model_fn, x_t, t_batch).astype(jnp.float32)
        out = vb_terms_bpd(diffusion, output, x_start, x_t, t_batch, clip_denoised=clip_denoised)
        return None, (out["output"], mean_flat((out["pred_xstart"] - x_start) ** 2))

    _, (vb, mse) = jax.lax.scan(term, None, jnp.arange(diffusion.num_timesteps, dtype=jnp.int32))
    vb, mse = vb.T, mse.T  # [B, T]
    prior = prior_bpd(diffusion, x_start)
    return {"total_bpd": jnp.sum(vb, axis=1) + prior, "prior_bpd": prior, "vb": vb, "xstart_mse": mse,
            "decoder_bpd": vb[:, 0]}
