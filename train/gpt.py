r"""Trains a GPT-2-style causal language model (Radford et al. 2019).

    python train/gpt.py --config=configs/gpt.py:people_daily --workdir=runs/gpt_pd
    python train/gpt.py --config=configs/gpt.py:gpt2_small --workdir=runs/gpt2 \
        --config.data.corpus_path=/data/corpus.txt --config.data.vocab_path=gpt2/vocab.json \
        --config.data.merges_path=gpt2/merges.txt

The run directory gets the tokenizer (tokenizer/vocab.json, merges.txt), checkpoints, TensorBoard
metrics, metrics.jsonl and sample continuations after each evaluation (samples/step_<n>.txt).
Re-running with the same --workdir resumes from the latest checkpoint.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.projects.gpt import experiment as causal_lm  # noqa: E402
from jaxmodels.training import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/gpt.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (TPU pods, multi-host GPU).")

APPLY_HINT = ("from jaxmodels.text.generation import generate; "
              "out = generate(model, variables['params'], prompt_ids, max_new_tokens=64, temperature=0.8, top_k=40)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    launch.run(causal_lm.train_and_evaluate, _CONFIG.value, _WORKDIR.value, distributed=_DISTRIBUTED.value,
               apply_hint=APPLY_HINT)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
