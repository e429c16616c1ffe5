"""Fine-tuning examples → fixed-length numpy arrays (static shapes for ``jit``), and back.

Follows google-research/bert ``run_classifier.py`` (``convert_single_example``,
``_truncate_seq_pair``) and ``run_squad.py`` (sliding document windows, ``_check_is_max_context``,
n-best post-processing), and ymcui's CMRC 2018 / DRCD baseline
(``ymcui/cmrc2018/baseline/run_cmrc2018_drcd_baseline.py``), which is ``run_squad.py`` with a
Chinese tokenizer.

The tokenizer is anything with the ``jaxmodels.text.tokenizers.WordPieceTokenizer`` interface:
``tokenize``, ``tokenize_with_offsets`` (``(token, start, end)`` char offsets into the text),
``convert_tokens_to_ids`` and the ``pad_id``/``cls_id``/``sep_id`` properties.

Differences from the reference scripts (all deliberate):

* SQuAD: token↔character alignment uses the tokenizer's char offsets instead of the whitespace
  ``doc_tokens`` + ``char_to_word_offset`` + ``_improve_answer_span`` detour. The answer's token
  span is the set of context tokens overlapping ``[answer_start, answer_start + len(text))``,
  which is the span ``_improve_answer_span`` looks for, and the predicted answer is cut from the
  original context (``context[start_char:end_char]``, stripped) instead of
  ``get_final_text`` + ``replace(' ', '')`` (ymcui); so an English name inside a Chinese context
  keeps its space.
* The training target uses ``answers[0]`` at its ``answer_start`` (``run_squad.py``); ymcui's
  script takes the first occurrence of the text (``paragraph_text.index``) and ignores
  ``answer_start``. ``answer_start == -1`` (CMRC dev) falls back to the first occurrence.
* Windows without the answer get ``start = end = 0`` (the ``[CLS]`` position) as in both scripts,
  for training and evaluation alike (no example is dropped).
* NER: every character is tokenized on its own (``tokenizer.tokenize(char)``, as the BERT Chinese
  NER scripts do); its first wordpiece carries the label, later wordpieces, ``[CLS]``, ``[SEP]``
  and padding get label ``-100`` and ``label_weights == 0``. Characters that produce no token
  (spaces, control characters) are skipped and decoded as ``O``. Sentences longer than
  ``max_seq_length - 2`` tokens are truncated; their cut characters decode as ``O``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "IGNORE_INDEX",
    "classification_features",
    "truncate_seq_pair",
    "NerFeaturesMeta",
    "ner_features",
    "decode_ner",
    "SquadFeatureMeta",
    "squad_features",
    "postprocess_squad",
]

IGNORE_INDEX = -100


def _field(ex: Any, name: str, default=None):
    if isinstance(ex, Mapping):
        return ex.get(name, default)
    return getattr(ex, name, default)


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """In place: pop from the longer list (``tokens_b`` on ties) until the total fits
    (``run_classifier._truncate_seq_pair``)."""
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


# ---------------------------------------------------------------------------------------------
# Sentence / sentence-pair classification
# ---------------------------------------------------------------------------------------------

def classification_features(examples: Sequence, tokenizer, max_seq_length: int,
                            label_list: Sequence[str] | None) -> dict[str, np.ndarray]:
    """``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` (``token_type_ids`` 0 for a, 1 for b),
    zero-padded to ``max_seq_length`` (``run_classifier.convert_single_example``).

    ``examples``: objects or dicts with ``text_a``, optional ``text_b`` and ``label``.
    Returns int32 ``input_ids, token_type_ids, attention_mask [N, L]`` and ``label [N]``
    (index in ``label_list``; ``-1`` when an example has no label or ``label_list`` is None).
    """
    L = int(max_seq_length)
    if L < 3:
        raise ValueError("max_seq_length must be at least 3")
    labels = [str(x) for x in label_list] if label_list is not None else None
    n = len(examples)
    input_ids = np.full((n, L), tokenizer.pad_id, np.int32)
    token_type_ids = np.zeros((n, L), np.int32)
    attention_mask = np.zeros((n, L), np.int32)
    label = np.full((n,), -1, np.int32)
    cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id
    for i, ex in enumerate(examples):
        tokens_a = tokenizer.tokenize(_field(ex, "text_a") or "")
        text_b = _field(ex, "text_b")
        tokens_b = tokenizer.tokenize(text_b) if text_b is not None else None
        if tokens_b is not None:
            truncate_seq_pair(tokens_a, tokens_b, L - 3)
        else:
            tokens_a = tokens_a[: L - 2]
        ids = [cls_id] + list(tokenizer.convert_tokens_to_ids(tokens_a)) + [sep_id]
        types = [0] * len(ids)
        if tokens_b is not None:
            ids += list(tokenizer.convert_tokens_to_ids(tokens_b)) + [sep_id]
            types += [1] * (len(tokens_b) + 1)
        input_ids[i, : len(ids)] = ids
        token_type_ids[i, : len(types)] = types
        attention_mask[i, : len(ids)] = 1
        lab = _field(ex, "label")
        if lab is not None and labels is not None:
            lab = str(lab)
            if lab not in labels:
                raise ValueError(f"example {i}: label {lab!r} not in label_list {labels}")
            label[i] = labels.index(lab)
    return dict(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                label=label)


# ---------------------------------------------------------------------------------------------
# NER (character tagging)
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class NerFeaturesMeta:
    """``label_list`` and, per example, ``char_positions[i][c]``: the token position that carries
    char ``c``'s label (``-1``: the char produced no token or was truncated)."""

    label_list: list[str]
    char_positions: list[np.ndarray]


def ner_features(examples: Sequence, tokenizer, max_seq_length: int,
                 label_list: Sequence[str]) -> tuple[dict[str, np.ndarray], NerFeaturesMeta]:
    """Character-level NER examples (``chars`` and ``tags``; objects or dicts) → arrays
    ``input_ids, token_type_ids, attention_mask, labels [N, L]`` (int32; ``labels`` is
    ``IGNORE_INDEX`` = -100 off the first wordpiece of each char) and ``label_weights [N, L]``
    (float32, 1 where ``labels`` is a real label), plus :class:`NerFeaturesMeta` for
    :func:`decode_ner`. Examples without ``tags`` get weight 0 everywhere."""
    L = int(max_seq_length)
    labels = [str(x) for x in label_list]
    label_index = {t: k for k, t in enumerate(labels)}
    n = len(examples)
    input_ids = np.full((n, L), tokenizer.pad_id, np.int32)
    token_type_ids = np.zeros((n, L), np.int32)
    attention_mask = np.zeros((n, L), np.int32)
    out_labels = np.full((n, L), IGNORE_INDEX, np.int32)
    weights = np.zeros((n, L), np.float32)
    cache: dict[str, list[int]] = {}
    positions = []
    for i, ex in enumerate(examples):
        chars = list(_field(ex, "chars"))
        tags = _field(ex, "tags")
        if tags is not None and len(tags) != len(chars):
            raise ValueError(f"example {i}: {len(chars)} chars but {len(tags)} tags")
        ids = [tokenizer.cls_id]
        lab = [IGNORE_INDEX]
        pos = np.full((len(chars),), -1, np.int32)
        for c, ch in enumerate(chars):
            sub = cache.get(ch)
            if sub is None:
                sub = cache[ch] = list(tokenizer.convert_tokens_to_ids(tokenizer.tokenize(ch)))
            if not sub:
                continue
            if len(ids) + len(sub) > L - 1:
                break
            pos[c] = len(ids)
            if tags is not None:
                t = str(tags[c])
                if t not in label_index:
                    raise ValueError(f"example {i}: tag {t!r} not in label_list {labels}")
                lab.append(label_index[t])
            else:
                lab.append(IGNORE_INDEX)
            lab.extend([IGNORE_INDEX] * (len(sub) - 1))
            ids.extend(sub)
        ids.append(tokenizer.sep_id)
        lab.append(IGNORE_INDEX)
        input_ids[i, : len(ids)] = ids
        attention_mask[i, : len(ids)] = 1
        out_labels[i, : len(lab)] = lab
        positions.append(pos)
    weights[out_labels != IGNORE_INDEX] = 1.0
    arrays = dict(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                  labels=out_labels, label_weights=weights)
    return arrays, NerFeaturesMeta(labels, positions)


def decode_ner(pred_label_ids, features_meta: NerFeaturesMeta) -> list[list[str]]:
    """Predicted label ids ``[N, L]`` (or logits ``[N, L, C]``, arg-maxed) → one tag per character
    of each example; characters without a token (spaces, truncated tail) get ``O``."""
    pred = np.asarray(pred_label_ids)
    if pred.ndim == 3:
        pred = pred.argmax(-1)
    labels = features_meta.label_list
    out = []
    for i, pos in enumerate(features_meta.char_positions):
        out.append([labels[int(pred[i, p])] if p >= 0 else "O" for p in pos])
    return out


# ---------------------------------------------------------------------------------------------
# Span extraction (CMRC 2018, DRCD)
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SquadFeatureMeta:
    """One window of one example. ``token_offsets[p] = (start, end)`` char offsets in the context
    for context tokens at position ``p`` (``-1`` elsewhere); ``token_is_max_context[p]`` as in
    ``run_squad.py``; ``tokens`` the window's token strings (with ``[CLS]``/``[SEP]``)."""

    example_index: int
    doc_span_index: int
    tokens: list[str]
    token_offsets: np.ndarray
    token_is_max_context: np.ndarray


def _check_is_max_context(doc_spans, cur_span_index, position) -> bool:
    """``run_squad._check_is_max_context``: the window where the token has the most context."""
    best_score, best_index = None, None
    for span_index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, span_index
    return cur_span_index == best_index


def _answer_chars(ex) -> tuple[int, int] | None:
    answers = _field(ex, "answers") or []
    if not answers:
        return None
    context = _field(ex, "context")
    text = _field(answers[0], "text")
    start = _field(answers[0], "answer_start", -1)
    if start is None or start < 0:
        start = context.find(text)
        if start < 0:
            return None
    return start, start + len(text)


def squad_features(examples: Sequence, tokenizer, max_seq_length: int = 512, doc_stride: int = 128,
                   max_query_length: int = 64) -> tuple[dict[str, np.ndarray], list[SquadFeatureMeta]]:
    """SQuAD-style examples (``question``, ``context``, ``answers``; objects or dicts) → one
    feature per document window ``[CLS] query [SEP] window [SEP]`` (``run_squad.py``): the query
    is cut to ``max_query_length`` tokens, windows of ``max_seq_length - len(query) - 3`` context
    tokens start every ``doc_stride`` tokens.

    Returns int32 ``input_ids, token_type_ids, attention_mask, start_positions, end_positions,
    example_index`` and ``span_mask [F, L]`` (1 on ``[CLS]`` and the context tokens: ymcui's
    ``input_span_mask``), plus one :class:`SquadFeatureMeta` per feature. The positions are those
    of the first answer's tokens inside the window, or 0 (``[CLS]``) when the window does not hold
    the whole answer or the example has no answer."""
    L = int(max_seq_length)
    rows = dict(input_ids=[], token_type_ids=[], attention_mask=[], span_mask=[],
                start_positions=[], end_positions=[], example_index=[])
    metas: list[SquadFeatureMeta] = []
    for ex_index, ex in enumerate(examples):
        q_tokens = tokenizer.tokenize(_field(ex, "question"))[: int(max_query_length)]
        context = _field(ex, "context")
        doc = tokenizer.tokenize_with_offsets(context)
        doc_tokens = [t for t, _, _ in doc]
        doc_ids = list(tokenizer.convert_tokens_to_ids(doc_tokens))
        q_ids = list(tokenizer.convert_tokens_to_ids(q_tokens))

        tok_start = tok_end = None
        span = _answer_chars(ex)
        if span is not None:
            a, b = span
            inside = [k for k, (_, s, e) in enumerate(doc) if e > a and s < b]
            if inside:
                tok_start, tok_end = inside[0], inside[-1]

        max_tokens_for_doc = L - len(q_tokens) - 3
        if max_tokens_for_doc <= 0:
            raise ValueError(f"max_seq_length {L} leaves no room for the context after a "
                             f"{len(q_tokens)}-token query")
        doc_spans = []
        start_offset = 0
        while True:
            length = min(len(doc_tokens) - start_offset, max_tokens_for_doc)
            doc_spans.append((start_offset, length))
            if start_offset + length >= len(doc_tokens):
                break
            start_offset += min(length, doc_stride)

        for span_index, (d_start, d_len) in enumerate(doc_spans):
            tokens = ["[CLS]"] + q_tokens + ["[SEP]"]
            ids = [tokenizer.cls_id] + q_ids + [tokenizer.sep_id]
            offset = len(ids)
            offsets = np.full((L, 2), -1, np.int32)
            max_ctx = np.zeros((L,), bool)
            for k in range(d_len):
                t = d_start + k
                p = offset + k
                offsets[p] = doc[t][1:]
                max_ctx[p] = _check_is_max_context(doc_spans, span_index, t)
            tokens += doc_tokens[d_start:d_start + d_len] + ["[SEP]"]
            ids += doc_ids[d_start:d_start + d_len] + [tokenizer.sep_id]
            n = len(ids)
            pad = L - n
            rows["input_ids"].append(ids + [tokenizer.pad_id] * pad)
            rows["token_type_ids"].append([0] * offset + [1] * (d_len + 1) + [0] * pad)
            rows["attention_mask"].append([1] * n + [0] * pad)
            rows["span_mask"].append([1] + [0] * (offset - 1) + [1] * d_len + [0] * (pad + 1))
            if tok_start is not None and d_start <= tok_start and tok_end <= d_start + d_len - 1:
                sp, ep = tok_start - d_start + offset, tok_end - d_start + offset
            else:
                sp = ep = 0
            rows["start_positions"].append(sp)
            rows["end_positions"].append(ep)
            rows["example_index"].append(ex_index)
            metas.append(SquadFeatureMeta(ex_index, span_index, tokens, offsets, max_ctx))
    arrays = {}
    for k, v in rows.items():
        arr = np.asarray(v, np.int32)
        if arr.ndim == 1 and k in ("input_ids", "token_type_ids", "attention_mask", "span_mask"):
            arr = arr.reshape(0, L)
        arrays[k] = arr
    return arrays, metas


def _best_indexes(logits: np.ndarray, n_best_size: int) -> list[int]:
    # Descending, ties in index order (Python's stable sort in ``_get_best_indexes``).
    return [int(i) for i in np.argsort(-logits, kind="stable")[:n_best_size]]


def _softmax(scores: list[float]) -> list[float]:
    if not scores:
        return []
    m = max(scores)
    e = [math.exp(s - m) for s in scores]
    z = sum(e)
    return [x / z for x in e]


def postprocess_squad(examples: Sequence, features_meta: Sequence[SquadFeatureMeta], start_logits,
                      end_logits, n_best_size: int = 20, max_answer_length: int = 30,
                      return_nbest: bool = False):
    """``{qa_id: answer_text}`` from per-feature logits ``[F, L]`` (``run_squad.write_predictions``):
    for every window of an example, the ``n_best_size`` best start and end positions are paired;
    a pair is kept when both are context tokens, the start token has its max context in this
    window, ``end >= start`` and the span has at most ``max_answer_length`` tokens. Pairs are
    ranked by ``start_logit + end_logit`` over all windows, the text is cut from the context
    with the tokenizer's char offsets, duplicates are dropped, and the best text is the answer
    (``""`` when no pair is valid). ``return_nbest=True`` also returns ``{qa_id: [{text,
    probability, start_logit, end_logit}]}``."""
    start_logits = np.asarray(start_logits, np.float64)
    end_logits = np.asarray(end_logits, np.float64)
    by_example: dict[int, list[int]] = {}
    for f, meta in enumerate(features_meta):
        by_example.setdefault(meta.example_index, []).append(f)
    predictions: dict[str, str] = {}
    all_nbest: dict[str, list[dict]] = {}
    for ex_index, ex in enumerate(examples):
        qa_id = str(_field(ex, "qa_id", None) or _field(ex, "id", None) or ex_index)
        context = _field(ex, "context")
        prelim = []
        for f in by_example.get(ex_index, []):
            meta = features_meta[f]
            offs, max_ctx = meta.token_offsets, meta.token_is_max_context
            s_log, e_log = start_logits[f], end_logits[f]
            for s in _best_indexes(s_log, n_best_size):
                if s >= len(offs) or offs[s, 0] < 0 or not max_ctx[s]:
                    continue
                for e in _best_indexes(e_log, n_best_size):
                    if e >= len(offs) or offs[e, 0] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append((s_log[s] + e_log[e], f, s, e))
        prelim.sort(key=lambda x: x[0], reverse=True)  # stable: ties keep discovery order
        seen, nbest = set(), []
        for _, f, s, e in prelim:
            if len(nbest) >= n_best_size:
                break
            offs = features_meta[f].token_offsets
            text = context[offs[s, 0]:offs[e, 1]].strip()
            if text in seen:
                continue
            seen.add(text)
            nbest.append(dict(text=text, start_logit=float(start_logits[f][s]),
                              end_logit=float(end_logits[f][e])))
        probs = _softmax([d["start_logit"] + d["end_logit"] for d in nbest])
        for d, p in zip(nbest, probs):
            d["probability"] = p
        best = next((d["text"] for d in nbest if d["text"]), "")
        predictions[qa_id] = best
        all_nbest[qa_id] = nbest
    return (predictions, all_nbest) if return_nbest else predictions
