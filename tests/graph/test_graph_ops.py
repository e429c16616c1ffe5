"""PNA aggregators and scalers against hand-computed values; padding masks; batching budgets."""
import json
import math

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from jaxmodels.graph import batching, ops

# 4 nodes: 0-1 and 0-2 (both directions), node 3 isolated. Messages = the sender's value.
X = np.array([[1.0], [2.0], [4.0], [8.0]], np.float32)
SENDERS = np.array([1, 2, 0, 0], np.int32)
RECEIVERS = np.array([0, 0, 1, 2], np.int32)


def _aggregate(name, **kwargs):
    degree = ops.in_degree(jnp.asarray(RECEIVERS), 4)
    messages = jnp.asarray(X)[SENDERS]
    return np.asarray(ops.AGGREGATORS[name](messages, jnp.asarray(RECEIVERS), 4, degree, **kwargs))[:, 0]


def test_degrees():
    np.testing.assert_array_equal(ops.in_degree(jnp.asarray(RECEIVERS), 4), [2, 1, 1, 0])


@pytest.mark.parametrize("name, expected", [
    ("sum", [6.0, 1.0, 1.0, 0.0]),
    ("mean", [3.0, 1.0, 1.0, 0.0]),
    ("max", [4.0, 1.0, 1.0, 0.0]),   # isolated node: 0, not -inf
    ("min", [2.0, 1.0, 1.0, 0.0]),   # isolated node: 0, not +inf
    ("var", [1.0, 0.0, 0.0, 0.0]),   # node 0: (4 + 16) / 2 - 3^2 = 1
])
def test_aggregators_by_hand(name, expected):
    np.testing.assert_allclose(_aggregate(name), expected, rtol=1e-6)


def test_std_has_the_epsilon_and_zero_for_empty_neighbourhoods():
    np.testing.assert_allclose(_aggregate("std"), [math.sqrt(1 + 1e-5), math.sqrt(1e-5), math.sqrt(1e-5), 0.0],
                               rtol=1e-6)


def test_std_gradient_is_finite_at_zero_variance():
    degree = ops.in_degree(jnp.asarray(RECEIVERS), 4)

    def total(x):
        return ops.aggregate_std(x[SENDERS], jnp.asarray(RECEIVERS), 4, degree).sum()

    grad = jax.grad(total)(jnp.asarray(X))
    assert np.all(np.isfinite(grad))
    # zero-variance neighbourhoods (nodes 1, 2 see only node 0) contribute no gradient to node 0's input
    np.testing.assert_allclose(grad[0], 0.0, atol=1e-6)


def test_scalers_by_hand():
    degree = jnp.array([2.0, 1.0, 1.0, 0.0])
    delta = 0.7
    identity, amp, att = ops.scaler_values(degree, ("identity", "amplification", "attenuation"), delta)
    np.testing.assert_allclose(identity, 1.0)
    np.testing.assert_allclose(amp, [math.log(3) / delta, math.log(2) / delta, math.log(2) / delta,
                                     math.log(2) / delta], rtol=1e-6)  # degree clamped to 1
    np.testing.assert_allclose(att, [delta / math.log(3), delta / math.log(2), delta / math.log(2),
                                     delta / math.log(2)], rtol=1e-6)
    assert np.all(np.isfinite(att))


def test_unknown_scaler_is_named():
    with pytest.raises(ValueError, match="softmax"):
        ops.scaler_values(jnp.ones(2), ("softmax",), 1.0)


def _graph(n, edges, value=1.0):
    senders = np.array([s for s, _ in edges], np.int32)
    receivers = np.array([r for _, r in edges], np.int32)
    return jraph.GraphsTuple(nodes=np.full((n, 2), value, np.float32), edges=None, senders=senders,
                             receivers=receivers, globals=np.zeros((1, 1), np.float32),
                             n_node=np.array([n], np.int32), n_edge=np.array([len(edges)], np.int32))


def test_padding_masks_and_budget_errors():
    graphs = [_graph(3, [(0, 1), (1, 0)]), _graph(2, [(0, 1)])]
    budget = batching.PaddingBudget(n_node=8, n_edge=6, n_graph=4)
    padded = batching.pad_graphs(batching.batch_graphs(graphs), budget)
    assert padded.nodes.shape == (8, 2) and padded.senders.shape == (6,) and padded.n_node.shape == (4,)
    np.testing.assert_array_equal(ops.node_mask(padded), [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(ops.edge_mask(padded), [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(ops.graph_mask(padded), [1, 1, 0, 0])
    np.testing.assert_array_equal(padded.senders[:3], [0, 1, 3])  # second graph offset by 3 nodes
    # the masks also work under jit on traced arrays
    jitted = jax.jit(lambda g: (ops.node_mask(g), ops.graph_mask(g)))(jax.tree.map(jnp.asarray, padded))
    np.testing.assert_array_equal(jitted[1], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="5 nodes"):
        batching.pad_graphs(batching.batch_graphs(graphs), batching.PaddingBudget(5, 6, 4))


def test_estimate_budget_fits_every_batch():
    rng = np.random.default_rng(0)
    graphs = [_graph(int(n), [(0, 1)] * int(e)) for n, e in zip(rng.integers(2, 20, 50), rng.integers(1, 30, 50))]
    budget = batching.estimate_budget(graphs, 8, round_to=16)
    assert budget.n_node % 16 == 0 and budget.n_graph == 9
    for start in range(0, 50, 8):
        batching.make_batch(graphs[start:start + 8], budget)  # never raises
    assert batching.estimate_budget(graphs, 8, round_to="pow2").n_node & (batching.estimate_budget(
        graphs, 8, round_to="pow2").n_node - 1) == 0


def test_make_batch_shards_and_fixed_batches_state():
    graphs = [_graph(3, [(0, 1)], value=i) for i in range(5)]
    budget = batching.PaddingBudget(n_node=16, n_edge=8, n_graph=4)
    batch = batching.make_batch(graphs, budget, num_shards=2)
    assert batch.nodes.shape == (2, 16, 2)
    np.testing.assert_array_equal(batch.n_node[:, :3], [[3, 3, 3], [3, 3, 10]])
    it = batching.FixedBatches([graphs, graphs[:2], graphs[3:]], budget, num_shards=2, shuffle=True, seed=1)
    first = [next(it) for _ in range(4)]
    state = it.get_state()
    assert state == {"epoch": 1, "position": 1}
    it2 = batching.FixedBatches([graphs, graphs[:2], graphs[3:]], budget, num_shards=2, shuffle=True, seed=1)
    it2.set_state(json.loads(json.dumps(state)))
    expected = [next(it) for _ in range(3)]
    for x, y in zip(expected, [next(it2) for _ in range(3)]):
        jax.tree.map(np.testing.assert_array_equal, x, y)
    # the old {"epoch", "index"} state (fixed batches consumed) resumes at the same batch
    it3 = batching.FixedBatches([graphs, graphs[:2], graphs[3:]], budget, num_shards=2, shuffle=True, seed=1)
    it3.set_state({"epoch": 1, "index": 1})
    jax.tree.map(np.testing.assert_array_equal, next(it3), expected[0])
    assert len(first) == 4


def _graph_ids(batch) -> list[list[int]]:
    """The node values (= graph ids, see _graph) of each shard's real graphs."""
    ids = []
    for shard in range(batch.n_node.shape[0]):
        real = np.asarray(ops.node_mask(jax.tree.map(lambda x: x[shard], batch)))
        values = batch.nodes[shard][real, 0].astype(int)
        ids.append(sorted(set(values.tolist()), key=values.tolist().index))
    return ids


@pytest.mark.parametrize("num_shards", [2, 4])
def test_fixed_batches_on_two_processes_hold_the_one_process_shards(num_shards):
    graphs = [_graph(2 + i % 3, [(0, 1)], value=i) for i in range(14)]
    batches = [graphs[:5], graphs[5:9], graphs[9:]]
    budget = batching.budget_for_batches(batches, num_shards, round_to=8)

    def make(index, count):
        return batching.FixedBatches(batches, budget, num_shards=num_shards, shuffle=True, seed=3,
                                     process_index=index, process_count=count)

    single, halves = make(0, 1), [make(0, 2), make(1, 2)]
    for _ in range(5):
        whole = next(single)
        parts = [next(h) for h in halves]
        assert all(p.nodes.shape[0] == num_shards // 2 for p in parts)
        jax.tree.map(lambda w, a, b: np.testing.assert_array_equal(w, np.concatenate([a, b])), whole, *parts)
        ids = [_graph_ids(p) for p in parts]
        flat = [sorted(sum(i, [])) for i in ids]
        assert not set(flat[0]) & set(flat[1])
        assert sorted(flat[0] + flat[1]) == sorted(sum(_graph_ids(whole), []))
    assert halves[0].get_state() == halves[1].get_state() == single.get_state()


def test_graph_batch_iterator_keeps_the_old_order_and_slices_by_process():
    graphs = [_graph(2 + i % 4, [(0, 1)], value=i) for i in range(23)]
    budget = batching.estimate_budget(graphs, 3, round_to=8)
    it = batching.GraphBatchIterator(graphs, 6, budget, num_shards=2, seed=5)
    ids = [sum(_graph_ids(next(it)), []) for _ in range(7)]
    # the order of the iterator this one replaced: (seed, epoch) permutations, 3 full batches an epoch
    old = [np.random.default_rng([5, e]).permutation(23)[b * 6:(b + 1) * 6].tolist() for e in range(3) for b in range(3)]
    assert ids == old[:7]
    assert it.get_state() == {"epoch": 2, "position": 6}
    halves = [batching.GraphBatchIterator(graphs, 6, budget, num_shards=2, seed=5, process_index=p, process_count=2)
              for p in range(2)]
    for expected in old[:4]:
        assert [sum(_graph_ids(next(h)), []) for h in halves] == [expected[:3], expected[3:]]
    resumed = batching.GraphBatchIterator(graphs, 6, budget, num_shards=2, seed=5)
    resumed.set_state({"epoch": 1, "index": 2})  # an old checkpoint's state: batches consumed
    assert sum(_graph_ids(next(resumed)), []) == old[5]


def test_eval_batches_are_split_over_processes():
    graphs = [_graph(3, [(0, 1)], value=i) for i in range(7)]
    budget = batching.PaddingBudget(n_node=16, n_edge=8, n_graph=4)
    whole = batching.eval_batches(graphs, 4, budget, 2, process_index=0, process_count=1)
    parts = [batching.eval_batches(graphs, 4, budget, 2, process_index=p, process_count=2) for p in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 2
    for w, a, b in zip(whole, *parts):
        jax.tree.map(lambda x, y, z: np.testing.assert_array_equal(x, np.concatenate([y, z])), w, a, b)
    assert [_graph_ids(b) for b in whole] == [[[0, 1], [2, 3]], [[4, 5], [6]]]
