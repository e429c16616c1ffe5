"""Mesh and shardings, the generic loop, Orbax checkpoints, optimisers, metric writers and the toolkit.

The toolkit: ``step`` (one gradient step with accumulation), ``ema`` (parameter EMA) and ``files``
(atomic writes). The public names below are imported on first use, so ``import
jaxmodels.training.files`` from the data layer stays light (no JAX, Flax or Orbax at import).
"""
import importlib

_EXPORTS = {
    "Checkpoints": "checkpoint",
    "Experiment": "loop", "NonFiniteLossError": "loop", "TrainResult": "loop", "evaluate": "loop", "train": "loop",
    "batch_sharding": "mesh", "create_sharded_state": "mesh", "make_mesh": "mesh", "state_shardings": "mesh",
    "build_optimizer": "optimizers", "learning_rate_schedule": "optimizers",
    "LOGICAL_AXIS_RULES": "partitioning", "MESH_AXES": "partitioning",
    "gradient_step": "step", "StepResult": "step",
    "ema_decay_at": "ema", "ema_update": "ema",
    "atomic_write": "files", "atomic_path": "files",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
