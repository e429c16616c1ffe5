"""Vision Transformer (Dosovitskiy et al., ICLR 2021), after google-research/vision_transformer ``models_vit.py``.

  eq. 1  z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
  eq. 2  z'_l = MSA(LN(z_{l-1})) + z_{l-1}
  eq. 3  z_l = MLP(LN(z'_l)) + z'_l
  eq. 4  y = LN(z_L^0)

with stochastic depth on both residual branches, its rate rising linearly over depth (DeiT,
Touvron et al. 2021). The parameter tree uses the official checkpoints' names (``embedding``,
``cls``, ``Transformer/posembed_input``, ``Transformer/encoderblock_{i}/LayerNorm_0``,
``MultiHeadDotProductAttention_1``, ``LayerNorm_2``, ``MlpBlock_3``, ``Transformer/encoder_norm``,
``pre_logits``, ``head``), so those ``.npz`` files map onto it by path.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxmodels.layers import (
    DropPath,
    LayerNorm,
    LearnedPositionEmbedding,
    MlpBlock,
    MultiHeadAttention,
    PatchEmbedding,
    dense,
    dtype_from_name,
    to_pair,
)

Array = jax.Array
Dtype = Any

VIT_SIZES: dict[str, dict[str, int]] = {
    "Ti": dict(hidden_size=192, num_layers=12, num_heads=3, mlp_dim=768),
    "S": dict(hidden_size=384, num_layers=12, num_heads=6, mlp_dim=1536),
    "B": dict(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072),
    "L": dict(hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096),
}

_REQUIRED_KEYS = ("num_classes", "image_size", "patch_size", "hidden_size", "num_layers", "num_heads", "mlp_dim")
_OPTIONAL_KEYS = ("classifier", "dropout_rate", "attention_dropout_rate", "stochastic_depth_rate",
                  "representation_size", "dtype")
_CONFIG_KEYS = frozenset(("name", "variant") + _REQUIRED_KEYS + _OPTIONAL_KEYS)


def vit_variant(variant: str) -> dict[str, int]:
    """``"B/16"`` -> ``VIT_SIZES["B"]`` plus ``patch_size=16`` (Dosovitskiy et al. 2021, Table 1)."""
    size, slash, patch = variant.partition("/")
    if size not in VIT_SIZES or not slash or not patch.isdigit():
        raise ValueError(f"ViT variant must look like 'B/16' with a size in {sorted(VIT_SIZES)}, got {variant!r}")
    return {**VIT_SIZES[size], "patch_size": int(patch)}


def drop_path_rates(stochastic_depth_rate: float, num_layers: int) -> tuple[float, ...]:
    """Per-block stochastic depth rates rising linearly from 0 to the given rate (DeiT)."""
    return tuple(stochastic_depth_rate * layer / max(num_layers - 1, 1) for layer in range(num_layers))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block, eqs. 2-3, with DropPath on both residual branches."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array, *, deterministic: bool) -> Array:
        """Maps ``[batch, tokens, hidden]`` to the same shape."""
        x = LayerNorm(dtype=self.dtype, name="LayerNorm_0")(inputs)
        x = MultiHeadAttention(num_heads=self.num_heads, dropout_rate=self.attention_dropout_rate,
                               dtype=self.dtype, name="MultiHeadDotProductAttention_1")(x, deterministic=deterministic)
        x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
        x = inputs + DropPath(self.drop_path_rate)(x, deterministic=deterministic)  # eq. 2
        y = LayerNorm(dtype=self.dtype, name="LayerNorm_2")(x)
        y = MlpBlock(mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate, dtype=self.dtype,
                     name="MlpBlock_3")(y, deterministic=deterministic)
        return x + DropPath(self.drop_path_rate)(y, deterministic=deterministic)  # eq. 3


class Encoder(nn.Module):
    """Position embeddings, dropout, ``num_layers`` blocks and the final LayerNorm (eqs. 1-4)."""

    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    stochastic_depth_rate: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        """Maps ``[batch, tokens, hidden]`` to the normalised tokens of the same shape."""
        x = LearnedPositionEmbedding(name="posembed_input")(x)  # + E_pos, eq. 1
        x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)
        for layer, rate in enumerate(drop_path_rates(self.stochastic_depth_rate, self.num_layers)):
            x = EncoderBlock(num_heads=self.num_heads, mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate,
                             attention_dropout_rate=self.attention_dropout_rate, drop_path_rate=rate,
                             dtype=self.dtype, name=f"encoderblock_{layer}")(x, deterministic=not train)
        return LayerNorm(name="encoder_norm")(x)  # eq. 4, applied to every token


class ViT(nn.Module):
    """Vision Transformer classifier (Dosovitskiy et al. 2021).

    Attributes:
      num_classes: head outputs; 0 returns the pooled (pre-logits) features instead.
      image_size: the (only) input size the model accepts, int or ``(height, width)``.
      patch_size: P, int or ``(P_h, P_w)``; must divide ``image_size``.
      hidden_size, num_layers, num_heads, mlp_dim: D, L, heads and MLP width (Table 1).
      classifier: ``"token"`` reads the class token z_L^0; ``"gap"`` averages all tokens.
      dropout_rate: dropout after the embeddings, the attention output and inside the MLP.
      attention_dropout_rate: dropout on the attention probabilities.
      stochastic_depth_rate: DropPath rate of the last block (0 for the first, linear between).
      representation_size: if set, a Dense + tanh pre-logits layer of this width (pre-training head).
      dtype: computation dtype of the encoder; parameters and logits are float32.
    """

    num_classes: int
    image_size: int | Sequence[int]
    patch_size: int | Sequence[int]
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    classifier: str = "token"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    stochastic_depth_rate: float = 0.0
    representation_size: int | None = None
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        super().__post_init__()
        if self.classifier not in ("token", "gap"):
            raise ValueError(f"ViT classifier must be 'token' or 'gap', got {self.classifier!r}")
        (height, width), (patch_h, patch_w) = to_pair(self.image_size), to_pair(self.patch_size)
        if height % patch_h or width % patch_w:
            raise ValueError(f"ViT image_size {height}x{width} is not divisible by patch_size {patch_h}x{patch_w}")

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> Array:
        """Maps images ``[batch, height, width, channels]`` to logits ``[batch, num_classes]``."""
        self._check_image_size(images.shape)
        x = PatchEmbedding(self.patch_size, self.hidden_size, dtype=self.dtype,
                           name="embedding")(images)  # [batch, patches, hidden]
        if self.classifier == "token":
            x = self._prepend_class_token(x)  # [batch, 1 + patches, hidden]
        x = Encoder(num_layers=self.num_layers, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                    dropout_rate=self.dropout_rate, attention_dropout_rate=self.attention_dropout_rate,
                    stochastic_depth_rate=self.stochastic_depth_rate, dtype=self.dtype,
                    name="Transformer")(x, train=train)  # [batch, tokens, hidden]
        x = x[:, 0] if self.classifier == "token" else jnp.mean(x, axis=1)  # [batch, hidden]
        if self.representation_size is not None:
            x = jnp.tanh(dense(self.representation_size, ("embed", "mlp"), kernel_init=nn.initializers.lecun_normal(),
                               name="pre_logits")(x))  # [batch, representation_size]
        if not self.num_classes:
            return x
        return dense(self.num_classes, ("embed", "classes"), kernel_init=nn.initializers.zeros,
                     name="head")(x.astype(jnp.float32))  # [batch, num_classes]

    def _check_image_size(self, shape: tuple[int, ...]) -> None:
        expected, given = to_pair(self.image_size), tuple(shape[1:3])
        if len(shape) != 4 or given != expected:
            raise ValueError(
                f"ViT expects images of size {expected[0]}x{expected[1]} (model.image_size in the checkpoint "
                f"config) but was given shape {tuple(shape)}, i.e. size {'x'.join(map(str, given))}; resize the "
                f"inputs, or build the model with model.image_size={given} (position embeddings then need "
                "interpolating)")

    def _prepend_class_token(self, x: Array) -> Array:
        batch, _, hidden = x.shape
        cls = self.param("cls", nn.with_logical_partitioning(nn.initializers.zeros, (None, None, "embed")),
                         (1, 1, hidden))
        cls = jnp.broadcast_to(cls.astype(x.dtype), (batch, 1, hidden))  # [batch, 1, hidden]
        return jnp.concatenate([cls, x], axis=1)



def vit_from_config(model_cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> ViT:
    """Builds a ``ViT`` from a model config; explicit size keys override those of ``variant``.

    Keys: ``variant`` (e.g. ``"B/16"`` or None), ``num_classes``, ``image_size``, optional
    ``patch_size``, ``hidden_size``, ``num_layers``, ``num_heads``, ``mlp_dim``, ``classifier``,
    ``dropout_rate``, ``attention_dropout_rate``, ``stochastic_depth_rate``,
    ``representation_size``, ``dtype`` (``"float32"`` or ``"bfloat16"``), and ``name`` (ignored).
    """
    cfg = model_cfg.to_dict() if isinstance(model_cfg, ml_collections.ConfigDict) else dict(model_cfg)
    unknown = sorted(set(cfg) - _CONFIG_KEYS)
    if unknown:
        raise ValueError(f"vit_from_config: unknown model config key(s) {unknown}; "
                         f"known keys are {sorted(_CONFIG_KEYS)}")
    variant = cfg.get("variant")
    kwargs = vit_variant(variant) if variant else {}
    kwargs.update({key: cfg[key] for key in _REQUIRED_KEYS + _OPTIONAL_KEYS if cfg.get(key) is not None})
    missing = [key for key in _REQUIRED_KEYS if key not in kwargs]
    if missing:
        raise ValueError(f"vit_from_config: missing {missing}; set them or a variant such as 'B/16'")
    kwargs["image_size"] = _as_size(kwargs["image_size"])
    kwargs["patch_size"] = _as_size(kwargs["patch_size"])
    kwargs["dtype"] = dtype_from_name(kwargs.get("dtype", "float32"), "vit_from_config: model.dtype")
    return ViT(**kwargs)


def _as_size(size: int | Sequence[int]) -> int | tuple[int, int]:
    return size if isinstance(size, int) else to_pair(size)
