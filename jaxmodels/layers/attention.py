"""Multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1 and section 3.2.2).

Queries, keys and values are projected by separate ``HeadProjection`` layers into
``[batch, length, heads, head_dim]``; the attention itself is the pure function
``attention_weights`` followed by ``weighted_values`` (together ``dot_product_attention``, which
layers with other parameter layouts call). A decoding KV cache slots in between the two:
project the new token, append its key/value to the cache, then attend.

Decoding (``decode=True``, self-attention only) keeps a ``cache`` collection per module:
``cached_key``/``cached_value`` ``[batch, max_length, heads, head_dim]`` and the scalar
``cache_index`` (slots filled so far). The standard flax pattern: the first ``decode=True`` call
when no cache exists yet (under ``init``, or ``apply(..., mutable=["cache"])`` as in ``init_cache``)
creates zeros sized by that call's input, ``max_length = input length``, and changes nothing else.
Each later call writes its ``q`` new keys/values at slots ``cache_index .. cache_index + q - 1``
(a multi-token prefill chunk or one token), advances ``cache_index`` and attends over all
``max_length`` slots: new token ``i`` sees slot ``j`` iff ``j <= cache_index + i`` (causal over
the cache), ANDed with the caller's ``mask``, which then refers to cache slots
(e.g. ``padding_mask(valid_slots [batch, max_length])`` for left-padded prompts). Writing past
``max_length`` is not checked inside ``jit`` (``dynamic_update_slice`` clamps); size the cache
for prompt + new tokens.

Masks are boolean, ``True`` = attend, broadcastable to ``[batch, heads, q_length, kv_length]``;
combine them with ``&`` (e.g. ``causal_mask(l) & padding_mask(valid)``).
"""
from __future__ import annotations

import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any

QKV_ACTIVATION_AXES = ("act_batch", "act_seq", "act_heads", "act_kv")
OUTPUT_ACTIVATION_AXES = ("act_batch", "act_seq", "act_embed")


def causal_mask(length: int) -> Array:
    """Position i attends to positions j <= i (Vaswani et al. 2017, section 3.2.3)."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]  # [1, 1, q, kv]


def padding_mask(valid: Array) -> Array:
    """Every query may attend to the valid keys only; ``valid`` is a boolean ``[batch, kv]``."""
    return jnp.asarray(valid, dtype=bool)[:, None, None, :]  # [batch, 1, 1, kv]


def attention_weights(query: Array, key: Array, mask: Array | None = None) -> Array:
    """softmax(Q K^T / sqrt(d_k)) of Vaswani et al. 2017, eq. 1, computed in float32.

    Args:
      query: ``[batch, q_length, heads, head_dim]``.
      key: ``[batch, kv_length, heads, head_dim]``.
      mask: boolean, broadcastable to ``[batch, heads, q_length, kv_length]``; ``True`` = attend.

    Returns:
      float32 weights ``[batch, heads, q_length, kv_length]``; masked keys get exactly zero weight.
    """
    query = query / jnp.sqrt(query.shape[-1]).astype(query.dtype)
    if query.shape[2] == key.shape[2] == 1:  # one head: a plain batched matmul, no head-axis transposes
        logits = jnp.einsum("bqd,bkd->bqk", query[:, :, 0], key[:, :, 0],
                            preferred_element_type=jnp.float32)[:, None]  # [batch, 1, q, kv]
    else:
        logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(logits, axis=-1)  # [batch, heads, q, kv]


def weighted_values(weights: Array, value: Array) -> Array:
    """The attention output sum_j w_ij v_j: weights ``[batch, heads, q, kv]`` (cast to the values' dtype)
    and values ``[batch, kv, heads, head_dim]`` -> ``[batch, q, heads, head_dim]``.

    With one head (the DDPM U-Net's default) the head axis is dropped for the matmul: XLA:CPU otherwise
    keeps transposes around it (about 7% of that attention's forward + backward).
    """
    weights = weights.astype(value.dtype)
    if weights.shape[1] == value.shape[2] == 1:
        return jnp.einsum("bqk,bkd->bqd", weights[:, 0], value[:, :, 0])[:, :, None]  # [batch, q, 1, head_dim]
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value)


def dot_product_attention(query: Array, key: Array, value: Array, mask: Array | None = None) -> Array:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V (Vaswani et al. 2017, eq. 1), per head.

    The computation every attention layer shares, whatever its parameter layout (``MultiHeadAttention``
    here, the DDPM U-Net's ``AttnBlock`` over flattened spatial positions): ``query [batch, q, heads, d]``,
    ``key``/``value [batch, kv, heads, d]`` -> ``[batch, q, heads, d]``; the softmax runs in float32.
    """
    return weighted_values(attention_weights(query, key, mask), value)


def flattened_init(init: nn.initializers.Initializer, contracted_axes: int) -> nn.initializers.Initializer:
    """Runs a 2-D initialiser on ``[prod(inputs), prod(outputs)]`` and reshapes, as ``nn.DenseGeneral`` does.

    Fan-in/fan-out, hence xavier's scale, are those of the equivalent 2-D matrix.
    """

    def init_fn(key, shape, dtype=jnp.float32):
        flat = (math.prod(shape[:contracted_axes]), math.prod(shape[contracted_axes:]))
        return jnp.reshape(init(key, flat, dtype), shape)

    return init_fn


class HeadProjection(nn.Module):
    """``y = x W + b`` contracting the last ``contracted_axes`` input axes into ``features`` output axes.

    The same maths and parameter shapes as ``nn.DenseGeneral``; it exists because ``DenseGeneral``
    boxes its kernel at the flattened 2-D shape and so fails under an active mesh with 3-D logical
    axis names. Here parameters are born at their full shape with ``kernel_axes``/``bias_axes``.
    """

    features: tuple[int, ...]
    contracted_axes: int
    kernel_axes: tuple[str, ...]
    bias_axes: tuple[str, ...]
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Maps ``[..., *contracted]`` to ``[..., *features]``."""
        kernel, bias = _projection_params(self, inputs.shape[inputs.ndim - self.contracted_axes:])
        input_dims = tuple(range(inputs.ndim - self.contracted_axes, inputs.ndim))
        y = jax.lax.dot_general(inputs.astype(self.dtype), kernel.astype(self.dtype),
                                ((input_dims, tuple(range(self.contracted_axes))), ((), ())))  # [..., *features]
        return y if bias is None else y + bias.astype(self.dtype)


class HeadProjectionWeights(HeadProjection):
    """Creates exactly ``HeadProjection``'s parameters (same names, shapes, init) without applying
    them, so several projections of one input can run as a single fused matmul."""

    @nn.compact
    def __call__(self, contracted_shape: tuple[int, ...]) -> tuple[Array, Array | None]:
        return _projection_params(self, tuple(contracted_shape))


def _projection_params(module: HeadProjection, contracted: tuple[int, ...]) -> tuple[Array, Array | None]:
    kernel = module.param(
        "kernel",
        nn.with_logical_partitioning(flattened_init(module.kernel_init, module.contracted_axes), module.kernel_axes),
        tuple(contracted) + tuple(module.features), module.param_dtype)
    if not module.use_bias:
        return kernel, None
    bias = module.param("bias", nn.with_logical_partitioning(module.bias_init, module.bias_axes),
                        tuple(module.features), module.param_dtype)
    return kernel, bias


class MultiHeadAttention(nn.Module):
    """Multi-head attention, MultiHead(Q, K, V) = Concat(head_1..head_h) W^O (Vaswani et al. 2017).

    Parameter names (``query``, ``key``, ``value``, ``out``) and shapes (``[embed, heads, head_dim]``
    and ``[heads, head_dim, embed]``) match ``flax.linen.MultiHeadDotProductAttention``, so the
    official ViT checkpoints load by path. Attention probabilities are stored in the
    ``intermediates`` collection as ``attention_weights`` when that collection is mutable.

    Attributes:
      num_heads: number of heads h.
      head_dim: per-head width d_k; defaults to ``embed // num_heads``.
      out_features: output width; defaults to the query's input width.
      dropout_rate: dropout on the attention probabilities (rng stream ``'dropout'``).
      dtype: computation dtype; the softmax is always float32.
      param_dtype: parameter dtype.
      use_bias: whether the four projections have biases.
      kernel_init: initialiser of the projection kernels (xavier uniform as in the ViT code).
      bias_init: initialiser of the projection biases.
      out_kernel_init: initialiser of the output projection's kernel; defaults to ``kernel_init``
        (GPT-2 scales its residual projections by 1/sqrt(2 * layers)).
    """

    num_heads: int
    head_dim: int | None = None
    out_features: int | None = None
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros
    out_kernel_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, inputs_q: Array, inputs_kv: Array | None = None, *, mask: Array | None = None,
                 deterministic: bool = True, decode: bool = False) -> Array:
        """Attends from ``inputs_q [batch, q, embed]`` to ``inputs_kv [batch, kv, embed]``.

        ``inputs_kv=None`` is self-attention. Returns ``[batch, q, out_features]``. With
        ``decode=True`` (self-attention only) the keys/values go through the ``cache`` collection
        and ``mask`` refers to cache slots, ``[..., q, max_length]``; see the module docstring.
        """
        head_dim = self._resolve_head_dim(inputs_q.shape[-1])
        if decode:
            if inputs_kv is not None:
                raise ValueError("MultiHeadAttention: decode=True caches self-attention only; got inputs_kv")
            chex.assert_rank(inputs_q, 3)
            query, key, value = self._fused_self_projections(inputs_q, head_dim)
            key, value, mask = self._update_cache(key, value, mask)
        elif inputs_kv is None:
            chex.assert_rank(inputs_q, 3)
            query, key, value = self._fused_self_projections(inputs_q, head_dim)
        else:
            chex.assert_rank([inputs_q, inputs_kv], 3)
            query = self._project("query", inputs_q, head_dim)  # [batch, q, heads, head_dim]
            key = self._project("key", inputs_kv, head_dim)  # [batch, kv, heads, head_dim]
            value = self._project("value", inputs_kv, head_dim)  # [batch, kv, heads, head_dim]
        weights = attention_weights(query, key, mask)  # [batch, heads, q, kv]
        self.sow("intermediates", "attention_weights", weights)
        weights = nn.Dropout(rate=self.dropout_rate)(weights, deterministic=deterministic)
        attended = weighted_values(weights, value)  # [batch, q, heads, head_dim]
        attended = nn.with_logical_constraint(attended, QKV_ACTIVATION_AXES)
        return self._output_projection(attended, inputs_q.shape[-1])  # [batch, q, out_features]

    def _update_cache(self, key: Array, value: Array, mask: Array | None) -> tuple[Array, Array, Array]:
        """Appends ``key``/``value [batch, q, heads, head_dim]`` to the cache; returns the cached keys and
        values ``[batch, max_length, heads, head_dim]`` and the mask ``[.., q, max_length]`` to attend with."""
        is_initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
        length = key.shape[1]
        if not is_initialized:  # this call only sizes the cache: attend causally within the input
            causal = causal_mask(length)
            return key, value, causal if mask is None else mask & causal
        batch, max_length, heads, head_dim = cached_key.value.shape
        if (batch, heads, head_dim) != (key.shape[0], key.shape[2], key.shape[3]) or length > max_length:
            raise ValueError(f"MultiHeadAttention: cache of shape {cached_key.value.shape} cannot take keys of "
                             f"shape {key.shape}")
        index = cache_index.value
        start = (jnp.zeros((), jnp.int32), index, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        key = jax.lax.dynamic_update_slice(cached_key.value, key.astype(cached_key.value.dtype), start)
        value = jax.lax.dynamic_update_slice(cached_value.value, value.astype(cached_value.value.dtype), start)
        key = nn.with_logical_constraint(key, QKV_ACTIVATION_AXES)  # [batch, max_length, heads, head_dim]
        value = nn.with_logical_constraint(value, QKV_ACTIVATION_AXES)
        cached_key.value, cached_value.value = key, value
        cache_index.value = index + length
        query_slot = index + jnp.arange(length)  # [q]
        causal = (jnp.arange(max_length)[None, :] <= query_slot[:, None])[None, None]  # [1, 1, q, max_length]
        return key, value, causal if mask is None else mask & causal

    def _resolve_head_dim(self, embed: int) -> int:
        if self.head_dim is not None:
            return self.head_dim
        if embed % self.num_heads:
            raise ValueError(f"MultiHeadAttention: width {embed} is not divisible by num_heads={self.num_heads}; "
                             "pass head_dim explicitly")
        return embed // self.num_heads

    def _projection_fields(self, head_dim: int) -> dict[str, Any]:
        return dict(features=(self.num_heads, head_dim), contracted_axes=1, kernel_axes=("embed", "heads", "kv"),
                    bias_axes=("heads", "kv"), use_bias=self.use_bias, dtype=self.dtype,
                    param_dtype=self.param_dtype, kernel_init=self.kernel_init, bias_init=self.bias_init)

    def _project(self, name: str, inputs: Array, head_dim: int) -> Array:
        projected = HeadProjection(**self._projection_fields(head_dim), name=name)(inputs)
        return nn.with_logical_constraint(projected, QKV_ACTIVATION_AXES)

    def _fused_self_projections(self, inputs: Array, head_dim: int) -> tuple[Array, Array, Array]:
        """q, k, v of one input with one matmul against the stacked ``[embed, 3, heads, head_dim]`` kernel.

        The same parameters (``query``/``key``/``value``) and maths as three ``_project`` calls; one
        larger GEMM instead of three small ones (about 4% of a ViT-Ti train step on XLA:CPU).
        """
        weights = [HeadProjectionWeights(**self._projection_fields(head_dim), name=name)((inputs.shape[-1],))
                   for name in ("query", "key", "value")]
        kernel = jnp.stack([kernel for kernel, _ in weights], axis=1).astype(self.dtype)  # [embed, 3, heads, head_dim]
        qkv = jnp.einsum("btd,dshk->btshk", inputs.astype(self.dtype), kernel)  # [batch, tokens, 3, heads, head_dim]
        if self.use_bias:
            qkv = qkv + jnp.stack([bias for _, bias in weights]).astype(self.dtype)  # + [3, heads, head_dim]
        return tuple(nn.with_logical_constraint(qkv[:, :, i], QKV_ACTIVATION_AXES) for i in range(3))

    def _output_projection(self, attended: Array, input_width: int) -> Array:
        features = input_width if self.out_features is None else self.out_features
        out = HeadProjection(
            features=(features,), contracted_axes=2,
            kernel_axes=("heads", "kv", "embed"), bias_axes=("embed",), use_bias=self.use_bias,
            dtype=self.dtype, param_dtype=self.param_dtype,
            kernel_init=self.kernel_init if self.out_kernel_init is None else self.out_kernel_init,
            bias_init=self.bias_init, name="out")(attended)
        return nn.with_logical_constraint(out, OUTPUT_ACTIVATION_AXES)
