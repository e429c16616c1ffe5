"""Vision models: ViT (Dosovitskiy et al. 2021)."""
from jaxmodels.vision.vit import VIT_SIZES, ViT, vit_from_config, vit_variant

__all__ = ["VIT_SIZES", "ViT", "vit_from_config", "vit_variant"]
