"""What every ``train/<experiment>.py`` binary does around its ``train_and_evaluate`` call.

Kept free of absl flags (the binaries own their flags): multi-host initialisation, a readable
report of where the run wrote its checkpoints and logs, and how to load them.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

import jax

from jaxmodels.training.checkpoint import CHECKPOINT_SUBDIR
from jaxmodels.training.loop import TrainResult


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing for ``app.run(main, flags_parser=parse_flags)``.

    ml_collections reports an override of a field the config lacks (``--config.foo=1``) as a bare
    ``AttributeError`` traceback; this turns it into one line naming the override, and exits 1.
    """
    from absl import flags  # the binaries own the flags; this only parses them
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _exit_with(f"{error}")
    except (AttributeError, KeyError) as error:
        field = str(error).strip("\"'")
        overrides = [arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("--config.")]
        culprit = next((o for o in overrides if field in o.split(".")), ", ".join(overrides) or "--config")
        _exit_with(f"{culprit}: the config has no field {field!r} (overrides can only set fields the "
                   "config file defines; see its get_config)")


def _exit_with(message: str) -> None:
    sys.stderr.write(f"FATAL Flags parsing error: {message}\nPass --helpshort or --helpfull to see help on flags.\n")
    sys.exit(1)


def initialize_distributed(enabled: bool) -> None:
    """``jax.distributed.initialize()`` for TPU pods / multi-GPU hosts (auto-detects the cluster)."""
    if enabled:
        jax.distributed.initialize()


DEFAULT_APPLY_HINT = "logits = model.apply(variables, images, train=False)"


def describe_run(workdir: str, result: TrainResult, apply_hint: str = DEFAULT_APPLY_HINT) -> str:
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
        f"  {apply_hint}",
    ]
    return "\n".join(lines)


def run(train_and_evaluate: Callable[..., TrainResult], config, workdir: str, *, distributed: bool = False,
        apply_hint: str = DEFAULT_APPLY_HINT) -> TrainResult:
    """Initialises (multi-host if asked), trains, and prints the run summary on process 0."""
    if not workdir:
        raise ValueError("--workdir is required: the directory for checkpoints and logs.")
    initialize_distributed(distributed)
    result = train_and_evaluate(config, workdir)
    if jax.process_index() == 0:
        print(describe_run(workdir, result, apply_hint), flush=True)
    return result
