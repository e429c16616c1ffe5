"""The PyTorch reference ViT of ``benchmarks/torch_vit.py`` computes the same function as ours.

This is what lets ``benchmarks/vit_step.py`` call its comparison "the same model": our Flax
parameters are copied into the PyTorch ViT and the logits must agree to 1e-4. The benchmark's
``--tweaks`` (candidate rewrites of our layers) must leave parameters, logits and gradients unchanged.
"""
import importlib.util
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.vision.vit import ViT

_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    """Imports ``benchmarks/<name>.py`` (not a package) as module ``name``."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses (flax modules) look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def torch_vit():
    pytest.importorskip("torch")
    return _load("torch_vit")


def _randomise(params, seed):
    """Replaces every leaf with noise so that zero-initialised heads/biases/class tokens are exercised too."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [0.3 * jax.random.normal(key, leaf.shape, leaf.dtype) for key, leaf in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(treedef, noisy)


def _small_vit(**kwargs):
    return ViT(**{**dict(num_classes=5, image_size=16, patch_size=4, hidden_size=32, num_layers=2, num_heads=2,
                         mlp_dim=64), **kwargs})


@pytest.mark.parametrize("classifier,representation_size", [("token", None), ("gap", 24)])
def test_torch_vit_logits_match_flax(torch_vit, classifier, representation_size):
    import torch

    model = _small_vit(classifier=classifier, representation_size=representation_size)
    images = jax.random.normal(jax.random.key(0), (3, 16, 16, 3), jnp.float32)  # NHWC
    params = model.init({"params": jax.random.key(1)}, images, train=False)["params"]
    params = _randomise(params, seed=2)
    logits = np.asarray(model.apply({"params": params}, images, train=False))

    torch_model = torch_vit.load_flax_params(torch_vit.torch_vit_like(model), params).eval()
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)).numpy()  # NCHW

    assert torch_logits.shape == logits.shape == (3, 5)
    assert np.abs(logits).max() > 0.1  # a non-trivial function, so agreement means something
    np.testing.assert_allclose(torch_logits, logits, rtol=0, atol=1e-4)


def test_parameter_count_matches(torch_vit):
    model = ViT(num_classes=10, image_size=32, patch_size=4, hidden_size=192, num_layers=12, num_heads=3,
                mlp_dim=768)
    params = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)),
                                               train=False))["params"]
    flax_count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))
    torch_count = sum(p.numel() for p in torch_vit.torch_vit_like(model).parameters())
    assert torch_count == flax_count


def test_shape_mismatch_is_reported(torch_vit):
    small, other = _small_vit(num_layers=1), _small_vit(num_layers=1, mlp_dim=48)
    params = small.init({"params": jax.random.key(0)}, jnp.zeros((1, 16, 16, 3)), train=False)["params"]
    with pytest.raises(ValueError, match="MlpBlock_3/Dense_0"):
        torch_vit.load_flax_params(torch_vit.torch_vit_like(other), params)


@pytest.mark.parametrize("tweaks", [("erf_gelu",), ("patch_matmul",), ("fused_qkv",), ("deferred_softmax",),
                                    ("erf_gelu", "patch_matmul", "fused_qkv", "deferred_softmax")])
def test_benchmark_tweaks_keep_params_logits_and_gradients(tweaks):
    vit_step = _load("vit_step")
    model = _small_vit()
    images = jax.random.normal(jax.random.key(0), (3, 16, 16, 3), jnp.float32)
    labels = jnp.array([0, 3, 4])

    def loss(params):
        logits = model.apply({"params": params}, images, train=True)
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(3), labels]), logits

    params = nn.unbox(model.init({"params": jax.random.key(1)}, images, train=False)["params"])
    (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(_randomise(params, seed=2))
    with vit_step.tweaked_vit(tweaks):
        tweaked_params = nn.unbox(model.init({"params": jax.random.key(1)}, images, train=False)["params"])
        (_, tweaked_logits), tweaked_grads = jax.value_and_grad(loss, has_aux=True)(_randomise(params, seed=2))

    jax.tree_util.tree_map(np.testing.assert_array_equal, tweaked_params, params)  # same tree, same init
    np.testing.assert_allclose(tweaked_logits, logits, rtol=0, atol=1e-5)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), tweaked_grads, grads)
