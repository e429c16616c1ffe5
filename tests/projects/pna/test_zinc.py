"""ZINC raw reader: round trips, PyG-identical edges, subset indexing, restricted unpickling, errors."""
import os
import pickle
import sys

import jraph
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxmodels.projects.pna import zinc_data as zinc  # noqa: E402
from jaxmodels.projects.pna.zinc_data import (  # noqa: E402
    NUM_ATOM_TYPES,
    NUM_BOND_TYPES,
    UnsafePickleError,
    ZincFormatError,
    degree_histogram,
    pna_average_degree,
    pna_delta,
    read_zinc,
    write_zinc_raw,
)


def _molecule(n, seed):
    """A chain with one ring closure: symmetric bond codes in 1..3, zero diagonal."""
    rng = np.random.default_rng(seed)
    atom_type = rng.integers(0, NUM_ATOM_TYPES, size=n)
    bond_type = np.zeros((n, n), np.int64)
    for i in range(n - 1):
        bond_type[i, i + 1] = bond_type[i + 1, i] = rng.integers(1, NUM_BOND_TYPES)
    if n >= 4:
        bond_type[0, n - 1] = bond_type[n - 1, 0] = 1
    return atom_type, bond_type, float(rng.normal())


def _torch_entries(specs):
    """The original structure: list of dicts of torch tensors (+ int num_atom)."""
    return [{"atom_type": torch.tensor(a, dtype=torch.long), "bond_type": torch.tensor(b, dtype=torch.long),
             "logP_SA_cycle_normalized": torch.tensor([t], dtype=torch.float32), "num_atom": len(a)}
            for a, b, t in specs]


def _dump(path, obj, protocol=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


SPECS = [_molecule(n, seed) for seed, n in enumerate([5, 3, 7, 4, 6])]


def _check_graph(g, spec):
    atom_type, bond_type, target = spec
    n = len(atom_type)
    num_bonds = int(np.count_nonzero(np.triu(bond_type)))
    assert g.n_node.tolist() == [n] and g.n_edge.tolist() == [2 * num_bonds]
    for arr in (g.nodes["atom_type"], g.edges["bond_type"], g.senders, g.receivers, g.n_node, g.n_edge):
        assert arr.dtype == np.int32
    assert g.globals["target"].dtype == np.float32 and g.globals["target"].shape == (1,)
    np.testing.assert_allclose(g.globals["target"], [target], rtol=1e-6)
    np.testing.assert_array_equal(g.nodes["atom_type"], atom_type)
    # Symmetric: every directed edge has its reverse, with the same bond type.
    edges = {(s, r): t for s, r, t in zip(g.senders.tolist(), g.receivers.tolist(), g.edges["bond_type"].tolist())}
    assert all(edges[(r, s)] == t for (s, r), t in edges.items())
    dense = np.zeros((n, n), np.int64)
    dense[g.senders, g.receivers] = g.edges["bond_type"]
    np.testing.assert_array_equal(dense, bond_type)
    # Exactly PyG's edge_index / edge_attr (adj.nonzero() row-major).
    adj = torch.tensor(bond_type)
    edge_index = adj.nonzero(as_tuple=False).t()
    np.testing.assert_array_equal(g.senders, edge_index[0].numpy())
    np.testing.assert_array_equal(g.receivers, edge_index[1].numpy())
    np.testing.assert_array_equal(g.edges["bond_type"], adj[edge_index[0], edge_index[1]].numpy())


def test_constants():
    assert (NUM_ATOM_TYPES, NUM_BOND_TYPES) == (28, 4)


def test_write_zinc_raw_round_trip_and_subset(tmp_path):
    raw = write_zinc_raw(tmp_path, "train", [{"atom_type": a, "bond_type": b, "logP_SA_cycle_normalized": t}
                                             for a, b, t in SPECS], indices=[3, 0, 4])
    assert raw == os.path.join(tmp_path, "raw")
    with open(os.path.join(raw, "train.index"), "rb") as f:
        assert f.read() == b"3,0,4\r\n"  # benchmarking-gnns' files are one CRLF-terminated line
    subset = read_zinc(tmp_path, "train")
    assert len(subset) == 3
    for g, k in zip(subset, [3, 0, 4]):
        _check_graph(g, SPECS[k])
    full = read_zinc(tmp_path, "train", subset=False)
    assert len(full) == len(SPECS)
    for g, spec in zip(full, SPECS):
        _check_graph(g, spec)
    batch = jraph.batch(full)
    assert batch.globals["target"].shape == (len(SPECS),)
    # GraphsTuples written back give the same file contents.
    write_zinc_raw(tmp_path / "again", "val", full, indices=[1])
    (again,) = read_zinc(tmp_path / "again", "val")
    _check_graph(again, SPECS[1])


def test_written_pickle_has_original_structure(tmp_path):
    write_zinc_raw(tmp_path, "test", [{"atom_type": a, "bond_type": b, "target": t} for a, b, t in SPECS[:2]])
    with open(tmp_path / "raw" / "test.pickle", "rb") as f:
        data = pickle.load(f)  # our own freshly written file, in the test only
    assert isinstance(data, list) and len(data) == 2
    entry = data[0]
    assert set(entry) == {"atom_type", "bond_type", "logP_SA_cycle_normalized", "num_atom"}
    assert entry["atom_type"].dtype == torch.long and entry["atom_type"].shape == (5,)
    assert entry["bond_type"].dtype == torch.long and entry["bond_type"].shape == (5, 5)
    assert entry["logP_SA_cycle_normalized"].shape == (1,) and type(entry["num_atom"]) is int


@pytest.mark.parametrize("protocol", [2, 3, pickle.HIGHEST_PROTOCOL])
def test_reads_plain_pickle_dump_of_torch_tensors(tmp_path, protocol):
    _dump(tmp_path / "raw" / "val.pickle", _torch_entries(SPECS), protocol=protocol)
    (tmp_path / "raw" / "val.index").write_text("2,1\n")
    graphs = read_zinc(tmp_path, "val")
    assert [int(g.n_node[0]) for g in graphs] == [7, 3]
    _check_graph(graphs[0], SPECS[2])
    _check_graph(graphs[1], SPECS[1])


def test_benchmarking_gnns_folder_layout(tmp_path):
    # data/molecules/<split>.pickle directly under root (no raw/) is accepted as well.
    _dump(tmp_path / "test.pickle", _torch_entries(SPECS[:2]))
    (tmp_path / "test.index").write_bytes(b"1,0\r\n")
    graphs = read_zinc(tmp_path, "test")
    _check_graph(graphs[0], SPECS[1])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    entries = _torch_entries(SPECS[:1])
    entries[0]["num_atom"] = _Evil(marker)
    path = tmp_path / "raw" / "train.pickle"
    _dump(path, entries)
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle global '(posix|os|nt)\.system'") as info:
        read_zinc(tmp_path, "train", subset=False)
    assert str(path) in str(info.value)
    assert not marker.exists()


class _EvilStorage:
    """A storage-shaped payload whose inner bytes are an arbitrary pickle (not a torch storage)."""

    def __init__(self, marker):
        self.payload = pickle.dumps(_Evil(marker), protocol=2)

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.payload,)


def test_malicious_embedded_storage_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "raw" / "train.pickle"
    _dump(path, [_EvilStorage(marker)])
    pattern = r"refused an embedded tensor storage.*GLOBAL (posix|os|nt)\.system"
    with pytest.raises(UnsafePickleError, match=pattern) as info:
        read_zinc(tmp_path, "train", subset=False)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_torch_missing_gives_clear_import_error(tmp_path, monkeypatch):
    write_zinc_raw(tmp_path, "train", [{"atom_type": a, "bond_type": b, "target": t} for a, b, t in SPECS[:1]])
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="needs PyTorch"):
        read_zinc(tmp_path, "train", subset=False)


def _entries_with(k, **changes):
    entries = _torch_entries(SPECS[:3])
    for key, value in changes.items():
        if value is None:
            del entries[k][key]
        else:
            entries[k][key] = value
    return entries


@pytest.mark.parametrize("payload, index, pattern", [
    ({"not": "a list"}, None, r"top-level object is dict, expected a list"),
    (_entries_with(1, num_atom=None), None, r"entry 1 is missing key\(s\) \['num_atom'\]"),
    (_entries_with(2, logP_SA_cycle_normalized=None, atom_type=None),
     None, r"entry 2 is missing key\(s\) \['atom_type', 'logP_SA_cycle_normalized'\]"),
    (_entries_with(0, num_atom=4), None, r"entry 0: shape mismatch, num_atom = 4 but 'atom_type' has 5"),
    (_entries_with(1, bond_type=torch.zeros(3, 2, dtype=torch.long)), None, r"entry 1: 'bond_type' has shape \(3, 2\)"),
    (_entries_with(1, bond_type=torch.zeros(4, 4, dtype=torch.long)), None,
     r"entry 1: shape mismatch, 'bond_type' is \(4, 4\) but there are 3 atoms"),
    (_entries_with(0, logP_SA_cycle_normalized=torch.zeros(2)), None, r"entry 0: 'logP_SA_cycle_normalized' has shape"),
    (_entries_with(0, atom_type=torch.zeros(5)), None, r"entry 0: 'atom_type' has dtype float32"),
    (_entries_with(0, atom_type=torch.full((5,), 28)), None, r"entry 0: atom_type codes must lie in \[0, 28\)"),
    (_entries_with(1, bond_type=torch.tensor([[0, 1, 0], [0, 0, 0], [0, 0, 0]])), None,
     r"entry 1: 'bond_type' is not symmetric"),
    ([1, 2], None, r"entry 0 is int, expected a dict"),
    (_torch_entries(SPECS[:3]), "0,3\n", r"index out of range at entry 1: 3 \(the pickle has 3 molecules"),
    (_torch_entries(SPECS[:3]), "0,-1\n", r"index out of range at entry 1: -1"),
    (_torch_entries(SPECS[:3]), "0,x1,2\n", r"entry 1 is 'x1', not an integer"),
    (_torch_entries(SPECS[:3]), "0,1\n2\n", r"2 non-empty lines, expected exactly one line"),
    (_torch_entries(SPECS[:3]), "\n", r"empty index file"),
])
def test_malformed_files_name_file_and_problem(tmp_path, payload, index, pattern):
    pickle_path = tmp_path / "raw" / "train.pickle"
    _dump(pickle_path, payload)
    if index is not None:
        (tmp_path / "raw" / "train.index").write_text(index)
    bad_file = tmp_path / "raw" / ("train.index" if index is not None else "train.pickle")
    with pytest.raises(ZincFormatError, match=pattern) as info:
        read_zinc(tmp_path, "train", subset=index is not None)
    assert str(bad_file) in str(info.value)


def test_strict_false_reads_nonzero_entries_as_given(tmp_path):
    _dump(tmp_path / "raw" / "train.pickle",
          _entries_with(1, bond_type=torch.tensor([[0, 1, 0], [0, 0, 0], [0, 0, 0]])))
    g = read_zinc(tmp_path, "train", subset=False, strict=False)[1]
    assert g.senders.tolist() == [0] and g.receivers.tolist() == [1] and g.edges["bond_type"].tolist() == [1]


def test_missing_files_name_file_and_layout(tmp_path):
    with pytest.raises(ZincFormatError, match=r"not found: .*train\.pickle.*raw/\{train,val,test\}\.pickle") as info:
        read_zinc(tmp_path, "train")
    assert str(tmp_path / "raw" / "train.pickle") in str(info.value)
    write_zinc_raw(tmp_path, "train", [{"atom_type": a, "bond_type": b, "target": t} for a, b, t in SPECS[:1]])
    with pytest.raises(ZincFormatError, match=r"index file not found: .*train\.index.*subset=True"):
        read_zinc(tmp_path, "train")
    assert len(read_zinc(tmp_path, "train", subset=False)) == 1
    with pytest.raises(ValueError, match="split"):
        read_zinc(tmp_path, "valid")


def test_not_a_pickle(tmp_path):
    path = tmp_path / "raw" / "test.pickle"
    path.parent.mkdir()
    path.write_bytes(b"PK\x03\x04 this is a zip, not a pickle")
    with pytest.raises(ZincFormatError, match=r"not a readable pickle \(it is a zip archive") as info:
        read_zinc(tmp_path, "test", subset=False)
    assert str(path) in str(info.value)


def _graph(n_node, senders, receivers):
    senders, receivers = np.asarray(senders, np.int32), np.asarray(receivers, np.int32)
    return jraph.GraphsTuple(nodes=None, edges=None, senders=senders, receivers=receivers, globals=None,
                             n_node=np.asarray([n_node], np.int32), n_edge=np.asarray([len(senders)], np.int32))


def test_degree_histogram_and_pna_delta():
    path = _graph(3, [0, 1, 1, 2], [1, 0, 2, 1])  # in-degrees 1, 2, 1
    isolated = _graph(2, [0], [1])  # in-degrees 0, 1
    hist = degree_histogram([path, isolated])
    np.testing.assert_array_equal(hist, [1, 3, 1])
    np.testing.assert_array_equal(degree_histogram(jraph.batch([path, isolated])), hist)
    degrees = np.array([1, 2, 1, 0, 1], np.float64)
    expected = np.mean(np.log(degrees + 1))  # PNA realworld_benchmark: torch.mean(torch.log(D + 1))
    assert pna_delta(hist) == pytest.approx(expected)
    assert pna_delta([path, isolated]) == pytest.approx(expected)
    assert pna_average_degree(hist) == pytest.approx({"lin": degrees.mean(), "log": expected})
    with pytest.raises(ValueError):
        pna_delta(np.zeros(3))


def test_degree_statistics_on_read_graphs(tmp_path):
    write_zinc_raw(tmp_path, "train", [{"atom_type": a, "bond_type": b, "target": t} for a, b, t in SPECS])
    graphs = read_zinc(tmp_path, "train", subset=False)
    degrees = np.concatenate([np.count_nonzero(b, axis=0) for _, b, _ in SPECS])  # in-degree: column sums
    hist = degree_histogram(graphs)
    assert hist.sum() == degrees.size
    np.testing.assert_array_equal(hist, np.bincount(degrees))
    assert pna_delta(graphs) == pytest.approx(np.mean(np.log(degrees + 1.0)))
    assert zinc.SPLITS == ("train", "val", "test")
