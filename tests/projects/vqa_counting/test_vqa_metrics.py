"""VQA accuracy: the official string metric (normalisation included), the counting repo's batched
min(0.3 * agreeing, 1) against the explicit 10-choose-9 average, and per-answer-type aggregation."""
import jax
import numpy as np
import pytest

from jaxmodels.projects.vqa_counting.data import normalize_answer
from jaxmodels.projects.vqa_counting.metrics import accuracy_by_type, batch_accuracy, vqa_accuracy


def _leave_one_out(pred, humans):
    """The official loop: mean over humans i of min(1, #{j != i: humans[j] == pred} / 3)."""
    return np.mean([min(1.0, sum(h == pred for j, h in enumerate(humans) if j != i) / 3) for i in range(len(humans))])


@pytest.mark.parametrize("agreeing, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)])
def test_vqa_accuracy_by_number_of_agreeing_humans(agreeing, expected):
    humans = ["2"] * agreeing + ["3"] * (10 - agreeing)
    assert vqa_accuracy("2", humans) == pytest.approx(expected, abs=1e-12)
    # By hand for 2: (8 humans see 2 others -> 2/3, 2 humans see 1 other -> 1/3) / 10 = 0.6.
    assert vqa_accuracy("2", humans) == pytest.approx(_leave_one_out("2", humans), abs=1e-12)


def test_normalize_answer_cases():
    assert normalize_answer("Two") == "2"
    assert normalize_answer("a dog") == "dog"
    assert normalize_answer("yes.") == "yes"
    assert normalize_answer("The Ten.") == "10"
    assert normalize_answer("dont") == "don't"
    assert normalize_answer("1,000") == "1000"
    assert normalize_answer("3.5") == "3.5"  # a period before a digit stays
    assert normalize_answer("t-shirt") == "t shirt"
    assert normalize_answer("hi , there") == "hi there"  # punctuation next to a space is deleted
    assert normalize_answer(" none\n") == "0"


def test_vqa_accuracy_normalisation():
    assert vqa_accuracy("Two", ["2"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("a dog", ["dog"] * 2 + ["cat"] * 8) == pytest.approx(0.6)
    assert vqa_accuracy("yes.", ["yes"] * 4 + ["no"] * 6) == pytest.approx(1.0)
    assert vqa_accuracy("2", ["Two"] * 3 + ["three"] * 7) == pytest.approx(0.9)  # humans normalised too
    assert vqa_accuracy("dog", ["A dog"] + ["cat"] * 9) == pytest.approx(0.3)
    # Official rule: when all humans agree nothing is normalised (only newlines/tabs and stripping).
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0
    assert vqa_accuracy("yes.", ["yes"] * 10) == 0.0
    assert vqa_accuracy("yes.", ["yes"] * 10, normalize="always") == 1.0
    assert vqa_accuracy("Two", ["2"] * 10, normalize="always") == 1.0
    with pytest.raises(ValueError, match="normalize mode"):
        vqa_accuracy("yes", ["yes"] * 10, normalize="never")


def test_batch_accuracy_equals_leave_one_out_average():
    rng = np.random.default_rng(0)
    b, a = 128, 6
    humans = rng.integers(0, a + 2, size=(b, 10))  # indices a, a + 1 are out of vocabulary
    # Skewed so that 0..10 agreeing humans all occur.
    humans = np.where(rng.random((b, 1)) < 0.5, np.where(rng.random((b, 10)) < rng.random((b, 1)), 0, humans), humans)
    counts = np.zeros((b, a), np.float32)
    for i in range(b):
        for h in humans[i]:
            if h < a:
                counts[i, h] += 1
    logits = rng.standard_normal((b, a)).astype(np.float32)
    logits[: b // 2, 0] += 10.0  # predict the common answer for half of them
    pred = logits.argmax(axis=1)
    expected = np.array([_leave_one_out(pred[i], humans[i].tolist()) for i in range(b)])
    assert len({int(counts[i, pred[i]]) for i in range(b)}) >= 8  # many agreeing counts covered
    got = np.asarray(batch_accuracy(logits, counts))
    assert got.shape == (b,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(batch_accuracy(pred, counts)), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(batch_accuracy)(logits, counts)), expected, atol=1e-6)
    # Same value as the string metric when the answers need no normalisation.
    strings = [[str(h) for h in row] for row in humans]
    np.testing.assert_allclose(expected, [vqa_accuracy(str(pred[i]), strings[i]) for i in range(b)], atol=1e-12)


def test_accuracy_by_type():
    records = [{"answer_type": "yes/no", "accuracy": 1.0}, {"answer_type": "number", "accuracy": 0.3},
               {"answer_type": "number", "accuracy": 0.6}, ("other", 0.0), {"answer_type": "yes/no", "accuracy": 0.0}]
    got = accuracy_by_type(records)
    assert got.keys() == {"overall", "yes/no", "number", "other"}
    assert got["overall"] == pytest.approx(1.9 / 5)
    assert got["yes/no"] == pytest.approx(0.5) and got["number"] == pytest.approx(0.45) and got["other"] == 0.0
    assert accuracy_by_type([]) == {}
