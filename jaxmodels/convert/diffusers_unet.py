"""diffusers ``UNet2DModel`` weights <-> ``jaxmodels.diffusion.unet.UNet`` parameters.

diffusers' DDPM port (the published ``google/ddpm-cifar10-32`` and the other ``google/ddpm-*`` checkpoints)
is Ho et al.'s U-Net under another name. ``diffusers_config(unet)`` gives the ``UNet2DModel`` keyword
arguments of a ``UNet``; each one matters for the maths:

  block_out_channels     ch * ch_mult
  down/up_block_types    ``AttnDownBlock2D`` / ``AttnUpBlock2D`` at the levels whose feature-map height is
                         in attn_resolutions, ``DownBlock2D`` / ``UpBlock2D`` elsewhere (up blocks listed
                         from the lowest resolution); mid block ``UNetMidBlock2D`` with attention
  layers_per_block       num_res_blocks (diffusers' up blocks have one more, as Ho's)
  freq_shift=1, flip_sin_to_cos=False
                         exp(-log(10000) i / (half - 1)) and [sin, cos]: Ho's ``get_timestep_embedding``
  downsample_padding=0   diffusers then pads (0, 1, 0, 1) before its stride-2 conv: TF 'SAME' on even sizes
  norm_eps=1e-6, norm_num_groups=32, attn_norm_num_groups=32, act_fn="silu"
                         tf.contrib group_norm defaults and swish; the attention GroupNorm is explicit because
                         diffusers drops the mid block's one under ``scale_shift`` unless it is given
  attention_head_dim     None (one head as wide as the block) for num_heads=1, else width // num_heads
  resnet_time_scale_shift "default" (h + Dense(temb) before norm2) or "scale_shift" (improved DDPM)
  num_class_embeds       num_classes + 1 (the null class), ``class_embed_type=None``: Embed(y) + temb

Parameter mapping (diffusers module -> ours; torch conv ``[O, I, kh, kw]`` -> HWIO, ``Linear [O, I]`` ->
``[I, O]``, 1x1 conv shortcut -> ``[I, O]``, GroupNorm ``weight`` -> ``scale``, Embedding -> ``embedding``):

  conv_in, conv_out, conv_norm_out                -> conv_in, conv_out, norm_out
  time_embedding.linear_1 / linear_2              -> temb_dense0 / temb_dense1
  class_embedding                                 -> label_emb
  down_blocks.i.resnets.j.{norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut}
                                 -> down_i_block_j/{norm1, conv1, temb_proj, norm2, conv2, nin_shortcut}
  down_blocks.i.attentions.j.{group_norm, to_q, to_k, to_v, to_out.0}
                                                  -> down_i_attn_j/{norm, q, k, v, proj_out}
      (the deprecated names query, key, value, proj_attn of old checkpoints are accepted too)
  down_blocks.i.downsamplers.0.conv               -> down_i_downsample
  mid_block.resnets.0 / attentions.0 / resnets.1  -> mid_block_1 / mid_attn_1 / mid_block_2
  up_blocks.k.{resnets, attentions}.j             -> up_{L-1-k}_{block, attn}_j
  up_blocks.k.upsamplers.0.conv                   -> up_{L-1-k}_upsample

Loading never unpickles: files are read by ``jaxmodels.convert.state_dict`` (safetensors, or
``.bin``/``.pt``/``.pth`` with ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

import numpy as np

from jaxmodels.convert.state_dict import read_state_dict, to_numpy
from jaxmodels.diffusion.unet import NORM_EPS, NUM_GROUPS, UNet

SAFETENSORS_NAME = "diffusion_pytorch_model.safetensors"
BIN_NAME = "diffusion_pytorch_model.bin"
WEIGHT_NAMES = (SAFETENSORS_NAME, SAFETENSORS_NAME + ".index.json", BIN_NAME, BIN_NAME + ".index.json")

_RESNET_PARTS = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "temb_proj", "norm2": "norm2",
                 "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_CURRENT_ATTENTION_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_ATTENTION_PARTS = {**_CURRENT_ATTENTION_PARTS,
                    "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}  # + deprecated names
_TOP = {"conv_in": "conv_in", "conv_out": "conv_out", "conv_norm_out": "norm_out",
        "time_embedding.linear_1": "temb_dense0", "time_embedding.linear_2": "temb_dense1",
        "class_embedding": "label_emb"}
_NORMS = ("norm1", "norm2", "norm", "norm_out")


# --------------------------------------------------------------------------------------------
# names


def _our_module(module: str, levels: int) -> tuple[str, ...] | None:
    """diffusers module path (``down_blocks.1.attentions.0.to_q``) -> our module path, or None if unknown."""
    if module in _TOP:
        return (_TOP[module],)
    match = re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", module)
    if match:
        direction, index, kind, block, part = match.groups()
        level = int(index) if direction == "down" else levels - 1 - int(index)
        parts = _RESNET_PARTS if kind == "resnets" else _ATTENTION_PARTS
        if part not in parts or level < 0:
            return None
        return (f"{direction}_{level}_{'block' if kind == 'resnets' else 'attn'}_{block}", parts[part])
    match = re.fullmatch(r"(down|up)_blocks\.(\d+)\.(downsamplers|upsamplers)\.0\.conv", module)
    if match:
        direction, index, _ = match.groups()
        level = int(index) if direction == "down" else levels - 1 - int(index)
        return (f"{direction}_{level}_{'downsample' if direction == 'down' else 'upsample'}",)
    match = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", module)
    if match:
        kind, block, part = match.groups()
        parts = _RESNET_PARTS if kind == "resnets" else _ATTENTION_PARTS
        if part not in parts:
            return None
        return (f"mid_{'block' if kind == 'resnets' else 'attn'}_{int(block) + 1}", parts[part])
    return None


def _diffusers_module(path: tuple[str, ...], levels: int) -> str:
    """Our module path -> the current diffusers module name (inverse of ``_our_module``)."""
    top = {ours: theirs for theirs, ours in _TOP.items()}
    if len(path) == 1 and path[0] in top:
        return top[path[0]]
    match = re.fullmatch(r"(down|up)_(\d+)_(block|attn|downsample|upsample)(?:_(\d+))?", path[0])
    mid = re.fullmatch(r"mid_(block|attn)_(\d+)", path[0])
    if match:
        direction, level, kind, block = match.groups()
        index = int(level) if direction == "down" else levels - 1 - int(level)
        if kind in ("downsample", "upsample"):
            return f"{direction}_blocks.{index}.{kind}rs.0.conv"
        prefix = f"{direction}_blocks.{index}.{'resnets' if kind == 'block' else 'attentions'}.{block}"
    elif mid:
        kind, block = mid.groups()
        prefix = f"mid_block.{'resnets' if kind == 'block' else 'attentions'}.{int(block) - 1}"
    else:
        raise ValueError(f"no diffusers name for UNet module {'/'.join(path)}")
    table = _RESNET_PARTS if prefix.split(".")[-2] == "resnets" else _CURRENT_ATTENTION_PARTS
    parts = {ours: theirs for theirs, ours in table.items()}
    return f"{prefix}.{parts[path[1]]}"


# --------------------------------------------------------------------------------------------
# tensors


def _to_ours(path: tuple[str, ...], leaf: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    name = path[-1]
    if leaf == "bias":
        return "bias", value
    if leaf != "weight":
        raise KeyError(leaf)
    if name in _NORMS:
        return "scale", value
    if name == "label_emb":
        return "embedding", value
    if value.ndim == 4:
        if name == "nin_shortcut":  # 1x1 conv [O, I, 1, 1] -> dense [I, O]
            return "kernel", value[:, :, 0, 0].T
        return "kernel", value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if value.ndim == 2:
        return "kernel", value.T  # Linear [O, I] -> [I, O]
    raise ValueError(f"unexpected {value.ndim}-d weight for {'/'.join(path)}")


def _to_diffusers(path: tuple[str, ...], leaf: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    name = path[-1]
    if leaf in ("bias", "scale", "embedding"):
        return ("bias" if leaf == "bias" else "weight"), value
    if value.ndim == 4:
        return "weight", value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if name == "nin_shortcut":
        return "weight", value.T[:, :, None, None]
    return "weight", value.T


def _num_levels(keys) -> int:
    indices = [int(m.group(1)) for key in keys for m in [re.match(r"down_blocks\.(\d+)\.", key)] if m]
    if not indices:
        raise ValueError("not a diffusers UNet2DModel state dict: no 'down_blocks.*' entries")
    return max(indices) + 1


def params_from_diffusers(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A diffusers ``UNet2DModel`` state dict (torch tensors or numpy arrays) -> our (unboxed) ``params``.

    The model must have been built with a DDPM-equivalent config (see ``diffusers_config``). Raises
    ``ValueError`` naming the entries it cannot map (e.g. another architecture's blocks).
    """
    levels = _num_levels(state_dict)
    params: dict[str, Any] = {}
    unknown = []
    for key, value in state_dict.items():
        module, _, leaf = key.rpartition(".")
        path = _our_module(module, levels)
        if path is None or leaf not in ("weight", "bias"):
            unknown.append(key)
            continue
        ours_leaf, array = _to_ours(path, leaf, to_numpy(value, np.float32))
        node = params
        for name in path:
            node = node.setdefault(name, {})
        node[ours_leaf] = np.ascontiguousarray(array, dtype=np.float32)
    if unknown:
        raise ValueError(f"params_from_diffusers: {len(unknown)} state-dict entr{'y' if len(unknown) == 1 else 'ies'} "
                         f"have no UNet counterpart (not a DDPM-style UNet2DModel?): {sorted(unknown)[:10]}")
    return params


def params_to_diffusers(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Our ``params`` (boxed or not) -> a diffusers ``UNet2DModel`` state dict of float32 numpy arrays."""
    import flax.linen as nn
    import jax

    params = jax.device_get(nn.unbox(params))
    levels = 1 + max(int(m.group(1)) for name in params for m in [re.match(r"down_(\d+)_", name)] if m)
    state = {}

    def visit(node, path):
        for name, value in node.items():
            if isinstance(value, Mapping):
                visit(value, path + (name,))
            else:
                leaf, array = _to_diffusers(path, name, np.asarray(value, np.float32))
                state[f"{_diffusers_module(path, levels)}.{leaf}"] = np.ascontiguousarray(array)

    visit(params, ())
    return state


# --------------------------------------------------------------------------------------------
# files and configs


def load_diffusers_unet(path: str | os.PathLike) -> dict[str, Any]:
    """A diffusers UNet's weights as our ``params``: a ``.safetensors`` file, a ``.bin``/``.pt``/``.pth``
    (``torch.load(weights_only=True)``; never unpickles arbitrary objects), or a model directory holding
    ``diffusion_pytorch_model.safetensors`` (else ``.bin``; sharded indexes are followed), read by
    ``jaxmodels.convert.state_dict.read_state_dict``."""
    return params_from_diffusers(read_state_dict(path, WEIGHT_NAMES))


def _attention_levels(unet: UNet, sample_size: int) -> list[bool]:
    return [sample_size // 2 ** level in unet.attn_resolutions for level in range(len(unet.ch_mult))]


def diffusers_config(unet: UNet, *, sample_size: int = 32, in_channels: int = 3) -> dict[str, Any]:
    """``UNet2DModel(**diffusers_config(unet))`` computes ``unet`` for ``sample_size`` x ``sample_size`` x
    ``in_channels`` inputs (which levels attend depends on the size; CIFAR-10's 32 x 32 x 3 by default)."""
    widths = [unet.ch * m for m in unet.ch_mult]
    attends = _attention_levels(unet, sample_size)
    if unet.num_heads == 1:
        head_dim = None  # each attention block one head of its own width, as Ho's
    else:
        attention_widths = {w for w, a in zip(widths, attends) if a} | {widths[-1]}
        if len(attention_widths) != 1:
            raise ValueError(f"diffusers_config: num_heads={unet.num_heads} with attention at widths "
                             f"{sorted(attention_widths)}; diffusers has one attention_head_dim for all blocks")
        head_dim = attention_widths.pop() // unet.num_heads
    out_channels = (unet.out_channels or in_channels) * (2 if unet.learn_sigma else 1)
    return dict(
        sample_size=sample_size, in_channels=in_channels, out_channels=out_channels, center_input_sample=False,
        time_embedding_type="positional", freq_shift=1, flip_sin_to_cos=False,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attends),
        mid_block_type="UNetMidBlock2D",
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)),
        block_out_channels=tuple(widths), layers_per_block=unet.num_res_blocks, mid_block_scale_factor=1,
        downsample_padding=0, downsample_type="conv", upsample_type="conv", dropout=float(unet.dropout),
        act_fn="silu", attention_head_dim=head_dim, norm_num_groups=NUM_GROUPS, attn_norm_num_groups=NUM_GROUPS,
        norm_eps=NORM_EPS, resnet_time_scale_shift="scale_shift" if unet.use_scale_shift_norm else "default",
        add_attention=True, class_embed_type=None, num_class_embeds=unet.num_classes + 1 if unet.num_classes else None)


# UNet2DModel.__init__ defaults of the keys read below (diffusers 0.42.1).
_DIFFUSERS_DEFAULTS = dict(
    sample_size=None, out_channels=3, center_input_sample=False, time_embedding_type="positional",
    time_embedding_dim=None, freq_shift=0, flip_sin_to_cos=True,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    mid_block_type="UNetMidBlock2D", up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(224, 448, 672, 896), layers_per_block=2, mid_block_scale_factor=1, downsample_padding=1,
    downsample_type="conv", upsample_type="conv", dropout=0.0, act_fn="silu", attention_head_dim=8,
    norm_num_groups=32, attn_norm_num_groups=None, norm_eps=1e-5, resnet_time_scale_shift="default",
    add_attention=True, class_embed_type=None, num_class_embeds=None)


def unet_from_diffusers_config(config: Mapping[str, Any] | str, **overrides) -> UNet:
    """The ``UNet`` of a DDPM-style ``UNet2DModel`` config (a dict or a ``config.json`` path / model directory).

    Raises ``ValueError`` naming the first setting whose maths differs from Ho et al.'s network.
    ``overrides`` (e.g. ``dropout=0.1``, which inference configs often leave at 0) go to ``UNet``.
    """
    if isinstance(config, (str, os.PathLike)):
        path = os.path.join(config, "config.json") if os.path.isdir(config) else config
        with open(path) as f:
            config = json.load(f)
    cfg = {**_DIFFUSERS_DEFAULTS, **config}  # what UNet2DModel uses for keys the config leaves out
    expected = dict(center_input_sample=False, time_embedding_type="positional", freq_shift=1, flip_sin_to_cos=False,
                    mid_block_type="UNetMidBlock2D", mid_block_scale_factor=1, downsample_padding=0,
                    downsample_type="conv", upsample_type="conv", act_fn="silu", norm_num_groups=NUM_GROUPS,
                    norm_eps=NORM_EPS, add_attention=True, class_embed_type=None, time_embedding_dim=None)
    for key, want in expected.items():
        if cfg[key] != want:
            raise ValueError(f"unet_from_diffusers_config: {key}={cfg[key]!r}, the DDPM U-Net needs {want!r}")
    if cfg["resnet_time_scale_shift"] == "scale_shift" and cfg["attn_norm_num_groups"] is None:
        raise ValueError("unet_from_diffusers_config: resnet_time_scale_shift='scale_shift' without "
                         "attn_norm_num_groups drops the mid-block attention's GroupNorm; the DDPM U-Net has it")
    widths = list(cfg["block_out_channels"])
    ch = widths[0]
    if any(w % ch for w in widths):
        raise ValueError(f"unet_from_diffusers_config: block_out_channels={widths} are not multiples of {ch}")
    sample_size = cfg["sample_size"] or 32
    sample_size = sample_size if isinstance(sample_size, int) else sample_size[0]
    down = list(cfg["down_block_types"])
    attn_resolutions = tuple(sample_size // 2 ** i for i, kind in enumerate(down) if kind == "AttnDownBlock2D")
    if list(cfg["up_block_types"]) != [k.replace("Down", "Up") for k in reversed(down)]:
        raise ValueError(f"unet_from_diffusers_config: up_block_types={cfg['up_block_types']} do not mirror "
                         f"down_block_types={down}")
    head_dim = cfg["attention_head_dim"]
    num_heads = 1 if head_dim is None else widths[-1] // head_dim
    kwargs = dict(ch=ch, ch_mult=tuple(w // ch for w in widths), num_res_blocks=cfg["layers_per_block"],
                  attn_resolutions=attn_resolutions, dropout=cfg["dropout"], out_channels=cfg["out_channels"],
                  num_classes=(cfg["num_class_embeds"] - 1) if cfg["num_class_embeds"] else 0, num_heads=num_heads,
                  use_scale_shift_norm=cfg["resnet_time_scale_shift"] == "scale_shift")
    kwargs.update(overrides)
    return UNet(**kwargs)
