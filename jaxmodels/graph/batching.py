"""Host-side graph batching to static padding budgets (numpy), so one compiled step serves all batches.

A dataset is a list of single-graph ``jraph.GraphsTuple``s of numpy arrays (``n_node=[n]``,
``n_edge=[e]``; ``nodes``/``edges``/``globals`` may be arrays or dicts of arrays). A batch is those
graphs concatenated (senders/receivers offset) and padded with jraph's convention: one padding graph
holding all padding nodes and edges (padding edges point at the first padding node), then empty
graphs. ``ops.node_mask``/``edge_mask``/``graph_mask`` recover the real parts under jit.

Data parallelism: a global batch is split into ``num_shards`` sub-batches (one per device on the
mesh's batch axes, ``training.mesh.num_batch_devices``), each padded to the same budget, stacked on a
leading shard axis. Each process builds only its own shards (``training.iterators``), the loop turns
them into one global array sharded over the batch axes, and the step ``vmap``s the model over that
axis (``SHARD_AXIS``, the name batch norm syncs over): XLA partitions the vmap, so each device runs
message passing on its own graphs, and the result equals one process holding every shard.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import jax
import jraph
import numpy as np

from jaxmodels.training.iterators import ProcessSlicedBatches, process_shards, resolve_process, split_evenly

SHARD_AXIS = "shards"


@dataclasses.dataclass(frozen=True)
class PaddingBudget:
    """Static sizes of one padded (sub-)batch. ``n_node``/``n_graph`` include >= 1 padding slot."""

    n_node: int
    n_edge: int
    n_graph: int

    def fits(self, nodes: int, edges: int, graphs: int) -> bool:
        return nodes < self.n_node and edges <= self.n_edge and graphs < self.n_graph


def _round_up(value: int, round_to: str | int) -> int:
    if round_to == "pow2":
        return 1 << max(0, math.ceil(math.log2(max(value, 1))))
    if round_to in (None, 0, 1, "none"):
        return int(value)
    multiple = int(round_to)
    return multiple * math.ceil(value / multiple)


def estimate_budget(graphs: Sequence[jraph.GraphsTuple], graphs_per_batch: int, *,
                    round_to: str | int = 64) -> PaddingBudget:
    """A budget any ``graphs_per_batch`` graphs of ``graphs`` fit in (worst case over the dataset).

    Nodes (edges) = the sum of the ``graphs_per_batch`` largest node (edge) counts, + 1 padding
    node; graphs = ``graphs_per_batch + 1``; nodes and edges rounded up (``"pow2"`` or a multiple).
    """
    if not graphs:
        raise ValueError("estimate_budget: the dataset is empty")
    nodes = np.sort(np.array([int(np.sum(g.n_node)) for g in graphs]))[::-1]
    edges = np.sort(np.array([int(np.sum(g.n_edge)) for g in graphs]))[::-1]
    k = min(graphs_per_batch, len(graphs))
    return PaddingBudget(n_node=_round_up(int(nodes[:k].sum()) + 1, round_to),
                         n_edge=_round_up(max(int(edges[:k].sum()), 1), round_to),
                         n_graph=graphs_per_batch + 1)


def budget_for_batches(batches: Iterable[Sequence[jraph.GraphsTuple]], num_shards: int = 1, *,
                       round_to: str | int = 64) -> PaddingBudget:
    """The smallest budget (rounded) that fits every shard of every one of these fixed batches."""
    max_nodes = max_edges = max_graphs = 0
    for batch in batches:
        for shard in split_evenly(list(batch), num_shards):
            max_nodes = max(max_nodes, sum(int(np.sum(g.n_node)) for g in shard))
            max_edges = max(max_edges, sum(int(np.sum(g.n_edge)) for g in shard))
            max_graphs = max(max_graphs, len(shard))
    return PaddingBudget(n_node=_round_up(max_nodes + 1, round_to), n_edge=_round_up(max(max_edges, 1), round_to),
                         n_graph=max_graphs + 1)


def graph_from_dense(adjacency: np.ndarray, nodes, globals_=None, edges=None) -> jraph.GraphsTuple:
    """One graph from a dense [N, N] adjacency (edge j -> i for every nonzero A[i, j])."""
    adjacency = np.asarray(adjacency)
    receivers, senders = np.nonzero(adjacency)
    n = adjacency.shape[0]
    return jraph.GraphsTuple(nodes=nodes, edges=edges, senders=senders.astype(np.int32),
                             receivers=receivers.astype(np.int32), globals=globals_,
                             n_node=np.array([n], np.int32), n_edge=np.array([len(senders)], np.int32))


def _concat(leaves: list) -> np.ndarray:
    return np.concatenate([np.asarray(x) for x in leaves], axis=0)


def batch_graphs(graphs: Sequence[jraph.GraphsTuple]) -> jraph.GraphsTuple:
    """Concatenates graphs into one ``GraphsTuple`` (numpy), offsetting senders and receivers."""
    if not graphs:
        raise ValueError("batch_graphs: no graphs given")
    n_node = np.concatenate([np.asarray(g.n_node, np.int32) for g in graphs])
    n_edge = np.concatenate([np.asarray(g.n_edge, np.int32) for g in graphs])
    node_offsets = np.concatenate([[0], np.cumsum([int(np.sum(g.n_node)) for g in graphs])[:-1]])
    senders = np.concatenate([np.asarray(g.senders, np.int32) + off for g, off in zip(graphs, node_offsets)])
    receivers = np.concatenate([np.asarray(g.receivers, np.int32) + off for g, off in zip(graphs, node_offsets)])

    def field(name):
        values = [getattr(g, name) for g in graphs]
        if values[0] is None:
            return None
        return jax.tree.map(lambda *leaves: _concat(list(leaves)), *values)

    return jraph.GraphsTuple(nodes=field("nodes"), edges=field("edges"), globals=field("globals"),
                             senders=senders.astype(np.int32), receivers=receivers.astype(np.int32),
                             n_node=n_node, n_edge=n_edge)


def pad_graphs(graph: jraph.GraphsTuple, budget: PaddingBudget) -> jraph.GraphsTuple:
    """Pads a batched graph to ``budget`` (jraph's convention), with an error naming what overflowed."""
    nodes, edges, graphs = int(np.sum(graph.n_node)), int(np.sum(graph.n_edge)), int(len(graph.n_node))
    if not budget.fits(nodes, edges, graphs):
        raise ValueError(
            f"Batch does not fit the padding budget {budget}: it has {nodes} nodes (needs < n_node), "
            f"{edges} edges (needs <= n_edge) and {graphs} graphs (needs < n_graph); "
            "raise the budget (see graph.batching.estimate_budget)")
    pad_nodes, pad_edges, pad_graphs_ = budget.n_node - nodes, budget.n_edge - edges, budget.n_graph - graphs

    def pad(leaf, count):
        leaf = np.asarray(leaf)
        return np.concatenate([leaf, np.zeros((count,) + leaf.shape[1:], leaf.dtype)], axis=0)

    padding_node = np.int32(nodes)
    return jraph.GraphsTuple(
        nodes=jax.tree.map(lambda x: pad(x, pad_nodes), graph.nodes),
        edges=jax.tree.map(lambda x: pad(x, pad_edges), graph.edges),
        globals=jax.tree.map(lambda x: pad(x, pad_graphs_), graph.globals),
        senders=np.concatenate([graph.senders, np.full(pad_edges, padding_node, np.int32)]),
        receivers=np.concatenate([graph.receivers, np.full(pad_edges, padding_node, np.int32)]),
        n_node=np.concatenate([graph.n_node, [pad_nodes], np.zeros(pad_graphs_ - 1, np.int32)]).astype(np.int32),
        n_edge=np.concatenate([graph.n_edge, [pad_edges], np.zeros(pad_graphs_ - 1, np.int32)]).astype(np.int32),
    )


def _empty_like(example: jraph.GraphsTuple, budget: PaddingBudget) -> jraph.GraphsTuple:
    empty = jax.tree.map(lambda x: np.asarray(x)[:0], example)
    empty = empty._replace(n_node=np.zeros(0, np.int32), n_edge=np.zeros(0, np.int32))
    return pad_graphs(empty, budget)


def pad_and_stack(shards: Sequence[Sequence[jraph.GraphsTuple]], budget: PaddingBudget,
                  example: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Each shard's graphs batched and padded to ``budget`` (an empty shard is all padding, shaped as
    ``example``), stacked on a new leading shard axis: every leaf [shards, ...]."""
    return jax.tree.map(lambda *leaves: np.stack(leaves),
                        *[pad_graphs(batch_graphs(shard), budget) if len(shard) else _empty_like(example, budget)
                          for shard in shards])


def make_batch(graphs: Sequence[jraph.GraphsTuple], budget: PaddingBudget, num_shards: int = 1) -> jraph.GraphsTuple:
    """``graphs`` -> one padded batch with a leading shard axis of size ``num_shards`` (all the shards)."""
    return pad_and_stack(split_evenly(list(graphs), num_shards), budget, graphs[0])


def local_batches(batches: Sequence[Sequence[jraph.GraphsTuple]], budget: PaddingBudget, num_shards: int = 1, *,
                  process_index: int | None = None, process_count: int | None = None) -> list[jraph.GraphsTuple]:
    """This process's shards of each of these global batches (lists of graphs), padded and stacked.

    Every process gets as many batches, each with ``num_shards / process_count`` shards; on one process
    a batch is ``make_batch(batch, budget, num_shards)``.
    """
    index, count = resolve_process(process_index, process_count)
    return [pad_and_stack(process_shards(list(batch), num_shards, index, count), budget, batch[0]) for batch in batches]


def eval_batches(graphs: Sequence[jraph.GraphsTuple], batch_size: int, budget: PaddingBudget, num_shards: int = 1,
                 **process) -> list[jraph.GraphsTuple]:
    """All graphs in order, in global batches of ``batch_size`` (the last one partly empty; padding is
    masked), of which this process holds its shards (:func:`local_batches`)."""
    chunks = [graphs[i:i + batch_size] for i in range(0, len(graphs), batch_size)]
    return local_batches(chunks, budget, num_shards, **process)


class _PaddedGraphBatches(ProcessSlicedBatches):
    """A :class:`ProcessSlicedBatches` over graphs whose batches are this process's padded, stacked shards."""

    def __init__(self, graphs: Sequence[jraph.GraphsTuple], budget: PaddingBudget, examples, batch_size: int,
                 **options):
        super().__init__(examples, batch_size, **options)
        self._graphs, self._budget = list(graphs), budget

    def read(self, shards: list[np.ndarray]) -> jraph.GraphsTuple:
        """[local shards, ...] leaves: each shard's graphs padded to the budget."""
        return pad_and_stack([[self._graphs[i] for i in shard] for shard in shards], self._budget, self._graphs[0])


class FixedBatches(_PaddedGraphBatches):
    """Cycles over fixed batches of graphs (in order, or reshuffled each epoch by ``(seed, epoch)``).

    Each step is one fixed batch split into ``num_shards`` shards over the processes (the global shard
    count: the mesh's batch devices); this process pads and keeps only its shards, once per fixed batch.
    Checkpointable: ``get_state``/``set_state`` = ``{"epoch", "position"}``, position = fixed batches
    of the epoch consumed (``{"epoch", "index"}`` from older checkpoints means the same).
    """

    def __init__(self, batches: Sequence[Sequence[jraph.GraphsTuple]], budget: PaddingBudget, *, num_shards: int = 1,
                 shuffle: bool = False, seed: int = 0, process_index: int | None = None,
                 process_count: int | None = None):
        if not batches:
            raise ValueError("FixedBatches: no batches")
        offsets = np.cumsum([0] + [len(batch) for batch in batches])
        super().__init__([g for batch in batches for g in batch], budget,
                         [np.arange(offsets[i], offsets[i + 1]) for i in range(len(batches))], 1,
                         shuffle=shuffle, seed=seed, num_shards=num_shards, process_index=process_index,
                         process_count=process_count)
        self._padded: dict[tuple, jraph.GraphsTuple] = {}

    def read(self, shards: list[np.ndarray]) -> jraph.GraphsTuple:
        key = tuple(tuple(shard.tolist()) for shard in shards)
        if key not in self._padded:
            self._padded[key] = super().read(shards)
        return self._padded[key]


class GraphBatchIterator(_PaddedGraphBatches):
    """Endless global batches of ``batch_size`` graphs, reshuffled every epoch (seeded by ``(seed,
    epoch)``), the last partial batch dropped; each split into ``num_shards`` shards over the processes,
    of which this process pads only its own. Checkpointable (``{"epoch", "position"}``, position =
    graphs of the epoch consumed; ``{"epoch", "index"}`` from older checkpoints = batches consumed)."""

    def __init__(self, graphs: Sequence[jraph.GraphsTuple], batch_size: int, budget: PaddingBudget, *,
                 num_shards: int = 1, shuffle: bool = True, seed: int = 0, process_index: int | None = None,
                 process_count: int | None = None):
        if len(graphs) < batch_size:
            raise ValueError(f"GraphBatchIterator: {len(graphs)} graphs cannot fill one batch of {batch_size}")
        super().__init__(graphs, budget, len(graphs), batch_size, shuffle=shuffle, seed=seed, drop_remainder=True,
                         num_shards=num_shards, process_index=process_index, process_count=process_count)
