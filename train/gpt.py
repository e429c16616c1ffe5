r"""Trains a GPT-2-style causal language model (Radford et al. 2019).

    python train/gpt.py --config=configs/gpt.py:people_daily --workdir=runs/gpt_pd
    python train/gpt.py --config=configs/gpt.py:gpt2_small --workdir=runs/gpt2 \
        --config.data.corpus_path=/data/corpus.txt --config.data.vocab_path=gpt2/vocab.json \
        --config.data.merges_path=gpt2/merges.txt

The run directory gets the tokenizer (tokenizer/vocab.json, merges.txt), checkpoints, TensorBoard
metrics, metrics.jsonl and sample continuations after each evaluation (samples/step_<n>.txt).
Re-running with the same --workdir resumes from the latest checkpoint.
"""
from jaxmodels.projects.gpt import experiment
from jaxmodels.training import launch

APPLY_HINT = ("from jaxmodels.text.generation import generate; "
              "out = generate(model, variables['params'], prompt_ids, max_new_tokens=64, temperature=0.8, top_k=40)")

if __name__ == "__main__":
    launch.main(experiment.train_and_evaluate, config_help="configs/gpt.py:<variant>", apply_hint=APPLY_HINT)
