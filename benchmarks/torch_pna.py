"""A PyTorch Geometric PNA network with the structure of ``benchmarks/pna_step.py``'s ``PNAStack``,
and a Flax -> PyTorch weight copy.

It exists so that ``benchmarks/pna_step.py`` times *the same model* in both frameworks
(``tests/benchmarks/test_pna_benchmark_smoke.py`` copies our parameters into it and checks the
loss agrees). Structure (both frameworks):

  x [nodes, F_in] -> Linear(F_in, H) (encoder) -> L x { h = ReLU(PNAConv(h)) } ->
  graph task: global mean pool -> Linear(H, 1), MSE against one target per graph
  node task:  Linear(H, 1) per node, MSE against one target per node

with every ``PNAConv(H, H, aggregators, scalers, deg, towers=T, divide_input=True, pre_layers=1,
post_layers=1)`` (``torch_geometric.nn.PNAConv``, whose final ``lin`` is our ``mixing="linear"``).
PyG runs on the unpadded batch (``edge_index`` [2, E] with row 0 the source, ``batch`` vector);
ours on the same graphs padded jraph-style.

Parameter mapping (``load_flax_params``; our ``PNALayer`` layout, see ``jaxmodels/graph/pna.py``):

  ``pre_receiver[t]`` [F, F], ``pre_sender[t]`` [F, F] -> ``pre_nns[t][0].weight`` = [pre_receiver[t]^T | pre_sender[t]^T]
  ``pre_bias[t]``                                     -> ``pre_nns[t][0].bias``
  ``post_0[t]`` [(1 + S*A) F, F_out], ``post_0_bias[t]`` -> ``post_nns[t][0].weight`` (transposed), ``.bias``
  ``mixing`` Dense kernel [H, H], bias                -> ``lin.weight`` (transposed), ``.bias``
  Flax ``Dense`` kernel [in, out]                     -> ``torch.nn.Linear.weight`` [out, in]

The std aggregator differs by design: PyG's is clamp(var, 1e-5).sqrt() zeroed at <= sqrt(1e-5),
ours sqrt(relu(var) + std_eps) (library default std_eps = 1e-5); same cost.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import PNAConv, global_mean_pool


class TorchPNAStack(nn.Module):
    """Encoder -> L x ReLU(PNAConv) -> (mean pool) -> head; see the module docstring."""

    def __init__(self, in_features: int, hidden: int, num_layers: int, towers: int, deg: torch.Tensor, *,
                 aggregators: Sequence[str], scalers: Sequence[str], task: str = "graph"):
        super().__init__()
        if task not in ("graph", "node"):
            raise ValueError(f"task must be 'graph' or 'node', got {task!r}")
        self.task = task
        self.encoder = nn.Linear(in_features, hidden)
        self.convs = nn.ModuleList([
            PNAConv(hidden, hidden, aggregators=list(aggregators), scalers=list(scalers), deg=deg, towers=towers,
                    pre_layers=1, post_layers=1, divide_input=True)
            for _ in range(num_layers)])
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None = None,
                num_graphs: int | None = None) -> torch.Tensor:
        h = self.encoder(x)
        for conv in self.convs:
            h = torch.relu(conv(h, edge_index))
        if self.task == "graph":
            h = global_mean_pool(h, batch, size=num_graphs)
        return self.head(h)[:, 0]

    def loss(self, x, edge_index, batch, num_graphs, targets) -> torch.Tensor:
        return torch.mean((self(x, edge_index, batch, num_graphs) - targets) ** 2)


def _tensor(value) -> torch.Tensor:
    return torch.from_numpy(np.array(value, dtype=np.float32, copy=True))


def _copy(param: torch.nn.Parameter, value) -> None:
    value = _tensor(value)
    if tuple(param.shape) != tuple(value.shape):
        raise ValueError(f"shape mismatch: torch {tuple(param.shape)} vs flax {tuple(value.shape)}")
    with torch.no_grad():
        param.copy_(value)


def load_pna_conv_params(conv: PNAConv, params: Mapping[str, Any]) -> PNAConv:
    """Our ``PNALayer`` params (pre_layers = post_layers = 1, no edge features, mixing "linear") -> ``conv``."""
    params = {k: v for k, v in params.items()}
    expected = {"pre_receiver", "pre_sender", "pre_bias", "post_0", "post_0_bias", "mixing"}
    if set(params) != expected:
        raise ValueError(f"load_pna_conv_params handles exactly {sorted(expected)}, got {sorted(params)}")
    for t in range(conv.towers):
        recv, send = np.asarray(params["pre_receiver"][t]), np.asarray(params["pre_sender"][t])
        _copy(conv.pre_nns[t][0].weight, np.concatenate([recv.T, send.T], axis=1))
        _copy(conv.pre_nns[t][0].bias, params["pre_bias"][t])
        _copy(conv.post_nns[t][0].weight, np.asarray(params["post_0"][t]).T)
        _copy(conv.post_nns[t][0].bias, params["post_0_bias"][t])
    _copy(conv.lin.weight, np.asarray(params["mixing"]["kernel"]).T)
    _copy(conv.lin.bias, params["mixing"]["bias"])
    return conv


def load_flax_params(model: TorchPNAStack, params: Mapping[str, Any]) -> TorchPNAStack:
    """``PNAStack`` params (``encoder``, ``pna_{i}``, ``head``) -> ``model``, in place; returns it."""
    for name, linear in (("encoder", model.encoder), ("head", model.head)):
        _copy(linear.weight, np.asarray(params[name]["kernel"]).T)
        _copy(linear.bias, params[name]["bias"])
    for i, conv in enumerate(model.convs):
        load_pna_conv_params(conv, params[f"pna_{i}"])
    return model
