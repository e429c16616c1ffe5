"""GPT-2 (Radford et al. 2019), the decoder of openai/gpt-2 ``src/model.py``.

  h_0 = W_te[tokens] + W_pe[positions]                        (then dropout)
  a_l = h_{l-1} + Dropout(Attn(LN_1(h_{l-1})))                 causal, pre-LN
  h_l = a_l + Dropout(W_proj gelu_tanh(W_fc LN_2(a_l)))
  logits = LN_f(h_L) W_te^T                                    (LM head tied to the token embedding)

LayerNorm epsilon 1e-5; GELU is the tanh approximation ("gelu_new"). Initialisation as GPT-2:
weights normal(0.02), biases zero, and the two residual output projections of each block
(``attn/out`` and ``mlp/c_proj``) normal(0.02 / sqrt(2 * depth)).

Positions are explicit ids into ``wpe``, so a left-padded prompt's real tokens get 0, 1, ...;
by default they are ``cumsum(attention_mask) - 1`` (``arange`` without a mask). With
``decode=True`` the model runs on the KV cache of ``MultiHeadAttention`` (see
``jaxmodels.layers.attention``) and keeps three more ``cache`` variables of its own: ``valid``
``[batch, max_length]`` (which cache slots hold real tokens), ``index`` (slots filled) and
``next_position`` ``[batch]`` (real tokens seen, the default position of the next one). So a
prompt chunk and then single tokens can be fed with only their own ``attention_mask``.

Parameter tree (logical axes in brackets)::

  wte/embedding [vocab, embed]      wpe/embedding [seq, embed]
  h_{i}/ln_1/{scale, bias} [embed]  h_{i}/ln_2/...
  h_{i}/attn/{query,key,value}/kernel [embed, heads, kv], bias [heads, kv]
  h_{i}/attn/out/kernel [heads, kv, embed], bias [embed]
  h_{i}/mlp/c_fc/kernel [embed, mlp], bias [mlp]; h_{i}/mlp/c_proj/kernel [mlp, embed], bias [embed]
  ln_f/{scale, bias}
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxmodels.layers import LayerNorm, MultiHeadAttention, causal_mask, dense, dtype_from_name, padding_mask

Array = jax.Array
Dtype = Any

GPT2_VOCAB_SIZE = 50257
GPT2_N_POSITIONS = 1024
LAYER_NORM_EPSILON = 1e-5
INIT_STDDEV = 0.02

# Radford et al. 2019, Table 2 (the parameter counts as later corrected: 124M, 355M, 774M, 1.5B).
GPT2_SIZES: dict[str, dict[str, int]] = {
    "small": dict(width=768, depth=12, num_heads=12),
    "medium": dict(width=1024, depth=24, num_heads=16),
    "large": dict(width=1280, depth=36, num_heads=20),
    "xl": dict(width=1600, depth=48, num_heads=25),
}

_REQUIRED_KEYS = ("vocab_size", "n_positions", "width", "depth", "num_heads")
_OPTIONAL_KEYS = ("mlp_dim", "dropout_rate", "layer_norm_epsilon", "dtype")
_CONFIG_KEYS = frozenset(("name", "variant") + _REQUIRED_KEYS + _OPTIONAL_KEYS)


def gpt2_variant(name: str) -> dict[str, int]:
    """GPT-2 ``small``/``medium``/``large``/``xl`` (also ``gpt2``, ``gpt2-medium``, ... as on the HF hub):
    the full ``GPT`` keyword arguments except dropout and dtype."""
    key = {"gpt2": "small"}.get(name, name.removeprefix("gpt2-"))
    if key not in GPT2_SIZES:
        raise ValueError(f"GPT-2 variant must be one of {sorted(GPT2_SIZES)}, got {name!r}")
    size = GPT2_SIZES[key]
    return dict(vocab_size=GPT2_VOCAB_SIZE, n_positions=GPT2_N_POSITIONS, mlp_dim=4 * size["width"], **size)


def residual_stddev(depth: int) -> float:
    """Init stddev of the residual output projections, ``0.02 / sqrt(2 * depth)`` (Radford et al. 2019, sec. 2.3)."""
    return INIT_STDDEV / math.sqrt(2 * depth)


class GptMlp(nn.Module):
    """``c_proj(gelu_tanh(c_fc(x)))`` then dropout (HF ``GPT2MLP``; no dropout after the activation)."""

    mlp_dim: int
    depth: int
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array, *, deterministic: bool) -> Array:
        x = dense(self.mlp_dim, ("embed", "mlp"), kernel_init=nn.initializers.normal(INIT_STDDEV), dtype=self.dtype,
                  name="c_fc")(inputs)  # [batch, length, mlp]
        x = nn.with_logical_constraint(nn.gelu(x, approximate=True), ("act_batch", "act_seq", "act_mlp"))
        x = dense(inputs.shape[-1], ("mlp", "embed"), kernel_init=nn.initializers.normal(residual_stddev(self.depth)),
                  dtype=self.dtype, name="c_proj")(x)  # [batch, length, embed]
        x = nn.with_logical_constraint(x, ("act_batch", "act_seq", "act_embed"))
        return nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)


class GptBlock(nn.Module):
    """Pre-LN decoder block: causal self-attention and MLP, each added to the residual stream."""

    num_heads: int
    mlp_dim: int
    depth: int
    dropout_rate: float = 0.0
    layer_norm_epsilon: float = LAYER_NORM_EPSILON
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array, *, mask: Array | None, deterministic: bool, decode: bool) -> Array:
        x = LayerNorm(epsilon=self.layer_norm_epsilon, dtype=self.dtype, name="ln_1")(inputs)
        x = MultiHeadAttention(
            num_heads=self.num_heads, dropout_rate=self.dropout_rate, dtype=self.dtype,
            kernel_init=nn.initializers.normal(INIT_STDDEV),
            out_kernel_init=nn.initializers.normal(residual_stddev(self.depth)),
            name="attn")(x, mask=mask, deterministic=deterministic, decode=decode)
        x = inputs + nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
        y = LayerNorm(epsilon=self.layer_norm_epsilon, dtype=self.dtype, name="ln_2")(x)
        y = GptMlp(self.mlp_dim, self.depth, self.dropout_rate, self.dtype, name="mlp")(y, deterministic=deterministic)
        return x + y


def default_positions(attention_mask: Array) -> Array:
    """``cumsum(mask) - 1`` clipped at 0: real tokens of a left-padded row get 0, 1, ...; pads get 0."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


class GPT(nn.Module):
    """GPT-2 language model; ``__call__`` returns next-token logits (float32).

    Attributes:
      vocab_size: tokens (50257 for GPT-2's BPE).
      n_positions: rows of the learned position table (1024), the longest sequence.
      width, depth, num_heads: d_model, layers and heads (``gpt2_variant``).
      mlp_dim: feed-forward width; ``4 * width`` when None.
      dropout_rate: GPT-2's embd/attn/resid dropout (0.1 in pre-training), on the embeddings, the
        attention probabilities and both residual branches.
      layer_norm_epsilon: 1e-5.
      dtype: computation dtype; parameters, softmax and logits are float32.
    """

    vocab_size: int
    n_positions: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int | None = None
    dropout_rate: float = 0.0
    layer_norm_epsilon: float = LAYER_NORM_EPSILON
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        super().__post_init__()
        if self.width % self.num_heads:
            raise ValueError(f"GPT: width {self.width} is not divisible by num_heads={self.num_heads}")

    @nn.compact
    def __call__(self, input_ids: Array, *, positions: Array | None = None, attention_mask: Array | None = None,
                 deterministic: bool = True, decode: bool = False, last_only: bool = False) -> Array:
        """Maps token ids ``[batch, length]`` to logits ``[batch, length, vocab]`` (float32).

        Args:
          input_ids: int ``[batch, length]``.
          positions: int ``[batch, length]`` position ids; by default from ``attention_mask`` (see
            ``default_positions``), continuing from the cache's ``next_position`` when decoding.
          attention_mask: ``[batch, length]``, 1 = real token, 0 = padding (left padding for
            generation); padding keys are never attended to. None means all real.
          deterministic: False enables dropout (rng stream ``'dropout'``).
          decode: run on the ``cache`` collection (make it mutable): the first such call on a
            model without a cache sizes it to ``length`` slots; later calls append their tokens.
          last_only: return the logits of the last position only, ``[batch, 1, vocab]``.
        """
        batch, length = input_ids.shape
        valid = (jnp.ones((batch, length), bool) if attention_mask is None
                 else jnp.asarray(attention_mask).astype(bool))
        if decode:
            mask, offset = self._decode_bookkeeping(valid)
        else:
            mask = causal_mask(length) if attention_mask is None else causal_mask(length) & padding_mask(valid)
            offset = 0
        if positions is None:
            positions = default_positions(valid) + offset
        wte = nn.Embed(self.vocab_size, self.width, dtype=self.dtype,
                       embedding_init=nn.with_logical_partitioning(nn.initializers.normal(INIT_STDDEV),
                                                                   ("vocab", "embed")), name="wte")
        wpe = nn.Embed(self.n_positions, self.width, dtype=self.dtype,
                       embedding_init=nn.with_logical_partitioning(nn.initializers.normal(INIT_STDDEV),
                                                                   ("seq", "embed")), name="wpe")
        x = wte(input_ids) + wpe(positions)  # [batch, length, width]
        x = nn.with_logical_constraint(x, ("act_batch", "act_seq", "act_embed"))
        x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
        for layer in range(self.depth):
            x = GptBlock(num_heads=self.num_heads, mlp_dim=self.mlp_dim or 4 * self.width, depth=self.depth,
                         dropout_rate=self.dropout_rate, layer_norm_epsilon=self.layer_norm_epsilon,
                         dtype=self.dtype, name=f"h_{layer}")(x, mask=mask, deterministic=deterministic,
                                                              decode=decode)
        if last_only:
            x = x[:, -1:]
        x = LayerNorm(epsilon=self.layer_norm_epsilon, dtype=self.dtype, name="ln_f")(x)
        embedding = wte.embedding.astype(self.dtype)  # [vocab, width]
        logits = jnp.einsum("bld,vd->blv", x.astype(self.dtype), embedding, preferred_element_type=jnp.float32)
        return nn.with_logical_constraint(logits.astype(jnp.float32), ("act_batch", "act_seq", "act_vocab"))

    def _decode_bookkeeping(self, valid: Array) -> tuple[Array, Array]:
        """Records which cache slots are real tokens; returns the mask over slots and the position offset."""
        batch, length = valid.shape
        is_initialized = self.has_variable("cache", "valid")
        slots = self.variable("cache", "valid", jnp.zeros, (batch, length), bool)
        index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
        next_position = self.variable("cache", "next_position", jnp.zeros, (batch,), jnp.int32)
        if not is_initialized:  # sizing call: the cache is this input
            return padding_mask(valid), jnp.zeros((batch, 1), jnp.int32)
        offset = next_position.value[:, None]  # [batch, 1]
        slots.value = jax.lax.dynamic_update_slice(slots.value, valid, (jnp.zeros((), jnp.int32), index.value))
        index.value = index.value + length
        next_position.value = next_position.value + valid.sum(axis=-1, dtype=jnp.int32)
        return padding_mask(slots.value), offset


def count_params(tree) -> int:
    """Number of scalars in a (possibly boxed, possibly abstract ``jax.eval_shape``) parameter tree."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nn.unbox(tree)))


def abstract_params(model: GPT):
    """``jax.eval_shape`` of the model's params: shapes only, nothing allocated."""
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))["params"]


def gpt_from_config(model_cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> GPT:
    """Builds a ``GPT`` from a model config; explicit keys override those of ``variant``.

    Keys: ``variant`` (``small``/``medium``/``large``/``xl``, or None), ``vocab_size``,
    ``n_positions``, ``width``, ``depth``, ``num_heads``, optional ``mlp_dim`` (``4 * width``),
    ``dropout_rate`` (0), ``layer_norm_epsilon`` (1e-5), ``dtype`` (``"float32"`` or
    ``"bfloat16"``), and ``name`` (ignored).
    """
    cfg = model_cfg.to_dict() if isinstance(model_cfg, ml_collections.ConfigDict) else dict(model_cfg)
    unknown = sorted(set(cfg) - _CONFIG_KEYS)
    if unknown:
        raise ValueError(f"gpt_from_config: unknown model config key(s) {unknown}; "
                         f"known keys are {sorted(_CONFIG_KEYS)}")
    variant = cfg.get("variant")
    kwargs = gpt2_variant(variant) if variant else {}
    kwargs.update({key: cfg[key] for key in _REQUIRED_KEYS + _OPTIONAL_KEYS if cfg.get(key) is not None})
    missing = [key for key in _REQUIRED_KEYS if key not in kwargs]
    if missing:
        raise ValueError(f"gpt_from_config: missing {missing}; set them or a variant such as 'small'")
    kwargs["dtype"] = dtype_from_name(kwargs.get("dtype", "float32"), "gpt_from_config: model.dtype")
    return GPT(**kwargs)
