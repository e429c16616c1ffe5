"""The VQA v2 model around the counter (``jaxmodels.vqa.model``) and its loss."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.vqa.model import GRUCell, QuestionEncoder, VQACounting, apply_attention, fusion, soft_cross_entropy


def test_question_encoder_matches_torch_gru_on_packed_sequences():
    torch = pytest.importorskip("torch")
    vocab, emb, hidden = 20, 6, 5
    encoder = QuestionEncoder(vocab, emb, hidden, dropout_rate=0.0)
    tokens = np.array([[3, 4, 5, 6], [7, 8, 0, 0], [9, 0, 0, 0]], np.int32)
    lengths = np.array([4, 2, 1], np.int32)
    variables = encoder.init(jax.random.PRNGKey(0), tokens, lengths, train=False)
    ours = np.asarray(encoder.apply(variables, tokens, lengths, train=False))

    p = variables["params"]
    embedding = torch.nn.Embedding(vocab, emb)
    gru = torch.nn.GRU(emb, hidden, num_layers=1)
    with torch.no_grad():
        embedding.weight.copy_(torch.tensor(np.asarray(p["embedding"]["embedding"])))
        gru.weight_ih_l0.copy_(torch.tensor(np.asarray(p["gru"]["kernel_ih"]).T))
        gru.weight_hh_l0.copy_(torch.tensor(np.asarray(p["gru"]["kernel_hh"]).T))
        gru.bias_ih_l0.copy_(torch.tensor(np.asarray(p["gru"]["bias_ih"]) + 0.1))
        gru.bias_hh_l0.copy_(torch.tensor(np.asarray(p["gru"]["bias_hh"]) - 0.2))
    variables = jax.tree.map(lambda x: x, variables)
    variables["params"]["gru"]["bias_ih"] = variables["params"]["gru"]["bias_ih"] + 0.1
    variables["params"]["gru"]["bias_hh"] = variables["params"]["gru"]["bias_hh"] - 0.2
    ours = np.asarray(encoder.apply(variables, tokens, lengths, train=False))
    x = torch.tanh(embedding(torch.tensor(tokens, dtype=torch.long)))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True)
    _, h = gru(packed)
    np.testing.assert_allclose(ours, h[0].detach().numpy(), atol=1e-5)


def test_gru_cell_gate_blocks_are_initialised_separately():
    cell = GRUCell(4)
    params = cell.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)), jnp.zeros((1, 3)))["params"]
    assert params["kernel_ih"].shape == (3, 12) and params["kernel_hh"].shape == (4, 12)
    bound = np.sqrt(6.0 / (3 + 4))  # Xavier for one (3 -> 4) gate block, not the (3 -> 12) matrix
    assert np.abs(np.asarray(params["kernel_ih"])).max() <= bound
    assert np.abs(np.asarray(params["kernel_ih"])).max() > np.sqrt(6.0 / (3 + 12))


def test_fusion_attention_and_soft_cross_entropy_by_hand():
    np.testing.assert_allclose(np.asarray(fusion(jnp.array([1.0, -2.0]), jnp.array([3.0, 1.0]))), [-4 + 4, -9 + 0])
    v = jnp.arange(12.0).reshape(1, 3, 4)
    logits = jnp.array([[[0.0, 100.0], [0.0, -100.0], [0.0, -100.0]]])
    out = np.asarray(apply_attention(v, logits))  # glimpse 1: mean over proposals; glimpse 2: proposal 0
    np.testing.assert_allclose(out[0, :4], np.asarray(v[0].mean(0)), rtol=1e-6)
    np.testing.assert_allclose(out[0, 4:], np.asarray(v[0, 0]), atol=1e-5)
    # loss = -sum_a c_a / 10 log p_a, its gradient p * sum(c) / 10 - c / 10
    z = jnp.array([[0.5, -1.0, 2.0]])
    counts = jnp.array([[7.0, 3.0, 0.0]])
    p = np.asarray(jax.nn.softmax(z))
    np.testing.assert_allclose(np.asarray(soft_cross_entropy(z, counts)), -(0.7 * np.log(p[:, 0]) + 0.3 * np.log(p[:, 1])),
                               rtol=1e-6)
    grad = np.asarray(jax.grad(lambda z: soft_cross_entropy(z, counts).sum())(z))
    np.testing.assert_allclose(grad, p * 1.0 - np.asarray(counts) / 10, atol=1e-6)


def _inputs(batch=3, proposals=12, dim=8, length=5, seed=0):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 50, size=(batch, proposals, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, size=(batch, proposals, 2))], -1)
    question = rng.integers(1, 30, size=(batch, length)).astype(np.int32)
    lengths = np.array([length, 3, 1][:batch], np.int32)
    return (rng.normal(size=(batch, proposals, dim)).astype(np.float32), boxes.astype(np.float32), question, lengths)


@pytest.mark.parametrize("count", [True, False])
def test_model_outputs_padding_invariance_and_counter_switch(count):
    model = VQACounting(vocab_size=30, num_answers=7, embedding_features=8, question_features=16,
                        attention_features=8, mid_features=16, count=count)
    features, boxes, question, lengths = _inputs()
    variables = model.init(jax.random.PRNGKey(0), features, boxes, question, lengths)
    assert ("counter" in variables["params"]) == count and ("count_bn" in variables["params"]) == count
    apply = jax.jit(functools.partial(model.apply, variables))
    logits, aux = model.apply(variables, features, boxes, question, lengths, return_aux=True)
    assert logits.shape == (3, 7) and aux["attention_logits"].shape == (3, 12, 2)
    if count:
        assert aux["count"].shape == (3, 11)
    # tokens after a question's length do not matter (a packed sequence ends at its length)
    changed = question.copy()
    changed[1, 3:] = 29
    changed[2, 1:] = 0
    np.testing.assert_allclose(np.asarray(apply(features, boxes, changed, lengths)), np.asarray(logits),
                               atol=1e-6)
    # features are L2-normalised per proposal: scaling them changes nothing
    np.testing.assert_allclose(np.asarray(apply(features * 3.0, boxes, question, lengths)),
                               np.asarray(logits), atol=1e-5)
    # training mode: dropout is active and batch statistics update
    out, updates = model.apply(variables, features, boxes, question, lengths, train=True,
                               rngs={"dropout": jax.random.PRNGKey(1)}, mutable=["batch_stats"])
    assert not np.allclose(np.asarray(out), np.asarray(logits))
    assert not np.allclose(np.asarray(updates["batch_stats"]["bn"]["mean"]), 0.0)
