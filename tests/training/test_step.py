"""gradient_step: accumulation equals the full batch; aux, collections, rng and metrics."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmodels.training.step import gradient_step, merge_microbatches, split_microbatches

B, D = 8, 3


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, D)).astype(np.float32)
    y = rng.standard_normal(B).astype(np.float32)
    w = rng.standard_normal(D).astype(np.float32)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}, {"w": jnp.asarray(w)}


def run_step(loss_fn, params, tx, batch, **kwargs):
    """``gradient_step`` from a fresh optimiser state, compiled as one program (faster than op by op)."""
    return jax.jit(lambda p, b: gradient_step(loss_fn, p, tx.init(p), tx, b, **kwargs))(params, batch)


def mse(params, batch):
    return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)


def analytic_grad(params, batch):
    """d/dw mean((Xw - y)^2) = 2/B X^T (Xw - y)."""
    x, y = np.asarray(batch["x"], np.float64), np.asarray(batch["y"], np.float64)
    return 2.0 / len(y) * x.T @ (x @ np.asarray(params["w"], np.float64) - y)


@pytest.mark.parametrize("num_microbatches", [1, 2, 4])
def test_accumulated_gradient_equals_full_batch_gradient(problem, num_microbatches):
    batch, params = problem
    tx = optax.sgd(1.0)  # params_new = params - grad: the update exposes the gradient
    result = run_step(mse, params, tx, batch, num_microbatches=num_microbatches)
    np.testing.assert_allclose(params["w"] - result.params["w"], analytic_grad(params, batch), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.metrics["loss"], mse(params, batch), rtol=1e-6)
    np.testing.assert_allclose(result.metrics["grad_norm"], np.linalg.norm(analytic_grad(params, batch)), rtol=1e-5)


def test_one_microbatch_is_the_plain_value_and_grad_update(problem):
    """num_microbatches=1 is exactly (bitwise) value_and_grad -> tx.update -> apply_updates."""
    batch, params = problem
    tx = optax.adam(0.1)
    loss, grads = jax.value_and_grad(mse)(params, batch)
    updates, opt_state = tx.update(grads, tx.init(params), params)
    result = gradient_step(mse, params, tx.init(params), tx, batch)
    np.testing.assert_array_equal(result.params["w"], optax.apply_updates(params, updates)["w"])
    np.testing.assert_array_equal(result.opt_state[0].mu["w"], opt_state[0].mu["w"])
    assert result.metrics["loss"] == loss


def test_aux_is_put_back_in_batch_order(problem):
    batch, params = problem

    def loss_fn(params, batch):
        pred = batch["x"] @ params["w"]  # [batch]
        return jnp.mean((pred - batch["y"]) ** 2), {"pred": pred, "mean_pred": jnp.mean(pred)}

    tx = optax.sgd(0.1)
    full = run_step(loss_fn, params, tx, batch, has_aux=True)
    accumulated = run_step(loss_fn, params, tx, batch, has_aux=True, num_microbatches=4)
    expected = batch["x"] @ params["w"]
    np.testing.assert_allclose(full.aux["pred"], expected, rtol=1e-6)
    np.testing.assert_allclose(accumulated.aux["pred"], expected, rtol=1e-6)
    np.testing.assert_allclose(accumulated.aux["mean_pred"], jnp.mean(expected), rtol=1e-5)


def test_split_and_merge_are_inverse_and_strided():
    batch = jnp.arange(12).reshape(6, 2)
    micro = split_microbatches(batch, 3)  # [3, 2, 2]
    np.testing.assert_array_equal(micro[1], batch[1::3])
    np.testing.assert_array_equal(merge_microbatches(micro), batch)
    with pytest.raises(ValueError, match="num_microbatches=4"):
        split_microbatches(batch, 4)


def test_collections_are_threaded_through_the_microbatches(problem):
    batch, params = problem

    def loss_fn(params, batch, collections):
        seen = {"count": collections["count"] + batch["y"].shape[0], "sum": collections["sum"] + jnp.sum(batch["y"])}
        return mse(params, batch), seen

    tx = optax.sgd(0.1)
    start = {"count": jnp.zeros((), jnp.int32), "sum": jnp.zeros(())}
    for n in (1, 4):
        result = run_step(loss_fn, params, tx, batch, collections=start, num_microbatches=n)
        assert int(result.collections["count"]) == B  # every microbatch updated them, in turn
        np.testing.assert_allclose(result.collections["sum"], jnp.sum(batch["y"]), rtol=1e-6)
        assert result.aux is None


def test_flax_batch_stats_match_a_direct_mutable_apply(problem):
    batch, _ = problem
    model = nn.Sequential([nn.Dense(2), nn.BatchNorm(use_running_average=False, momentum=0.5)])
    variables = jax.jit(model.init)(jax.random.key(0), batch["x"])

    def loss_fn(params, batch, collections):
        out, updates = model.apply({"params": params, "batch_stats": collections}, batch["x"],
                                   mutable=["batch_stats"])
        return jnp.mean(out ** 2), (out, updates["batch_stats"])

    tx = optax.sgd(0.1)
    result = run_step(loss_fn, variables["params"], tx, batch, has_aux=True,
                           collections=variables["batch_stats"])
    out, updates = jax.jit(lambda v, x: model.apply(v, x, mutable=["batch_stats"]))(variables, batch["x"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), result.collections, updates["batch_stats"])
    np.testing.assert_allclose(result.aux, out, rtol=1e-6)
    hidden = batch["x"] @ variables["params"]["layers_0"]["kernel"] + variables["params"]["layers_0"]["bias"]
    np.testing.assert_allclose(result.collections["layers_1"]["mean"], 0.5 * jnp.mean(hidden, 0), rtol=1e-5)


def test_rng_is_passed_through_and_folded_per_microbatch(problem):
    batch, params = problem
    key = jax.random.key(3)

    def loss_fn(params, batch, rng):
        return mse(params, batch), jax.random.key_data(rng)[None]  # [1, 2]: per microbatch

    tx = optax.sgd(0.1)
    one = run_step(loss_fn, params, tx, batch, has_aux=True, rng=key)
    np.testing.assert_array_equal(one.aux[0], jax.random.key_data(key))
    two = run_step(loss_fn, params, tx, batch, has_aux=True, rng=key, num_microbatches=2)
    np.testing.assert_array_equal(two.aux, jnp.stack([jax.random.key_data(jax.random.fold_in(key, k))
                                                      for k in range(2)]))


def test_learning_rate_metric_and_loss_for_the_optimizer(problem):
    batch, params = problem
    schedule = optax.linear_schedule(1.0, 0.0, 10)
    tx = optax.sgd(schedule)
    result = run_step(mse, params, tx, batch, schedule=schedule, step=jnp.int32(4))
    assert float(result.metrics["learning_rate"]) == pytest.approx(0.6)
    assert "learning_rate" not in run_step(mse, params, tx, batch).metrics
    with pytest.raises(ValueError, match="needs the step"):
        run_step(mse, params, tx, batch, schedule=schedule)

    def update(updates, state, params=None, *, value, **extra):
        return updates, value  # the state records the loss it was given

    recorder = optax.GradientTransformationExtraArgs(lambda params: jnp.zeros(()), update)
    result = run_step(mse, params, recorder, batch, optimizer_takes_loss=True)
    assert result.opt_state == result.metrics["loss"]
