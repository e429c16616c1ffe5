"""ZINC molecular regression (the 12k "subset" of PNA / benchmarking-gnns, or full ZINC) as jraph graphs.

On-disk layout (PyTorch Geometric's ``torch_geometric.datasets.ZINC`` raw folder, i.e. the
``molecules/`` folder of benchmarking-gnns' ``molecules.zip`` renamed to ``raw/``)::

  <root>/raw/train.pickle  <root>/raw/val.pickle  <root>/raw/test.pickle
  <root>/raw/train.index   <root>/raw/val.index   <root>/raw/test.index   (only for subset=True)

Each ``.pickle`` is a plain ``pickle.dump`` of a Python list of dicts, one per molecule:

  ``'atom_type'``                 LongTensor [n]     atom-type code of each heavy atom
  ``'bond_type'``                 LongTensor [n, n]  dense bond-type adjacency, 0 = no bond
  ``'logP_SA_cycle_normalized'``  tensor [1]         regression target (penalised logP)
  ``'num_atom'``                  int                n

Each ``.index`` file is one line of comma-separated positions into the matching pickle; the
ZINC subset (10k / 1k / 1k molecules) is exactly those positions, in file order. Full ZINC
(220,011 / 24,445 / 5,000) is every entry of the pickles (``subset=False``).

Graphs follow PyG's processing exactly: the edges are the nonzero entries of ``bond_type`` in
row-major order (sender = row, receiver = column), so every bond appears once per direction;
the edge feature is the bond-type code at that entry.

The pickles are read with ``jaxmodels.training.serialization``'s restricted unpickler, never plain
``pickle.load``: only torch's tensor rebuild functions, storage loading (whose inner bytes go through
``jaxmodels.convert.state_dict.torch_load``, i.e. ``torch.load(weights_only=True)``),
``collections.OrderedDict`` and ``_codecs.encode`` (how protocol-2 pickles spell ``bytes``) are
resolved; any other global raises :class:`UnsafePickleError` naming the file and the refused global.
Reading needs torch (tensors are how the files store arrays); the graphs themselves are numpy.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import jraph
import numpy as np

from jaxmodels.convert.state_dict import WeightFileError, torch_load
from jaxmodels.training.serialization import UnsafePickleError, restricted_load

SPLITS = ("train", "val", "test")
# benchmarking-gnns data/molecules.py (and the PNA fork, and DGL's ZINCDataset docs): "known
# meta-info about the zinc dataset" -- 28 atom-type codes (0..27; the 12k subset only uses
# 0..20, hence PyG's examples/pna.py ``Embedding(21, ...)``) and 4 bond-type codes (0..3) where 0
# is "no bond" in the dense matrix, so edges carry 1..3 (PyG's example uses ``Embedding(4, ...)``).
NUM_ATOM_TYPES = 28
NUM_BOND_TYPES = 4
TARGET_KEY = "logP_SA_cycle_normalized"
REQUIRED_KEYS = ("atom_type", "bond_type", TARGET_KEY, "num_atom")
LAYOUT = ("<root>/raw/{train,val,test}.pickle (list of dicts with keys 'atom_type', 'bond_type', "
          "'logP_SA_cycle_normalized', 'num_atom') and, for subset=True, <root>/raw/{train,val,test}.index "
          "(one line of comma-separated indices), as in PyG's ZINC raw folder / benchmarking-gnns molecules.zip")


class ZincFormatError(ValueError):
    """A ZINC raw file is missing or does not have the expected structure."""


def _require_torch(what: str):
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"{what} needs PyTorch: the ZINC .pickle files store their arrays as pickled torch tensors, "
            "so torch must be importable to rebuild them (CPU-only wheel is enough: pip install torch).") from e
    return torch


# ----------------------------------------------------------------------------------- unpickling


def _allowed_globals(torch, path: str) -> dict[tuple[str, str], Any]:
    """The globals a pickled list of tensor dicts needs, each checking its arguments, for
    ``jaxmodels.training.serialization.RestrictedUnpickler``."""

    storage_types = (torch.storage.TypedStorage, torch.storage.UntypedStorage)

    def load_from_bytes(b):
        # Replaces torch.storage._load_from_bytes, which calls torch.load(weights_only=False).
        if not isinstance(b, (bytes, bytearray)):
            raise UnsafePickleError(f"{path}: torch.storage._load_from_bytes got {type(b).__name__}, expected bytes")
        try:
            storage = torch_load(io.BytesIO(bytes(b)), name="an embedded tensor storage")
        except WeightFileError as e:  # e.g. "... failed (... GLOBAL posix.system ...)"
            raise UnsafePickleError(f"{path}: refused {e}") from None
        if not isinstance(storage, storage_types):
            raise UnsafePickleError(
                f"{path}: an embedded tensor storage loaded as {type(storage).__name__}, expected a torch storage")
        return storage

    def checked_rebuild(fn):
        def rebuild(storage, storage_offset, size, stride, *rest):
            if not isinstance(storage, storage_types):
                raise UnsafePickleError(
                    f"{path}: torch._utils.{fn.__name__} got {type(storage).__name__} instead of a torch storage")
            # _rebuild_tensor_v2(..., requires_grad, backward_hooks[, metadata]): hooks must be empty.
            if len(rest) >= 2 and rest[1]:
                raise UnsafePickleError(f"{path}: refusing a pickled tensor with backward hooks")
            return fn(storage, storage_offset, size, stride, *rest)
        rebuild.__name__ = fn.__name__
        return rebuild

    return {
        ("torch._utils", "_rebuild_tensor_v2"): checked_rebuild(torch._utils._rebuild_tensor_v2),
        ("torch._utils", "_rebuild_tensor"): checked_rebuild(torch._utils._rebuild_tensor),
        ("torch.storage", "_load_from_bytes"): load_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }


def load_zinc_pickle(path: str) -> list:
    """The raw list of molecule dicts from one ``<split>.pickle``, through the restricted unpickler."""
    path = os.fspath(path)
    torch = _require_torch(f"reading {path}")
    if not os.path.isfile(path):
        raise ZincFormatError(f"ZINC raw file not found: {path}. Expected layout: {LAYOUT}.")
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
        f.seek(0)
        hint = " (it is a zip archive: unzip molecules.zip first)" if is_zip else ""
        data = restricted_load(
            f, allowed=_allowed_globals(torch, path), path=path, what="a ZINC molecules pickle",
            on_error=lambda e: ZincFormatError(f"{path}: not a readable pickle{hint} ({type(e).__name__}: {e})"))
    if not isinstance(data, (list, tuple)):
        raise ZincFormatError(
            f"{path}: top-level object is {type(data).__name__}, expected a list of molecule dicts with keys "
            f"{list(REQUIRED_KEYS)}")
    return list(data)


def read_zinc_index(path: str, num_molecules: int | None = None) -> np.ndarray:
    """The int64 positions in a ``<split>.index`` file (one comma-separated line; CRLF tolerated)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ZincFormatError(
            f"ZINC subset index file not found: {path}. subset=True needs it (benchmarking-gnns "
            f"data/molecules/<split>.index; PyG downloads it into raw/). Expected layout: {LAYOUT}.")
    with open(path, encoding="ascii", errors="replace") as f:
        lines = [line.strip() for line in f.read().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ZincFormatError(f"{path}: empty index file, expected one line of comma-separated integers")
    if len(lines) > 1:
        raise ZincFormatError(
            f"{path}: {len(lines)} non-empty lines, expected exactly one line of comma-separated integers")
    tokens = lines[0].split(",")
    if tokens and tokens[-1].strip() == "":  # tolerate one trailing comma
        tokens = tokens[:-1]
    indices = np.empty(len(tokens), np.int64)
    for position, token in enumerate(tokens):
        token = token.strip()
        try:
            value = int(token)
        except ValueError:
            raise ZincFormatError(
                f"{path}: entry {position} is {token!r}, not an integer (expected comma-separated integers)") from None
        if value < 0 or (num_molecules is not None and value >= num_molecules):
            limit = f"0..{num_molecules - 1}" if num_molecules is not None else ">= 0"
            raise ZincFormatError(
                f"{path}: index out of range at entry {position}: {value} (the pickle has {num_molecules} "
                f"molecules, valid indices are {limit})")
        indices[position] = value
    return indices


# ------------------------------------------------------------------------------------ conversion


def _as_numpy(torch, value, path: str, k: int, key: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if key == TARGET_KEY and isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.asarray([value], np.float64)
    raise ZincFormatError(f"{path}: entry {k}: '{key}' is {type(value).__name__}, expected a tensor")


def _molecule_to_graph(torch, mol, path: str, k: int, strict: bool) -> jraph.GraphsTuple:
    if not isinstance(mol, Mapping):
        raise ZincFormatError(
            f"{path}: entry {k} is {type(mol).__name__}, expected a dict with keys {list(REQUIRED_KEYS)}")
    missing = [key for key in REQUIRED_KEYS if key not in mol]
    if missing:
        raise ZincFormatError(
            f"{path}: entry {k} is missing key(s) {missing} "
            f"(has {sorted(map(str, mol))}, expected {list(REQUIRED_KEYS)})")
    atom_type = _as_numpy(torch, mol["atom_type"], path, k, "atom_type")
    bond_type = _as_numpy(torch, mol["bond_type"], path, k, "bond_type")
    target = _as_numpy(torch, mol[TARGET_KEY], path, k, TARGET_KEY)
    num_atom = mol["num_atom"]
    if isinstance(num_atom, torch.Tensor) and num_atom.numel() == 1:
        num_atom = num_atom.item()
    if isinstance(num_atom, bool) or not isinstance(num_atom, (int, np.integer)):
        raise ZincFormatError(f"{path}: entry {k}: 'num_atom' is {type(num_atom).__name__}, expected an int")

    for key, arr in (("atom_type", atom_type), ("bond_type", bond_type)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ZincFormatError(f"{path}: entry {k}: '{key}' has dtype {arr.dtype}, expected integer codes")
    if atom_type.ndim != 1:
        raise ZincFormatError(f"{path}: entry {k}: 'atom_type' has shape {atom_type.shape}, expected [num_atom]")
    n = atom_type.shape[0]
    if int(num_atom) != n:
        raise ZincFormatError(
            f"{path}: entry {k}: shape mismatch, num_atom = {int(num_atom)} but 'atom_type' has {n} entries")
    if bond_type.ndim != 2 or bond_type.shape[0] != bond_type.shape[1]:
        raise ZincFormatError(f"{path}: entry {k}: 'bond_type' has shape {bond_type.shape}, expected square [n, n]")
    if bond_type.shape[0] != n:
        raise ZincFormatError(
            f"{path}: entry {k}: shape mismatch, 'bond_type' is {bond_type.shape} but there are {n} atoms "
            f"(expected [{n}, {n}])")
    if target.size != 1:
        raise ZincFormatError(f"{path}: entry {k}: '{TARGET_KEY}' has shape {target.shape}, expected [1]")
    if strict:
        if n and (atom_type.min() < 0 or atom_type.max() >= NUM_ATOM_TYPES):
            raise ZincFormatError(
                f"{path}: entry {k}: atom_type codes must lie in [0, {NUM_ATOM_TYPES}), got "
                f"{int(atom_type.min())}..{int(atom_type.max())} (pass strict=False to skip value checks)")
        if n and (bond_type.min() < 0 or bond_type.max() >= NUM_BOND_TYPES):
            raise ZincFormatError(
                f"{path}: entry {k}: bond_type codes must lie in [0, {NUM_BOND_TYPES}), got "
                f"{int(bond_type.min())}..{int(bond_type.max())} (pass strict=False to skip value checks)")
        if not np.array_equal(bond_type, bond_type.T):
            raise ZincFormatError(
                f"{path}: entry {k}: 'bond_type' is not symmetric (bonds are undirected; pass strict=False "
                "to read the nonzero entries as given)")
        if np.any(np.diagonal(bond_type)):
            raise ZincFormatError(f"{path}: entry {k}: 'bond_type' has nonzero diagonal (self-bond); "
                                  "pass strict=False to keep it as a self-loop edge")

    senders, receivers = np.nonzero(bond_type)  # row-major, like torch's adj.nonzero() in PyG / DGL
    edge_type = bond_type[senders, receivers]
    e = senders.shape[0]
    return jraph.GraphsTuple(
        nodes={"atom_type": atom_type.astype(np.int32)},
        edges={"bond_type": edge_type.astype(np.int32)},
        senders=senders.astype(np.int32),
        receivers=receivers.astype(np.int32),
        globals={"target": target.reshape(1).astype(np.float32)},
        n_node=np.asarray([n], np.int32),
        n_edge=np.asarray([e], np.int32),
    )


def zinc_raw_dir(root: str) -> str:
    """``<root>/raw`` (PyG layout); a folder that holds the pickles directly is accepted too."""
    root = os.fspath(root)
    raw = os.path.join(root, "raw")
    if os.path.isdir(raw):
        return raw
    if any(os.path.isfile(os.path.join(root, f"{s}.pickle")) for s in SPLITS):
        return root  # benchmarking-gnns' data/molecules/ (the unzipped folder itself)
    return raw


def read_zinc(root: str, split: str, subset: bool = True, *, strict: bool = True) -> list[jraph.GraphsTuple]:
    """One numpy ``jraph.GraphsTuple`` per molecule of ``split`` ("train", "val" or "test").

    ``subset=True`` keeps only the positions in ``<split>.index`` (the 10k/1k/1k benchmark),
    in file order; ``subset=False`` keeps every molecule (full ZINC). Each graph has
    ``nodes={"atom_type": int32 [n]}``, ``edges={"bond_type": int32 [e]}`` (both directions of
    every bond), int32 ``senders`` / ``receivers``, ``globals={"target": float32 [1]}``,
    ``n_node=[n]``, ``n_edge=[e]``. ``strict`` also checks code ranges, symmetry and an empty
    diagonal of ``bond_type`` (structure, keys and shapes are always checked).
    """
    if split not in SPLITS:
        raise ValueError(f"ZINC split must be one of {SPLITS}, got {split!r}")
    torch = _require_torch("read_zinc")
    raw = zinc_raw_dir(root)
    pickle_path = os.path.join(raw, f"{split}.pickle")
    index_path = os.path.join(raw, f"{split}.index")
    if not os.path.isfile(pickle_path):
        raise ZincFormatError(f"ZINC raw file not found: {pickle_path}. Expected layout: {LAYOUT}.")
    if subset and not os.path.isfile(index_path):
        read_zinc_index(index_path)  # raises the missing-file error before the (slow) pickle load
    mols = load_zinc_pickle(pickle_path)
    if subset:
        positions = read_zinc_index(index_path, num_molecules=len(mols))
    else:
        positions = np.arange(len(mols))
    return [_molecule_to_graph(torch, mols[int(k)], pickle_path, int(k), strict) for k in positions]


# --------------------------------------------------------------------------------------- writing


def _molecule_arrays(mol, i: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(atom_type [n], dense bond_type [n, n], target) from a dict or a single-graph GraphsTuple."""
    if isinstance(mol, jraph.GraphsTuple):
        atom_type = np.asarray(mol.nodes["atom_type"])
        n = atom_type.shape[0]
        bond_type = np.zeros((n, n), np.int64)
        bond_type[np.asarray(mol.senders), np.asarray(mol.receivers)] = np.asarray(mol.edges["bond_type"])
        target = np.asarray(mol.globals["target"], np.float64).reshape(-1)
    elif isinstance(mol, Mapping):
        if "atom_type" not in mol or "bond_type" not in mol:
            raise ValueError(f"molecule {i}: needs 'atom_type' and 'bond_type', has {sorted(map(str, mol))}")
        tkey = TARGET_KEY if TARGET_KEY in mol else "target"
        if tkey not in mol:
            raise ValueError(f"molecule {i}: needs '{TARGET_KEY}' (or 'target')")
        atom_type = np.asarray(_to_numpy_any(mol["atom_type"]))
        bond_type = np.asarray(_to_numpy_any(mol["bond_type"]))
        target = np.asarray(_to_numpy_any(mol[tkey]), np.float64).reshape(-1)
    else:
        raise TypeError(f"molecule {i}: expected a dict or a jraph.GraphsTuple, got {type(mol).__name__}")
    n = atom_type.shape[0] if atom_type.ndim == 1 else -1
    if bond_type.shape != (n, n):
        raise ValueError(
            f"molecule {i}: atom_type {atom_type.shape} / bond_type {bond_type.shape} are not [n] / [n, n]")
    if target.size != 1:
        raise ValueError(f"molecule {i}: target has {target.size} values, expected 1")
    return atom_type, bond_type, float(target[0])


def _to_numpy_any(value):
    if hasattr(value, "detach"):  # torch tensor
        return value.detach().cpu().numpy()
    return value


def write_zinc_raw(root: str, split: str, molecules: Sequence, indices: Sequence[int] | None = None) -> str:
    """Write ``<root>/raw/<split>.pickle`` (and ``<split>.index`` when ``indices`` is given).

    ``molecules``: dicts with 'atom_type' [n], 'bond_type' [n, n] and 'logP_SA_cycle_normalized'
    (or 'target'), as numpy / torch / lists, or single-graph GraphsTuples as ``read_zinc`` returns.
    The pickle is structured like the originals: a list of dicts holding a LongTensor
    ``atom_type`` [n], a LongTensor ``bond_type`` [n, n], a float32 tensor
    ``logP_SA_cycle_normalized`` [1] and an int ``num_atom``, written with plain ``pickle.dump``
    (protocol 3). The index file is one comma-separated line ending in CRLF, like benchmarking-gnns'.
    Returns the raw folder.
    """
    if split not in SPLITS:
        raise ValueError(f"ZINC split must be one of {SPLITS}, got {split!r}")
    torch = _require_torch("write_zinc_raw")
    raw = os.path.join(os.fspath(root), "raw")
    os.makedirs(raw, exist_ok=True)
    entries = []
    for i, mol in enumerate(molecules):
        atom_type, bond_type, target = _molecule_arrays(mol, i)
        entries.append({
            "atom_type": torch.tensor(atom_type.astype(np.int64)),
            "bond_type": torch.tensor(bond_type.astype(np.int64)),
            TARGET_KEY: torch.tensor([target], dtype=torch.float32),
            "num_atom": int(atom_type.shape[0]),
        })
    with open(os.path.join(raw, f"{split}.pickle"), "wb") as f:
        pickle.dump(entries, f, protocol=3)
    if indices is not None:
        indices = [int(x) for x in indices]
        bad = [x for x in indices if not 0 <= x < len(entries)]
        if bad:
            raise ValueError(f"indices out of range for {len(entries)} molecules: {bad[:5]}")
        with open(os.path.join(raw, f"{split}.index"), "w", newline="") as f:
            f.write(",".join(map(str, indices)) + "\r\n")
    return raw


# ------------------------------------------------------------------------------------ statistics


def _graph_list(graphs) -> list[jraph.GraphsTuple]:
    return [graphs] if isinstance(graphs, jraph.GraphsTuple) else list(graphs)


def degree_histogram(graphs) -> np.ndarray:
    """int64 ``hist[d]`` = number of nodes with in-degree ``d`` (count of edges received).

    Same as PyG's ``PNAConv.get_degree_histogram`` / examples/pna.py (degree of
    ``edge_index[1]``, zero-degree nodes counted in bin 0). Accepts one GraphsTuple (batched
    or not) or an iterable of them. ZINC edges are symmetric, so in- and out-degree agree.
    """
    hist = np.zeros(1, np.int64)
    for g in _graph_list(graphs):
        num_nodes = int(np.sum(np.asarray(g.n_node)))
        deg = np.bincount(np.asarray(g.receivers, np.int64), minlength=num_nodes)[:num_nodes] if num_nodes else \
            np.zeros(0, np.int64)
        counts = np.bincount(deg)
        if counts.shape[0] > hist.shape[0]:
            hist = np.pad(hist, (0, counts.shape[0] - hist.shape[0]))
        hist[:counts.shape[0]] += counts
    return hist


def pna_delta(histogram_or_graphs) -> float:
    """PNA's delta: the mean over nodes of ``log(d + 1)`` (natural log, in-degree ``d``).

    PyG's ``DegreeScalerAggregation`` (``avg_deg_log``, from the histogram) and the PNA
    real-world benchmark (``avg_d['log'] = mean(log(D + 1))`` over all training nodes) define it
    this way; it is the denominator of the amplification / attenuation scalers. Takes a degree
    histogram or graph(s) (then :func:`degree_histogram` of them).
    """
    x = histogram_or_graphs
    if isinstance(x, jraph.GraphsTuple) or (
            isinstance(x, Sequence) and len(x) and isinstance(x[0], jraph.GraphsTuple)):
        hist = degree_histogram(x)
    else:
        hist = np.asarray(x, np.float64)
    if hist.ndim != 1 or hist.size == 0 or np.any(hist < 0):
        raise ValueError("pna_delta needs a 1-D non-negative degree histogram or graphs")
    total = hist.sum()
    if total == 0:
        raise ValueError("pna_delta: the histogram counts no nodes")
    return float(np.sum(np.log(np.arange(hist.size) + 1.0) * hist) / total)


def pna_average_degree(histogram_or_graphs) -> dict[str, float]:
    """``{"lin": mean d, "log": mean log(d + 1)}`` -- PyG's avg_deg_lin / avg_deg_log."""
    x = histogram_or_graphs
    if isinstance(x, jraph.GraphsTuple) or (
            isinstance(x, Sequence) and len(x) and isinstance(x[0], jraph.GraphsTuple)):
        x = degree_histogram(x)
    hist = np.asarray(x, np.float64)
    log = pna_delta(hist)  # validates the histogram
    return {"lin": float(np.sum(np.arange(hist.size) * hist) / hist.sum()), "log": log}


__all__ = [
    "NUM_ATOM_TYPES",
    "NUM_BOND_TYPES",
    "SPLITS",
    "UnsafePickleError",
    "ZincFormatError",
    "degree_histogram",
    "load_zinc_pickle",
    "pna_average_degree",
    "pna_delta",
    "read_zinc",
    "read_zinc_index",
    "write_zinc_raw",
    "zinc_raw_dir",
]
