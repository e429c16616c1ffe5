"""The generic training loop: sharded jitted steps, eval, async checkpoints, resume, metrics.

An experiment hands the loop its own state and step functions (an :class:`Experiment`), so
supervised training, GAN-style alternating updates, critic/adversary steps, RL rollouts and
contrastive pre-training all run through this one loop: the loop never looks inside the state
beyond what ``init_state`` and ``train_step`` define.

What the loop does (config keys in brackets):
  * builds the mesh [mesh], derives state shardings from the parameters' logical axis names and
    creates the state with ``jax.jit(init, out_shardings=...)`` -- or, when ``workdir`` already
    holds a checkpoint, restores the latest one (state and data-iterator position) onto the mesh;
  * runs ``train_step`` under ``jax.jit`` with ``in_shardings``/``out_shardings`` and the state
    donated [num_train_steps];
  * averages the step metrics and writes them to TensorBoard, ``metrics.jsonl`` and a console
    progress line with steps/s and ETA [log_every_steps];
  * evaluates [eval_every_steps] and saves async checkpoints, keeping N [checkpoint_every_steps,
    keep_checkpoints];
  * stops with :class:`NonFiniteLossError` naming the step when the loss is NaN/inf; every saved
    checkpoint precedes that step (a step's loss is checked before its state is saved);
  * on SIGTERM (or a multi-host preemption notice) saves a checkpoint and returns cleanly.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import signal
import threading
from typing import Any, Callable, Iterable, Iterator, Mapping

import flax.linen as nn
import jax
import numpy as np

from jaxmodels.training import mesh as mesh_lib
from jaxmodels.training.checkpoint import Checkpoints, config_to_json_dict, iterator_is_checkpointable
from jaxmodels.training.metrics import MetricWriter, ProgressLine
from jaxmodels.training.partitioning import LOGICAL_AXIS_RULES

PyTree = Any
Metrics = Mapping[str, jax.Array]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, loss: float, last_checkpoint: int | None, workdir: str):
        self.step, self.loss, self.last_checkpoint = step, loss, last_checkpoint
        where = (f"the last good checkpoint is step {last_checkpoint} in {workdir}" if last_checkpoint
                 else "no checkpoint was saved before it")
        super().__init__(f"Non-finite loss ({loss}) at step {step}; training stopped; {where}.")


@dataclasses.dataclass
class Experiment:
    """What one experiment gives the generic loop.

    Attributes:
      init_state: ``rng -> state``; a pytree whose parameters may carry ``nn.Partitioned`` logical
        axis names (they decide the shardings); returned unboxed by the loop.
      train_step: ``(state, batch) -> (state, metrics)``; pure and jittable; ``metrics["loss"]``
        is required, every metric is a scalar averaged over the batch.
      train_iter: an iterator of this process's numpy batches (dicts of arrays with a leading batch
        axis). If it has ``get_state``/``set_state`` (grain iterators do), its position is saved
        with each checkpoint and restored on resume.
      eval_step: ``(state, batch) -> sums``; sums of per-example metrics over the batch plus
        ``"count"``, the number of real (unpadded) examples; the loop reports ``sum / count``.
      eval_iter_fn: ``() -> iterable`` of evaluation batches (fixed batch size, padded with a mask).
      warm_start: optional ``state -> state`` run once on a fresh start (not on resume), on the host,
        with the freshly initialised state; it returns the state with pretrained weights put in
        (same tree, shapes and dtypes), which the loop then places with the state's shardings.
        Fine-tuning and continued pretraining load their initial checkpoint this way, so large
        weights never become constants of a compiled init function.
      eval_metrics_fn: optional ``(step, state) -> {name: float}``, run after ``eval_step``'s pass, for
        metrics that need host-side decoding of whole predictions (entity F1, exact match); they are
        merged into the eval metrics (written, printed and passed to ``on_eval``).
      on_eval: optional ``(step, state, eval_metrics) -> bool | None`` hook run after each eval (on
        every process; write files on process 0 only). Returning True stops training early (e.g.
        early stopping on a validation loss): the loop saves a checkpoint and returns.
    """

    init_state: Callable[[jax.Array], PyTree]
    train_step: Callable[[PyTree, PyTree], tuple[PyTree, Metrics]]
    train_iter: Iterator[PyTree]
    eval_step: Callable[[PyTree, PyTree], Metrics] | None = None
    eval_iter_fn: Callable[[], Iterable[PyTree]] | None = None
    warm_start: Callable[[PyTree], PyTree] | None = None
    eval_metrics_fn: Callable[[int, PyTree], Mapping[str, float]] | None = None
    on_eval: Callable[[int, PyTree, Mapping[str, float]], bool | None] | None = None
    rules: tuple = LOGICAL_AXIS_RULES


@dataclasses.dataclass
class TrainResult:
    state: PyTree
    step: int
    eval_metrics: dict[str, float]
    preempted: bool
    mesh: jax.sharding.Mesh
    stopped_early: bool = False


class _StopSignal:
    """Turns SIGTERM into a flag the loop polls, so the loop can checkpoint and exit cleanly."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _Prefetcher:
    """Reads host batches on a background thread, ``size`` ahead of the training step.

    Each batch comes paired with the iterator's state *after* it, so a checkpoint records the
    position of the last batch the step consumed, not of the batches read ahead.
    """

    def __init__(self, iterator, size: int = 2):
        self._iterator = iterator
        self._with_state = iterator_is_checkpointable(iterator)
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="batch_prefetch", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                batch = next(self._iterator)
                item = (batch, self._iterator.get_state() if self._with_state else None)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as error:  # surfaced in the training thread by next()
            self._queue.put((error, None))

    def next(self) -> tuple[PyTree, dict | None]:
        batch, state = self._queue.get()
        if isinstance(batch, BaseException):
            raise batch
        return batch, state

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _with_rules(fn, rules):
    def wrapped(*args):
        with nn.logical_axis_rules(rules):
            return fn(*args)
    return wrapped


def _mean_metrics(history: list[Metrics]) -> dict[str, float]:
    fetched = jax.device_get(history)
    return {name: float(np.mean([m[name] for m in fetched])) for name in fetched[0]}


def _write_run_config(workdir: str, config) -> None:
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(config_to_json_dict(config), f, indent=2, sort_keys=True)


def evaluate(eval_fn, state: PyTree, batches: Iterable[PyTree], batch_sharding) -> dict[str, float]:
    """Sums ``eval_fn`` over all batches on device, then divides by ``count`` once on the host."""
    totals = None
    for batch in batches:
        sums = eval_fn(state, mesh_lib.host_local_to_global(batch, batch_sharding))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    if totals is None:
        raise ValueError("The evaluation iterator yielded no batches.")
    totals = jax.device_get(totals)
    count = float(totals.pop("count"))
    return {name: float(value) / max(count, 1.0) for name, value in totals.items()}


def train(experiment: Experiment, config, workdir: str) -> TrainResult:
    """Trains ``experiment`` for ``config.num_train_steps`` in ``workdir`` (resuming if possible)."""
    workdir = os.fspath(workdir)
    total_steps = int(config.num_train_steps)
    log_every = int(config.get("log_every_steps", 50))
    eval_every = int(config.get("eval_every_steps", 0))
    ckpt_every = int(config.get("checkpoint_every_steps", 0))
    eval_log_every = int(config.get("eval_log_every", 1))  # print every n-th eval (all are written)

    mesh = mesh_lib.make_mesh(config.get("mesh", {"data": -1}))
    batch_sharding = mesh_lib.batch_sharding(mesh)
    rng = jax.random.PRNGKey(int(config.get("seed", 0)))
    init_fn = experiment.init_state  # no rules context: shardings come from the explicit rules below
    checkpoints = Checkpoints(workdir, max_to_keep=int(config.get("keep_checkpoints", 3)),
                              async_save=bool(config.get("async_checkpoints", True)))
    writer = MetricWriter(workdir)
    _write_run_config(workdir, config)

    with jax.set_mesh(mesh):
        start_step = checkpoints.latest_step()
        resumed = start_step is not None
        if not resumed:
            start_step = 0
            state, shardings = mesh_lib.create_sharded_state(init_fn, rng, mesh, experiment.rules)
            if experiment.warm_start is not None:
                state = jax.device_put(experiment.warm_start(state), shardings)
        else:
            shardings = mesh_lib.state_shardings(jax.eval_shape(init_fn, rng), mesh, experiment.rules)
            abstract = mesh_lib.abstract_state(init_fn, rng, shardings)
            state = checkpoints.restore(start_step, abstract, experiment.train_iter)

        replicated = mesh_lib.replicated(mesh)
        step_fn = jax.jit(_with_rules(experiment.train_step, experiment.rules),
                          in_shardings=(shardings, batch_sharding),
                          out_shardings=(shardings, replicated), donate_argnums=(0,))
        eval_fn = None
        if experiment.eval_step is not None:
            eval_fn = jax.jit(_with_rules(experiment.eval_step, experiment.rules),
                              in_shardings=(shardings, batch_sharding), out_shardings=replicated)

        progress = ProgressLine(total_steps, start_step)
        if resumed:
            progress.print(f"Resumed from {checkpoints.directory}/{start_step}")
        last_saved = checkpoints.latest_step()
        history: list[Metrics] = []
        eval_metrics: dict[str, float] = {}
        preempted = stopped_early = False

        def check_finite(at_step: int, metrics: Metrics) -> None:
            loss = float(jax.device_get(metrics["loss"]))
            if not math.isfinite(loss):
                prefetcher.close()
                checkpoints.wait_until_finished()
                writer.close()
                raise NonFiniteLossError(at_step, loss, last_saved, workdir)

        def run_eval(at_step: int) -> bool:
            nonlocal eval_metrics
            eval_metrics = evaluate(eval_fn, state, experiment.eval_iter_fn(), batch_sharding)
            if experiment.eval_metrics_fn is not None:
                eval_metrics.update({k: float(v) for k, v in experiment.eval_metrics_fn(at_step, state).items()})
            writer.write_scalars(at_step, {f"eval/{k}": v for k, v in eval_metrics.items()})
            if at_step == total_steps or not eval_every or (at_step // eval_every) % max(eval_log_every, 1) == 0:
                progress.print(f"eval @ step {at_step}: " + ", ".join(f"{k} {v:.4f}" for k, v in eval_metrics.items()))
            if experiment.on_eval is not None:
                return bool(experiment.on_eval(at_step, state, eval_metrics))
            return False

        prefetcher = _Prefetcher(experiment.train_iter, size=int(config.get("prefetch_batches", 2)))
        with _StopSignal() as stop:
            step = start_step
            previous: tuple[int, Metrics] | None = None
            while step < total_steps:
                host_batch, data_state = prefetcher.next()
                batch = mesh_lib.host_local_to_global(host_batch, batch_sharding)
                state, metrics = step_fn(state, batch)
                step += 1
                if previous is not None:  # checked one step late, so the device never waits on the host
                    check_finite(*previous)
                previous = (step, metrics)
                history.append(metrics)

                if step % log_every == 0 or step == total_steps:
                    check_finite(step, metrics)
                    scalars = _mean_metrics(history)
                    history = []
                    rate = progress.steps_per_second(step)
                    writer.write_scalars(step, {**{f"train/{k}": v for k, v in scalars.items()},
                                                "train/steps_per_second": rate})
                    progress.print(progress.line(step, scalars, rate))
                if eval_fn is not None and eval_every and step % eval_every == 0 and step < total_steps:
                    stopped_early = run_eval(step)
                stop_now = stop.requested or (jax.process_count() > 1 and checkpoints.reached_preemption(step))
                if (ckpt_every and step % ckpt_every == 0) or step == total_steps or stop_now or stopped_early:
                    check_finite(step, metrics)
                    if checkpoints.save(step, state, config, data_state, force=True):
                        last_saved = step
                if stop_now:
                    preempted = True
                    progress.print(f"Stop requested: saved checkpoint at step {step}; exiting.")
                    break
                if stopped_early:
                    progress.print(f"Stopped early at step {step} (on_eval asked to stop); checkpoint saved.")
                    break
        prefetcher.close()

        if eval_fn is not None and not preempted and not stopped_early:
            run_eval(step)
        checkpoints.wait_until_finished()
        checkpoints.close()
        writer.close()
    return TrainResult(state=state, step=step, eval_metrics=eval_metrics, preempted=preempted, mesh=mesh,
                       stopped_early=stopped_early)
