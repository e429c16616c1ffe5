"""Principal Neighbourhood Aggregation (Corso, Cavalleri, Beaini, Lio, Velickovic, NeurIPS 2020,
arXiv 2004.05718), the layer of sec. 2 / eq. 8 on padded ``jraph.GraphsTuple`` batches.

For each tower t (input features split across towers when ``divide_input``, else the whole input):

    m_ij   = U_pre([h_i || h_j || e_ij])                      pre-transformation, j -> i
    a_i    = [mean, max, min, std]_j m_ij                      aggregators (ops.AGGREGATORS)
    s_i    = [a_i * S(d_i, alpha) for alpha in scalers]        S = (log(d + 1) / delta)^alpha  (eq. 5)
    y_i^t  = U_post([h_i || s_i])                              post-transformation

then y_i = mix([y_i^1 || ... || y_i^T]) with a Linear (+ LeakyReLU in the official multitask code;
``mixing="linear"`` is PyTorch Geometric's ``PNAConv``). With ``aggregators=("sum",)`` and
``scalers=("identity",)`` this is the paper's MPNN baseline (``multitask_benchmark/train/mpnn.py``).

Towers are computed together: their weights are stacked on a leading tower axis and applied
with one ``einsum``. A 1-layer pre-transformation (the paper's default) is evaluated per *node*
(U_pre [h_i || h_j] = W_r h_i + W_s h_j + b) and gathered to the edges, which is exact and costs
O(nodes) instead of O(edges) matmuls.

Note on the official dense implementation: its max/min aggregators reduce over the other axis of
the [B, N, N] message tensor than mean/std, so there max/min see U_pre([h_j || h_i]); this layer
(like PyG's ``PNAConv`` and the paper) uses the same message m_ij for every aggregator.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmodels.graph import ops
from jaxmodels.graph.layers import Topology, activation, pna_fc_init

DEFAULT_AGGREGATORS = ("mean", "max", "min", "std")
DEFAULT_SCALERS = ("identity", "amplification", "attenuation")


def block_diagonal(kernel: jax.Array) -> jax.Array:
    """[T, in, out] tower kernels -> the [T*in, T*out] block-diagonal matrix (one CPU-friendly matmul)."""
    towers, fan_in, fan_out = kernel.shape
    eye = jnp.eye(towers, dtype=kernel.dtype)
    return jnp.einsum("tio,tu->tiuo", kernel, eye).reshape(towers * fan_in, towers * fan_out)


def _tower_param(module: nn.Module, name: str, shape, init, bias: bool = False):
    names = (None, "mlp") if bias else (None, "embed", "mlp")
    return module.param(name, nn.with_logical_partitioning(init, names), shape)


class PNALayer(nn.Module):
    """One PNA convolution. ``delta`` = the training set's average log(d + 1) (ops.scaler_values).

    Attributes:
      features: output width (divisible by ``towers``).
      towers: number of towers; ``divide_input`` splits the input features across them
        (the official code splits in every layer but the first).
      pre_layers / post_layers: depth of U_pre / U_post (ReLU between layers, none after the last).
      use_edge_features: include the topology's edge features in the messages.
      mixing: "leaky_relu" (official multitask code: Linear + LeakyReLU), "linear" (PyG), "none".
      std_eps: the epsilon of the std aggregator.

    Parameters are stored per tower (``pre_receiver/pre_sender/pre_edge`` [T, in, F_t], ``post_0``
    [T, (1 + S*A) * F_t, out_t] with rows ordered [h_i, then scaler-major, aggregator-minor]); the
    computation runs on flat [*, T * F_t] features with block-diagonal matrices, and scales after
    the matmul (S(d) a W = S(d) (a W)) so the 12 scaled aggregates are never materialised.
    """

    features: int
    aggregators: Sequence[str] = DEFAULT_AGGREGATORS
    scalers: Sequence[str] = DEFAULT_SCALERS
    delta: float = 1.0
    towers: int = 1
    divide_input: bool = False
    pre_layers: int = 1
    post_layers: int = 1
    use_edge_features: bool = False
    mixing: str = "leaky_relu"
    std_eps: float = ops.STD_EPS
    kernel_init: Callable = pna_fc_init

    @nn.compact
    def __call__(self, x, topo: Topology, train: bool = False):
        n, in_features = x.shape
        towers = self.towers
        if self.features % towers:
            raise ValueError(f"PNALayer: features={self.features} is not divisible by towers={towers}")
        if self.divide_input:
            if in_features % towers:
                raise ValueError(f"PNALayer: divide_input needs the input width ({in_features}) divisible by "
                                 f"towers={towers}")
            f_tower, xt = in_features // towers, x  # tower t owns features [t*F_t, (t+1)*F_t)
        else:
            f_tower, xt = in_features, jnp.tile(x, (1, towers))
        out_tower = self.features // towers
        for name in self.aggregators:
            if name not in ops.AGGREGATORS:
                raise ValueError(f"Unknown PNA aggregator {name!r}; known: {sorted(ops.AGGREGATORS)}")
        init = self.kernel_init

        # pre-transformation U_pre([h_i || h_j || e_ij]) for every edge j -> i
        w_recv = _tower_param(self, "pre_receiver", (towers, f_tower, f_tower), init)
        w_send = _tower_param(self, "pre_sender", (towers, f_tower, f_tower), init)
        b_pre = _tower_param(self, "pre_bias", (towers, f_tower), nn.initializers.zeros_init(), bias=True)
        recv_part = xt @ block_diagonal(w_recv) + b_pre.reshape(-1)
        send_part = xt @ block_diagonal(w_send)
        messages = recv_part[topo.receivers] + send_part[topo.senders]  # [edges, T * F_t]
        if self.use_edge_features:
            if topo.edges is None:
                raise ValueError("PNALayer(use_edge_features=True) needs edge features in the topology")
            w_edge = _tower_param(self, "pre_edge", (towers, topo.edges.shape[-1], f_tower), init)
            messages = messages + jnp.einsum("ef,tfo->eto", topo.edges, w_edge).reshape(messages.shape)
        for i in range(1, self.pre_layers):
            w = _tower_param(self, f"pre_{i}", (towers, f_tower, f_tower), init)
            b = _tower_param(self, f"pre_{i}_bias", (towers, f_tower), nn.initializers.zeros_init(), bias=True)
            messages = jax.nn.relu(messages) @ block_diagonal(w) + b.reshape(-1)

        # aggregate: [nodes, A * T * F_t], aggregator-major
        aggregated = jnp.concatenate([
            ops.AGGREGATORS[name](messages, topo.receivers, topo.num_nodes, topo.degree,
                                  **({"eps": self.std_eps} if name == "std" else {}))
            for name in self.aggregators], axis=-1)

        # post-transformation of [h_i || S_1 a_i || ... || S_S a_i], tower by tower
        n_agg, n_scal = len(self.aggregators), len(self.scalers)
        hidden_out = out_tower  # the official MLP's hidden width is the tower's output width
        w_post = _tower_param(self, "post_0", (towers, (1 + n_scal * n_agg) * f_tower, hidden_out), init)
        b_post = _tower_param(self, "post_0_bias", (towers, hidden_out), nn.initializers.zeros_init(), bias=True)
        blocks = w_post.reshape(towers, 1 + n_scal * n_agg, f_tower, hidden_out)
        y = xt @ block_diagonal(blocks[:, 0]) + b_post.reshape(-1)
        eye = jnp.eye(towers, dtype=w_post.dtype)
        for s, scale in enumerate(ops.scaler_values(topo.degree, self.scalers, self.delta)):
            ws = blocks[:, 1 + s * n_agg:1 + (s + 1) * n_agg]  # [T, A, F_t, O]
            ws = jnp.einsum("taio,tu->atiuo", ws, eye).reshape(n_agg * towers * f_tower, towers * hidden_out)
            y = y + scale[:, None] * (aggregated @ ws)
        for i in range(1, self.post_layers):
            w = _tower_param(self, f"post_{i}", (towers, hidden_out, out_tower), init)
            b = _tower_param(self, f"post_{i}_bias", (towers, out_tower), nn.initializers.zeros_init(), bias=True)
            y = jax.nn.relu(y) @ block_diagonal(w) + b.reshape(-1)

        if self.mixing != "none":
            y = nn.Dense(self.features, kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")),
                         bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("mlp",)),
                         name="mixing")(y)
            if self.mixing != "linear":
                y = activation(self.mixing)(y)
        return y
