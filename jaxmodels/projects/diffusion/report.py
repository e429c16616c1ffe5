"""Measuring a trained diffusion model: NLL in bits/dim, sample quality per sampler and step count.

Used by ``train/diffusion_sample.py`` and ``colabs/diffusion.ipynb``:

* :func:`nll_bpd` -- the all-T variational bound (``likelihood.calc_bpd_loop``) on data, in bits/dim,
  with its standard error over examples;
* :func:`sampler_sweep` -- for each (sampler, steps): samples, wall time, number of network
  evaluations (NFE), and a quality score from a pluggable ``quality_fn(samples) -> dict`` (on digits
  the in-repo classifier's Frechet distance, see ``digits_classifier.digits_quality``; elsewhere FID
  with a converted Inception-v3);
* :func:`write_results` / :func:`plot_quality` -- results.json / results.md / quality_vs_steps.png.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.diffusion import pipeline
from jaxmodels.diffusion.gaussian import diffusion_from_config
from jaxmodels.diffusion.likelihood import calc_bpd_loop
from jaxmodels.training.files import atomic_write, atomic_write_json, atomic_write_text


def nll_bpd(model, variables: dict, config, images: np.ndarray, *, batch_size: int = 128, seed: int = 0,
            labels: np.ndarray | None = None) -> dict:
    """Mean all-T VLB in bits/dim over ``images`` (float [n, H, W, C] in [-1, 1]) and its breakdown."""
    diffusion = diffusion_from_config(config.diffusion)
    num_classes = int(config.model.get("num_classes", 0))
    if num_classes and labels is None:
        raise ValueError("nll_bpd of a class-conditional model needs the images' labels")

    @jax.jit
    def bound(params, x, y, rng):
        def model_fn(x_t, t):
            return model.apply({"params": params}, x_t, t, y, train=False)
        out = calc_bpd_loop(model_fn, diffusion, x, rng)
        return out["total_bpd"], out["prior_bpd"], out["decoder_bpd"]

    totals, priors, decoders = [], [], []
    n = len(images)
    for start in range(0, n, batch_size):
        x = np.asarray(images[start:start + batch_size], np.float32)
        real = len(x)
        if real < batch_size:  # pad to one compiled shape
            x = np.concatenate([x, np.repeat(x[:1], batch_size - real, axis=0)])
        y = None
        if num_classes:
            y = np.asarray(labels[start:start + batch_size], np.int32)
            y = np.concatenate([y, np.repeat(y[:1], batch_size - real)]) if real < batch_size else y
        total, prior, decoder = jax.device_get(bound(variables["params"], jnp.asarray(x), y,
                                                     jax.random.PRNGKey(seed + start)))
        totals.append(total[:real])
        priors.append(prior[:real])
        decoders.append(decoder[:real])
    total = np.concatenate(totals).astype(np.float64)
    return {"bpd": float(total.mean()), "bpd_stderr": float(total.std(ddof=1) / math.sqrt(max(n - 1, 1))) if n > 1 else 0.0,
            "prior_bpd": float(np.concatenate(priors).mean()), "decoder_bpd": float(np.concatenate(decoders).mean()),
            "num_examples": int(n), "num_timesteps": diffusion.num_timesteps}


def sampler_sweep(model, variables: dict, config, runs: Iterable[tuple[str, int]], *, num_samples: int,
                  quality_fn: Callable[[np.ndarray], dict] | None = None, seed: int = 0, batch_size: int = 500,
                  guidance_scale: float = 0.0, grid_dir: str | None = None, grid_size: int = 64,
                  log: Callable[[str], None] = print, **sample_options) -> list[dict]:
    """Samples with each (sampler, steps) and scores the samples; one row per run.

    Wall time is the median over batches after the first (compilation) batch, per sample.
    """
    rows = []
    for sampler, steps in runs:
        batches, times = [], []
        for index, start in enumerate(range(0, num_samples, batch_size)):
            count = min(batch_size, num_samples - start)
            began = time.perf_counter()
            images = pipeline.sample(model, variables, config, num_samples=batch_size, rng=seed + index,
                                     sampler=sampler, num_steps=steps, guidance_scale=guidance_scale,
                                     **sample_options)
            times.append((time.perf_counter() - began) / batch_size)
            batches.append(images[:count])
        samples = np.concatenate(batches)
        row = {"sampler": sampler, "steps": int(steps), "nfe": int(steps),  # every sampler here: one network call per step (guidance batches its two)
               "num_samples": int(len(samples)),
               "seconds_per_sample": float(np.median(times[1:] if len(times) > 1 else times))}
        if quality_fn is not None:
            row.update({k: float(v) for k, v in quality_fn(samples).items()})
        if grid_dir is not None:
            row["grid"] = pipeline.save_grid(samples[:grid_size], os.path.join(grid_dir, f"grid_{sampler}_{steps}.png"))
        rows.append(row)
        log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "grid"))
    return rows


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: str, rows: Sequence[dict], nll: dict | None, meta: dict) -> None:
    """results.json (everything) and results.md (tables)."""
    atomic_write_json(os.path.join(out_dir, "results.json"), {"meta": meta, "nll": nll, "samplers": list(rows)},
                      indent=2, sort_keys=True)
    parts = [f"# Diffusion evaluation: {meta.get('workdir', '')} (step {meta.get('step', '?')})", ""]
    if nll:
        parts += [f"NLL (all-T variational bound): **{nll['bpd']:.3f} ± {nll['bpd_stderr']:.3f} bits/dim** on "
                  f"{nll['num_examples']} {meta.get('nll_split', 'test')} images (prior {nll['prior_bpd']:.2g}, "
                  f"decoder {nll['decoder_bpd']:.3f} bits/dim)", ""]
    if rows:
        score_columns = [c for c in rows[0] if c not in ("sampler", "steps", "nfe", "num_samples", "seconds_per_sample", "grid")]
        parts += [markdown_table(rows, ["sampler", "steps", "nfe", *score_columns, "seconds_per_sample"]), ""]
    atomic_write_text(os.path.join(out_dir, "results.md"), "\n".join(parts))


def plot_quality(rows: Sequence[dict], path: str, metric: str, reference: float | None = None,
                 reference_label: str = "real data") -> str:
    """Quality metric vs number of steps, one line per sampler (log-x)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        pts = sorted((r["steps"], r[metric]) for r in rows if r["sampler"] == sampler and metric in r)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=sampler)
    if reference is not None:
        ax.axhline(reference, color="gray", ls="--", lw=1, label=reference_label)
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps (network evaluations)")
    ax.set_ylabel(metric)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path
