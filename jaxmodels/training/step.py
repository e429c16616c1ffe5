"""One optimiser step on a loss: value_and_grad, optional gradient accumulation, optax update.

Every experiment's train step differs in its loss and metrics, not in how a loss becomes an update;
``gradient_step`` is that shared part:

  1. loss and gradients of ``loss_fn`` at ``params`` (with auxiliary outputs and mutable
     collections such as BatchNorm's ``batch_stats``);
  2. with ``num_microbatches = n > 1``, the batch is split into n equal microbatches that run one
     after another under ``lax.scan`` and the gradients are averaged: for a loss that is a mean over
     examples, mean_k grad L_k = grad L (the full-batch gradient, up to float rounding) at 1/n of
     the activation memory;
  3. ``tx.update`` and ``optax.apply_updates``;
  4. the standard metrics: ``loss``, ``grad_norm`` (global L2 norm of the gradient the optimiser
     receives, before any clipping in ``tx``) and, given a schedule, ``learning_rate``.

The loss function is called as ``loss_fn(params, batch, **extras)`` where ``extras`` has
``collections=`` when mutable collections are given and ``rng=`` when an rng is given. It returns

  =================  ==============  =================================
                     no collections  with collections
  =================  ==============  =================================
  ``has_aux=False``  loss            (loss, new_collections)
  ``has_aux=True``   (loss, aux)     (loss, (aux, new_collections))
  =================  ==============  =================================

(the second row with collections is Flax's ``mutable=[...]`` idiom).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any


class StepResult(NamedTuple):
    """What :func:`gradient_step` returns.

    Attributes:
      params: the updated parameters.
      opt_state: the updated optimiser state.
      metrics: ``loss`` (mean over microbatches), ``grad_norm`` and, given a schedule,
        ``learning_rate`` (the rate of this step).
      aux: what ``loss_fn`` returned beside the loss (None without ``has_aux``). With
        microbatches, scalar leaves are averaged over the microbatches and array leaves are taken to
        be per-example and put back into batch order, so ``aux`` looks as if from one full batch.
      collections: the mutable collections after the step (None when none were given). With
        microbatches they are threaded through the microbatches in turn (running BatchNorm
        statistics are updated once per microbatch, as in PyTorch's gradient accumulation).
    """
    params: PyTree
    opt_state: optax.OptState
    metrics: dict[str, jax.Array]
    aux: Any
    collections: PyTree


def _uniform_loss_fn(loss_fn: Callable, has_aux: bool, with_collections: bool, with_rng: bool) -> Callable:
    """``loss_fn`` as ``(params, batch, collections, rng) -> (loss, (aux, collections))``."""
    def uniform(params, batch, collections, rng):
        extras = {}
        if with_collections:
            extras["collections"] = collections
        if with_rng:
            extras["rng"] = rng
        out = loss_fn(params, batch, **extras)
        if not has_aux and not with_collections:
            return out, (None, collections)
        loss, rest = out
        if not with_collections:
            return loss, (rest, collections)
        return (loss, rest) if has_aux else (loss, (None, rest))
    return uniform


def split_microbatches(batch: PyTree, num_microbatches: int) -> PyTree:
    """Every leaf ``[B, ...]`` -> ``[n, B / n, ...]``; microbatch k holds examples k, k + n, k + 2n, ...

    The strided split keeps the leading (device-sharded) axis of each microbatch spread over all
    devices, where a contiguous split would put whole microbatches on single devices.
    """
    def split(x):
        if x.shape[0] % num_microbatches:
            raise ValueError(f"batch leaf of shape {x.shape}: leading axis not divisible by "
                             f"num_microbatches={num_microbatches}")
        x = x.reshape(x.shape[0] // num_microbatches, num_microbatches, *x.shape[1:])  # [B/n, n, ...]
        return jnp.swapaxes(x, 0, 1)  # [n, B/n, ...]
    return jax.tree.map(split, batch)


def merge_microbatches(stacked: PyTree) -> PyTree:
    """Inverse of :func:`split_microbatches` for per-example leaves ``[n, B/n, ...]``; scalars ``[n]`` -> mean."""
    def merge(x):
        if x.ndim == 1:
            return jnp.mean(x, axis=0)
        return jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])  # [B, ...]
    return jax.tree.map(merge, stacked)


def _accumulated(value_and_grad: Callable, params, batch, collections, rng, num_microbatches: int):
    """Mean loss and gradient over ``num_microbatches`` run in turn with ``lax.scan``."""
    def accumulate(carry, inputs):
        grad_sum, collections = carry
        index, microbatch = inputs
        micro_rng = None if rng is None else jax.random.fold_in(rng, index)
        (loss, (aux, collections)), grads = value_and_grad(params, microbatch, collections, micro_rng)
        grad_sum = jax.tree.map(lambda s, g: s + g.astype(s.dtype), grad_sum, grads)
        return (grad_sum, collections), (loss, aux)

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.promote_types(p.dtype, jnp.float32)), params)
    inputs = (jnp.arange(num_microbatches), split_microbatches(batch, num_microbatches))
    (grad_sum, collections), (losses, aux) = jax.lax.scan(accumulate, (zeros, collections), inputs)
    grads = jax.tree.map(lambda s, p: (s / num_microbatches).astype(p.dtype), grad_sum, params)
    return (jnp.mean(losses), (merge_microbatches(aux), collections)), grads


def gradient_step(loss_fn: Callable, params: PyTree, opt_state: optax.OptState, tx: optax.GradientTransformation,
                  batch: PyTree, *, has_aux: bool = False, collections: PyTree = None, rng: jax.Array | None = None,
                  num_microbatches: int = 1, schedule: optax.Schedule | None = None, step: jax.Array | None = None,
                  optimizer_takes_loss: bool = False) -> StepResult:
    """One optimiser step of ``tx`` on ``loss_fn`` at ``params`` over ``batch`` (module docstring).

    Args:
      loss_fn: the loss, called as ``loss_fn(params, batch[, collections=...][, rng=...])``.
      params, opt_state, tx: the parameters, the optimiser state and the optax transformation.
      batch: a pytree of arrays with a leading batch axis (split when ``num_microbatches > 1``).
      has_aux: ``loss_fn`` returns auxiliary outputs beside the loss.
      collections: mutable collections (e.g. ``batch_stats``) passed to ``loss_fn`` and returned updated.
      rng: passed to ``loss_fn`` as ``rng`` (with microbatches, ``fold_in(rng, k)`` for microbatch k).
      num_microbatches: gradient accumulation over this many equal microbatches (1 = off).
      schedule, step: the learning-rate schedule and the step it is read at, for the metric.
      optimizer_takes_loss: call ``tx.update(..., value=loss)``, for transforms that need the loss
        (``optax.contrib.reduce_on_plateau``).
    """
    if num_microbatches < 1:
        raise ValueError(f"num_microbatches={num_microbatches} must be >= 1")
    if schedule is not None and step is None:
        raise ValueError("gradient_step: a schedule needs the step to read the learning rate at")
    uniform = _uniform_loss_fn(loss_fn, has_aux, collections is not None, rng is not None)
    value_and_grad = jax.value_and_grad(uniform, has_aux=True)
    if num_microbatches == 1:
        (loss, (aux, collections)), grads = value_and_grad(params, batch, collections, rng)
    else:
        (loss, (aux, collections)), grads = _accumulated(value_and_grad, params, batch, collections, rng,
                                                         num_microbatches)
    extra = {"value": loss} if optimizer_takes_loss else {}
    updates, opt_state = tx.update(grads, opt_state, params, **extra)
    params = optax.apply_updates(params, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
    if schedule is not None:
        metrics["learning_rate"] = schedule(step)
    return StepResult(params, opt_state, metrics, aux, collections)
