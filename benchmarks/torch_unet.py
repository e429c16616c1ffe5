"""The PyTorch side of ``benchmarks/diffusion_step.py``: diffusers' ``UNet2DModel`` built as our DDPM U-Net.

``jaxmodels.convert.diffusers_unet.diffusers_config`` gives the ``UNet2DModel`` arguments under which it is
Ho et al.'s network (``tests/diffusion/test_unet.py`` checks the outputs agree to ~1e-5 after a weight
copy), and ``params_to_diffusers`` copies our Flax parameters into it, so both frameworks time the same
function with the same weights.
"""
from __future__ import annotations

import sys
from typing import Any, Mapping

import numpy as np
import torch


def unet2d_model_class():
    """``diffusers.UNet2DModel``, imported without torchvision.

    diffusers imports torchvision for unrelated models whenever the package is installed; a torchvision
    build that does not match the installed torch (e.g. a CUDA wheel next to the CPU torch) then breaks
    ``import diffusers``'s model modules, and (through diffusers' import of ``transformers``, when that is
    installed) ``transformers.PreTrainedModel``. The U-Net never uses torchvision, so it is declared absent
    first, to diffusers and to every later importer in this process.
    """
    if "diffusers.models.unets.unet_2d" not in sys.modules:
        sys.modules.setdefault("torchvision", None)
        import diffusers.utils.import_utils as import_utils

        import_utils._torchvision_available = False
    from diffusers.models.unets.unet_2d import UNet2DModel

    return UNet2DModel


def torch_unet_like(unet: Any, *, sample_size: int = 32, in_channels: int = 3) -> torch.nn.Module:
    """A randomly initialised diffusers ``UNet2DModel`` computing the same function as our ``unet``."""
    from jaxmodels.convert.diffusers_unet import diffusers_config

    return unet2d_model_class()(**diffusers_config(unet, sample_size=sample_size, in_channels=in_channels))


def load_flax_params(torch_model: torch.nn.Module, params: Mapping[str, Any]) -> torch.nn.Module:
    """Copies our ``params`` (boxed or not) into ``torch_model`` in place (strict: every tensor); returns it."""
    from jaxmodels.convert.diffusers_unet import params_to_diffusers

    state = {name: torch.from_numpy(np.array(value)) for name, value in params_to_diffusers(params).items()}
    torch_model.load_state_dict(state, strict=True)
    return torch_model
