"""Tests for jaxmodels.projects.pna.multitask_data (the PNA multitask benchmark generator).

All generation here is scaled down (a few graphs per batch); the paper's sizes are only checked
through ``split_specs``.
"""
import dataclasses
import logging
import os
import warnings

import networkx as nx
import numpy as np
import pytest

from jaxmodels.projects.pna import multitask_data as pm

SMALL = {"train": 3, "val": 2, "default": 2}  # 30 + 10 + 10 graphs


@pytest.fixture(scope="module")
def official():
    return pm.generate_dataset(seed=11, graphs_per_batch=SMALL, verbose=False)


@pytest.fixture(scope="module")
def exact():
    return pm.generate_dataset(seed=11, connectivity="exact", graphs_per_batch=SMALL,
                               verbose=False)


def _graphs(dataset):
    """(split, adjacency, features, node_labels, graph_labels, type) for every graph."""
    for split, batches in dataset.splits.items():
        for b in batches:
            for g in range(len(b)):
                yield (split, b.adjacency[g], b.features[g], b.node_labels[g], b.graph_labels[g],
                       int(b.graph_types[g]))


def _nx(adjacency):
    return nx.from_numpy_array(adjacency.astype(np.float64))


# The first 8 graphs of the official script (train batch 0, N = 15, --seed 1234), recorded by
# running the repository's graph_generation.py / graph_algorithms.py with global seeding under
# networkx 3.6.1: (type, edges, sssp source, diameter, official is_connected, value of node 0).
# Four of them needed regeneration (the seed counter reached 1245 after 8 graphs).
OFFICIAL_FIRST_GRAPHS = [
    ("LOBSTER", 13, 13, 4, False, 0.262049), ("LINE", 14, 7, 14, False, 0.720656),
    ("LOBSTER", 14, 0, 2, False, 0.764032), ("LOBSTER", 14, 0, 10, False, 0.667183),
    ("CATERPILLAR", 14, 1, 2, False, 0.645924), ("LOBSTER", 13, 6, 5, False, 0.908643),
    ("LADDER", 18, 9, 9, False, 0.813873), ("BARABASI_ALBERT", 57, 1, 2, True, 0.870821),
]


@pytest.mark.skipif(nx.__version__ != "3.6.1", reason="reference recorded with networkx 3.6.1")
def test_first_graphs_match_the_official_script():
    data = pm.generate_dataset(seed=1234, graphs_per_batch={"train": 8, "val": 1, "default": 1},
                               verbose=False)
    b = data.splits["train"][0]
    got = [(name, int(b.adjacency[g].sum()) // 2, int(np.argmax(b.features[g, :, 0])),
            int(b.graph_labels[g, 1]), bool(b.graph_labels[g, 0]), round(float(b.features[g, 0, 1]), 6))
           for g, name in enumerate(b.graph_type_names)]
    assert got == OFFICIAL_FIRST_GRAPHS


def test_seed_counter_regenerates_with_next_seed_and_continues_across_splits():
    sizes = {"train": 2, "val": 2, "default": 1}
    data = pm.generate_dataset(seed=5, graphs_per_batch=sizes, verbose=False)
    counter, regenerated = 5, 0
    for spec in pm.split_specs(False, sizes):
        for batch, (size, N) in enumerate(zip(spec.batch_sizes, spec.node_counts)):
            for g in range(size):
                counter += 1
                adj, values, kind = pm.generate_graph(N, pm.GraphType.RANDOM, seed=counter)
                while adj.max(axis=0).min() == 0:
                    counter += 1
                    regenerated += 1
                    adj, values, again = pm.generate_graph(N, kind, seed=counter)
                    assert again == kind
                got = data.splits[spec.name][batch]
                np.testing.assert_array_equal(got.adjacency[g], adj)
                np.testing.assert_array_equal(got.features[g, :, 1], values.astype(np.float32))
                assert got.graph_types[g] == kind
    assert regenerated > 0  # the regeneration path was exercised


def test_node_labels_match_networkx(official):
    for _, adj, features, node_labels, _, _ in _graphs(official):
        G, N = _nx(adj), adj.shape[0]
        source = int(np.argmax(features[:, 0]))
        lengths = nx.shortest_path_length(G, source)
        expected_sssp = [lengths.get(v, 0) for v in range(N)]  # unreachable = 0
        np.testing.assert_array_equal(node_labels[:, 0], expected_sssp)
        # eccentricity: the largest distance to a reachable node (= nx.eccentricity if connected)
        expected_ecc = [max(nx.shortest_path_length(G, v).values()) for v in range(N)]
        np.testing.assert_array_equal(node_labels[:, 1], expected_ecc)
        if nx.is_connected(G):
            np.testing.assert_array_equal(node_labels[:, 1], [nx.eccentricity(G)[v] for v in range(N)])
        laplacian = nx.laplacian_matrix(G, nodelist=range(N)).toarray()
        np.testing.assert_allclose(node_labels[:, 2], laplacian @ features[:, 1].astype(np.float64),
                                   rtol=1e-5, atol=1e-5)


def test_graph_labels_match_networkx(official, exact):
    n_connected = n_bipartite_connected = 0
    for (_, adj, _, _, labels, _), (_, adj_exact, _, _, labels_exact, _) in zip(
            _graphs(official), _graphs(exact)):
        np.testing.assert_array_equal(adj, adj_exact)  # connectivity mode only changes a label
        G = _nx(adj)
        connected = nx.is_connected(G)
        n_connected += connected
        assert labels_exact[0] == connected
        # official quirk: min(A^(2^k)) > 0 <=> connected and not bipartite (no overflow for N < 25)
        assert labels[0] == (connected and not nx.is_bipartite(G))
        n_bipartite_connected += connected and nx.is_bipartite(G)
        expected_diameter = max(nx.diameter(G.subgraph(c)) for c in nx.connected_components(G))
        if connected:
            assert expected_diameter == nx.diameter(G)
        assert labels[1] == labels_exact[1] == expected_diameter
        radius = np.abs(np.linalg.eigvalsh(adj.astype(np.float64))).max()
        np.testing.assert_allclose(labels[2], radius, rtol=1e-5)
        assert labels[2] == labels_exact[2]
    assert n_connected > 0 and n_bipartite_connected > 0  # both cases were exercised


def test_official_connectivity_quirk():
    path = nx.to_numpy_array(nx.path_graph(6))
    triangle = nx.to_numpy_array(nx.cycle_graph(3))
    two_triangles = nx.to_numpy_array(nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3)))
    assert pm.is_connected_official(path) is False  # connected but bipartite
    assert pm.is_connected_exact(path) is True
    assert pm.is_connected_official(triangle) is True and pm.is_connected_exact(triangle) is True
    assert not pm.is_connected_official(two_triangles) and not pm.is_connected_exact(two_triangles)
    assert pm.graph_labels(path, "official")[0] == 0 and pm.graph_labels(path, "exact")[0] == 1
    with pytest.raises(ValueError, match="connectivity"):
        pm.graph_labels(path, "approximate")


def test_official_connectivity_overflow_is_silent():
    complete = nx.to_numpy_array(nx.complete_graph(100))  # 99^256 overflows float64 to inf
    two_cliques = nx.to_numpy_array(nx.disjoint_union(nx.complete_graph(50), nx.complete_graph(50)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pm.is_connected_official(complete) is True
        assert pm.is_connected_official(two_cliques) is False


def test_same_seed_same_data_and_different_seed_different_data(official):
    again = pm.generate_dataset(seed=11, graphs_per_batch=SMALL, verbose=False)
    # Not seed=12: per-graph seeds are seed+1, seed+2, ... so neighbouring seeds give shifted,
    # largely overlapping datasets (as in the official script).
    other = pm.generate_dataset(seed=5011, graphs_per_batch=SMALL, verbose=False)
    for split in official.splits:
        for a, b, c in zip(official.splits[split], again.splits[split], other.splits[split]):
            for field in ("adjacency", "features", "node_labels", "graph_labels", "graph_types"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            assert not np.array_equal(a.features, c.features)


def test_adjacency_and_features_are_well_formed(official):
    for _, adj, features, node_labels, _, _ in _graphs(official):
        assert adj.dtype == np.float32 and features.dtype == np.float32
        assert set(np.unique(adj)) <= {0.0, 1.0}
        np.testing.assert_array_equal(adj, adj.T)
        assert np.all(np.diag(adj) == 0)
        assert np.all(adj.sum(axis=0) > 0)  # no isolated node
        assert features[:, 0].sum() == 1 and set(np.unique(features[:, 0])) == {0.0, 1.0}
        source = int(np.argmax(features[:, 0]))
        assert node_labels[source, 0] == 0
        assert np.all(node_labels[adj[source] > 0, 0] == 1)
        assert np.all((features[:, 1] >= 0) & (features[:, 1] < 1))


def test_split_shapes_and_sizes(official):
    assert list(official.splits) == ["train", "val", "test"]
    expected = {"train": (3, range(15, 25)), "val": (2, range(15, 20)), "test": (2, range(15, 20))}
    for split, (size, node_counts) in expected.items():
        batches = official.splits[split]
        assert [b.num_nodes for b in batches] == list(node_counts)
        for b in batches:
            N = b.num_nodes
            assert b.adjacency.shape == (size, N, N) and b.features.shape == (size, N, 2)
            assert b.node_labels.shape == (size, N, 3) and b.graph_labels.shape == (size, 3)
            assert b.graph_types.shape == (size,)
            assert b.node_labels.dtype == b.graph_labels.dtype == np.float32
    assert official.num_graphs("train") == 30


def test_paper_split_configuration():
    specs = {s.name: s for s in pm.split_specs()}
    assert list(specs) == ["train", "val", "test"]
    assert specs["train"].batch_sizes == (512,) * 10
    assert specs["train"].node_counts == tuple(range(15, 25))
    assert specs["val"].batch_sizes == (128,) * 5 and specs["val"].node_counts == tuple(range(15, 20))
    assert specs["test"].batch_sizes == (256,) * 5 and specs["test"].node_counts == tuple(range(15, 20))
    assert sum(s.num_graphs for s in specs.values()) == 7040
    extrapolation = pm.split_specs(extrapolation=True)
    names = [s.name for s in extrapolation]
    assert names == ["train", "val"] + [f"test-({a},{a + 5})"
                                        for a in (20, 25, 30, 35, 40, 45, 60, 75, 95)]
    for s in extrapolation[2:]:
        low = int(s.name[len("test-("):].split(",")[0])
        assert s.batch_sizes == (256,) * 5 and s.node_counts == tuple(range(low, low + 5))
    assert pm.split_specs(graphs_per_batch=2)[0].batch_sizes == (2,) * 10
    with pytest.raises(ValueError, match="unknown splits"):
        pm.split_specs(graphs_per_batch={"tset": 3})


def test_scaled_down_extrapolation_generation():
    data = pm.generate_dataset(seed=3, extrapolation=True, graphs_per_batch=1, verbose=False)
    assert "test" not in data.splits
    big = data.splits["test-(95,100)"]
    assert [b.num_nodes for b in big] == [95, 96, 97, 98, 99]
    for b in big:
        assert np.all(b.adjacency.sum(axis=1) > 0)
        G = _nx(b.adjacency[0])
        assert b.graph_labels[0, 1] == max(nx.diameter(G.subgraph(c)) for c in nx.connected_components(G))


# graph_generation.MIXTURE
PAPER_MIXTURE = {"ERDOS_RENYI": 0.2, "BARABASI_ALBERT": 0.2, "GRID": 0.05, "CAVEMAN": 0.05,
                 "TREE": 0.15, "LADDER": 0.05, "LINE": 0.05, "STAR": 0.05, "CATERPILLAR": 0.1,
                 "LOBSTER": 0.1}


def test_mixture_frequencies():
    data = pm.generate_dataset(seed=100, graphs_per_batch={"train": 40, "val": 1, "default": 1},
                               verbose=False)
    types = np.concatenate([b.graph_types for b in data.splits["train"]])
    n = len(types)
    assert n == 400
    assert {kind.name: p for kind, p in pm.MIXTURE} == PAPER_MIXTURE
    for name, p in PAPER_MIXTURE.items():
        count = int(np.sum(types == pm.GraphType[name]))
        tolerance = 4.5 * np.sqrt(n * p * (1 - p)) + 2
        assert abs(count - n * p) <= tolerance, (name, count, n * p)
    assert set(np.unique(types)) == {int(pm.GraphType[name]) for name in PAPER_MIXTURE}


def test_normalisation_divides_by_training_max(official):
    normalised = official.normalised()
    raw_max = official.training_label_max()
    np.testing.assert_array_equal(normalised.label_max, raw_max)
    np.testing.assert_array_equal(normalised.training_label_max(), np.ones(6, np.float32))
    assert raw_max[0] >= 2 and raw_max[4] >= 2  # sssp / diameter are not already in [0, 1]
    for raw, norm in zip(official.splits["test"], normalised.splits["test"]):
        np.testing.assert_allclose(norm.node_labels, raw.node_labels / raw_max[:3], rtol=1e-6)
        np.testing.assert_allclose(norm.graph_labels, raw.graph_labels / raw_max[3:], rtol=1e-6)
        np.testing.assert_array_equal(norm.adjacency, raw.adjacency)
    assert normalised.normalised() is normalised
    assert official.label_max is None


def _toy_dataset():
    """Two train batches of different sizes/N and one val batch, with hand-picked labels."""
    def batch(adjacency, node, graph):
        adjacency = np.asarray(adjacency, np.float32)
        B, N = adjacency.shape[:2]
        return pm.MultitaskBatch(adjacency, np.zeros((B, N, 2), np.float32),
                                 np.asarray(node, np.float32), np.asarray(graph, np.float32),
                                 np.zeros(B, np.int8))
    path3 = [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    triangle = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    edge = [[0, 1], [1, 0]]
    train = [batch([path3], np.full((1, 3, 3), 2.0), [[1.0, 4.0, 2.0]]),
             batch([edge, edge, edge], np.full((3, 2, 3), 1.0), [[0, 2, 1]] * 3)]
    val = [batch([triangle], np.full((1, 3, 3), 1.0), [[1.0, 4.0, 2.0]])]
    return pm.MultitaskDataset(splits={"train": train, "val": val}), path3, triangle


def test_baseline_mse_weights_batches_equally():
    data, _, _ = _toy_dataset()
    # train max: node (2, 2, 2), graph (1, 4, 2); normalised train node labels are 1 (batch 0)
    # and 0.5 (batch 1) -> mean of batch means 0.75 (a graph-weighted mean would be 0.625).
    baseline = data.baseline_mse("val")
    assert list(baseline) == list(pm.TASKS)
    for task in pm.NODE_TASKS:
        assert baseline[task] == pytest.approx((0.5 - 0.75) ** 2)
    # graph means: is_connected (1 + 0)/2, diameter (1 + 0.5)/2, spectral radius (1 + 0.5)/2
    assert baseline["is_connected"] == pytest.approx(0.25)
    assert baseline["diameter"] == pytest.approx(0.0625)
    assert baseline["spectral_radius"] == pytest.approx(0.0625)
    train = data.baseline_mse("train")  # batch 0 error 0.25^2, batch 1 error 0.25^2 per node task
    assert train["sssp"] == pytest.approx(0.0625)


def test_degree_statistics_average_batch_means():
    data, _, _ = _toy_dataset()
    stats = data.degree_statistics()
    # batch 0: degrees (1, 2, 1); batch 1: all degrees 1
    assert stats["log"] == pytest.approx(((2 * np.log(2) + np.log(3)) / 3 + np.log(2)) / 2)
    assert stats["lin"] == pytest.approx((4 / 3 + 1) / 2)
    assert stats["exp"] == pytest.approx((((np.e - 1) * 2 + np.exp(0.5) - 1) / 3 + np.e - 1) / 2)


def test_degree_statistics_on_generated_data(official):
    stats = official.degree_statistics()
    degrees = [b.adjacency.sum(-1) for b in official.splits["train"]]
    assert stats["log"] == pytest.approx(np.mean([np.log(d + 1).mean() for d in degrees]), rel=1e-6)
    assert 1.0 < stats["log"] < 3.0


def test_cache_round_trip_and_no_rewrite(tmp_path, monkeypatch):
    first = pm.load_or_generate(tmp_path, seed=21, graphs_per_batch=1, verbose=False)
    path = pm.cache_path(tmp_path, seed=21, graphs_per_batch=1)
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # no temporary file left behind
    assert f"v{pm.FORMAT_VERSION}" in path and "seed21" in path and "official" in path
    stat = os.stat(path)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although the cache exists")
    monkeypatch.setattr(pm, "generate_dataset", fail)
    second = pm.load_or_generate(tmp_path, seed=21, graphs_per_batch=1, verbose=False)
    assert os.stat(path).st_mtime_ns == stat.st_mtime_ns and os.listdir(tmp_path) == [os.path.basename(path)]
    assert list(second.splits) == list(first.splits)
    for split in first.splits:
        for a, b in zip(first.splits[split], second.splits[split]):
            for field in ("adjacency", "features", "node_labels", "graph_labels", "graph_types"):
                x, y = getattr(a, field), getattr(b, field)
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)
    assert (second.seed, second.connectivity, second.extrapolation) == (21, "official", False)


def test_cache_names_differ_by_parameters(tmp_path):
    names = {pm.cache_path(tmp_path, seed=s, extrapolation=e, connectivity=c, graphs_per_batch=g)
             for s in (1, 2) for e in (False, True) for c in pm.CONNECTIVITY_MODES for g in (None, 1)}
    assert len(names) == 16


def test_corrupt_cache_raises_naming_the_file(tmp_path):
    path = pm.cache_path(tmp_path, seed=4, graphs_per_batch=1)
    with open(path, "wb") as f:
        f.write(b"not an npz file")
    with pytest.raises(pm.CacheError) as error:
        pm.load_or_generate(tmp_path, seed=4, graphs_per_batch=1, verbose=False)
    assert path in str(error.value) and "Delete it" in str(error.value)
    with open(path, "rb") as f:
        assert f.read() == b"not an npz file"  # never silently overwritten


def test_mismatched_cache_raises(tmp_path):
    source = pm.load_or_generate(tmp_path, seed=8, graphs_per_batch=1, verbose=False)
    assert source.num_graphs("train") == 10
    path = pm.cache_path(tmp_path, seed=9, graphs_per_batch=1)
    os.replace(pm.cache_path(tmp_path, seed=8, graphs_per_batch=1), path)
    with pytest.raises(pm.CacheError, match="differ"):
        pm.load_or_generate(tmp_path, seed=9, graphs_per_batch=1, verbose=False)


def test_batch_validates_shapes():
    with pytest.raises(ValueError, match="features"):
        pm.MultitaskBatch(np.zeros((2, 3, 3), np.float32), np.zeros((2, 3, 1), np.float32),
                          np.zeros((2, 3, 3), np.float32), np.zeros((2, 3), np.float32),
                          np.zeros(2, np.int8))


def test_progress_note_goes_to_the_log(capsys, caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        pm.generate_dataset(seed=1, graphs_per_batch=1, verbose=True)
    assert capsys.readouterr().out == "" and "generating 20 graphs" in caplog.text


def test_normalised_keeps_other_fields(official):
    normalised = official.normalised()
    assert dataclasses.replace(normalised, splits={}, label_max=None) == dataclasses.replace(
        official, splits={}, label_max=None)
