"""Reading PyTorch / Hugging Face weight files as {name: NumPy array}, without unpickling.

``.safetensors`` files are read with ``safetensors.numpy`` (the format is a JSON header plus raw
little-endian bytes); ``.bin``/``.pt``/``.pth`` files with ``torch.load(weights_only=True)``, which
refuses arbitrary pickled objects. A Hugging Face model directory means its ``model.safetensors``
(else ``pytorch_model.bin``); sharded checkpoints (``*.safetensors.index.json``) are followed.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

HF_WEIGHT_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")


class WeightFileError(ValueError):
    """A weights file or directory that cannot be read as a state dict; the message names it."""


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any dtype/device) or array-like as a float32/int NumPy array."""
    if hasattr(value, "detach"):
        value = value.detach().to("cpu")
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype.kind == "f" or array.dtype.name == "bfloat16" else array


def weights_file(path: str | os.PathLike, names: tuple[str, ...] = HF_WEIGHT_NAMES) -> str:
    """``path`` itself if it is a file, else the first of ``names`` inside the directory."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    if not os.path.isdir(path):
        return path
    for name in names:
        if os.path.exists(os.path.join(path, name)):
            return os.path.join(path, name)
    raise WeightFileError(f"{path} holds none of {list(names)}")


def read_state_dict(path: str | os.PathLike, names: tuple[str, ...] = HF_WEIGHT_NAMES) -> dict[str, np.ndarray]:
    """The tensors of a weights file or model directory as {name: NumPy array} (see the module doc)."""
    path = weights_file(path, names)
    if path.endswith(".index.json"):
        try:
            with open(path, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise WeightFileError(f"{path}: not a sharded-checkpoint index ({err})") from err
        out: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            out.update(read_state_dict(os.path.join(os.path.dirname(path), shard)))
        return out
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        try:
            return {k: to_numpy(v) for k, v in load_file(path).items()}
        except Exception as err:  # safetensors raises its own error types
            raise WeightFileError(f"{path}: not a readable safetensors file ({err})") from err
    if path.endswith((".bin", ".pt", ".pth")):
        try:
            import torch
        except ImportError as err:
            raise ImportError(f"reading {path} needs PyTorch (torch.load); convert it to .safetensors "
                              "to load it without torch") from err
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise WeightFileError(f"{path}: torch.load(weights_only=True) failed ({err})") from err
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise WeightFileError(f"{path} holds a {type(state).__name__}, not a state dict")
        return {k: to_numpy(v) for k, v in state.items()}
    raise WeightFileError(f"{path}: unknown weights format (want .safetensors, .bin, .pt, .pth or a model directory)")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file as a dict; the error names the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise WeightFileError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from err
