"""The counting component's forward + backward on CPU: jaxmodels (jit) vs PyTorch (eager).

Run: ``python benchmarks/counting_step.py --repeats 20`` (needs torch: ``pip install -r
requirements-bench.txt``). Both sides compute the same function with the same weights: our
``jaxmodels.vqa.counting.Counter`` and the official equations in ``benchmarks/torch_counting.py``
(outputs and gradients agree, ``tests/vqa/test_counting.py``). Workloads:

* ``toy``: the toy task's shape (Zhang et al. 2018, sec. 5.1): batch 1024, 10 proposals, k = 10,
  weights already in [0, 1];
* ``vqa``: the VQA v2 model's shape: batch 256 (its training batch), 100 proposals with attention
  logits, top k = 10, sigmoid inside.

One timed call is: count features, a random projection of them summed to a scalar, and the
gradients with respect to the attention and all eight f's weights (what a training step needs
from the counter). Ours is one ``jax.jit``; PyTorch runs eagerly (``torch.set_num_threads`` = the
cores this process may use, unless ``--threads``). Medians over ``--repeats`` calls after
``--warmup`` untimed ones, the two frameworks interleaved call by call so load changes hit both;
the 1-minute load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

WORKLOADS = {"toy": dict(batch=1024, proposals=10, objects=10, sigmoided=True),
             "vqa": dict(batch=256, proposals=100, objects=10, sigmoided=False)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per framework and workload (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--workloads", default="toy,vqa", help=f"comma-separated subset of {sorted(WORKLOADS)}")
    parser.add_argument("--batch-scale", type=float, default=1.0, help="multiply every workload's batch (smoke runs)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = the schedulable cores")
    parser.add_argument("--no-torch", action="store_true", help="time ours only")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    return parser.parse_args(argv)


def make_inputs(spec, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    b, n = spec["batch"], spec["proposals"]
    corners = rng.uniform(0, 0.7, size=(b, n, 2))
    sizes = rng.uniform(0.02, 0.3, size=(b, n, 2))
    boxes = np.concatenate([corners, corners + sizes], -1).astype(np.float32)
    attention = (rng.uniform(size=(b, n)) if spec["sigmoided"] else rng.normal(scale=2.0, size=(b, n))).astype(np.float32)
    projection = rng.normal(size=spec["objects"] + 1).astype(np.float32)
    return boxes, attention, projection


class Ours:
    def __init__(self, spec, boxes, attention, projection):
        import jax
        import jax.numpy as jnp

        from jaxmodels.vqa.counting import Counter

        self.jax = jax
        counter = Counter(objects=spec["objects"], already_sigmoided=spec["sigmoided"])
        self.boxes, self.attention = jnp.asarray(boxes), jnp.asarray(attention)
        self.params = counter.init(jax.random.PRNGKey(0), self.boxes, self.attention)["params"]
        rng = jax.random.PRNGKey(1)
        self.params = jax.tree.map(lambda w: jax.random.uniform(rng, w.shape, minval=0.5, maxval=1.5), self.params)
        projection = jnp.asarray(projection)

        def loss(params, attention, boxes):
            return jnp.sum(counter.apply({"params": params}, boxes, attention) * projection)

        self.step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    def __call__(self):
        return self.jax.block_until_ready(self.step(self.params, self.attention, self.boxes))


class Torch:
    def __init__(self, spec, boxes, attention, projection, params, threads):
        import torch

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import torch_counting

        torch.set_num_threads(threads)
        self.torch = torch
        self.counter = torch_counting.load_jax_params(
            torch_counting.Counter(spec["objects"], spec["sigmoided"]), params)
        self.boxes = torch.tensor(boxes).transpose(1, 2).contiguous()
        self.attention = torch.tensor(attention)
        self.projection = torch.tensor(projection)

    def __call__(self):
        self.counter.zero_grad(set_to_none=True)
        attention = self.attention.clone().requires_grad_(True)
        loss = (self.counter(self.boxes, attention) * self.projection).sum()
        loss.backward()
        return loss.item(), attention.grad


def median_ms(times):
    return 1000 * statistics.median(times)


def run(args):
    import numpy as np

    threads = args.threads or len(os.sched_getaffinity(0))
    results = []
    for name in [w for w in args.workloads.split(",") if w]:
        if name not in WORKLOADS:
            raise SystemExit(f"--workloads: unknown workload {name!r}; choose from {sorted(WORKLOADS)}")
        spec = dict(WORKLOADS[name])
        spec["batch"] = max(1, int(round(spec["batch"] * args.batch_scale)))
        boxes, attention, projection = make_inputs(spec)
        ours = Ours(spec, boxes, attention, projection)
        theirs = None if args.no_torch else Torch(spec, boxes, attention, projection, ours.params, threads)
        if theirs is not None:  # same function: the losses agree before timing
            ours_loss = float(ours()[0])
            theirs_loss = theirs()[0]
            if not np.isclose(ours_loss, theirs_loss, rtol=1e-4, atol=1e-3):
                raise SystemExit(f"{name}: losses differ (ours {ours_loss}, torch {theirs_loss}); not the same function")
        for _ in range(args.warmup):
            ours()
            if theirs is not None:
                theirs()
        t_ours, t_theirs = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours()
            t_ours.append(time.perf_counter() - start)
            if theirs is not None:
                start = time.perf_counter()
                theirs()
                t_theirs.append(time.perf_counter() - start)
        row = {"workload": name, **spec, "ours_ms": median_ms(t_ours),
               "torch_ms": median_ms(t_theirs) if t_theirs else None, "torch_threads": threads}
        row["speedup"] = row["torch_ms"] / row["ours_ms"] if row["torch_ms"] else None
        results.append(row)
    return results


def environment():
    import jax
    import jaxlib

    info = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "cpus": len(os.sched_getaffinity(0)), "load average (1 min)": round(os.getloadavg()[0], 2)}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def table(results) -> str:
    lines = ["| workload | shape | ours (jit) ms | torch (eager) ms | torch / ours |", "|---|---|---|---|---|"]
    for r in results:
        shape = f"batch {r['batch']}, {r['proposals']} proposals, k={r['objects']}"
        torch_ms = f"{r['torch_ms']:.2f} ({r['torch_threads']} thr)" if r["torch_ms"] else "-"
        speedup = f"{r['speedup']:.2f}" if r["speedup"] else "-"
        lines.append(f"| {r['workload']} | {shape} | {r['ours_ms']:.2f} | {torch_ms} | {speedup} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    results = run(args)
    info = environment()
    print("Counting component forward + backward (medians; " + ", ".join(f"{k} {v}" for k, v in info.items()) + ")")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": info, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
