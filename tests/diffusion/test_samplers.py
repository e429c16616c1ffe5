"""Samplers against the Bayes-optimal model of Gaussian data (no training needed).

Data x_0 ~ N(M, S) in 3-D with a full covariance (std 0.2-0.3 around means within 0.3 of 0, so
inside [-1, 1] up to ~3 std; every sampler runs with clip_denoised=False, so clipping plays no role).
With the exact eps model E[eps | x_t]
(``analytic.gaussian_data_model``) the reverse process is the exact score model of the data, so a
correct sampler must return N(M, S) up to (i) Monte-Carlo error and (ii) its own discretisation bias.

Tolerances (``_gaussian_errors``): with B samples the standard error of the sample mean is
sqrt(S_ii / B) and of the sample covariance sqrt((S_ii S_jj + S_ij^2) / B); every entry must lie within
4 standard errors PLUS the sampler's known bias. The bias allowances in ``SAMPLERS`` are 1.3-2x the
exact discretisation bias, measured without Monte-Carlo noise: for the analytic model every
deterministic sampler is an affine map x_T -> A x_T + b, so its output law is exactly N(b, A A^T)
(recomputed from the inputs 0, e_1, .., e_D in ``test_samples_match_data_distribution``, which requires
1.3 x exact bias <= allowance); for the stochastic ones (DDPM, DDIM eta=1) the bias was measured with
10^5 samples. Over 6 other seeds the Monte-Carlo check used at most 64% of its tolerance.
Measured |cov - S| max entry (exact / 1e5-sample):

    sampler            linear   cosine    allowance (lin / cos)
    DDPM 1000 small    0.0021   0.0014    0.0035 / 0.0025
    DDPM 1000 large    0.0006   0.0003    0.0015
    DDPM 250 large     -        0.0015    0.0025   (respaced; run on the cosine schedule only)
    DDIM 1000          0.00085  0.00043   0.0015
    DDIM 50            0.0140   0.0075    0.021 / 0.011
    DDIM 50, eta=1     0.0254   0.0157    0.036 / 0.024
    DPM-2 single (20)  0.0128   0.0140    0.020 / 0.021
    DPM-3 single (20)  0.0018   0.0016    0.003
    DPM-2 multi  (20)  0.0024   0.0027    0.004
    DPM-3 multi  (20)  0.00095  0.0011    0.002

(|mean - M| is below 0.0015 for all of them; allowance 0.002.) ``test_check_rejects_broken_samplers``
shows that the same check fails for samplers with a deliberate bug. B = 4000 keeps a run around a
second; a fast algebraically identical form of the analytic model (eigen-decomposed covariance,
``_eigen_gaussian_model``) is used for the large runs, checked against ``gaussian_data_model``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.diffusion import dpm_solver, samplers
from jaxmodels.diffusion.analytic import gaussian_data_model
from jaxmodels.diffusion.gaussian import GaussianDiffusion
from jaxmodels.diffusion.schedules import make_schedule

M = np.array([0.2, -0.3, 0.1])
S = np.array([[0.09, 0.03, -0.02], [0.03, 0.06, 0.015], [-0.02, 0.015, 0.04]])  # eigenvalues 0.017..0.11
D = 3
B = 4000


# ---------------------------------------------------------------------------------------------
# the oracle
# ---------------------------------------------------------------------------------------------
def _eigen_gaussian_model(schedule, mean, cov, mean_type="eps"):
    """``gaussian_data_model`` in closed form per eigen-direction of ``cov`` (no batched solves):
    E[x_0 | x_t] = m + U diag(a l / (a^2 l + s^2)) U^T (x_t - a m), with a from the same piecewise
    linear interpolation of log alpha over the integer steps (clamped at the ends, as jnp.interp)."""
    lam, U = np.linalg.eigh(np.asarray(cov, np.float64))
    num_t = schedule.num_timesteps
    log_alpha = jnp.asarray(0.5 * np.log(schedule.alphas_cumprod), jnp.float32)
    U, lam, mean = (jnp.asarray(v, jnp.float32) for v in (U, lam, mean))

    def model_fn(x_t, model_t):
        t = jnp.clip(jnp.broadcast_to(model_t, x_t.shape[:1]).astype(jnp.float32), 0.0, num_t - 1.0)
        i = jnp.minimum(jnp.floor(t).astype(jnp.int32), num_t - 2)
        frac = t - i
        a = jnp.exp(log_alpha[i] * (1.0 - frac) + log_alpha[i + 1] * frac)[:, None]
        s2 = 1.0 - a ** 2
        y = jnp.einsum("bi,ij->bj", x_t - a * mean, U) * (a * lam / (a ** 2 * lam + s2))
        x0 = mean + jnp.einsum("bj,ij->bi", y, U)
        s = jnp.sqrt(s2)
        eps = (x_t - a * x0) / s
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0}[mean_type]

    return model_fn


@functools.lru_cache(maxsize=None)
def _setup(schedule_name, var_type="fixed_large", mean_type="eps"):
    schedule = make_schedule(schedule_name, 1000)
    diffusion = GaussianDiffusion(schedule, mean_type=mean_type, var_type=var_type)
    return diffusion, _eigen_gaussian_model(schedule, M, S, mean_type)


def _normal(seed, shape):
    """Standard normal test inputs from numpy (no eager JAX computations outside the jitted programs)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _gaussian_errors(x, bias_mean, bias_cov, mean=M, cov=S):
    """Max over entries of |error| / (4 SE + bias allowance) for the mean and the covariance (<= 1 passes)."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    var = np.diag(cov)
    se_mean = np.sqrt(var / n)
    se_cov = np.sqrt((np.outer(var, var) + cov ** 2) / n)
    err_mean = np.abs(x.mean(0) - mean)
    err_cov = np.abs(np.cov(x.T) - cov)
    return (float((err_mean / (4 * se_mean + bias_mean)).max()), float((err_cov / (4 * se_cov + bias_cov)).max()),
            float(err_mean.max()), float(err_cov.max()))


def test_eigen_model_equals_gaussian_data_model():
    """Same predictions at integer and fractional times (float32 round-off of the reference's batched solve,
    amplified by 1 / sigma_t near t = 0, reaches ~5e-5: tolerance 2e-4)."""
    x = _normal(1, (256, D)) * 1.5
    t = np.random.default_rng(2).uniform(0.0, 999.0, 256).astype(np.float32)
    t[:4] = [0.0, 1.0, 998.7, 999.0]
    pairs = [(gaussian_data_model(schedule, M, S, mean_type), _eigen_gaussian_model(schedule, M, S, mean_type))
             for schedule, mean_types in ((make_schedule("linear", 1000), ("eps",)),
                                          (make_schedule("cosine", 1000), ("v",)))
             for mean_type in mean_types]
    out = jax.jit(lambda x, t: [(ref(x, t), fast(x, t)) for ref, fast in pairs])(x, t)
    for ref, fast in out:
        np.testing.assert_allclose(fast, ref, atol=2e-4)


def test_ddim_with_gaussian_data_model_itself():
    """DDIM gives the same samples with ``gaussian_data_model`` as with its fast form (and both sample the data)."""
    diffusion, fast = _setup("cosine")
    ref = gaussian_data_model(diffusion.schedule, M, S)
    x_T = _normal(3, (1000, D))
    run = jax.jit(lambda x_T: [samplers.ddim_sample(f, diffusion, None, None, num_steps=20, clip_denoised=False,
                                                    x_T=x_T) for f in (ref, fast)])
    with_ref, with_fast = run(x_T)
    np.testing.assert_allclose(with_ref, with_fast, atol=1e-4)
    assert max(_gaussian_errors(with_ref, 0.002, 0.03)[:2]) <= 1.0  # DDIM-20's cov bias is ~0.02 here


# name -> (sampler(model_fn, diffusion, rng, x_T), var_type, {schedule: (mean allowance, cov allowance)})
SAMPLERS = {
    "ddpm1000_small": (lambda f, d, rng, x_T: samplers.ddpm_sample(f, d, None, rng, clip_denoised=False, x_T=x_T),
                       "fixed_small", {"linear": (0.002, 0.0035), "cosine": (0.002, 0.0025)}),
    "ddpm1000_large": (lambda f, d, rng, x_T: samplers.ddpm_sample(f, d, None, rng, clip_denoised=False, x_T=x_T),
                       "fixed_large", {"linear": (0.002, 0.0015), "cosine": (0.002, 0.0015)}),
    # improved DDPM's respaced sampling (250 of the 1000 steps)
    "ddpm250_large": (lambda f, d, rng, x_T: samplers.ddpm_sample(f, d, None, rng, num_steps=250, clip_denoised=False,
                                                                  x_T=x_T),
                      "fixed_large", {"cosine": (0.002, 0.0025)}),
    "ddim1000": (lambda f, d, rng, x_T: samplers.ddim_sample(f, d, None, rng, num_steps=1000, clip_denoised=False,
                                                             x_T=x_T),
                 "fixed_large", {"linear": (0.002, 0.0015), "cosine": (0.002, 0.0015)}),
    "ddim50": (lambda f, d, rng, x_T: samplers.ddim_sample(f, d, None, rng, num_steps=50, clip_denoised=False, x_T=x_T),
               "fixed_large", {"linear": (0.002, 0.021), "cosine": (0.002, 0.011)}),
    "ddim50_eta1": (lambda f, d, rng, x_T: samplers.ddim_sample(f, d, None, rng, num_steps=50, eta=1.0,
                                                                clip_denoised=False, x_T=x_T),
                    "fixed_large", {"linear": (0.002, 0.036), "cosine": (0.002, 0.024)}),
    "dpm_single2": (lambda f, d, rng, x_T: dpm_solver.dpm_solver_sample(f, d, None, rng, steps=20, order=2,
                                                                        method="singlestep", x_T=x_T),
                    "fixed_large", {"linear": (0.002, 0.020), "cosine": (0.002, 0.021)}),
    "dpm_single3": (lambda f, d, rng, x_T: dpm_solver.dpm_solver_sample(f, d, None, rng, steps=20, order=3,
                                                                        method="singlestep", x_T=x_T),
                    "fixed_large", {"linear": (0.002, 0.003), "cosine": (0.002, 0.003)}),
    "dpm_multi2": (lambda f, d, rng, x_T: dpm_solver.dpm_solver_sample(f, d, None, rng, steps=20, order=2,
                                                                       method="multistep", x_T=x_T),
                   "fixed_large", {"linear": (0.002, 0.004), "cosine": (0.002, 0.004)}),
    "dpm_multi3": (lambda f, d, rng, x_T: dpm_solver.dpm_solver_sample(f, d, None, rng, steps=20, order=3,
                                                                       method="multistep", x_T=x_T),
                   "fixed_large", {"linear": (0.002, 0.002), "cosine": (0.002, 0.002)}),
}
DETERMINISTIC = ("ddim1000", "ddim50", "dpm_single2", "dpm_single3", "dpm_multi2", "dpm_multi3")
# every sampler on the linear schedule; a subset on the cosine schedule (where DPM-Solver clips lambda; DDIM eta = 1
# on the cosine schedule is checked against DDPM in test_ddim_eta1_equals_ddpm_fixed_small_and_seeding)
CASES = [("linear", name) for name in SAMPLERS if name != "ddpm250_large"] + [
    ("cosine", name) for name in ("ddpm250_large", "ddim50", "dpm_single3", "dpm_multi2")]


@functools.lru_cache(maxsize=None)
def _compiled(schedule_name, name):
    """One jitted ``fn(rng, x_T)`` per configuration."""
    sample, var_type, _ = SAMPLERS[name]
    diffusion, model_fn = _setup(schedule_name, var_type)
    return jax.jit(lambda rng, x_T: sample(model_fn, diffusion, rng, x_T))


@pytest.mark.parametrize("schedule_name,name", CASES)
def test_samples_match_data_distribution(schedule_name, name):
    run = _compiled(schedule_name, name)
    x = run(jax.random.PRNGKey(1), _normal(0, (B, D)))
    assert x.shape == (B, D) and x.dtype == jnp.float32
    bias_mean, bias_cov = SAMPLERS[name][2][schedule_name]
    ratio_mean, ratio_cov, err_mean, err_cov = _gaussian_errors(x, bias_mean, bias_cov)
    assert ratio_mean <= 1.0, f"{name} ({schedule_name}): |mean - M| = {err_mean:.4f} exceeds 4 SE + {bias_mean}"
    assert ratio_cov <= 1.0, f"{name} ({schedule_name}): |cov - S| = {err_cov:.4f} exceeds 4 SE + {bias_cov}"
    if name in DETERMINISTIC:
        # exact output law N(b, A A^T) from x_T = 0, e_1, ..., e_D (rows 0..D of the same batch)
        basis = np.zeros((B, D), np.float32)
        basis[1:D + 1] = np.eye(D)
        y = np.asarray(run(jax.random.PRNGKey(1), basis), np.float64)
        b, A = y[0], (y[1:D + 1] - y[0]).T
        exact_mean, exact_cov = np.abs(b - M).max(), np.abs(A @ A.T - S).max()
        assert exact_mean * 1.3 <= bias_mean and exact_cov * 1.3 <= bias_cov, (exact_mean, exact_cov)


def _ancestral_without_noise(f, d, rng, x_T):
    """BROKEN: DDPM's mean update without the noise term (50 respaced steps)."""
    d = d.respaced(50)

    def step(x, i):
        t = jnp.full((x.shape[0],), i)
        return d.p_mean_variance(d.apply_model(f, x, t), x, t, clip_denoised=False)["mean"], None
    return jax.lax.scan(step, x_T, jnp.arange(49, -1, -1))[0]


def _ddim_eta_misuse(f, d, rng, x_T):
    """BROKEN: DDIM eta = 1 that adds sigma z but keeps sqrt(1 - a_prev) (not sqrt(1 - a_prev - sigma^2)) on eps."""
    d = d.respaced("ddim50")
    ab, abp = d.table("alphas_cumprod"), d.table("alphas_cumprod_prev")

    def step(x, i):
        t = jnp.full((x.shape[0],), i)
        x0, eps = d.model_predictions(d.apply_model(f, x, t), x, t)
        sigma = jnp.sqrt((1 - abp[i]) / (1 - ab[i]) * (1 - ab[i] / abp[i]))
        noise = jax.random.normal(jax.random.fold_in(rng, i), x.shape)
        return jnp.sqrt(abp[i]) * x0 + jnp.sqrt(1 - abp[i]) * eps + sigma * noise, None
    return jax.lax.scan(step, x_T, jnp.arange(49, -1, -1))[0]


BROKEN = {
    # name: (sampler, the correct sampler whose allowances apply, which check must catch it)
    # the wrong sign of eps in an otherwise correct DDIM
    "eps_sign": (lambda f, d, rng, x_T: samplers.ddim_sample(lambda x, t: -f(x, t), d, None, None, num_steps=50,
                                                             clip_denoised=False, x_T=x_T), "ddim50", "monte_carlo"),
    # the network told the time of the next kept step (an off-by-one-step timestep map): too subtle for
    # 4000 samples (exact mean error 0.009, cov error 0.016 vs DDIM-50's own 0.014) but not for the exact check
    "time_off_by_one_step": (lambda f, d, rng, x_T: samplers.ddim_sample(lambda x, t: f(x, jnp.minimum(t + 20, 999)),
                                                                         d, None, None, num_steps=50,
                                                                         clip_denoised=False, x_T=x_T),
                             "ddim50", "exact"),
    "no_noise": (_ancestral_without_noise, "ddim50_eta1", "monte_carlo"),
    "eta_misuse": (_ddim_eta_misuse, "ddim50_eta1", "monte_carlo"),
    # multistep DPM-Solver-2 with a 5% error in the noise prediction
    "dpm_eps_scaled": (lambda f, d, rng, x_T: dpm_solver.dpm_solver_sample(lambda x, t: 1.05 * f(x, t), d, None, None,
                                                                           steps=20, order=2, method="multistep",
                                                                           x_T=x_T), "dpm_multi2", "monte_carlo"),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_check_rejects_broken_samplers(broken):
    """The allowances of the correct sampler are tight enough to catch these bugs (by a margin of 1.5x)."""
    sample, reference, check = BROKEN[broken]
    diffusion, model_fn = _setup("linear")
    bias_mean, bias_cov = SAMPLERS[reference][2]["linear"]
    run = jax.jit(lambda rng, x_T: sample(model_fn, diffusion, rng, x_T))
    if check == "monte_carlo":
        x = run(jax.random.PRNGKey(1), _normal(0, (B, D)))
        ratio_mean, ratio_cov, _, _ = _gaussian_errors(x, bias_mean, bias_cov)
        assert max(ratio_mean, ratio_cov) > 1.5, (ratio_mean, ratio_cov)
    else:
        y = np.asarray(run(None, np.eye(D + 1, D, -1, np.float32)), np.float64)  # x_T = 0, e_1, ..., e_D
        b, A = y[0], (y[1:] - y[0]).T
        assert max(np.abs(b - M).max() * 1.3 / bias_mean, np.abs(A @ A.T - S).max() * 1.3 / bias_cov) > 1.5


# ---------------------------------------------------------------------------------------------
# identities between samplers
# ---------------------------------------------------------------------------------------------
def test_parameterisations_give_the_same_samples():
    """eps-, x0- and v-parameterised analytic models: the same DDIM and DPM-Solver samples from one x_T."""
    x_T = _normal(4, (512, D))

    def run(x_T):
        out = {}
        for mean_type in ("eps", "x0", "v"):
            diffusion, model_fn = _setup("linear", mean_type=mean_type)
            out[("ddim", mean_type)] = samplers.ddim_sample(model_fn, diffusion, None, None, num_steps=50,
                                                            clip_denoised=False, x_T=x_T)
            if mean_type == "x0":
                continue  # DPM-Solver converts x0 and v predictions the same way; v is checked
            diffusion, model_fn = _setup("cosine", mean_type=mean_type)
            out[("dpm", mean_type)] = dpm_solver.dpm_solver_sample(model_fn, diffusion, None, None, steps=12, order=3,
                                                                   method="multistep", x_T=x_T)
        return out
    out = jax.jit(run)(x_T)
    for sampler, mean_type in (("ddim", "x0"), ("ddim", "v"), ("dpm", "v")):
        np.testing.assert_allclose(out[(sampler, mean_type)], out[(sampler, "eps")], atol=2e-4,
                                   err_msg=f"{sampler} {mean_type}")


def test_ddim_eta1_equals_ddpm_fixed_small_and_seeding():
    """DDIM eq. 16 with eta = 1 is DDPM's ancestral step with beta~ (fixed_small) on the respaced process:
    same steps, same rng -> the same samples (x_T and the noise of step i, fold_in(key, i), agree).
    Seeding: the same rng gives identical samples, another rng different ones (DDPM and DDIM draw x_T
    and per-step noise from rng, DPM-Solver only x_T)."""
    diffusion, model_fn = _setup("cosine", "fixed_small")
    steps = samplers.space_timesteps(1000, 50)  # what diffusion.respaced(50) keeps

    def run(rng):
        return (samplers.ddpm_sample(model_fn, diffusion, (512, D), rng, num_steps=50, clip_denoised=False),
                samplers.ddim_sample(model_fn, diffusion, (512, D), rng, skip=steps, eta=1.0, clip_denoised=False),
                dpm_solver.dpm_solver_sample(model_fn, diffusion, (512, D), rng, steps=10, order=3))
    run = jax.jit(run)
    first, again, other = run(jax.random.PRNGKey(7)), run(jax.random.PRNGKey(7)), run(jax.random.PRNGKey(8))
    np.testing.assert_allclose(first[1], first[0], atol=2e-5)
    for a, b, c in zip(first, again, other):
        assert a.dtype == jnp.float32 and a.shape == (512, D)
        np.testing.assert_array_equal(a, b)
        assert np.abs(np.asarray(a) - np.asarray(c)).min(axis=1).mean() > 1e-3
        assert np.unique(np.asarray(a)[:, 0]).size == 512  # batched: every example differs


def test_dpm_solver_order1_equals_ddim_on_the_same_grid():
    """DPM-Solver-1 is DDIM (Lu et al. 2022, sec. 4.1). Grid: time_uniform with 37 steps from t = 1 to 1/N
    visits the step indices n = tN - 1 = 999, 972, ..., 0 (stride 27); DDIM on those kept steps ends with a
    step to x^_0, which is DPM-Solver's ``denoise_to_zero``."""
    diffusion, model_fn = _setup("linear")
    x_T = _normal(5, (512, D))

    def run(x_T):
        kw = dict(steps=37, order=1, skip_type="time_uniform", denoise_to_zero=True, x_T=x_T)
        return (samplers.ddim_sample(model_fn, diffusion, None, None, skip=range(0, 1000, 27), clip_denoised=False,
                                     x_T=x_T),
                dpm_solver.dpm_solver_sample(model_fn, diffusion, None, None, method="singlestep", **kw),
                dpm_solver.dpm_solver_sample(model_fn, diffusion, None, None, method="multistep", **kw))
    ddim, single, multi = jax.jit(run)(x_T)
    np.testing.assert_allclose(single, ddim, atol=1e-4)
    np.testing.assert_allclose(multi, ddim, atol=1e-4)


def test_ddim_encode_decode_round_trip():
    """decode(encode(x)) = x up to the ODE discretisation error, which is first order: with the analytic model
    (data std 0.2-0.3) the max error is 0.043 at 200 steps (rms 0.012) and 0.16 at 50 (linear schedule);
    tolerance: max < 0.06 and rms < 0.016 at 200 steps, and the error falls ~4x from 50 to 200 steps."""
    diffusion, model_fn = _setup("linear")
    x_0 = np.random.default_rng(0).multivariate_normal(M, S, size=500).astype(np.float32)

    def round_trip(x_0):
        out = {}
        for n in (50, 200):
            z = samplers.ddim_encode(model_fn, diffusion, x_0, num_steps=n)
            out[n] = (z, samplers.ddim_decode(model_fn, diffusion, z, num_steps=n))
        return out
    out = jax.jit(round_trip)(x_0)
    err = {n: np.abs(np.asarray(out[n][1]) - np.asarray(x_0)) for n in out}
    rms = {n: float(np.sqrt((e ** 2).mean())) for n, e in err.items()}
    assert err[200].max() < 0.06 and rms[200] < 0.016, (err[200].max(), rms[200])
    assert 3.0 < rms[50] / rms[200] < 5.0, rms  # first-order convergence
    z = np.asarray(out[200][0])
    assert np.abs(z.mean(0)).max() < 0.2 and np.all(np.abs(z.std(0) - 1.0) < 0.1)  # the latent is ~N(0, I)


def test_ddpm_trajectory_and_make_sampler():
    diffusion, _ = _setup("cosine", "fixed_large")

    def apply_fn(params, x, t):  # a "network" whose parameter is the data's mean
        return _eigen_gaussian_model(diffusion.schedule, params["mean"], S)(x, t)
    sampler = samplers.make_sampler(samplers.ddpm_sample, apply_fn, diffusion, (16, D), num_steps=10,
                                    clip_denoised=False, return_trajectory=True)
    params = {"mean": M.astype(np.float32)}
    x, traj = sampler(params, jax.random.PRNGKey(0))
    assert traj["samples"].shape == (10, 16, D) and traj["pred_xstart"].shape == (10, 16, D)
    np.testing.assert_array_equal(traj["samples"][-1], x)
    shifted, _ = sampler({"mean": params["mean"] + 0.5}, jax.random.PRNGKey(0))
    assert sampler._cache_size() == 1  # new parameter values, no recompilation
    assert 0.4 < float(np.mean(np.asarray(shifted) - np.asarray(x))) < 0.6


# ---------------------------------------------------------------------------------------------
# classifier-free guidance
# ---------------------------------------------------------------------------------------------
CLASS_MEANS = np.array([[0.4, 0.2, 0.0], [-0.4, -0.1, 0.2]])
NULL_MEAN = np.zeros(3)


def _toy_conditional_model(schedule, counter, learned_variance=False):
    """eps of class-specific Gaussians N(CLASS_MEANS[y], S) for y in {0, 1}; y = 2 (null): N(0, S).
    Returns the conditional model and the three per-class eps models (for reference values)."""
    means = np.concatenate([CLASS_MEANS, NULL_MEAN[None]])

    def model_fn(x, t, y):
        counter.append(x.shape[0])
        eps = _eigen_gaussian_model(schedule, jnp.asarray(means, jnp.float32)[y], S)(x, t)  # per-example mean
        if learned_variance:  # variance values that depend on the label
            return jnp.concatenate([eps, jnp.broadcast_to(y[:, None] / 10.0 - 0.5, eps.shape)], axis=-1)
        return eps
    return model_fn, [_eigen_gaussian_model(schedule, mean, S) for mean in means]


def test_classifier_free_guidance_formula_and_single_call():
    schedule = make_schedule("linear", 1000)
    calls = []
    model_fn, models = _toy_conditional_model(schedule, calls)
    labels = np.array([0, 1, 1, 0, 2, 1])
    x = _normal(0, (6, D))
    t = np.full((6,), 400.0, np.float32)
    scales = (0.0, 1.0, 3.5)
    model_lv, _ = _toy_conditional_model(schedule, calls, learned_variance=True)

    def run(x, t):
        guided = [samplers.classifier_free_guidance(model_fn, labels, w, num_classes=2)(x, t) for w in scales]
        guided_lv = samplers.guided_model_fn(model_lv, labels, 2.0, null_label=2)(x, t)
        per_class = jnp.stack([f(x, t) for f in models])  # [3, batch, D] reference values
        return guided, guided_lv, model_fn(x, t, jnp.asarray(labels)), model_lv(x, t, jnp.asarray(labels)), per_class
    calls.clear()
    all_guided, guided, cond_eps, cond, per_class = jax.jit(run)(x, t)
    assert calls == [12, 12, 12, 12, 6, 6]  # ONE network call on the doubled batch per guided evaluation
    per_class = np.asarray(per_class)
    eps_c, eps_u = per_class[labels, np.arange(6)], per_class[2]
    for w, guided_w in zip(scales, all_guided):
        np.testing.assert_allclose(guided_w, (1 + w) * eps_c - w * eps_u, atol=1e-5)
    np.testing.assert_allclose(all_guided[0], cond_eps, rtol=0, atol=1e-6)  # w = 0: the conditional model
    # learned variance: only the prediction half is guided, the conditional variance values are kept
    np.testing.assert_allclose(guided[:, :D], 3.0 * eps_c - 2.0 * eps_u, atol=1e-5)
    np.testing.assert_array_equal(guided[:, D:], cond[:, D:])


def test_classifier_free_guidance_sampling():
    """Guided DDIM under jit: w = 0 samples the class Gaussians; w > 0 pushes the class means away from the null."""
    diffusion, _ = _setup("linear")
    model_fn, _ = _toy_conditional_model(diffusion.schedule, [])
    labels = np.repeat([0, 1], 1000)

    def run(rng):
        return [samplers.ddim_sample(samplers.classifier_free_guidance(model_fn, labels, w, num_classes=2), diffusion,
                                     (2000, D), rng, num_steps=25, clip_denoised=False) for w in (0.0, 2.0)]
    plain, guided = jax.jit(run)(jax.random.PRNGKey(0))
    for k in (0, 1):
        mean_plain = np.asarray(plain)[labels == k].mean(0)
        mean_guided = np.asarray(guided)[labels == k].mean(0)
        assert np.abs(mean_plain - CLASS_MEANS[k]).max() < 4 * np.sqrt(S.diagonal().max() / 1000) + 0.01
        assert np.linalg.norm(mean_guided) > np.linalg.norm(mean_plain) + 0.1


def test_classifier_free_guidance_rejects_bad_labels():
    schedule = make_schedule("linear", 1000)
    model_fn, _ = _toy_conditional_model(schedule, [])
    with pytest.raises(ValueError, match=r"labels.*\[0, 2\]"):
        samplers.classifier_free_guidance(model_fn, np.array([0, 3]), 1.0, num_classes=2)
    with pytest.raises(ValueError, match="labels"):
        samplers.classifier_free_guidance(model_fn, np.array([-1, 0]), 1.0, num_classes=2)
    with pytest.raises(ValueError, match="labels"):
        samplers.classifier_free_guidance(model_fn, np.array([0.5, 1.0]), 1.0, num_classes=2)
    with pytest.raises(ValueError, match="num_classes or null_label"):
        samplers.classifier_free_guidance(model_fn, np.array([0, 1]), 1.0)
    guided = samplers.classifier_free_guidance(model_fn, np.array([0, 1]), 1.0, num_classes=2)
    with pytest.raises(ValueError, match="labels has 2 entries but the batch has 3"):
        guided(np.zeros((3, D), np.float32), np.zeros((3,), np.float32))


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors():
    diffusion, model_fn = _setup("linear")
    rng = jax.random.PRNGKey(0)
    shape = (4, D)
    too_many = r"asked for 1001 sampling steps but the process has only T=1000"
    with pytest.raises(ValueError, match=too_many):
        samplers.ddpm_sample(model_fn, diffusion, shape, rng, num_steps=1001)
    with pytest.raises(ValueError, match=too_many):
        samplers.ddim_sample(model_fn, diffusion, shape, rng, num_steps=1001)
    with pytest.raises(ValueError, match=too_many):
        samplers.ddim_encode(model_fn, diffusion, np.zeros(shape, np.float32), num_steps=1001)
    with pytest.raises(ValueError, match=too_many.replace("1001 sampling", "1001 sampling")):
        dpm_solver.dpm_solver_sample(model_fn, diffusion, shape, rng, steps=1001)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="num_steps"):
            samplers.ddim_sample(model_fn, diffusion, shape, rng, num_steps=bad)
        with pytest.raises(ValueError, match="num_steps"):
            samplers.ddpm_sample(model_fn, diffusion, shape, rng, num_steps=bad)
        with pytest.raises(ValueError, match="steps"):
            dpm_solver.dpm_solver_sample(model_fn, diffusion, shape, rng, steps=bad)
    with pytest.raises(ValueError, match="skip='cubic'"):
        samplers.ddim_sample(model_fn, diffusion, shape, rng, skip="cubic")
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 999\]"):
        samplers.ddim_sample(model_fn, diffusion, shape, rng, skip=[0, 500, 1000])
    with pytest.raises(ValueError, match="eta=-0.5"):
        samplers.ddim_sample(model_fn, diffusion, shape, rng, eta=-0.5)
    with pytest.raises(ValueError, match="rng is required"):
        samplers.ddim_sample(model_fn, diffusion, shape, None, eta=1.0, x_T=np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="x_T has shape"):
        samplers.ddim_sample(model_fn, diffusion, (5, D), rng, x_T=np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="shape"):
        samplers.ddpm_sample(model_fn, diffusion, (4,), rng)
    for order in (0, 4, "2"):
        with pytest.raises(ValueError, match="order"):
            dpm_solver.dpm_solver_sample(model_fn, diffusion, shape, rng, order=order)
    with pytest.raises(ValueError, match="method='adaptive'"):
        dpm_solver.dpm_solver_sample(model_fn, diffusion, shape, rng, method="adaptive")
    with pytest.raises(ValueError, match="skip_type='uniform'"):
        dpm_solver.dpm_solver_sample(model_fn, diffusion, shape, rng, skip_type="uniform")
    with pytest.raises(ValueError, match="needs steps >= order"):
        dpm_solver.dpm_solver_sample(model_fn, diffusion, shape, rng, steps=2, order=3, method="multistep")
    with pytest.raises(ValueError, match="t_end < t_start"):
        dpm_solver.dpm_solver_sample(model_fn, diffusion, shape, rng, t_start=0.5, t_end=0.6)
    with pytest.raises(ValueError, match="not respaced"):
        dpm_solver.dpm_solver_sample(model_fn, diffusion.respaced(100), shape, rng)
