"""Schedule identities (Ho et al. 2020 eq. 4, 6-7; improved DDPM eq. 17, respacing)."""
import math

import numpy as np
import pytest

from jaxmodels.diffusion import schedules
from jaxmodels.diffusion.gaussian import GaussianDiffusion


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_bar_decreases_from_one_towards_zero(name):
    s = schedules.make_schedule(name, 1000)
    ab = s.alphas_cumprod
    assert ab.dtype == np.float64
    assert np.all(np.diff(ab) < 0) and 0 < ab[-1] < 1e-3 and ab[0] > 0.999 - 1e-9 * 0
    assert s.alphas_cumprod_prev[0] == 1.0


def test_linear_end_points_and_rescaling():
    betas = schedules.linear_betas(1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert np.allclose(np.diff(betas), (0.02 - 1e-4) / 999)
    short = schedules.linear_betas(4000)  # improved DDPM: end points scaled by 1000 / T
    assert short[0] == pytest.approx(2.5e-5) and short[-1] == pytest.approx(0.005)


def test_cosine_formula_values():
    T, s = 1000, 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    sched = schedules.make_schedule("cosine", T)
    ab = sched.alphas_cumprod
    for i in (0, 1, 10, 250, 500, 900, 990):
        assert ab[i] == pytest.approx(f(i + 1) / f(0), rel=1e-12)  # index i is step t = i + 1
    assert sched.betas.max() == pytest.approx(0.999)  # clipped at the end of the process
    assert np.argmax(sched.betas) == T - 1 and (sched.betas < 0.999).sum() == T - 1


def test_posterior_mean_and_variance_equal_gaussian_conditioning():
    """q(x_{t-1} | x_t, x_0) from the joint Gaussian equals eq. 7's coefficients and beta~."""
    s = schedules.make_schedule("linear", 1000)
    ab, abp, betas = s.alphas_cumprod, s.alphas_cumprod_prev, s.betas
    for t in (1, 5, 100, 999):
        # given x_0: x_{t-1} = sqrt(abp) x0 + n1, x_t = sqrt(1 - beta) x_{t-1} + n2
        var_prev = 1 - abp[t]
        cov = math.sqrt(1 - betas[t]) * var_prev
        var_t = 1 - ab[t]
        gain = cov / var_t  # regression coefficient of x_{t-1} on x_t
        coef_xt = gain
        coef_x0 = math.sqrt(abp[t]) - gain * math.sqrt(ab[t])
        variance = var_prev - cov ** 2 / var_t
        assert s.posterior_mean_coef2[t] == pytest.approx(coef_xt, rel=1e-10)
        assert s.posterior_mean_coef1[t] == pytest.approx(coef_x0, rel=1e-10)
        assert s.posterior_variance[t] == pytest.approx(variance, rel=1e-8)
    assert s.posterior_variance[0] == 0.0
    assert s.posterior_log_variance_clipped[0] == pytest.approx(math.log(s.posterior_variance[1]))


@pytest.mark.parametrize("counts", [50, "ddim50", [10, 15, 20], "10,20,30,40", 1000, 7])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_respaced_betas_reproduce_alpha_bar_at_kept_steps(name, counts):
    base = schedules.make_schedule(name, 1000)
    r = schedules.respaced(base, counts)
    keep = r.timestep_map
    assert np.all(np.diff(keep) > 0) and keep.min() >= 0 and keep.max() < 1000
    assert np.allclose(r.alphas_cumprod, base.alphas_cumprod[keep], rtol=1e-6, atol=0)  # 1 - beta loses digits when beta ~ 1
    assert r.original_num_timesteps == 1000


def test_space_timesteps_official_examples():
    assert schedules.space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert schedules.space_timesteps(300, [10, 15, 20])[:3] == [0, 11, 22]  # (100 - 1) / 9 = 11 stride
    assert len(schedules.space_timesteps(300, [10, 15, 20])) == 45
    assert schedules.space_timesteps(1000, 2) == [0, 999]
    with pytest.raises(ValueError, match="only T=1000"):
        schedules.respaced(schedules.make_schedule("linear", 1000), 1001)
    with pytest.raises(ValueError, match="cannot divide"):
        schedules.space_timesteps(10, [6, 2])


def test_respacing_composes_and_the_model_sees_original_steps():
    base = GaussianDiffusion(schedules.make_schedule("cosine", 4000), rescale_timesteps=True)
    d = base.respaced(100).respaced(10)
    assert d.num_timesteps == 10
    ts = np.asarray(d.model_timesteps(np.arange(10)))
    assert ts[0] == 0 and ts[-1] == pytest.approx(3999 * 1000 / 4000)  # rescaled to the 0..1000 range
    assert np.allclose(d.schedule.alphas_cumprod, base.schedule.alphas_cumprod[d.schedule.timestep_map])


def test_bad_schedule_name_and_types():
    with pytest.raises(ValueError, match="diffusion.schedule"):
        schedules.make_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="diffusion.mean_type"):
        GaussianDiffusion(schedules.make_schedule("linear", 100), mean_type="score")
