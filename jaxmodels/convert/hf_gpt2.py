"""Hugging Face ``GPT2LMHeadModel`` / ``GPT2Model`` weights <-> ``jaxmodels.text.gpt.GPT`` parameters.

HF names (with or without the ``transformer.`` prefix; ``openai-community/gpt2`` has none) -> ours:

  wte.weight [vocab, embed]                    wte/embedding
  wpe.weight [n_positions, embed]              wpe/embedding
  h.{i}.ln_1.weight / bias                     h_{i}/ln_1/scale / bias        (ln_2, ln_f likewise)
  h.{i}.attn.c_attn.weight [embed, 3 embed]    h_{i}/attn/{query,key,value}/kernel [embed, heads, head_dim]
  h.{i}.attn.c_attn.bias [3 embed]             h_{i}/attn/{query,key,value}/bias [heads, head_dim]
  h.{i}.attn.c_proj.weight [embed, embed]      h_{i}/attn/out/kernel [heads, head_dim, embed]
  h.{i}.mlp.c_fc / c_proj .weight / bias       h_{i}/mlp/c_fc / c_proj /kernel / bias
  lm_head.weight                               (tied: must equal wte.weight)

GPT-2's ``Conv1D`` stores weights as ``[in, out]``, so nothing is transposed; ``c_attn``'s output
columns are ``[q | k | v]``, each ``heads * head_dim`` head-major (HF's ``_split_heads``). The
causal-mask buffers ``attn.bias`` / ``attn.masked_bias`` of old checkpoints are dropped.

Loading never unpickles: ``.safetensors`` files are read with ``safetensors.numpy``, ``.bin``/``.pt``/``.pth``
with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

import numpy as np

from jaxmodels.convert.state_dict import read_state_dict, to_numpy

CONFIG_NAME = "config.json"

_BUFFERS = re.compile(r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)")
_LN = {"weight": "scale", "bias": "bias"}
_DENSE = {"weight": "kernel", "bias": "bias"}


# --------------------------------------------------------------------------------------------
# files and configs


def load_hf_gpt2_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The tensors of a HF GPT-2 as NumPy arrays: a ``.safetensors`` file, a ``.bin``/``.pt``/``.pth``
    (``torch.load(weights_only=True)``, never arbitrary unpickling), or a model directory holding
    ``model.safetensors`` (else ``pytorch_model.bin``); see ``jaxmodels.convert.state_dict``."""
    return read_state_dict(path)


def config_from_hf_gpt2(hf_config: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """A HF ``GPT2Config`` (dict, ``config.json`` path or model directory) -> our model config dict
    (``gpt_from_config`` keys, ``name="gpt"``). Raises ``ValueError`` for settings whose maths differ."""
    if isinstance(hf_config, (str, os.PathLike)):
        path = os.path.join(hf_config, CONFIG_NAME) if os.path.isdir(hf_config) else hf_config
        with open(path) as f:
            hf_config = json.load(f)
    cfg = hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)
    activation = cfg.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise ValueError(f"config_from_hf_gpt2: activation_function={activation!r}; GPT uses the tanh GELU "
                         "('gelu_new')")
    expected = dict(scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, add_cross_attention=False,
                    tie_word_embeddings=True)
    for key, want in expected.items():
        if cfg.get(key, want) != want:
            raise ValueError(f"config_from_hf_gpt2: {key}={cfg[key]!r}, GPT needs {want!r}")
    width = cfg.get("n_embd", 768)
    dropout = {cfg.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(dropout) > 1:
        raise ValueError(f"config_from_hf_gpt2: resid/embd/attn_pdrop differ ({sorted(dropout)}); GPT has one "
                         "dropout_rate")
    return dict(name="gpt", vocab_size=cfg.get("vocab_size", 50257), n_positions=cfg.get("n_positions", 1024),
                width=width, depth=cfg.get("n_layer", 12), num_heads=cfg.get("n_head", 12),
                mlp_dim=cfg.get("n_inner") or 4 * width, dropout_rate=float(dropout.pop()),
                layer_norm_epsilon=float(cfg.get("layer_norm_epsilon", 1e-5)), dtype="float32")


def _model(config):
    from jaxmodels.text.gpt import GPT, gpt_from_config

    if isinstance(config, GPT):
        return config
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if "n_embd" in config or "n_layer" in config:  # a HF config
        config = config_from_hf_gpt2(config)
    return gpt_from_config(config)


# --------------------------------------------------------------------------------------------
# tensors


def _check_shape(key: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"params_from_hf_gpt2: {key} has shape {tuple(value.shape)}, the model expects "
                         f"{tuple(shape)}")


def params_from_hf_gpt2(state_dict: Mapping[str, Any], config) -> dict[str, Any]:
    """A HF GPT-2 state dict (torch tensors or numpy arrays) -> our (unboxed, float32 numpy) ``params``.

    ``config`` is a ``GPT``, our model config (``gpt_from_config`` keys) or a HF ``GPT2Config``
    dict. Raises ``ValueError`` naming missing or unexpected keys and shape mismatches, and if
    ``lm_head.weight`` is present but differs from ``wte.weight`` (the head must be tied).
    """
    model = _model(config)
    width, heads = model.width, model.num_heads
    head_dim = width // heads
    mlp_dim = model.mlp_dim or 4 * width
    state = {}
    lm_head = None
    for key, value in state_dict.items():
        if _BUFFERS.fullmatch(key):
            continue
        if key == "lm_head.weight":
            lm_head = value
            continue
        state[key.removeprefix("transformer.")] = value

    expected: dict[str, tuple[int, ...]] = {
        "wte.weight": (model.vocab_size, width), "wpe.weight": (model.n_positions, width),
        "ln_f.weight": (width,), "ln_f.bias": (width,)}
    for i in range(model.depth):
        expected.update({
            f"h.{i}.ln_1.weight": (width,), f"h.{i}.ln_1.bias": (width,),
            f"h.{i}.attn.c_attn.weight": (width, 3 * width), f"h.{i}.attn.c_attn.bias": (3 * width,),
            f"h.{i}.attn.c_proj.weight": (width, width), f"h.{i}.attn.c_proj.bias": (width,),
            f"h.{i}.ln_2.weight": (width,), f"h.{i}.ln_2.bias": (width,),
            f"h.{i}.mlp.c_fc.weight": (width, mlp_dim), f"h.{i}.mlp.c_fc.bias": (mlp_dim,),
            f"h.{i}.mlp.c_proj.weight": (mlp_dim, width), f"h.{i}.mlp.c_proj.bias": (width,)})
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"params_from_hf_gpt2: state dict does not match a GPT-2 with depth={model.depth}: "
                         f"missing {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
                         f"unexpected {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
    arrays = {}
    for key, shape in expected.items():
        arrays[key] = to_numpy(state[key], np.float32)
        _check_shape(key, arrays[key], shape)
    if lm_head is not None:
        head = to_numpy(lm_head, np.float32)
        _check_shape("lm_head.weight", head, expected["wte.weight"])
        if not np.array_equal(head, arrays["wte.weight"]):
            raise ValueError("params_from_hf_gpt2: lm_head.weight differs from wte.weight; GPT ties its LM head "
                             "to the token embedding")

    def ln(prefix):
        return {ours: arrays[f"{prefix}.{theirs}"] for theirs, ours in _LN.items()}

    def dense(prefix):
        return {ours: arrays[f"{prefix}.{theirs}"] for theirs, ours in _DENSE.items()}

    params: dict[str, Any] = {"wte": {"embedding": arrays["wte.weight"]}, "wpe": {"embedding": arrays["wpe.weight"]},
                              "ln_f": ln("ln_f")}
    for i in range(model.depth):
        qkv_kernel = arrays[f"h.{i}.attn.c_attn.weight"].reshape(width, 3, heads, head_dim)
        qkv_bias = arrays[f"h.{i}.attn.c_attn.bias"].reshape(3, heads, head_dim)
        attn = {name: {"kernel": qkv_kernel[:, j], "bias": qkv_bias[j]}
                for j, name in enumerate(("query", "key", "value"))}
        attn["out"] = {"kernel": arrays[f"h.{i}.attn.c_proj.weight"].reshape(heads, head_dim, width),
                       "bias": arrays[f"h.{i}.attn.c_proj.bias"]}
        params[f"h_{i}"] = {"ln_1": ln(f"h.{i}.ln_1"), "attn": attn, "ln_2": ln(f"h.{i}.ln_2"),
                            "mlp": {"c_fc": dense(f"h.{i}.mlp.c_fc"), "c_proj": dense(f"h.{i}.mlp.c_proj")}}
    return _contiguous(params)


def _contiguous(tree):
    if isinstance(tree, Mapping):
        return {key: _contiguous(value) for key, value in tree.items()}
    return np.ascontiguousarray(tree, dtype=np.float32)


def hf_gpt2_from_params(params: Mapping[str, Any], *, prefix: str = "transformer.", lm_head: bool = True
                        ) -> dict[str, np.ndarray]:
    """Our ``params`` (boxed or not) -> a HF ``GPT2LMHeadModel`` state dict of float32 numpy arrays
    (``prefix=""`` and ``lm_head=False`` for a bare ``GPT2Model``)."""
    import flax.linen as nn
    import jax

    p = jax.tree.map(lambda a: np.asarray(a, np.float32), jax.device_get(nn.unbox(params)))
    depth = sum(1 for name in p if re.fullmatch(r"h_\d+", name))
    state = {"wte.weight": p["wte"]["embedding"], "wpe.weight": p["wpe"]["embedding"],
             "ln_f.weight": p["ln_f"]["scale"], "ln_f.bias": p["ln_f"]["bias"]}
    for i in range(depth):
        block = p[f"h_{i}"]
        attn = block["attn"]
        width = attn["query"]["kernel"].shape[0]
        state[f"h.{i}.attn.c_attn.weight"] = np.concatenate(
            [attn[name]["kernel"].reshape(width, -1) for name in ("query", "key", "value")], axis=1)
        state[f"h.{i}.attn.c_attn.bias"] = np.concatenate(
            [attn[name]["bias"].reshape(-1) for name in ("query", "key", "value")])
        state[f"h.{i}.attn.c_proj.weight"] = attn["out"]["kernel"].reshape(-1, width)
        state[f"h.{i}.attn.c_proj.bias"] = attn["out"]["bias"]
        for ln_name in ("ln_1", "ln_2"):
            state[f"h.{i}.{ln_name}.weight"] = block[ln_name]["scale"]
            state[f"h.{i}.{ln_name}.bias"] = block[ln_name]["bias"]
        for dense_name in ("c_fc", "c_proj"):
            state[f"h.{i}.mlp.{dense_name}.weight"] = block["mlp"][dense_name]["kernel"]
            state[f"h.{i}.mlp.{dense_name}.bias"] = block["mlp"][dense_name]["bias"]
    state = {prefix + key: np.ascontiguousarray(value) for key, value in state.items()}
    if lm_head:
        state["lm_head.weight"] = state[prefix + "wte.weight"]
    return state


def load_hf_gpt2(path: str | os.PathLike):
    """A HF GPT-2 model directory (``config.json`` + weights) -> ``(GPT module, params)``."""
    from jaxmodels.text.gpt import gpt_from_config

    model = gpt_from_config(config_from_hf_gpt2(path))
    return model, params_from_hf_gpt2(load_hf_gpt2_state_dict(path), model)
