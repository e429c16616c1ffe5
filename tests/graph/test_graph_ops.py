"""PNA aggregators and scalers against hand-computed values; padding masks; batching budgets."""
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
    it = batching.FixedBatches([batch, batch, batch], shuffle=True, seed=1)
    order = [id(next(it)) for _ in range(4)]
    state = it.get_state()
    assert state == {"epoch": 1, "index": 1}
    it2 = batching.FixedBatches([batch, batch, batch], shuffle=True, seed=1)
    it2.set_state(state)
    assert it2.get_state() == state and len(order) == 4
