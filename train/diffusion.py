r"""Trains a denoising diffusion model (DDPM, improved DDPM, classifier-free guidance).

    python train/diffusion.py --config=configs/diffusion.py:digits --workdir=runs/diffusion_digits
    python train/diffusion.py --config=configs/diffusion.py:cifar10 --workdir=runs/ddpm_cifar10 \
        --config.data.data_dir=/path/to/tensorflow_datasets

Writes checkpoints (with the EMA parameters), TensorBoard metrics, metrics.jsonl and, after every
evaluation, a sample grid <workdir>/samples/step_<n>.png. Re-running with the same --workdir resumes
from the latest checkpoint. Sample and measure a finished run with train/diffusion_sample.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.projects.diffusion import experiment  # noqa: E402
from jaxmodels.training import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/diffusion.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (TPU pods, multi-host GPU).")

APPLY_HINT = ("from jaxmodels.diffusion import pipeline; "
              "images = pipeline.sample(model, variables, config, num_samples=64, sampler='ddim', num_steps=50)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    launch.run(experiment.train_and_evaluate, _CONFIG.value, _WORKDIR.value, distributed=_DISTRIBUTED.value,
               apply_hint=APPLY_HINT)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
