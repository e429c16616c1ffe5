"""Device mesh and state shardings (the pjit style: ``jax.jit`` over a ``Mesh``).

The mesh has three axes, ``data`` (batch), ``fsdp`` (batch *and* parameters, ZeRO-3 style) and
``model`` (tensor parallel). Shardings for a train state are derived from the logical axis
annotations of its parameters: ``jax.eval_shape`` -> ``nn.get_partition_spec`` ->
``nn.logical_to_mesh_sharding``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxmodels.training.partitioning import LOGICAL_AXIS_RULES, MESH_AXES

PyTree = Any


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
    """Resolves ``{data, fsdp, model}`` sizes; at most one may be -1 ("all remaining devices").

    With no -1, the sizes must multiply to at most ``num_devices`` (``make_mesh`` then uses the
    first devices, e.g. ``{data: 1, fsdp: 1, model: 1}`` is a single-device run).
    """
    sizes = [int(mesh_cfg.get(axis, 1)) for axis in MESH_AXES]
    unknown = [axis for axis, size in zip(MESH_AXES, sizes) if size == -1]
    if len(unknown) > 1:
        raise ValueError(f"config.mesh: only one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    known = math.prod(size for size in sizes if size != -1)
    if unknown:
        if num_devices % known:
            raise ValueError(f"config.mesh: {num_devices} devices do not divide by the fixed axes ({known})")
        sizes[MESH_AXES.index(unknown[0])] = num_devices // known
    if math.prod(sizes) > num_devices or (unknown and math.prod(sizes) != num_devices):
        raise ValueError(
            f"config.mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
            f"but {num_devices} are available")
    return tuple(sizes)


def make_mesh(mesh_cfg: Mapping[str, int] | None = None, devices=None) -> Mesh:
    """Builds the (data, fsdp, model) mesh with ``AxisType.Auto`` axes over all (or given) devices."""
    devices = jax.devices() if devices is None else list(devices)
    shape = mesh_shape(mesh_cfg or {"data": -1}, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                         devices=devices[:math.prod(shape)])


def num_batch_devices(mesh_cfg: Mapping[str, int] | None = None) -> int:
    """Devices on the batch axes (``data`` x ``fsdp``) of the mesh ``make_mesh(mesh_cfg)`` builds over all
    processes' devices: the number of shards a global batch is split into."""
    data, fsdp, _ = mesh_shape(mesh_cfg or {"data": -1}, jax.device_count())
    return data * fsdp


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data`` and ``fsdp``; the rest replicated."""
    return NamedSharding(mesh, P(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def state_shardings(abstract_boxed_state: PyTree, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> PyTree:
    """Shardings for a state whose parameters carry ``nn.Partitioned`` logical axis names.

    Leaves without annotations (step counters, rng keys, optimiser counts) are replicated. The
    returned tree has the structure of the *unboxed* state.
    """
    specs = nn.get_partition_spec(abstract_boxed_state)  # boxes -> PartitionSpec of logical names
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def create_sharded_state(init_fn: Callable[[jax.Array], PyTree], rng: jax.Array, mesh: Mesh,
                         rules=LOGICAL_AXIS_RULES) -> tuple[PyTree, PyTree]:
    """Runs ``init_fn`` under ``jax.jit(..., out_shardings=...)`` so every leaf is born sharded.

    Returns ``(state, shardings)`` with the state unboxed (plain arrays).
    """
    with jax.set_mesh(mesh):
        abstract = jax.eval_shape(init_fn, rng)
        shardings = state_shardings(abstract, mesh, rules)
        state = jax.jit(lambda key: nn.unbox(init_fn(key)), out_shardings=shardings)(rng)
    return state, shardings


def abstract_state(init_fn: Callable[[jax.Array], PyTree], rng: jax.Array, shardings: PyTree) -> PyTree:
    """``jax.ShapeDtypeStruct`` tree of the unboxed state carrying the target shardings (for restore)."""
    abstract = jax.eval_shape(lambda key: nn.unbox(init_fn(key)), rng)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def host_local_to_global(batch: PyTree, sharding: NamedSharding) -> PyTree:
    """Turns this process's numpy batch into global ``jax.Array``s split over the batch axes."""
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
