r"""Trains one model of the PNA multitask benchmark (Corso et al., NeurIPS 2020, sec. 4.1) and tests it.

    python train/pna_multitask.py --config=configs/pna_multitask.py:pna --workdir=runs/pna_multitask/pna
    python train/pna_multitask.py --config=configs/pna_multitask.py:gcn --workdir=runs/pna_multitask/gcn \
        --config.num_epochs=300

The benchmark data are generated on first use (seed 1234, ~7k graphs) and cached in
``config.data.cache_dir``. The run directory gets results.md / results.json / results.png (log10 MSE
per task of the best-validation weights) and, with ``--config.data.extrapolation=True``,
extrapolation.png. Re-running with the same --workdir resumes.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.projects.pna import multitask  # noqa: E402
from jaxmodels.training import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/pna_multitask.py:<variant>.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False, "Call jax.distributed.initialize() (multi-host).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    launch.run(multitask.train_and_evaluate, _CONFIG.value, _WORKDIR.value, distributed=_DISTRIBUTED.value,
               apply_hint=('node_out, graph_out = model.apply(variables, graph)  # padded jraph.GraphsTuple; '
                           'best-validation weights: jaxmodels.load(<workdir>/best)'))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
