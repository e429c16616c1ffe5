"""Samples a trained diffusion model and measures it: what ``train/diffusion_sample.py`` runs.

``sample_and_measure(options, workdir)`` loads the run in ``workdir`` (a ``train/diffusion.py`` run
directory or one of its checkpoints), bounds the NLL in bits/dim on the test split (Ho et al. 2020,
eq. 5 summed over all T terms), runs every (sampler, steps) pair of ``options`` with PNG grids and a
quality score, and writes ``results.json`` / ``results.md`` / ``quality_vs_steps.png`` into
``options.out_dir`` (default ``<workdir>/eval``). ``options`` is a ``ConfigDict`` with the binary's
flags as fields (``samplers``, ``steps``, ``quality_samples``, ...; see ``train/diffusion_sample.py``).

Quality: with ``inception_weights`` (pytorch-fid's Inception file, converted) FID against the
data's train split; on digits otherwise the in-repo digits classifier (digits FD, classifier score).
"""
from __future__ import annotations

import os

import numpy as np
from absl import logging

from jaxmodels.training.metrics import console

DIGITS_REAL_SAMPLES = 360  # the real-data floor of the digits FD is measured at this sample count


def sample_and_measure(options, workdir: str) -> dict:
    """Writes grids, ``results.json`` and ``results.md`` of the run in ``workdir``; returns what they hold."""
    import jaxmodels
    from jaxmodels.loading import resolve_checkpoint
    from jaxmodels.projects.diffusion import report

    _, step = resolve_checkpoint(workdir, options.step)
    model, variables, config = jaxmodels.load(workdir, step=step)
    out_dir = options.out_dir or os.path.join(os.path.abspath(workdir), "eval")
    steps = [int(s) for s in options.steps]
    conditional = bool(int(config.model.get("num_classes", 0)))
    guidance = config.sample.get("guidance_scale", 0.0) if options.guidance_scale is None else options.guidance_scale
    guidance = guidance if conditional else 0.0
    console(f"Loaded {workdir} at step {step}: {config.model.name}, T={config.diffusion.num_timesteps}, "
            f"{config.diffusion.loss_type} loss, {config.diffusion.var_type} variance")

    nll = nll_bound(model, variables, config, options) if options.nll_examples > 0 else None
    quality_fn, metric, reference = None, None, None
    if options.quality_samples > 0:
        quality_fn, metric, reference = quality_function(config, out_dir, options)
    num_samples = max(options.quality_samples if quality_fn else 0, options.grid_size)
    runs = [(sampler, n) for sampler in options.samplers for n in steps]
    rows = report.sampler_sweep(model, variables, config, runs, num_samples=num_samples, quality_fn=quality_fn,
                                seed=options.seed, batch_size=min(options.batch_size, num_samples),
                                guidance_scale=guidance, grid_dir=out_dir, grid_size=options.grid_size,
                                eta=options.eta, order=options.order, method=options.method, log=console)
    meta = {"workdir": os.path.abspath(workdir), "step": int(step), "guidance_scale": guidance,
            "eta": options.eta, "dpm_solver": {"order": options.order, "method": options.method},
            "quality_metric": metric, "real_data_reference": reference, "nll_split": config.data.eval_split}
    report.write_results(out_dir, rows, nll, meta)
    if metric and len(steps) > 1:
        report.plot_quality(rows, os.path.join(out_dir, "quality_vs_steps.png"), metric, reference,
                            "real digits (train vs test)" if reference is not None else "")
    return {"out_dir": out_dir, "samplers": rows, "nll": nll, "meta": meta}


def describe(workdir: str, result: dict) -> str:
    """The end-of-run console summary: where ``results.md`` is, and its text."""
    with open(os.path.join(result["out_dir"], "results.md")) as f:
        return f"Wrote {result['out_dir']}/results.md\n{f.read()}\n"


def nll_bound(model, variables, config, options) -> dict:
    """The all-T variational bound in bits/dim on the first ``options.nll_examples`` eval-split images."""
    from jaxmodels.data.generative import build_preprocess
    from jaxmodels.data.sources import build_source
    from jaxmodels.projects.diffusion import report

    source = build_source(config.data, config.data.eval_split)
    preprocess = build_preprocess(config.data, train=False)
    count = min(options.nll_examples, len(source))
    records = [preprocess(source[i]) for i in range(count)]
    images = np.stack([r["image"] for r in records])
    labels = np.array([r["label"] for r in records], np.int32)
    nll = report.nll_bpd(model, variables, config, images, batch_size=min(options.nll_batch, count),
                         labels=labels if int(config.model.get("num_classes", 0)) else None, seed=options.seed)
    console(f"NLL bound: {nll['bpd']:.4f} +- {nll['bpd_stderr']:.4f} bits/dim on {count} "
            f"{config.data.eval_split} images")
    return nll


def quality_function(config, out_dir: str, options):
    """(quality_fn, metric name, real-data reference value) for this dataset; (None, None, None) if none."""
    from jaxmodels.diffusion import evaluation
    if options.inception_weights:
        from jaxmodels.convert.torch_inception import load_torch_inception
        from jaxmodels.data.generative import build_preprocess
        from jaxmodels.data.sources import build_source
        from jaxmodels.vision.inception import inception_extractor
        extractor = inception_extractor(load_torch_inception(options.inception_weights))
        stats_path = os.path.join(out_dir, f"inception_stats_{config.data.name}_{config.data.train_split}.npz")
        if os.path.exists(stats_path):
            reference = evaluation.FeatureStatistics.load(stats_path)
        else:
            source = build_source(config.data, config.data.train_split)
            preprocess = build_preprocess(config.data, train=False)
            images = (preprocess(source[i])["image"][None] for i in range(len(source)))
            reference = evaluation.compute_statistics(extractor, images, batch_size=100)
            reference.save(stats_path)
        return (lambda samples: {"fid": evaluation.frechet_distance_from_images(extractor, samples, reference)}), "fid", None
    if config.data.source == "digits":
        from jaxmodels.data.generative import digits_images
        from jaxmodels.projects.diffusion import digits_classifier
        cache_dir = (options.classifier_cache_dir or digits_classifier.default_cache_dir()
                     or os.path.join(out_dir, "digits_classifier"))
        variables = digits_classifier.load_or_train(cache_dir)
        train_images, _ = digits_images("train", size=int(config.data.image_size))
        real = digits_classifier.digits_quality(train_images[:DIGITS_REAL_SAMPLES], variables)["fd"]
        return (lambda samples: digits_classifier.digits_quality(samples, variables)), "fd", real
    logging.warning("No quality score for %s without --inception_weights; writing grids only.", config.data.name)
    return None, None, None
