"""Hugging Face BERT weights (``BertModel``, ``BertForPreTraining``, ``BertForMaskedLM``, the fine-tuning
heads) <-> ``jaxmodels.text.bert.Bert`` parameters.

Works for the Chinese BERT-wwm family (``hfl/chinese-bert-wwm``, ``-bert-wwm-ext``,
``-roberta-wwm-ext``, ``-roberta-wwm-ext-large``: all BERT architecture) and Google's
``bert-base-chinese``. Module mapping (HF -> ours; ``Linear`` weights are ``[out, in]`` -> ``[in, out]``;
LayerNorm ``weight``/``bias`` (or old ``gamma``/``beta``) -> ``scale``/``bias``)::

  [bert.]embeddings.{word,position,token_type}_embeddings  -> bert/embeddings/*/embedding
  [bert.]embeddings.LayerNorm                              -> bert/embeddings/LayerNorm
  [bert.]encoder.layer.i.attention.self.{query,key,value}  -> bert/encoder/layer_i/attention/{query,key,value}
                                                              ([E, E] -> [E, heads, head_dim])
  [bert.]encoder.layer.i.attention.output.dense            -> .../attention/out  ([E, E] -> [heads, head_dim, E])
  [bert.]encoder.layer.i.attention.output.LayerNorm        -> .../attention_norm
  [bert.]encoder.layer.i.intermediate.dense                -> .../mlp/Dense_0
  [bert.]encoder.layer.i.output.dense                      -> .../mlp/Dense_1
  [bert.]encoder.layer.i.output.LayerNorm                  -> .../output_norm
  [bert.]pooler.dense                                      -> bert/pooler
  cls.predictions.transform.dense / .LayerNorm             -> cls_predictions/transform / transform_norm
  cls.predictions.bias                                     -> cls_predictions/output_bias
  cls.predictions.decoder.weight                           -> (tied to word_embeddings; checked, not stored)
  cls.seq_relationship                                     -> cls_seq_relationship
  classifier / qa_outputs                                  -> classifier

Buffers (``embeddings.position_ids``) are dropped. ``hf_bert_from_params`` is the inverse (an HF
``BertForPreTraining``-style state dict), so models trained here can be used from PyTorch.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from jaxmodels.convert.state_dict import read_json, read_state_dict, to_numpy
from jaxmodels.text.bert import Bert

_LAYER_PARTS = {
    "attention.self.query": "attention/query", "attention.self.key": "attention/key",
    "attention.self.value": "attention/value", "attention.output.dense": "attention/out",
    "attention.output.LayerNorm": "attention_norm", "intermediate.dense": "mlp/Dense_0",
    "output.dense": "mlp/Dense_1", "output.LayerNorm": "output_norm",
}
_TOP = {
    "embeddings.word_embeddings": "bert/embeddings/word_embeddings",
    "embeddings.position_embeddings": "bert/embeddings/position_embeddings",
    "embeddings.token_type_embeddings": "bert/embeddings/token_type_embeddings",
    "embeddings.LayerNorm": "bert/embeddings/LayerNorm",
    "pooler.dense": "bert/pooler",
}
_HEADS = {
    "cls.predictions.transform.dense": "cls_predictions/transform",
    "cls.predictions.transform.LayerNorm": "cls_predictions/transform_norm",
    "cls.seq_relationship": "cls_seq_relationship",
    "classifier": "classifier",
    "qa_outputs": "classifier",
}
_IGNORED = re.compile(r"(bert\.)?embeddings\.position_ids|cls\.predictions\.decoder\.bias")


class BertConversionError(ValueError):
    """A state dict that does not fit the model; the message names the key and shapes."""


def _our_module(module: str) -> str | None:
    if module in _HEADS:
        return _HEADS[module]
    module = module[len("bert."):] if module.startswith("bert.") else module
    if module in _TOP:
        return _TOP[module]
    match = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", module)
    if match and match.group(2) in _LAYER_PARTS:
        return f"bert/encoder/layer_{match.group(1)}/{_LAYER_PARTS[match.group(2)]}"
    return None


def _leaf(module_path: str, hf_leaf: str) -> str:
    if module_path.endswith("_embeddings"):
        return "embedding"
    if hf_leaf in ("gamma", "beta"):  # TF-era names in some PyTorch checkpoints
        return "scale" if hf_leaf == "gamma" else "bias"
    is_norm = module_path.endswith(("LayerNorm", "_norm"))
    if hf_leaf == "weight":
        return "scale" if is_norm else "kernel"
    return hf_leaf


def _to_ours(path: str, leaf: str, value: np.ndarray, num_heads: int) -> np.ndarray:
    if leaf == "embedding" or leaf == "scale" or (leaf == "bias" and not path.endswith(("query", "key", "value"))):
        return value
    if path.endswith(("attention/query", "attention/key", "attention/value")):
        if leaf == "bias":
            return value.reshape(num_heads, -1)
        return value.T.reshape(value.shape[1], num_heads, -1)  # [E_in, heads, head_dim]
    if path.endswith("attention/out"):
        return value.T.reshape(num_heads, -1, value.shape[0])  # [heads, head_dim, E_out]
    return value.T  # Linear [out, in] -> Dense [in, out]


def params_from_hf_bert(state_dict: Mapping[str, Any], num_heads: int) -> dict[str, Any]:
    """Our ``Bert`` ``params`` from a Hugging Face BERT state dict (any head; see the module doc).

    ``num_heads`` is needed to split the q/k/v matrices (``config.num_attention_heads``). Unknown
    keys raise ``BertConversionError`` naming them; the tied MLM decoder must equal the word
    embeddings.
    """
    flat: dict[tuple[str, ...], np.ndarray] = {}
    unknown = []
    for key, value in state_dict.items():
        if _IGNORED.fullmatch(key) or key == "cls.predictions.decoder.weight":
            continue
        module, _, hf_leaf = key.rpartition(".")
        if module == "cls.predictions" and hf_leaf == "bias":
            flat[("cls_predictions", "output_bias")] = to_numpy(value)
            continue
        ours = _our_module(module)
        if ours is None:
            unknown.append(key)
            continue
        leaf = _leaf(ours, hf_leaf)
        flat[tuple(ours.split("/")) + (leaf,)] = _to_ours(ours, leaf, to_numpy(value), num_heads)
    if unknown:
        raise BertConversionError(f"params_from_hf_bert: unexpected key(s) {unknown[:8]}"
                                  f"{' ...' if len(unknown) > 8 else ''}")
    decoder = state_dict.get("cls.predictions.decoder.weight")
    words = flat.get(("bert", "embeddings", "word_embeddings", "embedding"))
    if decoder is not None and words is not None and not np.allclose(to_numpy(decoder), words):
        raise BertConversionError("params_from_hf_bert: cls.predictions.decoder.weight differs from "
                                  "embeddings.word_embeddings.weight; our MLM decoder is tied to the embeddings")
    params: dict[str, Any] = {}
    for path, value in flat.items():
        node = params
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return params


def _hf_module(path: tuple[str, ...]) -> str:
    joined = "/".join(path)
    for table, prefix in ((_TOP, "bert."), (_HEADS, "")):
        for hf, ours in table.items():
            if ours == joined and hf != "qa_outputs":
                return prefix + hf
    match = re.fullmatch(r"bert/encoder/layer_(\d+)/(.+)", joined)
    if match:
        for hf, ours in _LAYER_PARTS.items():
            if ours == match.group(2):
                return f"bert.encoder.layer.{match.group(1)}.{hf}"
    raise BertConversionError(f"hf_bert_from_params: no Hugging Face name for {joined}")


def hf_bert_from_params(params: Mapping[str, Any], *, qa_head: bool = False) -> dict[str, np.ndarray]:
    """The inverse of ``params_from_hf_bert``: an HF state dict (``bert.`` prefixed, as
    ``BertForPreTraining``/``BertForSequenceClassification`` save; ``qa_head`` names the
    classifier ``qa_outputs`` as ``BertForQuestionAnswering`` does)."""
    from flax import traverse_util
    import flax.linen as nn

    flat = traverse_util.flatten_dict(nn.unbox(params))
    out: dict[str, np.ndarray] = {}
    for path, value in flat.items():
        value = np.asarray(value, dtype=np.float32)
        *module, leaf = path
        if tuple(module) == ("cls_predictions",) and leaf == "output_bias":
            out["cls.predictions.bias"] = value
            continue
        hf = _hf_module(tuple(module))
        if qa_head and hf == "classifier":
            hf = "qa_outputs"
        if leaf == "embedding":
            out[f"{hf}.weight"] = value
        elif leaf == "scale":
            out[f"{hf}.weight"] = value
        elif leaf == "bias":
            out[f"{hf}.bias"] = value.reshape(-1)
        elif module[-1] == "out":
            out[f"{hf}.weight"] = value.reshape(-1, value.shape[-1]).T
        elif module[-1] in ("query", "key", "value"):
            out[f"{hf}.weight"] = value.reshape(value.shape[0], -1).T
        else:
            out[f"{hf}.weight"] = value.T
    if "cls.predictions.bias" in out:
        out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
    return out


def bert_config_from_hf(hf_config: Mapping[str, Any] | str | os.PathLike, **overrides) -> dict[str, Any]:
    """Our model-config fields from an HF ``config.json`` (dict, file or model directory)."""
    if not isinstance(hf_config, Mapping):
        path = os.fspath(hf_config)
        hf_config = read_json(os.path.join(path, "config.json") if os.path.isdir(path) else path)
    act = hf_config.get("hidden_act", "gelu")
    if act != "gelu":
        raise BertConversionError(f"bert_config_from_hf: hidden_act={act!r}; only the erf GELU ('gelu') of "
                                  "BERT is implemented")
    cfg = dict(
        vocab_size=hf_config["vocab_size"], hidden_size=hf_config["hidden_size"],
        num_layers=hf_config["num_hidden_layers"], num_heads=hf_config["num_attention_heads"],
        intermediate_size=hf_config["intermediate_size"],
        max_position_embeddings=hf_config.get("max_position_embeddings", 512),
        type_vocab_size=hf_config.get("type_vocab_size", 2),
        dropout_rate=hf_config.get("hidden_dropout_prob", 0.1),
        attention_dropout_rate=hf_config.get("attention_probs_dropout_prob", 0.1),
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
        initializer_range=hf_config.get("initializer_range", 0.02))
    cfg.update(overrides)
    return cfg


def load_hf_bert(path: str | os.PathLike, *, head: str = "pretraining", num_labels: int = 2,
                 **overrides) -> tuple[Bert, dict[str, Any]]:
    """``(model, variables)`` from an HF BERT directory (``config.json`` + ``model.safetensors`` or
    ``pytorch_model.bin``), e.g. a downloaded ``hfl/chinese-bert-wwm-ext``.

    Heads missing from the checkpoint (a fine-tuning classifier) are initialised fresh.
    """
    import flax.linen as nn
    import jax

    cfg = bert_config_from_hf(path, **overrides)
    model = Bert(head=head, num_labels=num_labels, **cfg)
    converted = params_from_hf_bert(read_state_dict(path), cfg["num_heads"])
    fresh = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"])
    return model, {"params": merge_params(fresh, converted)}


def merge_params(fresh: Mapping[str, Any], converted: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``fresh``'s tree with every leaf that ``converted`` has replaced (shapes must agree); leaves of
    ``converted`` that ``fresh`` lacks (e.g. an MLM head when fine-tuning) are dropped."""
    out = {}
    for key, value in fresh.items():
        name = f"{where}/{key}" if where else key
        if key not in converted:
            out[key] = value
        elif isinstance(value, Mapping):
            out[key] = merge_params(value, converted[key], name)
        else:
            new = np.asarray(converted[key])
            if new.shape != tuple(value.shape):
                raise BertConversionError(f"{name}: checkpoint shape {new.shape} != model shape {tuple(value.shape)}")
            out[key] = jnp.asarray(new, dtype=value.dtype)
    return out
