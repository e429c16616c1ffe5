"""The explicit map from a config's ``model.name`` to the function that builds the module.

Every binary and ``jaxmodels.load`` build models through this one dict, so a checkpoint written
by any binary can be loaded by name. Add a family's constructor here when the family lands.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

from jaxmodels.diffusion.unet import unet_from_config
from jaxmodels.gan.progan import generator_from_config
from jaxmodels.gan.segmenter import segmenter_from_config
from jaxmodels.text.bert import bert_from_config
from jaxmodels.text.gpt import gpt_from_config
from jaxmodels.graph.models import multitask_from_config, pna_regressor_from_config
from jaxmodels.vision.vit import vit_from_config
from jaxmodels.vqa.model import vqa_from_config

MODELS: dict[str, Callable[..., nn.Module]] = {
    "vit": vit_from_config,
    "pna_multitask": multitask_from_config,
    "pna_regressor": pna_regressor_from_config,
    "unet": unet_from_config,
    "progan_generator": generator_from_config,
    "scene_segmenter": segmenter_from_config,
    "bert": bert_from_config,
    "gpt": gpt_from_config,
    "vqa_counting": vqa_from_config,
}


class UnknownModelError(KeyError):
    def __init__(self, name, where: str = "config.model.name"):
        super().__init__(f"{where}={name!r} names no known model; known models: {sorted(MODELS)}")

    def __str__(self):
        return self.args[0]


def build_model(model_cfg) -> nn.Module:
    """Builds the linen module named by ``model_cfg.name`` from the rest of ``model_cfg``."""
    name = model_cfg.get("name") if hasattr(model_cfg, "get") else None
    if name not in MODELS:
        raise UnknownModelError(name)
    return MODELS[name](model_cfg)
