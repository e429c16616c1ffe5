"""``jaxmodels.load``: a checkpoint written by any jaxmodels binary -> (module, variables, config).

    import jaxmodels
    model, variables, config = jaxmodels.load("runs/vit_digits")
    logits = model.apply(variables, images, train=False)

The checkpoint's arrays are restored onto one device (or onto ``sharding`` if given), whatever
mesh wrote them: a checkpoint saved on 8 devices loads on 1. Only the inference variables are
read: ``params`` (or ``ema_params`` when the run kept an EMA, which then become ``params``) and
any other variable collections stored beside them (``batch_stats``); optimiser state is skipped.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections

from jaxmodels import models
from jaxmodels.training.checkpoint import CHECKPOINT_SUBDIR

INFERENCE_COLLECTIONS = ("params", "batch_stats")


class CheckpointNotFoundError(FileNotFoundError):
    pass


def _is_step_dir(path: str) -> bool:
    return os.path.basename(os.path.normpath(path)).isdigit() and os.path.isdir(os.path.join(path, "state"))


def resolve_checkpoint(path: str | os.PathLike, step: int | None = None) -> tuple[str, int]:
    """Finds ``(checkpoints_dir, step)`` from a run directory, its ``checkpoints/`` or a step dir."""
    path = os.path.abspath(os.fspath(path))
    if _is_step_dir(path):
        return os.path.dirname(path), int(os.path.basename(path)) if step is None else step
    directory = os.path.join(path, CHECKPOINT_SUBDIR) if os.path.isdir(os.path.join(path, CHECKPOINT_SUBDIR)) else path
    steps = sorted(int(name) for name in (os.listdir(directory) if os.path.isdir(directory) else [])
                   if name.isdigit() and os.path.isdir(os.path.join(directory, name, "state")))
    if not steps:
        raise CheckpointNotFoundError(
            f"No checkpoint found at {path}: expected a run directory containing "
            f"{CHECKPOINT_SUBDIR}/<step>/state (as written by the train/ binaries), "
            f"its {CHECKPOINT_SUBDIR}/ folder, or one <step> folder.")
    if step is not None and step not in steps:
        raise CheckpointNotFoundError(f"Step {step} is not in {directory}; available steps: {steps}")
    return directory, steps[-1] if step is None else step


def _abstract_leaf(meta, sharding):
    return jax.ShapeDtypeStruct(tuple(meta.shape), meta.dtype, sharding=sharding)


def load(path: str | os.PathLike, *, step: int | None = None,
         sharding: jax.sharding.Sharding | None = None) -> tuple[Any, dict, ml_collections.ConfigDict]:
    """Loads ``(model, variables, config)`` from a jaxmodels checkpoint (latest step by default)."""
    import orbax.checkpoint as ocp  # imported here so ``import jaxmodels`` stays light
    from etils import epath

    directory, step = resolve_checkpoint(path, step)
    step_dir = os.path.join(directory, str(step))
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
        config = ml_collections.ConfigDict(
            checkpointer.restore(os.path.join(step_dir, "config"), args=ocp.args.JsonRestore()))
    model = models.build_model(config.model)
    with ocp.PyTreeCheckpointer() as checkpointer:
        state_dir = os.path.join(step_dir, "state")
        metadata = ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir))  # shapes and dtypes only
        tree = metadata.tree if hasattr(metadata, "tree") else metadata
        wanted = [name for name in ("ema_params", *INFERENCE_COLLECTIONS) if name in tree]
        if "params" not in wanted:
            raise ValueError(f"Checkpoint {step_dir} has no 'params' in its state (keys: {sorted(tree)})")
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = {name: jax.tree.map(lambda m: _abstract_leaf(m, sharding), tree[name]) for name in wanted}
        restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
            item=abstract, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)))
    variables = {name: restored[name] for name in INFERENCE_COLLECTIONS if name in restored}
    if "ema_params" in restored:
        variables["params"] = restored["ema_params"]
    return model, variables, config
