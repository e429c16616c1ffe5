"""The progressive-GAN generator/critic (``jaxmodels.gan.progan``): layer layout, equalised learning rate,
pixel norm, minibatch stddev, and GAN Dissection's interventions."""
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels import models
from jaxmodels.gan.progan import (
    LAYER_NAMES,
    Discriminator,
    EqualizedConv,
    EqualizedDense,
    Generator,
    Intervention,
    discriminator_from_config,
    generator_from_config,
    minibatch_stddev,
    pixel_norm,
)

# XLA:CPU compiles threefry sampling slowly (tens of seconds for an init); RBG keys compile fast.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def normal(seed: int, shape) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


SMALL = dict(resolution=64, latent_dim=16, fmap_base=128, fmap_max=16)  # nf(1..5): 16, 16, 16, 8, 4 units


@pytest.fixture(scope="module")
def small_generator():
    """(generator, params, z, run) with ``run(params, z, intervention=None, capture=())`` jitted."""
    generator = Generator(**SMALL)
    z = normal(0, (3, SMALL["latent_dim"]))
    params = jit(lambda k: nn.unbox(generator.init(k, z))["params"])(key(1))
    apply = jit(lambda p, z_, edit, capture: generator.apply({"params": p}, z_, intervention=edit, capture=capture),
                    static_argnums=3)

    def run(p, z_, intervention=None, capture=()):
        return apply(p, z_, intervention, tuple(capture))

    return generator, params, z, run


def test_layer_names_and_shapes_follow_netdissect_proggan(small_generator):
    assert LAYER_NAMES(64) == [f"layer{i}" for i in range(1, 11)] + ["output"]
    assert LAYER_NAMES(8) == ["layer1", "layer2", "layer3", "layer4", "output"]
    generator, params, z, run = small_generator
    images, features = run(params, z, capture=LAYER_NAMES(64))
    assert images.shape == (3, 64, 64, 3)
    sizes = [4, 4, 8, 8, 16, 16, 32, 32, 64, 64]
    units = [16, 16, 16, 16, 16, 16, 8, 8, 4, 4]  # nf(s) = min(128 / 2^s, 16) for s = 1..5
    for i, (size, width) in enumerate(zip(sizes, units), start=1):
        assert features[f"layer{i}"].shape == (3, size, size, width), i
    np.testing.assert_array_equal(features["output"], images)
    assert generator.feature_shapes()["layer4"] == (8, 8, 16)
    assert set(params) == {f"layer{i}" for i in range(1, 11)} | {"output"}
    # the paper's 256 px widths (netdissect/proggan.py sizes[256]: 512 x4, 256, 128, 64, 32)
    paper = Generator(resolution=256)
    assert [paper.feature_shapes()[f"layer{2 * k}"][2] for k in range(1, 8)] == [512, 512, 512, 512, 256, 128, 64]
    with pytest.raises(ValueError, match="layer11"):
        run(params, z, capture=["layer11"])


def test_equalized_layers_store_unit_normal_weights_and_scale_by_he_constant():
    x = normal(0, (2, 5, 5, 64))
    conv = EqualizedConv(128, kernel_size=3)
    params = jit(lambda k: nn.unbox(conv.init(k, x))["params"])(key(1))
    kernel = params["kernel"]
    assert kernel.shape == (3, 3, 64, 128)
    assert abs(float(jnp.mean(kernel))) < 0.02 and abs(float(jnp.std(kernel)) - 1.0) < 0.02  # stored ~ N(0, 1)
    np.testing.assert_array_equal(params["bias"], 0.0)
    effective = kernel * math.sqrt(2.0 / (3 * 3 * 64))  # He: sqrt(2 / fan_in)
    expected = jax.lax.conv_general_dilated(x, effective, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(jit(conv.apply)({"params": params}, x), expected, rtol=1e-5, atol=1e-5)

    v = normal(2, (4, 32))
    dense = EqualizedDense(8, gain=1.0)
    dparams = jit(lambda k: nn.unbox(dense.init(k, v))["params"])(key(3))
    dparams = {"kernel": dparams["kernel"], "bias": jnp.arange(8.0)}
    np.testing.assert_allclose(dense.apply({"params": dparams}, v), v @ dparams["kernel"] / math.sqrt(32) + jnp.arange(8.0),
                               rtol=1e-5, atol=1e-5)


def test_pixel_norm_gives_unit_mean_square_per_pixel():
    x = normal(0, (2, 3, 3, 7)) * jnp.arange(1.0, 8.0)
    y = pixel_norm(x)
    np.testing.assert_allclose(jnp.mean(y ** 2, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y / x, jnp.broadcast_to((y / x)[..., :1], x.shape), rtol=1e-5)  # one scale per pixel: directions kept


def test_minibatch_stddev_matches_hand_computation():
    # batch 8, group 4: groups are {0, 2, 4, 6} and {1, 3, 5, 7} (official reshape [G, B/G, ...])
    x = jnp.zeros((8, 1, 1, 2)).at[:, 0, 0, 0].set(jnp.array([0., 10., 2., 10., 4., 10., 6., 10.]))
    x = x.at[:, 0, 0, 1].set(jnp.array([1., 0., 1., 0., 1., 0., 1., 0.]))
    out = jit(minibatch_stddev, static_argnums=1)(x, 4)
    assert out.shape == (8, 1, 1, 3)
    np.testing.assert_array_equal(out[..., :2], x)
    # group {0,2,4,6}: channel 0 = 0, 2, 4, 6 -> biased std sqrt(5); channel 1 constant -> sqrt(1e-8)
    even = (math.sqrt(5.0 + 1e-8) + math.sqrt(1e-8)) / 2
    odd = (math.sqrt(1e-8) + math.sqrt(1e-8)) / 2
    np.testing.assert_allclose(out[:, 0, 0, 2], [even, odd] * 4, rtol=1e-6)
    # a batch smaller than the group is one group; an indivisible larger batch is an error, as officially
    np.testing.assert_allclose(minibatch_stddev(x[:2], group_size=4)[:, 0, 0, 2], [(5.0 + 0.5) / 2] * 2, rtol=1e-6)
    with pytest.raises(ValueError, match="not divisible by the group size 4"):
        minibatch_stddev(x[:6], group_size=4)


def test_discriminator_scores_and_depends_on_batch_statistics():
    critic = Discriminator(resolution=16, fmap_base=32, fmap_max=16)
    images = jnp.tanh(normal(0, (4, 16, 16, 3)))
    params = jit(lambda k: nn.unbox(critic.init(k, images))["params"])(key(1))
    score = jit(lambda x: critic.apply({"params": params}, x))
    scores = score(images)
    assert scores.shape == (4,) and bool(jnp.all(jnp.isfinite(scores)))
    # image 0's score changes when another member of its stddev group changes
    other = score(images.at[1].set(0.0))
    assert float(jnp.abs(other[0] - scores[0])) > 1e-6
    assert params["4x4_conv"]["kernel"].shape == (3, 3, 16 + 1, 16)  # + the stddev map


def test_intervention_alpha_zero_is_identity(small_generator):
    _, params, z, run = small_generator
    images, features = run(params, z, capture=["layer4", "layer6"])
    edit = Intervention("layer4", alpha=jnp.zeros((16,)), value=5.0)
    images0, features0 = run(params, z, intervention=edit, capture=["layer4", "layer6"])
    np.testing.assert_array_equal(images0, images)
    for name in features:
        np.testing.assert_array_equal(features0[name], features[name])


def test_ablation_zeroes_exactly_the_units_and_changes_the_image(small_generator):
    _, params, z, run = small_generator
    images, features = run(params, z, capture=["layer4"])
    units = [1, 5, 7]
    edit = Intervention.ablate("layer4", units, 16)
    edited, edited_features = run(params, z, intervention=edit, capture=["layer4"])
    r, r_edit = features["layer4"], edited_features["layer4"]
    assert float(jnp.max(jnp.abs(r[..., units]))) > 0  # they were active
    np.testing.assert_array_equal(r_edit[..., units], 0.0)
    others = [u for u in range(16) if u not in units]
    np.testing.assert_array_equal(r_edit[..., others], r[..., others])
    assert float(jnp.mean(jnp.abs(edited - images))) > 1e-3


def test_insertion_puts_constant_k_and_mixes_linearly(small_generator):
    _, params, z, run = small_generator
    _, features = run(params, z, capture=["layer3"])
    alpha = jnp.zeros((16,)).at[2].set(1.0).at[4].set(0.25)
    value = jnp.full((16,), 3.0)
    _, edited = run(params, z, intervention=Intervention("layer3", alpha, value),
                                capture=["layer3"])
    r, r_edit = features["layer3"], edited["layer3"]
    np.testing.assert_allclose(r_edit[..., 2], 3.0)
    np.testing.assert_allclose(r_edit[..., 4], 0.75 * r[..., 4] + 0.25 * 3.0, rtol=1e-6)
    # per-example alpha [B, C]: only example 1 is edited
    per_example = jnp.zeros((3, 16)).at[1, 0].set(1.0)
    _, e2 = run(params, z, intervention=Intervention("layer3", per_example, 0.0),
                            capture=["layer3"])
    np.testing.assert_array_equal(e2["layer3"][1, ..., 0], 0.0)
    np.testing.assert_array_equal(e2["layer3"][jnp.array([0, 2])], r[jnp.array([0, 2])])
    with pytest.raises(ValueError, match="has 16"):
        run(params, z, intervention=Intervention("layer3", jnp.zeros((5,)), 0.0))


def test_gradient_with_respect_to_alpha_is_finite_and_nonzero(small_generator):
    generator, params, z, _ = small_generator

    def mean_red(alpha):
        images = generator.apply({"params": params}, z, intervention=Intervention("layer4", alpha, 2.0))
        return jnp.mean(images[..., 0])

    grad = jit(jax.grad(mean_red))(jnp.full((16,), 0.5))
    assert grad.shape == (16,) and bool(jnp.all(jnp.isfinite(grad)))
    assert float(jnp.max(jnp.abs(grad))) > 1e-6


def test_configs_build_and_register():
    generator = models.build_model({"name": "progan_generator", "resolution": 32, "latent_dim": 8, "fmap_base": 16,
                                    "fmap_max": 8})
    assert isinstance(generator, Generator) and generator.resolution == 32 and generator.nf(1) == 8
    critic = discriminator_from_config({"fmap_base": 16, "fmap_max": 8}, {"resolution": 32, "num_channels": 1})
    assert critic.resolution == 32 and critic.num_channels == 1
    with pytest.raises(ValueError, match="fmap_bass"):
        generator_from_config({"fmap_bass": 1})
    with pytest.raises(ValueError, match="config.discriminator.resolution=16 differs"):
        discriminator_from_config({"resolution": 16}, {"resolution": 32})
    with pytest.raises(ValueError, match="power of two"):
        Generator(resolution=48)
