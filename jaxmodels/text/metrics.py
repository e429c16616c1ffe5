"""Evaluation metrics for the Chinese BERT-wwm fine-tuning tasks.

* :func:`cmrc_em_f1` — the official CMRC 2018 / DRCD evaluation, ported line by line from
  ``squad-style-data/cmrc2018_evaluate.py`` (ymcui/cmrc2018, "v5 - special", commit c0eb1b6):
  ``mixed_segmentation`` (each CJK char of U+4E00–U+9FA5 is a token, runs of other characters
  are word-tokenized, the punctuation list ``sp_char`` is removed), ``remove_punctuation``,
  ``find_lcs`` (longest common *substring* over the token lists), F1 = the LCS-based precision and
  recall, EM = equality after ``remove_punctuation``, each the max over the reference answers,
  reported in percent with ``total`` and ``skip`` (unanswered ids, counted as 0).

  The one deviation: the official script splits non-CJK runs with ``nltk.word_tokenize``
  (Punkt sentence splitting + the Treebank tokenizer). Here :func:`simple_word_tokenize` stands in
  without nltk: whitespace splits, letters/digits/underscore runs (with internal ``.``, ``,`` or
  ``'`` between word characters, e.g. ``3.14``, ``1,000``, ``U.S``) are tokens and every other
  character is a token of its own. It differs from nltk on contractions (``don't`` is one token,
  nltk gives ``do n't``), on quote normalisation (nltk turns ``"`` into `````/``''``), on a final
  abbreviation period (``U.S.`` → ``U.S .``) and on a few Treebank rules (``...``, ``--``);
  spans with such text score marginally differently. Characters in the list are compared one at
  a time as in the original, so the two-character entry ``'……'`` never matches and ``…`` is kept.

* :func:`ner_f1` — entity-level precision/recall/F1 with conlleval chunking (the rules of
  ``conlleval.pl`` / seqeval's default mode; BIO, BIOES and IOB1 all read); an entity is correct
  only when its type and both boundaries match. ``mode="strict"`` uses seqeval's strict IOB2
  reading instead (an entity must start with ``B-``; an orphan ``I-X`` is not an entity).
  Fractions in [0, 1], as seqeval reports them.

* :func:`accuracy`.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "CMRC_PUNCTUATION",
    "simple_word_tokenize",
    "mixed_segmentation",
    "remove_punctuation",
    "find_lcs",
    "cmrc_f1_score",
    "cmrc_em_score",
    "cmrc_em_f1",
    "get_entities",
    "ner_f1",
    "accuracy",
]

# ``sp_char`` of cmrc2018_evaluate.py, in its order (note the 2-char '……', which never matches a
# single character).
CMRC_PUNCTUATION = ['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=',
                    '，', '。', '：', '？', '！', '“', '”', '；', '’', '《', '》', '……', '·', '、',
                    '「', '」', '（', '）', '－', '～', '『', '』']
_SP_CHAR = frozenset(CMRC_PUNCTUATION)
_CJK = re.compile("[\u4e00-\u9fa5]")
_WORD = re.compile(r"\w+(?:[.,']\w+)*|[^\w\s]")


def simple_word_tokenize(text: str) -> list[str]:
    """Stand-in for ``nltk.word_tokenize`` on the non-CJK runs (see the module docstring)."""
    return _WORD.findall(text)


def mixed_segmentation(in_str: str, rm_punc: bool = False) -> list[str]:
    """``cmrc2018_evaluate.mixed_segmentation``: CJK characters one by one, other runs word-tokenized."""
    in_str = str(in_str).lower().strip()
    segs_out: list[str] = []
    temp_str = ""
    for char in in_str:
        if rm_punc and char in _SP_CHAR:
            continue
        if _CJK.search(char) or char in _SP_CHAR:
            if temp_str != "":
                segs_out.extend(simple_word_tokenize(temp_str))
                temp_str = ""
            segs_out.append(char)
        else:
            temp_str += char
    if temp_str != "":
        segs_out.extend(simple_word_tokenize(temp_str))
    return segs_out


def remove_punctuation(in_str: str) -> str:
    """``cmrc2018_evaluate.remove_punctuation``: lower-case, strip, drop ``sp_char`` characters."""
    in_str = str(in_str).lower().strip()
    return "".join(c for c in in_str if c not in _SP_CHAR)


def find_lcs(s1: Sequence, s2: Sequence) -> tuple[Sequence, int]:
    """``cmrc2018_evaluate.find_lcs``: longest common contiguous run (first one found) and its length."""
    m = [[0] * (len(s2) + 1) for _ in range(len(s1) + 1)]
    mmax = 0
    p = 0
    for i in range(len(s1)):
        for j in range(len(s2)):
            if s1[i] == s2[j]:
                m[i + 1][j + 1] = m[i][j] + 1
                if m[i + 1][j + 1] > mmax:
                    mmax = m[i + 1][j + 1]
                    p = i + 1
    return s1[p - mmax:p], mmax


def cmrc_f1_score(answers: Sequence[str], prediction: str) -> float:
    """``calc_f1_score``: max over answers of the LCS F1 (fraction, not percent)."""
    f1_scores = []
    prediction_segs = mixed_segmentation(prediction, rm_punc=True)
    for ans in answers:
        ans_segs = mixed_segmentation(ans, rm_punc=True)
        _, lcs_len = find_lcs(ans_segs, prediction_segs)
        if lcs_len == 0:
            f1_scores.append(0.0)
            continue
        precision = 1.0 * lcs_len / len(prediction_segs)
        recall = 1.0 * lcs_len / len(ans_segs)
        f1_scores.append((2 * precision * recall) / (precision + recall))
    return max(f1_scores) if f1_scores else 0.0


def cmrc_em_score(answers: Sequence[str], prediction: str) -> int:
    """``calc_em_score``: 1 if the prediction equals an answer after ``remove_punctuation``."""
    prediction_ = remove_punctuation(prediction)
    return int(any(remove_punctuation(ans) == prediction_ for ans in answers))


def cmrc_em_f1(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict:
    """The official CMRC 2018 evaluation over ``references`` (qa id → reference answer texts).
    Ids missing from ``predictions`` count in ``total`` with score 0 and in ``skip``; extra
    predictions are ignored. Returns ``{"em", "f1", "average", "total", "skip"}`` with em/f1/average
    in percent (``average = (em + f1) / 2``, the script's AVERAGE)."""
    f1 = em = 0.0
    total = skip = 0
    for qid, answers in references.items():
        total += 1
        qid = str(qid).strip()
        if isinstance(answers, str):
            answers = [answers]
        if qid not in predictions:
            skip += 1
            continue
        prediction = str(predictions[qid])
        f1 += cmrc_f1_score(answers, prediction)
        em += cmrc_em_score(answers, prediction)
    f1_score = 100.0 * f1 / total if total else 0.0
    em_score = 100.0 * em / total if total else 0.0
    return dict(em=em_score, f1=f1_score, average=0.5 * (em_score + f1_score), total=total, skip=skip)


# ---------------------------------------------------------------------------------------------
# NER
# ---------------------------------------------------------------------------------------------

def _split_tag(tag: str) -> tuple[str, str]:
    if tag in ("O", "", None):
        return "O", ""
    if len(tag) > 1 and tag[1] in "-_":
        return tag[0], tag[2:]
    return tag[0], ""


def _end_of_chunk(prev_tag, tag, prev_type, type_) -> bool:
    # conlleval.pl endOfChunk / seqeval end_of_chunk.
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    if prev_tag != "O" and prev_tag != "." and prev_type != type_:
        return True
    return False


def _start_of_chunk(prev_tag, tag, prev_type, type_) -> bool:
    # conlleval.pl startOfChunk / seqeval start_of_chunk.
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    if tag != "O" and tag != "." and prev_type != type_:
        return True
    return False


def get_entities(tags: Sequence[str], mode: str = "conlleval") -> list[tuple[str, int, int]]:
    """Entities ``(type, start, end_inclusive)`` of one tag sequence. ``mode="conlleval"``: the
    conlleval chunk rules (an ``I-X`` after ``O`` or another type starts an entity);
    ``mode="strict"``: IOB2 only, an entity is ``B-X I-X*`` and orphan ``I-X`` tokens are dropped."""
    if mode not in ("conlleval", "strict"):
        raise ValueError(f"mode must be 'conlleval' or 'strict', got {mode!r}")
    out = []
    if mode == "strict":
        i, n = 0, len(tags)
        while i < n:
            p, t = _split_tag(tags[i])
            if p == "B":
                j = i + 1
                while j < n and _split_tag(tags[j]) == ("I", t):
                    j += 1
                out.append((t, i, j - 1))
                i = j
            else:
                i += 1
        return out
    prev_tag, prev_type, begin = "O", "", 0
    for i, tag in enumerate(list(tags) + ["O"]):
        p, t = _split_tag(tag)
        if _end_of_chunk(prev_tag, p, prev_type, t):
            out.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, p, prev_type, t):
            begin = i
        prev_tag, prev_type = p, t
    return out


def _prf(correct: int, n_pred: int, n_true: int) -> dict:
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return dict(precision=p, recall=r, f1=f, support=n_true)


def ner_f1(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]],
           mode: str = "conlleval") -> dict:
    """Entity-level micro precision/recall/F1 over sentences (lists of tags) and per type.
    Returns ``{"precision", "recall", "f1", "n_true", "n_pred", "n_correct", "per_type": {type:
    {"precision", "recall", "f1", "support"}}}`` (fractions)."""
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} true sentences but {len(pred_tags)} predicted")
    counts = defaultdict(lambda: [0, 0, 0])  # correct, pred, true
    for k, (t, p) in enumerate(zip(true_tags, pred_tags)):
        if len(t) != len(p):
            raise ValueError(f"sentence {k}: {len(t)} true tags but {len(p)} predicted")
        te = set(get_entities(t, mode))
        pe = set(get_entities(p, mode))
        for e in te:
            counts[e[0]][2] += 1
        for e in pe:
            counts[e[0]][1] += 1
        for e in te & pe:
            counts[e[0]][0] += 1
    c = sum(v[0] for v in counts.values())
    npred = sum(v[1] for v in counts.values())
    ntrue = sum(v[2] for v in counts.values())
    total = _prf(c, npred, ntrue)
    return dict(precision=total["precision"], recall=total["recall"], f1=total["f1"],
                n_true=ntrue, n_pred=npred, n_correct=c,
                per_type={typ: _prf(*v) for typ, v in sorted(counts.items())})


def accuracy(predictions, labels, weights=None) -> float:
    """Fraction of ``predictions == labels`` (weighted by ``weights`` if given; predictions of
    shape ``labels.shape + (C,)`` are arg-maxed)."""
    pred = np.asarray(predictions)
    lab = np.asarray(labels)
    if pred.ndim == lab.ndim + 1:
        pred = pred.argmax(-1)
    if pred.shape != lab.shape:
        raise ValueError(f"predictions {pred.shape} and labels {lab.shape} differ in shape")
    hit = (pred == lab).astype(np.float64)
    if weights is None:
        return float(hit.mean()) if hit.size else 0.0
    w = np.broadcast_to(np.asarray(weights, np.float64), hit.shape)
    return float((hit * w).sum() / w.sum()) if w.sum() else 0.0
