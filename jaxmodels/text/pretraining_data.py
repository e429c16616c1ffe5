"""BERT pretraining examples (google-research/bert ``create_pretraining_data.py``) with the
word-start flags whole word masking needs; masking itself is left to the input pipeline
(:class:`jaxmodels.text.masking.WholeWordMask`), so each epoch gets fresh masks.

Pipeline::

    docs = read_corpus("corpus.txt")                     # one sentence a line, blank = new doc
    arrays = build_pretraining_arrays(docs, tokenizer, JiebaSegmenter(), max_seq_length=128)
    save_arrays("train.npz", arrays)                     # atomic
    ds = (grain.MapDataset.source(ArrayDataSource(load_arrays("train.npz")))
          .seed(0).shuffle().repeat().random_map(WholeWordMask.from_tokenizer(tokenizer))
          .batch(32))

:func:`create_instances_from_document` follows Google's function step by step (same random
calls in the same order; pass a ``random.Random`` to reproduce Google's draws exactly):

* ``max_num_tokens = max_seq_length - 3``; with probability ``short_seq_prob`` the target
  length is ``randint(2, max_num_tokens)`` instead (inclusive);
* sentences are collected into a chunk until it reaches the target or the document ends;
  segment A is the first ``randint(1, len(chunk) - 1)`` sentences (1 if the chunk has one);
* B is the rest of the chunk, except with probability 0.5 (always for a one-sentence chunk)
  when B is taken from a random other document (10 tries to avoid this one), from a random
  sentence on until it reaches ``target - len(A)``; the chunk's unused sentences are "put
  back" to be read again;
* :func:`truncate_seq_pair` removes tokens from the longer of A/B, front or back at random,
  until ``len(A) + len(B) <= max_num_tokens``;
* ``[CLS] A [SEP] B [SEP]`` with segment ids 0 for [CLS] A [SEP] and 1 for B [SEP].

``next_sentence_label``: 0 = B is the actual next text, 1 = random (Google's
``is_random_next``, HF's ``next_sentence_label``).

``nsp=False`` (RoBERTa-wwm-ext dropped NSP) packs whole consecutive sentences of one document
into single segments ``[CLS] S1 S2 ... [SEP]`` (``max_num_tokens = max_seq_length - 2``, the
same ``short_seq_prob`` target), RoBERTa's DOC-SENTENCES: a segment never crosses a document
boundary, a sentence that would overflow the segment starts the next one, and a sentence
longer than the segment on its own is cut into segment-sized pieces. ``token_type_ids`` are
all 0 and ``next_sentence_label`` is 0. (How the RoBERTa-wwm-ext data was packed is not
published; this is the RoBERTa paper's scheme.)
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from jaxmodels.text.masking import Segmenter, _Draws, tokenize_with_word_starts
from jaxmodels.training.files import atomic_save_npz

ARRAY_KEYS = ("input_ids", "token_type_ids", "attention_mask", "word_start", "next_sentence_label")


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_num_tokens: int, rng) -> None:
    """Google's truncation, in place: drop from the longer list (B on ties), front or back
    with probability 1/2 each, until the pair fits in ``max_num_tokens``."""
    draws = rng if isinstance(rng, _Draws) else _Draws(rng)
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        assert len(trunc) >= 1
        if draws.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()


def _pairs(sentence) -> list[tuple]:
    """A (tokens, word_start) sentence as a list of (token, start) pairs."""
    tokens, starts = sentence
    if len(tokens) != len(starts):
        raise ValueError(f"sentence has {len(tokens)} tokens but {len(starts)} word_start flags.")
    return list(zip(tokens, (bool(s) for s in starts)))


def _instance(segments: Sequence[list], cls_token, sep_token, is_random_next: bool) -> dict:
    tokens, starts, types = [cls_token], [True], [0]
    for type_id, segment in enumerate(segments):
        for token, start in segment:
            tokens.append(token)
            starts.append(start)
            types.append(type_id)
        tokens.append(sep_token)
        starts.append(True)
        types.append(type_id)
    return {"tokens": tokens, "token_type_ids": types, "word_start": starts,
            "next_sentence_label": int(is_random_next)}


def create_instances_from_document(document, all_documents, document_index: int, *,
                                   max_seq_length: int, short_seq_prob: float, rng,
                                   nsp: bool = True, cls_token="[CLS]",
                                   sep_token="[SEP]") -> list[dict]:
    """Google's ``create_instances_from_document`` without the masking step.

    ``document`` is ``all_documents[document_index]``: a list of sentences, each a
    ``(tokens, word_start)`` pair (tokens may be strings or ids; ``cls_token``/``sep_token``
    must then be of the same kind). ``rng`` is a ``np.random.Generator`` or ``random.Random``.

    Returns plain dicts ``{"tokens", "token_type_ids", "word_start", "next_sentence_label"}``
    (lists of equal length ``<= max_seq_length``; [CLS]/[SEP] are word starts).
    """
    draws = _Draws(rng)
    if not nsp:
        return _packed_instances(document, max_seq_length, short_seq_prob, draws,
                                 cls_token, sep_token)
    max_num_tokens = max_seq_length - 3
    if max_num_tokens < 2:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for two segments.")
    target_seq_length = max_num_tokens
    if draws.random() < short_seq_prob:
        target_seq_length = draws.randint(2, max_num_tokens)

    instances = []
    current_chunk: list[list] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = _pairs(document[i])
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = draws.randint(1, len(current_chunk) - 1)
                tokens_a = [p for seg in current_chunk[:a_end] for p in seg]
                tokens_b: list = []
                if len(current_chunk) == 1 or draws.random() < 0.5:
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    for _ in range(10):
                        random_document_index = draws.randint(0, len(all_documents) - 1)
                        if random_document_index != document_index:
                            break
                    random_document = all_documents[random_document_index]
                    random_start = draws.randint(0, len(random_document) - 1)
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(_pairs(random_document[j]))
                        if len(tokens_b) >= target_b_length:
                            break
                    i -= len(current_chunk) - a_end  # put the unused segments back
                else:
                    is_random_next = False
                    tokens_b = [p for seg in current_chunk[a_end:] for p in seg]
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, draws)
                assert len(tokens_a) >= 1 and len(tokens_b) >= 1
                instances.append(_instance((tokens_a, tokens_b), cls_token, sep_token,
                                           is_random_next))
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def _packed_instances(document, max_seq_length, short_seq_prob, draws, cls_token, sep_token):
    """Single-segment, full-sentence packing for ``nsp=False`` (see the module docstring)."""
    max_num_tokens = max_seq_length - 2
    if max_num_tokens < 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for tokens.")
    target = max_num_tokens
    if draws.random() < short_seq_prob:
        target = draws.randint(min(2, max_num_tokens), max_num_tokens)
    instances = []
    current: list = []
    for sentence in document:
        pairs = _pairs(sentence)
        if current and len(current) + len(pairs) > target:
            instances.append(_instance((current,), cls_token, sep_token, False))
            current = []
        while len(pairs) > max_num_tokens:  # one over-long sentence: cut into full pieces
            if current:
                instances.append(_instance((current,), cls_token, sep_token, False))
                current = []
            instances.append(_instance((pairs[:max_num_tokens],), cls_token, sep_token, False))
            pairs = pairs[max_num_tokens:]
        current.extend(pairs)
    if current:
        instances.append(_instance((current,), cls_token, sep_token, False))
    return instances


def tokenize_documents(documents_text: Sequence[Sequence[str]], tokenizer,
                       segmenter: Segmenter | None) -> list[list[tuple[list[int], list[bool]]]]:
    """Sentences -> ``(ids, word_start)`` pairs; empty sentences and documents are dropped."""
    documents = []
    for doc in documents_text:
        sentences = []
        for line in doc:
            line = line.strip()
            if not line:
                continue
            tokens, starts = tokenize_with_word_starts(line, tokenizer, segmenter)
            if tokens:
                sentences.append((list(tokenizer.convert_tokens_to_ids(tokens)), starts))
        if sentences:
            documents.append(sentences)
    return documents


def build_pretraining_arrays(documents_text: Sequence[Sequence[str]], tokenizer,
                             segmenter: Segmenter | None, *, max_seq_length: int = 128,
                             short_seq_prob: float = 0.1, dupe_factor: int = 1, seed: int = 0,
                             nsp: bool = True) -> dict[str, np.ndarray]:
    """Tokenise, segment and pack a corpus into padded arrays, as Google's
    ``create_training_instances`` (documents shuffled, ``dupe_factor`` passes over them with
    fresh random splits, instances shuffled), unmasked.

    ``documents_text``: documents as lists of sentence strings (see :func:`read_corpus`);
    ``tokenizer``: ``tokenize``, ``convert_tokens_to_ids``, ``pad_id``, ``cls_id``, ``sep_id``.

    Returns ``input_ids``, ``token_type_ids``, ``attention_mask`` int32 [N, L], ``word_start``
    bool [N, L] (False on padding) and ``next_sentence_label`` int32 [N] (0 = actual next,
    1 = random). Deterministic given ``seed``.
    """
    rng = np.random.default_rng(seed)
    documents = tokenize_documents(documents_text, tokenizer, segmenter)
    documents = [documents[k] for k in rng.permutation(len(documents))]
    instances = []
    for _ in range(dupe_factor):
        for index in range(len(documents)):
            instances.extend(create_instances_from_document(
                documents[index], documents, index, max_seq_length=max_seq_length,
                short_seq_prob=short_seq_prob, rng=rng, nsp=nsp,
                cls_token=tokenizer.cls_id, sep_token=tokenizer.sep_id))
    instances = [instances[k] for k in rng.permutation(len(instances))]
    return instances_to_arrays(instances, max_seq_length, pad_id=tokenizer.pad_id)


def instances_to_arrays(instances: Sequence[dict], max_seq_length: int, *,
                        pad_id: int = 0) -> dict[str, np.ndarray]:
    """Pad id instances (from :func:`create_instances_from_document`) to [N, L] arrays."""
    n = len(instances)
    arrays = {
        "input_ids": np.full((n, max_seq_length), pad_id, np.int32),
        "token_type_ids": np.zeros((n, max_seq_length), np.int32),
        "attention_mask": np.zeros((n, max_seq_length), np.int32),
        "word_start": np.zeros((n, max_seq_length), bool),
        "next_sentence_label": np.zeros((n,), np.int32),
    }
    for row, inst in enumerate(instances):
        length = len(inst["tokens"])
        if length > max_seq_length:
            raise ValueError(f"instance {row} has {length} tokens > max_seq_length={max_seq_length}.")
        arrays["input_ids"][row, :length] = inst["tokens"]
        arrays["token_type_ids"][row, :length] = inst["token_type_ids"]
        arrays["attention_mask"][row, :length] = 1
        arrays["word_start"][row, :length] = inst["word_start"]
        arrays["next_sentence_label"][row] = inst["next_sentence_label"]
    return arrays


# ----------------------------------------------------------------------------- storage

def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz``, atomically (a temp file in the
    same directory, then ``os.replace``), so readers never see a partial file."""
    atomic_save_npz(path, {k: np.asarray(v) for k, v in arrays.items()})


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a :func:`save_arrays` file back into a dict of in-memory arrays."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class ArrayDataSource:
    """Random-access source over equal-length arrays for ``grain.MapDataset.source``:
    item ``i`` is ``{key: array[i]}`` (copies, so transforms may modify them)."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        if not arrays:
            raise ValueError("no arrays given.")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        lengths = {k: len(v) for k, v in self.arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays differ in length: {lengths}.")
        self._len = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        if not -self._len <= index < self._len:
            raise IndexError(f"index {index} out of range for {self._len} examples.")
        return {k: np.array(v[index]) for k, v in self.arrays.items()}

    def __repr__(self) -> str:
        return f"ArrayDataSource({self._len} examples, keys={sorted(self.arrays)})"


def read_corpus(path: str | os.PathLike) -> list[list[str]]:
    """Google's corpus format: UTF-8, one sentence per line, blank lines between documents.

    Lines are stripped; empty documents are dropped; a leading UTF-8 BOM is ignored. Invalid
    UTF-8 raises ``ValueError`` naming the file and the 1-based line.
    """
    documents: list[list[str]] = [[]]
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{os.fspath(path)}, line {lineno}: invalid UTF-8 ({err}).") from None
            if lineno == 1:
                line = line.lstrip("\ufeff")
            line = line.strip()
            if not line:
                documents.append([])
            else:
                documents[-1].append(line)
    return [doc for doc in documents if doc]


__all__ = ["ARRAY_KEYS", "ArrayDataSource", "build_pretraining_arrays",
           "create_instances_from_document", "instances_to_arrays", "load_arrays",
           "read_corpus", "save_arrays", "tokenize_documents", "truncate_seq_pair"]


def corpus_documents(data_cfg, directory: str) -> list[list[str]]:
    """The documents of ``data_cfg.corpus_path``, or of the offline People's Daily corpus."""
    path = data_cfg.get("corpus_path")
    if not path:
        from jaxmodels.data import chinese_corpus

        path = os.path.join(directory, "corpus.txt")
        if not os.path.exists(path):
            chinese_corpus.write_pretraining_corpus(directory, max_documents=data_cfg.get("max_documents") or None)
    documents = read_corpus(path)
    limit = data_cfg.get("max_documents")
    return documents[:limit] if limit else documents


def split_documents(documents: list, eval_fraction: float) -> tuple[list, list]:
    """Every k-th document (k = 1 / eval_fraction) is held out for evaluation."""
    if eval_fraction <= 0:
        return documents, []
    every = max(2, int(round(1.0 / eval_fraction)))
    train_docs = [d for i, d in enumerate(documents) if i % every != every - 1]
    eval_docs = [d for i, d in enumerate(documents) if i % every == every - 1]
    return train_docs, eval_docs
