"""One ViT training step on CPU: jaxmodels (jit) vs the same model in PyTorch eager.

Run: ``python benchmarks/vit_step.py --repeats 7`` (needs ``pip install -r requirements-bench.txt``).
Both frameworks run the same model (``benchmarks/torch_vit.py``, weights copied from ours, logits
equal to 1e-4 in ``tests/benchmarks/``) and the same step: forward, cross-entropy, backward, AdamW.

Findings on the 2-vCPU AMD EPYC development VM (2026-11-23; medians, side by side). The VM was
shared with other jobs (1-minute load 2-7 most of the time), so absolute numbers move by 10-30%
between runs; the ratios below were taken with both frameworks interleaved in one process, and the
flag/tweak comparisons pinned to one core (``taskset -c 0``, torch 1 thread, process CPU time per
step) where they repeat to about +-0.04.

* Ratio (ours/torch images per second): Ti/16@224 batch 8: 0.68-0.73; Ti/4@32 batch 64: 0.68-0.70
  (batch 32: 0.76). The same at an idle moment with both on 2 threads (Ti/16@224: ours 9.8 img/s,
  75 GFLOP/s = 49% of a 154 GFLOP/s 2-thread peak; torch 14.3 img/s, 71%): 0.68.
* Threads: under load, torch's 2 OpenMP threads collapse (a thread descheduled at a barrier stalls
  the other): Ti/4@32 batch 32 took 10.7 s with 2 threads vs 1.7 s with 1, and a first table showed
  ours 2-3.8x "faster". Idle, 2 threads are ~1.5x faster than 1 for both frameworks. Hence torch's
  thread count is chosen by timing (``--threads 0``, the default) and the load is printed.
* XLA flags (Ti/16@224, ratio vs torch, base 0.71): ``--xla_cpu_enable_fast_math=true`` 0.70 (0.73
  with all ``honor_*`` off); ``--xla_cpu_multi_thread_eigen=false`` 0.73;
  ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` 0.73; ``--xla_cpu_use_fusion_emitters=false``
  0.69. The dots go to YNNPACK fusions by default; ``--xla_cpu_experimental_ynn_fusion_type=``
  (off: Eigen dots) 0.73, ``=dot`` 0.72, ``=individual_dot`` 0.69, ``=-eltwise`` 0.67, ``=-reduce``
  0.65, ``=dot,eltwise`` 0.51; XNNPACK ``--xla_cpu_experimental_xnn_fusion_type=dot`` 0.72 and
  ``--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY`` 0.72;
  ``--xla_cpu_use_onednn=true`` emits no oneDNN calls in this jaxlib. ``--xla_cpu_use_thunk_runtime``
  is ignored by this jaxlib (it logs "no longer supported"). None moves the number beyond noise.
* dtype: ``--dtype bfloat16`` 0.61 vs 0.72 (no native bf16 GEMM on this AVX2 CPU; slower).
  ``--matmul-precision``: no effect (CPU float32 dots are bit-identical under every setting).
* Where the time goes (XLA profile, one Ti/16@224 block fwd+bwd ~100 ms single-threaded): the
  linear-layer matmuls run at torch's speed (same shapes alone: within noise of MKL, ~60-75
  GFLOP/s); the gap is everything around them. Exact GELU (``jax.nn.gelu(approximate=False)``
  lowers erfc to a long polynomial + exp + selects) ~11 ms vs torch's erf GELU 6 ms; the softmax
  materialises a [b, h, q, k] broadcast of 1/sum and rescales the weights (~17 ms forward attention
  vs torch's fused flash kernel 5.7 ms); transposes around the batched attention dots and the
  weight-gradient dots ~5 ms; LayerNorm ~2 ms each (torch 0.45). ``jax.nn.dot_product_attention``
  (0.69) and a heads-major [b, h, t, d] layout (0.72) do not help.
* ``--tweaks`` (same parameters and function, checked in ``tests/benchmarks/``), Ti/16@224 ratio:
  ``erf_gelu`` +0.03-0.04, ``fused_qkv`` (one [embed, 3, heads, kv] matmul from the three stacked
  kernels) +0.03-0.04, ``patch_matmul`` (conv as reshape + matmul) +0.01-0.02; all four with
  ``deferred_softmax`` (divide the [b, q, h, d] output by the row sums instead of normalising the
  weights) 0.80 vs 0.72, i.e. ~11% faster steps. On Ti/4@32 (MLP-bound, 65 tokens) all four: 0.72
  vs 0.70, within noise. None reaches 1.0: the rest is XLA:CPU fusion/layout around the dots.
* Adopted in the library (``jaxmodels/layers``): the erf GELU and the fused q/k/v matmul for
  self-attention (parameters unchanged). Measured after, idle machine, 7 interleaved repeats,
  torch's faster thread count (2): Ti/16@224 0.77 (ours 9.4 img/s, torch 12.3); Ti/4@32 0.78
  (31.9 vs 40.9). The ``erf_gelu``/``fused_qkv`` tweaks are now the default path (no-ops here);
  ``deferred_softmax`` and ``patch_matmul`` remain options, not adopted (small gain, and the
  deferred softmax has no attention-weight dropout or weight capture).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

# Cases: name -> model variant, image size, default batch and classes. Ti/16 at 224 px is the
# ImageNet-1k shape (1000 classes, 197 tokens); Ti/4 at 32 px is the CIFAR-10 shape (10 classes,
# 65 tokens) with the same widths and depth.
CASES: dict[str, dict[str, Any]] = {
    "Ti/16@224": dict(variant="Ti/16", image_size=224, batch=8, num_classes=1000),
    "Ti/4@32": dict(variant="Ti/4", image_size=32, batch=64, num_classes=10),
}

# AdamW as in a DeiT-style recipe; constant lr and no clipping, so both frameworks do the same work.
OPTIMIZER = dict(name="adamw", lr=1e-3, schedule="constant", weight_decay=0.05, b1=0.9, b2=0.999, eps=1e-8)

# Experimental rewrites of our ViT's layers (``--tweaks``): same parameter tree, same function
# (tests/benchmarks/test_torch_vit_matches.py checks logits and gradients), different XLA graph.
TWEAKS = ("erf_gelu", "patch_matmul", "fused_qkv", "deferred_softmax")


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
    parser.add_argument("--tweaks", default="",
                        help="comma-separated experimental changes to our ViT, same parameters and maths "
                             f"(see the docstring): {', '.join(TWEAKS)}, or 'all'")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads; 0 (default) = the faster of 1 and os.cpu_count(), "
                             "timed during warm-up (on this 2-core VM torch's 2-thread OpenMP GEMMs of "
                             "Ti's 192-wide matrices run ~20x slower than 1 thread)")
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
    args.tweaks = list(TWEAKS) if args.tweaks == "all" else [t for t in args.tweaks.split(",") if t]
    bad = [t for t in args.tweaks if t not in TWEAKS]
    if bad:
        parser.error(f"unknown tweak(s) {bad}; choose from {list(TWEAKS)} or 'all'")
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
# --tweaks: candidate library changes, swapped into jaxmodels.vision.vit for the benchmark only


@functools.cache
def _tweak_classes() -> dict[str, Callable]:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxmodels.layers import MlpBlock, MultiHeadAttention, PatchEmbedding, to_pair
    from jaxmodels.layers.attention import attention_weights, flattened_init

    def erf_gelu(x):
        """Exact GELU as 0.5 x (1 + erf(x / sqrt 2)) (PyTorch's formula); ``jax.nn.gelu(approximate=False)``
        uses erfc(-x / sqrt 2), which XLA expands into a much longer polynomial with exp and selects."""
        return 0.5 * x * (1.0 + jax.lax.erf(x * np.sqrt(0.5).astype(x.dtype)))

    class ErfGeluMlpBlock(MlpBlock):
        activation: Callable = erf_gelu

    class MatmulPatchEmbedding(PatchEmbedding):
        """The stride-P patch conv as reshape + one [P*P*C, D] matmul, same ``kernel [P, P, C, D]``."""

        @nn.compact
        def __call__(self, images):
            (patch_h, patch_w), (batch, height, width, channels) = to_pair(self.patch_size), images.shape
            kernel = self.param(
                "kernel",
                nn.with_logical_partitioning(self.kernel_init, ("patch_height", "patch_width", "channels", "embed")),
                (patch_h, patch_w, channels, self.hidden_size), self.param_dtype)
            grid_h, grid_w = height // patch_h, width // patch_w
            x = images.astype(self.dtype).reshape(batch, grid_h, patch_h, grid_w, patch_w, channels)
            x = x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, grid_h * grid_w, patch_h * patch_w * channels)
            x = x @ kernel.astype(self.dtype).reshape(-1, self.hidden_size)  # [batch, patches, hidden]
            if self.use_bias:
                bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                                  (self.hidden_size,), self.param_dtype)
                x = x + bias.astype(self.dtype)
            return x

    class ProjectionParams(nn.Module):
        """Declares a ``HeadProjection``'s kernel and bias (same names, shapes, initialisers) without applying it."""

        kernel_shape: tuple[int, ...]
        contracted_axes: int
        kernel_axes: tuple[str, ...]
        bias_axes: tuple[str, ...]
        kernel_init: Callable
        bias_init: Callable
        param_dtype: Any

        @nn.compact
        def __call__(self):
            kernel = self.param("kernel", nn.with_logical_partitioning(
                flattened_init(self.kernel_init, self.contracted_axes), self.kernel_axes),
                self.kernel_shape, self.param_dtype)
            bias = self.param("bias", nn.with_logical_partitioning(self.bias_init, self.bias_axes),
                              self.kernel_shape[self.contracted_axes:], self.param_dtype)
            return kernel, bias

    class TweakedAttention(MultiHeadAttention):
        """Self-attention with the parameters of ``MultiHeadAttention`` and two optional rewrites:

        fused_qkv: the q/k/v kernels ``[embed, heads, kv]`` are stacked into one ``[embed, 3, heads, kv]``
          at trace time, so one matmul (and one weight-gradient matmul) replaces three.
        deferred_softmax: softmax(s) v computed as (exp(s - max s) v) / sum exp(s - max s), dividing the
          ``[batch, q, heads, kv]`` output instead of normalising the ``[batch, heads, q, k]`` weights
          (no attention-weight dropout, no ``intermediates`` sow).
        """

        fused_qkv: bool = False
        deferred_softmax: bool = False

        @nn.compact
        def __call__(self, inputs_q, inputs_kv=None, *, mask=None, deterministic=True):
            if inputs_kv is not None or mask is not None:
                raise NotImplementedError("TweakedAttention: self-attention without mask only")
            if self.deferred_softmax and self.dropout_rate > 0 and not deterministic:
                raise NotImplementedError("deferred_softmax has no attention-weight dropout")
            dtype, embed = self.dtype, inputs_q.shape[-1]
            head_dim = self._resolve_head_dim(embed)

            def params(name, shape, contracted, kernel_axes, bias_axes):
                return ProjectionParams(shape, contracted, kernel_axes, bias_axes, self.kernel_init,
                                        self.bias_init, self.param_dtype, name=name)()

            qkv_params = [params(name, (embed, self.num_heads, head_dim), 1, ("embed", "heads", "kv"),
                                 ("heads", "kv")) for name in ("query", "key", "value")]
            x = inputs_q.astype(dtype)
            if self.fused_qkv:
                kernel = jnp.stack([k for k, _ in qkv_params], axis=1).astype(dtype)  # [embed, 3, heads, kv]
                bias = jnp.stack([b for _, b in qkv_params], axis=0).astype(dtype)  # [3, heads, kv]
                qkv = jnp.einsum("btd,dshk->btshk", x, kernel) + bias  # [batch, tokens, 3, heads, kv]
                query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
            else:
                query, key, value = (jnp.einsum("btd,dhk->bthk", x, k.astype(dtype)) + b.astype(dtype)
                                     for k, b in qkv_params)
            if self.deferred_softmax:
                query = query / jnp.sqrt(head_dim).astype(dtype)
                logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
                unnormalised = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
                attended = jnp.einsum("bhqk,bkhd->bqhd", unnormalised.astype(dtype), value)
                total = jnp.sum(unnormalised, axis=-1).transpose(0, 2, 1)[..., None]  # [batch, q, heads, 1]
                attended = attended / total.astype(dtype)
            else:
                weights = nn.Dropout(rate=self.dropout_rate)(attention_weights(query, key),
                                                             deterministic=deterministic)
                attended = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(dtype), value)
            out_kernel, out_bias = params("out", (self.num_heads, head_dim, embed), 2, ("heads", "kv", "embed"),
                                          ("embed",))
            return jnp.einsum("bqhd,hde->bqe", attended, out_kernel.astype(dtype)) + out_bias.astype(dtype)

    return {"MlpBlock": ErfGeluMlpBlock, "PatchEmbedding": MatmulPatchEmbedding,
            "MultiHeadAttention": TweakedAttention}


@contextlib.contextmanager
def tweaked_vit(tweaks):
    """Within the block, ``jaxmodels.vision.vit.ViT`` builds (and traces) with the given ``TWEAKS``."""
    import jaxmodels.vision.vit as vit_module

    classes, replace = _tweak_classes(), {}
    if "erf_gelu" in tweaks:
        replace["MlpBlock"] = classes["MlpBlock"]
    if "patch_matmul" in tweaks:
        replace["PatchEmbedding"] = classes["PatchEmbedding"]
    if "fused_qkv" in tweaks or "deferred_softmax" in tweaks:
        replace["MultiHeadAttention"] = functools.partial(
            classes["MultiHeadAttention"], fused_qkv="fused_qkv" in tweaks,
            deferred_softmax="deferred_softmax" in tweaks)
    saved = {name: getattr(vit_module, name) for name in replace}
    try:
        for name, value in replace.items():
            setattr(vit_module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(vit_module, name, value)


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
    """The jitted ``jaxmodels.projects.vit.experiment.train_step`` of a ViT, state donated."""

    def __init__(self, case: dict[str, Any], args: argparse.Namespace, images, labels):
        import jax

        self.jax = jax
        with tweaked_vit(args.tweaks):
            self._build(case, args, images, labels)

    def _build(self, case, args, images, labels):
        import flax.linen as nn
        import jax
        import jax.numpy as jnp

        from jaxmodels.projects.vit.experiment import make_init_state, train_step
        from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule
        from jaxmodels.vision.vit import ViT, vit_variant

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

    def _precision(self):
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
        torch.set_num_threads(args.threads or os.cpu_count())
        self.model = load_flax_params(torch_vit_like(ours.model), ours.jax.device_get(ours.state["params"])).train()
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
        loss = self.F.cross_entropy(self.model(self.images), self.labels)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start


class MatmulPeak:
    """The machine's matmul peak: a jitted float32 ``jnp.dot`` of two ``size x size`` matrices.

    Each call times one product; ``run_case`` calls it once per repeat, interleaved with the two
    steps, so the peak is measured under the same load as the numbers it is compared with.
    """

    def __init__(self, size: int):
        import jax
        import jax.numpy as jnp

        self.jax, self.size = jax, size
        self.a = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
        self.b = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
        self.dot = jax.jit(lambda x, y: jnp.dot(x, y, precision="highest"))
        self.jax.block_until_ready(self.dot(self.a, self.b))  # compile and warm up
        self.times: list[float] = []

    def __call__(self) -> float:
        start = time.perf_counter()
        self.jax.block_until_ready(self.dot(self.a, self.b))
        seconds = time.perf_counter() - start
        self.times.append(seconds)
        return seconds

    def summary(self, times: list[float] | None = None) -> dict[str, float]:
        seconds = statistics.median(times or self.times)
        return {"size": self.size, "seconds": seconds, "gflops": 2.0 * self.size ** 3 / seconds / 1e9}


# --------------------------------------------------------------------------------------------


def run_case(name: str, args: argparse.Namespace, peak: MatmulPeak) -> dict[str, Any]:
    import numpy as np

    from jaxmodels.vision.vit import vit_variant

    case, batch = CASES[name], args.batches[name]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, case["image_size"], case["image_size"], 3), dtype=np.float32)
    labels = rng.integers(0, case["num_classes"], size=(batch,)).astype(np.int32)
    ours = OursStep(case, args, images, labels)
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
    torch_threads = None
    if torch_step is not None:
        torch_threads = args.threads or torch_step.choose_threads(sorted({1, os.cpu_count()}))
    ours_times, torch_times, peak_times = [], [], []
    for _ in range(args.repeats):  # interleaved, so load changes hit both frameworks (and the peak) alike
        ours_times.append(ours())
        if torch_step is not None:
            torch_times.append(torch_step())
        peak_times.append(peak())

    peak_gflops = peak.summary(peak_times)["gflops"]
    ours_s = statistics.median(ours_times)
    result = {"case": name, "variant": case["variant"], "image_size": case["image_size"],
              "num_classes": case["num_classes"], "batch": batch, "dtype": args.dtype,
              "tweaks": list(args.tweaks), "step_flops": flops, "flops_source": flops_source,
              "matmul_peak_gflops": peak_gflops,
              "ours_seconds": ours_s, "ours_images_per_s": batch / ours_s, "ours_gflops": flops / ours_s / 1e9,
              "ours_percent_of_peak": 100.0 * flops / ours_s / 1e9 / peak_gflops, "ours_times": ours_times}
    if torch_times:
        torch_s = statistics.median(torch_times)
        result.update({
            "torch_seconds": torch_s, "torch_images_per_s": batch / torch_s, "torch_gflops": flops / torch_s / 1e9,
            "torch_percent_of_peak": 100.0 * flops / torch_s / 1e9 / peak_gflops, "torch_times": torch_times,
            "torch_threads": torch_threads,
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
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "jax_devices": str(jax.devices()),
            "loadavg_1min": round(os.getloadavg()[0], 2)}
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
        torch_cols = (f"{r['torch_images_per_s']:.1f} ({r['torch_threads']} thr) | {r['ratio']:.2f}"
                      if "ratio" in r else "- | -")
        torch_flops = (f"{r['torch_gflops']:.1f} | {r['torch_percent_of_peak']:.0f}%" if "ratio" in r else "- | -")
        lines.append(f"| {r['case']} ({r['num_classes']} classes) | {r['batch']} | {r['ours_images_per_s']:.1f} "
                     f"| {torch_cols} | {r['ours_gflops']:.1f} | {r['ours_percent_of_peak']:.0f}% | {torch_flops} |")
    lines.append("")
    lines.append(f"matmul peak: {peak['gflops']:.1f} GFLOP/s (median {peak['seconds'] * 1e3:.1f} ms of a float32 "
                 f"{peak['size']}x{peak['size']} jnp.dot, timed once per repeat between the steps; each case's % "
                 f"uses the probes of its own repeats); step FLOPs from {results[0]['flops_source']}" if results
                 else "")
    return "\n".join(lines)


def main(argv=None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    configure_environment(args)
    import jax

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_vit.py beside this file
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"warning: 1-minute load average {load_before:.2f} before the run; other work on the machine "
              "skews both frameworks, PyTorch's OpenMP threads most (see the docstring)", file=sys.stderr)
    probe = MatmulPeak(args.peak_size)
    results = [run_case(name, args, probe) for name in args.cases]
    peak = probe.summary()
    info = versions()
    info["loadavg_1min_before"] = round(load_before, 2)
    print(format_table(results, peak))
    print(f"\nrepeats {args.repeats} (median, interleaved ours/torch), warm-up {args.warmup}, our dtype {args.dtype}, "
          f"matmul precision {args.matmul_precision or 'default'}, tweaks {','.join(args.tweaks) or 'none'}, "
          f"torch AdamW {args.torch_adamw}, "
          f"torch threads {args.threads or 'auto (faster of 1 and os.cpu_count())'}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "matmul_peak": peak, "versions": info, "args": {
                k: v for k, v in vars(args).items() if k != "batch"}}, f, indent=2)
    del jax
    return results


if __name__ == "__main__":
    main()
