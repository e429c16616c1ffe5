"""grain input pipelines: an infinite, reshuffled, checkpointable training stream and a
one-pass, padded, masked evaluation pass, each feeding this process's share of a global batch.

Training order: ``source -> shuffle -> repeat -> random_map(preprocess) -> [p::P] -> batch``.
The shuffle and the per-example random numbers are keyed by the position in the *global*
stream, and process ``p`` of ``P`` reads positions ``p, p + P, ...``; so at every step the
processes' batches together hold exactly the global batch a single process would see with the
same seed, whatever ``P`` is. Grain's ``repeat`` re-seeds the shuffle each epoch (the epoch is
folded into the shuffle seed), so every epoch has a new order.

Batches are dicts of stacked numpy arrays, ready for ``jax.make_array_from_process_local_data``.
Reading is in-process by default (``num_threads=0``): deterministic and light on CPU.
"""
from __future__ import annotations

from typing import Callable

import grain
import jax
import numpy as np

IN_PROCESS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def _process_share(global_batch_size: int, process_index: int | None,
                   process_count: int | None) -> tuple[int, int, int]:
    """(process_index, process_count, per-process batch size), defaulting to JAX's process."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % process_count:
        raise ValueError(f"global_batch_size={global_batch_size} is not divisible by "
                         f"process_count={process_count}.")
    return process_index, process_count, global_batch_size // process_count


def make_train_iterator(source, *, preprocess: Callable, global_batch_size: int, seed: int,
                        process_index: int | None = None, process_count: int | None = None,
                        read_options: grain.ReadOptions = IN_PROCESS) -> grain.DatasetIterator:
    """Infinite training batches for this process, ``global_batch_size // process_count`` each.

    ``preprocess(record, rng)`` gets a ``np.random.Generator`` seeded from ``seed`` and the
    example's position in the stream. Deterministic given ``seed``; ``it.get_state()`` /
    ``it.set_state(state)`` (or ``grain.checkpoint.CheckpointSave/Restore`` under Orbax) resume
    the exact same batches.
    """
    process_index, process_count, local_batch = _process_share(
        global_batch_size, process_index, process_count)
    if global_batch_size > len(source):
        raise ValueError(f"global_batch_size={global_batch_size} is larger than the dataset "
                         f"({len(source)} examples).")
    stream = grain.MapDataset.source(source).seed(seed).shuffle().repeat().random_map(preprocess)
    local = stream[process_index::process_count]
    batches = local.to_iter_dataset(read_options).batch(local_batch, drop_remainder=True)
    return iter(batches)


def _with_mask(preprocess: Callable, real: bool) -> Callable[[dict], dict]:
    """Deterministic ``preprocess`` plus a ``"mask"`` (True for real examples, False for padding)."""
    return lambda record: {**preprocess(record, None), "mask": np.bool_(real)}


def make_eval_iterator(source, *, preprocess: Callable, global_batch_size: int,
                       process_index: int | None = None, process_count: int | None = None,
                       read_options: grain.ReadOptions = IN_PROCESS) -> grain.DatasetIterator:
    """One pass over ``source``: every example exactly once across processes, in order.

    Process ``p`` of ``P`` reads examples ``p, p + P, ...``. Each process yields the same number
    of batches, each of ``global_batch_size // P`` examples: the tail is padded with copies of
    example 0 whose ``"mask"`` is False, so one compiled eval step serves every batch and the
    processes stay in lock-step. Sum metrics weighted by ``"mask"``.
    """
    process_index, process_count, local_batch = _process_share(
        global_batch_size, process_index, process_count)
    largest_share = -(-len(source) // process_count)
    padded_length = -(-largest_share // local_batch) * local_batch
    dataset = grain.MapDataset.source(source)
    real = dataset[process_index::process_count].map(_with_mask(preprocess, True))
    parts = [real]
    if padded_length > len(real):
        parts.append(dataset[:1].repeat(padded_length - len(real)).map(_with_mask(preprocess, False)))
    padded = grain.MapDataset.concatenate(parts)
    return iter(padded.to_iter_dataset(read_options).batch(local_batch, drop_remainder=True))
