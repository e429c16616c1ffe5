"""Tests for jaxmodels.data.pipeline: determinism, reshuffling, sharding, resumption, eval padding."""
import json

import grain
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from jaxmodels.data import build_preprocess, build_source, make_eval_iterator, make_train_iterator


class IndexSource:
    """``n`` tiny records whose label is their index, so batches show exactly which were read."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return {"image": np.full((2, 2, 1), index % 256, np.uint8), "label": np.int32(index)}


def label_and_draw(record, rng):
    """Preprocess that exposes the per-example random stream: one uniform draw per example."""
    return {"label": record["label"], "draw": np.float64(rng.random())}


def eval_preprocess(record, rng):
    assert rng is None
    return {"label": record["label"]}


def train_batches(n=16, steps=4, batch=4, seed=0, **kwargs):
    it = make_train_iterator(IndexSource(n), preprocess=label_and_draw, global_batch_size=batch, seed=seed, **kwargs)
    return [next(it) for _ in range(steps)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["label"], y["label"])
        np.testing.assert_array_equal(x["draw"], y["draw"])


def test_train_batches_are_stacked_numpy():
    batch = train_batches(steps=1)[0]
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    assert batch["draw"].shape == (4,)


def test_same_seed_same_batches_different_seed_different():
    assert_same_batches(train_batches(seed=5), train_batches(seed=5))
    first, other = train_batches(seed=5), train_batches(seed=6)
    assert not np.array_equal(np.concatenate([b["label"] for b in first]), np.concatenate([b["label"] for b in other]))


def test_each_epoch_is_a_new_permutation_with_new_randomness():
    batches = train_batches(n=16, steps=12, batch=8)  # 6 epochs of 16
    labels = np.concatenate([b["label"] for b in batches]).reshape(6, 16)
    draws = np.concatenate([b["draw"] for b in batches]).reshape(6, 16)
    for epoch in labels:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(16))
    assert len({tuple(epoch) for epoch in labels}) == 6
    draw_of_example_0 = [d[list(e).index(0)] for e, d in zip(labels, draws)]
    assert len(set(draw_of_example_0)) == 6


def test_process_shards_are_disjoint_cover_the_data_and_form_the_global_batch():
    steps, global_batch, count = 4, 8, 4  # 4 steps x 8 = one epoch of 32
    single = train_batches(n=32, steps=steps, batch=global_batch, seed=1, process_index=0, process_count=1)
    shards = [train_batches(n=32, steps=steps, batch=global_batch, seed=1, process_index=p, process_count=count)
              for p in range(count)]
    seen = np.concatenate([b["label"] for shard in shards for b in shard])
    np.testing.assert_array_equal(np.sort(seen), np.arange(32))
    for step in range(steps):
        assert all(shard[step]["label"].shape == (2,) for shard in shards)
        interleaved = np.stack([shard[step]["label"] for shard in shards], axis=1).reshape(-1)  # [local, process]
        np.testing.assert_array_equal(interleaved, single[step]["label"])
        draws = np.stack([shard[step]["draw"] for shard in shards], axis=1).reshape(-1)
        np.testing.assert_array_equal(draws, single[step]["draw"])


def test_get_state_set_state_resumes_the_same_batches():
    it = make_train_iterator(IndexSource(10), preprocess=label_and_draw, global_batch_size=4, seed=2)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(5)]
    resumed = make_train_iterator(IndexSource(10), preprocess=label_and_draw, global_batch_size=4, seed=2)
    resumed.set_state(state)
    assert_same_batches([next(resumed) for _ in range(5)], expected)


def test_orbax_checkpoint_manager_round_trip_of_iterator_state(tmp_path):
    def fresh():
        return make_train_iterator(IndexSource(10), preprocess=label_and_draw, global_batch_size=4, seed=2)

    it = fresh()
    for _ in range(3):
        next(it)
    manager = ocp.CheckpointManager(tmp_path, options=ocp.CheckpointManagerOptions(max_to_keep=2))
    manager.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave({"w": jnp.arange(3.0)}),
                                            data_iter=grain.checkpoint.CheckpointSave(it)))
    expected = [next(it) for _ in range(4)]  # advancing after save must not change what was saved
    manager.wait_until_finished()
    manager.close()

    manager = ocp.CheckpointManager(tmp_path, options=ocp.CheckpointManagerOptions(max_to_keep=2))
    resumed = fresh()
    restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore({"w": jnp.zeros(3)}), data_iter=grain.checkpoint.CheckpointRestore(resumed)))
    manager.close()
    np.testing.assert_array_equal(restored["state"]["w"], np.arange(3.0))
    assert restored["data_iter"] is resumed
    assert_same_batches([next(resumed) for _ in range(4)], expected)


def test_train_iterator_rejects_bad_batch_sizes():
    with pytest.raises(ValueError, match="divisible"):
        make_train_iterator(IndexSource(16), preprocess=label_and_draw, global_batch_size=6, seed=0,
                            process_index=0, process_count=4)
    with pytest.raises(ValueError, match="larger than the dataset"):
        make_train_iterator(IndexSource(16), preprocess=label_and_draw, global_batch_size=32, seed=0)


@pytest.mark.parametrize("n,count", [(21, 1), (21, 2), (16, 2), (3, 4)])
def test_eval_iterator_sees_every_example_once_with_padding_masked(n, count):
    global_batch = 8
    local_batch = global_batch // count
    runs = [list(make_eval_iterator(IndexSource(n), preprocess=eval_preprocess, global_batch_size=global_batch,
                                    process_index=p, process_count=count)) for p in range(count)]
    assert len({len(batches) for batches in runs}) == 1  # processes stay in lock-step
    assert len(runs[0]) == -(-(-(-n // count)) // local_batch)
    labels = []
    for p, batches in enumerate(runs):
        for batch in batches:
            assert batch["label"].shape == (local_batch,) and batch["mask"].shape == (local_batch,)
            assert batch["mask"].dtype == np.bool_
        mask = np.concatenate([b["mask"] for b in batches])
        assert mask.sum() == len(range(p, n, count))
        np.testing.assert_array_equal(mask, np.sort(mask)[::-1])  # real examples first, padding last
        labels.append(np.concatenate([b["label"] for b in batches])[mask])
    np.testing.assert_array_equal(np.sort(np.concatenate(labels)), np.arange(n))


def test_tfds_mock_data_through_preprocess_and_pipelines():
    data_cfg = ml_collections.ConfigDict(dict(source="tfds", name="cifar10", augment="crop_flip", image_size=32,
                                              mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)))
    with tfds.testing.mock_data(num_examples=20):
        train = build_source(data_cfg, "train")
        it = make_train_iterator(train, preprocess=build_preprocess(data_cfg, train=True), global_batch_size=8, seed=0)
        batches = [next(it) for _ in range(3)]
        test = build_source(data_cfg, "test")
        eval_batches = list(make_eval_iterator(test, preprocess=build_preprocess(data_cfg, train=False),
                                               global_batch_size=8))
    for batch in batches + eval_batches:
        assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
        assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
        assert np.isfinite(batch["image"]).all()
    assert len(eval_batches) == 3 and sum(b["mask"].sum() for b in eval_batches) == 20
