"""VQA v2 data, as read by the official code of Zhang et al., "Learning to Count Objects in Natural
Images for Visual Question Answering" (ICLR 2018), github.com/Cyanogenoid/vqa-counting (``vqa-v2/``).

On-disk layout (the files that ``vqa-v2/config.py`` points at)::

  v2_OpenEnded_mscoco_{train,val}2014_questions.json   {"questions": [{"question_id", "image_id",
                                                          "question"}, ...], "data_type", "data_subtype", ...}
  v2_mscoco_{train,val}2014_annotations.json            {"annotations": [{"question_id", "image_id",
                                                          "answers": [{"answer": ...} x 10], "answer_type",
                                                          "question_type", "multiple_choice_answer"}, ...]}
  genome-trainval.h5   bottom-up-attention features as written by ``vqa-v2/preprocess-features.py``:
                       ``features`` [N, 2048, K] float32, ``boxes`` [N, 4, K] float32 (x1, y1, x2, y2 in
                       pixels), ``ids`` [N] int32 (COCO image ids), ``widths`` / ``heights`` [N] int32
  *.tsv                the original bottom-up-attention release (Anderson et al. 2018), one image per
                       line: ``image_id, image_w, image_h, num_boxes, boxes, features`` separated by TABs,
                       ``boxes`` / ``features`` base64 of float32 arrays [num_boxes, 4] / [num_boxes, D]

What follows the official code (``vqa-v2/data.py``, ``vqa-v2/preprocess-vocab.py``):

* questions: :func:`prepare_question` (``prepare_questions``): lower-case, drop the last character
  (the '?'), delete everything but ``[a-z0-9 ]``, split on ' '; token index 0 is unknown / padding.
* answers: :func:`process_punctuation` (``prepare_answers``) on each of the 10 human answers; the
  target of a question is the count vector "how many humans gave vocabulary answer a" (``_encode_answers``).
* vocabularies: :func:`extract_vocab` / :func:`build_vocab` (``extract_vocab``): the ``max_answers``
  (3000) most common training answers, sorted by descending count then descending string (``sorted(...,
  key=(count, token), reverse=True)``); question tokens from index 1.
* ``answerable_only`` (used for the training split) keeps questions with at least one vocabulary answer
  (``_find_answerable``); features are not normalised and boxes stay in raw pixels (the counting module
  only uses IoUs, which are scale invariant).

Adaptations for a jitted JAX step: questions are padded/truncated to a fixed length, the K boxes of an
image are zero-padded/truncated to a fixed ``num_boxes``, batches are not sorted by question length
(the official ``collate_fn`` does that only for PyTorch packed sequences; the length is returned), and
the training iterator yields fixed-size global batches from an endless stream of per-epoch permutations,
each process reading only its rows of each.

Every malformed input raises :class:`VQAFormatError` (a ``ValueError``) whose message starts with the
file's base name, then the 1-based line for TSV (``"feats.tsv:3: ..."``) or the JSON location
(``"v2_..._questions.json: questions[12]: missing 'image_id'"``); a missing file raises
``FileNotFoundError`` naming the path.

The answer normalisation of the official VQA evaluation (GT-Vision-Lab/VQA,
``PythonEvaluationTools/vqaEvaluation/vqaEval.py``, ``processPunctuation`` + ``processDigitArticle``)
is :func:`normalize_answer`; :mod:`jaxmodels.projects.vqa_counting.metrics` uses it.
"""
from __future__ import annotations

import base64
import binascii
import collections
import copy
import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from jaxmodels.training.files import atomic_path, atomic_write_json
from jaxmodels.training.iterators import ProcessSlicedBatches

__all__ = [
    "VQAFormatError",
    "NUM_HUMAN_ANSWERS",
    "prepare_question",
    "process_punctuation",
    "normalize_answer",
    "extract_vocab",
    "build_vocab",
    "save_vocab",
    "load_vocab",
    "load_questions_json",
    "load_annotations_json",
    "check_integrity",
    "read_tsv_features",
    "convert_tsv_to_hdf5",
    "FeatureStore",
    "VQADataset",
    "VQATrainIterator",
    "eval_iterator",
]

PathLike = str | os.PathLike
NUM_HUMAN_ANSWERS = 10  # every VQA v2 question has 10 human answers
TSV_FIELDNAMES = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")


class VQAFormatError(ValueError):
    """A malformed VQA input file; the message names the file and the line (TSV) or JSON location."""


def _name(path) -> str:
    return os.path.basename(os.fspath(path))


def _err(path, where: int | str | None, msg: str) -> VQAFormatError:
    if where is None:
        return VQAFormatError(f"{_name(path)}: {msg}")
    if isinstance(where, int):
        return VQAFormatError(f"{_name(path)}:{where}: {msg}")
    return VQAFormatError(f"{_name(path)}: {where}: {msg}")


def _require_file(path) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(path)}: no such file")


# ---------------------------------------------------------------------------------------------
# Question and answer normalisation
# ---------------------------------------------------------------------------------------------

# vqa-v2/data.py: used for normalising questions.
_SPECIAL_CHARS = re.compile("[^a-z0-9 ]*")

# vqa-v2/data.py: "these try to emulate the original normalization scheme for answers". The regexes are
# built exactly as there (including the double escaping of the punctuation characters, which adds
# the backslash to the first class).
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PUNCTUATION_CHARS = re.escape(r';/[]"{}()=+\_-><@`,?!')
_PUNCTUATION = re.compile(r"([{}])".format(re.escape(_PUNCTUATION_CHARS)))
_PUNCTUATION_WITH_A_SPACE = re.compile(r"(?<= )([{0}])|([{0}])(?= )".format(_PUNCTUATION_CHARS))


def prepare_question(text: str) -> list[str]:
    """Tokens of one question, as ``prepare_questions`` in vqa-v2/data.py.

    ``"How many dogs?"`` -> ``["how", "many", "dogs"]``. The last character is dropped whatever it is
    and the split is on single spaces (so double spaces give empty tokens), exactly as the original.
    """
    question = text.lower()[:-1]
    question = _SPECIAL_CHARS.sub("", question)
    return question.split(" ")


def process_punctuation(s: str) -> str:
    """Answer normalisation of ``prepare_answers`` in vqa-v2/data.py (training targets and vocabulary).

    A regex re-implementation of the evaluation's ``processPunctuation`` (mimicking its quirks): drop
    punctuation next to a space, drop ',' inside numbers ("1,000" -> "1000"), replace other
    punctuation by a space, drop periods not followed by a digit, strip.
    """
    if _PUNCTUATION.search(s) is None:
        return s
    s = _PUNCTUATION_WITH_A_SPACE.sub("", s)
    if re.search(_COMMA_STRIP, s) is not None:
        s = s.replace(",", "")
    s = _PUNCTUATION.sub(" ", s)
    s = _PERIOD_STRIP.sub("", s)
    return s.strip()


# GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py (VQA v2 version, HEAD a013f00):
# VQAEval.contractions, .manualMap, .articles, .punct.
_CONTRACTIONS = {
    'aint': "ain't", 'arent': "aren't", 'cant': "can't", 'couldve': "could've", 'couldnt': "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", 'didnt': "didn't", 'doesnt': "doesn't",
    'dont': "don't", 'hadnt': "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    'hasnt': "hasn't", 'havent': "haven't", 'hed': "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    'hes': "he's", 'howd': "how'd", 'howll': "how'll", 'hows': "how's", "Id've": "I'd've",
    "I'dve": "I'd've", 'Im': "I'm", 'Ive': "I've", 'isnt': "isn't", 'itd': "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", 'itll': "it'll", "let's": "let's", 'maam': "ma'am", 'mightnt': "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", 'mightve': "might've",
    'mustnt': "mustn't", 'mustve': "must've", 'neednt': "needn't", 'notve': "not've",
    'oclock': "o'clock", 'oughtnt': "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", 'shant': "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", 'shouldve': "should've", 'shouldnt': "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": 'somebodyd', "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", 'somebodyll': "somebody'll", 'somebodys': "somebody's",
    'someoned': "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    'someonell': "someone'll", 'someones': "someone's", 'somethingd': "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    'somethingll': "something'll", 'thats': "that's", 'thered': "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", 'therere': "there're", 'theres': "there's", 'theyd': "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", 'theyll': "they'll", 'theyre': "they're",
    'theyve': "they've", 'twas': "'twas", 'wasnt': "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    'weve': "we've", 'werent': "weren't", 'whatll': "what'll", 'whatre': "what're", 'whats': "what's",
    'whatve': "what've", 'whens': "when's", 'whered': "where'd", 'wheres': "where's",
    'whereve': "where've", 'whod': "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    'wholl': "who'll", 'whos': "who's", 'whove': "who've", 'whyll': "why'll", 'whyre': "why're",
    'whys': "why's", 'wont': "won't", 'wouldve': "would've", 'wouldnt': "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", 'yall': "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", 'youd': "you'd", "youd've": "you'd've", "you'dve": "you'd've",
    'youll': "you'll", 'youre': "you're", 'youve': "you've",
}
_MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
               "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = ("a", "an", "the")
_EVAL_PUNCT = (";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
               ",", "?", "!")


def _eval_process_punctuation(in_text: str) -> str:
    """``VQAEval.processPunctuation``: the decision to delete or space-replace each punctuation mark looks
    at the *input* text; periods not followed by a digit are removed (the original passes ``re.UNICODE``
    (= 32) as the positional ``count`` of ``re.sub``, so at most 32 of them; kept)."""
    out_text = in_text
    comma_in_number = re.search(_COMMA_STRIP, in_text) is not None
    for p in _EVAL_PUNCT:
        if (p + " " in in_text or " " + p in in_text) or comma_in_number:
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return _PERIOD_STRIP.sub("", out_text, count=int(re.UNICODE))


def _eval_process_digit_article(in_text: str) -> str:
    """``VQAEval.processDigitArticle``: lower-case, split on whitespace, number words -> digits,
    drop articles, expand contractions, join with single spaces."""
    words = []
    for word in in_text.lower().split():
        word = _MANUAL_MAP.get(word, word)
        if word not in _ARTICLES:
            words.append(word)
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def _cached_process(answer: str, cache: dict[str, str]) -> str:
    out = cache.get(answer)
    if out is None:
        out = cache[answer] = process_punctuation(answer)
    return out


def normalize_answer(s: str) -> str:
    """The official VQA evaluation's answer normalisation (vqaEval.py, ``evaluate``): newlines/tabs to
    spaces, strip, ``processPunctuation``, ``processDigitArticle``.

    ``"Two"`` -> ``"2"``, ``"a dog"`` -> ``"dog"``, ``"yes."`` -> ``"yes"``, ``"dont"`` -> ``"don't"``.
    """
    s = s.replace("\n", " ").replace("\t", " ").strip()
    return _eval_process_digit_article(_eval_process_punctuation(s))


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

def extract_vocab(token_lists: Iterable[Iterable[str]], top_k: int | None = None, start: int = 0) -> dict[str, int]:
    """``extract_vocab`` of vqa-v2/preprocess-vocab.py: token -> index from ``start``.

    With ``top_k`` only the ``Counter.most_common(top_k)`` tokens are kept (ties at the cut go to the
    token seen first, as ``most_common``); the order is descending count, then *descending* string
    (``sorted(key=(count, token), reverse=True)``).
    """
    counter = collections.Counter(itertools.chain.from_iterable(token_lists))
    if top_k:
        kept = [t for t, _ in counter.most_common(top_k)]
    else:
        kept = list(counter.keys())
    tokens = sorted(kept, key=lambda t: (counter[t], t), reverse=True)
    return {t: i for i, t in enumerate(tokens, start=start)}


def _json_arg(obj, loader):
    """(json dict, path or None) from a path or an already loaded dict."""
    if isinstance(obj, Mapping):
        return obj, None
    return loader(obj), obj


def build_vocab(questions_json, annotations_json, max_answers: int = 3000) -> dict[str, dict[str, int]]:
    """Vocabularies of vqa-v2/preprocess-vocab.py from the *training* questions and annotations.

    ``questions_json`` / ``annotations_json``: paths or loaded dicts. Returns ``{"question": {token:
    index >= 1}, "answer": {answer: index >= 0}}`` (question index 0 = unknown / padding); answers are
    :func:`process_punctuation`-ed human answers, the ``max_answers`` most common kept.
    """
    questions, _ = _json_arg(questions_json, load_questions_json)
    annotations, _ = _json_arg(annotations_json, lambda p: load_annotations_json(p, num_answers=None))
    question_tokens = [prepare_question(q["question"]) for q in questions["questions"]]
    cache: dict[str, str] = {}
    answers = [[_cached_process(a["answer"], cache) for a in ann["answers"]] for ann in annotations["annotations"]]
    return {
        "question": extract_vocab(question_tokens, start=1),
        "answer": extract_vocab(answers, top_k=max_answers),
    }


def save_vocab(vocab: Mapping[str, Mapping[str, int]], path: PathLike) -> None:
    """Writes ``vocab`` as JSON (the ``vocab.json`` of the official code), atomically."""
    atomic_write_json(path, {"question": dict(vocab["question"]), "answer": dict(vocab["answer"])})


def load_vocab(path: PathLike) -> dict[str, dict[str, int]]:
    """Reads a ``vocab.json`` (``{"question": {...}, "answer": {...}}``) and checks its structure."""
    data = _load_json(path)
    for key, start in (("question", 1), ("answer", 0)):
        if key not in data or not isinstance(data[key], dict):
            raise _err(path, None, f"missing {key!r} (expected an object token -> index)")
        indices = sorted(data[key].values())
        if not all(isinstance(i, int) for i in indices) or indices != list(range(start, start + len(indices))):
            raise _err(path, key, f"indices must be the integers {start}..{start + len(indices) - 1}")
    return {"question": dict(data["question"]), "answer": dict(data["answer"])}


# ---------------------------------------------------------------------------------------------
# Questions / annotations JSON
# ---------------------------------------------------------------------------------------------

def _load_json(path) -> Any:
    _require_file(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise _err(path, None, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise _err(path, None, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not isinstance(data, dict):
        raise _err(path, None, f"expected a JSON object at the top level, got {type(data).__name__}")
    return data


def _check_entries(path, data: Mapping, list_key: str, fields: Mapping[str, type | tuple]) -> list:
    if list_key not in data:
        raise _err(path, None, f"missing {list_key!r}")
    entries = data[list_key]
    if not isinstance(entries, list):
        raise _err(path, list_key, f"expected a list, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _err(path, f"{list_key}[{i}]", f"expected an object, got {type(entry).__name__}")
        for key, types in fields.items():
            if key not in entry:
                raise _err(path, f"{list_key}[{i}]", f"missing {key!r}")
            value = entry[key]
            if not isinstance(value, types) or isinstance(value, bool):
                raise _err(path, f"{list_key}[{i}].{key}", f"unexpected type {type(value).__name__}")
    return entries


def load_questions_json(path: PathLike) -> dict:
    """Reads and checks a VQA v2 questions file: ``questions[i]`` needs ``question_id`` (int),
    ``image_id`` (int) and ``question`` (str). Returns the JSON dict."""
    data = _load_json(path)
    _check_entries(path, data, "questions", {"question_id": int, "image_id": int, "question": str})
    return data


def load_annotations_json(path: PathLike, num_answers: int | None = NUM_HUMAN_ANSWERS) -> dict:
    """Reads and checks a VQA v2 annotations file: ``annotations[i]`` needs ``question_id``,
    ``image_id`` (int) and ``answers`` (``num_answers`` objects with a str ``answer``; ``None``: any
    number). ``answer_type`` / ``question_type`` / ``multiple_choice_answer`` are optional strings.
    Returns the JSON dict."""
    data = _load_json(path)
    entries = _check_entries(path, data, "annotations", {"question_id": int, "image_id": int, "answers": list})
    for i, entry in enumerate(entries):
        answers = entry["answers"]
        if num_answers is not None and len(answers) != num_answers:
            raise _err(path, f"annotations[{i}].answers", f"expected {num_answers} answers, got {len(answers)}")
        for j, a in enumerate(answers):
            if not isinstance(a, dict) or "answer" not in a:
                raise _err(path, f"annotations[{i}].answers[{j}]", "missing 'answer'")
            if not isinstance(a["answer"], str):
                raise _err(path, f"annotations[{i}].answers[{j}].answer",
                           f"unexpected type {type(a['answer']).__name__}")
        for key in ("answer_type", "question_type", "multiple_choice_answer"):
            if key in entry and not isinstance(entry[key], str):
                raise _err(path, f"annotations[{i}].{key}", f"unexpected type {type(entry[key]).__name__}")
    return data


def check_integrity(questions_json: Mapping, annotations_json: Mapping, questions_path: PathLike = "questions",
                    annotations_path: PathLike = "annotations") -> None:
    """``VQA._check_integrity`` of vqa-v2/data.py: the i-th question and the i-th annotation have the same
    ``question_id`` and ``image_id``, and ``data_type`` / ``data_subtype`` agree (where both files have
    them). Also checks that both lists have the same length. Raises :class:`VQAFormatError` naming both
    files and the entry."""
    qs, anns = questions_json["questions"], annotations_json["annotations"]
    pair = f"{_name(questions_path)} vs {_name(annotations_path)}"
    if len(qs) != len(anns):
        raise VQAFormatError(f"{pair}: {len(qs)} questions but {len(anns)} annotations")
    for i, (q, a) in enumerate(zip(qs, anns)):
        if q["question_id"] != a["question_id"]:
            raise VQAFormatError(f"{pair}: questions[{i}].question_id={q['question_id']} but "
                                 f"annotations[{i}].question_id={a['question_id']} (questions not aligned with answers)")
        if q["image_id"] != a["image_id"]:
            raise VQAFormatError(f"{pair}: questions[{i}].image_id={q['image_id']} but "
                                 f"annotations[{i}].image_id={a['image_id']} (image ids of question and answer differ)")
    for key in ("data_type", "data_subtype"):
        if key in questions_json and key in annotations_json and questions_json[key] != annotations_json[key]:
            raise VQAFormatError(f"{pair}: mismatched {key} {questions_json[key]!r} vs {annotations_json[key]!r}")


# ---------------------------------------------------------------------------------------------
# Bottom-up-attention features: TSV and HDF5
# ---------------------------------------------------------------------------------------------

def _b64_floats(path, lineno: int, field: str, text: str) -> np.ndarray:
    try:
        buf = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise _err(path, lineno, f"field {field!r} is not valid base64 ({e})") from None
    if len(buf) % 4:
        raise _err(path, lineno, f"field {field!r} decodes to {len(buf)} bytes, not a whole number of float32")
    return np.frombuffer(buf, dtype=np.float32)


def _tsv_paths(tsv_paths) -> list:
    if isinstance(tsv_paths, (str, os.PathLike)):
        if os.path.isdir(tsv_paths):
            # preprocess-features.py reads every file of the directory with '.tsv' in its name (sorted here).
            return [os.path.join(tsv_paths, f) for f in sorted(os.listdir(tsv_paths)) if ".tsv" in f]
        return [tsv_paths]
    return list(tsv_paths)


def read_tsv_features(tsv_paths, feature_dim: int = 2048) -> Iterator[dict[str, Any]]:
    """Rows of bottom-up-attention TSV files (one path, a list of paths, or a directory whose files with
    '.tsv' in the name are read in sorted order), as vqa-v2/preprocess-features.py decodes them.

    Yields ``{"image_id", "image_w", "image_h", "num_boxes": int, "boxes": [n, 4] float32 (x1, y1, x2, y2
    pixels), "features": [n, feature_dim] float32}``. Blank lines are skipped; any problem (field count,
    integer fields, base64, a blob not divisible by 4 / ``feature_dim``, box counts that disagree) raises
    :class:`VQAFormatError` naming ``file:line``.
    """
    for _, _, row in _iter_tsv(_tsv_paths(tsv_paths), feature_dim):
        yield row


def _iter_tsv(paths: Sequence, feature_dim: int) -> Iterator[tuple[Any, int, dict[str, Any]]]:
    """(path, 1-based line, row) for the rows of ``paths`` (see :func:`read_tsv_features`)."""
    for path in paths:
        _require_file(path)
    for path in paths:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("ascii").rstrip("\n").rstrip("\r")
                except UnicodeDecodeError as e:
                    raise _err(path, lineno, f"not ASCII ({e.reason} at byte {e.start})") from None
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != len(TSV_FIELDNAMES):
                    raise _err(path, lineno, f"expected {len(TSV_FIELDNAMES)} tab-separated fields "
                               f"({', '.join(TSV_FIELDNAMES)}), got {len(fields)}")
                row: dict[str, Any] = {}
                for name, value in zip(TSV_FIELDNAMES[:4], fields[:4]):
                    try:
                        row[name] = int(value)
                    except ValueError:
                        raise _err(path, lineno, f"field {name!r} is not an integer: {value[:40]!r}") from None
                boxes = _b64_floats(path, lineno, "boxes", fields[4])
                features = _b64_floats(path, lineno, "features", fields[5])
                if boxes.size % 4:
                    raise _err(path, lineno, f"boxes blob has {boxes.size} floats, not divisible by 4")
                if features.size % feature_dim:
                    raise _err(path, lineno, f"features blob has {features.size} floats, not divisible by "
                               f"feature_dim={feature_dim}")
                boxes = boxes.reshape(-1, 4)
                features = features.reshape(-1, feature_dim)
                if not boxes.shape[0] == features.shape[0] == row["num_boxes"]:
                    raise _err(path, lineno, f"num_boxes={row['num_boxes']} but {boxes.shape[0]} boxes and "
                               f"{features.shape[0]} feature vectors")
                row["boxes"] = boxes
                row["features"] = features
                yield path, lineno, row


def convert_tsv_to_hdf5(tsv_paths, h5_path: PathLike, num_boxes: int = 100, feature_dim: int = 2048) -> str:
    """vqa-v2/preprocess-features.py: bottom-up TSV rows -> the HDF5 layout :class:`FeatureStore` reads.

    Writes ``features`` [N, feature_dim, num_boxes] float32, ``boxes`` [N, 4, num_boxes] float32 (zero
    beyond an image's boxes), ``ids`` / ``widths`` / ``heights`` [N] int32, in TSV row order. The file is
    written under a temporary name in the same directory and moved onto ``h5_path`` with
    ``os.replace`` once complete. A row with more than ``num_boxes`` boxes is an error (file:line).
    Returns ``h5_path``.
    """
    paths = _tsv_paths(tsv_paths)
    with atomic_path(h5_path) as tmp:
        with h5py.File(tmp, "w") as out:
            feats = out.create_dataset("features", shape=(0, feature_dim, num_boxes), maxshape=(None, feature_dim, num_boxes),
                                       dtype="float32", chunks=(1, feature_dim, num_boxes))
            boxes = out.create_dataset("boxes", shape=(0, 4, num_boxes), maxshape=(None, 4, num_boxes),
                                       dtype="float32", chunks=(1, 4, num_boxes))
            ints = {k: out.create_dataset(k, shape=(0,), maxshape=(None,), dtype="int32", chunks=(1024,))
                    for k in ("ids", "widths", "heights")}
            block: list[dict] = []

            def flush():
                n0, n = feats.shape[0], len(block)
                f_arr = np.zeros((n, feature_dim, num_boxes), np.float32)
                b_arr = np.zeros((n, 4, num_boxes), np.float32)
                for j, r in enumerate(block):
                    k = r["num_boxes"]
                    f_arr[j, :, :k] = r["features"].T
                    b_arr[j, :, :k] = r["boxes"].T
                for ds in (feats, boxes, *ints.values()):
                    ds.resize(n0 + n, axis=0)
                feats[n0:] = f_arr
                boxes[n0:] = b_arr
                ints["ids"][n0:] = [r["image_id"] for r in block]
                ints["widths"][n0:] = [r["image_w"] for r in block]
                ints["heights"][n0:] = [r["image_h"] for r in block]
                block.clear()

            for path, lineno, row in _iter_tsv(paths, feature_dim):
                if row["num_boxes"] > num_boxes:
                    raise _err(path, lineno, f"{row['num_boxes']} boxes do not fit num_boxes={num_boxes}")
                block.append(row)
                if len(block) >= 64:
                    flush()
            if block:
                flush()
    return os.fspath(h5_path)


_IN_MEMORY_AUTO_BYTES = 512 * 2**20


class FeatureStore:
    """Per-image bottom-up-attention features and boxes, looked up by COCO image id.

    ``FeatureStore(h5_path, num_boxes=None, in_memory=None)`` reads the HDF5 layout of
    vqa-v2/preprocess-features.py (``features`` [N, D, K], ``boxes`` [N, 4, K], ``ids`` [N]; ``widths`` /
    ``heights`` [N] are optional); :meth:`from_tsv` loads bottom-up TSV files into memory and
    :meth:`from_arrays` wraps arrays. Lookups return features [num_boxes, D] float32 and boxes
    [num_boxes, 4] float32 (x1, y1, x2, y2, raw pixels as in the official code): the stored K boxes are
    truncated or zero-padded to ``num_boxes`` (default: the stored K). The official layout already holds
    zeros past an image's last box (the datasets are pre-allocated), so padding is all zeros either way.

    ``in_memory``: load everything at construction (``None``: if the features take at most 512 MiB);
    otherwise rows are read on demand through an h5py handle opened lazily in the reading process (like
    ``VQA._load_image``, so a store may be created before forking workers).
    """

    def __init__(self, path: PathLike | None, num_boxes: int | None = None, *, in_memory: bool | None = None):
        self.path = None if path is None else os.fspath(path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._features: np.ndarray | None = None  # [N, K_stored, D] when in memory
        self._boxes: np.ndarray | None = None  # [N, K_stored, 4] when in memory
        if path is None:  # from_arrays / from_tsv fill the fields
            return
        _require_file(path)
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise _err(path, None, f"not a readable HDF5 file ({e})") from None
        with f:
            for key in ("features", "boxes", "ids"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise _err(path, None, f"missing dataset {key!r} (expected features [N, D, K], boxes "
                               "[N, 4, K], ids [N] as written by vqa-counting preprocess-features.py)")
            fshape, bshape = f["features"].shape, f["boxes"].shape
            if len(fshape) != 3:
                raise _err(path, "features", f"expected shape [N, D, K], got {list(fshape)}")
            n, d, k = fshape
            if tuple(bshape) != (n, 4, k):
                raise _err(path, "boxes", f"expected shape {[n, 4, k]} (from features {list(fshape)}), got {list(bshape)}")
            for key in ("ids", "widths", "heights"):
                if key in f and tuple(f[key].shape) != (n,):
                    raise _err(path, key, f"expected shape [{n}], got {list(f[key].shape)}")
            ids = f["ids"][()].astype(np.int64)
            self._widths = f["widths"][()].astype(np.int64) if "widths" in f else None
            self._heights = f["heights"][()].astype(np.int64) if "heights" in f else None
            self.feature_dim, self._stored_boxes = int(d), int(k)
            if in_memory is None:
                in_memory = n * d * k * 4 <= _IN_MEMORY_AUTO_BYTES
            if in_memory:
                self._features = np.ascontiguousarray(f["features"][()].astype(np.float32).transpose(0, 2, 1))
                self._boxes = np.ascontiguousarray(f["boxes"][()].astype(np.float32).transpose(0, 2, 1))
        self._set_ids(ids)
        self.num_boxes = int(num_boxes) if num_boxes is not None else self._stored_boxes

    # -- constructors -----------------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, ids, features, boxes, widths=None, heights=None, num_boxes: int | None = None,
                    name: str = "<arrays>") -> FeatureStore:
        """In-memory store from ``ids`` [N], ``features`` [N, K, D], ``boxes`` [N, K, 4]."""
        features = np.asarray(features, np.float32)
        boxes = np.asarray(boxes, np.float32)
        if features.ndim != 3 or boxes.shape != (*features.shape[:2], 4):
            raise ValueError(f"{name}: expected features [N, K, D] and boxes [N, K, 4], got "
                             f"{list(features.shape)} and {list(boxes.shape)}")
        store = cls(None)
        store.path = name
        store._features, store._boxes = features, boxes
        store.feature_dim, store._stored_boxes = int(features.shape[2]), int(features.shape[1])
        store._widths = None if widths is None else np.asarray(widths, np.int64)
        store._heights = None if heights is None else np.asarray(heights, np.int64)
        store._set_ids(np.asarray(ids, np.int64))
        store.num_boxes = int(num_boxes) if num_boxes is not None else store._stored_boxes
        return store

    @classmethod
    def from_tsv(cls, tsv_paths, num_boxes: int = 100, feature_dim: int = 2048) -> FeatureStore:
        """In-memory store from bottom-up TSV files (:func:`read_tsv_features`); rows with fewer than
        ``num_boxes`` boxes are zero-padded, rows with more are an error (file:line), as in
        :func:`convert_tsv_to_hdf5`. For the full trainval release convert to HDF5 instead."""
        paths = _tsv_paths(tsv_paths)
        ids, widths, heights, feats, boxes = [], [], [], [], []
        for path, lineno, row in _iter_tsv(paths, feature_dim):
            k = row["num_boxes"]
            if k > num_boxes:
                raise _err(path, lineno, f"{k} boxes do not fit num_boxes={num_boxes}")
            f = np.zeros((num_boxes, feature_dim), np.float32)
            b = np.zeros((num_boxes, 4), np.float32)
            f[:k], b[:k] = row["features"], row["boxes"]
            feats.append(f)
            boxes.append(b)
            ids.append(row["image_id"])
            widths.append(row["image_w"])
            heights.append(row["image_h"])
        name = _name(paths[0]) if len(paths) == 1 else f"{_name(paths[0])} (+{len(paths) - 1} files)"
        store = cls.from_arrays(np.asarray(ids, np.int64), np.stack(feats) if feats else np.zeros((0, num_boxes, feature_dim)),
                                np.stack(boxes) if boxes else np.zeros((0, num_boxes, 4)), widths, heights, num_boxes, name)
        store.path = os.fspath(paths[0]) if len(paths) == 1 else name
        return store

    def _set_ids(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._index: dict[int, int] = {}
        for i, image_id in enumerate(ids.tolist()):
            if image_id in self._index:
                raise _err(self.path, "ids", f"duplicate image id {image_id} at rows {self._index[image_id]} and {i}")
            self._index[image_id] = i

    # -- lookups ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __contains__(self, image_id) -> bool:
        return int(image_id) in self._index

    def index_of(self, image_id) -> int:
        """Row of ``image_id``; ``KeyError`` naming the features file if absent."""
        try:
            return self._index[int(image_id)]
        except KeyError:
            raise KeyError(f"{_name(self.path)}: image id {int(image_id)} not in the features") from None

    def image_size(self, image_id) -> tuple[int, int] | None:
        """(width, height) in pixels, or ``None`` if the file has no ``widths`` / ``heights``."""
        if self._widths is None or self._heights is None:
            return None
        i = self.index_of(image_id)
        return int(self._widths[i]), int(self._heights[i])

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def _rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features [n, K_stored, D] and boxes [n, K_stored, 4] of the given rows (any order, repeats)."""
        if self._features is not None:
            return self._features[rows], self._boxes[rows]
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py needs increasing indices
        f = self._handle()
        feats = f["features"][unique.tolist()].astype(np.float32, copy=False)
        boxes = f["boxes"][unique.tolist()].astype(np.float32, copy=False)
        return feats.transpose(0, 2, 1)[inverse], boxes.transpose(0, 2, 1)[inverse]

    def get_batch(self, image_ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features [B, num_boxes, D] float32 and boxes [B, num_boxes, 4] float32 for ``image_ids``."""
        rows = np.asarray([self.index_of(i) for i in np.asarray(image_ids).reshape(-1).tolist()], np.int64)
        feats, boxes = self._rows(rows)
        k = self.num_boxes
        if feats.shape[1] >= k:
            return np.ascontiguousarray(feats[:, :k]), np.ascontiguousarray(boxes[:, :k])
        pad = ((0, 0), (0, k - feats.shape[1]), (0, 0))
        return np.pad(feats, pad), np.pad(boxes, pad)

    def get(self, image_id) -> tuple[np.ndarray, np.ndarray]:
        """Features [num_boxes, D] float32 and boxes [num_boxes, 4] float32 of one image."""
        feats, boxes = self.get_batch([image_id])
        return feats[0], boxes[0]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"] = state["_pid"] = None
        return state


# ---------------------------------------------------------------------------------------------
# Dataset and iterators
# ---------------------------------------------------------------------------------------------

class VQADataset:
    """One VQA v2 split as numpy arrays (``VQA`` of vqa-v2/data.py).

    Args:
      questions: questions JSON path (or loaded dict).
      annotations: annotations JSON path (or dict), or ``None`` for a split without answers (the
        official ``dummy_answers``: ``answers`` are then all zero).
      features: a :class:`FeatureStore` or the path of an HDF5 features file.
      vocab: ``{"question": ..., "answer": ...}`` (:func:`build_vocab`) or a ``vocab.json`` path.
      max_question_length: fixed question length L (longer questions are truncated, their length
        clipped to L); ``None``: the longest question of this split, as the official code.
      answerable_only: keep only questions with at least one human answer in the answer vocabulary
        (``_find_answerable``; the official code sets it for the training split).
      num_boxes: K of the returned features (default: the store's).
      num_human_answers: answers per annotation (10 in VQA v2; ``None``: any).

    Per question (index into the *full* question list): ``question_ids``, ``image_ids`` [N] int64,
    ``question_tokens`` [N, L] int32 (0 = unknown / padding), ``question_lengths`` [N] int32,
    ``answer_indices`` [N, num_human_answers] int32 (vocabulary index of each
    :func:`process_punctuation`-ed human answer, -1 if out of vocabulary), ``human_answers`` (raw
    strings, for :func:`jaxmodels.projects.vqa_counting.metrics.vqa_accuracy`), ``answer_types``, ``question_types``.
    ``indices`` [len(self)] are the questions this dataset iterates over (all, or the answerable ones).
    """

    def __init__(self, questions, annotations, features: FeatureStore | PathLike, vocab, *,
                 max_question_length: int | None = None, answerable_only: bool = False,
                 num_boxes: int | None = None, num_human_answers: int | None = NUM_HUMAN_ANSWERS):
        questions_json, q_path = _json_arg(questions, load_questions_json)
        q_path = q_path if q_path is not None else "questions"
        if annotations is not None:
            annotations_json, a_path = _json_arg(annotations, lambda p: load_annotations_json(p, num_human_answers))
            check_integrity(questions_json, annotations_json, q_path, a_path if a_path is not None else "annotations")
        else:
            annotations_json = None
        if not isinstance(vocab, Mapping):
            vocab = load_vocab(vocab)
        self.vocab = vocab
        self.token_to_index: dict[str, int] = dict(vocab["question"])
        self.answer_to_index: dict[str, int] = dict(vocab["answer"])
        self.index_to_answer: list[str] = [a for a, _ in sorted(self.answer_to_index.items(), key=lambda x: x[1])]
        if isinstance(features, FeatureStore):
            self.features = features
            if num_boxes is not None and num_boxes != features.num_boxes:
                self.features = copy.copy(features)  # a view with another K; the caller's store is unchanged
                self.features.num_boxes = int(num_boxes)
        else:
            self.features = FeatureStore(features, num_boxes)

        qs = questions_json["questions"]
        self.question_ids = np.asarray([q["question_id"] for q in qs], np.int64)
        self.image_ids = np.asarray([q["image_id"] for q in qs], np.int64)
        missing = [i for i, image_id in enumerate(self.image_ids.tolist()) if image_id not in self.features]
        if missing:
            i = missing[0]
            raise VQAFormatError(f"{_name(q_path)}: questions[{i}]: image_id {int(self.image_ids[i])} not found in "
                                 f"the features file {_name(self.features.path)} ({len(missing)} questions affected)")

        tokens = [prepare_question(q["question"]) for q in qs]
        self.max_question_length = int(max_question_length) if max_question_length is not None else \
            max((len(t) for t in tokens), default=1)
        length = self.max_question_length
        self.question_tokens = np.zeros((len(qs), length), np.int32)
        self.question_lengths = np.zeros((len(qs),), np.int32)
        get = self.token_to_index.get
        for i, toks in enumerate(tokens):
            toks = toks[:length]
            self.question_tokens[i, :len(toks)] = [get(t, 0) for t in toks]
            self.question_lengths[i] = len(toks)

        self.has_answers = annotations_json is not None
        if self.has_answers:
            anns = annotations_json["annotations"]
            self.human_answers: list[list[str]] = [[a["answer"] for a in ann["answers"]] for ann in anns]
            width = max((len(a) for a in self.human_answers), default=0)
            self.answer_indices = np.full((len(anns), width), -1, np.int32)
            cache: dict[str, str] = {}
            for i, answers in enumerate(self.human_answers):
                idx = [self.answer_to_index.get(_cached_process(a, cache), -1) for a in answers]
                self.answer_indices[i, :len(idx)] = idx
            self.answer_types = [ann.get("answer_type", "") for ann in anns]
            self.question_types = [ann.get("question_type", "") for ann in anns]
        else:
            self.human_answers = [[] for _ in qs]
            self.answer_indices = np.full((len(qs), 0), -1, np.int32)
            self.answer_types = [""] * len(qs)
            self.question_types = [""] * len(qs)

        self.answerable_only = answerable_only
        if answerable_only:
            if not self.has_answers:
                raise ValueError("answerable_only needs annotations")
            self.indices = np.flatnonzero((self.answer_indices >= 0).any(axis=1)).astype(np.int64)
        else:
            self.indices = np.arange(len(qs), dtype=np.int64)

    # -- sizes ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def num_tokens(self) -> int:
        """Embedding rows: question vocabulary + 1 for the unknown/padding token 0."""
        return len(self.token_to_index) + 1

    @property
    def num_answers(self) -> int:
        return len(self.answer_to_index)

    @property
    def num_boxes(self) -> int:
        return self.features.num_boxes

    @property
    def feature_dim(self) -> int:
        return self.features.feature_dim

    # -- batches ----------------------------------------------------------------------------------

    def answer_counts(self, question_index: np.ndarray) -> np.ndarray:
        """[B, num_answers] float32: how many humans gave each vocabulary answer (``_encode_answers``)."""
        question_index = np.asarray(question_index, np.int64).reshape(-1)
        counts = np.zeros((question_index.shape[0], self.num_answers), np.float32)
        if self.has_answers and self.answer_indices.shape[1]:
            idx = self.answer_indices[question_index]  # [B, 10]
            rows = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)
            valid = idx >= 0
            np.add.at(counts, (rows[valid], idx[valid]), 1.0)
        return counts

    def batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The examples at positions ``indices`` of this dataset (``0 <= i < len(self)``; with
        ``answerable_only`` positions among the answerable questions, as ``VQA.__getitem__``).

        Returns ``features`` [B, K, D] float32, ``boxes`` [B, K, 4] float32, ``question`` [B, L] int32,
        ``question_length`` [B] int32, ``answers`` [B, A] float32 (human answer counts) and
        ``question_index`` [B] int32 (index into the full question list / JSON).
        """
        q = self.indices[np.asarray(indices, np.int64).reshape(-1)]
        features, boxes = self.features.get_batch(self.image_ids[q])
        return {
            "features": features,
            "boxes": boxes,
            "question": self.question_tokens[q],
            "question_length": self.question_lengths[q],
            "answers": self.answer_counts(q),
            "question_index": q.astype(np.int32),
        }

    def train_iterator(self, batch_size: int, seed: int = 0, *, process_index: int | None = None,
                       process_count: int | None = None) -> VQATrainIterator:
        """Endless shuffled global batches of ``batch_size``, this process's rows of each (:class:`VQATrainIterator`)."""
        return VQATrainIterator(self, batch_size, seed, process_index=process_index, process_count=process_count)

    def eval_iterator(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """One ordered pass with a padded last batch and a ``mask`` (:func:`eval_iterator`)."""
        return eval_iterator(self, batch_size)


class VQATrainIterator(ProcessSlicedBatches):
    """Endless training batches: this process's rows of global batches of exactly ``batch_size`` examples.

    The examples are drawn from a stream of permutations, epoch ``e`` being
    ``np.random.default_rng([seed, e]).permutation(len(dataset))``; a batch that crosses an epoch
    boundary is completed from the next epoch (so nothing is dropped, and datasets smaller than a
    batch work). Process ``p`` of ``P`` reads rows ``p * batch_size / P`` to ``(p + 1) * batch_size / P``
    of each global batch (:class:`jaxmodels.training.iterators.ProcessSlicedBatches`); on one process
    that is the whole batch. Deterministic for ``seed``. :meth:`get_state` returns ``{"epoch",
    "position"}`` (``position``: examples of epoch ``epoch`` already consumed, by all processes);
    :meth:`set_state` resumes there, so the next batch equals the one an uninterrupted iterator would
    have produced.
    """

    def __init__(self, dataset: VQADataset, batch_size: int, seed: int = 0, *, process_index: int | None = None,
                 process_count: int | None = None):
        super().__init__(len(dataset), batch_size, shuffle=True, seed=seed, process_index=process_index,
                         process_count=process_count)
        if self.batch_size % self.process_count:
            raise ValueError(f"batch_size={batch_size} does not divide among {self.process_count} processes")
        self.dataset = dataset

    def read(self, shards: list[np.ndarray]) -> dict[str, np.ndarray]:
        """This process's rows of the global batch (:meth:`VQADataset.batch`)."""
        return self.dataset.batch(np.concatenate(shards))


def eval_iterator(dataset: VQADataset, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """One pass over ``dataset`` in order, in batches of exactly ``batch_size``.

    The last batch is padded with copies of the dataset's first example; every batch has ``mask`` [B]
    float32 (1 real, 0 padding), and padding rows have ``question_index`` -1.
    """
    n = len(dataset)
    for start in range(0, n, batch_size):
        positions = np.arange(start, min(start + batch_size, n))
        real = positions.shape[0]
        if real < batch_size:
            positions = np.concatenate([positions, np.zeros(batch_size - real, np.int64)])
        batch = dataset.batch(positions)
        mask = np.zeros((batch_size,), np.float32)
        mask[:real] = 1.0
        batch["mask"] = mask
        batch["question_index"][real:] = -1
        yield batch
