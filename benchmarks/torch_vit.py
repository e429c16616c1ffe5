"""A PyTorch ViT with the structure of ``jaxmodels.vision.vit.ViT``, and a Flax -> PyTorch weight copy.

It exists so that ``benchmarks/vit_step.py`` times *the same model* in both frameworks:
``tests/benchmarks/test_torch_vit_matches.py`` copies a Flax ViT's parameters into it and checks
the logits agree. Structure (as ours, see ``jaxmodels/vision/vit.py`` and ``jaxmodels/layers``):

  patch conv (kernel = stride = P, with bias) -> [class token; patches] + learned E_pos ->
  L x pre-LN blocks { x + MSA(LN_0(x)); x + MLP(LN_2(x)) } -> LN (encoder_norm) ->
  class token (or mean of tokens for ``classifier="gap"``) -> [Dense + tanh pre-logits] -> head

* LayerNorm epsilon 1e-6 everywhere (``jaxmodels.layers.LayerNorm``);
* attention: separate q/k/v projections with biases, softmax(q k^T / sqrt(d)) v, output projection
  (``F.scaled_dot_product_attention``, which computes exactly this);
* MLP: Dense -> exact (erf) GELU -> Dense (``jaxmodels.layers.MlpBlock`` default).

Dropout / stochastic depth are not modelled (the benchmark runs with rate 0, as ours does by default).

Parameter mapping (``load_flax_params``):

  Flax ``Dense`` kernel ``[in, out]``                  -> ``nn.Linear.weight [out, in]`` (transpose)
  Flax q/k/v kernel ``[embed, heads, kv]``, bias ``[heads, kv]`` -> ``[heads*kv, embed]``, ``[heads*kv]``
  Flax out kernel ``[heads, kv, embed]``               -> ``[embed, heads*kv]``
  Flax conv kernel HWIO ``[P, P, C, D]``               -> ``nn.Conv2d.weight`` OIHW ``[D, C, P, P]``
  LayerNorm ``scale``/``bias``                         -> ``weight``/``bias``
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-6


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v Linear layers (as ``MultiHeadDotProductAttention_1``)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)  # [batch, heads, tokens, kv]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, hidden = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(kv)) v, [batch, heads, tokens, kv]
        return self.out(attended.transpose(1, 2).reshape(batch, tokens, hidden))


class Mlp(nn.Module):
    """Dense -> exact GELU -> Dense (``MlpBlock_3``)."""

    def __init__(self, hidden_size: int, mlp_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # approximate="none": the erf GELU


class EncoderBlock(nn.Module):
    """Pre-LN block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(hidden_size, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TorchViT(nn.Module):
    """``jaxmodels.vision.vit.ViT`` in PyTorch; takes images ``[batch, channels, height, width]`` (NCHW)."""

    def __init__(self, *, num_classes: int, image_size, patch_size, hidden_size: int, num_layers: int,
                 num_heads: int, mlp_dim: int, classifier: str = "token", representation_size: int | None = None,
                 channels: int = 3):
        super().__init__()
        if classifier not in ("token", "gap"):
            raise ValueError(f"classifier must be 'token' or 'gap', got {classifier!r}")
        (height, width), (patch_h, patch_w) = _pair(image_size), _pair(patch_size)
        if height % patch_h or width % patch_w:
            raise ValueError(f"image_size {height}x{width} is not divisible by patch_size {patch_h}x{patch_w}")
        self.classifier = classifier
        tokens = (height // patch_h) * (width // patch_w) + (classifier == "token")
        self.embedding = nn.Conv2d(channels, hidden_size, kernel_size=(patch_h, patch_w), stride=(patch_h, patch_w))
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden_size)) if classifier == "token" else None
        self.pos_embedding = nn.Parameter(torch.randn(1, tokens, hidden_size) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(hidden_size, num_heads, mlp_dim) for _ in range(num_layers))
        self.encoder_norm = nn.LayerNorm(hidden_size, eps=LAYER_NORM_EPS)
        self.pre_logits = nn.Linear(hidden_size, representation_size) if representation_size else None
        features = representation_size or hidden_size
        self.head = nn.Linear(features, num_classes) if num_classes else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embedding(images)  # [batch, hidden, grid_h, grid_w]
        x = x.flatten(2).transpose(1, 2)  # [batch, patches, hidden], patches in row-major (h, w) order as ours
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embedding
        for block in self.blocks:
            x = block(x)
        x = self.encoder_norm(x)
        x = x[:, 0] if self.classifier == "token" else x.mean(dim=1)
        if self.pre_logits is not None:
            x = torch.tanh(self.pre_logits(x))
        return x if self.head is None else self.head(x)


def torch_vit_like(model: Any, channels: int = 3) -> TorchViT:
    """A ``TorchViT`` with the sizes of a Flax ``jaxmodels.vision.vit.ViT`` (dropout rates are ignored)."""
    return TorchViT(num_classes=model.num_classes, image_size=model.image_size, patch_size=model.patch_size,
                    hidden_size=model.hidden_size, num_layers=model.num_layers, num_heads=model.num_heads,
                    mlp_dim=model.mlp_dim, classifier=model.classifier,
                    representation_size=model.representation_size, channels=channels)


def _tensor(value) -> torch.Tensor:
    if hasattr(value, "unbox"):  # flax ``LogicallyPartitioned`` boxes, as ``model.init`` returns them
        value = value.unbox()
    return torch.from_numpy(np.array(value, dtype=np.float32))


def _copy(target: torch.Tensor, value: torch.Tensor, name: str) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise ValueError(f"{name}: Flax shape {tuple(value.shape)} does not fit PyTorch shape {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(value)


def _load_dense(linear: nn.Linear, flax: Mapping[str, Any], name: str) -> None:
    _copy(linear.weight, _tensor(flax["kernel"]).T, f"{name}/kernel")  # [in, out] -> [out, in]
    _copy(linear.bias, _tensor(flax["bias"]), f"{name}/bias")


def _load_head_projection(linear: nn.Linear, flax: Mapping[str, Any], name: str) -> None:
    kernel = _tensor(flax["kernel"])  # [embed, heads, kv]
    _copy(linear.weight, kernel.reshape(kernel.shape[0], -1).T, f"{name}/kernel")  # -> [heads*kv, embed]
    _copy(linear.bias, _tensor(flax["bias"]).reshape(-1), f"{name}/bias")  # [heads, kv] -> [heads*kv]


def _load_out_projection(linear: nn.Linear, flax: Mapping[str, Any], name: str) -> None:
    kernel = _tensor(flax["kernel"])  # [heads, kv, embed]
    _copy(linear.weight, kernel.reshape(-1, kernel.shape[-1]).T, f"{name}/kernel")  # -> [embed, heads*kv]
    _copy(linear.bias, _tensor(flax["bias"]), f"{name}/bias")


def _load_layer_norm(norm: nn.LayerNorm, flax: Mapping[str, Any], name: str) -> None:
    _copy(norm.weight, _tensor(flax["scale"]), f"{name}/scale")
    _copy(norm.bias, _tensor(flax["bias"]), f"{name}/bias")


def load_flax_params(torch_model: TorchViT, params: Mapping[str, Any]) -> TorchViT:
    """Copies a Flax ViT's ``params`` (the tree under ``"params"``, boxed or not) into ``torch_model`` in place; returns it."""
    _copy(torch_model.embedding.weight, _tensor(params["embedding"]["kernel"]).permute(3, 2, 0, 1),
          "embedding/kernel")  # HWIO -> OIHW
    _copy(torch_model.embedding.bias, _tensor(params["embedding"]["bias"]), "embedding/bias")
    if torch_model.cls is not None:
        _copy(torch_model.cls, _tensor(params["cls"]), "cls")
    encoder = params["Transformer"]
    _copy(torch_model.pos_embedding, _tensor(encoder["posembed_input"]["pos_embedding"]),
          "Transformer/posembed_input/pos_embedding")
    for index, block in enumerate(torch_model.blocks):
        prefix = f"Transformer/encoderblock_{index}"
        flax = encoder[f"encoderblock_{index}"]
        _load_layer_norm(block.norm1, flax["LayerNorm_0"], f"{prefix}/LayerNorm_0")
        attention = flax["MultiHeadDotProductAttention_1"]
        for part in ("query", "key", "value"):
            _load_head_projection(getattr(block.attn, part), attention[part],
                                  f"{prefix}/MultiHeadDotProductAttention_1/{part}")
        _load_out_projection(block.attn.out, attention["out"], f"{prefix}/MultiHeadDotProductAttention_1/out")
        _load_layer_norm(block.norm2, flax["LayerNorm_2"], f"{prefix}/LayerNorm_2")
        _load_dense(block.mlp.fc1, flax["MlpBlock_3"]["Dense_0"], f"{prefix}/MlpBlock_3/Dense_0")
        _load_dense(block.mlp.fc2, flax["MlpBlock_3"]["Dense_1"], f"{prefix}/MlpBlock_3/Dense_1")
    extra = sorted(set(encoder) - {"posembed_input", "encoder_norm"}
                   - {f"encoderblock_{i}" for i in range(len(torch_model.blocks))})
    if extra:
        raise ValueError(f"Flax params have encoder entries the PyTorch model lacks: {extra}")
    _load_layer_norm(torch_model.encoder_norm, encoder["encoder_norm"], "Transformer/encoder_norm")
    if torch_model.pre_logits is not None:
        _load_dense(torch_model.pre_logits, params["pre_logits"], "pre_logits")
    if torch_model.head is not None:
        _load_dense(torch_model.head, params["head"], "head")
    return torch_model
