"""Initial BERT weights and vocab for continued pretraining and fine-tuning (``config.init``).

  init.hf_path    a Hugging Face BERT directory (``config.json``, ``model.safetensors`` or
                  ``pytorch_model.bin``, ``vocab.txt``), e.g. a downloaded ``hfl/chinese-bert-wwm-ext``
  init.workdir    the run directory of ``train/bert_wwm_pretrain.py`` (its latest checkpoint and ``vocab.txt``)

Only the weights both models have are copied (the encoder, and the MLM head when continuing
pretraining); a fine-tuning classifier starts fresh, as in Devlin et al. 2019, section 4.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import flax.linen as nn
import jax

from jaxmodels.convert.hf_bert import bert_config_from_hf, merge_params, params_from_hf_bert
from jaxmodels.convert.state_dict import read_json, read_state_dict

MODEL_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size")


def init_source(init_cfg) -> str | None:
    """The directory the initial weights come from, or None (random initialisation)."""
    if init_cfg is None:
        return None
    hf, workdir = init_cfg.get("hf_path"), init_cfg.get("workdir")
    if hf and workdir:
        raise ValueError("config.init: set hf_path or workdir, not both")
    return hf or workdir or None


def vocab_path(init_cfg) -> str | None:
    """``vocab.txt`` beside the initial weights, if there are any."""
    source = init_source(init_cfg)
    if source is None:
        return None
    path = os.path.join(source, "vocab.txt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"config.init: {source} has no vocab.txt (the tokenizer the weights were "
                                "trained with); set config.data.vocab_path")
    return path


def architecture(init_cfg) -> dict[str, Any] | None:
    """The size fields of the initial model, to override ``config.model`` with."""
    if init_cfg is None:
        return None
    if init_cfg.get("hf_path"):
        cfg = bert_config_from_hf(init_cfg.hf_path)
        return {k: cfg[k] for k in MODEL_FIELDS}
    if init_cfg.get("workdir"):
        path = os.path.join(init_cfg.workdir, "config.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"config.init.workdir: {path} does not exist (not a jaxmodels run directory)")
        model_cfg = read_json(path).get("model", {})
        return {k: model_cfg[k] for k in MODEL_FIELDS if model_cfg.get(k) is not None}
    return None


def load_params(init_cfg, num_heads: int) -> dict[str, Any] | None:
    """The initial weights as a params tree (host numpy arrays), or None."""
    if init_cfg is None:
        return None
    if init_cfg.get("hf_path"):
        return params_from_hf_bert(read_state_dict(init_cfg.hf_path), num_heads)
    if init_cfg.get("workdir"):
        import jaxmodels

        _, variables, _ = jaxmodels.load(init_cfg.workdir)
        return jax.device_get(nn.unbox(variables["params"]))
    return None


def warm_start(init_cfg, num_heads: int) -> Callable[[dict], dict] | None:
    """An ``Experiment.warm_start`` that copies the initial weights into ``state["params"]``."""
    if init_source(init_cfg) is None:
        return None

    def apply(state: dict) -> dict:
        loaded = load_params(init_cfg, num_heads)
        fresh = jax.device_get(state["params"])
        return {**state, "params": merge_params(fresh, loaded)}

    return apply


def resolve_config(config):
    """An unlocked copy of ``config`` whose model sizes and vocab follow ``config.init`` when set."""
    import ml_collections

    config = ml_collections.ConfigDict(config.to_dict())
    init_cfg = config.get("init")
    arch = architecture(init_cfg)
    if arch:
        for key, value in arch.items():
            config.model[key] = value
        if not config.data.get("vocab_path"):
            config.data.vocab_path = vocab_path(init_cfg)
    return config
