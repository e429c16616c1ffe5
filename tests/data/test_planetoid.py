"""Planetoid reader on tiny hand-written ``ind.<name>.*`` files: node order, citeseer gaps, splits,
the restricted unpickler, and errors that name the bad file."""
import collections
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from jaxmodels.data.planetoid import UnsafePickleError, load_planetoid

# 10 nodes: x/y = nodes 0-1 (train), allx/ally = nodes 0-6, test ids {9, 7, 8} in file order.
NUM_CLASSES, DIM = 3, 4
ALLX_CLASSES = [0, 1, 2, 0, 1, 2, 0]
TEST_IDS = [9, 7, 8]
TEST_CLASSES = [2, 1, 0]


def _one_hot(classes):
    return np.eye(NUM_CLASSES, dtype=np.int32)[classes]


def _features(node_ids):
    """Row i encodes node id i so the reorder can be checked: [id, id, 1, 0]."""
    return sp.csr_matrix(np.array([[i, i, 1, 0] for i in node_ids], np.float32))


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_planetoid(root, name="toy", *, test_ids=TEST_IDS, test_classes=TEST_CLASSES, graph=None, **replace):
    graph = graph if graph is not None else collections.defaultdict(list, {
        0: [1, 9], 1: [0, 2, 2], 2: [1, 3], 3: [2, 3], 4: [5, 6], 5: [4], 6: [7], 7: [6, 8], 8: [7], 9: [0]})
    objects = dict(x=_features([0, 1]), y=_one_hot(ALLX_CLASSES[:2]), allx=_features(range(7)),
                   ally=_one_hot(ALLX_CLASSES), tx=_features(test_ids), ty=_one_hot(test_classes), graph=graph)
    objects.update(replace)
    for key, value in objects.items():
        _dump(os.path.join(root, f"ind.{name}.{key}"), value)
    with open(os.path.join(root, f"ind.{name}.test.index"), "w") as f:
        f.write("\n".join(str(i) for i in test_ids) + "\n")
    return root


def test_reads_adjacency_features_labels_and_split(tmp_path):
    data = load_planetoid(write_planetoid(tmp_path), "toy")
    assert data.num_nodes == 10 and data.num_classes == 3
    a = data.adjacency.toarray()
    assert np.array_equal(a, a.T), "adjacency must be symmetric"
    assert np.all(np.diag(a) == 0), "self loop 3-3 must be dropped"
    assert a[0, 9] == 1 and a[9, 0] == 1 and a[1, 2] == 1  # duplicate 1-2 collapses to 1
    assert a[6, 4] == 1, "4 lists 6 but 6 does not list 4: the edge must appear both ways"
    assert a.sum() == 2 * 8  # edges 0-1 0-9 1-2 2-3 4-5 4-6 6-7 7-8
    # test node test.index[j] gets tx[j]: features encode the node id
    np.testing.assert_array_equal(data.features[:, 0], np.arange(10))
    np.testing.assert_array_equal(data.labels, ALLX_CLASSES + [1, 0, 2])  # argmax; ids 7, 8, 9 <- classes 1, 0, 2
    np.testing.assert_array_equal(data.train_idx, [0, 1])
    np.testing.assert_array_equal(data.val_idx, np.arange(2, 7))  # capped at the allx rows
    np.testing.assert_array_equal(data.test_idx, [7, 8, 9])


def test_citeseer_style_gaps_in_the_test_index_get_zero_features_and_no_label(tmp_path):
    # test ids 7, 9, 11: ids 8 and 10 are isolated nodes missing from tx/ty (citeseer's fix)
    graph = collections.defaultdict(list, {i: [] for i in range(12)})
    graph[0], graph[11] = [11], [0]
    write_planetoid(tmp_path, "citeseer", test_ids=[11, 7, 9], test_classes=[2, 1, 0], graph=graph)
    data = load_planetoid(tmp_path, "citeseer")
    assert data.num_nodes == 12
    np.testing.assert_array_equal(data.test_idx, [7, 9, 11])
    np.testing.assert_array_equal(data.features[[8, 10]], 0.0)
    assert data.labels[8] == -1 and data.labels[10] == -1
    assert data.labels[11] == 2 and data.features[11, 0] == 11
    assert data.adjacency[0, 11] == 1 and data.adjacency[11, 0] == 1


class _Evil:
    def __reduce__(self):
        return os.system, ("echo pwned",)


@pytest.mark.parametrize("payload", [
    b"cos\nsystem\n(S'echo pwned'\ntR.",  # protocol 0, names os.system
    pickle.dumps(_Evil(), protocol=2),  # names posix.system (os.system's module) on Linux
])
def test_malicious_pickle_is_refused_and_names_the_file(tmp_path, payload):
    write_planetoid(tmp_path)
    path = tmp_path / "ind.toy.graph"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match="system") as info:
        load_planetoid(tmp_path, "toy")
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file_names_the_file(tmp_path):
    write_planetoid(tmp_path)
    os.remove(tmp_path / "ind.toy.ty")
    with pytest.raises(FileNotFoundError, match=r"ind\.toy\.ty"):
        load_planetoid(tmp_path, "toy")
    with pytest.raises(FileNotFoundError, match=r"ind\.cora\.x"):
        load_planetoid(tmp_path, "cora")


def test_truncated_pickle_names_the_file(tmp_path):
    write_planetoid(tmp_path)
    path = tmp_path / "ind.toy.allx"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"ind\.toy\.allx: not a readable pickle"):
        load_planetoid(tmp_path, "toy")


@pytest.mark.parametrize("replace, culprit", [
    (dict(ty=_one_hot([0, 1])), "ind.toy.ty"),  # 2 label rows for 3 test feature rows
    (dict(tx=_features([9, 7, 8])[:, :3]), "ind.toy.tx"),  # 3 feature columns instead of 4
    (dict(ally=np.eye(7, 5, dtype=np.int32)), "ind.toy.ally"),  # 5 label columns instead of 3
    (dict(y=[[1, 0, 0]]), "ind.toy.y"),  # a list, not an array
    (dict(graph=[[1], [0]]), "ind.toy.graph"),  # not a dict
    (dict(graph={0: [1], 1: [0, 42]}), "ind.toy.graph"),  # neighbour id out of range
])
def test_malformed_contents_name_the_file(tmp_path, replace, culprit):
    write_planetoid(tmp_path, **replace)
    with pytest.raises(ValueError, match=culprit.replace(".", r"\.")):
        load_planetoid(tmp_path, "toy")


def test_malformed_test_index_names_the_file(tmp_path):
    write_planetoid(tmp_path)
    index = tmp_path / "ind.toy.test.index"
    index.write_text("9\nseven\n8\n")
    with pytest.raises(ValueError, match=r"ind\.toy\.test\.index: expected one integer"):
        load_planetoid(tmp_path, "toy")
    index.write_text("9\n7\n")  # 2 ids for 3 tx rows
    with pytest.raises(ValueError, match=r"ind\.toy\.test\.index: 2 ids"):
        load_planetoid(tmp_path, "toy")
    index.write_text("9\n8\n10\n")  # must start right after the allx nodes (7)
    with pytest.raises(ValueError, match=r"ind\.toy\.test\.index: smallest test id is 8"):
        load_planetoid(tmp_path, "toy")
