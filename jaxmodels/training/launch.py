"""What every ``train/<experiment>.py`` binary does around its ``train_and_evaluate`` call.

Kept free of absl flags (the binaries own their flags): multi-host initialisation, a readable
report of where the run wrote its checkpoints and logs, and how to load them.
"""
from __future__ import annotations

import os
from typing import Callable

import jax

from jaxmodels.training.checkpoint import CHECKPOINT_SUBDIR
from jaxmodels.training.loop import TrainResult


def initialize_distributed(enabled: bool) -> None:
    """``jax.distributed.initialize()`` for TPU pods / multi-GPU hosts (auto-detects the cluster)."""
    if enabled:
        jax.distributed.initialize()


def describe_run(workdir: str, result: TrainResult) -> str:
    workdir = os.path.abspath(workdir)
    lines = [
        f"Finished at step {result.step}" + (" (stopped early: preemption)" if result.preempted else "") + ".",
        *(f"  eval {name}: {value:.4f}" for name, value in result.eval_metrics.items()),
        f"Checkpoints: {os.path.join(workdir, CHECKPOINT_SUBDIR)}",
        f"TensorBoard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}",
        f"Metrics:     {os.path.join(workdir, 'metrics.jsonl')}",
        "Load it in your own JAX code:",
        "  import jaxmodels",
        f"  model, variables, config = jaxmodels.load({workdir!r})",
        "  logits = model.apply(variables, images, train=False)",
    ]
    return "\n".join(lines)


def run(train_and_evaluate: Callable[..., TrainResult], config, workdir: str, *, distributed: bool = False) -> TrainResult:
    """Initialises (multi-host if asked), trains, and prints the run summary on process 0."""
    if not workdir:
        raise ValueError("--workdir is required: the directory for checkpoints and logs.")
    initialize_distributed(distributed)
    result = train_and_evaluate(config, workdir)
    if jax.process_index() == 0:
        print(describe_run(workdir, result), flush=True)
    return result
