"""``benchmarks/pna_step.py`` at tiny sizes, and its PyG network computing our network's loss.

The loss check is what lets the benchmark call its comparison "the same model": our ``PNAStack``
parameters are copied into ``benchmarks/torch_pna.py``'s ``TorchPNAStack`` and the MSE must agree.
Our model runs with ``std_eps=0.0`` there (PyG's std has no epsilon; see
``tests/graph/test_pna_pyg_parity.py``); the benchmark itself times the library default.
"""
import importlib.util
import pathlib
import re
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"

TINY = ["--repeats", "1", "--warmup", "1", "--layers", "2", "--towers", "2", "--multitask-graphs", "6",
        "--multitask-nodes", "8", "--multitask-hidden", "8", "--large-nodes", "40", "--large-edges", "150",
        "--large-hidden", "8", "--large-features", "4"]


def _load(name):
    """Imports ``benchmarks/<name>.py`` (not a package) as module ``name``."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pna_step():
    pytest.importorskip("torch")
    pytest.importorskip("torch_geometric")
    _load("torch_pna")
    return _load("pna_step")


def test_benchmark_prints_the_table(pna_step, capsys):
    results = pna_step.main(TINY)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| workload")]
    assert [row.split("|")[1].strip() for row in rows] == ["multitask", "large"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        ours, theirs, ratio = float(cells[7]), float(re.match(r"[\d.]+", cells[8]).group()), float(cells[9])
        assert ours > 0 and theirs > 0 and ratio > 0
    assert [r["workload"] for r in results] == ["multitask", "large"]
    multitask, large = results
    assert multitask["graphs"] == 6 and multitask["nodes"] == 48 and multitask["layers"] == 2
    assert large["graphs"] == 1 and large["nodes"] == 40 and large["edges"] == 150
    for r in results:
        assert r["padded_nodes"] > r["nodes"] and r["padded_edges"] >= r["edges"]
        assert np.isfinite(r["ours_last_loss"]) and np.isfinite(r["torch_last_loss"])


def test_random_graph_has_distinct_edges_without_self_loops(pna_step):
    (graph,) = pna_step.random_graph(50, 600, 3, seed=1)
    assert np.all(graph.senders != graph.receivers)
    assert len(set(zip(graph.senders.tolist(), graph.receivers.tolist()))) == 600
    assert graph.senders.max() < 50 and graph.receivers.max() < 50


@pytest.mark.parametrize("workload", ["multitask", "large"])
def test_torch_network_computes_our_loss(pna_step, workload):
    import torch

    args = pna_step.parse_args(TINY + ["--workloads", workload])
    spec = pna_step.build_workload(workload, args)
    model = pna_step.make_model(spec, std_eps=0.0)
    graph, _ = pna_step.padded_batch(spec)
    params = nn.unbox(model.init(jax.random.key(3), graph)["params"])
    # nonzero biases everywhere, so the copy of every tensor is exercised
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(4), len(leaves))
    params = jax.tree_util.tree_unflatten(
        treedef, [leaf + 0.2 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)])
    ours = float(pna_step.masked_mse(model, params, graph))

    torch_model = pna_step.torch_model(spec, jax.device_get(params))
    with torch.no_grad():
        theirs = float(torch_model.loss(**pna_step.torch_inputs(spec)))
    assert theirs == pytest.approx(ours, rel=1e-4)


def test_auto_threads_picks_one_of_the_candidates(pna_step, capsys):
    (result,) = pna_step.main(TINY + ["--workloads", "large", "--threads", "-1"])
    assert result["torch_threads"] in {1, pna_step.xla_threads()}
    assert "auto (faster of 1 and XLA threads)" in capsys.readouterr().out
