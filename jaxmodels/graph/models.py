"""Whole graph networks: the PNA multitask architecture and the PNA ZINC regressor.

``MultitaskGNN`` is the official ``models/pytorch/gnn_framework.py`` ``GNN`` with the flags of the
paper's multitask runs (``--variable --fixed --gru --variable_conv_layers=N/2 --fc_layers=3``):
a first convolution, then one *shared* middle convolution applied again until each graph has had
N/2 convolutions (N = its node count), a shared GRU after every convolution, then

  node outputs  = MLP(3 layers, LeakyReLU everywhere incl. the output)          [nodes, 3]
  graph outputs = Set2Set(N steps) -> MLP(3 layers, ReLU + batch norm, LeakyReLU output) [graphs, 3]

The convolution is chosen by ``conv`` (pna, mpnn, gcn, gat, gin). Per-graph layer and Set2Set
step counts come from ``n_node``; a scan runs the largest count and freezes each graph's nodes after
its own count, so one compiled step serves batches of mixed sizes.

``PNARegressor`` is the real-world benchmark's ZINC net (``realworld_benchmark/nets/
molecules_graph_regression/pna_net.py``): atom (and bond) embeddings, L PNA layers with residual
connections, batch norm and ReLU, a sum readout and an MLP.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from jaxmodels.graph import layers as gl
from jaxmodels.graph import ops
from jaxmodels.graph.pna import DEFAULT_AGGREGATORS, DEFAULT_SCALERS, PNALayer

CONV_KINDS = ("pna", "mpnn", "gcn", "gat", "gin")


def make_conv(kind: str, features: int, *, first: bool, options: Mapping[str, Any] | None = None,
              axis_name: str | None = None, name: str | None = None) -> nn.Module:
    """A convolution module by name, with the multitask framework's defaults."""
    o = dict(options or {})
    if kind in ("pna", "mpnn"):
        if kind == "mpnn":
            aggregators, scalers = (o.get("aggregation", "sum"),), ("identity",)
        else:
            aggregators = tuple(o.get("aggregators", DEFAULT_AGGREGATORS))
            scalers = tuple(o.get("scalers", DEFAULT_SCALERS))
        return PNALayer(features, aggregators=aggregators, scalers=scalers, delta=float(o.get("delta", 1.0)),
                        towers=int(o.get("towers", 4)), divide_input=not first,
                        pre_layers=int(o.get("pre_layers", 1)), post_layers=int(o.get("post_layers", 1)),
                        use_edge_features=bool(o.get("use_edge_features", False)),
                        mixing=o.get("mixing", "leaky_relu"), name=name)
    if kind == "gcn":
        return gl.GCNLayer(features, name=name)
    if kind == "gat":
        return gl.GATLayer(features, heads=int(o.get("heads", 4)), negative_slope=float(o.get("alpha", 0.2)), name=name)
    if kind == "gin":
        return gl.GINLayer(features, fc_layers=int(o.get("fc_layers", 2)), axis_name=axis_name, name=name)
    raise ValueError(f"Unknown graph convolution {kind!r}; known: {CONV_KINDS}")


class MultitaskGNN(nn.Module):
    """The PNA multitask-benchmark network (see module docstring).

    Attributes:
      conv: convolution kind; conv_options: its options (towers, aggregators, scalers, delta, ...).
      hidden: node width (16 in the paper); node_outputs / graph_outputs: 3 and 3.
      max_layers / max_set2set_steps: scan lengths, >= the largest N/2 and N of any graph it sees
        (graphs with fewer get exactly their own counts).
      axis_name: the vmapped shard axis, so batch norm statistics cover all shards.
    """

    conv: str = "pna"
    conv_options: Mapping[str, Any] | None = None
    hidden: int = 16
    node_outputs: int = 3
    graph_outputs: int = 3
    fc_layers: int = 3
    gru: bool = True
    max_layers: int = 12
    max_set2set_steps: int = 24
    axis_name: str | None = None

    def setup(self):
        options = dict(self.conv_options or {})
        self.first_conv = make_conv(self.conv, self.hidden, first=True, options=options, axis_name=self.axis_name)
        self.middle_conv = make_conv(self.conv, self.hidden, first=False, options=options, axis_name=self.axis_name)
        self.gru_update = gl.GRUUpdate(self.hidden) if self.gru else None
        self.node_readout = gl.MLP([self.hidden] * (self.fc_layers - 1) + [self.node_outputs],
                                   mid_activation="leaky_relu", last_activation="leaky_relu")
        self.set2set = gl.Set2Set(self.max_set2set_steps)
        self.graph_mlp = gl.MLP([self.hidden] * (self.fc_layers - 1) + [self.graph_outputs],
                                mid_activation="relu", last_activation="leaky_relu", mid_batch_norm=True,
                                axis_name=self.axis_name)

    def _update(self, previous, conv_output):
        return self.gru_update(previous, conv_output) if self.gru_update is not None else conv_output

    def __call__(self, graph: jraph.GraphsTuple, train: bool = False):
        """-> (node predictions [nodes, node_outputs], graph predictions [graphs, graph_outputs])."""
        graph = jax.tree.map(jnp.asarray, graph)
        x = graph.nodes["features"] if isinstance(graph.nodes, Mapping) else graph.nodes
        x = x.astype(jnp.float32)
        topo = gl.topology(graph)
        num_graphs = graph.n_node.shape[0]
        graph_index = ops.node_graph_index(graph.n_node, topo.num_nodes)
        layers_per_node = (graph.n_node // 2)[graph_index]  # N/2 convolutions for every graph

        h = self._update(x, self.first_conv(x, topo, train))
        h = jnp.where(topo.node_mask[:, None], h, 0.0)

        if self.is_initializing():  # create the shared layer's variables outside the scan
            self.middle_conv(h, topo, train)

        def middle(module, h, layer):  # layer = 1, 2, ...: the (layer+1)-th convolution
            new = module._update(h, module.middle_conv(h, topo, train))
            active = ((layer < layers_per_node) & topo.node_mask)[:, None]  # padding nodes stay 0
            return jnp.where(active, new, h), None

        stats_mutable = self.is_mutable_collection("batch_stats")  # GIN's batch norm updates per layer
        h, _ = nn.scan(middle, variable_broadcast="params" if stats_mutable else ("params", "batch_stats"),
                       variable_carry="batch_stats" if stats_mutable else False,
                       split_rngs={"params": False}, length=self.max_layers - 1)(
            self, h, jnp.arange(1, self.max_layers))

        nodes_out = self.node_readout(h)
        pooled = self.set2set(h, graph_index, num_graphs, graph.n_node)
        graphs_out = self.graph_mlp(pooled, ops.graph_mask(graph), train)
        return nodes_out, graphs_out


def _plain(options) -> dict:
    options = options.to_dict() if hasattr(options, "to_dict") else dict(options or {})
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def multitask_from_config(model_cfg) -> MultitaskGNN:
    """``config.model`` (name "pna_multitask") -> ``MultitaskGNN``."""
    return MultitaskGNN(conv=model_cfg.conv, conv_options=_plain(model_cfg.conv_options), hidden=int(model_cfg.hidden),
                        fc_layers=int(model_cfg.fc_layers), gru=bool(model_cfg.gru),
                        max_layers=int(model_cfg.max_layers), max_set2set_steps=int(model_cfg.max_set2set_steps),
                        axis_name=model_cfg.get("axis_name", None))


def pna_regressor_from_config(model_cfg) -> "PNARegressor":
    """``config.model`` (name "pna_regressor") -> ``PNARegressor``."""
    return PNARegressor(hidden=int(model_cfg.hidden), out_dim=int(model_cfg.out_dim), num_layers=int(model_cfg.num_layers),
                        num_atom_types=int(model_cfg.num_atom_types), num_bond_types=int(model_cfg.num_bond_types),
                        edge_features=bool(model_cfg.edge_features), edge_dim=int(model_cfg.edge_dim),
                        conv_options=_plain(model_cfg.conv_options), residual=bool(model_cfg.residual),
                        graph_norm=bool(model_cfg.graph_norm), batch_norm=bool(model_cfg.batch_norm),
                        divide_input_first=bool(model_cfg.divide_input_first),
                        divide_input_last=bool(model_cfg.divide_input_last), readout=model_cfg.readout,
                        axis_name=model_cfg.get("axis_name", None))


class PNARegressor(nn.Module):
    """PNA for ZINC, as ``realworld_benchmark/nets/molecules_graph_regression/pna_net.py`` with the DGL
    ``models/dgl/pna_layer.py``: atom (and bond) embeddings; L PNA layers, each

        towers: U_pre([h_j || h_i || e_ij]) -> 4 aggregators x 3 scalers -> U_post
                -> graph norm (x 1/sqrt(|V_G|)) -> batch norm
        concat towers -> Linear + LeakyReLU (mixing) -> + h (residual, when widths match)

    (the first L-1 layers hidden -> hidden, the last hidden -> out_dim); sum readout; the
    benchmarking-gnns ``MLPReadout`` (out -> out/2 -> out/4 -> 1, ReLU). Dropout is 0 in the paper's
    ZINC runs and is not implemented.
    """

    hidden: int = 75
    out_dim: int = 70
    num_layers: int = 4
    num_atom_types: int = 28
    num_bond_types: int = 4
    edge_features: bool = False
    edge_dim: int = 50
    conv_options: Mapping[str, Any] | None = None
    residual: bool = True
    graph_norm: bool = True
    batch_norm: bool = True
    divide_input_first: bool = False
    divide_input_last: bool = True
    readout: str = "sum"
    axis_name: str | None = None

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, train: bool = False):
        graph = jax.tree.map(jnp.asarray, graph)
        o = dict(self.conv_options or {})
        embed_init = nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed"))
        h = nn.Embed(self.num_atom_types, self.hidden, embedding_init=embed_init, name="atom_embedding")(
            graph.nodes["atom_type"])
        edges = None
        if self.edge_features:
            edges = nn.Embed(self.num_bond_types, self.edge_dim, embedding_init=embed_init, name="bond_embedding")(
                graph.edges["bond_type"])
        topo = gl.topology(graph, edges)
        graph_index = ops.node_graph_index(graph.n_node, topo.num_nodes)
        snorm = jax.lax.rsqrt(jnp.maximum(graph.n_node.astype(jnp.float32), 1.0))[graph_index][:, None]
        for i in range(self.num_layers):
            last = i == self.num_layers - 1
            width = self.out_dim if last else self.hidden
            divide_input = self.divide_input_last if last else self.divide_input_first
            y = make_conv("pna", width, first=not divide_input, name=f"pna_{i}",
                          options={"towers": 5, **o, "mixing": "none", "use_edge_features": self.edge_features})(
                h, topo, train)
            if self.graph_norm:
                y = y * snorm
            if self.batch_norm:
                y = gl.MaskedBatchNorm(axis_name=self.axis_name, name=f"bn_{i}")(y, topo.node_mask, train)
            y = jax.nn.leaky_relu(gl.dense(width, name=f"mixing_{i}")(y))
            h = h + y if self.residual and width == h.shape[-1] else y
            h = jnp.where(topo.node_mask[:, None], h, 0.0)
        pooled = gl.graph_readout(h, graph_index, graph.n_node.shape[0], self.readout)
        sizes = [self.out_dim // 2, self.out_dim // 4, 1]
        out = gl.MLP(sizes, mid_activation="relu", last_activation="none",
                     kernel_init=nn.initializers.lecun_normal(), name="mlp_readout")(pooled)
        return out[:, 0]
