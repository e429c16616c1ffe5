r"""Trains one model of the PNA multitask benchmark (Corso et al., NeurIPS 2020, sec. 4.1) and tests it.

    python train/pna_multitask.py --config=configs/pna_multitask.py:pna --workdir=runs/pna_multitask/pna
    python train/pna_multitask.py --config=configs/pna_multitask.py:gcn --workdir=runs/pna_multitask/gcn \
        --config.num_epochs=300

The benchmark data are generated on first use (seed 1234, ~7k graphs) and cached in
``config.data.cache_dir``. The run directory gets results.md / results.json / results.png (log10 MSE
per task of the best-validation weights) and, with ``--config.data.extrapolation=True``,
extrapolation.png. Re-running with the same --workdir resumes.
"""
from jaxmodels.projects.pna import multitask
from jaxmodels.training import launch

APPLY_HINT = ("node_out, graph_out = model.apply(variables, graph)  # padded jraph.GraphsTuple; "
              "best-validation weights: jaxmodels.load(<workdir>/best)")

if __name__ == "__main__":
    launch.main(multitask.train_and_evaluate, config_help="configs/pna_multitask.py:<variant>",
                apply_hint=APPLY_HINT, workdir_help="Run directory for checkpoints, logs and results.")
