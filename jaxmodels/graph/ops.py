"""Segment operations over padded ``jraph.GraphsTuple`` batches: degrees, masked aggregators, scalers.

Every function takes a static ``num_segments`` (the padded node or graph budget), so it runs under
``jax.jit`` with one compiled shape per budget. Padding edges (jraph puts them on the first padding
node) and padding nodes only ever write into padding segments, which callers mask.

Aggregators follow PNA (Corso et al., NeurIPS 2020, arXiv 2004.05718, sec. 2.1-2.2 and the official
``models/pytorch/pna/aggregators.py``), over the *incoming* edges of each node, without self loops:

  mean  = (1/d_i) sum_j m_ij                                   (0 when d_i = 0)
  max   = max_j m_ij, min = min_j m_ij                          (0 when d_i = 0, never -/+inf)
  std   = sqrt(relu(mean(m^2) - mean(m)^2) + eps), eps = 1e-5   (0 when d_i = 0)
  sum   = sum_j m_ij

Scalers (PNA eq. 5, ``scalers.py``): S(d, alpha) = (log(d + 1) / delta)^alpha with alpha = 0
(identity), 1 (amplification), -1 (attenuation); delta is the training set's average log(d + 1).
The degree is clamped to >= 1 inside the scalers (as PyTorch Geometric's ``PNAConv`` does), so an
isolated node's attenuation is finite; its aggregates are 0 anyway.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import jraph

STD_EPS = 1e-5


def num_nodes(graph: jraph.GraphsTuple) -> int:
    """The (static) padded node count of a batch."""
    return int(jax.tree.leaves(graph.nodes)[0].shape[0]) if graph.nodes is not None else int(graph.n_node.sum())


def node_graph_index(n_node: jax.Array, total_nodes: int) -> jax.Array:
    """Graph id of every node: [total_nodes] int32 (jraph's repeat of graph ids by ``n_node``)."""
    return jnp.repeat(jnp.arange(n_node.shape[0], dtype=jnp.int32), n_node, total_repeat_length=total_nodes)


def _padding_graph_index(graph: jraph.GraphsTuple) -> jax.Array:
    """Index of jraph's padding graph: the last graph with nodes (the ones after it are empty)."""
    n_node = jnp.asarray(graph.n_node)
    return n_node.shape[0] - 1 - jnp.argmax((n_node > 0)[::-1])


def node_mask(graph: jraph.GraphsTuple) -> jax.Array:
    """True for real nodes, False for padding ([nodes] bool), for batches padded as jraph pads."""
    total = num_nodes(graph)
    n_padding = jnp.asarray(graph.n_node)[_padding_graph_index(graph)]
    return jnp.arange(total) < total - n_padding


def edge_mask(graph: jraph.GraphsTuple) -> jax.Array:
    total = graph.senders.shape[0]
    n_padding = jnp.asarray(graph.n_edge)[_padding_graph_index(graph)]
    return jnp.arange(total) < total - n_padding


def graph_mask(graph: jraph.GraphsTuple) -> jax.Array:
    """True for real graphs: those before the padding graph."""
    return jnp.arange(graph.n_node.shape[0]) < _padding_graph_index(graph)


def in_degree(receivers: jax.Array, num_segments: int, weights: jax.Array | None = None) -> jax.Array:
    """Number (or total weight) of incoming edges per node: [num_segments] float32."""
    ones = jnp.ones(receivers.shape, jnp.float32) if weights is None else weights.astype(jnp.float32)
    return jax.ops.segment_sum(ones, receivers, num_segments)


def _expand(x: jax.Array, like: jax.Array) -> jax.Array:
    return x.reshape(x.shape + (1,) * (like.ndim - x.ndim))


def aggregate_sum(messages, receivers, num_segments, degree):
    return jax.ops.segment_sum(messages, receivers, num_segments)


def aggregate_mean(messages, receivers, num_segments, degree):
    total = jax.ops.segment_sum(messages, receivers, num_segments)
    return total / _expand(jnp.maximum(degree, 1.0), total)


def aggregate_max(messages, receivers, num_segments, degree):
    out = jax.ops.segment_max(messages, receivers, num_segments)
    return jnp.where(_expand(degree > 0, out), out, 0.0)


def aggregate_min(messages, receivers, num_segments, degree):
    out = jax.ops.segment_min(messages, receivers, num_segments)
    return jnp.where(_expand(degree > 0, out), out, 0.0)


def aggregate_var(messages, receivers, num_segments, degree):
    mean = aggregate_mean(messages, receivers, num_segments, degree)
    mean_sq = aggregate_mean(messages * messages, receivers, num_segments, degree)
    return jax.nn.relu(mean_sq - mean * mean)


def aggregate_std(messages, receivers, num_segments, degree, eps: float = STD_EPS):
    """sqrt(relu(E[m^2] - E[m]^2) + eps): finite, with a finite gradient, at zero variance."""
    std = jnp.sqrt(aggregate_var(messages, receivers, num_segments, degree) + eps)
    return jnp.where(_expand(degree > 0, std), std, 0.0)


AGGREGATORS: dict[str, Callable] = {
    "sum": aggregate_sum, "mean": aggregate_mean, "max": aggregate_max, "min": aggregate_min,
    "var": aggregate_var, "std": aggregate_std,
}


def scaler_values(degree: jax.Array, scalers: Sequence[str], delta: float) -> list[jax.Array]:
    """[(log(d+1)/delta)^alpha for each scaler] with d clamped to >= 1; each [nodes] float32."""
    log_degree = jnp.log(jnp.maximum(degree, 1.0) + 1.0)
    values = []
    for name in scalers:
        if name == "identity":
            values.append(jnp.ones_like(log_degree))
        elif name == "amplification":
            values.append(log_degree / delta)
        elif name == "attenuation":
            values.append(delta / log_degree)
        elif name == "linear":  # d / mean degree, in the official scalers.py (delta is then the mean degree)
            values.append(jnp.maximum(degree, 1.0) / delta)
        elif name == "inverse_linear":
            values.append(delta / jnp.maximum(degree, 1.0))
        else:
            raise ValueError(f"Unknown PNA scaler {name!r}; known: identity, amplification, attenuation, "
                             "linear, inverse_linear")
    return values


def segment_softmax(logits: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
    """Softmax of ``logits`` within each segment (numerically stable; empty segments are harmless)."""
    maxes = jax.ops.segment_max(logits, segment_ids, num_segments)
    maxes = jnp.where(jnp.isfinite(maxes), maxes, 0.0)
    shifted = jnp.exp(logits - jax.lax.stop_gradient(maxes)[segment_ids])
    totals = jax.ops.segment_sum(shifted, segment_ids, num_segments)
    return shifted / jnp.maximum(totals[segment_ids], 1e-30)
