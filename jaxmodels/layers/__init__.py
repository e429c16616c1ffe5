"""Blocks shared by more than one family: attention, MLP, embeddings, norms, partitioned dense/conv layers."""
from jaxmodels.layers.attention import (
    HeadProjection,
    MultiHeadAttention,
    attention_weights,
    causal_mask,
    dot_product_attention,
    padding_mask,
    weighted_values,
)
from jaxmodels.layers.dense import CONV_AXES, DENSE_AXES, VECTOR_AXES, conv, dense
from jaxmodels.layers.dtypes import DTYPES, dtype_from_name
from jaxmodels.layers.embeddings import LearnedPositionEmbedding, PatchEmbedding, to_pair
from jaxmodels.layers.mlp import MlpBlock, exact_gelu
from jaxmodels.layers.norms import LayerNorm
from jaxmodels.layers.regularisation import DropPath

__all__ = [
    "CONV_AXES",
    "DENSE_AXES",
    "DTYPES",
    "DropPath",
    "HeadProjection",
    "LayerNorm",
    "LearnedPositionEmbedding",
    "MlpBlock",
    "MultiHeadAttention",
    "PatchEmbedding",
    "VECTOR_AXES",
    "attention_weights",
    "causal_mask",
    "conv",
    "dense",
    "dot_product_attention",
    "dtype_from_name",
    "exact_gelu",
    "padding_mask",
    "to_pair",
    "weighted_values",
]
