r"""Trains PNA on ZINC (Corso et al., NeurIPS 2020, sec. 4.2) and reports the test MAE of the best-validation weights.

    python train/pna_zinc.py --config=configs/pna_zinc.py:edges --config.data.root=~/data/ZINC \
        --workdir=runs/pna_zinc/edges

Reads PyG's raw ZINC layout (<root>/raw/{train,val,test}.{pickle,index}; see jaxmodels/projects/pna/zinc_data.py);
nothing is downloaded. Writes results.md / results.json (val and test MAE) into the run directory;
re-running with the same --workdir resumes.
"""
from jaxmodels.projects.pna import zinc
from jaxmodels.training import launch

APPLY_HINT = "prediction = model.apply(variables, graph)  # graph: padded jraph.GraphsTuple"

if __name__ == "__main__":
    launch.main(zinc.train_and_evaluate, config_help="configs/pna_zinc.py:<variant>",
                apply_hint=APPLY_HINT, workdir_help="Run directory for checkpoints, logs and results.")
