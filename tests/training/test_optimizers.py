import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmodels.training.optimizers import build_optimizer, learning_rate_schedule, weight_decay_mask


def test_warmup_cosine_values():
    schedule = learning_rate_schedule(dict(lr=1.0, schedule="warmup_cosine", warmup_steps=10, end_lr=0.1), 110)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    # half-way through the cosine: end + (peak - end) * (1 + cos(pi/2)) / 2
    assert float(schedule(60)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)
    assert float(schedule(110)) == pytest.approx(0.1)


def test_warmup_linear_and_unknown_schedule():
    schedule = learning_rate_schedule(dict(lr=2.0, schedule="warmup_linear", warmup_steps=4), 14)
    assert [round(float(schedule(s)), 4) for s in (2, 4, 9, 14)] == [1.0, 2.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="config.optimizer.schedule='bogus'"):
        learning_rate_schedule(dict(lr=1.0, schedule="bogus"), 10)


def test_weight_decay_mask_skips_biases_norms_and_position_embeddings():
    params = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
              "LayerNorm_0": {"scale": jnp.ones(3)}, "pos_embedding": jnp.ones((1, 4, 3)),
              "cls": jnp.ones((1, 1, 3))}
    mask = weight_decay_mask(params)
    assert mask == {"Dense_0": {"kernel": True, "bias": False}, "LayerNorm_0": {"scale": False},
                    "pos_embedding": False, "cls": False}


def test_adamw_decays_only_masked_leaves():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    tx = build_optimizer(dict(name="adamw", lr=0.1, weight_decay=0.5, schedule="constant"), 10)
    zero_grads = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(updates["bias"], np.zeros(2))


def test_gradient_clipping_and_unknown_optimizer():
    tx = build_optimizer(dict(name="sgd", lr=1.0, b1=0.0, grad_clip_norm=1.0), 10)
    params = {"w": jnp.zeros(2)}
    updates, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)
    assert float(optax.global_norm(updates)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="config.optimizer.name='adagrad'"):
        build_optimizer(dict(name="adagrad", lr=1.0), 10)
