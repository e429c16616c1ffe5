"""Layer normalisation (Ba et al. 2016) with logically partitioned scale and bias."""
from __future__ import annotations

import flax.linen as nn


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` whose scale and bias carry the logical axis ``embed``; epsilon 1e-6 as in ViT.

    Pass the epsilon of the model being reproduced, e.g. 1e-12 for BERT, 1e-5 for CLIP.
    """

    epsilon: float = 1e-6
    scale_init: nn.initializers.Initializer = nn.with_logical_partitioning(nn.initializers.ones, ("embed",))
    bias_init: nn.initializers.Initializer = nn.with_logical_partitioning(nn.initializers.zeros, ("embed",))
