"""DDPM U-Net on CPU: one training step and one sampling step, jaxmodels (jit) vs diffusers (torch eager).

Run: ``python benchmarks/diffusion_step.py --repeats 5`` (needs ``pip install -r requirements-bench.txt``).
Both frameworks run the CIFAR-10 U-Net of Ho et al. (2020) (35.7M parameters, 32x32x3, batch 8):
ours is ``jaxmodels.diffusion.unet.UNet``; theirs diffusers' ``UNet2DModel`` built by
``jaxmodels.convert.diffusers_unet.diffusers_config`` with our initial weights copied in
(``benchmarks/torch_unet.py``; outputs equal to ~1e-5, ``tests/diffusion/test_unet.py``).

* train: eps_theta(x_t, t) with dropout 0.1 (train mode), the simple loss ||eps - eps_theta||^2 (eq. 14),
  backward, Adam (lr 2e-4, the paper's); x_t, t and eps are fixed inputs so both do the same work.
* sample: one forward pass in eval mode without gradients (the network call of one ancestral step).

Repeats are interleaved (ours train, torch train, ours sample, torch sample) so that load changes on the
shared machine hit both alike; the table shows medians. torch's thread count is chosen by timing (the
faster of 1 and os.cpu_count(), ``--threads 0``) as in ``benchmarks/vit_step.py``: under load its OpenMP
threads can collapse. The 1-minute load average before and after is printed.

Findings (2-vCPU AMD EPYC VM shared with other jobs, 2026-11-23; load average 1-4 during the runs):

* Ratio ours/torch (images/s, medians of 5 interleaved repeats, torch's faster thread count, which was
  1 under that load): train 0.79 (ours 1.19 img/s, torch 1.51), sample 0.91 (4.95 vs 5.41).
* The network is convolution-bound: in a single-core XLA profile of the train step (sum of per-op
  minima, 5.5 s) the 3x3 convolutions take ~80%, GroupNorm/swish/attention/transposes the rest; the
  forward pass is ~85% convolutions. One core, min of 7-15 runs, batch 8: XLA's (YNNPACK) forward and
  input-gradient 3x3 convolutions run within ~10% of torch's oneDNN ones (32x32x128: 31.5/31.9 ms vs
  29.5/27.8 ms), but XLA lowers the *kernel* gradient to a convolution with an H x W window that is
  ~2x slower than torch's (74 ms vs 38 ms).
* Adopted in ``jaxmodels/diffusion/unet.py`` (same maths, parity test unchanged): the kernel gradient
  as 9 per-tap matmuls (``conv3x3``'s custom VJP): 32x32x128 74 -> ~66 ms, 16x16x256 60 -> 35 ms
  (torch 38), 8x8x256 on par; train step ~10% faster by median (2 threads, 5 repeats: 8.0 -> 7.0 s at
  load ~3.8). The 9 input-view copies the matmuls need cost ~10% of the step; a single im2col matmul,
  flat-offset views, H x W-window convolutions with swapped roles, per-image batched matmuls and 3-tap
  column groups were all slower. GroupNorm as per-channel sums over H, W then per-group sums (instead
  of reducing a [B, HW, G, C/G] view): forward 5.5 -> 2.4 ms, backward 7.7 -> 4.5 ms at 32x32x128.
* No effect beyond noise: ``--xla_cpu_use_onednn=true`` (+ ``--xla_cpu_experimental_onednn_custom_call``),
  ``--xla_cpu_experimental_{onednn,ynn}_fusion_type=individual_convolution``; swish as x sigmoid(x),
  jax.nn.silu, x / (1 + exp(-x)) or via tanh; nearest upsampling is a broadcast + reshape (free).
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

# The CIFAR-10 network (paper, Appendix B) and a small one for smoke tests.
CONFIGS: dict[str, dict[str, Any]] = {
    "cifar10": dict(model=dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1),
                    image_size=32, channels=3, batch=8),
    "small": dict(model=dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.1),
                  image_size=16, channels=3, batch=2),
}
LEARNING_RATE = 2e-4  # Ho et al. 2020, Appendix B (CIFAR-10)
NUM_TIMESTEPS = 1000
WORKLOADS = ("train", "sample")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 8; 2 with --small)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per framework and workload (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per framework and workload first")
    parser.add_argument("--small", action="store_true", help="a small U-Net at 16x16 (smoke test)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {WORKLOADS}")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads; 0 (default) = the faster of 1 and os.cpu_count(), timed "
                             "after warm-up")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="our compute dtype (parameters stay float32); torch is always float32")
    parser.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before JAX is imported")
    parser.add_argument("--no-torch", action="store_true", help="time ours only")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    args = parser.parse_args(argv)
    args.config = "small" if args.small else "cifar10"
    args.batch = args.batch or CONFIGS[args.config]["batch"]
    args.workloads = [w for w in args.workloads.split(",") if w]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad or not args.workloads:
        parser.error(f"unknown workload(s) {bad}; choose from {WORKLOADS}")
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch and --repeats must be >= 1, --warmup >= 0")
    return args


def configure_environment(args: argparse.Namespace) -> None:
    """Must run before JAX is imported: XLA reads XLA_FLAGS once."""
    if args.xla_flags:
        if "jax" in sys.modules:
            raise RuntimeError("diffusion_step: --xla-flags must be set before jax is imported")
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make_inputs(batch: int, image_size: int, channels: int, seed: int = 0) -> dict[str, Any]:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (eq. 4, linear betas 1e-4..0.02), t, eps; NHWC float32."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, (batch, image_size, image_size, channels)).astype(np.float32)
    eps = rng.standard_normal(x0.shape).astype(np.float32)
    t = rng.integers(0, NUM_TIMESTEPS, size=(batch,)).astype(np.int32)
    alphas_bar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, NUM_TIMESTEPS))
    abar = alphas_bar[t].astype(np.float32)[:, None, None, None]
    x_t = (np.sqrt(abar) * x0 + np.sqrt(1 - abar) * eps).astype(np.float32)
    return {"x_t": x_t, "t": t, "eps": eps}


class Ours:
    """Our U-Net: a jitted (donated) train step with optax.adam, and a jitted eval forward."""

    def __init__(self, args: argparse.Namespace, inputs: dict[str, Any]):
        import flax.linen as nn
        import jax
        import jax.numpy as jnp
        import optax

        from jaxmodels.diffusion.unet import UNet, count_params

        spec = CONFIGS[args.config]
        self.jax = jax
        self.model = UNet(**spec["model"], dtype=jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32)
        x_t, t, eps = (jnp.asarray(inputs[k]) for k in ("x_t", "t", "eps"))
        self.inputs = (x_t, t, eps)
        params = jax.jit(lambda key: nn.unbox(self.model.init({"params": key}, x_t[:1], t[:1], train=False)))(
            jax.random.key(0))["params"]
        self.num_params = count_params(params)
        self.params = params
        tx = optax.adam(LEARNING_RATE)
        model = self.model

        def loss_fn(p, x, tt, e, key):
            pred = model.apply({"params": p}, x, tt, train=True, rngs={"dropout": key})
            return jnp.mean(jnp.square(pred - e))

        def train_step(state, x, tt, e):
            p, opt_state, step = state
            loss, grads = jax.value_and_grad(loss_fn)(p, x, tt, e, jax.random.fold_in(jax.random.key(1), step))
            updates, opt_state = tx.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state, step + 1), loss

        def sample_step(p, x, tt):
            return model.apply({"params": p}, x, tt, train=False)

        # the train state is a copy: its buffers are donated, self.params stays for torch and sampling
        self.state = (jax.tree_util.tree_map(jnp.array, params), tx.init(params), jnp.zeros((), jnp.int32))
        self.train_compiled = jax.jit(train_step, donate_argnums=(0,)).lower(self.state, x_t, t, eps).compile()
        self.sample_compiled = jax.jit(sample_step).lower(params, x_t, t).compile()
        self.last_loss = None

    def train(self) -> float:
        x_t, t, eps = self.inputs
        start = time.perf_counter()
        self.state, loss = self.train_compiled(self.state, x_t, t, eps)
        self.jax.block_until_ready((self.state, loss))
        seconds = time.perf_counter() - start
        self.last_loss = float(loss)
        return seconds

    def sample(self) -> float:
        x_t, t, _ = self.inputs
        start = time.perf_counter()
        self.jax.block_until_ready(self.sample_compiled(self.params, x_t, t))
        return time.perf_counter() - start


class Torch:
    """diffusers' UNet2DModel with our initial weights: eager train step (torch.optim.Adam) and no-grad forward."""

    def __init__(self, args: argparse.Namespace, ours: Ours, inputs: dict[str, Any]):
        import numpy as np
        import torch

        from torch_unet import load_flax_params, torch_unet_like

        spec = CONFIGS[args.config]
        self.torch = torch
        torch.set_num_threads(args.threads or os.cpu_count())
        self.model = load_flax_params(torch_unet_like(ours.model, sample_size=spec["image_size"],
                                                      in_channels=spec["channels"]), ours.params)
        self.num_params = sum(p.numel() for p in self.model.parameters())
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE, fused=True)
        self.x_t = torch.from_numpy(np.ascontiguousarray(inputs["x_t"].transpose(0, 3, 1, 2)))  # NCHW
        self.eps = torch.from_numpy(np.ascontiguousarray(inputs["eps"].transpose(0, 3, 1, 2)))
        self.t = torch.from_numpy(inputs["t"].astype(np.int64))
        self.last_loss = None

    def train(self) -> float:
        torch = self.torch
        start = time.perf_counter()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.mean(torch.square(self.model(self.x_t, self.t).sample - self.eps))
        loss.backward()
        self.optimizer.step()
        seconds = time.perf_counter() - start
        self.last_loss = float(loss.detach())
        return seconds

    def sample(self) -> float:
        start = time.perf_counter()
        self.model.eval()
        with self.torch.no_grad():
            self.model(self.x_t, self.t)
        return time.perf_counter() - start

    def choose_threads(self, workloads: list[str], candidates: list[int], trials: int = 2) -> int:
        """Sets and returns the thread count with the fastest summed median over ``workloads``."""
        timings = {}
        for threads in candidates:
            self.torch.set_num_threads(threads)
            timings[threads] = 0.0
            for workload in workloads:
                getattr(self, workload)()  # settle the thread pool
                timings[threads] += statistics.median(getattr(self, workload)() for _ in range(trials))
        best = min(timings, key=timings.get)
        self.torch.set_num_threads(best)
        return best


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    spec = CONFIGS[args.config]
    inputs = make_inputs(args.batch, spec["image_size"], spec["channels"])
    ours = Ours(args, inputs)
    theirs = None if args.no_torch else Torch(args, ours, inputs)
    if theirs is not None and theirs.num_params != ours.num_params:
        raise RuntimeError(f"parameter counts differ: ours {ours.num_params}, diffusers {theirs.num_params}")
    for _ in range(args.warmup):
        for workload in args.workloads:
            getattr(ours, workload)()
            if theirs is not None:
                getattr(theirs, workload)()
    threads = None
    if theirs is not None:
        threads = args.threads or theirs.choose_threads(args.workloads, sorted({1, os.cpu_count() or 1}))
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for workload in args.workloads:
            times.setdefault(("ours", workload), []).append(getattr(ours, workload)())
            if theirs is not None:
                times.setdefault(("torch", workload), []).append(getattr(theirs, workload)())

    results = []
    for workload in args.workloads:
        ours_s = statistics.median(times[("ours", workload)])
        result = {"workload": workload, "config": args.config, "batch": args.batch, "image_size": spec["image_size"],
                  "params": ours.num_params, "dtype": args.dtype, "ours_seconds": ours_s,
                  "ours_images_per_s": args.batch / ours_s, "ours_times": times[("ours", workload)]}
        if workload == "train":
            result["ours_last_loss"] = ours.last_loss
        if theirs is not None:
            torch_s = statistics.median(times[("torch", workload)])
            result.update({"torch_seconds": torch_s, "torch_images_per_s": args.batch / torch_s,
                           "torch_times": times[("torch", workload)], "torch_threads": threads,
                           "ratio": torch_s / ours_s,  # ours img/s over torch img/s
                           "paired_ratio_median": statistics.median(
                               t / o for o, t in zip(times[("ours", workload)], times[("torch", workload)]))})
            if workload == "train":
                result["torch_last_loss"] = theirs.last_loss
        results.append(result)
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    lines = ["| workload | config | batch | ours img/s | torch img/s | ours/torch | ours ms/step | torch ms/step |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "ratio" in r:
            torch_cols = (f"{r['torch_images_per_s']:.2f} ({r['torch_threads']} thr) | {r['ratio']:.2f} "
                          f"| {r['ours_seconds'] * 1e3:.0f} | {r['torch_seconds'] * 1e3:.0f}")
        else:
            torch_cols = f"- | - | {r['ours_seconds'] * 1e3:.0f} | -"
        lines.append(f"| {r['workload']} | {r['config']} ({r['params'] / 1e6:.1f}M, {r['image_size']}px) "
                     f"| {r['batch']} | {r['ours_images_per_s']:.2f} | {torch_cols} |")
    return "\n".join(lines)


def versions() -> dict[str, Any]:
    import flax
    import jax
    import jaxlib
    import optax

    info = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "flax": flax.__version__, "optax": optax.__version__, "os.cpu_count": os.cpu_count(),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
    try:
        import diffusers
        import torch

        info.update(torch=torch.__version__, diffusers=diffusers.__version__)
    except ImportError:
        info["torch"] = None
    return info


def main(argv=None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    configure_environment(args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_unet.py beside this file
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"warning: 1-minute load average {load_before:.2f} before the run; other work on the machine "
              "skews both frameworks, torch's OpenMP threads most", file=sys.stderr)
    results = run(args)
    load_after = os.getloadavg()[0]
    print(format_table(results))
    print(f"\nrepeats {args.repeats} (median, interleaved ours/torch), warm-up {args.warmup}, our dtype {args.dtype}, "
          f"torch threads {args.threads or 'auto (faster of 1 and os.cpu_count())'}, 1-minute load average "
          f"{load_before:.2f} before / {load_after:.2f} after")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "load_before": load_before, "load_after": load_after,
                       "versions": versions(), "args": vars(args)}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
