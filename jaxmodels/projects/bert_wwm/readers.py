"""Readers for the on-disk layouts of the Chinese fine-tuning sets used by Chinese BERT-wwm.

Cui et al., arXiv 1906.08101 (ymcui/Chinese-BERT-wwm) fine-tune on sets distributed in the
layouts of google-research/bert ``run_classifier.py`` / ``run_squad.py`` and CLUE/ChineseGLUE:

=====================  ==========================================================  ==========================
reader                 layout                                                      sets
=====================  ==========================================================  ==========================
read_classification    TSV ``label<TAB>text_a`` with header (or ``columns=``)      ChnSentiCorp, THUCNews
read_xnli_tsv          TSV ``premise<TAB>hypothesis<TAB>label`` (header optional)   XNLI-zh
read_sentence_pair     TSV ``text_a<TAB>text_b<TAB>label``, no header               LCQMC, BQ Corpus
read_ner_bio           ``char tag`` per line, blank line between sentences           People's Daily, MSRA-NER
read_squad_json        SQuAD v1.1 JSON                                               CMRC 2018, DRCD
=====================  ==========================================================  ==========================

Every reader returns a list of small dataclasses. Every format problem raises
:class:`TextFormatError` (a ``ValueError``) whose message starts with the file's base name and
the 1-based line (``"train.tsv:7: expected 2 tab-separated fields (label, text_a), got 1"``), or,
for JSON, the path inside the document (``"cmrc.json: data[0].paragraphs[1].qas[2]: missing
'answers'"``).

TSV lines are split on TAB only (no quoting, like ``csv.reader(delimiter="\\t", quotechar=None)``
in ``run_classifier.py``); a trailing ``\\r`` is dropped and blank lines are skipped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from typing import Any, Iterator, Sequence

__all__ = [
    "TextFormatError",
    "ClassificationExample",
    "NerExample",
    "SquadExample",
    "CHNSENTICORP_LABELS",
    "XNLI_LABELS",
    "PAIR_LABELS",
    "PEOPLE_DAILY_NER_LABELS",
    "read_classification",
    "read_chnsenticorp",
    "read_xnli_tsv",
    "read_sentence_pair",
    "read_ner_bio",
    "to_bio",
    "read_squad_json",
]

CHNSENTICORP_LABELS = ("0", "1")
PAIR_LABELS = ("0", "1")
# run_classifier.py XnliProcessor order.
XNLI_LABELS = ("contradiction", "entailment", "neutral")
_XNLI_ALIASES = {"contradictory": "contradiction"}
PEOPLE_DAILY_NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")


class TextFormatError(ValueError):
    """A malformed input file; the message names the file and the line (or JSON path)."""


@dataclasses.dataclass
class ClassificationExample:
    """A single sentence (``text_b is None``) or a sentence pair, as in ``run_classifier.InputExample``."""

    guid: str
    text_a: str
    text_b: str | None = None
    label: str | None = None
    label_id: int | None = None


@dataclasses.dataclass
class NerExample:
    """One sentence: characters and their BIO tags (same length)."""

    guid: str
    chars: list[str]
    tags: list[str]


@dataclasses.dataclass
class SquadExample:
    """One question over one paragraph. ``answers`` is a list of ``{"text", "answer_start"}``."""

    qa_id: str
    question: str
    context: str
    answers: list[dict]
    title: str = ""
    paragraph_id: str = ""


def _name(path) -> str:
    return os.path.basename(os.fspath(path))


def _err(path, lineno: int | None, msg: str) -> TextFormatError:
    where = _name(path) if lineno is None else f"{_name(path)}:{lineno}"
    return TextFormatError(f"{where}: {msg}")


def _lines(path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without the newline); decoding errors name the line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _err(path, lineno, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield lineno, line.rstrip("\n").rstrip("\r")


# ---------------------------------------------------------------------------------------------
# Classification TSV
# ---------------------------------------------------------------------------------------------

def _map_label(path, lineno, label: str, label_list, aliases=None) -> tuple[str, int | None]:
    label = label.strip()
    if aliases:
        label = aliases.get(label, label)
    if label_list is None:
        return label, None
    labels = [str(x) for x in label_list]
    if label not in labels:
        raise _err(path, lineno, f"unknown label {label!r} (expected one of {labels})")
    return label, labels.index(label)


def read_classification(
    path,
    label_list: Sequence[str] | None = CHNSENTICORP_LABELS,
    columns: Sequence[str] | None = None,
    *,
    label_aliases: dict[str, str] | None = None,
    guid_prefix: str | None = None,
) -> list[ClassificationExample]:
    """Reads a classification TSV with named columns.

    ``columns=None``: the first line is a header naming the columns (``label``, ``text_a`` and,
    for pairs, ``text_b``; any other column, e.g. ``qid``, is ignored). This is the ChnSentiCorp
    layout ``label\\ttext_a`` of ymcui/Chinese-BERT-wwm and ChineseGLUE.

    ``columns=("label", "text_a")`` (any order, ``None`` or ``""`` for an ignored column): the file
    has no header; a first line equal to the column names is still skipped.

    Labels are checked against ``label_list`` (``None``: no check, ``label_id`` stays ``None``).
    """
    it = _lines(path)
    guid_prefix = guid_prefix if guid_prefix is not None else os.path.splitext(_name(path))[0]
    header_given = columns is None
    first = None
    if header_given:
        for lineno, line in it:
            if line.strip():
                first = (lineno, line)
                break
        if first is None:
            return []
        columns = [c.strip() for c in first[1].split("\t")]
        for need in ("label", "text_a"):
            if need not in columns:
                raise _err(path, first[0], f"header {columns} has no {need!r} column "
                           "(pass columns=... for a file without a header)")
    columns = [c or None for c in columns]
    if "text_a" not in columns:
        raise ValueError(f"columns {columns} must name 'text_a'")
    n = len(columns)
    names = ", ".join(c or "_" for c in columns)
    idx = {c: i for i, c in enumerate(columns) if c}
    out: list[ClassificationExample] = []
    for lineno, line in it:
        if not line.strip():
            continue
        fields = line.split("\t")
        if not header_given and not out and [f.strip() for f in fields] == [c or "" for c in columns]:
            continue  # a header in a file read with explicit columns
        if len(fields) != n:
            raise _err(path, lineno, f"expected {n} tab-separated fields ({names}), got {len(fields)}")
        text_a = fields[idx["text_a"]].strip()
        text_b = fields[idx["text_b"]].strip() if "text_b" in idx else None
        label = label_id = None
        if "label" in idx:
            label, label_id = _map_label(path, lineno, fields[idx["label"]], label_list, label_aliases)
        out.append(ClassificationExample(f"{guid_prefix}-{len(out)}", text_a, text_b, label, label_id))
    return out


def read_chnsenticorp(path, label_list=CHNSENTICORP_LABELS, columns=None) -> list[ClassificationExample]:
    """ChnSentiCorp: ``label\\ttext_a`` with a header (1 = positive). ``columns`` for a headerless file."""
    return read_classification(path, label_list, columns)


def read_xnli_tsv(path, label_list=XNLI_LABELS, language: str = "zh") -> list[ClassificationExample]:
    """XNLI-zh: ``premise\\thypothesis\\tlabel`` (XNLI-MT train layout, header ``premise\\thypo\\tlabel``
    optional), or the official XNLI-1.0 dev/test TSV (header with ``language``, ``gold_label``,
    ``sentence1``, ``sentence2``; only rows of ``language`` are kept, as ``XnliProcessor`` does).
    ``contradictory`` (XNLI-MT spelling) is read as ``contradiction``."""
    lines = _lines(path)
    out: list[ClassificationExample] = []
    prefix = os.path.splitext(_name(path))[0]
    header = None
    for lineno, line in lines:
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if header is None and not out:
            header = fields
            low = [f.lower() for f in fields]
            if "gold_label" in low and "sentence1" in low and "sentence2" in low:
                cols = {c: low.index(c) for c in ("gold_label", "sentence1", "sentence2")}
                lang_col = low.index("language") if "language" in low else None
                return _read_xnli_official(path, lines, cols, lang_col, len(fields), language,
                                           label_list, prefix)
            if low[:1] == ["premise"]:
                continue  # XNLI-MT header: premise, hypo, label
        if len(fields) != 3:
            raise _err(path, lineno, f"expected 3 tab-separated fields (premise, hypothesis, label), got {len(fields)}")
        label, label_id = _map_label(path, lineno, fields[2], label_list, _XNLI_ALIASES)
        out.append(ClassificationExample(f"{prefix}-{len(out)}", fields[0], fields[1], label, label_id))
    return out


def _read_xnli_official(path, lines, cols, lang_col, n, language, label_list, prefix):
    out = []
    for lineno, line in lines:
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != n:
            raise _err(path, lineno, f"expected {n} tab-separated fields (as in the header), got {len(fields)}")
        if lang_col is not None and fields[lang_col].strip() != language:
            continue
        label, label_id = _map_label(path, lineno, fields[cols["gold_label"]], label_list, _XNLI_ALIASES)
        out.append(ClassificationExample(f"{prefix}-{len(out)}", fields[cols["sentence1"]].strip(),
                                         fields[cols["sentence2"]].strip(), label, label_id))
    return out


def read_sentence_pair(path, label_list=PAIR_LABELS) -> list[ClassificationExample]:
    """LCQMC / BQ Corpus: ``text_a\\ttext_b\\tlabel`` without a header (a header line
    ``text_a\\ttext_b\\tlabel`` is skipped)."""
    return read_classification(path, label_list, columns=("text_a", "text_b", "label"))


# ---------------------------------------------------------------------------------------------
# NER (BIO / BIOES char-per-line)
# ---------------------------------------------------------------------------------------------

_TAG_RE = re.compile(r"^([BIEMS])[-_](.+)$")
_SEP_RE = re.compile(r"[ \t]+")


def to_bio(tag: str) -> str:
    """BIOES/BMES → BIO: ``S-X``→``B-X``, ``E-X``/``M-X``→``I-X``; ``B-``/``I-``/``O`` unchanged
    (``B_X`` spellings become ``B-X``). Raises ``ValueError`` for anything else."""
    if tag == "O":
        return tag
    m = _TAG_RE.match(tag)
    if not m:
        raise ValueError(f"bad tag {tag!r} (expected O or B-/I-/E-/S-/M- followed by a type)")
    prefix, typ = m.groups()
    return {"B": "B", "S": "B", "I": "I", "E": "I", "M": "I"}[prefix] + "-" + typ


def read_ner_bio(
    path,
    strict: bool = True,
    label_list: Sequence[str] | None = None,
) -> list[NerExample]:
    """Reads the People's Daily / MSRA-NER layout: one ``char tag`` per line (space or tab
    separated; the char may be any non-space character, full-width ones included), a blank line
    between sentences, ``-DOCSTART-`` lines ignored.

    Tags are returned in BIO: BIOES / BMES input (``S-``, ``E-``, ``M-``) is converted with
    :func:`to_bio` (``S-X``→``B-X``, ``M-X``/``E-X``→``I-X``), which keeps every entity's span and type.

    Consistency: an ``I-X`` must follow ``B-X`` or ``I-X``. ``strict=True`` raises a
    :class:`TextFormatError` naming the line; ``strict=False`` repairs it to ``B-X`` (the conlleval
    reading of an orphan ``I-X``) and warns once per file with the count. ``label_list``
    (optional) restricts the tags (checked after conversion).
    """
    out: list[NerExample] = []
    chars: list[str] = []
    tags: list[str] = []
    repaired = 0
    prefix = os.path.splitext(_name(path))[0]
    allowed = set(label_list) if label_list is not None else None

    def flush():
        if chars:
            out.append(NerExample(f"{prefix}-{len(out)}", list(chars), list(tags)))
            chars.clear()
            tags.clear()

    for lineno, line in _lines(path):
        body = line.strip(" \t")
        if not body:
            flush()
            continue
        if body.startswith("-DOCSTART-"):
            flush()
            continue
        parts = _SEP_RE.split(body)
        if len(parts) != 2:
            raise _err(path, lineno, f"expected 'char tag' (2 fields separated by space or tab), got {len(parts)}")
        ch, tag = parts
        try:
            tag = to_bio(tag)
        except ValueError as e:
            raise _err(path, lineno, str(e)) from None
        if allowed is not None and tag not in allowed:
            raise _err(path, lineno, f"tag {tag!r} not in the label list {sorted(allowed)}")
        if tag.startswith("I-"):
            prev = tags[-1] if tags else "O"
            if prev == "O" or prev[2:] != tag[2:]:
                if strict:
                    raise _err(path, lineno, f"{tag} follows {prev} (an I-X tag must follow B-X or I-X; "
                               "strict=False repairs it to B-X)")
                tag = "B-" + tag[2:]
                repaired += 1
        chars.append(ch)
        tags.append(tag)
    flush()
    if repaired:
        warnings.warn(f"{_name(path)}: repaired {repaired} I-X tag(s) that did not follow B-X/I-X into B-X",
                      stacklevel=2)
    return out


# ---------------------------------------------------------------------------------------------
# SQuAD-style JSON (CMRC 2018, DRCD)
# ---------------------------------------------------------------------------------------------

def _expect(path, where: str, obj: Any, key: str, typ, what: str | None = None):
    if not isinstance(obj, dict):
        raise _err(path, None, f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise _err(path, None, f"{where}: missing {key!r}")
    val = obj[key]
    if typ is int:
        ok = isinstance(val, int) and not isinstance(val, bool)
    else:
        ok = isinstance(val, typ)
    if not ok:
        tn = what or (typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ))
        raise _err(path, None, f"{where}.{key}: expected {tn}, got {type(val).__name__}")
    return val


def _nearest(context: str, text: str, start: int) -> int | None:
    best = None
    i = context.find(text)
    while i != -1:
        if best is None or abs(i - start) < abs(best - start):
            best = i
        i = context.find(text, i + 1)
    return best


def read_squad_json(
    path,
    fix_offsets: bool = False,
    require_answers: bool = True,
) -> list[SquadExample]:
    """Reads SQuAD v1.1-style JSON (CMRC 2018 ``squad-style-data``, DRCD)::

        {"version": ..., "data": [{"id", "title", "paragraphs": [{"id", "context",
          "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}

    Every answer with ``answer_start >= 0`` is checked: ``context[answer_start:answer_start +
    len(text)] == text``; ``answer_start == -1`` (CMRC 2018 dev marks references that are not a
    verbatim span this way) is kept as a text-only reference for evaluation. A mismatch
    raises a :class:`TextFormatError` naming the JSON path and the qa id. ``fix_offsets=True``
    instead moves ``answer_start`` to the occurrence of ``text`` in the context nearest to the given
    start (a warning lists the fixes); an answer absent from the context still raises.
    ``require_answers=False`` accepts qas without ``answers`` (test sets) as ``answers=[]``.
    Paragraph/article ids are optional (``""``), qa ids are required and must be unique.
    """
    name = _name(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise TextFormatError(f"{name}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise TextFormatError(f"{name}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    data = _expect(path, "<root>", doc, "data", list, "a list")
    out: list[SquadExample] = []
    seen: dict[str, str] = {}
    fixes: list[str] = []
    for ai, article in enumerate(data):
        aw = f"data[{ai}]"
        paragraphs = _expect(path, aw, article, "paragraphs", list, "a list")
        title = article.get("title", "") if isinstance(article.get("title", ""), str) else ""
        for pi, para in enumerate(paragraphs):
            pw = f"{aw}.paragraphs[{pi}]"
            context = _expect(path, pw, para, "context", str, "a string")
            qas = _expect(path, pw, para, "qas", list, "a list")
            pid = para.get("id", "")
            for qi, qa in enumerate(qas):
                qw = f"{pw}.qas[{qi}]"
                qid = _expect(path, qw, qa, "id", (str, int), "a string")
                qid = str(qid)
                question = _expect(path, qw, qa, "question", str, "a string")
                if qid in seen:
                    raise _err(path, None, f"{qw}: duplicate qa id {qid!r} (first at {seen[qid]})")
                seen[qid] = qw
                if "answers" not in qa and not require_answers:
                    answers_in = []
                else:
                    answers_in = _expect(path, qw, qa, "answers", list, "a list")
                answers = []
                for ki, ans in enumerate(answers_in):
                    kw = f"{qw}.answers[{ki}]"
                    text = _expect(path, kw, ans, "text", str, "a string")
                    start = _expect(path, kw, ans, "answer_start", int, "an integer")
                    if start < 0:
                        if start != -1:
                            raise _err(path, None, f"{kw}: qa {qid!r}: answer_start {start} < -1")
                        # CMRC 2018 dev: -1 marks a reference answer that is not a verbatim span
                        # (kept as a text-only reference for evaluation).
                    elif context[start:start + len(text)] != text:
                        found = _nearest(context, text, start)
                        got = context[start:start + len(text)]
                        msg = (f"{kw}: qa {qid!r}: context[{start}:{start + len(text)}] = {got!r} "
                               f"!= answer text {text!r}")
                        if not fix_offsets or found is None:
                            if found is None:
                                msg += " (the text does not occur in the context)"
                            else:
                                msg += f" (nearest occurrence at {found}; fix_offsets=True moves it)"
                            raise _err(path, None, msg)
                        fixes.append(f"{qid}: {start}->{found}")
                        start = found
                    answers.append({"text": text, "answer_start": start})
                if require_answers and not answers:
                    raise _err(path, None, f"{qw}: qa {qid!r} has no answers")
                out.append(SquadExample(qid, question, context, answers, title, str(pid)))
    if fixes:
        shown = ", ".join(fixes[:10]) + (" ..." if len(fixes) > 10 else "")
        warnings.warn(f"{name}: moved {len(fixes)} answer_start(s) to the nearest occurrence: {shown}",
                      stacklevel=2)
    return out
