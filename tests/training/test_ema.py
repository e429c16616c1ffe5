"""EMA of parameters: the warm-up decay schedule and the update, against hand-computed values."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.training.ema import ema_decay_at, ema_update


def test_decay_schedule_hand_values():
    # warm-up: min(d, (1 + n) / (10 + n)); n = 0 -> 0.1, n = 8 -> 0.5, n = 89 -> 0.9 (= d: the EMA proper)
    assert float(ema_decay_at(jnp.int32(0), 0.9, True)) == pytest.approx(0.1)
    assert float(ema_decay_at(jnp.int32(8), 0.9, True)) == pytest.approx(0.5)
    assert float(ema_decay_at(jnp.int32(89), 0.9, True)) == pytest.approx(0.9)
    assert float(ema_decay_at(jnp.int32(10**6), 0.9, True)) == pytest.approx(0.9)
    assert float(ema_decay_at(jnp.int32(0), 0.9, False)) == pytest.approx(0.9)
    assert ema_decay_at(jnp.int32(3), 0.999, True).dtype == jnp.float32


def test_update_hand_values():
    ema = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(0.0)}
    params = {"w": jnp.array([3.0, 2.0]), "b": jnp.array(10.0)}
    out = ema_update(ema, params, 0.75)  # 0.75 * ema + 0.25 * params
    np.testing.assert_allclose(out["w"], [1.5, 2.0])
    np.testing.assert_allclose(out["b"], 2.5)


def test_update_converges_to_constant_params():
    ema, params = {"w": jnp.zeros(())}, {"w": jnp.ones(())}
    for step in range(5):
        ema = ema_update(ema, params, ema_decay_at(jnp.int32(step), 0.5, False))
    np.testing.assert_allclose(ema["w"], 1.0 - 0.5 ** 5, rtol=1e-6)  # 1 - d^n after n steps from 0
