r"""Trains the scene segmenter of the GAN Dissection reproduction (s_c(x) for dissection and ACE).

    python train/gan_dissection_segmenter.py --config=configs/gan_dissection_segmenter.py:scenes --workdir=runs/segmenter_scenes
    python train/gan_dissection_segmenter.py --config=configs/gan_dissection_segmenter.py:tiny --workdir=/tmp/segmenter_tiny

Trains on rendered 64x64 scenes with exact label maps (jaxmodels.projects.gan_dissection.scenes) and evaluates
pixel accuracy and per-class IoU on held-out scenes. Writes checkpoints, TensorBoard metrics,
metrics.jsonl and <workdir>/results.json (pixel accuracy, mean IoU, per-class IoU). Re-running with the
same --workdir resumes from the latest checkpoint.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.projects.gan_dissection import segmenter as segmenter_experiment  # noqa: E402
from jaxmodels.training import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/gan_dissection_segmenter.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (TPU pods, multi-host GPU).")

APPLY_HINT = ("logits = model.apply(variables, images)  # images in [-1, 1]; "
              "features = model.apply(variables, images, method='features')")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    launch.run(segmenter_experiment.train_and_evaluate, _CONFIG.value, _WORKDIR.value, distributed=_DISTRIBUTED.value,
               apply_hint=APPLY_HINT)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
