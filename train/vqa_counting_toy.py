r"""Reproduces the counting toy task (Zhang et al., ICLR 2018, sec. 5.1, fig. 3).

    python train/vqa_counting_toy.py --config=configs/vqa_counting_toy.py:paper --workdir=runs/counting_toy
    python train/vqa_counting_toy.py --config=configs/vqa_counting_toy.py:coarse --workdir=runs/counting_toy_coarse

For every sweep point (side length l or noise q, "easy" or "hard" setting) the counting component
and the attention-sum baseline train on the same generated batches and are evaluated on fresh ones.
The run directory gets results.json (every point, with the learned f weights), accuracy_curves.png,
accuracy_table.md, learned_functions.png, TensorBoard scalars and metrics.jsonl. Re-running with the
same --workdir resumes at the first unfinished chunk of points.
"""
from jaxmodels.projects.vqa_counting import toy
from jaxmodels.training import launch

if __name__ == "__main__":
    launch.main(toy.train_and_evaluate, config_help="configs/vqa_counting_toy.py:<variant>", describe=toy.describe,
                workdir_help="Run directory for results and figures.")
