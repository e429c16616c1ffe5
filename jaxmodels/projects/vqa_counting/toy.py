"""The counting toy experiment (Zhang et al., ICLR 2018, sec. 5.1 and fig. 3; official ``toy/``).

Two models see the same batches of :func:`jaxmodels.projects.vqa_counting.toy_data.toy_batch`:

* ``ToyCounter``: the counting component on the (already sigmoided) weights, then Linear(11 -> 11)
  initialised to the identity (official ``toy/model.py:Net``);
* ``ToyBaseline``: the sum of the weights, turned into the same interpolated one-hot, then the same
  Linear (``toy/model.py:Baseline``).

Each is trained with cross-entropy over the 11 counts, Adam 0.01, batch 1024, for 1000 iterations,
then evaluated on 200 fresh batches (accuracy of the argmax). The figure sweeps the side length l
and the noise q over 101 values in [0, 1] each, with the other parameter at 0 ("easy") or 0.5
("hard"). One sweep point is a pure function of its key, l and q (:func:`train_point`), so a chunk
of points trains as one ``jit(vmap(...))``; :func:`run_sweeps` writes results after every chunk and
skips finished points when restarted in the same run directory.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmodels.projects.vqa_counting.toy_data import toy_batch
from jaxmodels.training.files import atomic_write_json
from jaxmodels.training.metrics import console
from jaxmodels.training.step import gradient_step
from jaxmodels.vqa.counting import Counter, piecewise_linear, to_one_hot


def _identity_kernel(key, shape, dtype=jnp.float32):
    del key
    return jnp.eye(shape[0], shape[1], dtype=dtype)


def _torch_linear_bias(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in)  # torch.nn.Linear's default bias init

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


class ToyCounter(nn.Module):
    objects: int = 10
    pieces: int = 16

    @nn.compact
    def __call__(self, boxes: jax.Array, attention: jax.Array) -> jax.Array:
        features = Counter(self.objects, self.pieces, already_sigmoided=True, name="counter")(boxes, attention)
        return nn.Dense(self.objects + 1, kernel_init=_identity_kernel,
                        bias_init=_torch_linear_bias(self.objects + 1), name="classifier")(features)


class ToyBaseline(nn.Module):
    objects: int = 10

    @nn.compact
    def __call__(self, boxes: jax.Array, attention: jax.Array) -> jax.Array:
        del boxes
        features = to_one_hot(jnp.sum(attention, axis=-1), self.objects)
        return nn.Dense(self.objects + 1, kernel_init=_identity_kernel,
                        bias_init=_torch_linear_bias(self.objects + 1), name="classifier")(features)


@dataclasses.dataclass(frozen=True)
class ToySettings:
    objects: int = 10
    pieces: int = 16
    batch_size: int = 1024
    learning_rate: float = 0.01
    train_iterations: int = 1000
    eval_batches: int = 200

    @classmethod
    def from_config(cls, config) -> "ToySettings":
        return cls(objects=int(config.objects), pieces=int(config.pieces), batch_size=int(config.batch_size),
                   learning_rate=float(config.learning_rate), train_iterations=int(config.train_iterations),
                   eval_batches=int(config.eval_batches))


def train_point(key: jax.Array, side, noise, settings: ToySettings) -> dict[str, jax.Array]:
    """Trains the counter model and the baseline at one (l, q) and evaluates both.

    Returns accuracies (``counter``, ``baseline``), the final training losses and the counter's
    learned piecewise-linear weights ``f_weights`` [8, pieces] (w_1..w_d, unnormalised).
    """
    models = (ToyCounter(settings.objects, settings.pieces), ToyBaseline(settings.objects))
    init_key, data_key, eval_key = jax.random.split(key, 3)
    probe = toy_batch(init_key, 2, side, noise, settings.objects)
    params = tuple(m.init(k, probe["boxes"], probe["attention"])["params"]
                   for m, k in zip(models, jax.random.split(init_key, 2)))
    tx = optax.adam(settings.learning_rate)
    opt_states = tuple(tx.init(p) for p in params)

    def loss_fn(p, batch, *, model):
        logits = model.apply({"params": p}, batch["boxes"], batch["attention"])
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["count"]))

    def train_step(carry, i):
        params, opt_states = carry
        batch = toy_batch(jax.random.fold_in(data_key, i), settings.batch_size, side, noise, settings.objects)
        new_params, new_states, losses = [], [], []
        for model, p, s in zip(models, params, opt_states):
            result = gradient_step(functools.partial(loss_fn, model=model), p, s, tx, batch)
            new_params.append(result.params)
            new_states.append(result.opt_state)
            losses.append(result.metrics["loss"])
        return (tuple(new_params), tuple(new_states)), jnp.stack(losses)

    (params, _), losses = jax.lax.scan(train_step, (params, opt_states), jnp.arange(settings.train_iterations))

    def eval_step(correct, i):
        batch = toy_batch(jax.random.fold_in(eval_key, i), settings.batch_size, side, noise, settings.objects)
        hits = [jnp.sum(jnp.argmax(m.apply({"params": p}, batch["boxes"], batch["attention"]), -1) == batch["count"])
                for m, p in zip(models, params)]
        return correct + jnp.stack(hits).astype(jnp.float32), None

    correct, _ = jax.lax.scan(eval_step, jnp.zeros(2), jnp.arange(settings.eval_batches))
    accuracy = correct / (settings.eval_batches * settings.batch_size)
    counter = params[0]["counter"]
    f_weights = jnp.stack([counter[f"f_{i}"]["weight"] for i in range(8)])
    return {"counter": accuracy[0], "baseline": accuracy[1], "final_loss_counter": losses[-1, 0],
            "final_loss_baseline": losses[-1, 1], "f_weights": f_weights}


@functools.lru_cache(maxsize=None)
def _compiled_chunk(settings: ToySettings):
    return jax.jit(jax.vmap(functools.partial(train_point, settings=settings)))


def train_points(keys: jax.Array, sides, noises, settings: ToySettings) -> dict[str, np.ndarray]:
    """Trains a chunk of sweep points at once (``jit(vmap(train_point))``); numpy results."""
    out = _compiled_chunk(settings)(keys, jnp.asarray(sides, jnp.float32), jnp.asarray(noises, jnp.float32))
    return jax.device_get(out)


def sweep_points(config) -> list[dict[str, Any]]:
    """Every (setting, swept parameter, value) of the figure, in a fixed order, with its seed index."""
    values = np.linspace(0.0, 1.0, int(config.resolution))
    points = []
    for setting, base in config.settings.items():
        for param in config.sweep:
            if param not in ("side", "noise"):
                raise ValueError(f"config.sweep: {param!r} is not a toy-task parameter (side, noise)")
            for index, value in enumerate(values):
                point = {"setting": setting, "param": param, "index": index,
                         "side": float(base), "noise": float(base)}
                point[param] = float(value)
                points.append(point)
    return points


def _point_key(point) -> str:
    return f"{point['setting']}/{point['param']}/{point['index']}"


def _load_results(path: str) -> dict[str, dict]:
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)["points"]
    except (json.JSONDecodeError, KeyError) as error:
        raise ValueError(f"{path}: not a counting-toy results file ({error}); move it away to start afresh") from error


def run_sweeps(config, workdir: str, *, log=console) -> dict[str, dict]:
    """Runs (or resumes) every sweep point of ``config`` and writes the results and figures.

    ``workdir`` gets ``results.json`` (every point: l, q, both accuracies, losses, learned f weights;
    rewritten atomically after every chunk, so an interrupted run resumes at the first unfinished
    chunk), ``accuracy_curves.png``, ``accuracy_table.md``, ``learned_functions.png``, ``config.json``
    and TensorBoard/``metrics.jsonl`` scalars (one step per sweep point).
    """
    from jaxmodels.training.checkpoint import config_to_json_dict
    from jaxmodels.training.metrics import MetricWriter

    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config_to_json_dict(config), f, indent=2, sort_keys=True)
    settings = ToySettings.from_config(config)
    results_path = os.path.join(workdir, "results.json")
    done = _load_results(results_path)
    points = sweep_points(config)
    todo = [p for p in points if _point_key(p) not in done]
    if done:
        log(f"Resuming: {len(points) - len(todo)} of {len(points)} sweep points already in {results_path}")
    chunk = max(1, int(config.chunk_size))
    base_key = jax.random.PRNGKey(int(config.seed))
    writer = MetricWriter(workdir)
    start = time.time()
    for first in range(0, len(todo), chunk):
        group = todo[first:first + chunk]
        # pad the last chunk to the compiled size (one compilation for the whole sweep)
        padded = group + [group[-1]] * (chunk - len(group))
        keys = jnp.stack([jax.random.fold_in(base_key, points.index(p)) for p in padded])
        out = train_points(keys, [p["side"] for p in padded], [p["noise"] for p in padded], settings)
        for j, point in enumerate(group):
            record = dict(point, counter=float(out["counter"][j]), baseline=float(out["baseline"][j]),
                          final_loss_counter=float(out["final_loss_counter"][j]),
                          final_loss_baseline=float(out["final_loss_baseline"][j]),
                          f_weights=np.asarray(out["f_weights"][j]).round(6).tolist())
            done[_point_key(point)] = record
            writer.write_scalars(points.index(point), {
                f"{point['setting']}_{point['param']}/counter_accuracy": record["counter"],
                f"{point['setting']}_{point['param']}/baseline_accuracy": record["baseline"]})
        atomic_write_json(results_path, {"points": done})
        finished = first + len(group)
        elapsed = time.time() - start
        eta = elapsed / finished * (len(todo) - finished)
        last = done[_point_key(group[-1])]
        log(f"sweep {len(points) - len(todo) + finished}/{len(points)} points | "
            f"{last['setting']} {last['param']}={last[last['param']]:.2f}: counter {last['counter']:.3f}, "
            f"baseline {last['baseline']:.3f} | {elapsed / finished:.1f} s/point | ETA {eta / 60:.1f} min")
    writer.close()
    write_report(done, workdir, config)
    return done


def train_and_evaluate(config, workdir: str) -> dict[str, dict]:
    """What ``train/vqa_counting_toy.py`` runs: :func:`run_sweeps` in ``workdir``, progress on the console."""
    return run_sweeps(config, os.path.abspath(workdir))


def describe(workdir: str, done: Mapping[str, dict]) -> str:
    """The end-of-run console summary: where the table, the figures and the points are."""
    workdir = os.path.abspath(workdir)
    return (f"Accuracy table: {os.path.join(workdir, 'accuracy_table.md')}\n"
            f"Figure:         {os.path.join(workdir, 'accuracy_curves.png')}\n"
            f"Learned f:      {os.path.join(workdir, 'learned_functions.png')}\n"
            f"All points:     {os.path.join(workdir, 'results.json')}")


def ordered_curves(done: Mapping[str, dict], setting: str, param: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = sorted((r for r in done.values() if r["setting"] == setting and r["param"] == param),
                  key=lambda r: r["index"])
    return (np.array([r[param] for r in rows]), np.array([r["counter"] for r in rows]),
            np.array([r["baseline"] for r in rows]))


def accuracy_table(done: Mapping[str, dict], config) -> str:
    """Markdown: accuracy at l or q = 0, 0.1, ..., 1 (nearest sweep values) and the mean over the sweep."""
    lines = []
    for setting, base in config.settings.items():
        for param in config.sweep:
            values, counter, baseline = ordered_curves(done, setting, param)
            if not len(values):
                continue
            other = "q" if param == "side" else "l"
            name = "l" if param == "side" else "q"
            ticks = sorted({int(np.argmin(np.abs(values - t))) for t in np.linspace(0, 1, 11)})
            lines.append(f"**{setting}** ({other} = {base:g}), sweep over {name}:\n")
            lines.append("| model | " + " | ".join(f"{name}={values[i]:.1f}" for i in ticks) + " | mean |")
            lines.append("|---|" + "---|" * (len(ticks) + 1))
            for label, acc in (("counter", counter), ("baseline", baseline)):
                lines.append(f"| {label} | " + " | ".join(f"{100 * acc[i]:.1f}" for i in ticks)
                             + f" | {100 * acc.mean():.1f} |")
            lines.append("")
    return "\n".join(lines)


def f_values(weights, x: np.ndarray) -> np.ndarray:
    return np.asarray(piecewise_linear(jnp.asarray(weights, jnp.float32), jnp.asarray(x, jnp.float32)))


def write_report(done: Mapping[str, dict], workdir: str, config) -> None:
    """``accuracy_curves.png``, ``accuracy_table.md`` and ``learned_functions.png`` in ``workdir``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(os.path.join(workdir, "accuracy_table.md"), "w") as f:
        f.write("# Counting toy task: accuracy (%) after "
                f"{config.train_iterations} iterations, {config.eval_batches} eval batches of {config.batch_size}\n\n")
        f.write(accuracy_table(done, config))

    settings, sweeps = list(config.settings), list(config.sweep)
    fig, axes = plt.subplots(len(settings), len(sweeps), figsize=(4.2 * len(sweeps), 3.2 * len(settings)),
                             squeeze=False)
    for r, setting in enumerate(settings):
        for c, param in enumerate(sweeps):
            ax = axes[r][c]
            values, counter, baseline = ordered_curves(done, setting, param)
            ax.plot(values, counter, label="counting component", color="tab:blue")
            ax.plot(values, baseline, label="baseline (sum of weights)", color="tab:orange")
            other = config.settings[setting]
            ax.set_title(f"{setting}: {'q' if param == 'side' else 'l'} = {other:g}", fontsize=10)
            ax.set_xlabel("side length l" if param == "side" else "noise q")
            ax.set_ylabel("accuracy")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "accuracy_curves.png"), dpi=110)
    plt.close(fig)

    x = np.linspace(0, 1, 201)
    fig, axes = plt.subplots(1, 8, figsize=(20, 2.8))
    for setting, color in zip(settings, ("tab:blue", "tab:red", "tab:green")):
        base = config.settings[setting]
        row = next((r for r in done.values() if r["setting"] == setting and abs(r[r["param"]] - base) < 1e-9), None)
        if row is None:
            continue
        for i, ax in enumerate(axes):
            ax.plot(x, f_values(row["f_weights"][i], x), color=color, label=f"{setting} (l = q = {base:g})")
    for i, ax in enumerate(axes):
        ax.plot(x, x, color="gray", lw=0.6, ls=":")
        ax.set_title(f"f{i + 1} (code f[{i}])", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "learned_functions.png"), dpi=100)
    plt.close(fig)
