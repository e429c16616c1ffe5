r"""Trains the VQA v2 model with the counting component (Zhang et al., ICLR 2018).

    python train/vqa_counting.py --config=configs/vqa_counting.py:synthetic --workdir=runs/vqa_synthetic
    python train/vqa_counting.py --config=configs/vqa_counting.py:paper --workdir=runs/vqa \
        --config.data.features=genome-trainval.h5 \
        --config.data.train_questions=v2_OpenEnded_mscoco_train2014_questions.json \
        --config.data.train_annotations=v2_mscoco_train2014_annotations.json \
        --config.data.val_questions=v2_OpenEnded_mscoco_val2014_questions.json \
        --config.data.val_annotations=v2_mscoco_val2014_annotations.json

The run directory gets vocab.json, checkpoints, TensorBoard metrics, metrics.jsonl and, after each
evaluation, eval/predictions_<step>.json (VQA submission format). Re-running with the same
--workdir resumes from the latest checkpoint.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.training import launch  # noqa: E402
from jaxmodels.projects.vqa_counting import experiment  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/vqa_counting.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (TPU pods, multi-host GPU).")

APPLY_HINT = ("logits = model.apply(variables, features, boxes, question_ids, question_lengths)  "
              "# answers: json.load(open('<workdir>/vocab.json'))['answer']")


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
