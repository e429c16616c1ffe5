r"""Compares finished PNA multitask runs: a markdown table and a bar plot beside the paper's averages.

    python train/pna_multitask_compare.py --runs=runs/pna_multitask/pna,runs/pna_multitask/gcn \
        --out=runs/pna_multitask
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags  # noqa: E402

from jaxmodels.projects.pna.multitask import compare_runs  # noqa: E402

_RUNS = flags.DEFINE_list("runs", None, "Run directories holding results.json.")
_OUT = flags.DEFINE_string("out", None, "Where to write comparison.md and comparison.png.")
_SPLIT = flags.DEFINE_string("split", "test", "Which test set to compare.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print(compare_runs(_RUNS.value, _OUT.value, _SPLIT.value), end="")


if __name__ == "__main__":
    flags.mark_flags_as_required(["runs", "out"])
    app.run(main)
