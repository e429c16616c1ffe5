"""Graph-level regression on the generic loop: PNA on ZINC (Corso et al. 2020, sec. 4.2, Table 2).

The recipe of ``realworld_benchmark/main_molecules.py`` + ``configs/molecules_graph_regression_pna_
ZINC.json``: L1 loss on the (normalised) constrained-solubility target, batch 128, Adam lr 1e-3 with
L2 weight decay 3e-6, learning rate halved when the loss plateaus (patience 5 epochs, 20 with edge
features) down to 1e-5, where training stops. Difference: the official scheduler watches the
*validation* loss; here ``optax.contrib.reduce_on_plateau`` watches the epoch-averaged *training*
loss (the loop's eval cannot change the optimiser state). The best-validation weights are kept
(``<workdir>/best``) and tested; results.json/results.md report the test MAE.
"""
from __future__ import annotations

import functools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxmodels.projects.pna import zinc_data
from jaxmodels.graph import batching, ops
from jaxmodels.graph.models import pna_regressor_from_config
from jaxmodels.projects.pna.multitask import EarlyStopping
from jaxmodels.training import checkpoint as ckpt_lib
from jaxmodels.training import mesh as mesh_lib
from jaxmodels.training.loop import Experiment, TrainResult, evaluate, train
from jaxmodels.training.metrics import console
from jaxmodels.training.step import gradient_step


def build_optimizer(opt_cfg, steps_per_epoch: int) -> optax.GradientTransformation:
    """PyTorch Adam(weight_decay) + ReduceLROnPlateau(factor, patience epochs, min_lr) on the train loss."""
    lr, min_lr = float(opt_cfg.lr), float(opt_cfg.min_lr)
    return optax.chain(
        optax.add_decayed_weights(float(opt_cfg.weight_decay)),
        optax.scale_by_adam(),
        optax.scale(-lr),
        optax.contrib.reduce_on_plateau(factor=float(opt_cfg.lr_reduce_factor), patience=int(opt_cfg.lr_patience),
                                        accumulation_size=steps_per_epoch, min_scale=min_lr / lr, rtol=1e-4, atol=0.0),
    )


def current_lr_scale(opt_state) -> jax.Array:
    return opt_state[-1].scale


def _predict(model, variables, graph, train: bool, mutable: bool):
    def apply(g):
        if mutable:
            out, updates = model.apply(variables, g, train=train, mutable=["batch_stats"])
            return out, updates.get("batch_stats", {})
        return model.apply(variables, g, train=train), {}

    pred, stats = jax.vmap(apply, axis_name=batching.SHARD_AXIS)(graph)
    mask = jax.vmap(ops.graph_mask)(graph)
    return pred, mask, jax.tree.map(lambda x: x[0], stats)


def train_step(state, batch, *, model, tx):
    def loss_fn(params, graph, collections):
        pred, mask, stats = _predict(model, {"params": params, "batch_stats": collections}, graph,
                                     train=True, mutable=True)
        err = jnp.where(mask, jnp.abs(pred - graph.globals["target"].reshape(pred.shape)), 0.0)
        return err.sum() / jnp.maximum(mask.sum(), 1.0), stats

    result = gradient_step(loss_fn, state["params"], state["opt_state"], tx, batch,
                           collections=state["batch_stats"], optimizer_takes_loss=True)
    metrics = {**result.metrics, "learning_rate_scale": current_lr_scale(result.opt_state)}
    return {**state, "step": state["step"] + 1, "params": result.params, "opt_state": result.opt_state,
            "batch_stats": result.collections if result.collections else state["batch_stats"]}, metrics


def eval_step(state, batch, *, model):
    pred, mask, _ = _predict(model, {"params": state["params"], "batch_stats": state["batch_stats"]}, batch,
                             train=False, mutable=False)
    err = jnp.where(mask, jnp.abs(pred - batch.globals["target"].reshape(pred.shape)), 0.0)
    return {"loss": err.sum(), "mae": err.sum(), "count": mask.sum().astype(jnp.float32)}


def load_splits(config) -> dict[str, list]:
    if not config.data.root:
        raise ValueError("config.data.root: required, the ZINC folder in PyG's raw layout "
                         "(raw/{train,val,test}.pickle; see configs/pna_zinc.py)")
    root = os.path.expanduser(config.data.root)
    return {split: zinc_data.read_zinc(root, split, subset=bool(config.data.subset)) for split in ("train", "val", "test")}


def train_and_evaluate(config, workdir: str) -> TrainResult:
    workdir = ckpt_lib.absolute_path(workdir)
    splits = load_splits(config)
    config = ml_collections.ConfigDict(config.to_dict())
    if float(config.model.conv_options.get("delta", -1.0)) <= 0:
        config.model.conv_options.delta = zinc_data.pna_delta(splits["train"])  # PyG/realworld: node-level mean
    config.model.axis_name = batching.SHARD_AXIS
    batch_size = int(config.batch_size)
    shards = mesh_lib.num_batch_devices(config.mesh)  # one shard of every batch per batch device
    if batch_size % shards:
        raise ValueError(f"config.batch_size={batch_size} must divide by the {shards} batch shards of the mesh")
    steps_per_epoch = len(splits["train"]) // batch_size
    config.steps_per_epoch = steps_per_epoch
    config.num_train_steps = int(config.num_epochs) * steps_per_epoch
    config.eval_every_steps = int(config.eval_every_epochs) * steps_per_epoch
    config.checkpoint_every_steps = int(config.checkpoint_every_epochs) * steps_per_epoch

    budget = batching.estimate_budget(sum(splits.values(), []), batch_size // shards, round_to=64)
    model = pna_regressor_from_config(config.model)
    tx = build_optimizer(config.optimizer, steps_per_epoch)
    train_iter = batching.GraphBatchIterator(splits["train"], batch_size, budget, num_shards=shards, seed=config.seed)
    example = jax.tree.map(lambda x: x[0], batching.make_batch(splits["train"][:2], budget))
    val_batches = batching.eval_batches(splits["val"], batch_size, budget, shards)
    init_model = model.clone(axis_name=None)

    def init_state(rng):
        params_rng, state_rng = jax.random.split(rng)
        variables = init_model.init({"params": params_rng}, example, train=False)
        return {"step": jnp.zeros((), jnp.int32), "params": variables["params"],
                "batch_stats": variables.get("batch_stats", {}), "opt_state": tx.init(variables["params"]),
                "rng": state_rng}

    stopper = EarlyStopping(workdir, config, patience=10 ** 9, eval_every=int(config.eval_every_steps), metric="mae")
    experiment = Experiment(init_state=init_state, train_step=functools.partial(train_step, model=model, tx=tx),
                            train_iter=train_iter, eval_step=functools.partial(eval_step, model=model),
                            eval_iter_fn=lambda: iter(val_batches), on_eval=stopper)
    result = train(experiment, config, workdir)

    abstract = jax.eval_shape(lambda: {k: v for k, v in nn.unbox(init_state(jax.random.PRNGKey(0))).items()
                                       if k in ("params", "batch_stats")})
    best = stopper.restore_best(abstract)
    stopper.close()
    variables = best or {"params": result.state["params"], "batch_stats": result.state["batch_stats"]}
    variables = jax.device_put(variables, mesh_lib.replicated(result.mesh))
    fn = jax.jit(functools.partial(eval_step, model=model))
    scores = {}
    with jax.set_mesh(result.mesh):
        for split in ("val", "test"):
            metrics = evaluate(fn, variables, batching.eval_batches(splits[split], batch_size, budget, shards),
                               mesh_lib.batch_sharding(result.mesh))
            scores[split] = metrics["mae"]
    num_params = int(sum(np.size(x) for x in jax.tree.leaves(variables["params"])))
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump({"model": config.get("name", "pna_zinc"), "mae": scores, "num_params": num_params,
                       "best_step": stopper.best_step, "epochs_run": result.step // steps_per_epoch}, f, indent=2)
        with open(os.path.join(workdir, "results.md"), "w") as f:
            f.write(f"# {config.get('name', 'pna_zinc')}\n\n| set | MAE |\n|---|---|\n"
                    + "".join(f"| {k} | {v:.4f} |\n" for k, v in scores.items())
                    + f"\n{num_params:,} parameters; best validation step {stopper.best_step}.\n")
        console(f"ZINC MAE: val {scores['val']:.4f}, test {scores['test']:.4f} ({num_params:,} parameters)")
    result.eval_metrics = {**result.eval_metrics, **{f"best_{k}_mae": v for k, v in scores.items()}}
    return result
