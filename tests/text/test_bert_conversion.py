"""Hugging Face BERT -> our Bert: equal outputs (max abs diff <= 1e-4) on randomly initialised
``transformers`` models saved to disk (safetensors and ``torch.save`` state dicts); no downloads."""
import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.modules.setdefault("torchvision", None)  # the installed CUDA torchvision cannot load over CPU torch
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxmodels.convert.hf_bert import (  # noqa: E402
    BertConversionError, bert_config_from_hf, hf_bert_from_params, load_hf_bert, params_from_hf_bert)
from jaxmodels.convert.state_dict import read_state_dict  # noqa: E402
from jaxmodels.text.bert import Bert, count_params, bert_from_config  # noqa: E402

CFG = dict(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
           max_position_embeddings=40, type_vocab_size=2, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)


def _inputs(batch=3, length=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, CFG["vocab_size"], size=(batch, length))
    types = np.zeros_like(ids)
    types[:, length // 2:] = 1
    mask = np.ones_like(ids)
    mask[1, 9:] = 0  # padded examples
    mask[2, 5:] = 0
    return ids, types, mask


def _torch_model(cls, seed=0, **extra):
    torch.manual_seed(seed)
    model = cls(transformers.BertConfig(**CFG, **extra)).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def _ours(head, **kw):
    cfg = bert_config_from_hf(CFG)
    return Bert(head=head, **cfg, **kw)


def _t(x):
    return torch.as_tensor(np.asarray(x))


def test_pretraining_model_matches_transformers_from_safetensors_and_bin(tmp_path):
    model = _torch_model(transformers.BertForPreTraining)
    model.save_pretrained(tmp_path / "hf")  # config.json + model.safetensors
    torch.save(model.state_dict(), tmp_path / "weights.bin")
    ids, types, mask = _inputs()
    with torch.no_grad():
        ref = model(input_ids=_t(ids), token_type_ids=_t(types), attention_mask=_t(mask))
    ref_mlm = ref.prediction_logits.numpy()
    ref_nsp = ref.seq_relationship_logits.numpy()

    ours = _ours("pretraining")
    for source in (tmp_path / "hf", tmp_path / "weights.bin"):
        params = params_from_hf_bert(read_state_dict(source), CFG["num_attention_heads"])
        out = ours.apply({"params": params}, jnp.asarray(ids), jnp.asarray(types), jnp.asarray(mask))
        valid = mask.astype(bool)
        assert np.max(np.abs(np.asarray(out["mlm_logits"])[valid] - ref_mlm[valid])) <= 1e-4
        assert np.max(np.abs(np.asarray(out["nsp_logits"]) - ref_nsp)) <= 1e-4

    # Gathered positions (the training path) equal the full logits at those positions.
    positions = np.array([[1, 3, 0], [2, 8, 0], [4, 1, 0]])
    out = ours.apply({"params": params}, jnp.asarray(ids), jnp.asarray(types), jnp.asarray(mask),
                     jnp.asarray(positions))
    gathered = np.take_along_axis(ref_mlm, positions[..., None], axis=1)
    assert np.max(np.abs(np.asarray(out["mlm_logits"]) - gathered)) <= 1e-4


def test_bert_model_hidden_states_and_load_hf_bert(tmp_path):
    model = _torch_model(transformers.BertModel)
    model.save_pretrained(tmp_path / "hf")
    ids, types, mask = _inputs(seed=1)
    with torch.no_grad():
        ref = model(input_ids=_t(ids), token_type_ids=_t(types), attention_mask=_t(mask))
    ours, variables = load_hf_bert(tmp_path / "hf", head="none")
    out = ours.apply(variables, jnp.asarray(ids), jnp.asarray(types), jnp.asarray(mask))
    valid = mask.astype(bool)
    assert np.max(np.abs(np.asarray(out["sequence_output"])[valid] - ref.last_hidden_state.numpy()[valid])) <= 1e-4
    assert np.max(np.abs(np.asarray(out["pooled_output"]) - ref.pooler_output.numpy())) <= 1e-4


@pytest.mark.parametrize("cls,head", [("BertForSequenceClassification", "sequence_classification"),
                                      ("BertForTokenClassification", "token_classification"),
                                      ("BertForQuestionAnswering", "question_answering")])
def test_fine_tuning_heads_match(cls, head):
    model = _torch_model(getattr(transformers, cls), num_labels=3 if head != "question_answering" else 2)
    ids, types, mask = _inputs(seed=2)
    with torch.no_grad():
        ref = model(input_ids=_t(ids), token_type_ids=_t(types), attention_mask=_t(mask))
    params = params_from_hf_bert(model.state_dict(), CFG["num_attention_heads"])
    out = _ours(head, num_labels=3).apply({"params": params}, jnp.asarray(ids), jnp.asarray(types),
                                          jnp.asarray(mask))
    valid = mask.astype(bool)
    if head == "question_answering":
        assert np.max(np.abs(np.asarray(out["start_logits"])[valid] - ref.start_logits.numpy()[valid])) <= 1e-4
        assert np.max(np.abs(np.asarray(out["end_logits"])[valid] - ref.end_logits.numpy()[valid])) <= 1e-4
    elif head == "token_classification":
        assert np.max(np.abs(np.asarray(out["logits"])[valid] - ref.logits.numpy()[valid])) <= 1e-4
    else:
        assert np.max(np.abs(np.asarray(out["logits"]) - ref.logits.numpy())) <= 1e-4
    # And back: our params -> an HF state dict that reproduces the torch model's tensors.
    back = hf_bert_from_params(params, qa_head=head == "question_answering")
    for key, value in model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        np.testing.assert_allclose(back[key], value.numpy(), atol=0, rtol=0, err_msg=key)


def test_masked_lm_roundtrip_into_transformers(tmp_path):
    """Params trained here, exported with hf_bert_from_params, load into BertForMaskedLM unchanged."""
    ours = _ours("mlm")
    ids, types, mask = _inputs(seed=3)
    params = ours.init(jax.random.key(3), jnp.asarray(ids))["params"]
    import flax.linen as nn
    params = nn.unbox(params)
    state = {k: torch.as_tensor(np.array(v)) for k, v in hf_bert_from_params(params).items()}
    model = transformers.BertForMaskedLM(transformers.BertConfig(**CFG)).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not [k for k in missing if not k.endswith("position_ids")], missing
    with torch.no_grad():
        ref = model(input_ids=_t(ids), token_type_ids=_t(types), attention_mask=_t(mask)).logits.numpy()
    out = np.asarray(ours.apply({"params": params}, jnp.asarray(ids), jnp.asarray(types), jnp.asarray(mask))["mlm_logits"])
    valid = mask.astype(bool)
    assert np.max(np.abs(out[valid] - ref[valid])) <= 1e-4


def test_conversion_errors_name_the_key(tmp_path):
    model = _torch_model(transformers.BertModel)
    state = dict(model.state_dict())
    state["encoder.layer.0.surprise.weight"] = torch.zeros(2)
    with pytest.raises(BertConversionError, match="encoder.layer.0.surprise.weight"):
        params_from_hf_bert(state, 4)
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({**CFG, "hidden_act": "relu"}))
    with pytest.raises(BertConversionError, match="hidden_act"):
        bert_config_from_hf(bad)


def test_chinese_bert_base_parameter_count():
    """bert-base-chinese / chinese-bert-wwm: 102,267,648 parameters in BertModel (vocab 21,128)."""
    assert count_params(bert_from_config(dict(variant="base", vocab_size=21128, head="none"))) == 102_267_648
