"""dense / conv: the same parameters as nn.Dense / nn.Conv, annotated with the logical axes the rules shard."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.layers import CONV_AXES, DENSE_AXES, VECTOR_AXES, conv, dense, dtype_from_name
from jaxmodels.training.partitioning import LOGICAL_AXIS_RULES


def _init(module, x):
    return module.init(jax.random.key(3), x)["params"]


def test_dense_has_nn_dense_parameters_with_kernel_and_bias_axes():
    x = jnp.ones((2, 8))
    init = nn.initializers.normal(0.02)
    ours = _init(dense(16, ("embed", "mlp"), kernel_init=init, name="d"), x)
    plain = _init(nn.Dense(16, kernel_init=init, name="d"), x)
    assert ours["kernel"].names == ("embed", "mlp") and ours["bias"].names == ("mlp",)
    np.testing.assert_array_equal(ours["kernel"].value, plain["kernel"])  # same draw: checkpoints unchanged
    np.testing.assert_array_equal(ours["bias"].value, plain["bias"])


def test_conv_has_nn_conv_parameters_and_the_bias_takes_the_output_axis():
    x = jnp.ones((1, 6, 6, 3))
    init = nn.initializers.he_normal()
    ours = _init(conv(5, 3, kernel_init=init, name="c"), x)
    plain = _init(nn.Conv(5, (3, 3), padding="SAME", kernel_init=init, name="c"), x)
    assert ours["kernel"].names == CONV_AXES and ours["bias"].names == ("embed",)
    np.testing.assert_array_equal(ours["kernel"].value, plain["kernel"])
    with pytest.raises(ValueError, match="needs 4 axis names"):
        _init(conv(5, 3, axes=DENSE_AXES), x)


def test_axis_names_shard_only_the_output_width():
    with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
        assert tuple(nn.logical_to_mesh_axes(CONV_AXES)) == (None, None, None, "fsdp")
        assert tuple(nn.logical_to_mesh_axes(DENSE_AXES)) == (None, "fsdp")
        assert tuple(nn.logical_to_mesh_axes(VECTOR_AXES)) == (None,)
        assert tuple(nn.logical_to_mesh_axes(("embed", "mlp"))) == ("fsdp", "model")


def test_dtype_from_name_and_its_error_names_the_field():
    assert dtype_from_name("bfloat16") is jnp.bfloat16 and dtype_from_name("float32") is jnp.float32
    with pytest.raises(ValueError, match=r"gpt_from_config: model\.dtype must be one of \['bfloat16', 'float32'\]"):
        dtype_from_name("fp16", "gpt_from_config: model.dtype")
    with pytest.raises(ValueError, match="model.dtype"):
        dtype_from_name(jnp.float32)
