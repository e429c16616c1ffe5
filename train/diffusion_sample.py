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
from absl import flags

from jaxmodels.projects.diffusion import sample
from jaxmodels.training import launch

_OPTIONS = (
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest)."),
    flags.DEFINE_string("out_dir", None, "Where to write grids and results (default <workdir>/eval)."),
    flags.DEFINE_list("samplers", ["ddpm", "ddim", "dpm_solver"], "Samplers to run: ddpm, ddim, dpm_solver."),
    flags.DEFINE_list("steps", ["10", "20", "50"], "Step counts (network evaluations) for every sampler."),
    flags.DEFINE_integer("grid_size", 64, "Samples per PNG grid."),
    flags.DEFINE_integer("quality_samples", 1000, "Samples per run for the quality score (0: grids only)."),
    flags.DEFINE_integer("batch_size", 500, "Sampling batch size."),
    flags.DEFINE_integer("nll_examples", 360, "Test images for the all-T NLL bound (0: skip)."),
    flags.DEFINE_integer("nll_batch", 120, "Batch size of the NLL bound."),
    flags.DEFINE_float("eta", 0.0, "DDIM eta (0: deterministic)."),
    flags.DEFINE_integer("order", 2, "DPM-Solver order (1, 2, 3)."),
    flags.DEFINE_string("method", "multistep", "DPM-Solver method: multistep | singlestep | singlestep_fixed."),
    flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance w (default: config.sample)."),
    flags.DEFINE_string("inception_weights", None, "pytorch-fid Inception weights (.pth/.safetensors) for FID."),
    flags.DEFINE_string("classifier_cache_dir", None, "Where the digits classifier is cached (default "
                        "$JAXMODELS_CACHE/digits_classifier, else <out_dir>/digits_classifier)."),
    flags.DEFINE_integer("seed", 0, "Sampling seed."),
)

if __name__ == "__main__":
    launch.main(sample.sample_and_measure, options=_OPTIONS, describe=sample.describe,
                workdir_help="Run directory of train/diffusion.py (or its checkpoints/<step>).")
