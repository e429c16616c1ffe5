"""DPM-Solver for discrete-time noise-prediction models, as pure jittable JAX.

Lu, Zhou, Bao, Chen, Li & Zhu, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model
Sampling in Around 10 Steps", NeurIPS 2022. A port of the official ``dpm_solver_pytorch.py``
(github.com/LuChengTHU/dpm-solver, ``algorithm_type="dpmsolver"``, ``solver_type="dpmsolver"``)
for ``NoiseScheduleVP('discrete')``:

* noise schedule (official ``NoiseScheduleVP``): the N training steps n = 0..N-1 sit at continuous
  times t_n = (n + 1) / N; log alpha_t (alpha_t = sqrt(alpha_bar)) is piecewise linear in t between
  them and extrapolated linearly outside (``interpolate_fn``); sigma_t = sqrt(1 - alpha_t^2),
  lambda_t = log alpha_t - log sigma_t (half log-SNR). ``numerical_clip_alpha`` drops the final steps
  whose lambda is below -5.1 (cosine schedules), so N is the number of steps left.
* the solvers integrate the diffusion ODE in lambda (paper eq. 3.4):
  x_t = (alpha_t / alpha_s) x_s - alpha_t int_{lambda_s}^{lambda_t} e^{-lambda} eps(x_lambda) dlambda,
  - DPM-Solver-1 (= DDIM), paper eq. 3.7 / Algorithm 1 with k = 1,
  - singlestep DPM-Solver-2 (Algorithm 4, r1 = 0.5 for logSNR steps) and DPM-Solver-3
    (Algorithm 5, r1 = 1/3, r2 = 2/3), with the intermediate points placed by ``skip_type``
    exactly as the official ``sample`` does (r = ratios of lambda at the inner time steps),
  - "singlestep": the official "DPM-Solver-fast" order schedule for an NFE budget (paper sec. 3.4,
    ``get_orders_and_timesteps_for_singlestep_solver``); "singlestep_fixed": one order throughout,
  - "multistep": the multistep DPM-Solver-2/3 of the official code (DPM-Solver++ paper, Lu et al.
    2022b, Algorithm 2 applied to the noise-prediction form), warming up with orders 1, 2 and, with
    ``lower_order_final`` and fewer than 10 steps, lowering the order at the end.
  DPM-Solver++ (data prediction) is not implemented.

Model time. The official ``model_wrapper`` passes ``(t - 1/N) * 1000`` to the network: the step
index n = t N - 1 scaled by 1000 / N. Here the network gets the (fractional) step index
n = t N - 1 mapped the way :class:`GaussianDiffusion` maps step indices (``n * 1000 / T`` with
``rescale_timesteps``, else ``n``). Both agree whenever N = T = 1000 (e.g. every unclipped
1000-step schedule); they differ (a) for T != 1000 without ``rescale_timesteps`` (the official
mapping would feed 1000-scaled times to a network trained on raw indices) and (b) when the lambda
clip shortens the schedule (cosine): the official code then feeds n * 1000 / N with N < T, which is
not the index of the step whose alpha it uses; we feed n. The cross-check against the official code
converts its ``t_input`` back to n for this reason.

Respaced diffusions are rejected: the solver needs alpha_bar at every original step, which a
respaced schedule no longer has -- pass the original (un-respaced) ``GaussianDiffusion``; its
``rescale_timesteps`` is honoured. x0- and v-prediction models are converted to eps with alpha_t,
sigma_t at the continuous time (as ``model_wrapper``); learned-variance outputs are split and their
variance half ignored.

Everything about the time grid is static (known from ``steps``, ``order``, ``skip_type``), so all
coefficients are precomputed in float64 numpy and the solver is a ``lax.scan`` over float32 arrays:
multistep scans over steps carrying the last three model outputs; singlestep scans over runs of
steps of equal order (e.g. [3] * 6 + [2] for 20 NFE at order 3).
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.diffusion.gaussian import GaussianDiffusion

SKIP_TYPES = ("logSNR", "time_uniform", "time_quadratic")
METHODS = ("singlestep", "multistep", "singlestep_fixed")
ORDERS = (1, 2, 3)


def interpolate_fn(x, xp, yp):
    """Piecewise-linear y = f(x) through (xp, yp) (xp increasing), extrapolated linearly with the end
    segments outside [xp[0], xp[-1]] (the official ``interpolate_fn``; numpy float64)."""
    x = np.asarray(x, np.float64)
    xp, yp = np.asarray(xp, np.float64), np.asarray(yp, np.float64)
    idx = np.clip(np.searchsorted(xp, x, side="right") - 1, 0, xp.shape[0] - 2)
    x0, x1, y0, y1 = xp[idx], xp[idx + 1], yp[idx], yp[idx + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


class NoiseScheduleVP:
    """The official ``NoiseScheduleVP('discrete', alphas_cumprod=...)`` in numpy float64.

    t_n = (n + 1) / N for n = 0..N-1 (T = 1), log alpha_{t_n} = 0.5 log alpha_bar_n, and the steps at
    the end with lambda < ``clipped_lambda`` removed (``numerical_clip_alpha``; None disables it).
    """

    def __init__(self, schedule: str = "discrete", *, alphas_cumprod=None, betas=None,
                 clipped_lambda: float | None = -5.1):
        if schedule != "discrete":
            raise ValueError(f"schedule={schedule!r}: only 'discrete' (discrete-time DPMs) is supported")
        if (alphas_cumprod is None) == (betas is None):
            raise ValueError("give exactly one of alphas_cumprod and betas")
        if betas is not None:
            log_alphas = 0.5 * np.cumsum(np.log(1.0 - np.asarray(betas, np.float64)))
        else:
            log_alphas = 0.5 * np.log(np.asarray(alphas_cumprod, np.float64))
        if log_alphas.ndim != 1 or log_alphas.shape[0] < 2:
            raise ValueError("the discrete schedule needs at least 2 steps")
        self.original_N = int(log_alphas.shape[0])
        if clipped_lambda is not None:
            log_sigmas = 0.5 * np.log(1.0 - np.exp(2.0 * log_alphas))
            lambs = log_alphas - log_sigmas
            idx = int(np.searchsorted(lambs[::-1], clipped_lambda))
            if idx > 0:
                log_alphas = log_alphas[:-idx]
        self.schedule = schedule
        self.T = 1.0
        self.log_alpha_array = log_alphas
        self.total_N = int(log_alphas.shape[0])
        self.t_array = np.linspace(0.0, 1.0, self.total_N + 1)[1:]

    def marginal_log_mean_coeff(self, t):
        """log alpha_t."""
        return interpolate_fn(t, self.t_array, self.log_alpha_array)

    def marginal_alpha(self, t):
        return np.exp(self.marginal_log_mean_coeff(t))

    def marginal_std(self, t):
        """sigma_t = sqrt(1 - alpha_t^2)."""
        return np.sqrt(1.0 - np.exp(2.0 * self.marginal_log_mean_coeff(t)))

    def marginal_lambda(self, t):
        """lambda_t = log alpha_t - log sigma_t."""
        log_mean_coeff = self.marginal_log_mean_coeff(t)
        return log_mean_coeff - 0.5 * np.log(1.0 - np.exp(2.0 * log_mean_coeff))

    def inverse_lambda(self, lamb):
        """t with lambda_t = ``lamb``."""
        log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * np.asarray(lamb, np.float64))
        return interpolate_fn(log_alpha, self.log_alpha_array[::-1], self.t_array[::-1])

    def step_index(self, t):
        """The (fractional) training step index n = t N - 1 of continuous time t."""
        return np.asarray(t, np.float64) * self.total_N - 1.0


def get_time_steps(ns: NoiseScheduleVP, skip_type: str, t_T: float, t_0: float, N: int) -> np.ndarray:
    """N + 1 times from t_T to t_0: uniform in lambda ("logSNR"), in t ("time_uniform") or in sqrt(t)
    ("time_quadratic"), as the official ``get_time_steps``."""
    if skip_type == "logSNR":
        lambda_T, lambda_0 = ns.marginal_lambda(t_T), ns.marginal_lambda(t_0)
        return ns.inverse_lambda(np.linspace(lambda_T, lambda_0, N + 1))
    if skip_type == "time_uniform":
        return np.linspace(t_T, t_0, N + 1)
    if skip_type == "time_quadratic":
        return np.linspace(t_T ** 0.5, t_0 ** 0.5, N + 1) ** 2
    raise ValueError(f"skip_type={skip_type!r}: expected one of {SKIP_TYPES}")


def singlestep_orders(steps: int, order: int) -> list[int]:
    """The official "DPM-Solver-fast" order schedule using exactly ``steps`` model calls (paper sec. 3.4)."""
    if order == 3:
        K = steps // 3 + 1
        if steps % 3 == 0:
            return [3] * (K - 2) + [2, 1]
        if steps % 3 == 1:
            return [3] * (K - 1) + [1]
        return [3] * (K - 1) + [2]
    if order == 2:
        if steps % 2 == 0:
            return [2] * (steps // 2)
        return [2] * (steps // 2) + [1]
    if order == 1:
        return [1] * steps
    raise ValueError(f"order={order}: expected one of {ORDERS}")


def get_orders_and_timesteps_for_singlestep_solver(ns: NoiseScheduleVP, steps: int, order: int, skip_type: str,
                                                   t_T: float, t_0: float):
    """(outer time steps [K + 1], orders [K]) as the official function of the same name."""
    orders = singlestep_orders(steps, order)
    if skip_type == "logSNR":  # "to reproduce the results in the DPM-Solver paper"
        outer = get_time_steps(ns, skip_type, t_T, t_0, len(orders))
    else:
        outer = get_time_steps(ns, skip_type, t_T, t_0, steps)[np.cumsum([0] + orders)]
    return outer, orders


# ---------------------------------------------------------------------------------------------
# precomputed coefficients (float64 numpy)
# ---------------------------------------------------------------------------------------------
class _Points:
    """Model-evaluation data at continuous times: network time, alpha_t, sigma_t."""

    def __init__(self, ns: NoiseScheduleVP, model_time_scale: float):
        self.ns, self.scale = ns, model_time_scale

    def __call__(self, t):
        return {"model_t": self.ns.step_index(t) * self.scale, "alpha": self.ns.marginal_alpha(t),
                "sigma": self.ns.marginal_std(t)}


def _singlestep_coefficients(ns, points, skip_type, s, t, order):
    """Coefficients of singlestep DPM-Solver-``order`` from s to t (official ``singlestep_dpm_solver_*``)."""
    lambda_s, lambda_t = ns.marginal_lambda(s), ns.marginal_lambda(t)
    h = lambda_t - lambda_s
    log_alpha_s, log_alpha_t = ns.marginal_log_mean_coeff(s), ns.marginal_log_mean_coeff(t)
    sigma_t = ns.marginal_std(t)
    phi_1 = np.expm1(h)
    coef = {"a": np.exp(log_alpha_t - log_alpha_s), "b": -sigma_t * phi_1, "p_s": points(s)}
    if order == 1:
        return coef
    lambda_inner = ns.marginal_lambda(get_time_steps(ns, skip_type, float(s), float(t), order))
    r1 = (lambda_inner[1] - lambda_inner[0]) / h
    s1 = ns.inverse_lambda(lambda_s + r1 * h)
    coef.update(a1=np.exp(ns.marginal_log_mean_coeff(s1) - log_alpha_s), b1=-ns.marginal_std(s1) * np.expm1(r1 * h),
                p_s1=points(s1))
    if order == 2:  # x_t = a x - sigma_t phi_1 eps_s - (0.5 / r1) sigma_t phi_1 (eps_s1 - eps_s)
        coef["c"] = -(0.5 / r1) * sigma_t * phi_1
        return coef
    r2 = (lambda_inner[2] - lambda_inner[0]) / h
    s2 = ns.inverse_lambda(lambda_s + r2 * h)
    sigma_s2 = ns.marginal_std(s2)
    phi_12 = np.expm1(r2 * h)
    phi_22 = phi_12 / (r2 * h) - 1.0
    phi_2 = phi_1 / h - 1.0
    coef.update(a2=np.exp(ns.marginal_log_mean_coeff(s2) - log_alpha_s), b2=-sigma_s2 * phi_12,
                c2=-(r2 / r1) * sigma_s2 * phi_22, p_s2=points(s2), c=-(1.0 / r2) * sigma_t * phi_2)
    return coef


def _multistep_coefficients(ns, times, step, order):
    """Coefficients of the multistep update of ``order`` from times[step - 1] to times[step]:
    x_t = cx x + c0 m0 + k0 (m0 - m1) + k1 (m1 - m2), m0 the newest model output (official
    ``multistep_dpm_solver_{first,second,third}_update`` with D1_0 = (m0 - m1) / r0, D1_1 = (m1 - m2) / r1)."""
    t, t0 = times[step], times[step - 1]
    lambda_t, lambda_0 = ns.marginal_lambda(t), ns.marginal_lambda(t0)
    h = lambda_t - lambda_0
    sigma_t = ns.marginal_std(t)
    phi_1 = np.expm1(h)
    coef = {"cx": np.exp(ns.marginal_log_mean_coeff(t) - ns.marginal_log_mean_coeff(t0)), "c0": -sigma_t * phi_1,
            "k0": 0.0, "k1": 0.0}
    if order >= 2:
        r0 = (lambda_0 - ns.marginal_lambda(times[step - 2])) / h
        if order == 2:  # - 0.5 sigma_t phi_1 D1_0
            coef["k0"] = -0.5 * sigma_t * phi_1 / r0
        else:
            r1 = (ns.marginal_lambda(times[step - 2]) - ns.marginal_lambda(times[step - 3])) / h
            phi_2 = phi_1 / h - 1.0
            phi_3 = phi_2 / h - 0.5
            g, q = r0 / (r0 + r1), 1.0 / (r0 + r1)
            # - sigma_t phi_2 D1 - sigma_t phi_3 D2, D1 = (1 + g) D1_0 - g D1_1, D2 = q (D1_0 - D1_1)
            coef["k0"] = -sigma_t * (phi_2 * (1.0 + g) + phi_3 * q) / r0
            coef["k1"] = sigma_t * (phi_2 * g + phi_3 * q) / r1
    return coef


def _stack(dicts: Sequence[dict]):
    """A list of (nested) coefficient dicts -> one dict of float32 arrays with a leading step axis."""
    return jax.tree_util.tree_map(lambda *v: jnp.asarray(np.stack([np.asarray(x, np.float64) for x in v]), jnp.float32),
                                  *dicts)


def _f32(tree):
    return jax.tree_util.tree_map(lambda v: jnp.asarray(np.asarray(v, np.float64), jnp.float32), tree)


# ---------------------------------------------------------------------------------------------
# the sampler
# ---------------------------------------------------------------------------------------------
def noise_schedule_for(diffusion: GaussianDiffusion, clipped_lambda: float | None = -5.1) -> NoiseScheduleVP:
    """``NoiseScheduleVP('discrete')`` of an (un-respaced) diffusion's alpha_bar."""
    schedule = diffusion.schedule
    if schedule.num_timesteps != schedule.original_num_timesteps or not np.array_equal(
            schedule.timestep_map, np.arange(schedule.num_timesteps)):
        raise ValueError(f"DPM-Solver needs the original (not respaced) diffusion: this one keeps "
                         f"{schedule.num_timesteps} of {schedule.original_num_timesteps} steps, and alpha_bar between "
                         "the kept steps is lost; choose the number of solver steps with `steps` instead")
    return NoiseScheduleVP("discrete", alphas_cumprod=schedule.alphas_cumprod, clipped_lambda=clipped_lambda)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}={value!r}: expected an int >= {low}")
    return int(value)


def dpm_solver_sample(model_fn: Callable, diffusion: GaussianDiffusion, shape, rng, *, steps: int = 20,
                      order: int = 2, method: str = "singlestep", skip_type: str = "logSNR",
                      t_start: float | None = None, t_end: float | None = None, lower_order_final: bool = True,
                      denoise_to_zero: bool = False, x_T=None, clipped_lambda: float | None = -5.1):
    """Samples x_0 by DPM-Solver with ``steps`` model evaluations (NFE; +1 with ``denoise_to_zero``).

    Args:
      model_fn: ``model_fn(x_t, model_t) -> output`` (network times as :class:`GaussianDiffusion`).
      diffusion: the original (not respaced) diffusion: its alpha_bar, ``mean_type``, ``var_type``
        (a learned-variance output is split, its variance half ignored) and ``rescale_timesteps``.
      shape: (batch, ...), ignored when ``x_T`` is given; rng: the key for x_T ~ N(0, I) (may be
        None when ``x_T`` is given -- the solver is deterministic).
      steps: NFE, 1 <= steps <= T. order: 1, 2 or 3. method: "singlestep" (DPM-Solver-fast order
        schedule), "singlestep_fixed" (``steps // order`` steps of one order) or "multistep".
      skip_type: "logSNR" (paper's choice for singlestep), "time_uniform" or "time_quadratic".
      t_start, t_end: continuous times to integrate between; defaults 1 (= T) and 1 / N (the first
        training step), as the official ``sample``.
      lower_order_final: multistep only, and only for steps < 10 (as the official code): the last
        steps use orders min(order, steps remaining).
      denoise_to_zero: finish with x^_0 = (x - sigma eps) / alpha at t_end (one extra NFE).
      clipped_lambda: the official ``numerical_clip_alpha`` threshold (None: keep every step).

    Returns float32 samples.
    """
    steps = _check_int("steps", steps, 1)
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"order={order!r}: expected one of {ORDERS}")
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    if skip_type not in SKIP_TYPES:
        raise ValueError(f"skip_type={skip_type!r}: expected one of {SKIP_TYPES}")
    if steps > diffusion.schedule.original_num_timesteps:
        raise ValueError(f"steps={steps}: asked for {steps} sampling steps but the process has only "
                         f"T={diffusion.schedule.original_num_timesteps} steps")
    if method == "multistep" and steps < order:
        raise ValueError(f"multistep DPM-Solver of order {order} needs steps >= order, got steps={steps}")
    if method == "singlestep_fixed" and steps < order:
        raise ValueError(f"singlestep_fixed of order {order} needs steps >= order, got steps={steps}")
    ns = noise_schedule_for(diffusion, clipped_lambda)
    t_0 = 1.0 / ns.total_N if t_end is None else float(t_end)
    t_T = ns.T if t_start is None else float(t_start)
    if not (0.0 < t_0 < t_T <= ns.T):
        raise ValueError(f"need 0 < t_end < t_start <= 1, got t_start={t_T}, t_end={t_0}")
    scale = 1000.0 / diffusion.schedule.original_num_timesteps if diffusion.rescale_timesteps else 1.0
    points = _Points(ns, scale)

    if x_T is None:
        if rng is None or shape is None:
            raise ValueError("rng and shape are required when x_T is not given")
        shape = tuple(int(s) for s in shape)
        x = jax.random.normal(jax.random.split(rng)[0], shape, jnp.float32)  # the x_T the other samplers draw
    else:
        x = jnp.asarray(x_T, jnp.float32)
        if shape is not None and tuple(int(s) for s in shape) != tuple(x.shape):
            raise ValueError(f"x_T has shape {tuple(x.shape)} but shape={tuple(shape)}")
    if x.ndim < 2:
        raise ValueError(f"samples must be (batch, ...), got shape {x.shape}")

    def eps_fn(x, p):
        """The noise prediction at a point p = {model_t, alpha, sigma} (official ``noise_pred_fn``)."""
        out = model_fn(x, jnp.full((x.shape[0],), p["model_t"], jnp.float32))
        pred, _ = diffusion.split_output(out, x)
        pred = pred.astype(jnp.float32)
        if diffusion.mean_type == "eps":
            return pred
        if diffusion.mean_type == "x0":
            return (x - p["alpha"] * pred) / p["sigma"]
        return p["alpha"] * pred + p["sigma"] * x  # v

    if method == "multistep":
        x = _multistep(eps_fn, ns, points, x, steps, order, skip_type, t_T, t_0, lower_order_final)
    else:
        if method == "singlestep":
            outer, orders = get_orders_and_timesteps_for_singlestep_solver(ns, steps, order, skip_type, t_T, t_0)
        else:
            orders = [order] * (steps // order)
            outer = get_time_steps(ns, skip_type, t_T, t_0, len(orders))
        x = _singlestep(eps_fn, ns, points, x, outer, orders, skip_type)
    if denoise_to_zero:
        p = _f32(points(t_0))
        x = (x - p["sigma"] * eps_fn(x, p)) / p["alpha"]
    return x.astype(jnp.float32)


def _singlestep_update(eps_fn, x, c, order):
    m_s = eps_fn(x, c["p_s"])
    if order == 1:
        return c["a"] * x + c["b"] * m_s
    x_s1 = c["a1"] * x + c["b1"] * m_s
    m_s1 = eps_fn(x_s1, c["p_s1"])
    if order == 2:
        return c["a"] * x + c["b"] * m_s + c["c"] * (m_s1 - m_s)
    x_s2 = c["a2"] * x + c["b2"] * m_s + c["c2"] * (m_s1 - m_s)
    m_s2 = eps_fn(x_s2, c["p_s2"])
    return c["a"] * x + c["b"] * m_s + c["c"] * (m_s2 - m_s)


def _singlestep(eps_fn, ns, points, x, outer, orders, skip_type):
    coefs = [_singlestep_coefficients(ns, points, skip_type, outer[i], outer[i + 1], k) for i, k in enumerate(orders)]
    start = 0
    while start < len(orders):  # runs of equal order: one lax.scan each (a single step is applied directly)
        end = start
        while end < len(orders) and orders[end] == orders[start]:
            end += 1
        k = orders[start]
        if end - start == 1:
            x = _singlestep_update(eps_fn, x, _f32(coefs[start]), k)
        else:
            x, _ = jax.lax.scan(lambda x, c, k=k: (_singlestep_update(eps_fn, x, c, k).astype(jnp.float32), None),
                                x, _stack(coefs[start:end]))
        start = end
    return x


def _multistep(eps_fn, ns, points, x, steps, order, skip_type, t_T, t_0, lower_order_final):
    times = get_time_steps(ns, skip_type, t_T, t_0, steps)
    step_orders = []
    for step in range(1, steps + 1):
        if step < order:
            step_orders.append(step)  # warm-up with lower orders
        elif lower_order_final and steps < 10:
            step_orders.append(min(order, steps + 1 - step))
        else:
            step_orders.append(order)
    coefs = [_multistep_coefficients(ns, times, step, k) for step, k in zip(range(1, steps + 1), step_orders)]

    def update(x, m0, m1, m2, c):
        return c["cx"] * x + c["c0"] * m0 + c["k0"] * (m0 - m1) + c["k1"] * (m1 - m2)

    m0 = eps_fn(x, _f32(points(times[0])))
    zeros = jnp.zeros_like(x)
    if steps > 1:  # every step but the last evaluates the model at its end point
        def body(carry, c):
            x, m0, m1, m2 = carry
            x = update(x, m0, m1, m2, c["update"]).astype(jnp.float32)
            return (x, eps_fn(x, c["point"]), m0, m1), None

        stacked = _stack([{"update": c, "point": points(times[i + 1])} for i, c in enumerate(coefs[:-1])])
        (x, m0, m1, m2), _ = jax.lax.scan(body, (x, m0, zeros, zeros), stacked)
    else:
        m1 = m2 = zeros
    return update(x, m0, m1, m2, _f32(coefs[-1]))
