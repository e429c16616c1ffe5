"""The explicit map from a config's ``model.name`` to the function that builds the module.

Every binary and ``jaxmodels.load`` build models through this one table, so a checkpoint written
by any binary can be loaded by name. Entries are ``"module:function"`` strings imported only when
a config names them, so ``import jaxmodels`` (and ``jaxmodels.load`` of a ViT checkpoint) import
no other family. Add a paper's constructor here when it lands.
"""
from __future__ import annotations

import importlib
from typing import Callable

MODELS: dict[str, str] = {
    "vit": "jaxmodels.vision.vit:vit_from_config",
    "pna_multitask": "jaxmodels.graph.models:multitask_from_config",
    "pna_regressor": "jaxmodels.graph.models:pna_regressor_from_config",
    "unet": "jaxmodels.diffusion.unet:unet_from_config",
    "progan_generator": "jaxmodels.gan.progan:generator_from_config",
    "scene_segmenter": "jaxmodels.gan.segmenter:segmenter_from_config",
    "bert": "jaxmodels.text.bert:bert_from_config",
    "gpt": "jaxmodels.text.gpt:gpt_from_config",
    "vqa_counting": "jaxmodels.vqa.model:vqa_from_config",
}


class UnknownModelError(KeyError):
    def __init__(self, name, where: str = "config.model.name"):
        super().__init__(f"{where}={name!r} names no known model; known models: {sorted(MODELS)}")

    def __str__(self):
        return self.args[0]


def model_constructor(name: str) -> Callable:
    """Imports and returns the constructor ``MODELS[name]`` names (``module:function``)."""
    if name not in MODELS:
        raise UnknownModelError(name)
    module_name, function_name = MODELS[name].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def build_model(model_cfg):
    """Builds the linen module named by ``model_cfg.name`` from the rest of ``model_cfg``."""
    name = model_cfg.get("name") if hasattr(model_cfg, "get") else None
    return model_constructor(name)(model_cfg)
