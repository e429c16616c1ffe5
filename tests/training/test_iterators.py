"""jaxmodels.training.iterators: seeded order, process slices that add up to the global batch, exact resume."""
import json

import numpy as np
import pytest

from jaxmodels.training.iterators import ProcessSlicedBatches, process_shards, shard_bounds


def global_batches(iterator, steps):
    return [np.concatenate(next(iterator)) for _ in range(steps)]


def test_shard_bounds_are_contiguous_and_differ_by_at_most_one():
    np.testing.assert_array_equal(shard_bounds(5, 2), [0, 3, 5])
    np.testing.assert_array_equal(shard_bounds(4, 3), [0, 2, 3, 4])
    np.testing.assert_array_equal(shard_bounds(2, 4), [0, 1, 1, 2, 2])  # more shards than items: some empty
    assert [s.tolist() for s in process_shards(np.arange(10), 4, 1, 2)] == [[5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="does not divide"):
        process_shards(np.arange(10), 3, 0, 2)


def test_epochs_are_seeded_permutations_and_batches_cross_them():
    it = ProcessSlicedBatches(5, 4, seed=3, process_index=0, process_count=1)
    stream = np.concatenate(global_batches(it, 5))
    expected = np.concatenate([np.random.default_rng([3, e]).permutation(5) for e in range(4)])
    np.testing.assert_array_equal(stream, expected)
    assert it.get_state() == {"epoch": 4, "position": 0}
    other = ProcessSlicedBatches(5, 4, seed=4, process_index=0, process_count=1)
    assert not np.array_equal(np.concatenate(global_batches(other, 5)), stream)


def test_drop_remainder_and_unshuffled_fixed_batches():
    it = ProcessSlicedBatches(7, 3, shuffle=False, drop_remainder=True, process_index=0, process_count=1)
    assert [b.tolist() for b in global_batches(it, 3)] == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]
    assert it.get_state() == {"epoch": 1, "position": 3}
    fixed = ProcessSlicedBatches([[0, 1], [2, 3, 4], [5]], shuffle=False, process_index=0, process_count=1)
    assert [b.tolist() for b in global_batches(fixed, 4)] == [[0, 1], [2, 3, 4], [5], [0, 1]]


@pytest.mark.parametrize("examples, batch_size, drop, num_shards", [
    (13, 8, False, None), (13, 4, True, 4), ([[0, 1, 2], [3, 4], [5, 6, 7, 8]], 1, False, 4)])
def test_two_processes_read_disjoint_slices_that_make_the_global_batch(examples, batch_size, drop, num_shards):
    def make(index, count):
        return ProcessSlicedBatches(examples, batch_size, seed=7, drop_remainder=drop, process_index=index,
                                    process_count=count, num_shards=num_shards)

    single, halves = make(0, 1), [make(0, 2), make(1, 2)]
    for _ in range(9):
        whole = np.concatenate(next(single))
        parts = [np.concatenate(next(h)) for h in halves]
        np.testing.assert_array_equal(np.concatenate(parts), whole)  # process 0's rows first, as the mesh places them
        if len(set(whole.tolist())) == len(whole):  # (a batch crossing an epoch may hold an example twice)
            assert not set(parts[0].tolist()) & set(parts[1].tolist())
        if num_shards is None:
            assert len(parts[0]) == len(parts[1]) == batch_size // 2
    assert halves[0].get_state() == halves[1].get_state() == single.get_state()


def test_resume_is_exact_from_a_json_state_on_any_process_count():
    it = ProcessSlicedBatches(11, 4, seed=2, process_index=0, process_count=1)
    global_batches(it, 4)
    state = json.loads(json.dumps(it.get_state()))
    expected = global_batches(it, 6)
    resumed = ProcessSlicedBatches(11, 4, seed=2, process_index=0, process_count=1)
    resumed.set_state(state)
    for want, got in zip(expected, global_batches(resumed, 6)):
        np.testing.assert_array_equal(want, got)
    halves = [ProcessSlicedBatches(11, 4, seed=2, process_index=p, process_count=2) for p in range(2)]
    for half in halves:
        half.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(np.concatenate([np.concatenate(next(h)) for h in halves]), want)


def test_old_index_states_and_invalid_states():
    it = ProcessSlicedBatches(10, 3, seed=1, drop_remainder=True, process_index=0, process_count=1)
    it.set_state({"epoch": 2, "index": 2})  # batches consumed, as the replaced graph iterators wrote it
    assert it.get_state() == {"epoch": 2, "position": 6}
    np.testing.assert_array_equal(np.concatenate(next(it)), np.random.default_rng([1, 2]).permutation(10)[6:9])
    for bad in ({"epoch": 0, "position": 10}, {"epoch": -1, "position": 0}, {"epoch": 0, "position": 8}):
        with pytest.raises(ValueError, match="invalid iterator state"):
            it.set_state(bad)
    with pytest.raises(ValueError, match="cannot fill"):
        ProcessSlicedBatches(2, 3, drop_remainder=True, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="process_index"):
        ProcessSlicedBatches(4, 2, process_index=2, process_count=2)
