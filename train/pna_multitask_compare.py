r"""Compares finished PNA multitask runs: a markdown table and a bar plot beside the paper's averages.

    python train/pna_multitask_compare.py --runs=runs/pna_multitask/pna,runs/pna_multitask/gcn \
        --out=runs/pna_multitask
"""
from absl import flags

from jaxmodels.projects.pna import multitask_compare
from jaxmodels.training import launch

_RUNS = flags.DEFINE_list("runs", None, "Run directories holding results.json.", required=True)
_SPLIT = flags.DEFINE_string("split", "test", "Which test set to compare.")

if __name__ == "__main__":
    launch.main(multitask_compare.compare, options=(_RUNS, _SPLIT), describe=multitask_compare.describe,
                workdir_flag="out", workdir_help="Where to write comparison.md and comparison.png.")
