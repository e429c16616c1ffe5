"""MultiHeadAttention against a hand-written numpy softmax(Q K^T / sqrt(d)) V with the module's own weights."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers import MultiHeadAttention, attention_weights, causal_mask, padding_mask

BATCH, LENGTH, EMBED, HEADS = 2, 5, 8, 2
VALID = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=bool)


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def reference_attention(params, inputs_q, inputs_kv, mask):
    """Eq. 1 of Vaswani et al. in float64 numpy; returns (output, weights)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), nn.unbox(params))

    def project(name, x):
        return np.einsum("bld,dhk->blhk", x, p[name]["kernel"]) + p[name]["bias"]

    query, key, value = project("query", inputs_q), project("key", inputs_kv), project("value", inputs_kv)
    logits = np.einsum("bqhd,bkhd->bhqk", query, key) / np.sqrt(query.shape[-1])
    if mask is not None:
        logits = np.where(np.broadcast_to(mask, logits.shape), logits, -np.inf)
    weights = _softmax(logits)
    attended = np.einsum("bhqk,bkhd->bqhd", weights, value)
    return np.einsum("bqhd,hdo->bqo", attended, p["out"]["kernel"]) + p["out"]["bias"], weights


def make_mask(kind):
    return {
        "none": None,
        "padding": padding_mask(VALID),
        "causal": causal_mask(LENGTH),
        "padding_and_causal": padding_mask(VALID) & causal_mask(LENGTH),
    }[kind]


def random_inputs(*shapes):
    keys = jax.random.split(jax.random.key(1), len(shapes))
    return [np.asarray(jax.random.normal(k, s)) for k, s in zip(keys, shapes)]


@pytest.mark.parametrize("kind", ["none", "padding", "causal", "padding_and_causal"])
def test_self_attention_matches_numpy_and_masked_keys_get_zero_weight(kind):
    (x,) = random_inputs((BATCH, LENGTH, EMBED))
    mask = make_mask(kind)
    module = MultiHeadAttention(num_heads=HEADS, bias_init=nn.initializers.normal(0.5))
    variables = module.init(jax.random.key(0), x, mask=mask)
    out, state = module.apply(variables, x, mask=mask, mutable=["intermediates"])
    expected, expected_weights = reference_attention(variables["params"], x, x, mask)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    (weights,) = state["intermediates"]["attention_weights"]
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
    if mask is not None:
        masked = ~np.broadcast_to(mask, weights.shape)
        assert masked.any() and np.all(np.asarray(weights)[masked] == 0.0)
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-6)


def test_cross_attention_with_explicit_head_dim_and_out_features():
    x_q, x_kv = random_inputs((BATCH, 3, EMBED), (BATCH, 7, 6))
    module = MultiHeadAttention(num_heads=3, head_dim=5, out_features=4, bias_init=nn.initializers.normal(0.5))
    variables = module.init(jax.random.key(0), x_q, x_kv)
    params = nn.unbox(variables["params"])
    assert params["query"]["kernel"].shape == (EMBED, 3, 5)
    assert params["key"]["kernel"].shape == (6, 3, 5)
    assert params["out"]["kernel"].shape == (3, 5, 4)
    out = module.apply(variables, x_q, x_kv)
    np.testing.assert_allclose(out, reference_attention(variables["params"], x_q, x_kv, None)[0], rtol=1e-5, atol=1e-5)


def test_parameters_carry_logical_axes():
    (x,) = random_inputs((BATCH, LENGTH, EMBED))
    params = MultiHeadAttention(num_heads=HEADS).init(jax.random.key(0), x)["params"]
    for name in ("query", "key", "value"):
        assert params[name]["kernel"].names == ("embed", "heads", "kv")
        assert params[name]["bias"].names == ("heads", "kv")
    assert params["out"]["kernel"].names == ("heads", "kv", "embed")
    assert params["out"]["bias"].names == ("embed",)


def test_mask_helpers_shapes_and_values():
    np.testing.assert_array_equal(causal_mask(3)[0, 0], np.tril(np.ones((3, 3), bool)))
    assert padding_mask(VALID).shape == (BATCH, 1, 1, LENGTH)
    combined = padding_mask(VALID) & causal_mask(LENGTH)
    assert combined.shape == (BATCH, 1, LENGTH, LENGTH)
    assert not combined[1, 0, 4, 3] and combined[1, 0, 4, 2] and not combined[0, 0, 1, 2]


def test_bfloat16_keeps_softmax_in_float32():
    (x,) = random_inputs((BATCH, LENGTH, EMBED))
    variables = MultiHeadAttention(num_heads=HEADS).init(jax.random.key(0), x)
    out32 = MultiHeadAttention(num_heads=HEADS).apply(variables, x)
    out16, state = MultiHeadAttention(num_heads=HEADS, dtype=jnp.bfloat16).apply(
        variables, x, mutable=["intermediates"])
    assert out16.dtype == jnp.bfloat16
    assert state["intermediates"]["attention_weights"][0].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=0.1)


def test_attention_weights_scale_by_sqrt_head_dim():
    query = jnp.ones((1, 1, 1, 4))
    key = jnp.stack([jnp.zeros(4), jnp.ones(4)])[None, :, None, :]  # logits 0 and 4/sqrt(4) = 2
    weights = attention_weights(query, key)
    np.testing.assert_allclose(weights[0, 0, 0], _softmax(np.array([0.0, 2.0])), rtol=1e-6)


def test_attention_dropout_uses_dropout_rng_only_in_training():
    (x,) = random_inputs((BATCH, LENGTH, EMBED))
    module = MultiHeadAttention(num_heads=HEADS, dropout_rate=0.5)
    variables = module.init(jax.random.key(0), x)
    np.testing.assert_allclose(module.apply(variables, x, deterministic=True),
                               reference_attention(variables["params"], x, x, None)[0], rtol=1e-5, atol=1e-5)
    train = [module.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(seed)})
             for seed in (0, 1)]
    assert not np.allclose(train[0], train[1])
    with pytest.raises(Exception, match="dropout"):
        module.apply(variables, x, deterministic=False)


def test_indivisible_width_without_head_dim_raises():
    (x,) = random_inputs((BATCH, LENGTH, EMBED))
    with pytest.raises(ValueError, match="num_heads=3"):
        MultiHeadAttention(num_heads=3).init(jax.random.key(0), x)


def test_kernels_use_the_xavier_scale_of_the_flattened_matrix():
    params = MultiHeadAttention(num_heads=4).init(jax.random.key(0), jnp.zeros((1, 2, 64)))["params"]
    bound = np.sqrt(6.0 / (64 + 64))  # [64, 4, 16] viewed as [64, 64], as nn.DenseGeneral initialises it
    for name in ("query", "out"):
        kernel = np.abs(np.asarray(params[name]["kernel"].value))
        assert 0.95 * bound < kernel.max() <= bound
