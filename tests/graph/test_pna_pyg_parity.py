"""``PNALayer`` computes PyTorch Geometric's ``PNAConv`` (torch_geometric 2.8.1) on the same weights.

A PyG ``PNAConv`` with random weights is converted into our parameter layout
(:func:`pna_conv_params_from_pyg`), both layers run on the same graph and features, and the real
nodes' outputs must agree to 1e-4 (float32, max abs diff). Our graph is padded jraph-style (padding
nodes with zero features, padding edges on the first padding node), so the comparison also checks
that padding does not leak into real nodes. PyG runs on the unpadded graph.

Covered: towers 1 and 3, ``divide_input`` True and False, without and with edge features
(PyG's shared ``edge_encoder`` Linear(edge_dim, F_in) is folded into our per-tower ``pre_edge`` and
``pre_bias``), undirected graphs (both directions listed) with an isolated node and a degree-1 node,
and a directed graph (nodes with in-degree 0 but outgoing edges).

Differences that are configuration, not bugs:

* std aggregator: ours is sqrt(relu(var) + std_eps); PyG's ``StdAggregation`` is
  clamp(var, 1e-5).sqrt() set to 0 where <= sqrt(1e-5). With ``std_eps=0.0`` the two are equal
  except where 0 < var < 1e-5 (PyG gives 0, ours sqrt(var) < 3.2e-3); the test uses ``std_eps=0.0``
  and asserts that no node's message variance falls in that band (with a margin), so the check is exact.
  Degree-1 nodes have var exactly 0 in both (E[m^2] - E[m]^2 with one message is 0 in float32).
* delta: our ``delta`` is PyG's ``avg_deg['log']`` = sum_d log(d + 1) hist[d] / sum_d hist[d] of the
  same in-degree histogram (``aggr_module.avg_deg_log``).
* mixing: PyG's final ``lin`` is our ``mixing="linear"``.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyg_conv = pytest.importorskip("torch_geometric.nn.conv")

from jaxmodels.graph import batching  # noqa: E402
from jaxmodels.graph.layers import topology  # noqa: E402
from jaxmodels.graph.pna import PNALayer  # noqa: E402

AGGREGATORS = ["mean", "min", "max", "std"]
SCALERS = ["identity", "amplification", "attenuation"]
TOLERANCE = 1e-4


# ----------------------------------------------------------------------------------------------
# PyG PNAConv -> our PNALayer parameters


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def pna_conv_params_from_pyg(conv) -> dict:
    """``torch_geometric.nn.PNAConv`` -> the ``params`` dict of an equivalent ``PNALayer``.

    The equivalent layer: ``PNALayer(conv.out_channels, aggregators=<conv's>, scalers=<conv's>,
    delta=float(conv.aggr_module.avg_deg_log), towers=conv.towers, divide_input=conv.divide_input,
    pre_layers=..., post_layers=..., use_edge_features=conv.edge_dim is not None, mixing="linear",
    std_eps=0.0)``. PyG's ``Linear`` is y = x W^T + b (W [out, in]); per tower t:

    * pre_nns[t][0].weight [F, 2F (+F)] over [x_i, x_j, (edge_encoder(e))]:
      ``pre_receiver[t] = W[:, :F]^T``, ``pre_sender[t] = W[:, F:2F]^T``; with edge features the
      encoder (W_enc [F, Fe], b_enc) is folded in: ``pre_edge[t] = (W[:, 2F:] W_enc)^T`` and
      ``pre_bias[t] = b + W[:, 2F:] b_enc``.
    * deeper pre layers (indices 2, 4, ... of the Sequential, after the activations) -> ``pre_{i}``.
    * post_nns[t][0].weight [F_out, (1 + S*A) F] over [x, scaler-major/aggregator-minor aggregates]
      -> ``post_0[t] = W^T`` (the same row order as ours), deeper post layers -> ``post_{i}``.
    * ``lin`` -> ``mixing`` (kernel = weight^T).
    """
    towers, f = conv.towers, conv.F_in
    params: dict = {}

    def stack(fn):
        return np.stack([fn(t) for t in range(towers)])

    pre0 = [conv.pre_nns[t][0] for t in range(towers)]
    params["pre_receiver"] = stack(lambda t: _np(pre0[t].weight)[:, :f].T)
    params["pre_sender"] = stack(lambda t: _np(pre0[t].weight)[:, f:2 * f].T)
    bias = stack(lambda t: _np(pre0[t].bias))
    if conv.edge_dim is not None:
        w_enc, b_enc = _np(conv.edge_encoder.weight), _np(conv.edge_encoder.bias)  # [F, Fe], [F]
        w_edge_blocks = [_np(pre0[t].weight)[:, 2 * f:] for t in range(towers)]  # [F, F] each
        params["pre_edge"] = np.stack([(w @ w_enc).T for w in w_edge_blocks])  # [T, Fe, F]
        bias = bias + np.stack([w @ b_enc for w in w_edge_blocks])
    params["pre_bias"] = bias
    deeper_pre = [m for m in conv.pre_nns[0] if isinstance(m, torch.nn.Module) and hasattr(m, "weight")][1:]
    for i in range(1, len(deeper_pre) + 1):
        layers = [[m for m in conv.pre_nns[t] if hasattr(m, "weight")][i] for t in range(towers)]
        params[f"pre_{i}"] = np.stack([_np(m.weight).T for m in layers])
        params[f"pre_{i}_bias"] = np.stack([_np(m.bias) for m in layers])

    post_layers = [[m for m in conv.post_nns[t] if hasattr(m, "weight")] for t in range(towers)]
    for i in range(len(post_layers[0])):
        params[f"post_{i}"] = np.stack([_np(post_layers[t][i].weight).T for t in range(towers)])
        params[f"post_{i}_bias"] = np.stack([_np(post_layers[t][i].bias) for t in range(towers)])
    params["mixing"] = {"kernel": _np(conv.lin.weight).T, "bias": _np(conv.lin.bias)}
    return jax.tree.map(jnp.asarray, params)


def pna_layer_like(conv, *, pre_layers: int = 1, post_layers: int = 1) -> PNALayer:
    return PNALayer(conv.out_channels, aggregators=tuple(AGGREGATORS), scalers=tuple(SCALERS),
                    delta=float(conv.aggr_module.avg_deg_log), towers=conv.towers, divide_input=conv.divide_input,
                    pre_layers=pre_layers, post_layers=post_layers, use_edge_features=conv.edge_dim is not None,
                    mixing="linear", std_eps=0.0)


# ----------------------------------------------------------------------------------------------
# graphs


def undirected_graph(rng: np.random.Generator, n: int = 30, pairs: int = 50):
    """Random undirected graph on nodes 0..n-3, plus node n-2 with one neighbour (node 0) and node
    n-1 isolated; every edge listed in both directions. -> senders, receivers."""
    core = n - 2
    all_pairs = [(i, j) for i in range(core) for j in range(i + 1, core)]
    chosen = rng.choice(len(all_pairs), size=pairs, replace=False)
    edges = [all_pairs[k] for k in chosen] + [(0, n - 2)]
    senders = np.array([a for a, b in edges] + [b for a, b in edges], np.int32)
    receivers = np.array([b for a, b in edges] + [a for a, b in edges], np.int32)
    return senders, receivers


def directed_graph(rng: np.random.Generator, n: int = 30, edges: int = 100):
    """Random directed edges (no self loops, no duplicates) among nodes 0..n-2, where node n-2 only
    sends (in-degree 0, out-degree > 0); node n-1 isolated."""
    core = n - 1
    candidates = [(i, j) for i in range(core) for j in range(core - 1) if i != j]
    chosen = rng.choice(len(candidates), size=edges, replace=False)
    senders = np.array([candidates[k][0] for k in chosen], np.int32)
    receivers = np.array([candidates[k][1] for k in chosen], np.int32)
    return senders, receivers


def degree_histogram(receivers: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(np.bincount(receivers, minlength=n))


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Weights ~ N(0, 1/fan_in), biases ~ N(0, 0.3^2): nonzero biases exercise the bias folding."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))


def _message_variance(conv, x: torch.Tensor, senders, receivers, edge_attr) -> np.ndarray:
    """PyG's per-node, per-feature variance of the pre-transformed messages (nodes with >= 1 edge)."""
    towers, f = conv.towers, conv.F_in
    xt = x.view(-1, towers, f) if conv.divide_input else x.view(-1, 1, f).repeat(1, towers, 1)
    s, r = torch.from_numpy(senders).long(), torch.from_numpy(receivers).long()
    with torch.no_grad():
        m = _np(conv.message(xt[r], xt[s], edge_attr)).reshape(len(senders), -1)
    n = x.shape[0]
    count = np.bincount(receivers, minlength=n).astype(np.float64)[:, None]
    mean = np.zeros((n, m.shape[1]))
    mean_sq = np.zeros((n, m.shape[1]))
    np.add.at(mean, receivers, m)
    np.add.at(mean_sq, receivers, m.astype(np.float64) ** 2)
    has = count[:, 0] > 0
    return (mean_sq[has] / count[has] - (mean[has] / count[has]) ** 2)


# ----------------------------------------------------------------------------------------------


CASES = [
    # (towers, divide_input, in_channels, out_channels, edge_dim, directed)
    pytest.param(1, False, 8, 8, None, False, id="T1"),
    pytest.param(1, False, 6, 10, 4, False, id="T1-edges"),
    pytest.param(3, True, 12, 9, None, False, id="T3-divide"),
    pytest.param(3, False, 5, 9, None, False, id="T3-shared-input"),
    pytest.param(3, True, 12, 12, 5, False, id="T3-divide-edges"),
    pytest.param(3, False, 4, 6, 3, False, id="T3-shared-input-edges"),
    pytest.param(2, True, 8, 8, None, True, id="T2-divide-directed"),
    pytest.param(2, False, 6, 8, 3, True, id="T2-shared-input-edges-directed"),
]


def _outside_clamp_band(conv, x, senders, receivers, e) -> bool:
    """True when no (node, feature) message variance lies in (0, 2e-5): the band where PyG's std
    clamp (0 below 1e-5) and our sqrt(var) differ by design (2e-5: margin for float32 rounding)."""
    var = _message_variance(conv, torch.from_numpy(x), senders, receivers,
                            torch.from_numpy(e) if e is not None else None)
    return not np.any((var > 1e-12) & (var < 2e-5))


def _case(seed, *, towers, divide_input, in_channels, out_channels, edge_dim, directed, pre_layers=1,
          post_layers=1, n=30, attempts=10):
    """Random graph, features and PyG weights from ``seed``; redrawn (seed + 1000 k) in the rare case
    that two neighbours' messages nearly coincide (variance in the clamp band, ~1 node-feature in 300
    at degree 2), so the comparison below can be exact."""
    for attempt in range(attempts):
        rng = np.random.default_rng(seed + 1000 * attempt)
        senders, receivers = directed_graph(rng, n) if directed else undirected_graph(rng, n)
        x = rng.standard_normal((n, in_channels)).astype(np.float32)
        e = rng.standard_normal((len(senders), edge_dim)).astype(np.float32) if edge_dim else None
        conv = pyg_conv.PNAConv(in_channels, out_channels, aggregators=AGGREGATORS, scalers=SCALERS,
                                deg=torch.from_numpy(degree_histogram(receivers, n)), edge_dim=edge_dim,
                                towers=towers, pre_layers=pre_layers, post_layers=post_layers,
                                divide_input=divide_input)
        _randomise(conv, seed + 1000 * attempt)
        conv.eval()
        if _outside_clamp_band(conv, x, senders, receivers, e):
            return conv, senders, receivers, x, e
    raise AssertionError(f"no draw in {attempts} avoided the std clamp band")


def _run_both(conv, senders, receivers, x, e, *, pre_layers=1, post_layers=1, extra_nodes=5, extra_edges=7):
    """-> (ours on the jraph-padded graph, real nodes only; PyG on the plain graph)."""
    n = x.shape[0]
    with torch.no_grad():
        theirs = _np(conv(torch.from_numpy(x), torch.from_numpy(np.stack([senders, receivers]).astype(np.int64)),
                          torch.from_numpy(e) if e is not None else None))  # edge_index row 0 = source j
    graph = batching.graph_from_dense(np.zeros((n, n)), nodes=x)._replace(
        senders=senders, receivers=receivers, n_edge=np.array([len(senders)], np.int32), edges=e)
    budget = batching.PaddingBudget(n_node=n + extra_nodes, n_edge=len(senders) + extra_edges, n_graph=3)
    padded = jax.tree.map(jnp.asarray, batching.pad_graphs(graph, budget))
    padded = padded._replace(nodes=padded.nodes.at[n:].set(1e3))  # loud padding values: a leak would show
    if e is not None:
        padded = padded._replace(edges=padded.edges.at[len(senders):].set(-1e3))
    layer = pna_layer_like(conv, pre_layers=pre_layers, post_layers=post_layers)
    topo = topology(padded, padded.edges)
    params = pna_conv_params_from_pyg(conv)
    init_params = nn.unbox(layer.init(jax.random.key(0), padded.nodes, topo)["params"])
    assert jax.tree.map(lambda a: a.shape, params) == jax.tree.map(lambda a: a.shape, dict(init_params))
    ours = np.asarray(layer.apply({"params": params}, padded.nodes, topo))
    assert np.all(np.isfinite(ours))
    return ours[:n], theirs


def _assert_close(ours, theirs, in_degree):
    diff = np.abs(ours - theirs)
    worst = np.unravel_index(diff.argmax(), diff.shape)[0]
    assert diff.max() <= TOLERANCE, (f"max |ours - PyG| = {diff.max():.3g} at node {worst} (in-degree "
                                     f"{in_degree[worst]}); max |PyG| = {np.abs(theirs).max():.3g}")
    assert np.abs(theirs).max() > 0.1  # a nontrivial comparison


@pytest.mark.parametrize("towers, divide_input, in_channels, out_channels, edge_dim, directed", CASES)
def test_pna_layer_matches_pyg_pnaconv(towers, divide_input, in_channels, out_channels, edge_dim, directed):
    n = 30
    seed = 7 * towers + 3 * int(divide_input) + int(directed) + (edge_dim or 0)
    conv, senders, receivers, x, e = _case(seed, towers=towers, divide_input=divide_input, in_channels=in_channels,
                                           out_channels=out_channels, edge_dim=edge_dim, directed=directed, n=n)
    in_degree, out_degree = np.bincount(receivers, minlength=n), np.bincount(senders, minlength=n)
    assert in_degree[n - 1] == 0 and out_degree[n - 1] == 0  # an isolated node
    if directed:
        assert in_degree[n - 2] == 0 and out_degree[n - 2] > 0  # a source-only node
    else:
        assert in_degree[n - 2] == 1  # a degree-1 node (zero variance)
    hist = degree_histogram(receivers, n)
    expected_delta = float((np.log(np.arange(len(hist)) + 1.0) * hist).sum() / hist.sum())
    assert float(conv.aggr_module.avg_deg_log) == pytest.approx(expected_delta, rel=1e-6)

    ours, theirs = _run_both(conv, senders, receivers, x, e)
    _assert_close(ours, theirs, in_degree)


@pytest.mark.parametrize("pre_layers, post_layers", [(2, 1), (1, 2), (2, 3)])
def test_deeper_pre_and_post_nets_match_pyg(pre_layers, post_layers):
    """``pre_layers``/``post_layers`` > 1 (ReLU between Linear layers in both implementations)."""
    conv, senders, receivers, x, e = _case(11 + pre_layers + 10 * post_layers, towers=2, divide_input=True,
                                           in_channels=8, out_channels=8, edge_dim=3, directed=False,
                                           pre_layers=pre_layers, post_layers=post_layers)
    ours, theirs = _run_both(conv, senders, receivers, x, e, pre_layers=pre_layers, post_layers=post_layers)
    _assert_close(ours, theirs, np.bincount(receivers, minlength=x.shape[0]))
