"""Noise schedules of discrete-time Gaussian diffusion, precomputed in float64.

* **linear** (Ho et al. 2020, sec. 4): beta_t from 1e-4 to 0.02 over T = 1000 steps; for other T
  improved DDPM rescales the end points by 1000 / T (Nichol & Dhariwal 2021, ``get_named_beta_schedule``).
* **cosine** (Nichol & Dhariwal 2021, eq. 17): alpha_bar(t) = f(t) / f(0),
  f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2), s = 0.008; beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1)
  clipped at 0.999 (eq. 17 and the paragraph after it).
* **respacing** (improved DDPM sec. 4, ``respace.py``): keep any subset S of the original steps and
  recompute beta_i = 1 - alpha_bar_{S_i} / alpha_bar_{S_{i-1}}, so that the respaced process has the
  same alpha_bar at every kept step; the model is still called with the original step index
  (``timestep_map``).

Indices follow the official code: ``t`` runs over 0..T-1 and index ``t`` is the paper's step t + 1.
Every array is float64 numpy; :class:`~jaxmodels.diffusion.gaussian.GaussianDiffusion` casts them.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

import numpy as np

SCHEDULES = ("linear", "cosine")


def linear_betas(num_timesteps: int, start: float = 1e-4, end: float = 0.02, *, rescale: bool = True) -> np.ndarray:
    """Ho et al.'s linear schedule; with ``rescale`` the end points scale by 1000 / T (improved DDPM)."""
    scale = 1000.0 / num_timesteps if rescale else 1.0
    return np.linspace(scale * start, scale * end, num_timesteps, dtype=np.float64)


def betas_for_alpha_bar(num_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> np.ndarray:
    """beta_i = min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta), i = 0..T-1."""
    betas = [min(1.0 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
             for i in range(num_timesteps)]
    return np.asarray(betas, np.float64)


def cosine_alpha_bar(t: float, s: float = 0.008) -> float:
    """f(t) / f(0) is applied by the ratio in ``betas_for_alpha_bar``; this is f(t) (t in [0, 1])."""
    return math.cos((t + s) / (1.0 + s) * math.pi / 2.0) ** 2


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    return betas_for_alpha_bar(num_timesteps, lambda t: cosine_alpha_bar(t, s), max_beta)


def named_betas(name: str, num_timesteps: int) -> np.ndarray:
    """``"linear"`` or ``"cosine"`` betas for ``num_timesteps`` steps."""
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    if name == "linear":
        return linear_betas(num_timesteps)
    if name == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"diffusion.schedule={name!r}: expected one of {SCHEDULES}")


def space_timesteps(num_timesteps: int, section_counts: int | str | Sequence[int]) -> list[int]:
    """The original steps to keep (sorted), as improved DDPM's ``space_timesteps``.

    ``section_counts`` is an int N (N evenly strided steps over the whole process, first and last
    step kept), a list of per-section counts (the process is cut into equal sections), a string of
    comma-separated counts, or ``"ddimN"`` (the DDIM paper's integer stride giving exactly N steps).
    """
    if isinstance(section_counts, (int, np.integer)):
        section_counts = [int(section_counts)]
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return list(range(0, num_timesteps, stride))
            if desired == num_timesteps:
                return list(range(num_timesteps))
            raise ValueError(f"cannot create exactly {desired} steps of {num_timesteps} with an integer stride")
        section_counts = [int(x) for x in section_counts.split(",")]
    section_counts = list(section_counts)
    if sum(section_counts) > num_timesteps:
        raise ValueError(f"asked for {sum(section_counts)} steps but the process has only T={num_timesteps}")
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, steps = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            steps.append(start + round(position))
            position += stride
        start += size
    return sorted(set(steps))


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """A (possibly respaced) discrete schedule and its derived float64 quantities.

    Attributes (all [T] float64 unless noted; q = forward process):
      betas, alphas = 1 - betas, alphas_cumprod (alpha_bar_t), alphas_cumprod_prev (alpha_bar_{t-1},
      1 at t = 0), posterior_variance (beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t),
      Ho et al. eq. 7), posterior_log_variance_clipped (log beta~ with beta~_0 replaced by beta~_1,
      as the official code: beta~_0 = 0), posterior_mean_coef1/2 (eq. 7's coefficients of x_0 and x_t),
      timestep_map (int [T]: the original-process index of each step; the model sees these),
      original_num_timesteps.
    """

    betas: np.ndarray
    timestep_map: np.ndarray
    original_num_timesteps: int

    def __post_init__(self):
        betas = np.asarray(self.betas, np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError(f"betas must be a 1-D array with 0 < beta < 1 (got {betas.min():.3g}..{betas.max():.3g}; "
                             "the linear schedule's end point 0.02 * 1000 / T reaches 1 for T <= 20)")
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "timestep_map", np.asarray(self.timestep_map, np.int64))

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def alphas(self) -> np.ndarray:
        return 1.0 - self.betas

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(self.alphas)

    @property
    def alphas_cumprod_prev(self) -> np.ndarray:
        return np.append(1.0, self.alphas_cumprod[:-1])

    @property
    def posterior_variance(self) -> np.ndarray:
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @property
    def posterior_log_variance_clipped(self) -> np.ndarray:
        variance = self.posterior_variance
        if self.num_timesteps == 1:
            return np.log(self.betas)  # a one-step process has no beta~_1 to borrow; use beta
        return np.log(np.append(variance[1], variance[1:]))

    @property
    def posterior_mean_coef1(self) -> np.ndarray:
        return self.betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @property
    def posterior_mean_coef2(self) -> np.ndarray:
        return (1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas) / (1.0 - self.alphas_cumprod)

    def respace(self, use_timesteps: Iterable[int]) -> "Schedule":
        """The process restricted to ``use_timesteps`` (indices into this schedule)."""
        keep = sorted(set(int(t) for t in use_timesteps))
        if not keep:
            raise ValueError("respace needs at least one timestep")
        if keep[0] < 0 or keep[-1] >= self.num_timesteps:
            raise ValueError(f"timesteps to keep must lie in [0, {self.num_timesteps - 1}], got {keep[0]}..{keep[-1]}")
        alphas_cumprod = self.alphas_cumprod
        last, betas = 1.0, []
        for i in keep:
            betas.append(1.0 - alphas_cumprod[i] / last)
            last = alphas_cumprod[i]
        return Schedule(np.asarray(betas), self.timestep_map[keep], self.original_num_timesteps)


def make_schedule(name: str = "linear", num_timesteps: int = 1000) -> Schedule:
    """The named schedule over ``num_timesteps`` steps (not respaced)."""
    return Schedule(named_betas(name, num_timesteps), np.arange(num_timesteps), num_timesteps)


def respaced(schedule: Schedule, section_counts: int | str | Sequence[int]) -> Schedule:
    """``schedule`` respaced with :func:`space_timesteps` (e.g. 50, ``"ddim50"``, ``[10, 15, 20]``)."""
    if isinstance(section_counts, (int, np.integer)) and section_counts > schedule.num_timesteps:
        raise ValueError(f"asked for {section_counts} sampling steps but the process has only "
                         f"T={schedule.num_timesteps} steps")
    return schedule.respace(space_timesteps(schedule.num_timesteps, section_counts))
