r"""Optimisation of linearised and ReLU GNNs by gradient descent (Xu et al., ICML 2021, arXiv 2105.04550).

    python train/gnn_optimization.py --config=configs/gnn_optimization.py:sbm --workdir=runs/gnnopt_sbm
    python train/gnn_optimization.py --config=configs/gnn_optimization.py:cora --workdir=runs/gnnopt_cora \
        --config.data.root=/data/planetoid

Trains every (aggregation, depth, model, labels, seed) of the config's two comparisons with full-batch
GD and writes into --workdir:
  results.json        one record per run (L*, gaps, fitted rates, bound, lambda_T, sigma_min^2) + findings
  rates.md            the same as a markdown table
  curves.npz          the per-step L(t) - L* and lambda_min(Bbar^T Bbar) of every run
  *.png               log-scale L(t) - L* curves: skip vs no skip, depth, true vs random labels,
                      linear vs ReLU, and lambda_min over training
  metrics.jsonl, tensorboard/   the curves through MetricWriter
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.projects.gnn_optimization.experiment import train_and_evaluate  # noqa: E402
from jaxmodels.training import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/gnn_optimization.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for results, figures and logs.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required: the directory for results and figures.")
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
