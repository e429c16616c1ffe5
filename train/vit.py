r"""Trains a Vision Transformer (Dosovitskiy et al., 2021) image classifier.

    python train/vit.py --config=configs/vit.py:digits --workdir=runs/vit_digits
    python train/vit.py --config=configs/vit.py:cifar10 --workdir=runs/vit_cifar10 \
        --config.optimizer.lr=5e-4 --config.batch_size=256

Re-running with the same --workdir resumes from its latest checkpoint.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.training import launch  # noqa: E402
from jaxmodels.projects.vit import experiment as classification

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/vit.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (TPU pods, multi-host GPU).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # keep the console to our progress lines by default
        logging.set_verbosity(logging.WARNING)
    launch.run(classification.train_and_evaluate, _CONFIG.value, _WORKDIR.value, distributed=_DISTRIBUTED.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
