"""Graph networks on jraph: padded batching, message-passing layers, PNA and whole models.

Submodules: ``batching`` (static padding budgets), ``ops`` (segment aggregators, scalers),
``layers`` (GCN, GIN, GAT, GRU update, MLP, readouts, Set2Set), ``pna`` (PNA layer), ``models``
(the PNA multitask network and the ZINC regressor). The papers' experiments live in
``jaxmodels.projects.pna`` and ``jaxmodels.projects.gnn_optimization``.
"""
from jaxmodels.graph.batching import (PaddingBudget, FixedBatches, batch_graphs, budget_for_batches,
                                      estimate_budget, graph_from_dense, make_batch, pad_graphs)
from jaxmodels.graph.layers import GATLayer, GCNLayer, GINLayer, GRUUpdate, MLP, Set2Set, Topology, topology
from jaxmodels.graph.models import MultitaskGNN, PNARegressor
from jaxmodels.graph.pna import PNALayer

__all__ = [
    "PaddingBudget", "FixedBatches", "batch_graphs", "budget_for_batches", "estimate_budget", "graph_from_dense",
    "make_batch", "pad_graphs", "GATLayer", "GCNLayer", "GINLayer", "GRUUpdate", "MLP", "Set2Set", "Topology",
    "topology", "MultitaskGNN", "PNARegressor", "PNALayer",
]
