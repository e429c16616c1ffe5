"""PyTorch Inception-v3 state dict -> Flax variables of ``jaxmodels.vision.inception.InceptionV3``.

The FID weights are pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (TensorFlow's
``inception-2015-12-05`` graph ported to PyTorch, released at github.com/mseitzer/pytorch-fid,
"fid_weights"). Download it yourself; this module only reads a local file:

    from jaxmodels.convert.torch_inception import load_torch_inception
    from jaxmodels.vision.inception import inception_extractor
    extractor = inception_extractor(load_torch_inception("pt_inception-2015-12-05-6726825d.pth"))

Reading: ``jaxmodels.convert.state_dict.read_state_dict``, i.e. ``torch_load`` (weights only, never an
unrestricted pickle), or a ``.safetensors`` file (read by the
``safetensors`` package when installed, else by that module's own reader; no torch needed).
torchvision's own ``inception_v3`` state dicts have the same names plus ``AuxLogits.*``, which are
skipped (the auxiliary head is unused at inference).

Mapping, for every ``BasicConv2d`` ``<m>`` (e.g. ``Mixed_6b.branch7x7_2``):
  <m>.conv.weight  [O, I, kh, kw]  -> params[<m>/conv/kernel]   [kh, kw, I, O]
  <m>.bn.weight / .bn.bias         -> params[<m>/bn/scale] / params[<m>/bn/bias]
  <m>.bn.running_mean / _var       -> batch_stats[<m>/bn/mean] / batch_stats[<m>/bn/var]
  <m>.bn.num_batches_tracked       -> dropped
  fc.weight [K, 2048] / fc.bias    -> params[fc/kernel] [2048, K] / params[fc/bias]
"""
from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import jax
import numpy as np
from flax import traverse_util

from jaxmodels.convert.state_dict import read_state_dict, to_numpy
from jaxmodels.vision.inception import InceptionV3

# Keys of torch state dicts that carry nothing the inference model needs.
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_IGNORED_PREFIXES = ("AuxLogits.",)

# Flax (collection, leaf name) -> torch parameter name, and how the array is laid out.
_LEAF_TO_TORCH = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


class InceptionConversionError(ValueError):
    """The state dict does not fit ``InceptionV3``: missing/unexpected keys or shape mismatches."""


def _strip_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drops a ``module.`` prefix that ``nn.DataParallel`` adds to every key."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _torch_shape(flax_leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape of a Flax leaf of shape ``shape``."""
    if flax_leaf == "kernel" and len(shape) == 4:  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if flax_leaf == "kernel" and len(shape) == 2:  # [in, out] -> [out, in]
        return (shape[1], shape[0])
    return tuple(shape)


def _from_torch_layout(flax_leaf: str, array: np.ndarray) -> np.ndarray:
    if flax_leaf == "kernel" and array.ndim == 4:  # OIHW -> HWIO
        return np.transpose(array, (2, 3, 1, 0))
    if flax_leaf == "kernel" and array.ndim == 2:
        return array.T
    return array


def expected_shapes(num_classes: int | None = 1008) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Flat {(collection, *module path, leaf): shape} of ``InceptionV3(num_classes)``'s variables."""
    return dict(_expected_shapes(num_classes))


@functools.lru_cache(maxsize=8)
def _expected_shapes(num_classes: int | None) -> tuple:
    model = InceptionV3(num_classes=num_classes)
    abstract = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 75, 75, 3), np.float32))
    return tuple((path, tuple(leaf.shape)) for path, leaf in traverse_util.flatten_dict(dict(abstract)).items())


def torch_key(path: tuple[str, ...]) -> str:
    """Flax flat path ``(collection, *modules, leaf)`` -> torch state-dict key."""
    collection, *modules, leaf = path
    return ".".join(modules + [_LEAF_TO_TORCH[(collection, leaf)]])


def params_from_torch(state_dict: Mapping[str, Any], num_classes: int | None | str = "infer") -> dict:
    """Converts a pytorch-fid / torchvision Inception-v3 state dict to ``{"params", "batch_stats"}``.

    ``num_classes="infer"`` takes the head's width from ``fc.weight`` (1008 for the FID weights,
    1000 for torchvision's) and builds no head when the state dict has no ``fc``. Raises
    ``InceptionConversionError`` naming every missing or unexpected key and every shape mismatch.
    Arrays come back as float32 NumPy.
    """
    state = _strip_prefix(state_dict)
    if num_classes == "infer":
        num_classes = int(to_numpy(state["fc.weight"]).shape[0]) if "fc.weight" in state else None
    shapes = expected_shapes(num_classes)

    wanted = {torch_key(path): path for path in shapes}
    missing = sorted(k for k in wanted if k not in state)
    unexpected = sorted(k for k in state if k not in wanted and not k.endswith(_IGNORED_SUFFIXES)
                        and not k.startswith(_IGNORED_PREFIXES))
    mismatched = []
    flat = {}
    for key, path in wanted.items():
        if key not in state:
            continue
        array = to_numpy(state[key])
        expected = _torch_shape(path[-1], shapes[path])
        if tuple(array.shape) != expected:
            mismatched.append(f"{key}: expected shape {expected}, got {tuple(array.shape)}")
            continue
        flat[path] = np.ascontiguousarray(_from_torch_layout(path[-1], array).astype(np.float32))
    if missing or unexpected or mismatched:
        def listing(items, sep=", ", limit=25):
            more = f"{sep}... and {len(items) - limit} more" if len(items) > limit else ""
            return sep.join(items[:limit]) + more

        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {listing(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {listing(mismatched, '; ')}")
        raise InceptionConversionError(
            "The state dict does not match pytorch-fid's FID Inception-v3 "
            f"(num_classes={num_classes}): " + " | ".join(parts))
    return traverse_util.unflatten_dict(flat)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------

def read_torch_state_dict(path: str | os.PathLike) -> Mapping[str, Any]:
    """A state dict from ``.safetensors`` or a torch checkpoint, through ``jaxmodels.convert.state_dict``
    (``torch.load(weights_only=True)``, or the safetensors reader that needs no torch)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} does not exist. Download pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
            "(github.com/mseitzer/pytorch-fid releases, tag fid_weights) and pass its path.")
    return read_state_dict(path)


def load_torch_inception(path: str | os.PathLike, num_classes: int | None | str = "infer") -> dict:
    """Flax variables ``{"params", "batch_stats"}`` for ``InceptionV3`` from a local weights file."""
    return params_from_torch(read_torch_state_dict(path), num_classes=num_classes)
