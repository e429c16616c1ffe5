"""Graph layers on padded ``jraph.GraphsTuple`` batches (flax.linen): GCN, GIN(-eps), GAT, GRU update,
readouts (sum / mean / max, Set2Set), masked batch norm and the MLPs the PNA framework uses.

Every layer takes node features ``x`` [nodes, F] and a :class:`Topology` (senders, receivers, static
node count, in-degrees, node mask, optional edge features) computed once per forward pass by
:func:`topology`. Messages flow sender -> receiver; undirected graphs list both directions.
Parameters are created through ``nn.with_logical_partitioning`` (``embed`` in, ``mlp`` out).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from jaxmodels.graph import ops


@dataclasses.dataclass(frozen=True)
class Topology:
    senders: jax.Array
    receivers: jax.Array
    num_nodes: int
    degree: jax.Array  # in-degree per node [nodes] float32
    node_mask: jax.Array  # [nodes] bool
    edges: jax.Array | None = None  # [edges, Fe] edge features, when the model uses them


jax.tree_util.register_dataclass(Topology, data_fields=["senders", "receivers", "degree", "node_mask", "edges"],
                                 meta_fields=["num_nodes"])


def topology(graph: jraph.GraphsTuple, edges: jax.Array | None = None) -> Topology:
    n = ops.num_nodes(graph)
    return Topology(senders=graph.senders, receivers=graph.receivers, num_nodes=n,
                    degree=ops.in_degree(graph.receivers, n), node_mask=ops.node_mask(graph), edges=edges)


# ----------------------------------------------------------------------------------------------
# initialisers and dense layers


def pna_fc_init(key, shape, dtype=jnp.float32):
    """The PNA repo's ``FCLayer`` init: xavier_uniform_(W, gain=1/in_size) (models/layers.py)."""
    fan_in, fan_out = shape[-2], shape[-1]
    limit = (1.0 / fan_in) * math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -limit, limit)


def torch_uniform_init(fan: int):
    """U(-1/sqrt(fan), 1/sqrt(fan)), PyTorch's default for GRU/LSTM weights and biases."""
    bound = 1.0 / math.sqrt(fan)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def xavier_uniform(gain: float = 1.0):
    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = shape[-2], shape[-1]
        limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(key, shape, dtype, -limit, limit)
    return init


def partitioned(init, names=("embed", "mlp")):
    return nn.with_logical_partitioning(init, names)


def dense(features: int, kernel_init=pna_fc_init, use_bias: bool = True, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, kernel_init=partitioned(kernel_init),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("mlp",)), name=name)


ACTIVATIONS: dict[str, Callable | None] = {
    "none": None, "relu": jax.nn.relu, "leaky_relu": jax.nn.leaky_relu,  # slope 0.01, as torch.nn.LeakyReLU
    "elu": jax.nn.elu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
}


def activation(name: str | None) -> Callable | None:
    name = (name or "none").lower().replace("leakyrelu", "leaky_relu")
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _bn_scale_init():
    return nn.with_logical_partitioning(nn.initializers.ones_init(), ("mlp",))


def _bn_bias_init():
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), ("mlp",))


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the real rows only (padding nodes/graphs excluded from the statistics).

    PyTorch's BatchNorm1d defaults: momentum 0.1 (flax 0.9), eps 1e-5. ``axis_name`` names a
    ``vmap``ped shard axis (data parallelism over padded sub-batches); training statistics are then
    those of the real rows of every shard together, as if the shards were one batch
    (:class:`_ShardedBatchNormStats`), whatever the rows per shard (even none).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, mask, train: bool):
        if train and self.axis_name is not None and not self.is_initializing():
            return _ShardedBatchNormStats(self.momentum, self.epsilon, self.axis_name, name="BatchNorm_0")(x, mask)
        return nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
                            scale_init=_bn_scale_init(), bias_init=_bn_bias_init())(
            x, mask=mask[:, None] if mask is not None else None)


class _ShardedBatchNormStats(nn.Module):
    """Training-mode ``nn.BatchNorm`` (the same variables) whose statistics are sums over the shard axis:
    mean = psum(sum of real x) / psum(real count), var = psum(sum of real x^2) / count - mean^2.

    (flax's ``axis_name`` averages the shards' own means instead: biased when shards hold different
    numbers of real rows, NaN when one holds none.)
    """

    momentum: float
    epsilon: float
    axis_name: str

    @nn.compact
    def __call__(self, x, mask):
        features = x.shape[-1:]
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), features)
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
        scale = self.param("scale", _bn_scale_init(), features, jnp.float32)
        bias = self.param("bias", _bn_bias_init(), features, jnp.float32)
        x32 = x.astype(jnp.float32)
        weight = (jnp.ones(x.shape[:1], jnp.float32) if mask is None else mask.astype(jnp.float32))[:, None]
        count = jnp.maximum(jax.lax.psum(weight.sum(0), self.axis_name), 1.0)  # [1]
        mean = jax.lax.psum((x32 * weight).sum(0), self.axis_name) / count  # [features]
        var = jnp.maximum(jax.lax.psum((x32 * x32 * weight).sum(0), self.axis_name) / count - mean * mean, 0.0)
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return (x32 - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias  # float32, as nn.BatchNorm


class MLP(nn.Module):
    """The PNA repo's ``MLP``: FC layers, each Linear -> activation -> (batch norm).

    ``sizes`` are the output widths of the layers; the last layer uses ``last_activation`` and
    ``last_batch_norm``, the others ``mid_activation`` and ``mid_batch_norm`` (models/layers.py).
    """

    sizes: Sequence[int]
    mid_activation: str = "relu"
    last_activation: str = "none"
    mid_batch_norm: bool = False
    last_batch_norm: bool = False
    kernel_init: Callable = pna_fc_init
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, mask=None, train: bool = False):
        for i, size in enumerate(self.sizes):
            last = i == len(self.sizes) - 1
            x = dense(size, self.kernel_init, name=f"fc_{i}")(x)
            fn = activation(self.last_activation if last else self.mid_activation)
            if fn is not None:
                x = fn(x)
            if (self.last_batch_norm if last else self.mid_batch_norm):
                x = MaskedBatchNorm(axis_name=self.axis_name, name=f"bn_{i}")(x, mask, train)
        return x


# ----------------------------------------------------------------------------------------------
# message-passing layers


class GCNLayer(nn.Module):
    """GCN (Kipf & Welling, ICLR 2017, eq. 2): act(D~^-1/2 (A + I) D~^-1/2 X W + b).

    As the PNA repo's ``gcn/layer.py``: W, b ~ U(+-1/sqrt(out)), LeakyReLU output activation.
    """

    features: int
    act: str = "leaky_relu"
    add_self_loops: bool = True

    @nn.compact
    def __call__(self, x, topo: Topology, train: bool = False):
        bound_init = torch_uniform_init(self.features)
        kernel = self.param("kernel", partitioned(bound_init), (x.shape[-1], self.features))
        bias = self.param("bias", nn.with_logical_partitioning(bound_init, ("mlp",)), (self.features,))
        xw = x @ kernel
        degree = topo.degree + (1.0 if self.add_self_loops else 0.0)
        inv_sqrt = jnp.where(degree > 0, jax.lax.rsqrt(jnp.maximum(degree, 1e-12)), 0.0)
        weights = inv_sqrt[topo.senders] * inv_sqrt[topo.receivers]
        y = jax.ops.segment_sum(xw[topo.senders] * weights[:, None], topo.receivers, topo.num_nodes)
        if self.add_self_loops:
            y = y + xw * (inv_sqrt * inv_sqrt)[:, None]
        y = y + bias
        fn = activation(self.act)
        return fn(y) if fn is not None else y


class GINLayer(nn.Module):
    """GIN-eps (Xu et al., ICLR 2019, eq. 4.1): MLP((1 + eps) h_v + sum_u h_u), eps learnable.

    As the PNA repo's ``gin/layer.py``: eps initialised to 0.1, a 2-layer MLP (hidden
    max(in, out), ReLU + batch norm in the middle, ReLU at the end). ``learn_eps=False`` is GIN-0.
    """

    features: int
    fc_layers: int = 2
    learn_eps: bool = True
    eps_init: float = 0.1
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, topo: Topology, train: bool = False):
        eps = (self.param("eps", nn.with_logical_partitioning(nn.initializers.constant(self.eps_init), (None,)), (1,))
               if self.learn_eps else jnp.zeros((1,)))
        summed = jax.ops.segment_sum(x[topo.senders], topo.receivers, topo.num_nodes)
        h = (1.0 + eps) * x + summed
        hidden = max(x.shape[-1], self.features)
        sizes = [hidden] * (self.fc_layers - 1) + [self.features]
        return MLP(sizes, mid_activation="relu", last_activation="relu", mid_batch_norm=True,
                   axis_name=self.axis_name, name="mlp")(h, topo.node_mask, train)


class GATLayer(nn.Module):
    """GAT (Velickovic et al., ICLR 2018, eqs. 1-5): per head h = x W, e_ij = LeakyReLU_0.2(a^T[h_i||h_j]),
    alpha_ij = softmax over the receiver i's incoming edges, out_i = ELU(sum_j alpha_ij h_j); heads
    concatenated. Init as the PNA repo's ``gat/layer.py`` (xavier-uniform, gain 0.1414).

    (The repo's dense version normalises the softmax over dim 1 of [B, N, N]; this implements the
    paper's normalisation over each node's neighbours.)
    """

    features: int
    heads: int = 4
    negative_slope: float = 0.2
    act: str = "elu"

    @nn.compact
    def __call__(self, x, topo: Topology, train: bool = False):
        if self.features % self.heads:
            raise ValueError(f"GATLayer: features={self.features} is not divisible by heads={self.heads}")
        per_head = self.features // self.heads
        init = xavier_uniform(0.1414)
        kernel = self.param("kernel", nn.with_logical_partitioning(init, ("embed", "heads", "kv")),
                            (x.shape[-1], self.heads, per_head))
        att_recv = self.param("att_receiver", nn.with_logical_partitioning(init, ("heads", "kv")), (self.heads, per_head))
        att_send = self.param("att_sender", nn.with_logical_partitioning(init, ("heads", "kv")), (self.heads, per_head))
        h = jnp.einsum("nf,fhk->nhk", x, kernel)
        score_recv = jnp.sum(h * att_recv, -1)  # [nodes, heads]
        score_send = jnp.sum(h * att_send, -1)
        logits = jax.nn.leaky_relu(score_recv[topo.receivers] + score_send[topo.senders], self.negative_slope)
        alpha = ops.segment_softmax(logits, topo.receivers, topo.num_nodes)  # [edges, heads]
        out = jax.ops.segment_sum(alpha[..., None] * h[topo.senders], topo.receivers, topo.num_nodes)
        out = out.reshape(out.shape[0], self.features)
        fn = activation(self.act)
        return fn(out) if fn is not None else out


class GRUUpdate(nn.Module):
    """The PNA framework's node update: ``torch.nn.GRU(input=h_prev, h_0=conv_output)`` (models/layers.py
    ``GRU``): the convolution's output is the GRU's hidden state, the previous features its input
    (zero-padded to the hidden size). Weights U(+-1/sqrt(H)) like PyTorch.
    """

    features: int

    @nn.compact
    def __call__(self, previous, conv_output):
        if previous.shape[-1] < self.features:
            previous = jnp.pad(previous, ((0, 0), (0, self.features - previous.shape[-1])))
        init = torch_uniform_init(self.features)
        cell = nn.GRUCell(self.features, kernel_init=partitioned(init, ("embed", "mlp")),
                          recurrent_kernel_init=partitioned(init, ("embed", "mlp")),
                          bias_init=nn.with_logical_partitioning(init, ("mlp",)), name="cell")
        new, _ = cell(conv_output, previous)
        return new


# ----------------------------------------------------------------------------------------------
# readouts


def graph_readout(x: jax.Array, graph_index: jax.Array, num_graphs: int, kind: str = "sum") -> jax.Array:
    """Sum / mean / max of node features per graph (padding graphs get 0)."""
    counts = jax.ops.segment_sum(jnp.ones(x.shape[0], jnp.float32), graph_index, num_graphs)
    if kind == "sum":
        return jax.ops.segment_sum(x, graph_index, num_graphs)
    if kind == "mean":
        return jax.ops.segment_sum(x, graph_index, num_graphs) / jnp.maximum(counts, 1.0)[:, None]
    if kind == "max":
        out = jax.ops.segment_max(x, graph_index, num_graphs)
        return jnp.where((counts > 0)[:, None], out, 0.0)
    raise ValueError(f"Unknown readout {kind!r}; known: sum, mean, max, set2set")


class Set2Set(nn.Module):
    """Set2Set (Vinyals et al., ICLR 2016, sec. 4.2), as the PNA repo's ``models/layers.py``:

        q_t = LSTM(q*_{t-1});  a_i = softmax_i(x_i . q_t);  r_t = sum_i a_i x_i;  q*_t = [q_t, r_t]

    with q*_0 = 0, returning q*_T [graphs, 2F]. ``steps`` is a per-graph step count (the repo runs
    as many steps as the graph has nodes); the scan runs ``max_steps`` and freezes each graph's state
    after its own count.
    """

    max_steps: int

    @nn.compact
    def __call__(self, x, graph_index, num_graphs: int, steps: jax.Array):
        features = x.shape[-1]
        init = torch_uniform_init(features)
        lstm = nn.LSTMCell(features, kernel_init=partitioned(init), recurrent_kernel_init=partitioned(init),
                           bias_init=nn.with_logical_partitioning(init, ("mlp",)), name="lstm")
        carry = (jnp.zeros((num_graphs, features), x.dtype), jnp.zeros((num_graphs, features), x.dtype))
        q_star = jnp.zeros((num_graphs, 2 * features), x.dtype)

        def body(cell, state, t):
            carry, q_star = state
            new_carry, q = cell(carry, q_star)
            scores = jnp.sum(x * q[graph_index], axis=-1)
            attention = ops.segment_softmax(scores, graph_index, num_graphs)
            r = jax.ops.segment_sum(attention[:, None] * x, graph_index, num_graphs)
            new_q_star = jnp.concatenate([q, r], axis=-1)
            active = (t < steps)[:, None]
            carry = jax.tree.map(lambda new, old: jnp.where(active, new, old), new_carry, carry)
            return (carry, jnp.where(active, new_q_star, q_star)), None

        (carry, q_star), _ = nn.scan(body, variable_broadcast="params", split_rngs={"params": False},
                                     length=self.max_steps)(lstm, (carry, q_star), jnp.arange(self.max_steps))
        return q_star
