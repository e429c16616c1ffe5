"""Hugging Face GPT-2 -> jaxmodels GPT: logits parity (safetensors and .bin), padding, greedy generation, scoring."""
import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.convert.hf_gpt2 import (
    config_from_hf_gpt2,
    hf_gpt2_from_params,
    load_hf_gpt2,
    load_hf_gpt2_state_dict,
    params_from_hf_gpt2,
)
from jaxmodels.text import generation as g
from jaxmodels.text.gpt import gpt_from_config

sys.modules.setdefault("torchvision", None)  # a broken CUDA torchvision wheel would break transformers' import
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, EOS = 97, 96
HF_CONFIG = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=EOS,
                 eos_token_id=EOS, initializer_range=0.2)


@functools.partial(jax.jit, static_argnums=0)
def forward(model, params, ids, mask, positions):
    return model.apply({"params": params}, ids, attention_mask=mask, positions=positions)


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """A random GPT2LMHeadModel saved with save_pretrained (safetensors) and as a torch.save state-dict .bin."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**HF_CONFIG)).eval()
    directory = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(directory)
    bin_path = directory / "weights.bin"
    torch.save(model.state_dict(), bin_path)
    return model, directory, bin_path


@pytest.fixture(scope="module")
def ours(hf):
    _, directory, _ = hf
    return load_hf_gpt2(directory)


def hf_logits(model, ids, mask=None, positions=None):
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(np.asarray(ids), dtype=torch.long),
                    attention_mask=None if mask is None else torch.as_tensor(np.asarray(mask), dtype=torch.long),
                    position_ids=None if positions is None else torch.as_tensor(np.asarray(positions),
                                                                                dtype=torch.long))
    return out.logits.numpy()


def test_config_from_hf_gpt2(hf):
    model, directory, _ = hf
    cfg = config_from_hf_gpt2(directory)
    assert cfg == dict(name="gpt", vocab_size=VOCAB, n_positions=64, width=32, depth=2, num_heads=4, mlp_dim=128,
                       dropout_rate=0.1, layer_norm_epsilon=1e-5, dtype="float32")
    assert config_from_hf_gpt2(model.config) == cfg
    with pytest.raises(ValueError, match="activation_function"):
        config_from_hf_gpt2({**HF_CONFIG, "activation_function": "relu"})
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        config_from_hf_gpt2({**HF_CONFIG, "scale_attn_by_inverse_layer_idx": True})


@pytest.mark.parametrize("source", ["safetensors", "bin"])
def test_logits_match_transformers(hf, source):
    model, directory, bin_path = hf
    path = directory / "model.safetensors" if source == "safetensors" else bin_path
    state = load_hf_gpt2_state_dict(path)
    assert ("lm_head.weight" in state) == (source == "bin")  # save_pretrained drops the tied head
    ours = gpt_from_config(config_from_hf_gpt2(directory))
    params = params_from_hf_gpt2(state, ours)
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, 12))
    expected = hf_logits(model, ids)
    got = forward(ours, params, jnp.asarray(ids), None, None)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 1.0  # not a trivially small comparison


def test_left_padded_logits_match_transformers(hf, ours):
    model, _, _ = hf
    gpt, params = ours
    ids = np.random.default_rng(1).integers(0, VOCAB, (3, 10))
    mask = np.ones((3, 10), np.int64)
    mask[1, :4] = 0
    mask[2, :9] = 0
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    expected = hf_logits(model, ids, mask, positions)
    real = mask.astype(bool)
    got = np.asarray(forward(gpt, params, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(positions)))
    np.testing.assert_allclose(got[real], expected[real], atol=1e-4, rtol=0)
    default = np.asarray(forward(gpt, params, jnp.asarray(ids), jnp.asarray(mask), None))  # default positions
    np.testing.assert_allclose(default[real], expected[real], atol=1e-4, rtol=0)


def test_greedy_generation_matches_transformers_generate(hf, ours):
    model, _, _ = hf
    gpt, params = ours
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    ids, mask = g.left_pad(prompts, pad_id=0)

    def hf_generate(eos):
        with torch.no_grad():
            out = model.generate(torch.as_tensor(ids, dtype=torch.long),
                                 attention_mask=torch.as_tensor(mask, dtype=torch.long), max_new_tokens=12,
                                 do_sample=False, pad_token_id=0, eos_token_id=eos)
        return out.numpy()[:, ids.shape[1]:]

    expected = hf_generate(EOS)
    got = g.generate(gpt, params, ids, mask, max_new_tokens=12, temperature=0.0, stop_tokens=(EOS,), pad_id=0)
    np.testing.assert_array_equal(got["tokens"], expected)
    assert len(set(expected.ravel().tolist())) > 3  # varied output, not one repeated token
    # Stop on a token the first row emits at step 3: HF pads the finished rows with pad_token_id, as we do.
    stop = int(expected[0, 3])
    expected = hf_generate(stop)
    got = g.generate(gpt, params, ids, mask, max_new_tokens=12, temperature=0.0, stop_tokens=(stop,), pad_id=0)
    tokens = np.asarray(got["tokens"])
    np.testing.assert_array_equal(tokens[:, :expected.shape[1]], expected)
    assert np.all(tokens[:, expected.shape[1]:] == 0) and int(got["lengths"][0]) <= 4


def test_scores_match_transformers_log_softmax(hf, ours):
    model, _, _ = hf
    gpt, params = ours
    context, continuation = [[3, 4, 5, 6]], [[7, 8, 9]]
    total, count, per_token = g.score_continuations(gpt, params, np.array(context), np.array(continuation))
    log_probs = torch.log_softmax(torch.as_tensor(hf_logits(model, np.array([context[0] + continuation[0]]))), -1)
    expected = [float(log_probs[0, 3 + i, token]) for i, token in enumerate(continuation[0])]
    np.testing.assert_allclose(per_token[0], expected, atol=1e-4)
    np.testing.assert_allclose(total[0], sum(expected), atol=1e-4)
    assert int(count[0]) == 3


def test_round_trip_to_transformers_and_key_variants(hf, ours):
    model, _, _ = hf
    gpt, params = ours
    state = hf_gpt2_from_params(params)
    reference = {k: v.numpy() for k, v in model.state_dict().items()}
    assert set(state) == set(reference)
    for key, value in state.items():
        np.testing.assert_array_equal(value, reference[key], err_msg=key)
    # A bare GPT2Model dict without the ``transformer.`` prefix and with the old causal-mask buffers.
    bare = hf_gpt2_from_params(params, prefix="", lm_head=False)
    bare["h.0.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))
    bare["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
    again = params_from_hf_gpt2(bare, gpt)
    jax.tree.map(np.testing.assert_array_equal, again, params)


def test_clear_errors_for_bad_state_dicts(hf, ours, tmp_path):
    gpt, params = ours
    state = hf_gpt2_from_params(params)
    missing = {k: v for k, v in state.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(ValueError, match=r"missing \['h.1.mlp.c_fc.bias'\]"):
        params_from_hf_gpt2(missing, gpt)
    with pytest.raises(ValueError, match=r"unexpected \['h.2.ln_1.weight'\]"):
        params_from_hf_gpt2({**state, "transformer.h.2.ln_1.weight": np.ones(32)}, gpt)
    with pytest.raises(ValueError, match=r"h.0.attn.c_attn.weight has shape \(32, 48\).*\(32, 96\)"):
        params_from_hf_gpt2({**state, "transformer.h.0.attn.c_attn.weight": np.zeros((32, 48))}, gpt)
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        params_from_hf_gpt2({**state, "lm_head.weight": state["lm_head.weight"] + 1}, gpt)
    with pytest.raises(FileNotFoundError, match="weights.npz"):
        load_hf_gpt2_state_dict(tmp_path / "weights.npz")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="weights.npz: unknown weights format"):
        load_hf_gpt2_state_dict(tmp_path / "weights.npz")


def test_hf_config_dict_is_accepted_as_config(hf):
    _, directory, bin_path = hf
    with open(directory / "config.json") as f:
        hf_config = json.load(f)
    params = params_from_hf_gpt2(load_hf_gpt2_state_dict(bin_path), hf_config)
    assert params["h_1"]["attn"]["query"]["kernel"].shape == (32, 4, 8)
