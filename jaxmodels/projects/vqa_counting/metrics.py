"""VQA accuracy: the official metric on answer strings and the counting repo's batched version.

* :func:`vqa_accuracy` -- GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``
  (``VQAEval.evaluate``, VQA v2 version): the accuracy of a prediction is the average, over the 10
  humans, of ``min(1, #{other 9 humans who gave the predicted answer} / 3)``, after the evaluation's
  answer normalisation (:func:`jaxmodels.projects.vqa_counting.data.normalize_answer`).
* :func:`batch_accuracy` -- ``utils.batch_accuracy`` of Cyanogenoid/vqa-counting (vqa-v2/utils.py):
  ``min(0.3 * agreeing, 1)`` from the human answer count vector, in ``jax.numpy`` (jittable).
* :func:`accuracy_by_type` -- overall and per answer type (``yes/no``, ``number``, ``other``) means, as
  ``VQAEval.setAccuracy`` (fractions in [0, 1], not the official rounded percentages).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from jaxmodels.projects.vqa_counting.data import normalize_answer

__all__ = ["vqa_accuracy", "batch_accuracy", "accuracy_by_type", "normalize_answer"]

NORMALIZE_MODES = ("official", "always")


def _strip(s: str) -> str:
    return s.replace("\n", " ").replace("\t", " ").strip()


def vqa_accuracy(predicted_answer: str, human_answers: Sequence[str], *, normalize: str = "official") -> float:
    """Official VQA accuracy of one predicted answer against the human answers (10 in VQA v2).

    For each human ``i``: ``acc_i = min(1, #{j != i : human_j == predicted} / 3)``; the result is the mean
    of the ``acc_i`` (so 1 agreeing human -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1.0).

    ``normalize``:
      ``"official"`` (default): exactly ``VQAEval.evaluate`` at GT-Vision-Lab/VQA HEAD (commit a013f00,
        "Fixed processing answers bug"): all answers have newlines/tabs replaced and are stripped; the
        punctuation / digit / article normalisation (:func:`normalize_answer`) is applied to the
        prediction *and* the human answers only when the humans do not all agree -- with 10 identical
        human answers the prediction must match them verbatim (so ``"yes."`` scores 0 against ten
        ``"yes"`` but 0.9 against three ``"yes"`` and seven ``"no"``).
      ``"always"``: normalise the prediction and every human answer in all cases.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"unknown normalize mode {normalize!r}; choose one of {NORMALIZE_MODES}")
    if not human_answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    gts = [_strip(a) for a in human_answers]
    pred = _strip(predicted_answer)
    if normalize == "always" or len(set(gts)) > 1:
        gts = [normalize_answer(a) for a in gts]
        pred = normalize_answer(pred)
    matches = [g == pred for g in gts]
    total = sum(matches)
    accs = [min(1.0, (total - m) / 3.0) for m in matches]
    return float(sum(accs) / len(accs))


def batch_accuracy(logits_or_predicted_index, answer_counts):
    """``utils.batch_accuracy`` of vqa-counting: ``min(0.3 * agreeing, 1)`` per example, in jax.numpy.

    Args:
      logits_or_predicted_index: logits [B, A] (the argmax is the prediction) or predicted answer
        indices [B] (integers).
      answer_counts: [B, A] how many of the human answers are each vocabulary answer (the ``answers``
        of :meth:`jaxmodels.projects.vqa_counting.data.VQADataset.batch`).

    Returns:
      [B] float32 accuracies (the original returns [B, 1]).

    With 10 human answers of which ``agreeing`` gave the predicted answer, the average over the 10
    leave-one-out subsets of ``min(1, #agreeing among the other 9 / 3)`` is
    ``((10 - agreeing) * min(agreeing / 3, 1) + agreeing * min((agreeing - 1) / 3, 1)) / 10``, which
    equals ``min(0.3 * agreeing, 1)`` for every ``agreeing`` in 0..10 (the derivation in utils.py). This
    is numerically the 10-choose-9 average when all 10 answers are in the vocabulary (the counts sum to
    10); an out-of-vocabulary human answer can never equal the (in-vocabulary) prediction, so it only
    counts as a non-agreeing human and the identity still holds. The one difference from the official
    evaluation is the normalisation: the counts use the training normalisation
    (``process_punctuation``), not :func:`normalize_answer`.
    """
    counts = jnp.asarray(answer_counts)
    pred = jnp.asarray(logits_or_predicted_index)
    if pred.ndim == counts.ndim:
        pred = jnp.argmax(pred, axis=-1)
    agreeing = jnp.take_along_axis(counts, pred.astype(jnp.int32)[..., None], axis=-1)[..., 0]
    return jnp.minimum(agreeing.astype(jnp.float32) * 0.3, 1.0)


def accuracy_by_type(records: Iterable[Mapping[str, Any] | tuple[str, float]]) -> dict[str, float]:
    """Mean accuracy overall and per answer type.

    ``records``: mappings with ``"answer_type"`` and ``"accuracy"`` (e.g. one per question, the accuracy
    from :func:`vqa_accuracy` or :func:`batch_accuracy`), or ``(answer_type, accuracy)`` pairs.
    Returns ``{"overall": mean, "<answer type>": mean, ...}`` (``"yes/no"``, ``"number"``, ``"other"`` in
    VQA v2; only the types present), as the per-question averages of ``VQAEval.setAccuracy`` but as
    fractions in [0, 1]. An empty input gives ``{}``.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    total, n = 0.0, 0
    for record in records:
        if isinstance(record, Mapping):
            answer_type, acc = record["answer_type"], record["accuracy"]
        else:
            answer_type, acc = record
        acc = float(acc)
        sums[answer_type] = sums.get(answer_type, 0.0) + acc
        counts[answer_type] = counts.get(answer_type, 0) + 1
        total += acc
        n += 1
    if not n:
        return {}
    out = {"overall": total / n}
    out.update({t: sums[t] / counts[t] for t in sorted(sums)})
    return out
