r"""Pretrains BERT with Chinese whole word masking (Cui et al., arXiv 1906.08101).

    python train/bert_wwm_pretrain.py --config=configs/bert_wwm_pretrain.py:people_daily --workdir=runs/bert_pd
    python train/bert_wwm_pretrain.py --config=configs/bert_wwm_pretrain.py:bert_wwm --workdir=runs/bert_wwm \
        --config.data.corpus_path=/data/zhwiki.txt --config.init.hf_path=/models/bert-base-chinese

The run directory gets vocab.txt, the cached pretraining instances (data/), checkpoints, TensorBoard
metrics and metrics.jsonl. Re-running with the same --workdir resumes from the latest checkpoint.
Fine-tune the result with train/bert_wwm_finetune.py --config.init.workdir=<workdir>.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.projects.bert_wwm import pretrain as bert_pretrain  # noqa: E402
from jaxmodels.training import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/bert_wwm_pretrain.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (TPU pods, multi-host GPU).")

APPLY_HINT = ("out = model.apply(variables, input_ids, token_type_ids, attention_mask)  "
              "# out['mlm_logits']; tokenizer: jaxmodels.text.tokenizers.WordPieceTokenizer.from_file('<workdir>/vocab.txt')")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    launch.run(bert_pretrain.train_and_evaluate, _CONFIG.value, _WORKDIR.value, distributed=_DISTRIBUTED.value,
               apply_hint=APPLY_HINT)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
