"""Sampling a trained model: one entry point for every sampler, guidance, PNG grids.

    import jaxmodels
    from jaxmodels.diffusion import pipeline
    model, variables, config = jaxmodels.load("runs/diffusion_digits")
    images = pipeline.sample(model, variables, config, num_samples=64, sampler="dpm_solver", num_steps=20)
    pipeline.save_grid(images, "samples.png")

``sample`` builds the model function from the module and the config (class labels, classifier-free
guidance), checks its inputs on the host (a label out of range, more steps than T), and runs the
sampler jitted with the parameters as an argument; compiled samplers are cached per option set.
Samplers: "ddpm" (ancestral; ``num_steps`` respaces the process), "ddim" (``eta``), "dpm_solver"
(``num_steps`` = model evaluations; ``order``, ``method``).
"""
from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.diffusion import dpm_solver, samplers
from jaxmodels.data.generative import to_uint8
from jaxmodels.diffusion.gaussian import GaussianDiffusion, diffusion_from_config
from jaxmodels.training.files import atomic_write

SAMPLERS = ("ddpm", "ddim", "dpm_solver")


def image_shape(config) -> tuple[int, int, int]:
    size = int(config.data.image_size)
    return size, size, int(config.data.channels)


def check_labels(labels, num_classes: int, *, allow_null: bool = True) -> np.ndarray:
    """Host-side check of class labels: ints in [0, num_classes) (or == num_classes, the null class)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    top = num_classes if allow_null else num_classes - 1
    bad = labels[(labels < 0) | (labels > top)]
    if bad.size:
        raise ValueError(f"labels {sorted(set(bad.tolist()))[:5]} out of range: the model has {num_classes} classes "
                         f"(valid labels 0..{num_classes - 1}" + (f", {num_classes} = null class)" if allow_null else ")"))
    return labels.astype(np.int32)


@functools.lru_cache(maxsize=32)
def _compiled(model, diffusion: GaussianDiffusion, shape: tuple, sampler: str, options: tuple, conditional: bool,
              guidance_scale: float, num_classes: int):
    opts = dict(options)

    def run(params, rng, labels):
        def apply(x, t, y=None):
            return model.apply({"params": params}, x, t, y, train=False)

        if not conditional:
            model_fn = apply
        elif guidance_scale:
            model_fn = samplers.classifier_free_guidance(apply, labels, guidance_scale, num_classes=num_classes)
        else:
            model_fn = lambda x, t: apply(x, t, labels)  # noqa: E731
        if sampler == "ddpm":
            return samplers.ddpm_sample(model_fn, diffusion, shape, rng, **opts)
        if sampler == "ddim":
            return samplers.ddim_sample(model_fn, diffusion, shape, rng, **opts)
        return dpm_solver.dpm_solver_sample(model_fn, diffusion, shape, rng, **opts)

    return jax.jit(run)


def sampler_options(sampler: str, num_steps: int | None, *, eta: float = 0.0, order: int = 2,
                    method: str = "multistep", clip_denoised: bool = True, num_timesteps: int) -> dict:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r}: expected one of {SAMPLERS}")
    if num_steps is not None and not 1 <= int(num_steps) <= num_timesteps:
        raise ValueError(f"num_steps={num_steps}: asked for {num_steps} steps but the process has "
                         f"T={num_timesteps} steps (1 <= num_steps <= T)")
    if sampler == "ddpm":
        steps = None if num_steps in (None, num_timesteps) else int(num_steps)
        return {"num_steps": steps, "clip_denoised": clip_denoised}
    if sampler == "ddim":
        return {"num_steps": int(num_steps or 50), "eta": float(eta), "clip_denoised": clip_denoised}
    return {"steps": int(num_steps or 20), "order": int(order), "method": method}


def sample(model, variables: dict, config, *, num_samples: int, rng: jax.Array | int = 0, sampler: str = "ddim",
           num_steps: int | None = 50, eta: float = 0.0, order: int = 2, method: str = "multistep",
           labels=None, guidance_scale: float = 0.0, clip_denoised: bool = True,
           diffusion: GaussianDiffusion | None = None) -> np.ndarray:
    """``num_samples`` images (float32 [n, H, W, C] in [-1, 1]) from a trained model.

    ``labels`` (class-conditional models): int [n]; default: 0, 1, 2, ... cycling over the classes.
    ``guidance_scale`` w: classifier-free guidance (1 + w) eps(x, y) - w eps(x, null).
    """
    diffusion = diffusion or diffusion_from_config(config.diffusion)
    num_classes = int(config.model.get("num_classes", 0))
    options = sampler_options(sampler, num_steps, eta=eta, order=order, method=method, clip_denoised=clip_denoised,
                              num_timesteps=diffusion.num_timesteps)
    if num_classes:
        labels = np.arange(num_samples) % num_classes if labels is None else labels
        labels = check_labels(labels, num_classes)
        if labels.shape[0] != num_samples:
            raise ValueError(f"labels has {labels.shape[0]} entries for num_samples={num_samples}")
    elif labels is not None:
        raise ValueError("labels given but the model is unconditional (config.model.num_classes = 0)")
    elif guidance_scale:
        raise ValueError("guidance_scale needs a class-conditional model (config.model.num_classes > 0)")
    if isinstance(rng, int):
        rng = jax.random.PRNGKey(rng)
    run = _compiled(model, diffusion, (int(num_samples), *image_shape(config)), sampler,
                    tuple(sorted(options.items())), bool(num_classes), float(guidance_scale), num_classes)
    out = run(variables["params"], rng, None if labels is None else jnp.asarray(labels))
    return np.asarray(_to_host(out), np.float32)


def _to_host(x):
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(x, tiled=True)
    return jax.device_get(x)


def grid(images, nrow: int | None = None, padding: int = 1, scale: int = 1) -> np.ndarray:
    """uint8 [rows * (H + p) + p, cols * (W + p) + p, C] tiling of images in [-1, 1] (C = 1 or 3)."""
    images = to_uint8(images)
    n, h, w, c = images.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    canvas = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        canvas[top:top + h, left:left + w] = image
    if scale > 1:
        canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    return canvas


def save_grid(images, path: str, nrow: int | None = None, scale: int | None = None) -> str:
    """Writes a PNG grid atomically (temporary file + rename); small images are upscaled for viewing."""
    from PIL import Image

    images = np.asarray(images)
    scale = scale or max(1, 64 // images.shape[1])
    canvas = grid(images, nrow=nrow, scale=scale)
    with atomic_write(path, "wb") as f:
        Image.fromarray(canvas[..., 0] if canvas.shape[-1] == 1 else canvas).save(f, format="PNG")
    return path


class SampleGridWriter:
    """``on_eval`` hook of the training loop: a grid from the EMA parameters after each evaluation."""

    def __init__(self, model, diffusion: GaussianDiffusion, config, out_dir: str):
        self.model, self.diffusion, self.config, self.out_dir = model, diffusion, config, out_dir

    def __call__(self, step: int, state: Any, eval_metrics) -> None:
        s = self.config.sample
        images = sample(self.model, {"params": state["ema_params"]}, self.config, num_samples=int(s.num_samples),
                        rng=int(s.get("seed", 0)), sampler=s.sampler, num_steps=int(s.num_steps),
                        eta=float(s.get("eta", 0.0)), guidance_scale=float(s.get("guidance_scale", 0.0)),
                        clip_denoised=bool(s.get("clip_denoised", True)), diffusion=self.diffusion)
        if jax.process_index() == 0:
            save_grid(images, os.path.join(self.out_dir, f"step_{step:07d}.png"))
        return None
