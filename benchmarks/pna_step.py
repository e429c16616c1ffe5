"""PNA training steps on CPU: jaxmodels (``PNALayer``, jit) vs PyTorch Geometric (``PNAConv``, eager).

Run: ``python benchmarks/pna_step.py --repeats 10`` (needs ``pip install -r requirements-bench.txt``,
which includes torch_geometric). Both frameworks run the same network (``PNAStack`` here,
``TorchPNAStack`` in ``benchmarks/torch_pna.py``, weights copied from ours; the loss agrees in
``tests/benchmarks/test_pna_benchmark_smoke.py``) and the same step: forward, MSE loss, backward,
Adam (lr 1e-3) update. The network:

  x -> Linear(F_in, H) -> L x ReLU(PNA(H -> H)) -> [graph mean pool] -> Linear(H, 1) -> MSE

every PNA layer with aggregators mean/min/max/std, scalers identity/amplification/attenuation,
``towers`` towers with the input divided between them (PyG ``divide_input=True``), 1-layer pre and
post nets and a final linear mixing (PyG's ``lin``; ours ``mixing="linear"``); delta / PyG's ``deg``
come from the workload's own in-degree histogram.

Workloads (defaults; L = 4 layers, 4 towers in both):

* ``multitask``: one batch of the PNA multitask benchmark's shape: 512 graphs of N = 20 nodes from
  ``jaxmodels.projects.pna.multitask_data.generate_graph`` (the official mixture of ten graph
  types, seeds 0..511), 2 random node features (as the benchmark's [one-hot source, value]), hidden
  16, one random target per graph (mean pool + head).
* ``large``: one random directed graph, 1000 nodes and 5000 distinct edges (no self loops),
  16 random node features, hidden 64, one random target per node.

Ours runs on the batch padded jraph-style (``jaxmodels.graph.batching``: nodes and edges rounded up
to a multiple of 64, one padding graph; the loss masks padding), the whole step in one
``jax.jit`` with the state donated. PyG runs on the unpadded batch (``edge_index`` + ``batch``).

Threads: ``torch.set_num_threads`` is set to XLA's intra-op thread count, i.e. the cores this
process may run on (``len(os.sched_getaffinity(0))``; XLA's CPU client sizes its Eigen pool to
them), unless ``--threads N`` says otherwise. On a loaded machine torch's OpenMP threads can
collapse (a descheduled thread stalls the others at every barrier; seen here: PyG multitask 0.11
steps/s with 2 threads vs 1.2 with 1 under load ~10), so ``--threads -1`` times 1 and XLA's count
after the warm-up and keeps the faster; the table shows the count used. Timings are medians over ``--repeats`` steps after
``--warmup`` untimed ones, ours and PyG's interleaved step by step so that load changes hit both.
The 1-minute load average is printed; on a shared machine absolute numbers move, the ratio less so.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

AGGREGATORS = ("mean", "min", "max", "std")
SCALERS = ("identity", "amplification", "attenuation")
LEARNING_RATE = 1e-3
WORKLOADS = ("multitask", "large")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per framework and workload (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per framework and workload first")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {WORKLOADS}")
    parser.add_argument("--layers", type=int, default=4, help="PNA layers L (both workloads)")
    parser.add_argument("--towers", type=int, default=4, help="PNA towers (both workloads)")
    parser.add_argument("--multitask-graphs", type=int, default=512, help="graphs in the multitask batch")
    parser.add_argument("--multitask-nodes", type=int, default=20, help="nodes per multitask graph (N)")
    parser.add_argument("--multitask-hidden", type=int, default=16, help="hidden width of the multitask workload")
    parser.add_argument("--multitask-features", type=int, default=2, help="node input features (multitask)")
    parser.add_argument("--large-nodes", type=int, default=1000, help="nodes of the large graph")
    parser.add_argument("--large-edges", type=int, default=5000, help="directed edges of the large graph")
    parser.add_argument("--large-hidden", type=int, default=64, help="hidden width of the large workload")
    parser.add_argument("--large-features", type=int, default=16, help="node input features (large)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads; 0 (default) = XLA's intra-op threads (schedulable cores); "
                             "-1 = the faster of 1 and XLA's count, timed after warm-up (see the docstring)")
    parser.add_argument("--torch-adam", choices=("fused", "foreach", "for-loop"), default="fused",
                        help="torch.optim.Adam implementation (fused is the fastest on CPU)")
    parser.add_argument("--no-torch", action="store_true", help="time ours only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    args = parser.parse_args(argv)
    args.workloads = [w for w in args.workloads.split(",") if w]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        parser.error(f"unknown workload(s) {bad}; choose from {list(WORKLOADS)}")
    if args.multitask_hidden % args.towers or args.large_hidden % args.towers:
        parser.error("hidden widths must be divisible by --towers (divide_input)")
    return args


def configure_environment() -> None:
    """CPU JAX, quiet logs; harmless when JAX is already imported (e.g. under pytest)."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def xla_threads() -> int:
    """XLA:CPU's intra-op parallelism: the cores this process may be scheduled on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# workloads: a list of single graphs (numpy) with node features and targets


def multitask_graphs(num_graphs: int, num_nodes: int, in_features: int, seed: int = 0) -> list:
    """``num_graphs`` graphs from the official multitask generator (seeds seed..seed+num_graphs-1),
    random N(0, 1) node features, one N(0, 1) target per graph."""
    import numpy as np

    from jaxmodels.projects.pna.multitask_data import generate_graph
    from jaxmodels.graph import batching

    rng = np.random.default_rng(seed)
    graphs = []
    for i in range(num_graphs):
        adjacency, _, _ = generate_graph(num_nodes, seed=seed + i)
        graphs.append(batching.graph_from_dense(
            adjacency, nodes={"features": rng.standard_normal((num_nodes, in_features)).astype(np.float32)},
            globals_={"targets": rng.standard_normal((1,)).astype(np.float32)}))
    return graphs


def random_graph(num_nodes: int, num_edges: int, in_features: int, seed: int = 0) -> list:
    """One directed graph with ``num_edges`` distinct random edges (no self loops), N(0, 1) node
    features and one N(0, 1) target per node."""
    import jraph
    import numpy as np

    rng = np.random.default_rng(seed)
    pairs = rng.choice(num_nodes * (num_nodes - 1), size=num_edges, replace=False)
    senders = pairs // (num_nodes - 1)
    receivers = pairs % (num_nodes - 1)
    receivers = receivers + (receivers >= senders)  # skip the diagonal
    nodes = {"features": rng.standard_normal((num_nodes, in_features)).astype(np.float32),
             "targets": rng.standard_normal((num_nodes,)).astype(np.float32)}
    return [jraph.GraphsTuple(nodes=nodes, edges=None, globals=None, senders=senders.astype(np.int32),
                              receivers=receivers.astype(np.int32), n_node=np.array([num_nodes], np.int32),
                              n_edge=np.array([num_edges], np.int32))]


def degree_histogram(graphs):
    """In-degree histogram over all nodes of ``graphs`` (PyG's ``PNAConv.get_degree_histogram``)."""
    import numpy as np

    degrees = np.concatenate([np.bincount(np.asarray(g.receivers), minlength=int(np.sum(g.n_node))) for g in graphs])
    return np.bincount(degrees)


def average_log_degree(histogram) -> float:
    """PNA's delta = PyG's ``avg_deg['log']``: sum_d log(d + 1) hist[d] / sum_d hist[d]."""
    import numpy as np

    histogram = np.asarray(histogram, np.float64)
    return float((np.log(np.arange(len(histogram)) + 1.0) * histogram).sum() / histogram.sum())


def build_workload(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "multitask":
        graphs = multitask_graphs(args.multitask_graphs, args.multitask_nodes, args.multitask_features, args.seed)
        hidden, task, in_features = args.multitask_hidden, "graph", args.multitask_features
    elif name == "large":
        graphs = random_graph(args.large_nodes, args.large_edges, args.large_features, args.seed)
        hidden, task, in_features = args.large_hidden, "node", args.large_features
    else:
        raise ValueError(f"unknown workload {name!r}")
    histogram = degree_histogram(graphs)
    return {"name": name, "graphs": graphs, "hidden": hidden, "task": task, "in_features": in_features,
            "layers": args.layers, "towers": args.towers, "histogram": histogram,
            "delta": average_log_degree(histogram)}


# --------------------------------------------------------------------------------------------
# ours


@functools.cache
def _pna_stack_class():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from jaxmodels.graph import layers as gl
    from jaxmodels.graph import ops
    from jaxmodels.graph.pna import PNALayer

    class PNAStack(nn.Module):
        """x -> Dense(H) -> L x ReLU(PNALayer) -> [mean pool] -> Dense(1): [graphs] or [nodes] predictions."""

        hidden: int
        num_layers: int
        towers: int
        delta: float
        task: str = "graph"
        aggregators: tuple = AGGREGATORS
        scalers: tuple = SCALERS
        std_eps: float = ops.STD_EPS

        @nn.compact
        def __call__(self, graph):
            topo = gl.topology(graph)
            h = gl.dense(self.hidden, name="encoder")(graph.nodes["features"])
            for i in range(self.num_layers):
                h = jax.nn.relu(PNALayer(self.hidden, aggregators=self.aggregators, scalers=self.scalers,
                                         delta=self.delta, towers=self.towers, divide_input=True,
                                         mixing="linear", std_eps=self.std_eps, name=f"pna_{i}")(h, topo))
            if self.task == "graph":
                num_graphs = graph.n_node.shape[0]
                h = jnp.where(topo.node_mask[:, None], h, 0.0)
                h = gl.graph_readout(h, ops.node_graph_index(graph.n_node, topo.num_nodes), num_graphs, "mean")
            return gl.dense(1, name="head")(h)[:, 0]

    return PNAStack


def make_model(workload: dict[str, Any], **overrides):
    return _pna_stack_class()(hidden=workload["hidden"], num_layers=workload["layers"], towers=workload["towers"],
                              delta=workload["delta"], task=workload["task"], **overrides)


def padded_batch(workload: dict[str, Any]):
    """The workload's graphs as one jraph-padded ``GraphsTuple`` (nodes/edges rounded up to 64)."""
    import jax
    import jax.numpy as jnp

    from jaxmodels.graph import batching

    graphs = workload["graphs"]
    budget = batching.budget_for_batches([graphs], round_to=64)
    return jax.tree.map(jnp.asarray, batching.pad_graphs(batching.batch_graphs(graphs), budget)), budget


def masked_mse(model, params, graph):
    import jax.numpy as jnp

    from jaxmodels.graph import ops

    predictions = model.apply({"params": params}, graph)
    if model.task == "graph":
        mask, targets = ops.graph_mask(graph), graph.globals["targets"]
    else:
        mask, targets = ops.node_mask(graph), graph.nodes["targets"]
    mask = mask.astype(jnp.float32)
    return jnp.sum(mask * (predictions - targets) ** 2) / jnp.maximum(jnp.sum(mask), 1.0)


class OursStep:
    """One jitted step (forward, masked MSE, backward, optax Adam update) with the state donated."""

    def __init__(self, workload: dict[str, Any], seed: int = 0):
        import flax.linen as nn
        import jax
        import optax

        self.jax = jax
        self.model = make_model(workload)
        self.graph, self.budget = padded_batch(workload)
        params = nn.unbox(self.model.init(jax.random.key(seed), self.graph)["params"])
        self.initial_params = jax.device_get(params)
        tx = optax.adam(LEARNING_RATE)
        model = self.model

        def step(state, graph):
            loss, grads = jax.value_and_grad(functools.partial(masked_mse, model))(state["params"], graph)
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}, loss

        self.state = {"params": params, "opt_state": tx.init(params)}
        self.compiled = jax.jit(step, donate_argnums=(0,)).lower(self.state, self.graph).compile()
        self.loss = None

    def __call__(self) -> float:
        start = time.perf_counter()
        self.state, loss = self.compiled(self.state, self.graph)
        self.jax.block_until_ready((self.state, loss))
        seconds = time.perf_counter() - start
        self.loss = float(loss)
        return seconds


# --------------------------------------------------------------------------------------------
# PyTorch Geometric


def torch_inputs(workload: dict[str, Any]) -> dict[str, Any]:
    """The unpadded batch for PyG: x, edge_index (row 0 = source), batch vector, targets."""
    import numpy as np
    import torch

    from jaxmodels.graph import batching

    graph = batching.batch_graphs(workload["graphs"])
    num_graphs = len(graph.n_node)
    batch = np.repeat(np.arange(num_graphs), graph.n_node)
    targets = graph.globals["targets"] if workload["task"] == "graph" else graph.nodes["targets"]
    return {"x": torch.from_numpy(np.ascontiguousarray(graph.nodes["features"], np.float32)),
            "edge_index": torch.from_numpy(np.stack([graph.senders, graph.receivers]).astype(np.int64)),
            "batch": torch.from_numpy(batch.astype(np.int64)), "num_graphs": num_graphs,
            "targets": torch.from_numpy(np.ascontiguousarray(targets, np.float32))}


def torch_model(workload: dict[str, Any], flax_params=None):
    import torch

    from torch_pna import TorchPNAStack, load_flax_params

    model = TorchPNAStack(workload["in_features"], workload["hidden"], workload["layers"], workload["towers"],
                          torch.from_numpy(workload["histogram"]), aggregators=AGGREGATORS, scalers=SCALERS,
                          task=workload["task"])
    return load_flax_params(model, flax_params) if flax_params is not None else model


class TorchStep:
    """Eager forward + MSE + backward + ``torch.optim.Adam`` step of ``benchmarks/torch_pna.py``."""

    def __init__(self, workload: dict[str, Any], flax_params, threads: int, adam: str = "fused"):
        import torch

        self.torch = torch
        torch.set_num_threads(threads)
        self.model = torch_model(workload, flax_params).train()
        impl = {"fused": dict(fused=True), "foreach": dict(foreach=True), "for-loop": dict(foreach=False)}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE, **impl[adam])
        self.inputs = torch_inputs(workload)
        self.loss = None

    def choose_threads(self, candidates: list[int], trials: int = 2) -> int:
        """Sets and returns the thread count with the fastest median step among ``candidates``."""
        timings = {}
        for threads in candidates:
            self.torch.set_num_threads(threads)
            self()  # settle the thread pool
            timings[threads] = statistics.median(self() for _ in range(trials))
        best = min(timings, key=timings.get)
        self.torch.set_num_threads(best)
        return best

    def __call__(self) -> float:
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model.loss(**self.inputs)
        loss.backward()
        self.optimizer.step()
        seconds = time.perf_counter() - start
        self.loss = float(loss.detach())
        return seconds


# --------------------------------------------------------------------------------------------


def run_workload(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    workload = build_workload(name, args)
    ours = OursStep(workload, args.seed)
    threads = args.threads if args.threads > 0 else xla_threads()
    theirs = None if args.no_torch else TorchStep(workload, ours.initial_params, threads, args.torch_adam)
    for _ in range(args.warmup):
        ours()
        if theirs is not None:
            theirs()
    if theirs is not None and args.threads < 0:
        threads = theirs.choose_threads(sorted({1, xla_threads()}))
    ours_times, torch_times = [], []
    for _ in range(args.repeats):  # interleaved
        ours_times.append(ours())
        if theirs is not None:
            torch_times.append(theirs())
    graphs = workload["graphs"]
    result = {
        "workload": name, "task": workload["task"], "graphs": len(graphs),
        "nodes": int(sum(int(np.sum(g.n_node)) for g in graphs)),
        "edges": int(sum(int(np.sum(g.n_edge)) for g in graphs)),
        "padded_nodes": ours.budget.n_node, "padded_edges": ours.budget.n_edge,
        "layers": workload["layers"], "hidden": workload["hidden"], "towers": workload["towers"],
        "in_features": workload["in_features"], "delta": workload["delta"],
        "ours_seconds": statistics.median(ours_times), "ours_times": ours_times, "ours_last_loss": ours.loss,
    }
    result["ours_steps_per_s"] = 1.0 / result["ours_seconds"]
    if torch_times:
        torch_s = statistics.median(torch_times)
        result.update({"torch_seconds": torch_s, "torch_times": torch_times, "torch_steps_per_s": 1.0 / torch_s,
                       "torch_threads": threads, "torch_last_loss": theirs.loss,
                       "ratio": torch_s / result["ours_seconds"],  # ours steps/s over PyG steps/s
                       "paired_ratio_median": statistics.median(t / o for o, t in zip(ours_times, torch_times))})
    return result


def format_table(results: list[dict[str, Any]]) -> str:
    lines = ["| workload | graphs | nodes | edges | layers | hidden | towers | ours steps/s | PyG steps/s "
             "| ours/PyG |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        torch_cols = (f"{r['torch_steps_per_s']:.2f} ({r['torch_threads']} thr) | {r['ratio']:.2f}"
                      if "ratio" in r else "- | -")
        lines.append(f"| {r['workload']} | {r['graphs']} | {r['nodes']} | {r['edges']} | {r['layers']} "
                     f"| {r['hidden']} | {r['towers']} | {r['ours_steps_per_s']:.2f} | {torch_cols} |")
    return "\n".join(lines)


def versions() -> dict[str, Any]:
    import flax
    import jax
    import jaxlib
    import numpy
    import optax

    info = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": numpy.__version__,
            "os.cpu_count": os.cpu_count(), "xla_threads": xla_threads(), "machine": platform.machine(),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "loadavg_1min": round(os.getloadavg()[0], 2)}
    try:
        import torch
        import torch_geometric

        info.update(torch=torch.__version__, torch_geometric=torch_geometric.__version__,
                    torch_threads=torch.get_num_threads())
    except ImportError:
        info["torch"] = None
    return info


def main(argv=None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    configure_environment()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_pna.py beside this file
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"warning: 1-minute load average {load_before:.2f} before the run; other work on the machine "
              "skews both frameworks", file=sys.stderr)
    results = [run_workload(name, args) for name in args.workloads]
    info = versions()
    info["loadavg_1min_before"] = round(load_before, 2)
    print(format_table(results))
    for r in results:
        print(f"\n{r['workload']}: {r['task']}-level MSE; ours padded to {r['padded_nodes']} nodes / "
              f"{r['padded_edges']} edges; delta {r['delta']:.4f}; median paired ratio "
              f"{r.get('paired_ratio_median', float('nan')):.2f}")
    print(f"\nrepeats {args.repeats} (median, interleaved ours/PyG), warm-up {args.warmup}, "
          f"aggregators {','.join(AGGREGATORS)}, scalers {','.join(SCALERS)}, Adam lr {LEARNING_RATE} "
          f"(torch {args.torch_adam}), torch threads "
          f"{ {0: f'= XLA threads ({xla_threads()})', -1: 'auto (faster of 1 and XLA threads)'}.get(args.threads, args.threads)}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "versions": info, "args": vars(args)}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
