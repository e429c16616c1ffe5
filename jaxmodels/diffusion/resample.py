"""Timestep samplers for training: uniform, and improved DDPM's importance sampling of L_vlb.

Improved DDPM (Nichol & Dhariwal 2021, sec. 3.3, eq. 18): L_vlb = E_{t ~ p_t}[L_t / p_t] with
p_t proportional to sqrt(E[L_t^2]), estimated from the last 10 values of each L_t; until every t has
10 values, t is sampled uniformly. The official ``LossSecondMomentResampler`` also mixes in a
uniform probability of 0.001 (``uniform_prob``) so that no p_t is zero.

The state is a pytree kept in the train state (so it is checkpointed and sharded like the rest):
``{"history": [T, H] float32, "count": [T] int32}``; :func:`update` is jittable. Within a batch,
losses for the same t are written in batch order, as the official per-example loop does.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

HISTORY_PER_TERM = 10
UNIFORM_PROB = 0.001


def init_state(num_timesteps: int, history_per_term: int = HISTORY_PER_TERM) -> dict:
    return {"history": jnp.zeros((num_timesteps, history_per_term), jnp.float32),
            "count": jnp.zeros((num_timesteps,), jnp.int32)}


def weights(state: dict, uniform_prob: float = UNIFORM_PROB) -> jax.Array:
    """p_t: uniform until warmed up, then sqrt(mean L_t^2) normalised, mixed with ``uniform_prob``."""
    history, count = state["history"], state["count"]
    num_timesteps, per_term = history.shape
    warmed_up = jnp.all(count >= per_term)
    w = jnp.sqrt(jnp.mean(history ** 2, axis=-1))
    w = w / jnp.sum(w)
    w = w * (1.0 - uniform_prob) + uniform_prob / num_timesteps
    return jnp.where(warmed_up, w, jnp.full_like(w, 1.0 / num_timesteps))


def sample(rng: jax.Array, batch_size: int, probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(t [B] int32, importance weights 1 / (T p_t) [B])."""
    t = jax.random.choice(rng, probs.shape[0], (batch_size,), p=probs).astype(jnp.int32)
    return t, 1.0 / (probs.shape[0] * probs[t])


def sample_uniform(rng: jax.Array, batch_size: int, num_timesteps: int) -> tuple[jax.Array, jax.Array]:
    t = jax.random.randint(rng, (batch_size,), 0, num_timesteps, jnp.int32)
    return t, jnp.ones((batch_size,), jnp.float32)


def update(state: dict, t: jax.Array, losses: jax.Array) -> dict:
    """Records per-example losses L_t (before importance weighting) in each t's history."""
    per_term = state["history"].shape[1]

    def record(carry, item):
        history, count = carry
        step, loss = item
        row = history[step]
        full = count[step] >= per_term
        shifted = jnp.concatenate([row[1:], loss[None]])  # drop the oldest, append
        written = row.at[jnp.minimum(count[step], per_term - 1)].set(loss)
        history = history.at[step].set(jnp.where(full, shifted, written))
        return (history, count.at[step].add(jnp.where(full, 0, 1))), None

    (history, count), _ = jax.lax.scan(record, (state["history"], state["count"]),
                                       (t.astype(jnp.int32), jax.lax.stop_gradient(losses).astype(jnp.float32)))
    return {"history": history, "count": count}
