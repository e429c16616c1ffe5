"""The PNA multitask benchmark experiment (Corso et al., NeurIPS 2020, sec. 4.1) on the generic loop.

As the official ``multitask_benchmark/util/train.py``: every epoch runs the 10 fixed training
batches (512 graphs of one size each) in order, then evaluates the 5 validation batches; the loss
is the MSE of the normalised labels averaged over the 3 node and 3 graph tasks; Adam with L2 weight
decay (PyTorch ``Adam(weight_decay=...)``); early stopping keeps the parameters of the best
validation epoch and stops after ``patience_epochs`` epochs without improvement; the best model is
then tested. Metrics: per-task MSE with batches weighted equally, reported as log10; the baseline
predicts the training mean.

Run directory (besides the loop's checkpoints/, tensorboard/, metrics.jsonl):
  best/<step>/{state,config}   the best-validation parameters (``jaxmodels.load(<workdir>/best)``)
  results.json, results.md     per-task log10 MSE on every test set, vs the baseline
  results.png                  bar plot of log10 MSE per task
  extrapolation.png            log10(MSE / baseline MSE) vs graph size (with data.extrapolation)
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import ml_collections
import numpy as np

from jaxmodels.projects.pna import multitask_data as mt_data
from jaxmodels.graph import batching, ops
from jaxmodels.graph.models import multitask_from_config as model_from_config
from jaxmodels.training import checkpoint as ckpt_lib
from jaxmodels.training import mesh as mesh_lib
from jaxmodels.training.loop import Experiment, TrainResult, evaluate, train
from jaxmodels.training.metrics import console
from jaxmodels.training.optimizers import build_optimizer
from jaxmodels.training.step import gradient_step

TASKS = mt_data.TASKS


# ----------------------------------------------------------------------------------------------
# data


def batch_to_graphs(batch: mt_data.MultitaskBatch) -> list[jraph.GraphsTuple]:
    """One ``GraphsTuple`` per graph: nodes {features [N,2], targets [N,3]}, globals {targets [1,3]}."""
    return [batching.graph_from_dense(batch.adjacency[b],
                                      nodes={"features": batch.features[b], "targets": batch.node_labels[b]},
                                      globals_={"targets": batch.graph_labels[b][None]})
            for b in range(len(batch))]


def padded_split(batches: list[mt_data.MultitaskBatch], num_shards: int,
                 round_to: int | str = 64) -> tuple[list[jraph.GraphsTuple], batching.PaddingBudget]:
    """This process's shards of every batch of a split, padded to one budget (that of every shard of
    every batch, so all processes compile one step), with a leading shard axis."""
    graph_batches = [batch_to_graphs(b) for b in batches]
    budget = batching.budget_for_batches(graph_batches, num_shards, round_to=round_to)
    return batching.local_batches(graph_batches, budget, num_shards), budget


def train_batches(dataset: mt_data.MultitaskDataset, num_shards: int, *, shuffle: bool, seed: int,
                  **process) -> tuple[batching.FixedBatches, jraph.GraphsTuple]:
    """The official loop's fixed training batches, in order or reshuffled every epoch (this process's
    shards of each; ``process``: ``process_index``/``process_count``, JAX's by default); and one padded
    shard (the first of the first batch) to initialise the model with."""
    graph_batches = [batch_to_graphs(b) for b in dataset.splits["train"]]
    budget = batching.budget_for_batches(graph_batches, num_shards)
    example = jax.tree.map(lambda x: x[0], batching.make_batch(graph_batches[0], budget, num_shards))
    iterator = batching.FixedBatches(graph_batches, budget, num_shards=num_shards, shuffle=shuffle, seed=seed,
                                     **process)
    return iterator, example


# ----------------------------------------------------------------------------------------------
# steps


def _masked_task_mse(model, variables, graph, train: bool, mutable=False):
    """Apply the model on every shard; per-task MSE over real nodes / graphs ([3], [3])."""

    def apply(g):
        if mutable:
            (node_pred, graph_pred), updates = model.apply(variables, g, train=train, mutable=["batch_stats"])
            return node_pred, graph_pred, updates.get("batch_stats", {})
        node_pred, graph_pred = model.apply(variables, g, train=train)
        return node_pred, graph_pred, {}

    node_pred, graph_pred, new_stats = jax.vmap(apply, axis_name=batching.SHARD_AXIS)(graph)
    node_mask = jax.vmap(ops.node_mask)(graph)[..., None]  # [S, nodes, 1]
    graph_mask = jax.vmap(ops.graph_mask)(graph)[..., None]
    node_err = jnp.where(node_mask, (node_pred - graph.nodes["targets"]) ** 2, 0.0)  # padding never leaks
    graph_err = jnp.where(graph_mask, (graph_pred - graph.globals["targets"]) ** 2, 0.0)
    node_mse = node_err.sum((0, 1)) / jnp.maximum(node_mask.sum(), 1.0)
    graph_mse = graph_err.sum((0, 1)) / jnp.maximum(graph_mask.sum(), 1.0)
    return node_mse, graph_mse, jax.tree.map(lambda x: x[0], new_stats)


def total_loss(node_mse, graph_mse):
    """``util.total_loss``: (node MSE x #node tasks + graph MSE x #graph tasks) / #tasks."""
    n, g = node_mse.shape[0], graph_mse.shape[0]
    return (node_mse.mean() * n + graph_mse.mean() * g) / (n + g)


def train_step(state, batch, *, model, tx):
    def loss_fn(params, graph, collections):
        node_mse, graph_mse, new_stats = _masked_task_mse(
            model, {"params": params, "batch_stats": collections}, graph, train=True, mutable=True)
        return total_loss(node_mse, graph_mse), ((node_mse, graph_mse), new_stats)

    result = gradient_step(loss_fn, state["params"], state["opt_state"], tx, batch, has_aux=True,
                           collections=state["batch_stats"])
    new_state = {**state, "step": state["step"] + 1, "params": result.params, "opt_state": result.opt_state,
                 "batch_stats": result.collections if result.collections else state["batch_stats"]}
    return new_state, result.metrics


def eval_step(state, batch, *, model):
    """Per-batch loss and per-task MSE, with ``count`` 1: the loop's mean weights batches equally."""
    node_mse, graph_mse, _ = _masked_task_mse(
        model, {"params": state["params"], "batch_stats": state["batch_stats"]}, batch, train=False)
    mse = jnp.concatenate([node_mse, graph_mse])
    return {"loss": total_loss(node_mse, graph_mse), **{f"mse_{t}": mse[i] for i, t in enumerate(TASKS)},
            "count": jnp.ones((), jnp.float32)}


# ----------------------------------------------------------------------------------------------
# early stopping (the official loop keeps the best validation epoch's weights)


class EarlyStopping:
    """``on_eval`` hook: saves the best-validation variables to ``<workdir>/best`` (Orbax, keep 1) and
    asks the loop to stop after ``patience`` evaluations without improvement. Resumable: the best
    loss and step are read back from ``best/``."""

    def __init__(self, workdir: str, config, patience: int, eval_every: int, metric: str = "loss"):
        import orbax.checkpoint as ocp
        self.config, self.patience, self.eval_every, self.metric = config, patience, eval_every, metric
        self.directory = os.path.join(ckpt_lib.absolute_path(workdir), "best")
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
            item_handlers={"state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})
        self.best, self.best_step = math.inf, None
        latest = self._manager.latest_step()
        if latest is not None:
            meta = self._manager.restore(latest, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            self.best, self.best_step = float(meta["loss"]), int(meta["step"])

    def __call__(self, step: int, state, metrics) -> bool:
        import orbax.checkpoint as ocp
        value = float(metrics[self.metric])
        if value < self.best:
            self.best, self.best_step = value, step
            variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(variables),
                config=ocp.args.JsonSave(ckpt_lib.config_to_json_dict(self.config)),
                meta=ocp.args.JsonSave({"loss": value, "step": step})), force=True)
            return False
        return (step - self.best_step) // self.eval_every >= self.patience

    def restore_best(self, abstract_variables):
        import orbax.checkpoint as ocp
        self._manager.wait_until_finished()
        if self._manager.latest_step() is None:
            return None
        return self._manager.restore(self._manager.latest_step(), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_variables)))["state"]

    def close(self):
        self._manager.wait_until_finished()
        self._manager.close()


# ----------------------------------------------------------------------------------------------
# the experiment


def cache_dir(config, workdir: str | None = None) -> str:
    """Where the generated benchmark is cached: ``config.data.cache_dir``, or ``<workdir>/data`` when
    it is empty (share one cache between the seven models' runs by passing the same directory)."""
    if config.data.cache_dir:
        return os.path.expanduser(config.data.cache_dir)
    if workdir is None:
        raise ValueError("config.data.cache_dir is empty and no workdir was given to cache the benchmark in")
    return os.path.join(workdir, "data")


def load_data(config, workdir: str | None = None) -> mt_data.MultitaskDataset:
    d = config.data
    graphs_per_batch = d.get("graphs_per_batch", None)
    graphs_per_batch = graphs_per_batch.to_dict() if hasattr(graphs_per_batch, "to_dict") else graphs_per_batch
    dataset = mt_data.load_or_generate(cache_dir(config, workdir), seed=int(d.seed), extrapolation=False,
                                       connectivity=d.connectivity, graphs_per_batch=graphs_per_batch)
    return dataset.normalised()


def resolve_config(config, dataset: mt_data.MultitaskDataset) -> ml_collections.ConfigDict:
    """Fills the data-dependent fields: delta, scan lengths, steps per epoch, eval cadence."""
    config = ml_collections.ConfigDict(config.to_dict())
    sizes = [b.num_nodes for split in ("train", "val") for b in dataset.splits[split]]
    if float(config.model.conv_options.get("delta", -1.0)) <= 0:
        config.model.conv_options.delta = dataset.degree_statistics()["log"]
    if int(config.model.max_layers) <= 0:
        config.model.max_layers = max(sizes) // 2
    if int(config.model.max_set2set_steps) <= 0:
        config.model.max_set2set_steps = max(sizes)
    steps_per_epoch = len(dataset.splits["train"])
    config.steps_per_epoch = steps_per_epoch
    config.num_train_steps = int(config.num_epochs) * steps_per_epoch
    config.eval_every_steps = int(config.eval_every_epochs) * steps_per_epoch
    if int(config.get("checkpoint_every_epochs", 0)):
        config.checkpoint_every_steps = int(config.checkpoint_every_epochs) * steps_per_epoch
    config.model.axis_name = batching.SHARD_AXIS
    return config


def make_training(config, dataset: mt_data.MultitaskDataset) -> tuple[Experiment, nn.Module]:
    """The experiment without early stopping (init, steps, this process's train and val batches); the model.

    Batches are split into one shard per device on the mesh's batch axes (``mesh.num_batch_devices``).
    """
    model = model_from_config(config.model)
    shards = mesh_lib.num_batch_devices(config.mesh)
    train_iter, example = train_batches(dataset, shards, shuffle=bool(config.data.shuffle_batches),
                                        seed=int(config.seed))
    val_batches, _ = padded_split(dataset.splits["val"], shards)
    tx = build_optimizer(config.optimizer, config.num_train_steps)
    init_model = model.clone(axis_name=None)

    def init_state(rng):
        params_rng, state_rng = jax.random.split(rng)
        variables = init_model.init({"params": params_rng}, example, train=False)
        params = variables["params"]
        return {"step": jnp.zeros((), jnp.int32), "params": params, "batch_stats": variables.get("batch_stats", {}),
                "opt_state": tx.init(params), "rng": state_rng}

    experiment = Experiment(
        init_state=init_state,
        train_step=functools.partial(train_step, model=model, tx=tx),
        train_iter=train_iter,
        eval_step=functools.partial(eval_step, model=model),
        eval_iter_fn=lambda: iter(val_batches),
    )
    return experiment, model


def make_experiment(config, workdir: str, dataset: mt_data.MultitaskDataset):
    """:func:`make_training` with early stopping on the validation loss (the best weights kept in ``best/``)."""
    experiment, model = make_training(config, dataset)
    stopper = EarlyStopping(workdir, config, patience=int(config.patience_epochs) // int(config.eval_every_epochs),
                            eval_every=int(config.eval_every_steps))
    return dataclasses.replace(experiment, on_eval=stopper), stopper, model, experiment.init_state


def test_variables(model, variables, dataset: mt_data.MultitaskDataset, splits: list[str], shards: int, mesh):
    """Per-task MSE (batches weighted equally) of ``variables`` on each split; scan lengths grown to fit."""
    results = {}
    sharding = mesh_lib.batch_sharding(mesh)
    for split in splits:
        batches, _ = padded_split(dataset.splits[split], shards)
        sizes = [b.num_nodes for b in dataset.splits[split]]
        eval_model = model.clone(max_layers=max(model.max_layers, max(sizes) // 2),
                                 max_set2set_steps=max(model.max_set2set_steps, max(sizes)))
        fn = jax.jit(functools.partial(eval_step, model=eval_model))
        with jax.set_mesh(mesh):
            metrics = evaluate(fn, variables, batches, sharding)
        results[split] = {t: metrics[f"mse_{t}"] for t in TASKS}
    return results


def summarise(mse: dict[str, dict[str, float]], baselines: dict[str, dict[str, float]]) -> dict:
    """log10 MSE per task, their mean ("average": the score the README and the paper's figure compare),
    log10 of the mean MSE over tasks, and the same for the training-mean baseline."""
    out = {}
    for split, per_task in mse.items():
        log = {t: math.log10(max(v, 1e-30)) for t, v in per_task.items()}
        base = {t: math.log10(max(v, 1e-30)) for t, v in baselines[split].items()}
        out[split] = {"log10_mse": log, "average": float(np.mean(list(log.values()))),
                      "log10_of_mean_mse": math.log10(max(float(np.mean(list(per_task.values()))), 1e-30)),
                      "mse": per_task, "baseline_log10_mse": base,
                      "baseline_average": float(np.mean(list(base.values()))),
                      "log10_mse_over_baseline": float(np.mean([log[t] - base[t] for t in log]))}
    return out


def write_report(workdir: str, name: str, summary: dict, extra: dict) -> None:
    """results.json, results.md (per-task table) and results.png (bar plot) in ``workdir``."""
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump({"model": name, **extra, "results": summary}, f, indent=2)
    lines = [f"# PNA multitask benchmark: {name}", "",
             f"log10 MSE per task (lower is better); best validation epoch {extra.get('best_epoch')}, "
             f"{extra.get('epochs_run')} epochs run.", "",
             "| set | " + " | ".join(TASKS) + " | average |", "|---" * (len(TASKS) + 2) + "|"]
    for split, s in summary.items():
        lines.append(f"| {split} | " + " | ".join(f"{s['log10_mse'][t]:.3f}" for t in TASKS) + f" | {s['average']:.3f} |")
        lines.append(f"| {split} baseline (train mean) | " + " | ".join(f"{s['baseline_log10_mse'][t]:.3f}" for t in TASKS)
                     + f" | {s['baseline_average']:.3f} |")
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    split = "test" if "test" in summary else next(iter(summary))
    s = summary[split]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = np.arange(len(TASKS) + 1)
    ax.bar(xs - 0.2, [s["log10_mse"][t] for t in TASKS] + [s["average"]], 0.4, label=name)
    ax.bar(xs + 0.2, [s["baseline_log10_mse"][t] for t in TASKS] + [s["baseline_average"]], 0.4, label="baseline")
    ax.set_xticks(xs, list(TASKS) + ["average"], rotation=20, fontsize=8)
    ax.set_ylabel(f"log10 MSE ({split})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "results.png"), dpi=120)
    plt.close(fig)


def plot_extrapolation(workdir: str, name: str, summary: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    splits = [s for s in summary if s.startswith("test-(")]
    if not splits:
        return
    centres = [np.mean([int(v) for v in s[len("test-("):-1].split(",")]) - 0.5 for s in splits]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(centres, [summary[s]["log10_mse_over_baseline"] for s in splits], "o-", label=name)
    ax.set_xlabel("graph size N (test set centre)")
    ax.set_ylabel("log10(MSE / baseline MSE)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "extrapolation.png"), dpi=120)
    plt.close(fig)


def train_and_evaluate(config, workdir: str) -> TrainResult:
    """Trains one model of the benchmark, then tests its best-validation weights."""
    workdir = ckpt_lib.absolute_path(workdir)
    dataset = load_data(config, workdir)
    config = resolve_config(config, dataset)
    experiment, stopper, model, init_state = make_experiment(config, workdir, dataset)
    result = train(experiment, config, workdir)

    # test the best-validation weights (as the official script does)
    abstract = jax.eval_shape(lambda: {k: v for k, v in nn.unbox(init_state(jax.random.PRNGKey(0))).items()
                                       if k in ("params", "batch_stats")})
    best = stopper.restore_best(abstract)
    stopper.close()
    variables = best if best is not None else {"params": result.state["params"],
                                               "batch_stats": result.state["batch_stats"]}
    shards = mesh_lib.num_batch_devices(config.mesh)
    test_splits = [s for s in dataset.splits if s not in ("train",)]
    variables = jax.device_put(variables, mesh_lib.replicated(result.mesh))
    mse = test_variables(model, variables, dataset, test_splits, shards, result.mesh)
    baselines = {split: dataset.baseline_mse(split) for split in test_splits}
    if config.data.extrapolation:
        extra_data = mt_data.load_or_generate(cache_dir(config, workdir), seed=int(config.data.seed),
                                              extrapolation=True, connectivity=config.data.connectivity,
                                              graphs_per_batch=dataset_graphs_per_batch(config))
        # normalise by *this* training set's maxima (the extrapolation file regenerates the same train split)
        extra_data = extra_data.normalised()
        if not np.allclose(extra_data.label_max, dataset.label_max):
            raise RuntimeError("The extrapolation dataset's training split differs from the benchmark's; "
                               "delete the cache and regenerate.")
        extra_splits = [s for s in extra_data.splits if s.startswith("test-(")]
        mse.update(test_variables(model, variables, extra_data, extra_splits, shards, result.mesh))
        baselines.update({s: extra_data.baseline_mse(s) for s in extra_splits})
    summary = summarise(mse, baselines)
    if jax.process_index() == 0:
        extra = {"best_step": stopper.best_step, "best_val_loss": stopper.best,
                 "best_epoch": (stopper.best_step or 0) // int(config.steps_per_epoch),
                 "epochs_run": result.step // int(config.steps_per_epoch), "stopped_early": result.stopped_early,
                 "delta": float(config.model.conv_options.delta),
                 "num_params": int(sum(np.size(x) for x in jax.tree.leaves(variables["params"])))}
        write_report(workdir, config.get("name", config.model.conv), summary, extra)
        plot_extrapolation(workdir, config.get("name", config.model.conv), summary)
        for split, s in summary.items():
            console(f"{split}: average log10 MSE {s['average']:.3f} (baseline {s['baseline_average']:.3f}); "
                    + ", ".join(f"{t} {s['log10_mse'][t]:.2f}" for t in TASKS))
    result.eval_metrics = {**result.eval_metrics, **{f"test_{k}": v["average"] for k, v in summary.items()}}
    return result


def dataset_graphs_per_batch(config):
    gpb = config.data.get("graphs_per_batch", None)
    return gpb.to_dict() if hasattr(gpb, "to_dict") else gpb


# The repo's figure (multitask_benchmark/images/multitask_results.png), approximate box-plot readings of
# the average log10 MSE (../shared/specs/graphs.md).
PAPER_AVERAGE_LOG10_MSE = {"pna": -2.97, "pna_no_scalers": -2.67, "mpnn_sum": -2.46, "mpnn_max": -2.20,
                           "gat": -2.09, "gcn": -1.90, "gin": -1.86}


def compare_runs(run_dirs: list[str], out_dir: str, split: str = "test") -> str:
    """A markdown table (and ``comparison.png``) of several runs' ``results.json`` beside the paper."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = []
    for run in run_dirs:
        path = os.path.join(run, "results.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no results.json (did the run finish?)")
        with open(path) as f:
            results = json.load(f)
        rows.append((results["model"], results, results["results"][split]))
    rows.sort(key=lambda r: r[2]["average"])
    lines = ["| model | epochs (best) | " + " | ".join(TASKS) + " | average | paper average |",
             "|---|---" + "|---" * len(TASKS) + "|---|---|"]
    for name, results, s in rows:
        paper = PAPER_AVERAGE_LOG10_MSE.get(name)
        lines.append(f"| {name} | {results['epochs_run']} ({results['best_epoch']}) | "
                     + " | ".join(f"{s['log10_mse'][t]:.2f}" for t in TASKS)
                     + f" | **{s['average']:.2f}** | {paper if paper is not None else '-'} |")
    base = rows[0][2]
    lines.append("| baseline (train mean) | - | " + " | ".join(f"{base['baseline_log10_mse'][t]:.2f}" for t in TASKS)
                 + f" | {base['baseline_average']:.2f} | - |")
    table = "\n".join(lines) + "\n"
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "comparison.md"), "w") as f:
        f.write(table)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = [r[0] for r in rows]
    xs = np.arange(len(names))
    ax.bar(xs - 0.2, [r[2]["average"] for r in rows], 0.4, label="ours")
    ax.bar(xs + 0.2, [PAPER_AVERAGE_LOG10_MSE.get(n, np.nan) for n in names], 0.4, label="paper (repo figure)")
    ax.axhline(base["baseline_average"], color="grey", ls="--", lw=1, label="train-mean baseline")
    ax.set_xticks(xs, names, rotation=20, fontsize=8)
    ax.set_ylabel(f"average log10 MSE ({split})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "comparison.png"), dpi=120)
    plt.close(fig)
    return table
