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
from jaxmodels.projects.gnn_optimization import experiment
from jaxmodels.training import launch

if __name__ == "__main__":
    launch.main(experiment.train_and_evaluate, config_help="configs/gnn_optimization.py:<variant>",
                describe=experiment.describe, workdir_help="Run directory for results, figures and logs.")
