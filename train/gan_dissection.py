r"""Trains the progressive-GAN-style generator that GAN Dissection dissects (WGAN-GP or non-saturating loss).

    python train/gan_dissection.py --config=configs/gan_dissection.py:scenes --workdir=runs/gan_scenes
    python train/gan_dissection.py --config=configs/gan_dissection.py:celeba64 --workdir=runs/gan_celeba64 \
        --config.data.data_dir=/path/to/tensorflow_datasets

Writes checkpoints (generator, its EMA, critic and both optimisers), TensorBoard metrics, metrics.jsonl and,
after every evaluation, a grid of EMA samples <workdir>/samples/step_<n>.png. Re-running with the same
--workdir resumes from the latest checkpoint. ``jaxmodels.load(workdir)`` returns the EMA generator.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.projects.gan_dissection import experiment  # noqa: E402
from jaxmodels.training import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/gan_dissection.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (TPU pods, multi-host GPU).")

APPLY_HINT = ("from jaxmodels.gan.progan import sample_latents; "
              "images = model.apply(variables, sample_latents(jax.random.PRNGKey(0), 16, model.latent_dim))")


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
