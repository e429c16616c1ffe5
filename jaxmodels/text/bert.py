"""BERT (Devlin et al., NAACL 2019) as used by Chinese BERT-wwm (Cui et al., arXiv 1906.08101).

The architecture of google-research/bert ``modeling.py`` and Hugging Face ``BertModel``:

  embeddings   E = LN(W_tok[x] + W_pos[i] + W_type[s]), dropout            (section 3, Fig. 2)
  layer l      h' = LN(h + Dropout(MHA(h, mask)))                          (post-LN, Vaswani eq. 1)
               h  = LN(h' + Dropout(W_2 GELU(W_1 h' + b_1) + b_2))         (erf GELU, LN eps 1e-12)
  pooler       tanh(W_p h_[CLS] + b_p)
  MLM head     logits = LN(GELU(W_t h + b_t)) W_tok^T + b_mlm              (decoder tied to W_tok)
  NSP head     logits = W_nsp pooled + b_nsp                               (label 0 = IsNext)

Attention and the feed-forward block are the shared ``jaxmodels.layers`` modules (the same as
ViT); the post-LN ordering is BERT's. Parameters are logically partitioned (``vocab``, ``embed``,
``heads``, ``kv``, ``mlp``), so the models shard over the mesh like every other family.

Parameter tree (``jaxmodels.convert.hf_bert`` maps Hugging Face names onto it)::

  bert/embeddings/{word_embeddings,position_embeddings,token_type_embeddings}/embedding, LayerNorm
  bert/encoder/layer_{i}/attention/{query,key,value,out}, attention_norm, mlp/{Dense_0,Dense_1}, output_norm
  bert/pooler
  cls/predictions/{transform, transform_norm, output_bias}, cls/seq_relationship      (pretraining)
  classifier                                                                      (fine-tuning)
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxmodels.layers import LayerNorm, MlpBlock, MultiHeadAttention, dense, dtype_from_name, exact_gelu, padding_mask

Array = jax.Array
Dtype = Any

BERT_SIZES: dict[str, dict[str, int]] = {
    # Devlin et al. 2019, section 3: BERT-base (110M) and BERT-large (340M).
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
    # Small sizes for CPU runs and tests (Turc et al. 2019's compact BERTs).
    "mini": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
    "tiny": dict(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512),
}

HEADS = ("none", "pretraining", "mlm", "sequence_classification", "token_classification", "question_answering")


def _init(stddev: float):
    return nn.initializers.normal(stddev=stddev)


class BertEmbeddings(nn.Module):
    """Token + position + token-type embeddings, LayerNorm, dropout."""

    vocab_size: int
    hidden_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout_rate: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    dtype: Dtype = jnp.float32

    def setup(self):
        init = _init(self.initializer_range)
        self.word_embeddings = nn.Embed(
            self.vocab_size, self.hidden_size, embedding_init=nn.with_logical_partitioning(init, ("vocab", "embed")))
        self.position_embeddings = nn.Embed(
            self.max_position_embeddings, self.hidden_size,
            embedding_init=nn.with_logical_partitioning(init, ("seq", "embed")))
        self.token_type_embeddings = nn.Embed(
            self.type_vocab_size, self.hidden_size, embedding_init=nn.with_logical_partitioning(init, (None, "embed")))
        self.LayerNorm = LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype)
        self.dropout = nn.Dropout(self.dropout_rate)

    def __call__(self, input_ids: Array, token_type_ids: Array, positions: Array, *, deterministic: bool) -> Array:
        """``[batch, length]`` ids -> ``[batch, length, hidden]``."""
        length = input_ids.shape[1]
        if length > self.max_position_embeddings:
            raise ValueError(f"BERT: sequence length {length} exceeds max_position_embeddings="
                             f"{self.max_position_embeddings}")
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(token_type_ids))
        x = self.LayerNorm(x).astype(self.dtype)
        x = nn.with_logical_constraint(x, ("act_batch", "act_seq", "act_embed"))
        return self.dropout(x, deterministic=deterministic)

    def attend(self, hidden: Array) -> Array:
        """The tied MLM decoder: ``hidden @ W_tok^T`` -> ``[..., vocab]`` (float32)."""
        return self.word_embeddings.attend(hidden.astype(jnp.float32))


class BertLayer(nn.Module):
    """One post-LN transformer layer (Vaswani et al. 2017; BERT ``transformer_model``)."""

    num_heads: int
    intermediate_size: int
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, *, deterministic: bool) -> Array:
        init = _init(self.initializer_range)
        a = MultiHeadAttention(num_heads=self.num_heads, dropout_rate=self.attention_dropout_rate, dtype=self.dtype,
                               kernel_init=init, name="attention")(x, mask=mask, deterministic=deterministic)
        a = nn.Dropout(self.dropout_rate)(a, deterministic=deterministic)
        x = LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name="attention_norm")(x + a)
        m = MlpBlock(mlp_dim=self.intermediate_size, dropout_rate=self.dropout_rate, activation_dropout=False,
                     activation=exact_gelu, dtype=self.dtype, kernel_init=init, bias_init=nn.initializers.zeros,
                     name="mlp")(x, deterministic=deterministic)
        x = LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name="output_norm")(x + m)
        return nn.with_logical_constraint(x, ("act_batch", "act_seq", "act_embed"))


class BertModel(nn.Module):
    """The BERT encoder: embeddings, ``num_layers`` post-LN layers and the tanh pooler.

    Returns ``(sequence_output [batch, length, hidden], pooled_output [batch, hidden])``; without
    ``add_pooling_layer`` (the MLM, token-classification and QA models, as in Hugging Face) the
    pooled output is None and the pooler has no parameters.
    ``attention_mask`` is 1 for real tokens and 0 for padding (keys only are masked, as in BERT).
    """

    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    add_pooling_layer: bool = True
    dtype: Dtype = jnp.float32

    def setup(self):
        self.embeddings = BertEmbeddings(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size,
            max_position_embeddings=self.max_position_embeddings, type_vocab_size=self.type_vocab_size,
            dropout_rate=self.dropout_rate, layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range, dtype=self.dtype)
        self.encoder = BertEncoder(
            num_layers=self.num_layers, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
            dropout_rate=self.dropout_rate, attention_dropout_rate=self.attention_dropout_rate,
            layer_norm_eps=self.layer_norm_eps, initializer_range=self.initializer_range, dtype=self.dtype)
        if self.add_pooling_layer:
            self.pooler = dense(self.hidden_size, ("embed", "mlp"), kernel_init=_init(self.initializer_range),
                                dtype=self.dtype, name="pooler")

    def __call__(self, input_ids: Array, token_type_ids: Array | None = None, attention_mask: Array | None = None,
                 *, deterministic: bool = True) -> tuple[Array, Array]:
        if input_ids.ndim != 2:
            raise ValueError(f"BERT: input_ids must be [batch, length], got shape {input_ids.shape}")
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        positions = jnp.arange(input_ids.shape[1])[None, :]
        x = self.embeddings(input_ids, token_type_ids, positions, deterministic=deterministic)
        mask = None if attention_mask is None else padding_mask(attention_mask > 0)
        x = self.encoder(x, mask, deterministic=deterministic)
        pooled = jnp.tanh(self.pooler(x[:, 0])) if self.add_pooling_layer else None
        return x, pooled

    def attend(self, hidden: Array) -> Array:
        return self.embeddings.attend(hidden)


class BertEncoder(nn.Module):
    num_layers: int
    num_heads: int
    intermediate_size: int
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, mask: Array | None, *, deterministic: bool) -> Array:
        for i in range(self.num_layers):
            x = BertLayer(num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                          dropout_rate=self.dropout_rate, attention_dropout_rate=self.attention_dropout_rate,
                          layer_norm_eps=self.layer_norm_eps, initializer_range=self.initializer_range,
                          dtype=self.dtype, name=f"layer_{i}")(x, mask, deterministic=deterministic)
        return x


class BertMLMHead(nn.Module):
    """``cls/predictions``: dense + GELU + LN transform, then the decoder tied to the word embeddings."""

    hidden_size: int
    vocab_size: int
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden: Array, attend) -> Array:
        h = dense(self.hidden_size, ("embed", "mlp"), kernel_init=_init(self.initializer_range), dtype=self.dtype,
                  name="transform")(hidden)
        h = LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name="transform_norm")(exact_gelu(h))
        bias = self.param("output_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                          (self.vocab_size,))
        logits = attend(h) + bias  # [..., vocab], float32
        return nn.with_logical_constraint(logits, ("act_batch",) + ("act_seq",) * (logits.ndim - 2) + ("act_vocab",))


class Bert(nn.Module):
    """BERT with one of the heads in ``HEADS``.

    - ``none``: ``{"sequence_output", "pooled_output"}``.
    - ``pretraining``: MLM logits at ``masked_lm_positions`` ``[batch, P, vocab]`` (all positions if
      none are given) and NSP logits ``[batch, 2]``; ``mlm`` is the same without NSP (RoBERTa-wwm).
    - ``sequence_classification``: pooled -> dropout -> ``classifier`` -> ``[batch, num_labels]``
      (ChnSentiCorp, XNLI, LCQMC, BQ).
    - ``token_classification``: sequence -> dropout -> ``classifier`` -> ``[batch, length, num_labels]``
      (People's Daily / MSRA NER).
    - ``question_answering``: sequence -> ``classifier`` (2 outputs) -> start/end logits ``[batch, length]``
      (CMRC 2018, DRCD), with padding positions set to a large negative value.
    """

    vocab_size: int
    head: str = "pretraining"
    num_labels: int = 2
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids: Array, token_type_ids: Array | None = None, attention_mask: Array | None = None,
                 masked_lm_positions: Array | None = None, *, train: bool = False) -> dict[str, Array]:
        if self.head not in HEADS:
            raise ValueError(f"Bert.head must be one of {HEADS}, got {self.head!r}")
        bert = BertModel(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
            num_heads=self.num_heads, intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings, type_vocab_size=self.type_vocab_size,
            dropout_rate=self.dropout_rate, attention_dropout_rate=self.attention_dropout_rate,
            layer_norm_eps=self.layer_norm_eps, initializer_range=self.initializer_range,
            add_pooling_layer=self.head in ("none", "pretraining", "sequence_classification"), dtype=self.dtype,
            name="bert")
        sequence, pooled = bert(input_ids, token_type_ids, attention_mask, deterministic=not train)
        out = {"sequence_output": sequence}
        if pooled is not None:
            out["pooled_output"] = pooled
        if self.head in ("pretraining", "mlm"):
            hidden = sequence if masked_lm_positions is None else jnp.take_along_axis(
                sequence, masked_lm_positions[..., None].astype(jnp.int32), axis=1)  # [batch, P, hidden]
            out["mlm_logits"] = BertMLMHead(self.hidden_size, self.vocab_size, self.layer_norm_eps,
                                            self.initializer_range, self.dtype,
                                            name="cls_predictions")(hidden, bert.attend)
            if self.head == "pretraining":
                out["nsp_logits"] = self._output_layer(2, "cls_seq_relationship")(pooled)
        elif self.head == "sequence_classification":
            x = nn.Dropout(self.dropout_rate)(pooled, deterministic=not train)
            out["logits"] = self._output_layer(self.num_labels, "classifier")(x)
        elif self.head == "token_classification":
            x = nn.Dropout(self.dropout_rate)(sequence, deterministic=not train)
            out["logits"] = self._output_layer(self.num_labels, "classifier")(x)
        elif self.head == "question_answering":
            logits = self._output_layer(2, "classifier")(sequence)
            if attention_mask is not None:
                logits = jnp.where(attention_mask[..., None] > 0, logits, -1e4)
            out["start_logits"], out["end_logits"] = logits[..., 0], logits[..., 1]
        return out

    def _output_layer(self, features: int, name: str) -> nn.Dense:
        """A float32 head ``[..., hidden] -> [..., features]``, kernel normal(initializer_range), bias zero."""
        return dense(features, ("embed", "classes"), kernel_init=_init(self.initializer_range), dtype=jnp.float32,
                     name=name)


# ---------------------------------------------------------------------------------------------
# Losses (google-research/bert run_pretraining.py get_masked_lm_output / get_next_sentence_output)
# ---------------------------------------------------------------------------------------------

def masked_lm_loss(logits: Array, labels: Array, weights: Array) -> tuple[Array, Array]:
    """sum_i w_i CE(logits_i, y_i) / (sum_i w_i + 1e-5), and the weighted accuracy.

    ``logits [batch, P, vocab]``, ``labels [batch, P]``, ``weights [batch, P]`` (0 on padded slots).
    """
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    weights = weights.astype(jnp.float32)
    denom = jnp.sum(weights) + 1e-5
    acc = jnp.sum((jnp.argmax(logits, -1) == labels) * weights) / denom
    return jnp.sum(ce * weights) / denom, acc


def next_sentence_loss(logits: Array, labels: Array) -> tuple[Array, Array]:
    """Mean cross-entropy of IsNext (0) / NotNext (1), and accuracy."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    return jnp.mean(ce), jnp.mean(jnp.argmax(logits, -1) == labels)


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------

_FIELDS = ("vocab_size", "head", "num_labels", "hidden_size", "num_layers", "num_heads", "intermediate_size",
           "max_position_embeddings", "type_vocab_size", "dropout_rate", "attention_dropout_rate",
           "layer_norm_eps", "initializer_range", "dtype")
_CONFIG_KEYS = frozenset(("name", "variant") + _FIELDS)


def bert_variant(variant: str) -> dict[str, int]:
    if variant not in BERT_SIZES:
        raise ValueError(f"BERT variant must be one of {sorted(BERT_SIZES)}, got {variant!r}")
    return dict(BERT_SIZES[variant])


def bert_from_config(model_cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> Bert:
    """Builds ``Bert`` from a model config: ``variant`` (base/large/mini/tiny) and/or explicit sizes,
    ``vocab_size`` (21,128 for the Chinese vocab), ``head``, ``num_labels`` and the other fields of
    ``Bert``; ``dtype`` is ``"float32"`` or ``"bfloat16"``."""
    cfg = model_cfg.to_dict() if isinstance(model_cfg, ml_collections.ConfigDict) else dict(model_cfg)
    unknown = sorted(set(cfg) - _CONFIG_KEYS)
    if unknown:
        raise ValueError(f"bert_from_config: unknown model config key(s) {unknown}; known keys are "
                         f"{sorted(_CONFIG_KEYS)}")
    kwargs = bert_variant(cfg["variant"]) if cfg.get("variant") else {}
    kwargs.update({k: cfg[k] for k in _FIELDS if cfg.get(k) is not None})
    if "vocab_size" not in kwargs:
        raise ValueError("bert_from_config: model.vocab_size is required")
    kwargs["dtype"] = dtype_from_name(kwargs.get("dtype", "float32"), "bert_from_config: model.dtype")
    return Bert(**kwargs)


def count_params(model: nn.Module, length: int = 8) -> int:
    """Number of parameters, from ``jax.eval_shape`` (nothing is allocated)."""
    ids = jnp.zeros((1, length), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), ids))
    return sum(int(x.size) for x in jax.tree.leaves(nn.unbox(shapes["params"])))
