"""GAN losses: WGAN-GP with ProGAN's drift term, and the non-saturating logistic loss (optionally with R1).

WGAN-GP (Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017, eq. 3), per example:

  L_D = D(x_fake) - D(x_real) + lambda (||grad_x D(x_hat)||_2 - 1)^2,   x_hat = x_real + u (x_fake - x_real),
        u ~ U[0, 1] per example,
  L_G = -D(x_fake),

with the progressive GAN's drift term (Karras et al. 2018, appendix A.1) ``+ eps_drift D(x_real)^2``, as the
official ``loss.py D_wgangp_acgan`` computes it: ``wgan_lambda = 10``, ``wgan_epsilon = 0.001``,
``wgan_target = 1`` (the penalty is ``(||g|| - target)^2 * lambda / target^2``), and the gradient of
``sum_i D(x_hat)_i`` with respect to the whole interpolated batch (so a minibatch-stddev critic's
cross-example terms are included, as there). Losses are means over the batch (``tf.reduce_mean``).

Non-saturating logistic loss (Goodfellow et al., "Generative Adversarial Nets", 2014, sec. 3 and the
-log D(G(z)) heuristic), with D's output a logit s:

  L_D = softplus(-s(x_real)) + softplus(s(x_fake))    (= -log sigmoid(s_real) - log(1 - sigmoid(s_fake))),
  L_G = softplus(-s(x_fake))                          (= -log sigmoid(s_fake)),

and optionally R1 (Mescheder et al., "Which Training Methods for GANs do actually Converge?", ICML 2018,
eq. 9): ``gamma / 2 * ||grad_x s(x_real)||^2``.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
CriticFn = Callable[[Array], Array]  # images [B, ...] -> scores [B]

GP_LAMBDA = 10.0  # wgan_lambda
DRIFT_EPSILON = 0.001  # wgan_epsilon, epsilon_drift
GP_TARGET = 1.0  # wgan_target


def _per_example_norm(grads: Array) -> Array:
    return jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1))  # [B]


def interpolate(real: Array, fake: Array, rng: Array) -> Array:
    """``x_hat = real + u (fake - real)``, one ``u ~ U[0, 1]`` per example (``tfutil.lerp(reals, fakes, u)``)."""
    u = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    return real + (fake - real) * u


def gradient_penalty(d_fn: CriticFn, real: Array, fake: Array, rng: Array, *,
                     target: float = GP_TARGET) -> tuple[Array, Array]:
    """WGAN-GP's penalty at random interpolates: ``((||grad D(x_hat)|| - target) / target)^2`` and ``||grad||``.

    Returns ``(penalty [B], grad_norms [B])``; multiply the penalty by lambda (``wgan_gp_discriminator_loss``
    does). Differentiable with respect to whatever ``d_fn`` closes over (the critic's parameters).
    """
    mixed = interpolate(real, fake, rng)
    grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(mixed)
    norms = _per_example_norm(grads)
    return jnp.square(norms - target) / target ** 2, norms


def wgan_gp_discriminator_loss(real_scores: Array, fake_scores: Array, penalty: Array, *,
                               gp_lambda: float = GP_LAMBDA, drift: float = DRIFT_EPSILON) -> Array:
    """``mean(D(fake) - D(real) + lambda * penalty + drift * D(real)^2)`` (WGAN-GP eq. 3 + ProGAN's drift)."""
    return jnp.mean(fake_scores - real_scores + gp_lambda * penalty + drift * jnp.square(real_scores))


def wgan_generator_loss(fake_scores: Array) -> Array:
    """``mean(-D(G(z)))`` (``G_wgan_acgan``)."""
    return -jnp.mean(fake_scores)


def nonsaturating_discriminator_loss(real_scores: Array, fake_scores: Array) -> Array:
    """``mean(softplus(-s_real) + softplus(s_fake))``: -log sigmoid(s_real) - log(1 - sigmoid(s_fake))."""
    return jnp.mean(jax.nn.softplus(-real_scores) + jax.nn.softplus(fake_scores))


def nonsaturating_generator_loss(fake_scores: Array) -> Array:
    """``mean(softplus(-s_fake))`` = -log sigmoid(D(G(z))), Goodfellow et al.'s non-saturating heuristic."""
    return jnp.mean(jax.nn.softplus(-fake_scores))


def r1_penalty(d_fn: CriticFn, real: Array) -> tuple[Array, Array]:
    """``||grad_x D(x_real)||^2`` per example (R1 = gamma / 2 times this) and the gradient norms, both [B]."""
    grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(real)
    norms = _per_example_norm(grads)
    return jnp.square(norms), norms
