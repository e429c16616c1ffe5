"""The DDPM U-Net (``jaxmodels.diffusion.unet``) and its diffusers converter (``jaxmodels.convert.diffusers_unet``).

Parity: diffusers' ``UNet2DModel`` built by ``diffusers_config`` with random weights, converted with
``params_from_diffusers``, must give our outputs to 1e-4. The CIFAR-10 network must have the paper's
35.7M parameters, exactly as many as diffusers' (the published ``google/ddpm-cifar10-32`` config).
"""
import functools
import importlib.util
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxmodels.convert.diffusers_unet import (
    diffusers_config,
    load_diffusers_unet,
    params_from_diffusers,
    params_to_diffusers,
    unet_from_diffusers_config,
)
from jaxmodels.diffusion import unet as unet_lib
from jaxmodels.diffusion.unet import UNet, count_params, unet_from_config
from jaxmodels.training.partitioning import LOGICAL_AXIS_RULES

CIFAR10_PARAMS = 35_746_307  # Ho et al. 2020 report 35.7M
SMALL = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)
_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
# Tests compile with LLVM's optimisations off: about half the compile time, the same maths.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _torch_unet():
    """``benchmarks/torch_unet.py`` (not a package), which imports diffusers without torchvision."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    if "torch_unet" not in sys.modules:
        spec = importlib.util.spec_from_file_location("torch_unet", _BENCHMARKS / "torch_unet.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["torch_unet"] = module
        spec.loader.exec_module(module)
    return sys.modules["torch_unet"]


def _inputs(batch=2, size=16, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, size, size, channels)).astype(np.float32), np.array([3, 917][:batch])


def _random_params(model, x, t, y=None, seed=1, scale=0.2):
    """Gaussian noise of the parameter tree's shapes (``jax.eval_shape``: no init to compile), so the
    zero-initialised convs and biases are exercised too."""
    abstract = jax.eval_shape(lambda: nn.unbox(model.init({"params": jax.random.key(0)}, x, t, y, train=False)))
    leaves, treedef = jax.tree_util.tree_flatten(abstract["params"])
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(treedef, [(scale * rng.standard_normal(leaf.shape)).astype(np.float32)
                                                  for leaf in leaves])


@functools.cache
def _small_params(**kwargs):
    model = UNet(**{**SMALL, **kwargs})
    x, t = _inputs()
    return model, _random_params(model, x, t, np.zeros(2, np.int32) if model.num_classes else None)


# ------------------------------------------------------------------------------------------------
# size and structure


def test_cifar10_config_has_the_papers_35_7m_parameters_as_diffusers():
    model = UNet()  # the defaults are the CIFAR-10 network
    abstract = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)),
                                                 jnp.zeros((1,), jnp.int32), train=False))
    assert count_params(abstract["params"]) == CIFAR10_PARAMS
    assert round(CIFAR10_PARAMS / 1e6, 1) == 35.7

    config = diffusers_config(model)
    for key, value in dict(block_out_channels=(128, 256, 256, 256), layers_per_block=2, attention_head_dim=None,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_eps=1e-6,
                           downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, dropout=0.1,
                           resnet_time_scale_shift="default").items():
        assert config[key] == value, key
    torch_model = _torch_unet().torch_unet_like(model)
    assert sum(p.numel() for p in torch_model.parameters()) == CIFAR10_PARAMS


def test_every_parameter_is_logically_partitioned_and_big_kernels_shard_over_fsdp():
    model = UNet(**SMALL)
    x, t = _inputs()
    abstract = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, x, t, train=False))["params"]
    leaves = jax.tree.leaves(abstract, is_leaf=lambda v: isinstance(v, nn.Partitioned))
    assert leaves and all(isinstance(leaf, nn.LogicallyPartitioned) and len(leaf.names) == leaf.value.ndim
                          for leaf in leaves)
    mesh = jax.make_mesh((1, 8, 1), ("data", "fsdp", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, LOGICAL_AXIS_RULES)
    assert shardings["down_0_block_0"]["conv1"]["kernel"].spec == P(None, None, None, "fsdp")
    assert shardings["down_1_attn_0"]["q"]["kernel"].spec == P(None, "fsdp")
    assert shardings["conv_out"]["kernel"].spec == P(None, None, "fsdp", None)  # 3 output channels: not split
    assert shardings["down_0_block_0"]["norm1"]["scale"].spec == P(None)
    assert shardings["down_0_block_0"]["conv1"]["bias"].spec == P(None)


# ------------------------------------------------------------------------------------------------
# diffusers parity and conversion


@pytest.mark.parametrize("kwargs", [{}, {"num_classes": 4},
                                    {"num_heads": 2, "use_scale_shift_norm": True, "learn_sigma": True}],
                         ids=["ddpm", "class-conditional", "improved-ddpm"])
def test_outputs_match_diffusers_unet2dmodel(kwargs):
    import torch

    torch_unet = _torch_unet()
    model = UNet(**{**SMALL, **kwargs})
    torch.manual_seed(0)
    torch_model = torch_unet.torch_unet_like(model, sample_size=16).eval()
    with torch.no_grad():
        for p in torch_model.parameters():
            p.copy_(0.2 * torch.randn_like(p))  # the zero-initialised layers too
    params = params_from_diffusers(torch_model.state_dict())

    x, t = _inputs()
    y = np.array([1, model.num_classes]) if model.num_classes else None  # incl. the null class
    ours = np.asarray(jit(lambda p: model.apply({"params": p}, x, t, y, train=False))(params))
    with torch.no_grad():
        theirs = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(t),
                             None if y is None else torch.from_numpy(y)).sample.numpy().transpose(0, 2, 3, 1)
    assert ours.shape == (2, 16, 16, 6 if model.learn_sigma else 3)
    assert np.abs(theirs).max() > 0.5  # a non-trivial function
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_conversion_round_trips_and_loads_from_files(tmp_path):
    import torch
    from safetensors.numpy import save_file

    model, params = _small_params()
    params = jax.device_get(params)
    state = params_to_diffusers(params)
    torch_model = _torch_unet().torch_unet_like(model, sample_size=16)
    assert set(state) == set(torch_model.state_dict())  # every diffusers tensor, and nothing else
    jax.tree_util.tree_map(np.testing.assert_array_equal, params_from_diffusers(state), params)

    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    jax.tree_util.tree_map(np.testing.assert_array_equal, load_diffusers_unet(str(tmp_path)), params)
    torch.save({k: torch.tensor(v) for k, v in state.items()}, tmp_path / "weights.bin")
    jax.tree_util.tree_map(np.testing.assert_array_equal, load_diffusers_unet(str(tmp_path / "weights.bin")), params)


def test_deprecated_attention_names_and_unknown_entries():
    model, params = _small_params()
    state = params_to_diffusers(params)
    renamed = {k.replace("to_q", "query").replace("to_k", "key").replace("to_v", "value")
               .replace("to_out.0", "proj_attn"): v for k, v in state.items()}
    jax.tree_util.tree_map(np.testing.assert_array_equal, params_from_diffusers(renamed), jax.device_get(params))
    with pytest.raises(ValueError, match="down_blocks.0.resnets.0.extra.weight"):
        params_from_diffusers({**state, "down_blocks.0.resnets.0.extra.weight": np.zeros(3)})


def test_diffusers_config_round_trips_to_the_same_unet():
    for model in (UNet(), UNet(**SMALL, num_classes=10, num_heads=4, use_scale_shift_norm=True, learn_sigma=True)):
        config = diffusers_config(model, sample_size=32 if model.ch == 128 else 16)
        rebuilt = unet_from_diffusers_config(config, learn_sigma=model.learn_sigma,
                                             out_channels=model.out_channels)
        for field in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "num_classes", "num_heads",
                      "use_scale_shift_norm"):
            assert tuple(np.atleast_1d(getattr(rebuilt, field))) == tuple(np.atleast_1d(getattr(model, field))), field
    with pytest.raises(ValueError, match="freq_shift"):
        unet_from_diffusers_config({**diffusers_config(UNet()), "freq_shift": 0})
    # the published google/ddpm-cifar10-32 config.json (it leaves dropout, an inference setting, at 0)
    published = {"_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None,
                 "block_out_channels": [128, 256, 256, 256], "center_input_sample": False,
                 "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
                 "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
                 "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
                 "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
                 "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]}
    assert unet_from_diffusers_config(published, dropout=0.1, out_channels=None) == UNet()
    with pytest.raises(ValueError, match="norm_eps=1e-05"):  # diffusers' default when the key is absent
        unet_from_diffusers_config({k: v for k, v in published.items() if k != "norm_eps"})


# ------------------------------------------------------------------------------------------------
# behaviour


def test_class_conditioning_and_the_null_class():
    model, params = _small_params(num_classes=3)
    x, t = _inputs()
    apply = jit(lambda y: model.apply({"params": params}, x, t, y, train=False))
    a, b, null = apply(np.array([0, 0])), apply(np.array([2, 2])), apply(np.array([3, 3]))  # 3 = null class
    assert np.abs(a - b).max() > 1e-3 and np.abs(a - null).max() > 1e-3
    assert params["label_emb"]["embedding"].shape == (4, 4 * SMALL["ch"])
    with pytest.raises(ValueError, match="num_classes=3.*labels y"):
        model.apply({"params": params}, x, t, train=False)
    with pytest.raises(ValueError, match=r"labels y must have shape \[batch\]"):
        model.apply({"params": params}, x, t, np.zeros((2, 1), np.int32), train=False)
    with pytest.raises(ValueError, match="labels y must be integers"):
        model.apply({"params": params}, x, t, np.zeros(2, np.float32), train=False)
    unconditional, uparams = _small_params()
    with pytest.raises(ValueError, match="got labels y but num_classes=0"):
        unconditional.apply({"params": uparams}, x, t, np.zeros(2, np.int32), train=False)


def test_invalid_sizes_and_fields_raise_naming_them():
    _, params = _small_params()
    with pytest.raises(ValueError, match=r"17x16.*not divisible by 2 \*\* \(len\(ch_mult\) - 1\) = 2"):
        UNet(**SMALL).apply({"params": params}, np.zeros((1, 17, 16, 3)), np.zeros(1), train=False)
    with pytest.raises(ValueError, match="t must be a scalar or of shape"):
        UNet(**SMALL).apply({"params": params}, np.zeros((2, 16, 16, 3)), np.zeros(3), train=False)
    with pytest.raises(ValueError, match="ch=48 must be a positive multiple of the 32 GroupNorm groups"):
        UNet(ch=48)
    with pytest.raises(ValueError, match="num_heads=3"):
        UNet(**SMALL, num_heads=3)


def test_learn_sigma_doubles_the_output_channels_and_out_channels_overrides():
    x, t = _inputs(channels=1)
    for kwargs, channels in (({}, 1), ({"learn_sigma": True}, 2), ({"out_channels": 3, "learn_sigma": True}, 6)):
        out = jax.eval_shape(lambda: UNet(**SMALL, **kwargs).init_with_output(
            {"params": jax.random.key(0)}, x, t, train=False)[0])
        assert out.shape == (2, 16, 16, channels)


def test_dropout_only_in_training_and_needs_a_dropout_rng():
    model = UNet(ch=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), dropout=0.5)  # small: fast compile
    x, t = _inputs(size=8)
    params = _random_params(model, x, t)
    apply = jit(lambda key, train: model.apply({"params": params}, x, t, train=train, rngs={"dropout": key}),
                    static_argnums=1)
    evaluation = apply(jax.random.key(0), False)
    np.testing.assert_array_equal(evaluation, apply(jax.random.key(1), False))
    first, second = apply(jax.random.key(0), True), apply(jax.random.key(1), True)
    assert np.abs(first - evaluation).max() > 1e-3 and np.abs(first - second).max() > 1e-3
    with pytest.raises(Exception, match="dropout"):
        model.apply({"params": params}, x, t, train=True)


def test_timestep_embedding_is_hos_sinusoid():
    emb = np.asarray(unet_lib.timestep_embedding(jnp.array([0, 5, 999.5]), 8))
    freqs = np.exp(-np.log(10000.0) * np.arange(4) / 3)
    expected = np.concatenate([np.sin(np.array([0, 5, 999.5])[:, None] * freqs),
                               np.cos(np.array([0, 5, 999.5])[:, None] * freqs)], axis=1)
    np.testing.assert_allclose(emb, expected, atol=2e-4)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_kernel_gradient_matches_xla_autodiff(stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 8, 5)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 5, 4)).astype(np.float32)

    def loss(conv, x, kernel):
        return jnp.sum(jnp.sin(conv(x, kernel, stride)))

    ours = jax.grad(functools.partial(loss, unet_lib.conv3x3), argnums=(0, 1))(x, kernel)
    reference = jax.grad(functools.partial(loss, unet_lib._conv), argnums=(0, 1))(x, kernel)
    np.testing.assert_allclose(unet_lib.conv3x3(x, kernel, stride), unet_lib._conv(x, kernel, stride))
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_jitted_training_step_is_finite_and_learns():
    import optax

    # one level (the stride-2 conv's gradient is checked above): the backward pass compiles in seconds
    model = UNet(ch=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(8,), dropout=0.1, num_classes=2)
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype(np.float32)
    t, y, eps = np.array([1, 10, 100, 999]), np.array([0, 1, 2, 1]), x[::-1].copy()
    params = _random_params(model, x, t, y, scale=0.05)
    tx = optax.adam(1e-3)

    @jit
    def step(params, opt_state, key):
        def loss_fn(p):
            return jnp.mean(jnp.square(model.apply({"params": p}, x, t, y, train=True, rngs={"dropout": key}) - eps))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    opt_state = tx.init(params)
    losses = []
    for i in range(3):
        params, opt_state, loss, grads = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_unet_from_config():
    cfg = ml_collections.ConfigDict(dict(name="unet", ch=64, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8],
                                         dropout=0.0, out_channels=None, learn_sigma=True, num_classes=10, num_heads=2,
                                         use_scale_shift_norm=True, dtype="bfloat16"))
    model = unet_from_config(cfg)
    assert (model.ch, model.ch_mult, model.attn_resolutions, model.num_heads) == (64, (1, 2), (8,), 2)
    assert model.learn_sigma and model.use_scale_shift_norm and model.num_classes == 10
    assert model.dtype == jnp.bfloat16
    assert unet_from_config({"name": "unet"}) == UNet()
    with pytest.raises(ValueError, match="unknown model config key"):
        unet_from_config({"name": "unet", "channels": 3})
    with pytest.raises(ValueError, match="dtype"):
        unet_from_config({"name": "unet", "dtype": "float16"})
