import jax
import pytest

from jaxmodels.training.mesh import make_mesh, mesh_shape


def test_mesh_shape_fills_the_free_axis():
    assert mesh_shape({"data": -1}, 8) == (8, 1, 1)
    assert mesh_shape({"data": 2, "fsdp": -1, "model": 2}, 8) == (2, 2, 2)
    assert mesh_shape({"data": 1, "fsdp": 1, "model": 1}, 8) == (1, 1, 1)


@pytest.mark.parametrize("cfg, message", [
    ({"data": -1, "fsdp": -1}, "only one axis may be -1"),
    ({"data": 3, "fsdp": -1}, "do not divide"),
    ({"data": 4, "fsdp": 4}, "needs 16 devices"),
])
def test_mesh_shape_errors_name_the_config(cfg, message):
    with pytest.raises(ValueError, match=message):
        mesh_shape(cfg, 8)


def test_make_mesh_axes_and_auto_types():
    mesh = make_mesh({"data": 2, "fsdp": 4, "model": 1})
    assert mesh.axis_names == ("data", "fsdp", "model")
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "model": 1}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    assert make_mesh({"data": 1, "fsdp": 1, "model": 1}).devices.size == 1
