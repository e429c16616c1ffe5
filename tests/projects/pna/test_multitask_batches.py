"""The multitask benchmark's training batches: the old one-process order and padding, process slices, old states."""
import json
import os
import sys

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from jaxmodels.graph import batching
from jaxmodels.projects.pna import multitask
from jaxmodels.projects.pna import multitask_data as mt_data
from vit_runs import REPO

sys.path.insert(0, os.path.join(REPO, "configs"))
import pna_multitask as pna_configs  # noqa: E402  (configs/pna_multitask.py)

OLD_CHECKPOINT = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "old_checkpoints", "pna_multitask",
                              "checkpoints", "30")


@pytest.fixture(scope="module")
def dataset():
    return mt_data.generate_dataset(1234, graphs_per_batch={"train": 4, "val": 2, "default": 2},
                                    verbose=False).normalised()


def old_batches(dataset, num_shards):
    """What the code before the process-sliced iterators fed: every batch pre-padded with all its shards."""
    graphs = [multitask.batch_to_graphs(b) for b in dataset.splits["train"]]
    budget = batching.budget_for_batches(graphs, num_shards)
    return [batching.make_batch(g, budget, num_shards) for g in graphs]


def assert_same(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("shuffle", [False, True])
def test_one_process_sees_the_old_batches_in_the_old_order(dataset, shuffle):
    iterator, example = multitask.train_batches(dataset, 4, shuffle=shuffle, seed=42)
    old = old_batches(dataset, 4)
    assert_same(example, jax.tree.map(lambda x: x[0], old[0]))
    for epoch in range(2):
        order = np.random.default_rng([42, epoch]).permutation(10) if shuffle else np.arange(10)
        for k in order:
            assert_same(next(iterator), old[k])


def test_two_processes_hold_the_halves_of_every_batch(dataset):
    single, _ = multitask.train_batches(dataset, 4, shuffle=True, seed=0, process_index=0, process_count=1)
    halves = [multitask.train_batches(dataset, 4, shuffle=True, seed=0, process_index=p, process_count=2)[0]
              for p in range(2)]
    for _ in range(12):
        whole, parts = next(single), [next(h) for h in halves]
        assert all(p.nodes["features"].shape[0] == 2 for p in parts)
        jax.tree.map(lambda w, a, b: np.testing.assert_array_equal(w, np.concatenate([a, b])), whole, *parts)


def test_a_state_written_by_the_old_iterator_resumes_at_its_batch(dataset):
    with open(os.path.join(OLD_CHECKPOINT, "data", "metadata")) as f:
        state = json.load(f)
    assert state == {"epoch": 3, "index": 0}  # the old FixedBatches' state after the tiny run's 3 epochs
    iterator, _ = multitask.train_batches(dataset, 2, shuffle=False, seed=42)
    iterator.set_state(state)
    assert_same(next(iterator), old_batches(dataset, 2)[0])
    assert iterator.get_state() == {"epoch": 3, "position": 1}


def test_a_train_step_does_not_depend_on_the_shard_count(dataset):
    """One step on a batch of 4 graphs (N = 15) whole or split into 8 shards, 4 of them empty: the same
    loss and update (batch norm statistics are those of the whole batch)."""
    config = pna_configs.get_config("gin")  # batch norm in every convolution and in the graph MLP
    config.model.max_layers, config.model.max_set2set_steps = 8, 15  # enough for N = 15
    config.model.axis_name = batching.SHARD_AXIS
    model = multitask.model_from_config(config.model)
    results = []
    for shards in (1, 8):
        iterator, example = multitask.train_batches(dataset, shards, shuffle=False, seed=0)
        variables = nn.unbox(model.clone(axis_name=None).init(jax.random.PRNGKey(0), example))
        state = {"step": 0, "params": variables["params"], "batch_stats": variables["batch_stats"],
                 "opt_state": optax.sgd(0.1).init(variables["params"])}
        results.append(jax.jit(lambda s, b: multitask.train_step(s, b, model=model, tx=optax.sgd(0.1)))(
            state, next(iterator)))
    for new_state, metrics in results[1:]:
        np.testing.assert_allclose(metrics["loss"], results[0][1]["loss"], rtol=1e-5)
        for got, want in zip(jax.tree.leaves(new_state), jax.tree.leaves(results[0][0])):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
