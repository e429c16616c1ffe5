"""Reading PyTorch / Hugging Face / diffusers weight files as {name: NumPy array}, without unpickling.

The one reader every converter uses. ``.safetensors`` files are read with ``safetensors.numpy`` when that
package is installed, else by ``read_safetensors``'s own reader of the format (a JSON header plus raw
little-endian bytes); ``.bin``/``.pt``/``.pth`` files with ``torch_load``, jaxmodels' only call of
``torch.load``, always with ``weights_only=True``, which refuses arbitrary pickled objects. A model
directory means the first of the given file names inside it (Hugging Face: ``model.safetensors``, else
``pytorch_model.bin``); sharded checkpoints (``*.index.json``) are followed.
"""
from __future__ import annotations

import json
import os
from typing import IO, Any, Mapping

import numpy as np

HF_WEIGHT_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")


class WeightFileError(ValueError):
    """A weights file or directory that cannot be read as a state dict; the message names it."""


def to_numpy(value: Any, dtype: Any = None) -> np.ndarray:
    """A torch tensor (any dtype/device) or array-like as a float32/int NumPy array, or as ``dtype``."""
    if hasattr(value, "detach"):  # a torch tensor; torch itself is not imported here
        value = value.detach().to("cpu")
        if value.is_floating_point():
            value = value.float()
        array = value.numpy()
    else:
        array = np.asarray(value)
        if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
            array = array.astype(np.float32)
    return array if dtype is None else array.astype(dtype, copy=False)


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
        return {k: to_numpy(v) for k, v in read_safetensors(path).items()}
    if path.endswith((".bin", ".pt", ".pth")):
        state = torch_load(path, name=path)
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise WeightFileError(f"{path} holds a {type(state).__name__}, not a state dict")
        return {k: to_numpy(v) for k, v in state.items()}
    raise WeightFileError(f"{path}: unknown weights format (want .safetensors, .bin, .pt, .pth or a model directory)")


def torch_load(source: str | os.PathLike | IO[bytes], *, name: str) -> Any:
    """``torch.load(source, map_location="cpu", weights_only=True)``: the only ``torch.load`` in jaxmodels.

    ``weights_only=True`` makes torch resolve only tensor, storage and container types, never an arbitrary
    callable. ``name`` (the file, or e.g. "an embedded tensor storage") starts the messages: ``ImportError``
    without PyTorch, ``WeightFileError`` with torch's reason (e.g. the refused ``GLOBAL posix.system``, not
    its advice to retry unsafely) when the load fails.
    """
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"reading {name} needs PyTorch (torch.load); convert it to .safetensors "
                          "to load it without torch") from err
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # refusals come out as UnpicklingError, corrupt files as several types
        raise WeightFileError(f"{name}: torch.load(weights_only=True) failed ({_torch_reason(err)})") from err


def _torch_reason(err: Exception) -> str:
    """The line of a ``torch.load`` error that says why (it goes on to suggest ``weights_only=False``)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line or "Unsupported" in line),
                lines[-1] if lines else type(err).__name__)


_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ``.safetensors`` file as {name: NumPy array}, by the format's spec (no code execution).

    Uses ``safetensors.numpy`` when installed (it is not a jaxmodels dependency); otherwise reads the
    layout itself: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
    data_offsets: [begin, end]}, "__metadata__": {...}}, then the little-endian tensor bytes.
    Raises ``WeightFileError`` naming the file for anything else.
    """
    path = os.fspath(path)
    try:
        from safetensors.numpy import load_file
    except ImportError:
        load_file = None
    if load_file is not None:
        try:
            return dict(load_file(path))
        except Exception as err:  # safetensors raises its own error types
            raise WeightFileError(f"{path}: not a readable safetensors file ({err})") from err
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise WeightFileError(f"{path} is too short to be a safetensors file")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise WeightFileError(f"{path}: safetensors header length {header_len} exceeds the file")
    try:
        header = json.loads(data[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightFileError(f"{path}: not a readable safetensors header ({err})") from err
    body = memoryview(data)[8 + header_len:]
    return {name: _safetensors_array(path, name, info, body) for name, info in header.items()
            if name != "__metadata__"}


def _safetensors_array(path: str, name: str, info: Mapping[str, Any], body: memoryview) -> np.ndarray:
    dtype = info["dtype"]
    if dtype == "BF16":
        import ml_dtypes  # a JAX dependency

        np_dtype = np.dtype(ml_dtypes.bfloat16)
    elif dtype in _SAFETENSORS_DTYPES:
        np_dtype = np.dtype(_SAFETENSORS_DTYPES[dtype]).newbyteorder("<")
    else:
        raise WeightFileError(f"{path}: unsupported safetensors dtype {dtype} for {name}")
    begin, end = info["data_offsets"]
    return np.frombuffer(body[begin:end], dtype=np_dtype).reshape(info["shape"]).copy()


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file as a dict; the error names the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise WeightFileError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from err
