r"""Trains PNA on ZINC (Corso et al., NeurIPS 2020, sec. 4.2) and reports the test MAE of the best-validation weights.

    python train/pna_zinc.py --config=configs/pna_zinc.py:edges --config.data.root=~/data/ZINC \
        --workdir=runs/pna_zinc/edges

Reads PyG's raw ZINC layout (<root>/raw/{train,val,test}.{pickle,index}; see jaxmodels/projects/pna/zinc_data.py);
nothing is downloaded. Writes results.md / results.json (val and test MAE) into the run directory;
re-running with the same --workdir resumes.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.projects.pna import zinc as regression  # noqa: E402
from jaxmodels.training import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/pna_zinc.py:<variant>.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (multi-host).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    launch.run(regression.train_and_evaluate, _CONFIG.value, _WORKDIR.value, distributed=_DISTRIBUTED.value,
               apply_hint='prediction = model.apply(variables, graph)  # graph: padded jraph.GraphsTuple')


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
