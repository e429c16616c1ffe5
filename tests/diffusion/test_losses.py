"""Objectives and the VLB: decoder normalisation, KL, hybrid stop-gradient, importance sampling, and
the full bound in bits/dim against its closed form for Gaussian data (no training)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.diffusion import losses, resample
from jaxmodels.diffusion.analytic import gaussian_data_model
from jaxmodels.diffusion.gaussian import GaussianDiffusion
from jaxmodels.diffusion.likelihood import calc_bpd_loop
from jaxmodels.diffusion.schedules import make_schedule

LEVELS = np.linspace(-1.0, 1.0, 256)  # the 256 data levels x = 2k / 255 - 1


@pytest.mark.parametrize("exact_cdf", [False, True])
def test_discretised_gaussian_sums_to_one_over_256_bins(exact_cdf):
    rng = np.random.default_rng(0)
    means = rng.uniform(-1.2, 1.2, size=(6, 1))
    log_scales = rng.uniform(np.log(1e-3), np.log(2.0), size=(6, 1))
    logp = losses.discretized_gaussian_log_likelihood(jnp.asarray(LEVELS[None]), jnp.asarray(means),
                                                      jnp.asarray(log_scales), exact_cdf=exact_cdf)
    total = np.exp(np.asarray(logp, np.float64)).sum(axis=1)
    np.testing.assert_allclose(total, 1.0, atol=2e-5)  # float32 CDF differences telescope to 1


def test_discretised_gaussian_matches_bin_integral():
    mean, scale = 0.1, 0.05
    logp = losses.discretized_gaussian_log_likelihood(jnp.float32(0.12), jnp.float32(mean), jnp.log(jnp.float32(scale)),
                                                      exact_cdf=True)
    from scipy.stats import norm
    expected = norm.cdf(0.12 + 1 / 255, mean, scale) - norm.cdf(0.12 - 1 / 255, mean, scale)
    assert float(logp) == pytest.approx(math.log(expected), rel=1e-4)
    approx = losses.discretized_gaussian_log_likelihood(jnp.float32(0.12), jnp.float32(mean), jnp.log(jnp.float32(scale)))
    assert float(approx) == pytest.approx(math.log(expected), abs=2e-3)  # tanh approximation of Phi


def test_normal_kl_closed_form_and_zero_at_equality():
    assert float(losses.normal_kl(0.3, 0.2, 0.3, 0.2)) == pytest.approx(0.0, abs=1e-7)
    m1, v1, m2, v2 = 0.5, 0.3, -0.2, 1.7
    expected = math.log(math.sqrt(v2 / v1)) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5
    assert float(losses.normal_kl(m1, math.log(v1), m2, math.log(v2))) == pytest.approx(expected, rel=1e-5)


def _toy_model(params, x, t):
    """A linear 'network' with a learned-variance half: output [eps_hat, v]."""
    del t
    return jnp.concatenate([x * params["a"], jnp.tanh(x * 0 + params["v"])], axis=-1)


def test_hybrid_loss_stops_the_gradient_of_the_vlb_through_the_mean():
    diffusion = GaussianDiffusion(make_schedule("cosine", 100), var_type="learned_range")
    rng = jax.random.PRNGKey(0)
    x0 = jax.random.uniform(rng, (16, 4, 4, 2), minval=-1, maxval=1)
    noise = jax.random.normal(jax.random.fold_in(rng, 1), x0.shape)
    t = jnp.arange(16, dtype=jnp.int32) * 6
    params = {"a": jnp.float32(0.7), "v": jnp.float32(0.1)}

    def term(p, name):
        out = losses.training_losses(diffusion, lambda x, s: _toy_model(p, x, s), x0, t, noise, loss_type="hybrid")
        return jnp.mean(out[name])

    g_vb = jax.grad(term)(params, "vb")
    g_mse = jax.grad(term)(params, "mse")
    g_loss = jax.grad(term)(params, "loss")
    assert float(g_vb["a"]) == 0.0 and float(g_vb["v"]) != 0.0  # the VLB trains only the variance
    assert float(g_mse["v"]) == 0.0
    assert float(g_loss["a"]) == pytest.approx(float(g_mse["a"]), rel=1e-6)
    # lambda T weighting: hybrid vb term = 0.001 * T * L_t
    plain = losses.training_losses(diffusion, lambda x, s: _toy_model(params, x, s), x0, t, noise, loss_type="vlb")
    hybrid = losses.training_losses(diffusion, lambda x, s: _toy_model(params, x, s), x0, t, noise, loss_type="hybrid")
    np.testing.assert_allclose(hybrid["vb"], plain["vb"] * 0.001 * 100, rtol=1e-5)


def test_hybrid_needs_a_learned_variance():
    diffusion = GaussianDiffusion(make_schedule("linear", 100))
    with pytest.raises(ValueError, match="learned_range"):
        losses.training_losses(diffusion, lambda x, t: x, jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32),
                               jnp.zeros((2, 3)), loss_type="hybrid")
    with pytest.raises(ValueError, match="diffusion.loss_type"):
        losses.training_losses(diffusion, lambda x, t: x, jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32),
                               jnp.zeros((2, 3)), loss_type="l1")


@pytest.mark.parametrize("mean_type", ["eps", "x0", "v"])
def test_simple_loss_is_zero_for_the_true_target(mean_type):
    diffusion = GaussianDiffusion(make_schedule("linear", 1000), mean_type=mean_type)
    rng = jax.random.PRNGKey(3)
    x0 = jax.random.uniform(rng, (8, 5), minval=-1, maxval=1)
    noise = jax.random.normal(jax.random.fold_in(rng, 1), x0.shape)
    t = jnp.array([0, 1, 10, 100, 500, 900, 998, 999], jnp.int32)
    target = diffusion.training_target(x0, t, noise)
    out = losses.training_losses(diffusion, lambda x, s: target, x0, t, noise)
    np.testing.assert_allclose(out["loss"], 0.0, atol=1e-12)
    x_t = diffusion.q_sample(x0, t, noise)  # every parameterisation recovers x_0 and eps
    x0_hat, eps_hat = diffusion.model_predictions(target, x_t, t)
    np.testing.assert_allclose(x0_hat[:-1], x0[:-1], atol=2e-3)  # the last step: x_0 ill-conditioned
    np.testing.assert_allclose(eps_hat[1:], noise[1:], atol=2e-3)


def test_importance_sampler_matches_the_official_update_rule():
    state = resample.init_state(4, history_per_term=3)
    p = np.asarray(resample.weights(state))
    np.testing.assert_allclose(p, 0.25)  # uniform until every t has 3 losses
    ts = np.array([0, 0, 1, 2, 3, 0, 1, 2, 3, 1, 2, 3, 0, 0])
    ls = np.arange(1, len(ts) + 1, dtype=np.float32)
    state = resample.update(state, jnp.asarray(ts), jnp.asarray(ls))
    # reference: the official per-example loop
    hist, count = np.zeros((4, 3)), np.zeros(4, int)
    for t, loss in zip(ts, ls):
        if count[t] == 3:
            hist[t, :-1] = hist[t, 1:]
            hist[t, -1] = loss
        else:
            hist[t, count[t]] = loss
            count[t] += 1
    np.testing.assert_allclose(state["history"], hist)
    np.testing.assert_array_equal(state["count"], count)
    w = np.sqrt((hist ** 2).mean(-1))
    expected = w / w.sum() * (1 - 0.001) + 0.001 / 4
    np.testing.assert_allclose(resample.weights(state), expected, rtol=1e-6)
    t, weight = resample.sample(jax.random.PRNGKey(0), 20000, jnp.asarray(expected, jnp.float32))
    freq = np.bincount(np.asarray(t), minlength=4) / 20000
    np.testing.assert_allclose(freq, expected, atol=0.015)
    np.testing.assert_allclose(weight, 1.0 / (4 * expected[np.asarray(t)]), rtol=1e-5)


# ---- the full bound against its closed form for Gaussian data ----------------------------------

MEAN = np.array([0.1, -0.2, 0.05])
COV = np.array([[0.010, 0.004, 0.000], [0.004, 0.008, 0.002], [0.000, 0.002, 0.006]])


def analytic_bpd(diffusion: GaussianDiffusion, mean, cov) -> float:
    """E_x0[L_vlb] in bits/dim for x_0 ~ N(mean, cov) and the Bayes-optimal eps model.

    KL terms (t >= 1): both kernels are Gaussian with means c1 x_0 + c2 x_t and c1 x^_0 + c2 x_t, so
    E KL = 0.5 sum_i [log(v_p / v_q) + v_q / v_p - 1 + c1^2 Cov[x_0 | x_t]_ii / v_p]. Decoder (t = 0):
    x_0 - x^_0(x_1) ~ N(0, Cov[x_0 | x_1]); its expected -log(bin probability) by Gauss-Hermite
    quadrature (data stays far from the open edge bins). Prior: E KL(N(a x_0, s^2) || N(0, 1)).
    """
    s = diffusion.schedule
    ab, dim = s.alphas_cumprod, len(mean)
    logvar_q = s.posterior_log_variance_clipped
    logvar_p = {"fixed_small": logvar_q,
                "fixed_large": np.log(np.append(s.posterior_variance[1], s.betas[1:]))}[diffusion.var_type]

    def post_cov_diag(a):
        system = a ** 2 * cov + (1 - a ** 2) * np.eye(dim)
        return np.diag(cov - a ** 2 * cov @ np.linalg.solve(system, cov))

    total = 0.0
    for t in range(1, s.num_timesteps):
        c1, vq, vp = s.posterior_mean_coef1[t], np.exp(logvar_q[t]), np.exp(logvar_p[t])
        total += 0.5 * np.sum(logvar_p[t] - logvar_q[t] + vq / vp - 1 + c1 ** 2 * post_cov_diag(math.sqrt(ab[t])) / vp)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    sigma = math.exp(0.5 * logvar_p[0])
    cdf = lambda z: 0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))  # noqa: E731
    for var in post_cov_diag(math.sqrt(ab[0])):
        u = nodes * math.sqrt(var)
        total += np.sum(weights * -np.log(np.maximum(cdf((u + 1 / 255) / sigma) - cdf((u - 1 / 255) / sigma), 1e-12)))
    a2, s2 = ab[-1], 1 - ab[-1]
    total += 0.5 * np.sum(-1 - math.log(s2) + s2 + a2 * (mean ** 2 + np.diag(cov)))
    return total / dim / math.log(2)


@pytest.mark.parametrize("var_type", ["fixed_small", "fixed_large"])
def test_vlb_bits_per_dim_equals_the_analytic_value(var_type):
    schedule = make_schedule("linear", 1000)
    diffusion = GaussianDiffusion(schedule, var_type=var_type)
    model = gaussian_data_model(schedule, MEAN, COV)
    rng = np.random.default_rng(0)
    x0 = rng.multivariate_normal(MEAN, COV, size=4000).astype(np.float32)
    assert np.abs(x0).max() < 0.99  # the open edge bins never matter
    out = jax.jit(lambda x, key: calc_bpd_loop(model, diffusion, x, key))(x0, jax.random.PRNGKey(1))
    per_example = np.asarray(out["total_bpd"], np.float64)
    estimate, stderr = per_example.mean(), per_example.std() / math.sqrt(len(per_example))
    expected = analytic_bpd(diffusion, MEAN, COV)
    # Monte-Carlo error (4 standard errors) plus float32 round-off over 1000 terms
    assert abs(estimate - expected) < 4 * stderr + 2e-3, (estimate, expected, stderr)
    assert np.asarray(out["vb"]).shape == (4000, 1000)
    # the decoder term alone is pinned down much more tightly than the sum
    assert float(np.mean(out["prior_bpd"])) < 1e-4  # alpha_bar_T ~ 4e-5: the prior term is ~0
