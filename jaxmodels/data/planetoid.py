r"""Reader for the Planetoid citation graphs (Yang, Cohen & Salakhutdinov, ICML 2016): cora, citeseer, pubmed.

The files are the ones PyG's ``Planetoid`` and Kipf & Welling's ``gcn`` repository download:

    ind.<name>.x, .tx, .allx     features of the training / test / all non-test nodes (scipy sparse)
    ind.<name>.y, .ty, .ally     one-hot labels of the same rows (numpy arrays)
    ind.<name>.graph             dict (a defaultdict) node -> list of neighbours
    ind.<name>.test.index        the node ids of the ``tx`` rows, one per line

The binary files are Python 2 pickles. They are read with ``jaxmodels.training.serialization``'s
``RestrictedUnpickler``, which resolves only the numpy / scipy.sparse / collections / builtins names
these files need (``ALLOWED_GLOBALS``); any other global (a crafted ``os.system``, say) raises
``UnsafePickleError`` (a ``ValueError``, re-exported here) naming the file and the class. Every
malformed input raises ``FileNotFoundError`` or ``ValueError`` naming the file.

Node order and split follow Kipf's ``load_data`` and PyG's ``read_planetoid_data``: node ids
0..len(allx)-1 are the ``allx`` rows; test node ``test.index[j]`` gets ``tx[j]`` and ``ty[j]``.
Citeseer's test ids have gaps (isolated nodes with no features or label in the files); as both
references do, the graph spans every id in [min, max] of the test index, and the gap nodes get zero
features. Their label is -1 here (PyG's argmax makes it 0). train = the ``x`` rows (the first
len(y) ids), val = the next 500 ids, test = the sorted test index.
"""
from __future__ import annotations

import collections
import copyreg
import dataclasses
import io
import os

import numpy as np
import scipy.sparse as sp

from jaxmodels.training.serialization import UnsafePickleError, restricted_load

NAMES = ("cora", "citeseer", "pubmed")
PICKLED = ("x", "y", "tx", "ty", "allx", "ally", "graph")
NUM_VAL = 500


_RECONSTRUCT = np.ndarray(0).__reduce__()[0]  # numpy's multiarray._reconstruct, whatever its module
_SCALAR = np.float64(0).__reduce__()[0]  # multiarray.scalar

# (module, name) as written in the pickle -> the object it may resolve to. Module names cover the
# Python 2 originals (numpy.core, scipy.sparse.csr, __builtin__, copy_reg: an overridden find_class
# sees them before fix_imports would map them) and files written by current numpy/scipy.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "defaultdict"): collections.defaultdict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
}
for _module in ("scipy.sparse.csr", "scipy.sparse._csr"):
    ALLOWED_GLOBALS[(_module, "csr_matrix")] = sp.csr_matrix
for _module in ("scipy.sparse.csc", "scipy.sparse._csc"):
    ALLOWED_GLOBALS[(_module, "csc_matrix")] = sp.csc_matrix
for _module in ("scipy.sparse.coo", "scipy.sparse._coo"):
    ALLOWED_GLOBALS[(_module, "coo_matrix")] = sp.coo_matrix
ALLOWED_GLOBALS[("scipy.sparse._csr", "csr_array")] = sp.csr_array
for _module in ("builtins", "__builtin__"):  # Python 2 names reach find_class unmapped
    ALLOWED_GLOBALS.update({(_module, "list"): list, (_module, "dict"): dict, (_module, "set"): set,
                            (_module, "object"): object})


def load_pickle(path: str):
    """Reads one Planetoid pickle (Python 2, latin1 strings) resolving only ``ALLOWED_GLOBALS``.

    Raises ``UnsafePickleError`` (a ``ValueError``) for any other global, ``ValueError`` naming the file
    for truncated or corrupt data.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    return restricted_load(
        io.BytesIO(data), allowed=ALLOWED_GLOBALS, path=path, what="a Planetoid pickle", encoding="latin1",
        on_error=lambda error: ValueError(f"{path}: not a readable pickle ({type(error).__name__}: {error})"))


def read_test_index(path: str) -> np.ndarray:
    """``ind.<name>.test.index``: one non-negative integer node id per line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    try:
        index = np.array([int(line) for line in lines], np.int64)
    except ValueError as error:
        raise ValueError(f"{path}: expected one integer per line ({error})") from None
    if index.size == 0:
        raise ValueError(f"{path}: empty test index")
    if index.min() < 0:
        raise ValueError(f"{path}: negative node id {index.min()}")
    if np.unique(index).size != index.size:
        raise ValueError(f"{path}: repeated node ids")
    return index


@dataclasses.dataclass(frozen=True)
class PlanetoidData:
    adjacency: sp.csr_matrix  # [N, N] float32 0/1, symmetric, no self loops
    features: np.ndarray  # [N, d] float32 (gap nodes of citeseer are zero rows)
    labels: np.ndarray  # [N] int64 class ids; -1 for nodes without a label row
    train_idx: np.ndarray  # [len(y)]
    val_idx: np.ndarray  # [<= 500]
    test_idx: np.ndarray  # [len(tx)], sorted

    @property
    def num_nodes(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1


def _as_matrix(value, path: str, name: str) -> np.ndarray:
    if sp.issparse(value):
        value = value.toarray()
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D scipy sparse matrix or numpy array for {name!r}, "
                         f"got {type(value).__name__}" + (f" with shape {value.shape}" if hasattr(value, "shape") else ""))
    if not np.issubdtype(value.dtype, np.number):
        raise ValueError(f"{path}: {name!r} has non-numeric dtype {value.dtype}")
    return value


def _labels_from_one_hot(one_hot: np.ndarray) -> np.ndarray:
    labels = one_hot.argmax(axis=1).astype(np.int64)
    labels[~one_hot.any(axis=1)] = -1
    return labels


def _adjacency(graph, num_nodes: int, path: str) -> sp.csr_matrix:
    if not isinstance(graph, dict):
        raise ValueError(f"{path}: expected a dict of adjacency lists, got {type(graph).__name__}")
    rows, cols = [], []
    for node, neighbours in graph.items():
        if not isinstance(neighbours, (list, tuple, set)):
            raise ValueError(f"{path}: neighbours of node {node!r} are a {type(neighbours).__name__}, not a list")
        for other in (node, *neighbours):
            if not isinstance(other, (int, np.integer)) or not 0 <= other < num_nodes:
                raise ValueError(f"{path}: node id {other!r} out of range [0, {num_nodes})")
        rows.extend([int(node)] * len(neighbours))
        cols.extend(int(n) for n in neighbours)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    keep = rows != cols  # drop self loops, as PyG does
    edges = sp.coo_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])), shape=(num_nodes, num_nodes))
    adjacency = ((edges + edges.T) > 0).astype(np.float32)  # symmetrise; duplicates collapse to 1
    return sp.csr_matrix(adjacency)


def load_planetoid(root: str, name: str) -> PlanetoidData:
    """Reads ``<root>/ind.<name>.*`` (module docstring) into a ``PlanetoidData``."""
    name = name.lower()
    prefix = os.path.join(root, f"ind.{name}")
    paths = {key: f"{prefix}.{key}" for key in PICKLED}
    objects = {key: load_pickle(path) for key, path in paths.items()}
    test_path = f"{prefix}.test.index"
    test_index = read_test_index(test_path)

    x, y = _as_matrix(objects["x"], paths["x"], "x"), _as_matrix(objects["y"], paths["y"], "y")
    tx, ty = _as_matrix(objects["tx"], paths["tx"], "tx"), _as_matrix(objects["ty"], paths["ty"], "ty")
    allx, ally = _as_matrix(objects["allx"], paths["allx"], "allx"), _as_matrix(objects["ally"], paths["ally"], "ally")
    for (fx, mx), (fy, my) in (((paths["x"], x), (paths["y"], y)), ((paths["tx"], tx), (paths["ty"], ty)),
                               ((paths["allx"], allx), (paths["ally"], ally))):
        if mx.shape[0] != my.shape[0]:
            raise ValueError(f"{fy}: {my.shape[0]} label rows but {fx} has {mx.shape[0]} feature rows")
    for key, matrix in (("tx", tx), ("allx", allx)):
        if matrix.shape[1] != x.shape[1]:
            raise ValueError(f"{paths[key]}: {matrix.shape[1]} feature columns, but {paths['x']} has {x.shape[1]}")
    for key, matrix in (("ty", ty), ("ally", ally)):
        if matrix.shape[1] != y.shape[1]:
            raise ValueError(f"{paths[key]}: {matrix.shape[1]} label columns, but {paths['y']} has {y.shape[1]}")
    if x.shape[0] > allx.shape[0]:
        raise ValueError(f"{paths['x']}: {x.shape[0]} training rows exceed the {allx.shape[0]} rows of {paths['allx']}")
    if test_index.size != tx.shape[0]:
        raise ValueError(f"{test_path}: {test_index.size} ids but {paths['tx']} has {tx.shape[0]} rows")
    if test_index.min() != allx.shape[0]:
        raise ValueError(f"{test_path}: smallest test id is {test_index.min()}, expected {allx.shape[0]} "
                         f"(the number of rows of {paths['allx']}; test ids follow the allx nodes)")

    num_nodes = int(test_index.max()) + 1  # spans citeseer's gaps, as Kipf's and PyG's readers do
    features = np.zeros((num_nodes, x.shape[1]), np.float32)  # [N, d]
    features[: allx.shape[0]] = allx
    features[test_index] = tx
    one_hot = np.zeros((num_nodes, y.shape[1]), ally.dtype)  # [N, classes]
    one_hot[: ally.shape[0]] = ally
    one_hot[test_index] = ty

    return PlanetoidData(
        adjacency=_adjacency(objects["graph"], num_nodes, paths["graph"]),
        features=features,
        labels=_labels_from_one_hot(one_hot),
        train_idx=np.arange(y.shape[0], dtype=np.int64),
        val_idx=np.arange(y.shape[0], min(y.shape[0] + NUM_VAL, allx.shape[0]), dtype=np.int64),
        test_idx=np.sort(test_index),
    )
