r"""Reproduces the counting toy task (Zhang et al., ICLR 2018, sec. 5.1, fig. 3).

    python train/vqa_counting_toy.py --config=configs/vqa_counting_toy.py:paper --workdir=runs/counting_toy
    python train/vqa_counting_toy.py --config=configs/vqa_counting_toy.py:coarse --workdir=runs/counting_toy_coarse

For every sweep point (side length l or noise q, "easy" or "hard" setting) the counting component
and the attention-sum baseline train on the same generated batches and are evaluated on fresh ones.
The run directory gets results.json (every point, with the learned f weights), accuracy_curves.png,
accuracy_table.md, learned_functions.png, TensorBoard scalars and metrics.jsonl. Re-running with the
same --workdir resumes at the first unfinished chunk of points.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxmodels.training import launch  # noqa: E402
from jaxmodels.projects.vqa_counting import toy  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/vqa_counting_toy.py:<variant>).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory for results and figures.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    workdir = os.path.abspath(_WORKDIR.value)
    toy.run_sweeps(_CONFIG.value, workdir, log=lambda line: print(line, flush=True))
    print(f"Accuracy table: {os.path.join(workdir, 'accuracy_table.md')}\n"
          f"Figure:         {os.path.join(workdir, 'accuracy_curves.png')}\n"
          f"Learned f:      {os.path.join(workdir, 'learned_functions.png')}\n"
          f"All points:     {os.path.join(workdir, 'results.json')}", flush=True)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=launch.parse_flags)
