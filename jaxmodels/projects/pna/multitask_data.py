"""The PNA multitask graph benchmark, generated as the official code generates it.

Corso, Cavalleri, Beaini, Liò, Veličković, "Principal Neighbourhood Aggregation for Graph Nets",
NeurIPS 2020 (arXiv:2004.05718), section 4 / appendix. Official code: github.com/lukecavabarrett/pna,
folder ``multitask_benchmark``:

* ``datasets_generation/graph_generation.py``: ``GraphType``, ``MIXTURE``, the ten generators,
  ``randomize`` and ``generate_graph``; reproduced here call for call.
* ``datasets_generation/multitask_dataset.py``: ``DatasetMultitask`` (split sizes, the seed counter,
  regeneration of graphs with an isolated node, the sssp source, the [one-hot source, value]
  features) and its ``__main__`` (default tasks, the split dictionary, ``--extrapolation``).
* ``datasets_generation/graph_algorithms.py``: the labels (``all_pairs_shortest_paths``,
  ``eccentricity``, ``graph_laplacian_features``, ``is_connected``, ``diameter``,
  ``spectral_radius``).
* ``util/util.py``: ``load_dataset`` (labels divided by their training maximum; the mean-predictor
  baseline) and ``specific_loss_multiple_batches`` (per-task MSE, batches weighted equally);
  ``util/train.py``: ``avg_d`` (the PNA degree-scaler delta).

Randomness. The official script seeds the *global* ``random`` and ``numpy.random`` with
``seed`` at the start of every ``generate_graph`` call, and draws the sssp source with the global
numpy state right after the call. Here every call owns a ``random.Random(seed)`` and one
``np.random.RandomState`` that is re-seeded with ``seed`` (``rs.seed(seed)``, also inside
``caterpillar``/``lobster`` exactly where the official code calls ``np.random.seed(seed)``); the
source is then drawn from that same ``RandomState``. networkx generators get the int ``seed``
as in the official code. So the random-number call sequence is the official one, and with the
same networkx version the graphs, values, sources and labels are those of the official script
(``python -m multitask_benchmark.datasets_generation.multitask_dataset --seed 1234``), stored
as float32 like the official ``.pkl``.

Shortest paths are computed with ``scipy.sparse.csgraph`` (unweighted, i.e. breadth-first
distances) instead of the official O(N^3) Python Floyd–Warshall; for 0/1 adjacency matrices the
results are equal.

``is_connected`` quirk. The official ``graph_algorithms.is_connected`` squares the adjacency
matrix ``1 + ceil(log2 N)`` times (computing ``A^(2^k)``) and returns ``min(A^(2^k)) > 0``.
There is no self-loop, so for a connected *bipartite* graph (every tree, line, star,
caterpillar, lobster, grid, ladder... that survived randomisation without gaining an odd cycle)
the entries between nodes of the same side (even powers) stay 0 and the label is **False**
although the graph is connected; for large N the powers also overflow float64 to inf/nan
(``min`` of a matrix holding nan is nan and ``nan > 0`` is False). ``connectivity="official"``
(the default) reproduces these labels exactly, computed the same way in float64 with numpy
floating-point warnings suppressed. ``connectivity="exact"`` gives true connectivity
(one connected component, by ``scipy.sparse.csgraph``).
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import random
import time
from typing import Mapping

import networkx as nx
import numpy as np
import threadpoolctl
from absl import logging
from scipy.sparse import csgraph

from jaxmodels.training.files import atomic_save_npz

FORMAT_VERSION = 1
DEFAULT_SEED = 1234

NODE_TASKS = ("sssp", "eccentricity", "laplacian_features")
GRAPH_TASKS = ("is_connected", "diameter", "spectral_radius")
TASKS = NODE_TASKS + GRAPH_TASKS
CONNECTIVITY_MODES = ("official", "exact")


class GraphType(enum.IntEnum):
    """``graph_generation.GraphType`` (same values; 4 is unused there too)."""
    RANDOM = 0
    ERDOS_RENYI = 1
    BARABASI_ALBERT = 2
    GRID = 3
    CAVEMAN = 5
    TREE = 6
    LADDER = 7
    LINE = 8
    STAR = 9
    CATERPILLAR = 10
    LOBSTER = 11


# graph_generation.MIXTURE: probabilities of each type when the type is RANDOM (in this order).
MIXTURE = ((GraphType.ERDOS_RENYI, 0.2), (GraphType.BARABASI_ALBERT, 0.2), (GraphType.GRID, 0.05),
           (GraphType.CAVEMAN, 0.05), (GraphType.TREE, 0.15), (GraphType.LADDER, 0.05),
           (GraphType.LINE, 0.05), (GraphType.STAR, 0.05), (GraphType.CATERPILLAR, 0.1),
           (GraphType.LOBSTER, 0.1))

BASE_P = 0.9  # graph_generation.randomize


# ---------------------------------------------------------------------------------------------
# Graph generators (graph_generation.py)
# ---------------------------------------------------------------------------------------------

def erdos_renyi(N: int, degree: float, seed: int) -> nx.Graph:
    """``erdos_renyi``: G(N, p) with p = degree / N."""
    return nx.fast_gnp_random_graph(N, degree / N, seed, directed=False)


def barabasi_albert(N: int, degree: int, seed: int) -> nx.Graph:
    """``barabasi_albert``: preferential attachment, each new node attached with ``degree`` edges."""
    return nx.barabasi_albert_graph(N, degree, seed)


def _closest_factor(N: int) -> int:
    m = 1
    for i in range(1, int(math.sqrt(N)) + 1):
        if N % i == 0:
            m = i
    return m


def grid(N: int) -> nx.Graph:
    """``grid``: an m x (N // m) 2-d grid with m the largest divisor of N not above sqrt(N)."""
    m = _closest_factor(N)
    return nx.grid_2d_graph(m, N // m)


def caveman(N: int) -> nx.Graph:
    """``caveman``: m disjoint cliques of size N // m (m as in ``grid``; N prime gives K_N)."""
    m = _closest_factor(N)
    return nx.caveman_graph(m, N // m)


def tree(N: int, seed: int) -> nx.Graph:
    """``tree``: ``nx.random_powerlaw_tree(N, seed=seed, tries=10000)`` (gamma = 3).

    May raise ``networkx.NetworkXError`` if no tree degree sequence is found, as in the official code.
    """
    return nx.random_powerlaw_tree(N, seed=seed, tries=10000)


def ladder(N: int) -> nx.Graph:
    """``ladder``: two rows of N // 2 nodes; for odd N one more node hangs off node 0."""
    G = nx.ladder_graph(N // 2)
    if N % 2 != 0:
        G.add_node(N - 1)
        G.add_edge(0, N - 1)
    return G


def line(N: int) -> nx.Graph:
    """``line``: the path on N nodes."""
    return nx.path_graph(N)


def star(N: int) -> nx.Graph:
    """``star``: one centre joined to N - 1 leaves."""
    return nx.star_graph(N - 1)


def caterpillar(N: int, seed: int, rs: np.random.RandomState) -> nx.Graph:
    """``caterpillar``: backbone of B ~ U{1..N-1} nodes, the others hung uniformly on it.

    Re-seeds ``rs`` with ``seed`` first, like the official ``np.random.seed(seed)``.
    """
    rs.seed(seed)
    B = rs.randint(low=1, high=N)
    G = nx.empty_graph(N)
    for i in range(1, B):
        G.add_edge(i - 1, i)
    for i in range(B, N):
        G.add_edge(i, rs.randint(B))
    return G


def lobster(N: int, seed: int, rs: np.random.RandomState) -> nx.Graph:
    """``lobster``: backbone of B nodes, nodes B..F-1 hung on the backbone, F..N-1 on those.

    Re-seeds ``rs`` with ``seed`` first, like the official ``np.random.seed(seed)``.
    """
    rs.seed(seed)
    B = rs.randint(low=1, high=N)
    F = rs.randint(low=B + 1, high=N + 1)
    G = nx.empty_graph(N)
    for i in range(1, B):
        G.add_edge(i - 1, i)
    for i in range(B, F):
        G.add_edge(i, rs.randint(B))
    for i in range(F, N):
        G.add_edge(i, rs.randint(low=B, high=F))
    return G


def randomize(A: np.ndarray, rs: np.random.RandomState) -> np.ndarray:
    """``randomize``: toggle edges keeping the expected edge count.

    An edge survives with probability ep and a non-edge appears with probability rp, where
    ep = 0.9, rp = 0.1 e / r if e <= r (e edges, r non-edges) and otherwise
    ep = 0.9 + 0.1 (e - r) / e, rp = 0.1. The decision matrix is symmetric (U + U^T, U ~ U[0, .5)).
    """
    N = A.shape[0]
    e = np.sum(A) / 2
    r = N * (N - 1) / 2 - e
    if e <= r:
        ep = BASE_P
        rp = (1 - BASE_P) * e / r
    else:
        ep = BASE_P + (1 - BASE_P) * (e - r) / e
        rp = 1 - BASE_P
    array = rs.uniform(size=(N, N), low=0.0, high=0.5)
    array = array + array.transpose()
    remaining = np.multiply(np.where(array < ep, 1, 0), A)
    appearing = np.multiply(np.multiply(np.where(array < rp, 1, 0), 1 - A), 1 - np.eye(N))
    return np.add(remaining, appearing)


def generate_graph(N: int, graph_type: GraphType = GraphType.RANDOM, seed: int = 0,
                   degree: float | None = None, *, rs: np.random.RandomState | None = None
                   ) -> tuple[np.ndarray, np.ndarray, GraphType]:
    """``graph_generation.generate_graph``: (adjacency [N, N] float64, node values [N], type).

    ``rs`` (optional) is the numpy state standing in for the official global one: it is re-seeded
    with ``seed`` here, and the caller may keep drawing from it afterwards (the sssp source).
    """
    py_rng = random.Random(seed)
    if rs is None:
        rs = np.random.RandomState(seed)
    else:
        rs.seed(seed)
    graph_type = GraphType(graph_type)

    if graph_type == GraphType.RANDOM:
        choice = rs.choice([t for (t, _) in MIXTURE], 1, p=[pr for (_, pr) in MIXTURE])[0]
        graph_type = GraphType(int(choice))

    if graph_type == GraphType.ERDOS_RENYI:
        if degree is None:
            degree = py_rng.random() * N
        G = erdos_renyi(N, degree, seed)
    elif graph_type == GraphType.BARABASI_ALBERT:
        if degree is None:
            degree = int(py_rng.random() * (N - 1)) + 1
        G = barabasi_albert(N, degree, seed)
    elif graph_type == GraphType.GRID:
        G = grid(N)
    elif graph_type == GraphType.CAVEMAN:
        G = caveman(N)
    elif graph_type == GraphType.TREE:
        G = tree(N, seed)
    elif graph_type == GraphType.LADDER:
        G = ladder(N)
    elif graph_type == GraphType.LINE:
        G = line(N)
    elif graph_type == GraphType.STAR:
        G = star(N)
    elif graph_type == GraphType.CATERPILLAR:
        G = caterpillar(N, seed, rs)
    elif graph_type == GraphType.LOBSTER:
        G = lobster(N, seed, rs)
    else:  # pragma: no cover - GraphType() above rejects unknown values
        raise ValueError(f"unknown graph type {graph_type!r}")

    nodes = list(G)
    py_rng.shuffle(nodes)
    adj_matrix = nx.to_numpy_array(G, nodes)
    node_values = rs.uniform(low=0, high=1, size=N)
    adj_matrix = randomize(adj_matrix, rs)
    return adj_matrix, node_values, graph_type


# ---------------------------------------------------------------------------------------------
# Labels (graph_algorithms.py)
# ---------------------------------------------------------------------------------------------

def all_pairs_shortest_paths(A: np.ndarray) -> np.ndarray:
    """Hop distances [N, N] (float64, ``inf`` when unreachable), by breadth-first search.

    Equal to the official ``all_pairs_shortest_paths(A)`` (Floyd–Warshall) for 0/1 matrices.
    """
    return csgraph.shortest_path(np.asarray(A, dtype=np.float64), method="D", directed=False,
                                 unweighted=True)


def _max_finite(distances: np.ndarray, axis=None) -> np.ndarray:
    return np.max(np.where(np.isfinite(distances), distances, -1.0), axis=axis)


def eccentricity(A: np.ndarray, distances: np.ndarray | None = None) -> np.ndarray:
    """``eccentricity``: per node, the largest *finite* distance (i.e. within its component)."""
    distances = all_pairs_shortest_paths(A) if distances is None else distances
    return _max_finite(distances, axis=0)


def diameter(A: np.ndarray, distances: np.ndarray | None = None) -> float:
    """``diameter``: the largest finite distance (max over components)."""
    distances = all_pairs_shortest_paths(A) if distances is None else distances
    return float(_max_finite(distances))


def sssp(A: np.ndarray, source: int, distances: np.ndarray | None = None) -> np.ndarray:
    """``all_pairs_shortest_paths(A, 0)[source]``: distances from ``source``, unreachable = 0."""
    distances = all_pairs_shortest_paths(A) if distances is None else distances
    row = distances[source]
    return np.where(np.isfinite(row), row, 0.0)


def graph_laplacian_features(A: np.ndarray, F: np.ndarray) -> np.ndarray:
    """``graph_laplacian_features``: (D - A) @ F with A binarised (A > 0)."""
    L = (A > 0) * -1
    np.fill_diagonal(L, np.sum(A > 0, axis=0))
    return np.matmul(L, F)


def is_connected_official(A: np.ndarray) -> bool:
    """``graph_algorithms.is_connected`` verbatim: ``min(A^(2^k)) > 0``, k = 1 + ceil(log2 N).

    False for connected bipartite graphs, and may overflow to inf/nan (then usually False) for
    large N; see the module docstring. Computed in float64 with numpy warnings suppressed.
    """
    A = np.asarray(A, dtype=np.float64)
    with np.errstate(all="ignore"):
        for _ in range(int(1 + math.ceil(math.log2(A.shape[0])))):
            A = np.dot(A, A)
        return bool(np.min(A) > 0)


def is_connected_exact(A: np.ndarray) -> bool:
    """True connectivity: exactly one connected component."""
    n_components = csgraph.connected_components(np.asarray(A, dtype=np.float64), directed=False,
                                                return_labels=False)
    return bool(n_components == 1)


def spectral_radius(A: np.ndarray) -> float:
    """``spectral_radius``: |eigenvalue of largest magnitude| via ``np.linalg.eig`` as officially."""
    W, _ = np.linalg.eig(A)
    return float(np.abs(W[np.argmax(np.absolute(W))].real))


def node_labels(A: np.ndarray, values: np.ndarray, source: int,
                distances: np.ndarray | None = None) -> np.ndarray:
    """[N, 3] float64: ``NODE_TASKS`` = [sssp from ``source``, eccentricity, (D - A) @ values]."""
    distances = all_pairs_shortest_paths(A) if distances is None else distances
    labels = [sssp(A, source, distances), eccentricity(A, distances),
              graph_laplacian_features(A, values)]
    return np.swapaxes(np.stack(labels), 0, 1)


def graph_labels(A: np.ndarray, connectivity: str = "official",
                 distances: np.ndarray | None = None) -> np.ndarray:
    """[3] float64: ``GRAPH_TASKS`` = [is_connected, diameter, spectral radius]."""
    _check_connectivity(connectivity)
    distances = all_pairs_shortest_paths(A) if distances is None else distances
    connected = is_connected_official(A) if connectivity == "official" else is_connected_exact(A)
    return np.asarray([float(connected), diameter(A, distances), spectral_radius(A)],
                      dtype=np.float64)


def _check_connectivity(connectivity: str) -> None:
    if connectivity not in CONNECTIVITY_MODES:
        raise ValueError(f"connectivity must be one of {CONNECTIVITY_MODES}, got {connectivity!r}")


# ---------------------------------------------------------------------------------------------
# Splits (multitask_dataset.py __main__)
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """One split: its name, the graphs in each batch, and the node count N of each batch."""
    name: str
    batch_sizes: tuple[int, ...]
    node_counts: tuple[int, ...]

    @property
    def num_graphs(self) -> int:
        return sum(self.batch_sizes)


# The official dicts: n_graphs={'train': [512]*10, 'val': [128]*5, 'default': [256]*5}, and
# N = train/val/test: range(15, 25); extrapolation test sets replace 'test'. Batch b has N[b].
OFFICIAL_GRAPHS_PER_BATCH = {"train": 512, "val": 128, "default": 256}
OFFICIAL_NUM_BATCHES = {"train": 10, "val": 5, "default": 5}
_STANDARD_RANGES = {"train": range(15, 25), "val": range(15, 25)}
_TEST_RANGES = {"test": range(15, 25)}
_EXTRAPOLATION_RANGES = {f"test-({a},{a + 5})": range(a, a + 5)
                         for a in (20, 25, 30, 35, 40, 45, 60, 75, 95)}


def split_specs(extrapolation: bool = False,
                graphs_per_batch: int | Mapping[str, int] | None = None) -> list[SplitSpec]:
    """The splits in generation order (train, val, then test or the ``test-(a,b)`` sets).

    ``graphs_per_batch`` scales the dataset down (or up): an int for every split, or a mapping
    from split name (or ``"default"`` for every test split) to graphs per batch; splits it does
    not name keep the paper's sizes (512 train, 128 val, 256 test). Batch counts and node counts
    are always the paper's.
    """
    ranges = {**_STANDARD_RANGES, **(_EXTRAPOLATION_RANGES if extrapolation else _TEST_RANGES)}
    if graphs_per_batch is None:
        overrides: Mapping[str, int] = {}
    elif isinstance(graphs_per_batch, int):
        overrides = {"train": graphs_per_batch, "val": graphs_per_batch,
                     "default": graphs_per_batch}
    else:
        overrides = dict(graphs_per_batch)
        unknown = set(overrides) - set(ranges) - {"default"}
        if unknown:
            raise ValueError(f"graphs_per_batch names unknown splits {sorted(unknown)}; "
                             f"known: {list(ranges)} and 'default'")
    specs = []
    for name, node_range in ranges.items():
        key = name if name in OFFICIAL_NUM_BATCHES else "default"
        size = overrides.get(name, overrides.get(key, OFFICIAL_GRAPHS_PER_BATCH[key]))
        if size < 1:
            raise ValueError(f"graphs_per_batch for {name!r} must be >= 1, got {size}")
        n_batches = OFFICIAL_NUM_BATCHES[key]
        specs.append(SplitSpec(name, (int(size),) * n_batches, tuple(node_range)[:n_batches]))
    return specs


# ---------------------------------------------------------------------------------------------
# Data structures
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class MultitaskBatch:
    """B graphs of the same size N (numpy).

    adjacency [B, N, N] float32 (0/1, symmetric, zero diagonal); features [B, N, 2] float32
    = [one-hot sssp source, node value]; node_labels [B, N, 3] float32 (``NODE_TASKS``);
    graph_labels [B, 3] float32 (``GRAPH_TASKS``); graph_types [B] int8 (``GraphType`` values).
    """
    adjacency: np.ndarray
    features: np.ndarray
    node_labels: np.ndarray
    graph_labels: np.ndarray
    graph_types: np.ndarray

    def __post_init__(self):
        B, N = self.adjacency.shape[:2]
        expected = {"adjacency": (B, N, N), "features": (B, N, 2),
                    "node_labels": (B, N, len(NODE_TASKS)),
                    "graph_labels": (B, len(GRAPH_TASKS)), "graph_types": (B,)}
        for field, shape in expected.items():
            if getattr(self, field).shape != shape:
                raise ValueError(f"MultitaskBatch.{field} has shape {getattr(self, field).shape}, "
                                 f"expected {shape}")

    def __len__(self) -> int:
        return self.adjacency.shape[0]

    @property
    def num_nodes(self) -> int:
        return self.adjacency.shape[1]

    @property
    def graph_type_names(self) -> list[str]:
        return [GraphType(int(t)).name for t in self.graph_types]


@dataclasses.dataclass
class MultitaskDataset:
    """Splits of ``MultitaskBatch`` lists, in generation order (``train``, ``val``, tests...).

    ``label_max`` is None for raw labels; ``normalised()`` sets it to the [6] training maxima
    (``TASKS`` order) it divided by.
    """
    splits: dict[str, list[MultitaskBatch]]
    seed: int = DEFAULT_SEED
    extrapolation: bool = False
    connectivity: str = "official"
    label_max: np.ndarray | None = None

    node_tasks = NODE_TASKS
    graph_tasks = GRAPH_TASKS

    def num_graphs(self, split: str) -> int:
        return sum(len(b) for b in self.splits[split])

    def training_label_max(self) -> np.ndarray:
        """[6] per-task maxima of the current labels over the training split (``TASKS`` order)."""
        train = self.splits["train"]
        node = np.max([b.node_labels.max(axis=(0, 1)) for b in train], axis=0)
        graph = np.max([b.graph_labels.max(axis=0) for b in train], axis=0)
        return np.concatenate([node, graph]).astype(np.float32)

    def normalised(self) -> MultitaskDataset:
        """Every label divided by its training-set maximum (``util.load_dataset``).

        Returns self if already normalised. A zero maximum (only possible for tiny scaled-down
        datasets, e.g. no graph labelled connected) divides by 1 instead of giving NaN.
        """
        if self.label_max is not None:
            return self
        label_max = self.training_label_max()
        divisor = np.where(label_max == 0, np.float32(1), label_max).astype(np.float32)
        n = len(NODE_TASKS)
        splits = {name: [dataclasses.replace(b, node_labels=b.node_labels / divisor[:n],
                                             graph_labels=b.graph_labels / divisor[n:])
                         for b in batches]
                  for name, batches in self.splits.items()}
        return dataclasses.replace(self, splits=splits, label_max=label_max)

    def baseline_mse(self, split: str) -> dict[str, float]:
        """Per-task MSE on ``split`` of predicting the training mean of the normalised labels.

        As ``util.load_dataset``'s baseline: the training mean is the mean over training batches
        of each batch's mean, and the MSE is averaged over the split's batches with batches
        weighted equally (``specific_loss_multiple_batches``). Normalises first if needed.
        Computed in float64 (the official code uses float32 torch; differences ~1e-7 relative).
        """
        data = self.normalised()
        train = data.splits["train"]
        node_mean = np.mean([b.node_labels.astype(np.float64).mean(axis=(0, 1)) for b in train],
                            axis=0)
        graph_mean = np.mean([b.graph_labels.astype(np.float64).mean(axis=0) for b in train],
                             axis=0)
        losses = []
        for b in data.splits[split]:
            node = ((b.node_labels.astype(np.float64) - node_mean) ** 2).mean(axis=(0, 1))
            graph = ((b.graph_labels.astype(np.float64) - graph_mean) ** 2).mean(axis=0)
            losses.append(np.concatenate([node, graph]))
        return dict(zip(TASKS, map(float, np.mean(losses, axis=0))))

    def degree_statistics(self) -> dict[str, float]:
        """The PNA ``avg_d`` of ``util/train.py`` over the training split.

        For each training batch, the mean over its graphs and nodes of f(d) (d = node degree),
        then the mean over batches: ``log`` f = log(d + 1) (the delta of the PNA scalers),
        ``lin`` f = d, ``exp`` f = exp(1/d) - 1. With the paper's equal batch sizes this is the
        mean over training graphs of the per-graph mean.
        """
        lin, log, exp = [], [], []
        for b in self.splits["train"]:
            d = b.adjacency.astype(np.float64).sum(axis=-1)
            lin.append(d.mean())
            log.append(np.log(d + 1).mean())
            with np.errstate(divide="ignore"):
                exp.append((np.exp(1 / d) - 1).mean())
        return {"lin": float(np.mean(lin)), "log": float(np.mean(log)),
                "exp": float(np.mean(exp))}


# ---------------------------------------------------------------------------------------------
# Generation (multitask_dataset.DatasetMultitask)
# ---------------------------------------------------------------------------------------------

def _one_hot(index: int, N: int) -> np.ndarray:
    v = np.zeros(N)
    v[index] = 1
    return v


def generate_dataset(seed: int = DEFAULT_SEED, extrapolation: bool = False,
                     connectivity: str = "official",
                     graphs_per_batch: int | Mapping[str, int] | None = None,
                     graph_type: GraphType = GraphType.RANDOM,
                     verbose: bool = True) -> MultitaskDataset:
    """Generate the dataset as ``DatasetMultitask`` does (raw labels; see ``normalised``).

    The seed counter starts at ``seed`` and is incremented before every ``generate_graph`` call;
    it continues across batches and splits (train, val, tests). A graph with an isolated node is
    replaced by ``generate_graph(N, same type, seed + 1)`` until none is isolated. The sssp source
    is drawn with ``randint(0, N)`` from the numpy state of the last (accepted) call.

    Because graph k uses seed ``seed + k`` (plus regenerations), neighbouring values of ``seed``
    give shifted, largely overlapping datasets; use well-separated seeds for independent draws.
    """
    _check_connectivity(connectivity)
    # One BLAS thread: the matrices are tiny, and a multithreaded OpenBLAS on a busy machine makes
    # the per-graph eig / matrix powers 10-100x slower. (Labels are stored as float32.)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        return _generate_dataset(seed, extrapolation, connectivity, graphs_per_batch, graph_type,
                                 verbose)


def _generate_dataset(seed, extrapolation, connectivity, graphs_per_batch, graph_type, verbose):
    specs = split_specs(extrapolation, graphs_per_batch)
    total = sum(s.num_graphs for s in specs)
    start = time.perf_counter()
    if verbose:
        logging.info("[pna_multitask] generating %d graphs (seed=%s, extrapolation=%s, connectivity=%s) ...",
                     total, seed, extrapolation, connectivity)
    rs = np.random.RandomState(seed)  # re-seeded by every generate_graph call
    counter = seed
    splits: dict[str, list[MultitaskBatch]] = {}
    for spec in specs:
        batches = []
        for batch_size, N in zip(spec.batch_sizes, spec.node_counts):
            adjs, feats, nls, gls, types = [], [], [], [], []
            for _ in range(batch_size):
                counter += 1
                adj, values, gtype = generate_graph(N, graph_type, seed=counter, rs=rs)
                while np.min(np.max(adj, 0)) == 0.0:  # remove graphs with singleton nodes
                    counter += 1
                    adj, values, _ = generate_graph(N, gtype, seed=counter, rs=rs)
                source = rs.randint(0, N)
                distances = all_pairs_shortest_paths(adj)
                adjs.append(adj)
                nls.append(node_labels(adj, values, source, distances))
                gls.append(graph_labels(adj, connectivity, distances))
                feats.append(np.stack([_one_hot(source, N), values], axis=1))
                types.append(int(gtype))
            batches.append(MultitaskBatch(
                adjacency=np.asarray(adjs, dtype=np.float32),
                features=np.asarray(feats, dtype=np.float32),
                node_labels=np.asarray(nls, dtype=np.float32),
                graph_labels=np.asarray(gls, dtype=np.float32),
                graph_types=np.asarray(types, dtype=np.int8)))
        splits[spec.name] = batches
        if verbose:
            logging.info("[pna_multitask]   %s: %d graphs, N=%d..%d (%.1fs)", spec.name, spec.num_graphs,
                         spec.node_counts[0], spec.node_counts[-1], time.perf_counter() - start)
    return MultitaskDataset(splits=splits, seed=seed, extrapolation=extrapolation,
                            connectivity=connectivity)


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------

class CacheError(RuntimeError):
    """A cache file exists but cannot be read or does not match the requested parameters."""


def _cache_params(seed, extrapolation, connectivity, graphs_per_batch, graph_type) -> dict:
    specs = split_specs(extrapolation, graphs_per_batch)
    return {"format_version": FORMAT_VERSION, "seed": int(seed),
            "extrapolation": bool(extrapolation), "connectivity": connectivity,
            "graph_type": GraphType(graph_type).name,
            "splits": [[s.name, list(s.batch_sizes), list(s.node_counts)] for s in specs]}


def cache_path(cache_dir: str | os.PathLike, seed: int = DEFAULT_SEED,
               extrapolation: bool = False, connectivity: str = "official",
               graphs_per_batch: int | Mapping[str, int] | None = None,
               graph_type: GraphType = GraphType.RANDOM) -> str:
    """The cache file for these parameters: readable fields plus a digest of all of them.

    ``~`` in ``cache_dir`` is expanded.
    """
    _check_connectivity(connectivity)
    params = _cache_params(seed, extrapolation, connectivity, graphs_per_batch, graph_type)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    kind = "extrapolation" if extrapolation else "standard"
    name = (f"pna_multitask_v{FORMAT_VERSION}_seed{seed}_{kind}_{connectivity}_"
            f"{GraphType(graph_type).name.lower()}_{digest}.npz")
    return os.path.join(os.path.expanduser(os.fspath(cache_dir)), name)


_FIELDS = ("adjacency", "features", "node_labels", "graph_labels", "graph_types")


def _save(dataset: MultitaskDataset, path: str, params: dict) -> None:
    arrays = {"params": np.array(json.dumps(params, sort_keys=True)),
              "networkx_version": np.array(nx.__version__)}
    for i, (name, batches) in enumerate(dataset.splits.items()):
        for j, b in enumerate(batches):
            for field in _FIELDS:
                value = getattr(b, field)
                if field == "adjacency":
                    value = value.astype(np.uint8)  # 0/1; 4x smaller on disk
                arrays[f"s{i:02d}_b{j:02d}_{field}"] = value
    atomic_save_npz(path, arrays)


def _load(path: str, params: dict) -> MultitaskDataset:
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = json.loads(str(data["params"][()]))
            if stored != params:
                raise CacheError(f"its parameters {stored} differ from the requested {params}")
            splits = {}
            for i, (name, batch_sizes, node_counts) in enumerate(params["splits"]):
                batches = []
                for j, (size, N) in enumerate(zip(batch_sizes, node_counts)):
                    arrays = {f: data[f"s{i:02d}_b{j:02d}_{f}"] for f in _FIELDS}
                    arrays["adjacency"] = arrays["adjacency"].astype(np.float32)
                    batch = MultitaskBatch(**arrays)
                    if len(batch) != size or batch.num_nodes != N:
                        raise CacheError(f"split {name!r} batch {j} has {len(batch)} graphs of "
                                         f"{batch.num_nodes} nodes, expected {size} of {N}")
                    batches.append(batch)
                splits[name] = batches
    except Exception as err:  # zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError...
        raise CacheError(f"PNA multitask cache file {path!r} is unreadable or does not match the "
                         f"requested parameters ({type(err).__name__}: {err}). Delete it to "
                         f"regenerate.") from err
    return MultitaskDataset(splits=splits, seed=params["seed"],
                            extrapolation=params["extrapolation"],
                            connectivity=params["connectivity"])


def load_or_generate(cache_dir: str | os.PathLike, seed: int = DEFAULT_SEED,
                     extrapolation: bool = False, connectivity: str = "official",
                     graphs_per_batch: int | Mapping[str, int] | None = None,
                     graph_type: GraphType = GraphType.RANDOM,
                     verbose: bool = True) -> MultitaskDataset:
    """Load the dataset from ``cache_dir`` or generate it and cache it there (raw labels).

    The cache is one ``.npz`` (``cache_path``: name from the parameters and ``FORMAT_VERSION``),
    written to a temporary file in the same directory and moved into place with ``os.replace``,
    so a crash never leaves a half-written cache. A cache file that exists but is unreadable or
    whose stored parameters differ raises ``CacheError`` naming the file; it is never
    silently overwritten (delete it to regenerate).
    """
    path = cache_path(cache_dir, seed, extrapolation, connectivity, graphs_per_batch, graph_type)
    params = _cache_params(seed, extrapolation, connectivity, graphs_per_batch, graph_type)
    if os.path.exists(path):
        return _load(path, params)
    dataset = generate_dataset(seed, extrapolation, connectivity, graphs_per_batch, graph_type,
                               verbose)
    _save(dataset, path, params)
    if verbose:
        logging.info("[pna_multitask] cached to %s", path)
    return dataset
