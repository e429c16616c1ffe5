"""ViT: published parameter counts, shapes, pooling semantics, sharding annotations and config errors."""
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxmodels.training.partitioning import LOGICAL_AXIS_RULES
from jaxmodels.vision import VIT_SIZES, ViT, vit_from_config, vit_variant
from jaxmodels.vision.vit import drop_path_rates

# Rule names plus the replicated names the layers use.
DOCUMENTED_AXES = {name for name, _ in LOGICAL_AXIS_RULES} | {"patch_height", "patch_width", "channels", "seq", None}
TINY = dict(num_classes=5, image_size=16, patch_size=4, hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32)


@functools.lru_cache(maxsize=None)
def abstract_variables(variant, image_size=224, classifier="token", representation_size=None):
    model = ViT(num_classes=1000, image_size=image_size, classifier=classifier,
                representation_size=representation_size, **vit_variant(variant))
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    images = jax.ShapeDtypeStruct((2, height, width, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
    return variables, logits


def count(variables):
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nn.unbox(variables)))


@pytest.mark.parametrize("variant, expected", [
    ("Ti/16", 5_717_416), ("S/16", 22_050_664), ("B/16", 86_567_656), ("L/16", 304_326_632), ("B/32", 88_224_232),
])
def test_parameter_counts_match_published_models(variant, expected):
    variables, logits = abstract_variables(variant)
    assert count(variables) == expected
    assert logits.shape == (2, 1000) and logits.dtype == jnp.float32


def test_non_square_images_give_a_matching_position_table():
    variables, logits = abstract_variables("B/16", image_size=(224, 160))
    assert logits.shape == (2, 1000)
    table = variables["params"]["Transformer"]["posembed_input"]["pos_embedding"].value
    assert table.shape == (1, 1 + 14 * 10, 768)


def test_gap_drops_the_class_token_and_its_position_row():
    token, _ = abstract_variables("S/16")
    gap, _ = abstract_variables("S/16", classifier="gap")
    hidden = VIT_SIZES["S"]["hidden_size"]
    assert "cls" not in gap["params"]
    assert count(token) - count(gap) == 2 * hidden  # cls [1, 1, D] and one row of E_pos


def test_representation_size_adds_a_pre_logits_layer():
    plain, _ = abstract_variables("Ti/16")
    with_pre_logits, _ = abstract_variables("Ti/16", representation_size=64)
    assert count(with_pre_logits) - count(plain) == (192 * 64 + 64) + (64 - 192) * 1000


@pytest.fixture(scope="module")
def tiny_params():
    """Tiny token and GAP models with a random (not zero-initialised) head."""
    params = {}
    for classifier in ("token", "gap"):
        model = ViT(classifier=classifier, **TINY)
        variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
        p = nn.unbox(variables["params"])
        p["head"]["kernel"] = jax.random.normal(jax.random.key(1), p["head"]["kernel"].shape)
        params[classifier] = p
    return params


def tiny_images(batch=2, seed=2):
    return jax.random.normal(jax.random.key(seed), (batch, 16, 16, 3))


def capture_encoder_output(model, params, images):
    @jax.jit
    def run(params, images):
        logits, state = model.apply({"params": params}, images, train=False,
                                    capture_intermediates=lambda module, _: module.name == "Transformer")
        return logits, state["intermediates"]["Transformer"]["__call__"][0]  # [batch, tokens, hidden]

    return run(params, images)


@pytest.mark.parametrize("classifier", ["token", "gap"])
def test_logits_are_the_head_of_the_pooled_normalised_tokens(tiny_params, classifier):
    params = tiny_params[classifier]
    logits, tokens = capture_encoder_output(ViT(classifier=classifier, **TINY), params, tiny_images())
    assert tokens.shape == (2, 16 + (classifier == "token"), 16)
    np.testing.assert_allclose(jnp.mean(tokens, -1), 0.0, atol=1e-5)  # encoder_norm ran on every token (eq. 4)
    pooled = tokens[:, 0] if classifier == "token" else tokens.mean(axis=1)
    expected = pooled @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def _permute_patches(images, permutation, patch=4):
    b, h, w, c = images.shape
    grid = images.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    cells = grid.reshape(b, -1, patch, patch, c)[:, permutation]
    grid = cells.reshape(b, h // patch, w // patch, patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return grid.reshape(b, h, w, c)


@pytest.mark.parametrize("classifier", ["token", "gap"])
def test_position_embeddings_are_the_only_source_of_patch_order(tiny_params, classifier):
    model = ViT(classifier=classifier, **TINY)
    images = tiny_images()
    shuffled = _permute_patches(images, np.random.default_rng(0).permutation(16))
    apply = jax.jit(functools.partial(model.apply, train=False))
    params = tiny_params[classifier]
    assert not np.allclose(apply({"params": params}, images), apply({"params": params}, shuffled), atol=1e-3)
    without_positions = jax.tree.map(lambda x: x, params)
    table = params["Transformer"]["posembed_input"]["pos_embedding"]
    without_positions["Transformer"]["posembed_input"]["pos_embedding"] = jnp.zeros_like(table)
    np.testing.assert_allclose(apply({"params": without_positions}, images),
                               apply({"params": without_positions}, shuffled), rtol=1e-4, atol=1e-5)


def test_stochastic_depth_rates_rise_linearly_and_act_only_in_training(tiny_params):
    assert drop_path_rates(0.1, 3) == (0.0, 0.05, 0.1)
    assert drop_path_rates(0.1, 1) == (0.0,)
    model = ViT(stochastic_depth_rate=0.5, **TINY)
    apply = jax.jit(model.apply, static_argnames="train")
    variables, images = {"params": tiny_params["token"]}, tiny_images(batch=8)
    evaluation = [apply(variables, images, train=False, rngs={"dropout": jax.random.key(s)}) for s in (0, 1)]
    np.testing.assert_array_equal(evaluation[0], evaluation[1])
    plain = jax.jit(ViT(**TINY).apply, static_argnames="train")(variables, images, train=False)
    np.testing.assert_allclose(evaluation[0], plain, rtol=1e-5, atol=1e-5)
    training = [apply(variables, images, train=True, rngs={"dropout": jax.random.key(s)}) for s in (0, 1)]
    assert not np.allclose(training[0], training[1])


def test_bfloat16_model_tracks_float32_and_returns_float32_logits(tiny_params):
    images, variables = tiny_images(), {"params": tiny_params["token"]}
    logits16 = jax.jit(functools.partial(ViT(dtype=jnp.bfloat16, **TINY).apply, train=False))(variables, images)
    logits32 = jax.jit(functools.partial(ViT(**TINY).apply, train=False))(variables, images)
    assert logits16.dtype == jnp.float32
    np.testing.assert_allclose(logits16, logits32, atol=0.15)


def test_every_parameter_is_logically_partitioned_with_documented_names():
    variables, _ = abstract_variables("Ti/16", representation_size=64)
    leaves = jax.tree.leaves(variables, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in leaves)
    assert all(set(leaf.names) <= DOCUMENTED_AXES and len(leaf.names) == leaf.value.ndim for leaf in leaves)


def test_ti_kernels_shard_over_fsdp_on_an_eight_device_mesh():
    mesh = jax.make_mesh((1, 8, 1), ("data", "fsdp", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
    variables, _ = abstract_variables("Ti/16")
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(variables), mesh, LOGICAL_AXIS_RULES)["params"]
    block = shardings["Transformer"]["encoderblock_0"]
    attention = block["MultiHeadDotProductAttention_1"]
    assert attention["query"]["kernel"].spec == P("fsdp", "model", None)
    assert attention["out"]["kernel"].spec == P("model", None, "fsdp")
    assert block["MlpBlock_3"]["Dense_0"]["kernel"].spec == P("fsdp", "model")
    assert block["MlpBlock_3"]["Dense_1"]["kernel"].spec == P("model", "fsdp")
    assert shardings["head"]["kernel"].spec == P("fsdp", None)
    assert attention["query"]["kernel"].shard_shape((192, 3, 64)) == (24, 3, 64)
    flat = jax.tree_util.tree_flatten_with_path(shardings)[0]
    kernels = [(jax.tree_util.keystr(path), s) for path, s in flat if "kernel" in jax.tree_util.keystr(path)]
    assert len(kernels) == 1 + 12 * 6 + 1
    assert all("fsdp" in s.spec for _, s in kernels), [p for p, s in kernels if "fsdp" not in s.spec]


def test_sharded_forward_pass_matches_the_single_device_one(tiny_params):
    mesh = jax.make_mesh((2, 4, 1), ("data", "fsdp", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
    model = ViT(**TINY)
    images = tiny_images(batch=8)
    with jax.set_mesh(mesh), nn.logical_axis_rules(LOGICAL_AXIS_RULES):
        abstract = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), images)
        shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, LOGICAL_AXIS_RULES)
        params = jax.device_put({"params": tiny_params["token"]}, shardings)
        batch = jax.device_put(images, jax.sharding.NamedSharding(mesh, P(("data", "fsdp"))))
        logits = jax.jit(functools.partial(model.apply, train=False))(params, batch)
    assert params["params"]["embedding"]["kernel"].sharding.spec == P(None, None, None, "fsdp")
    single_device = jax.jit(functools.partial(model.apply, train=False))({"params": tiny_params["token"]}, images)
    np.testing.assert_allclose(logits, single_device, rtol=1e-5, atol=1e-5)


def test_wrong_image_size_names_both_sizes_and_the_config_key():
    model = ViT(**{**TINY, "image_size": (16, 24)})
    with pytest.raises(ValueError, match=r"16x24.*model\.image_size.*20x24"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 20, 24, 3)), train=False))


def test_image_size_must_be_divisible_by_the_patch_size():
    with pytest.raises(ValueError, match="30x30 is not divisible by patch_size 4x4"):
        ViT(**{**TINY, "image_size": 30})


def test_variant_strings():
    assert vit_variant("Ti/4") == {**VIT_SIZES["Ti"], "patch_size": 4}
    assert vit_variant("L/16")["num_layers"] == 24
    for bad in ("B16", "H/14", "B/x"):
        with pytest.raises(ValueError, match="variant"):
            vit_variant(bad)


def test_vit_from_config_applies_overrides_and_dtype():
    cfg = ml_collections.ConfigDict(dict(
        name="vit", variant="S/32", num_classes=10, image_size=[64, 96], num_layers=2, classifier="gap",
        stochastic_depth_rate=0.1, representation_size=None, dtype="bfloat16"))
    model = vit_from_config(cfg)
    assert (model.hidden_size, model.num_heads, model.mlp_dim, model.patch_size) == (384, 6, 1536, 32)
    assert (model.num_layers, model.image_size, model.classifier, model.dtype) == (2, (64, 96), "gap", jnp.bfloat16)
    explicit = vit_from_config(dict(variant=None, num_classes=3, image_size=8, patch_size=4, hidden_size=8,
                                    num_layers=1, num_heads=2, mlp_dim=16))
    assert explicit.hidden_size == 8 and explicit.dtype == jnp.float32


@pytest.mark.parametrize("cfg, message", [
    (dict(variant="B/16", num_classes=10, image_size=224, drop_rate=0.1), "drop_rate"),
    (dict(variant=None, num_classes=10, image_size=224), "hidden_size"),
    (dict(variant="B/16", num_classes=10, image_size=224, dtype="float16"), "float16"),
])
def test_vit_from_config_errors_name_the_offending_key(cfg, message):
    with pytest.raises(ValueError, match=message):
        vit_from_config(cfg)
