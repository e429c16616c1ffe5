"""Host-side graph batching to static padding budgets (numpy), so one compiled step serves all batches.

A dataset is a list of single-graph ``jraph.GraphsTuple``s of numpy arrays (``n_node=[n]``,
``n_edge=[e]``; ``nodes``/``edges``/``globals`` may be arrays or dicts of arrays). A batch is those
graphs concatenated (senders/receivers offset) and padded with jraph's convention: one padding graph
holding all padding nodes and edges (padding edges point at the first padding node), then empty
graphs. ``ops.node_mask``/``edge_mask``/``graph_mask`` recover the real parts under jit.

For data parallelism a batch is split into ``num_shards`` sub-batches padded to the same budget and
stacked on a new leading axis; the train step ``vmap``s the model over it, and the loop shards that
axis over the mesh's batch axes, so each device runs message passing on its own graphs.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Iterator, Sequence

import jax
import jraph
import numpy as np


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
        for shard in split_into_shards(list(batch), num_shards):
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


def split_into_shards(graphs: Sequence, num_shards: int) -> list[list]:
    """Contiguous, near-equal parts (the first parts one longer when it does not divide)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    bounds = np.ceil(np.arange(num_shards + 1) * len(graphs) / num_shards).astype(int)
    return [list(graphs[bounds[i]:bounds[i + 1]]) for i in range(num_shards)]


def stack_shards(shards: Sequence[jraph.GraphsTuple]) -> jraph.GraphsTuple:
    """Stacks equally padded graphs on a new leading (shard) axis."""
    return jax.tree.map(lambda *leaves: np.stack(leaves), *shards)


def make_batch(graphs: Sequence[jraph.GraphsTuple], budget: PaddingBudget, num_shards: int = 1) -> jraph.GraphsTuple:
    """``graphs`` -> one padded batch with a leading shard axis of size ``num_shards``."""
    return stack_shards([pad_graphs(batch_graphs(part), budget) if part else _empty_like(graphs[0], budget)
                         for part in split_into_shards(graphs, num_shards)])


def _empty_like(example: jraph.GraphsTuple, budget: PaddingBudget) -> jraph.GraphsTuple:
    empty = jax.tree.map(lambda x: np.asarray(x)[:0], example)
    empty = empty._replace(n_node=np.zeros(0, np.int32), n_edge=np.zeros(0, np.int32))
    return pad_graphs(empty, budget)


def unpad_predictions(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Drops padding rows (``mask`` from ops.node_mask/graph_mask), flattening any shard axis."""
    values, mask = np.asarray(values), np.asarray(mask, bool)
    return values.reshape((-1,) + values.shape[mask.ndim:])[mask.reshape(-1)]


class FixedBatches:
    """Cycles over fixed, pre-padded batches (in order, or reshuffled each epoch), checkpointably.

    ``get_state``/``set_state`` give the loop the position (epoch, index) to save and restore.
    """

    def __init__(self, batches: Sequence[jraph.GraphsTuple], *, shuffle: bool = False, seed: int = 0):
        if not batches:
            raise ValueError("FixedBatches: no batches")
        self._batches = list(batches)
        self._shuffle, self._seed = shuffle, seed
        self._epoch, self._index = 0, 0

    def _order(self) -> np.ndarray:
        if not self._shuffle:
            return np.arange(len(self._batches))
        return np.random.default_rng([self._seed, self._epoch]).permutation(len(self._batches))

    def __iter__(self) -> Iterator[jraph.GraphsTuple]:
        return self

    def __next__(self) -> jraph.GraphsTuple:
        batch = self._batches[self._order()[self._index]]
        self._index += 1
        if self._index == len(self._batches):
            self._epoch, self._index = self._epoch + 1, 0
        return batch

    def get_state(self) -> dict:
        return {"epoch": self._epoch, "index": self._index}

    def set_state(self, state: dict) -> None:
        self._epoch, self._index = int(state["epoch"]), int(state["index"])


class GraphBatchIterator:
    """Endless padded batches of ``batch_size`` graphs from a dataset, reshuffled every epoch
    (seeded by ``(seed, epoch)``), dropping the last partial batch; checkpointable like grain's
    iterators (``get_state``/``set_state`` = epoch and position)."""

    def __init__(self, graphs: Sequence[jraph.GraphsTuple], batch_size: int, budget: PaddingBudget, *,
                 num_shards: int = 1, shuffle: bool = True, seed: int = 0):
        if len(graphs) < batch_size:
            raise ValueError(f"GraphBatchIterator: {len(graphs)} graphs cannot fill one batch of {batch_size}")
        self._graphs, self._batch_size, self._budget = list(graphs), batch_size, budget
        self._num_shards, self._shuffle, self._seed = num_shards, shuffle, seed
        self._epoch, self._index = 0, 0
        self.batches_per_epoch = len(self._graphs) // batch_size

    def _order(self) -> np.ndarray:
        if not self._shuffle:
            return np.arange(len(self._graphs))
        return np.random.default_rng([self._seed, self._epoch]).permutation(len(self._graphs))

    def __iter__(self):
        return self

    def __next__(self) -> jraph.GraphsTuple:
        order = self._order()
        chosen = order[self._index * self._batch_size:(self._index + 1) * self._batch_size]
        self._index += 1
        if self._index == self.batches_per_epoch:
            self._epoch, self._index = self._epoch + 1, 0
        return make_batch([self._graphs[i] for i in chosen], self._budget, self._num_shards)

    def get_state(self) -> dict:
        return {"epoch": self._epoch, "index": self._index}

    def set_state(self, state: dict) -> None:
        self._epoch, self._index = int(state["epoch"]), int(state["index"])


def eval_batches(graphs: Sequence[jraph.GraphsTuple], batch_size: int, budget: PaddingBudget,
                 num_shards: int = 1) -> list[jraph.GraphsTuple]:
    """All graphs in order, in padded batches (the last one partly empty; padding is masked)."""
    return [make_batch(graphs[i:i + batch_size], budget, num_shards) for i in range(0, len(graphs), batch_size)]
