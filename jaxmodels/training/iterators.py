"""A checkpointable, seeded batch iterator that reads only this process's slice of each global batch.

Every step takes the next *global* batch from an endless stream of epochs. Epoch ``e`` orders the
units -- single examples, or fixed batches of examples -- by
``np.random.default_rng([seed, e]).permutation(num_units)`` (``0 .. num_units - 1`` unshuffled). A
global batch is the next ``batch_size`` units: completed from the next epoch when an epoch ends
mid-batch, or, with ``drop_remainder``, never crossing an epoch (the epoch's last partial batch is
dropped). Its example indices are split into ``num_shards`` contiguous shards whose sizes differ by at
most one (boundaries ``ceil(k * n / num_shards)``), and process ``p`` of ``P`` reads only the shards
``p * S / P .. (p + 1) * S / P - 1``: the rows ``jax.make_array_from_process_local_data`` places on
its devices when the mesh's batch axes list the devices by process, as ``jax.make_mesh`` does. The
global order does not depend on ``P``, so the processes' slices together are exactly the batch one
process reads with the same seed.

The state (``get_state``/``set_state``) is the JSON dict ``{"epoch", "position"}``, ``position``
being the units of that epoch already consumed. It is the same on every process and independent of
``P``, so a run may resume on another number of processes. ``{"epoch", "index"}`` states (``index``
= batches consumed), written by the graph iterators this one replaced, are read too.

numpy only: jax is imported just to ask for the process index and count when they are not given.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def shard_bounds(length: int, num_shards: int) -> np.ndarray:
    """Boundaries [num_shards + 1] of contiguous parts of ``length`` items: ``ceil(k * length / num_shards)``,
    so part sizes differ by at most one."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return np.ceil(np.arange(num_shards + 1) * length / num_shards).astype(int)


def split_evenly(items: Sequence, num_shards: int) -> list:
    """``items`` cut into ``num_shards`` contiguous slices whose sizes differ by at most one (:func:`shard_bounds`)."""
    bounds = shard_bounds(len(items), num_shards)
    return [items[bounds[i]:bounds[i + 1]] for i in range(num_shards)]


def resolve_process(process_index: int | None = None, process_count: int | None = None) -> tuple[int, int]:
    """``(process_index, process_count)``, each defaulting to JAX's."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count})")
    return int(process_index), int(process_count)


def process_shards(items: Sequence, num_shards: int, process_index: int, process_count: int) -> list:
    """This process's shards of a global batch ``items``: shards ``p * S / P .. (p + 1) * S / P - 1``."""
    if num_shards % process_count:
        raise ValueError(f"num_shards={num_shards} does not divide among process_count={process_count} processes")
    per_process = num_shards // process_count
    return split_evenly(items, num_shards)[process_index * per_process:(process_index + 1) * per_process]


class ProcessSlicedBatches:
    """Endless global batches in a seeded per-epoch order; this process reads only its shards (module docstring).

    Args:
      examples: the number of examples (a unit is one example), or fixed batches, each a sequence of
        example indices (a unit is one fixed batch; the order then permutes whole fixed batches).
      batch_size: units per global batch.
      shuffle: permute the units every epoch (seeded by ``(seed, epoch)``); otherwise keep their order.
      drop_remainder: never let a batch cross an epoch; otherwise complete it from the next epoch.
      num_shards: shards per global batch (a multiple of the process count); the process count by default.
      process_index, process_count: this process and how many there are (JAX's by default).

    ``next(iterator)`` is ``read(next_shards())``; subclasses override :meth:`read` to turn this
    process's shards of example indices into a batch. The base class yields the shards themselves.
    """

    def __init__(self, examples: int | Sequence[Sequence[int]], batch_size: int = 1, *, shuffle: bool = True,
                 seed: int = 0, drop_remainder: bool = False, num_shards: int | None = None,
                 process_index: int | None = None, process_count: int | None = None):
        fixed = not isinstance(examples, (int, np.integer))
        self._fixed_batches = [np.asarray(b, np.int64) for b in examples] if fixed else None
        self.num_units = len(self._fixed_batches) if fixed else int(examples)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_remainder = bool(drop_remainder)
        self.process_index, self.process_count = resolve_process(process_index, process_count)
        self.num_shards = self.process_count if num_shards is None else int(num_shards)
        self._check_sizes()
        self.epoch, self.position = 0, 0
        self._cached_order: tuple[int, np.ndarray] | None = None

    def _check_sizes(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.num_units < 1:
            raise ValueError("cannot iterate over an empty dataset")
        if self.drop_remainder and self.num_units < self.batch_size:
            raise ValueError(f"{self.num_units} units cannot fill one batch of {self.batch_size}")
        if self.num_shards < 1 or self.num_shards % self.process_count:
            raise ValueError(f"num_shards={self.num_shards} must be a positive multiple of the "
                             f"{self.process_count} processes")

    def order(self, epoch: int) -> np.ndarray:
        """The units of ``epoch`` in reading order: [num_units] int64."""
        if self._cached_order is None or self._cached_order[0] != epoch:
            order = (np.random.default_rng([self.seed, epoch]).permutation(self.num_units) if self.shuffle
                     else np.arange(self.num_units))
            self._cached_order = (epoch, order)
        return self._cached_order[1]

    def _next_units(self) -> np.ndarray:
        """The next global batch's units (advances the state): ``batch_size`` of the epoch's order,
        completed from the next epoch unless ``drop_remainder`` (which skips an epoch's short tail)."""
        parts, need = [], self.batch_size
        while need:
            taken = self.order(self.epoch)[self.position:self.position + need]
            parts.append(taken)
            need -= taken.shape[0]
            self.position += taken.shape[0]
            epoch_done = self.position == self.num_units or (
                self.drop_remainder and self.position + self.batch_size > self.num_units)
            if epoch_done:
                self.epoch, self.position = self.epoch + 1, 0
        return np.concatenate(parts)

    def next_global_indices(self) -> np.ndarray:
        """Example indices of the next global batch, all processes' (advances the state)."""
        units = self._next_units()
        if self._fixed_batches is None:
            return units
        return np.concatenate([self._fixed_batches[u] for u in units])

    def next_shards(self) -> list[np.ndarray]:
        """This process's shards of the next global batch, each an index array (advances the state)."""
        return process_shards(self.next_global_indices(), self.num_shards, self.process_index, self.process_count)

    def read(self, shards: list[np.ndarray]) -> Any:
        """This process's batch from its shards of example indices (here: the shards themselves)."""
        return shards

    def __iter__(self) -> ProcessSlicedBatches:
        return self

    def __next__(self) -> Any:
        return self.read(self.next_shards())

    def get_state(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "position": int(self.position)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Resumes at ``state`` (``{"epoch", "position"}``, or the older ``{"epoch", "index"}``)."""
        epoch = int(state["epoch"])
        position = int(state["position"]) if "position" in state else int(state["index"]) * self.batch_size
        last = self.num_units - (self.batch_size if self.drop_remainder else 1)
        if epoch < 0 or not 0 <= position <= last:
            raise ValueError(f"invalid iterator state {dict(state)} for {self.num_units} units in batches of "
                             f"{self.batch_size}")
        self.epoch, self.position = epoch, position
