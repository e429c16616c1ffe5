"""One ViT training step on CPU: jaxmodels (jit) vs the same model in PyTorch eager.

FINDINGS_PLACEHOLDER
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

# Cases: name -> model variant, image size, default batch and classes. Ti/16 at 224 px is the
# ImageNet-1k shape (1000 classes, 197 tokens); Ti/4 at 32 px is the CIFAR-10 shape (10 classes,
# 65 tokens) with the same widths and depth.
CASES: dict[str, dict[str, Any]] = {
    "Ti/16@224": dict(variant="Ti/16", image_size=224, batch=8, num_classes=1000),
    "Ti/4@32": dict(variant="Ti/4", image_size=32, batch=64, num_classes=10),
}

# AdamW as in a DeiT-style recipe; constant lr and no clipping, so both frameworks do the same work.
OPTIMIZER = dict(name="adamw", lr=1e-3, schedule="constant", weight_decay=0.05, b1=0.9, b2=0.999, eps=1e-8)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per framework and case (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per framework and case first")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--batch", action="append", default=[], metavar="CASE=N",
                        help="override a case's batch size, e.g. --batch Ti/16@224=16 (repeatable)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="our ViT's compute dtype (parameters stay float32); PyTorch is always float32")
    parser.add_argument("--matmul-precision", default=None,
                        help="jax.default_matmul_precision for our step (e.g. 'highest', 'bfloat16')")
    parser.add_argument("--xla-flags", default="",
                        help="appended to XLA_FLAGS before JAX is imported, e.g. '--xla_cpu_enable_fast_math=true'")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch.set_num_threads (default os.cpu_count())")
    parser.add_argument("--torch-adamw", choices=("fused", "foreach", "for-loop"), default="fused",
                        help="torch.optim.AdamW implementation (fused is the fastest on CPU)")
    parser.add_argument("--no-torch", action="store_true", help="time ours only")
    parser.add_argument("--peak-size", type=int, default=2048, help="n of the n x n float32 matmul peak probe")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases.split(",") if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    args.cases = args.cases.split(",")
    args.batches = {name: spec["batch"] for name, spec in CASES.items()}
    for item in args.batch:
        name, _, size = item.partition("=")
        if name not in CASES or not size.isdigit():
            parser.error(f"--batch wants CASE=N with CASE in {list(CASES)}, got {item!r}")
        args.batches[name] = int(size)
    return args


def configure_environment(args: argparse.Namespace) -> None:
    """Must run before JAX is imported: XLA reads XLA_FLAGS once."""
    if "jax" in sys.modules:
        raise RuntimeError("vit_step: set XLA flags before importing jax")
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# --------------------------------------------------------------------------------------------
# FLOPs


def analytic_step_flops(*, batch: int, image_size: int, patch_size: int, hidden_size: int, num_layers: int,
                        mlp_dim: int, num_classes: int, channels: int = 3, **_) -> float:
    """3 x the forward multiply-adds x 2 (backward = 2 x forward); matmuls and the patch conv only."""
    patches = (image_size // patch_size) ** 2
    tokens = patches + 1
    embed = 2 * batch * patches * patch_size * patch_size * channels * hidden_size
    per_layer = (2 * batch * tokens * hidden_size * hidden_size * 4  # q, k, v, out projections
                 + 2 * 2 * batch * tokens * tokens * hidden_size  # q k^T and weights @ v
                 + 2 * 2 * batch * tokens * hidden_size * mlp_dim)  # the two MLP matmuls
    head = 2 * batch * hidden_size * num_classes
    return 3.0 * (embed + num_layers * per_layer + head)


def xla_flops(compiled) -> float | None:
    """FLOPs of a compiled computation from XLA's cost analysis (None if unavailable)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


# --------------------------------------------------------------------------------------------
# The two frameworks


class OursStep:
    """The jitted ``jaxmodels.training.classification.train_step`` of a ViT, state donated."""

    def __init__(self, case: dict[str, Any], batch: int, args: argparse.Namespace, images, labels):
        import functools

        import flax.linen as nn
        import jax
        import jax.numpy as jnp

        from jaxmodels.training.classification import make_init_state, train_step
        from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
        from jaxmodels.vision.vit import ViT, vit_variant

        self.jax = jax
        self.model = ViT(num_classes=case["num_classes"], image_size=case["image_size"],
                         dtype=jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32,
                         **vit_variant(case["variant"]))
        num_steps = 1_000_000
        tx = build_optimizer(OPTIMIZER, num_steps)
        step = functools.partial(train_step, model=self.model, tx=tx,
                                 schedule=learning_rate_schedule(OPTIMIZER, num_steps),
                                 num_classes=case["num_classes"], label_smoothing=0.0, mixup_alpha=0.0)
        init = make_init_state(self.model, tx, jnp.zeros((1, case["image_size"], case["image_size"], 3)))
        self.state = jax.jit(lambda key: nn.unbox(init(key)))(jax.random.key(0))
        self.batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}  # NHWC
        self.precision = args.matmul_precision
        with self._precision():
            jitted = jax.jit(step, donate_argnums=(0,))
            self.compiled = jitted.lower(self.state, self.batch).compile()
        self.flops = xla_flops(self.compiled)
        self.params = lambda: self.state["params"]

    def _precision(self):
        import contextlib
        return (self.jax.default_matmul_precision(self.precision) if self.precision
                else contextlib.nullcontext())

    def __call__(self) -> float:
        start = time.perf_counter()
        self.state, metrics = self.compiled(self.state, self.batch)
        self.jax.block_until_ready((self.state, metrics))
        return time.perf_counter() - start


class TorchStep:
    """Eager forward + cross-entropy + backward + ``torch.optim.AdamW`` step of ``benchmarks/torch_vit.py``."""

    def __init__(self, ours: OursStep, args: argparse.Namespace, images, labels):
        import numpy as np
        import torch
        import torch.nn.functional as F

        from torch_vit import load_flax_params, torch_vit_like

        self.torch, self.F = torch, F
        torch.set_num_threads(args.threads)
        self.model = load_flax_params(torch_vit_like(ours.model), ours.jax.device_get(ours.params())).train()
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():  # as jaxmodels' weight_decay_mask
            excluded = name in ("pos_embedding", "cls")
            (decay if param.ndim > 1 and not excluded else no_decay).append(param)
        impl = {"fused": dict(fused=True), "foreach": dict(foreach=True), "for-loop": dict(foreach=False)}
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": OPTIMIZER["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=OPTIMIZER["lr"], betas=(OPTIMIZER["b1"], OPTIMIZER["b2"]), eps=OPTIMIZER["eps"],
            **impl[args.torch_adamw])
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # NCHW
        self.labels = torch.from_numpy(labels.astype(np.int64))

    def __call__(self) -> float:
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.model(self.images), self.labels)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start


def matmul_peak(size: int, repeats: int) -> dict[str, float]:
    """Median GFLOP/s of a jitted float32 ``jnp.dot`` of two ``size x size`` matrices."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
    dot = jax.jit(lambda x, y: jnp.dot(x, y, precision="highest"))
    jax.block_until_ready(dot(a, b))
    times = []
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        jax.block_until_ready(dot(a, b))
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"size": size, "seconds": seconds, "gflops": 2.0 * size ** 3 / seconds / 1e9}


# --------------------------------------------------------------------------------------------


def run_case(name: str, args: argparse.Namespace, peak_gflops: float) -> dict[str, Any]:
    import numpy as np

    from jaxmodels.vision.vit import vit_variant

    case, batch = CASES[name], args.batches[name]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, case["image_size"], case["image_size"], 3), dtype=np.float32)
    labels = rng.integers(0, case["num_classes"], size=(batch,)).astype(np.int32)
    ours = OursStep(case, batch, args, images, labels)
    torch_step = None if args.no_torch else TorchStep(ours, args, images, labels)
    flops, flops_source = ours.flops, "xla cost_analysis"
    if flops is None:
        flops = analytic_step_flops(batch=batch, image_size=case["image_size"], num_classes=case["num_classes"],
                                    **vit_variant(case["variant"]))
        flops_source = "analytic 3x forward matmuls"

    for _ in range(args.warmup):
        ours()
        if torch_step is not None:
            torch_step()
    ours_times, torch_times = [], []
    for _ in range(args.repeats):  # interleaved, so load changes hit both frameworks alike
        ours_times.append(ours())
        if torch_step is not None:
            torch_times.append(torch_step())

    ours_s = statistics.median(ours_times)
    result = {"case": name, "variant": case["variant"], "image_size": case["image_size"],
              "num_classes": case["num_classes"], "batch": batch, "dtype": args.dtype,
              "step_flops": flops, "flops_source": flops_source,
              "ours_seconds": ours_s, "ours_images_per_s": batch / ours_s, "ours_gflops": flops / ours_s / 1e9,
              "ours_percent_of_peak": 100.0 * flops / ours_s / 1e9 / peak_gflops, "ours_times": ours_times}
    if torch_times:
        torch_s = statistics.median(torch_times)
        result.update({
            "torch_seconds": torch_s, "torch_images_per_s": batch / torch_s, "torch_gflops": flops / torch_s / 1e9,
            "torch_percent_of_peak": 100.0 * flops / torch_s / 1e9 / peak_gflops, "torch_times": torch_times,
            "ratio": torch_s / ours_s,  # ours img/s over torch img/s
            "paired_ratio_median": statistics.median(t / o for o, t in zip(ours_times, torch_times)),
        })
    return result


def versions() -> dict[str, Any]:
    import flax
    import jax
    import jaxlib
    import numpy
    import optax

    info = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": numpy.__version__,
            "os.cpu_count": os.cpu_count(), "machine": platform.machine(), "cpu": _cpu_model(),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "jax_devices": str(jax.devices())}
    try:
        import torch
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        info["torch"] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def format_table(results: list[dict[str, Any]], peak: dict[str, float]) -> str:
    lines = ["| case | batch | ours img/s | torch img/s | ours/torch | ours GFLOP/s | % of matmul peak "
             "| torch GFLOP/s | torch % of peak |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        torch_cols = (f"{r['torch_images_per_s']:.1f} | {r['ratio']:.2f}" if "ratio" in r else "- | -")
        torch_flops = (f"{r['torch_gflops']:.1f} | {r['torch_percent_of_peak']:.0f}%" if "ratio" in r else "- | -")
        lines.append(f"| {r['case']} ({r['num_classes']} classes) | {r['batch']} | {r['ours_images_per_s']:.1f} "
                     f"| {torch_cols} | {r['ours_gflops']:.1f} | {r['ours_percent_of_peak']:.0f}% | {torch_flops} |")
    lines.append("")
    lines.append(f"matmul peak: {peak['gflops']:.1f} GFLOP/s (median {peak['seconds'] * 1e3:.1f} ms of a float32 "
                 f"{peak['size']}x{peak['size']} jnp.dot); step FLOPs from {results[0]['flops_source']}" if results
                 else "")
    return "\n".join(lines)


def main(argv=None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    configure_environment(args)
    import jax

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_vit.py beside this file
    peak = matmul_peak(args.peak_size, repeats=args.repeats)
    results = [run_case(name, args, peak["gflops"]) for name in args.cases]
    info = versions()
    print(format_table(results, peak))
    print(f"\nrepeats {args.repeats} (median, interleaved ours/torch), warm-up {args.warmup}, our dtype {args.dtype}, "
          f"matmul precision {args.matmul_precision or 'default'}, torch AdamW {args.torch_adamw}, "
          f"torch threads {args.threads}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "matmul_peak": peak, "versions": info, "args": {
                k: v for k, v in vars(args).items() if k != "batch"}}, f, indent=2)
    del jax
    return results


if __name__ == "__main__":
    main()
