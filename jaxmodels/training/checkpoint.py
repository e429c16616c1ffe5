"""Orbax checkpoints: async, keep N, the run's config saved as JSON beside the state.

Layout of ``<workdir>/checkpoints/<step>/``:
  state/   the whole train state (parameters, optimiser state, step, rng, ...), sharded arrays
  config/  the ``ConfigDict`` as JSON, so ``jaxmodels.load`` can rebuild the model
  data/    the data iterator's state as JSON (grain's ``get_state()``), when the iterator has one,
           so a resumed run sees the same batches as an uninterrupted one. The state is taken at
           the moment ``save`` is called, so an async save never captures a later position.

Orbax writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a half-written checkpoint that ``latest_step`` would return.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import orbax.checkpoint as ocp

CHECKPOINT_SUBDIR = "checkpoints"


def absolute_path(path: str | os.PathLike) -> str:
    """Orbax needs absolute paths: resolves local ones, leaves URLs (``gs://...``) as they are."""
    path = os.fspath(path)
    return path if "://" in path else os.path.abspath(path)


def config_to_json_dict(config) -> dict:
    """A JSON-safe dict of a ``ConfigDict`` (tuples become lists)."""
    to_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return json.loads(json.dumps(to_dict, default=str))


def iterator_is_checkpointable(data_iter) -> bool:
    return data_iter is not None and hasattr(data_iter, "get_state") and hasattr(data_iter, "set_state")


class Checkpoints:
    """A thin wrapper over ``ocp.CheckpointManager`` for the ``state``/``config``/``data`` items."""

    def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 3, async_save: bool = True,
                 read_only: bool = False):
        self.directory = os.path.join(absolute_path(workdir), CHECKPOINT_SUBDIR)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
            enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
        handlers = {"state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler(),
                    "data": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, config, data_state: Mapping | None = None, *,
             force: bool = False) -> bool:
        """Starts an (async) save of ``state`` + config (+ the data iterator's state, a JSON dict).

        Returns whether it saved.
        """
        items = {"state": ocp.args.StandardSave(state),
                 "config": ocp.args.JsonSave(config_to_json_dict(config))}
        if data_state is not None:
            items["data"] = ocp.args.JsonSave(data_state)
        return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, step: int, abstract_state: Any, data_iter=None) -> Any:
        """Restores ``state`` onto the shardings carried by ``abstract_state`` (and the iterator in place)."""
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        restore_data = iterator_is_checkpointable(data_iter) and "data" in self._item_names(step)
        if restore_data:
            items["data"] = ocp.args.JsonRestore()
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        if restore_data:
            data_iter.set_state(restored["data"])
        return restored["state"]

    def _item_names(self, step: int) -> set[str]:
        return set(os.listdir(os.path.join(self.directory, str(step))))

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def reached_preemption(self, step: int) -> bool:
        """True on every process once the (multi-host) preemption notice has reached ``step``."""
        return self._manager.reached_preemption(step)

    def close(self) -> None:
        self._manager.close()
