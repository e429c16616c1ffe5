r"""Samples a trained diffusion model and measures it: PNG grids, NLL (bits/dim), quality vs steps.

    python train/diffusion_sample.py --workdir=runs/diffusion_digits
    python train/diffusion_sample.py --workdir=runs/diffusion_digits --samplers=ddpm,ddim,dpm_solver \
        --steps=10,20,50,1000 --quality_samples=2000 --nll_examples=360
    python train/diffusion_sample.py --workdir=runs/ddpm_cifar10 --steps=50 --quality_samples=50000 \
        --inception_weights=pt_inception-2015-12-05-6726825d.pth --nll_examples=10000

Writes into --out_dir (default <workdir>/eval):
  grid_<sampler>_<steps>.png   the first --grid_size samples of every run
  results.json, results.md     NLL by the all-T variational bound on the test split; per (sampler,
                               steps): NFE, quality scores, seconds per sample
  quality_vs_steps.png         the quality score against the number of steps, one line per sampler
Quality: on digits the in-repo digits classifier (digits FD, lower is better; classifier score);
with --inception_weights (pytorch-fid's Inception file, converted) FID against the data split.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of train/diffusion.py (or its checkpoints/<step>).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write grids and results (default <workdir>/eval).")
_SAMPLERS = flags.DEFINE_list("samplers", ["ddpm", "ddim", "dpm_solver"], "Samplers to run: ddpm, ddim, dpm_solver.")
_STEPS = flags.DEFINE_list("steps", ["10", "20", "50"], "Step counts (network evaluations) for every sampler.")
_GRID = flags.DEFINE_integer("grid_size", 64, "Samples per PNG grid.")
_QUALITY = flags.DEFINE_integer("quality_samples", 1000, "Samples per run for the quality score (0: grids only).")
_BATCH = flags.DEFINE_integer("batch_size", 500, "Sampling batch size.")
_NLL = flags.DEFINE_integer("nll_examples", 360, "Test images for the all-T NLL bound (0: skip).")
_NLL_BATCH = flags.DEFINE_integer("nll_batch", 120, "Batch size of the NLL bound.")
_ETA = flags.DEFINE_float("eta", 0.0, "DDIM eta (0: deterministic).")
_ORDER = flags.DEFINE_integer("order", 2, "DPM-Solver order (1, 2, 3).")
_METHOD = flags.DEFINE_string("method", "multistep", "DPM-Solver method: multistep | singlestep | singlestep_fixed.")
_GUIDANCE = flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance w (default: config.sample).")
_INCEPTION = flags.DEFINE_string("inception_weights", None, "pytorch-fid Inception weights (.pth/.safetensors) for FID.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")


def quality_function(config, out_dir):
    """(quality_fn, metric name, real-data reference value) for this dataset."""
    from jaxmodels.diffusion import evaluation
    if _INCEPTION.value:
        from jaxmodels.convert.torch_inception import load_torch_inception
        from jaxmodels.data.sources import build_source
        from jaxmodels.data.generative import build_preprocess
        from jaxmodels.vision.inception import inception_extractor
        extractor = inception_extractor(load_torch_inception(_INCEPTION.value))
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
        from jaxmodels.projects.diffusion import digits_classifier
        from jaxmodels.data.generative import digits_images
        variables = digits_classifier.load_or_train()
        train_images, _ = digits_images("train", size=int(config.data.image_size))
        real = digits_classifier.digits_quality(train_images[:360], variables)["fd"]  # the real-data floor at n=360
        return (lambda samples: digits_classifier.digits_quality(samples, variables)), "fd", real
    logging.warning("No quality score for %s without --inception_weights; writing grids only.", config.data.name)
    return None, None, None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    import jaxmodels
    from jaxmodels.data.sources import build_source
    from jaxmodels.projects.diffusion import report
    from jaxmodels.data.generative import build_preprocess
    from jaxmodels.loading import resolve_checkpoint

    import numpy as np

    workdir = _WORKDIR.value
    _, step = resolve_checkpoint(workdir, _STEP.value)
    model, variables, config = jaxmodels.load(workdir, step=step)
    out_dir = _OUT_DIR.value or os.path.join(os.path.abspath(workdir), "eval")
    steps = [int(s) for s in _STEPS.value]
    guidance = config.sample.get("guidance_scale", 0.0) if _GUIDANCE.value is None else _GUIDANCE.value
    guidance = guidance if int(config.model.get("num_classes", 0)) else 0.0
    print(f"Loaded {workdir} at step {step}: {config.model.name}, T={config.diffusion.num_timesteps}, "
          f"{config.diffusion.loss_type} loss, {config.diffusion.var_type} variance", flush=True)

    nll = None
    if _NLL.value > 0:
        source = build_source(config.data, config.data.eval_split)
        preprocess = build_preprocess(config.data, train=False)
        count = min(_NLL.value, len(source))
        records = [preprocess(source[i]) for i in range(count)]
        images = np.stack([r["image"] for r in records])
        labels = np.array([r["label"] for r in records], np.int32)
        nll = report.nll_bpd(model, variables, config, images, batch_size=min(_NLL_BATCH.value, count),
                             labels=labels if int(config.model.get("num_classes", 0)) else None, seed=_SEED.value)
        print(f"NLL bound: {nll['bpd']:.4f} +- {nll['bpd_stderr']:.4f} bits/dim on {count} "
              f"{config.data.eval_split} images", flush=True)

    quality_fn, metric, reference = (None, None, None)
    if _QUALITY.value > 0:
        quality_fn, metric, reference = quality_function(config, out_dir)
    num_samples = max(_QUALITY.value if quality_fn else 0, _GRID.value)
    runs = [(s, n) for s in _SAMPLERS.value for n in steps]
    rows = report.sampler_sweep(model, variables, config, runs, num_samples=num_samples, quality_fn=quality_fn,
                                seed=_SEED.value, batch_size=min(_BATCH.value, num_samples), guidance_scale=guidance,
                                grid_dir=out_dir, grid_size=_GRID.value, eta=_ETA.value, order=_ORDER.value,
                                method=_METHOD.value)
    meta = {"workdir": os.path.abspath(workdir), "step": int(step), "guidance_scale": guidance,
            "eta": _ETA.value, "dpm_solver": {"order": _ORDER.value, "method": _METHOD.value},
            "quality_metric": metric, "real_data_reference": reference, "nll_split": config.data.eval_split}
    report.write_results(out_dir, rows, nll, meta)
    if metric and len(steps) > 1:
        report.plot_quality(rows, os.path.join(out_dir, "quality_vs_steps.png"), metric, reference,
                            "real digits (train vs test)" if reference is not None else "")
    print(f"Wrote {out_dir}/results.md", flush=True)
    print(open(os.path.join(out_dir, "results.md")).read(), flush=True)


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
