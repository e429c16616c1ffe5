"""The launcher every ``train/<experiment>.py`` binary calls: ``launch.main(train_and_evaluate, ...)``.

A binary is its docstring and one call::

    if __name__ == "__main__":
        launch.main(experiment.train_and_evaluate, config_help="configs/vit.py:<variant>")

``main`` defines the common flags (``--config`` via ml_collections, ``--workdir``, ``--jax_distributed``),
parses them with a one-line error for an override of a field the config lacks, keeps absl logging
at WARNING unless ``--verbosity`` is given (so the console shows the progress lines), initialises
multi-host JAX when asked, logs the resolved config, runs ``train_and_evaluate(config, workdir)`` and
prints the run summary on process 0. A binary without a config file (its command lines predate the
configs and must keep working) defines its own absl flags and hands them over as ``options``: the run
function gets their values as a locked ``ConfigDict``, by flag name.

Importing this module defines no flags: ``main`` defines them when a binary calls it, so the library
stays free of absl flags.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence

import jax

from jaxmodels.training.checkpoint import CHECKPOINT_SUBDIR
from jaxmodels.training.loop import TrainResult
from jaxmodels.training.metrics import console

RunFunction = Callable[[Any, str], Any]
Describe = Callable[[str, Any], str]

DEFAULT_APPLY_HINT = "logits = model.apply(variables, images, train=False)"


def main(run_fn: RunFunction, *, config_help: str | None = None, options: Sequence[Any] = (),
         apply_hint: str = DEFAULT_APPLY_HINT, describe: Describe | None = None,
         workdir_flag: str = "workdir", workdir_help: str = "Run directory for checkpoints and logs.",
         workdir_required: bool = True) -> None:
    """Defines the common flags, parses the command line and runs ``run_fn(config, workdir)``.

    run_fn: the project's ``train_and_evaluate(config, workdir)`` (or another function of that shape).
    config_help: what ``--config`` takes, e.g. ``"configs/vit.py:<variant>"``. ``None``: no ``--config``;
      the config is then built from ``options``, the absl flag holders the binary defined.
    apply_hint / describe: the run summary printed on process 0 is ``describe(workdir, result)`` when
      given, else ``describe_run`` of the returned ``TrainResult`` ending with ``apply_hint``.
    workdir_flag / workdir_help / workdir_required: the run-directory flag (``--out`` for a binary that
      writes a comparison; optional where the run function has a default for an empty workdir).
    """
    from absl import app, flags, logging
    from ml_collections import config_flags

    config_flag = None
    if config_help is not None:
        config_flag = config_flags.DEFINE_config_file("config", None, f"Experiment config file ({config_help}).",
                                                      lock_config=True)
    workdir = flags.DEFINE_string(workdir_flag, None, workdir_help)
    distributed = flags.DEFINE_bool("jax_distributed", False,
                                    "Call jax.distributed.initialize() (TPU pods, multi-host GPU).")
    for holder in (config_flag, workdir, distributed):
        if holder is not None:  # listed by --helpshort beside the binary's own flags
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])
    required = ([] if config_flag is None else ["config"]) + ([workdir_flag] if workdir_required else [])
    if required:
        flags.mark_flags_as_required(required)

    def binary_main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        if not flags.FLAGS["verbosity"].present:  # keep the console to the progress lines
            logging.set_verbosity(logging.WARNING)
        if workdir_required and not workdir.value:
            raise app.UsageError(f"--{workdir_flag} must name a directory.")
        config = config_flag.value if config_flag is not None else options_config(options)
        run(run_fn, config, workdir.value or "", distributed=distributed.value, apply_hint=apply_hint,
            describe=describe)

    app.run(binary_main, flags_parser=parse_flags)


def options_config(options: Sequence[Any]):
    """A locked ``ConfigDict`` of absl flag values, by flag name (the config of a binary without a config file)."""
    import ml_collections

    config = ml_collections.ConfigDict({holder.name: holder.value for holder in options})
    config.lock()
    return config


def run(run_fn: RunFunction, config, workdir: str, *, distributed: bool = False,
        apply_hint: str = DEFAULT_APPLY_HINT, describe: Describe | None = None) -> Any:
    """Initialises (multi-host if asked), logs the config, runs, and prints the run summary on process 0.

    The runs record their config beside their results (the training loop as ``<workdir>/config.json``);
    the log gets it here, for every binary, before the run starts.
    """
    from absl import logging

    initialize_distributed(distributed)
    logging.info("workdir: %s\nconfig:\n%s", workdir, config)
    result = run_fn(config, workdir)
    if jax.process_index() == 0:
        console(describe(workdir, result) if describe is not None else describe_run(workdir, result, apply_hint))
    return result


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing for ``app.run(main, flags_parser=parse_flags)``.

    ml_collections reports an override of a field the config lacks (``--config.foo=1``) as a bare
    ``AttributeError`` traceback; this turns it into one line naming the override, and exits 1.
    """
    from absl import flags
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


def describe_run(workdir: str, result: TrainResult, apply_hint: str = DEFAULT_APPLY_HINT) -> str:
    """Where a training run wrote its checkpoints, TensorBoard logs and metrics, and how to load it."""
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
