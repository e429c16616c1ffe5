"""MlpBlock, PatchEmbedding, LearnedPositionEmbedding, LayerNorm and DropPath against known values."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from jaxmodels.layers import DropPath, LayerNorm, LearnedPositionEmbedding, MlpBlock, PatchEmbedding


def _normal(shape, seed=0):
    return np.asarray(jax.random.normal(jax.random.key(seed), shape))


def test_mlp_block_matches_numpy_with_exact_gelu():
    x = _normal((2, 3, 8))
    module = MlpBlock(mlp_dim=16, bias_init=nn.initializers.normal(0.5))
    variables = module.init(jax.random.key(0), x)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), nn.unbox(variables["params"]))
    hidden = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))
    expected = hidden @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    np.testing.assert_allclose(module.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_mlp_block_initialisation_and_axes_follow_the_vit_code():
    params = MlpBlock(mlp_dim=512).init(jax.random.key(0), jnp.zeros((1, 1, 256)))["params"]
    assert params["Dense_0"]["kernel"].names == ("embed", "mlp")
    assert params["Dense_0"]["bias"].names == ("mlp",)
    assert params["Dense_1"]["kernel"].names == ("mlp", "embed")
    assert params["Dense_1"]["bias"].names == ("embed",)
    kernel, bias = params["Dense_0"]["kernel"].value, params["Dense_0"]["bias"].value
    bound = np.sqrt(6.0 / (256 + 512))  # xavier uniform
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
    assert 0 < np.abs(bias).max() < 1e-5  # normal(1e-6)


def test_mlp_block_dropout_only_in_training():
    x = _normal((2, 3, 8))
    module = MlpBlock(mlp_dim=16, dropout_rate=0.5)
    variables = module.init(jax.random.key(0), x)
    np.testing.assert_array_equal(module.apply(variables, x), module.apply(variables, x, deterministic=True))
    trained = module.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(trained, module.apply(variables, x))


def _patchify(images, patch):
    """Reference: cut [b, H, W, c] into row-major patches [b, N, P*P*c]."""
    b, h, w, c = images.shape
    grid = images.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return grid.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def test_patch_embedding_is_a_linear_map_of_each_patch():
    images = _normal((2, 8, 12, 3))
    module = PatchEmbedding(patch_size=4, hidden_size=5)
    variables = module.init(jax.random.key(0), images)
    params = nn.unbox(variables["params"])
    params["bias"] = jnp.asarray(_normal((5,), seed=1))
    out = module.apply({"params": params}, images)
    assert out.shape == (2, 2 * 3, 5)
    expected = _patchify(images, 4) @ np.asarray(params["kernel"]).reshape(4 * 4 * 3, 5) + params["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert variables["params"]["kernel"].names == ("patch_height", "patch_width", "channels", "embed")


def test_patch_embedding_without_bias_and_indivisible_size():
    params = PatchEmbedding(patch_size=(2, 4), hidden_size=5, use_bias=False).init(
        jax.random.key(0), jnp.zeros((1, 4, 8, 3)))["params"]
    assert set(params) == {"kernel"} and params["kernel"].value.shape == (2, 4, 3, 5)
    with pytest.raises(ValueError, match="not divisible"):
        PatchEmbedding(patch_size=4, hidden_size=5).init(jax.random.key(0), jnp.zeros((1, 6, 8, 3)))


def test_learned_position_embedding_adds_a_normal_002_table():
    x = _normal((2, 64, 96))
    module = LearnedPositionEmbedding()
    variables = module.init(jax.random.key(0), x)
    table = variables["params"]["pos_embedding"]
    assert table.names == (None, "seq", "embed") and table.value.shape == (1, 64, 96)
    assert 0.018 < float(jnp.std(table.value)) < 0.022
    np.testing.assert_allclose(module.apply(variables, x), x + table.value, rtol=1e-6)


def test_learned_position_embedding_with_max_length_uses_leading_rows():
    module = LearnedPositionEmbedding(max_length=10)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 10, 4)))
    table = variables["params"]["pos_embedding"].value
    np.testing.assert_allclose(module.apply(variables, jnp.zeros((2, 3, 4))), jnp.broadcast_to(table[:, :3], (2, 3, 4)))
    with pytest.raises(ValueError, match="max_length=10"):
        module.apply(variables, jnp.zeros((1, 11, 4)))


def test_layer_norm_uses_vit_epsilon_and_logical_axes():
    x = 1e-3 * _normal((4, 16))  # variance ~1e-6, so epsilon matters
    variables = LayerNorm().init(jax.random.key(0), x)
    assert variables["params"]["scale"].names == ("embed",) and variables["params"]["bias"].names == ("embed",)
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(LayerNorm().apply(variables, x), expected, rtol=1e-3, atol=1e-3)


def test_drop_path_is_identity_when_deterministic_or_rate_zero():
    x = _normal((8, 3, 4))
    np.testing.assert_array_equal(DropPath(0.5).apply({}, x, deterministic=True), x)
    np.testing.assert_array_equal(DropPath(0.0).apply({}, x, deterministic=False), x)


def test_drop_path_drops_whole_examples_and_preserves_the_mean():
    rate, batch = 0.25, 20_000
    x = jnp.ones((batch, 3, 2))
    out = np.asarray(DropPath(rate).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)}))
    per_example = out.reshape(batch, -1)
    kept = np.all(per_example == 1.0 / (1.0 - rate), axis=1)
    dropped = np.all(per_example == 0.0, axis=1)
    assert np.all(kept | dropped)
    assert abs(kept.mean() - (1 - rate)) < 0.015  # ~5 standard errors
    assert abs(out.mean() - 1.0) < 0.02


def test_drop_path_rejects_rate_one():
    with pytest.raises(ValueError, match="rate"):
        DropPath(1.0).apply({}, jnp.ones((2, 2)), deterministic=False, rngs={"dropout": jax.random.key(0)})
