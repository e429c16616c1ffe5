"""Mesh and shardings, the generic loop, Orbax checkpoints, optimisers and metric writers."""
from jaxmodels.training.checkpoint import Checkpoints
from jaxmodels.training.loop import Experiment, NonFiniteLossError, TrainResult, evaluate, train
from jaxmodels.training.mesh import batch_sharding, create_sharded_state, make_mesh, state_shardings
from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
from jaxmodels.training.partitioning import LOGICAL_AXIS_RULES, MESH_AXES

__all__ = [
    "Checkpoints", "Experiment", "NonFiniteLossError", "TrainResult", "evaluate", "train",
    "batch_sharding", "create_sharded_state", "make_mesh", "state_shardings", "build_optimizer",
    "learning_rate_schedule", "LOGICAL_AXIS_RULES", "MESH_AXES",
]
