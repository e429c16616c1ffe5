"""Blocks shared by the transformer families (ViT, BERT, GPT, CLIP)."""
from jaxmodels.layers.attention import (
    HeadProjection,
    MultiHeadAttention,
    attention_weights,
    causal_mask,
    padding_mask,
)
from jaxmodels.layers.embeddings import LearnedPositionEmbedding, PatchEmbedding, to_pair
from jaxmodels.layers.mlp import MlpBlock, exact_gelu
from jaxmodels.layers.norms import LayerNorm
from jaxmodels.layers.regularisation import DropPath

__all__ = [
    "DropPath",
    "HeadProjection",
    "LayerNorm",
    "LearnedPositionEmbedding",
    "MlpBlock",
    "MultiHeadAttention",
    "PatchEmbedding",
    "attention_weights",
    "causal_mask",
    "exact_gelu",
    "padding_mask",
    "to_pair",
]
