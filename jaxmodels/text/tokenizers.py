"""Tokenizers for the text family: BERT WordPiece and GPT-2 byte-level BPE.

Pure Python (plus ``regex`` for GPT-2's Unicode pre-tokenisation pattern); no dependency on
``transformers`` / ``tokenizers``.  Both are reimplemented from the original sources and tested for
id-for-id equality with the Hugging Face implementations:

* :class:`WordPieceTokenizer` — BERT's ``BasicTokenizer`` + ``WordpieceTokenizer``
  (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
  Understanding"; google-research/bert ``tokenization.py``), including the CJK-character splitting
  used by the Chinese / multilingual checkpoints (and Chinese BERT-wwm, Cui et al. 2019, which uses the
  same vocabulary and tokenizer).  Offsets follow HF ``BertTokenizerFast``.
* :func:`build_wordpiece_vocab` — a simple, deterministic BERT-Chinese-style ``vocab.txt`` built from a
  local corpus (so a small Chinese BERT can be trained fully offline).
* :class:`ByteLevelBPETokenizer` — GPT-2's byte-level BPE (Radford et al. 2019, "Language Models are
  Unsupervised Multitask Learners"; openai/gpt-2 ``src/encoder.py``), reading/writing the standard
  ``vocab.json`` + ``merges.txt`` pair.
* :func:`train_byte_level_bpe` — standard BPE training (Sennrich et al. 2016) on byte-level symbols with
  incremental pair counts; the tie-break rule is that of HF ``tokenizers``' ``BpeTrainer``.
"""
from __future__ import annotations

import collections
import heapq
import json
import os
import unicodedata
from typing import Iterable, Mapping, Sequence

import regex

from jaxmodels.training.files import atomic_write, atomic_write_json

__all__ = [
    "WordPieceTokenizer",
    "build_wordpiece_vocab",
    "read_vocab",
    "write_vocab",
    "ByteLevelBPETokenizer",
    "bytes_to_unicode",
    "train_byte_level_bpe",
    "GPT2_PRETOKENIZE_PATTERN",
]

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
BERT_SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)


# ---------------------------------------------------------------------------------------------------
# BERT character classes (google-research/bert tokenization.py: _is_whitespace, _is_control,
# _is_punctuation, BasicTokenizer._is_chinese_char).
# ---------------------------------------------------------------------------------------------------

def _is_whitespace(ch: str) -> bool:
    """BERT ``_is_whitespace``: space, \\t, \\n, \\r and Unicode category Zs."""
    if ch in " \t\n\r":
        return True
    return unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    """BERT ``_is_control``: Unicode category C* except \\t, \\n, \\r (which count as whitespace)."""
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    """BERT ``_is_punctuation``: all non-alphanumeric ASCII printable characters, plus category P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    """BERT ``_is_chinese_char``: the CJK Unified Ideographs blocks (not Hangul / kana)."""
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class _BasicTokenizer:
    """BERT's BasicTokenizer, run character by character so every output character keeps the index of
    the input character it came from (what HF ``tokenizers``' ``NormalizedString`` alignments give).

    Steps, in the order of HF ``tokenizers``' ``BertNormalizer`` + ``BertPreTokenizer``:
    clean text (drop \\x00, U+FFFD and control characters; whitespace -> " "), put spaces around CJK
    characters, strip accents (NFD, drop category Mn), lower-case, then split on whitespace and make every
    punctuation character its own word.
    """

    def __init__(self, do_lower_case: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True):
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = bool(do_lower_case) if strip_accents is None else bool(strip_accents)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self._char_cache: dict[str, str] = {}

    def _normalize_char(self, ch: str) -> str:
        out = self._char_cache.get(ch)
        if out is not None:
            return out
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            out = ""
        elif _is_whitespace(ch):
            out = " "
        elif self.tokenize_chinese_chars and _is_chinese_char(cp):
            out = " " + ch + " "
        else:
            out = ch
            if self.strip_accents:
                out = "".join(c for c in unicodedata.normalize("NFD", out) if unicodedata.category(c) != "Mn")
            if self.do_lower_case:
                out = out.lower()
        if len(self._char_cache) < 65536:
            self._char_cache[ch] = out
        return out

    def words(self, text: str, start: int = 0, end: int | None = None) -> list[tuple[str, list[int]]]:
        """Basic tokens of ``text[start:end]``: ``(normalised word, original index of each of its chars)``."""
        end = len(text) if end is None else end
        words: list[tuple[str, list[int]]] = []
        cur: list[str] = []
        cur_idx: list[int] = []

        def flush():
            if cur:
                words.append(("".join(cur), cur_idx.copy()))
                cur.clear()
                cur_idx.clear()

        for i in range(start, end):
            for c in self._normalize_char(text[i]):
                if c.isspace():
                    flush()
                elif _is_punctuation(c):
                    flush()
                    words.append((c, [i]))
                else:
                    cur.append(c)
                    cur_idx.append(i)
        flush()
        return words

    def tokenize(self, text: str) -> list[str]:
        return [w for w, _ in self.words(text)]


# ---------------------------------------------------------------------------------------------------
# WordPiece
# ---------------------------------------------------------------------------------------------------

class WordPieceTokenizer:
    """BERT WordPiece tokenizer (Devlin et al. 2019; google-research/bert ``tokenization.py``
    ``FullTokenizer`` = ``BasicTokenizer`` + ``WordpieceTokenizer``), matching HF ``BertTokenizer`` /
    ``BertTokenizerFast`` ids and the fast tokenizer's character offsets.

    Args:
      vocab: token -> id mapping, or a sequence of tokens (id = position).
      do_lower_case: lower-case the input (the ``uncased`` / Chinese checkpoints).
      strip_accents: NFD + drop non-spacing marks; ``None`` follows ``do_lower_case`` (as HF / BERT).
      tokenize_chinese_chars: put every CJK ideograph in its own word (BERT's ``_is_chinese_char``).
      unk_token, pad_token, cls_token, sep_token, mask_token: the special tokens.
      max_input_chars_per_word: longer (normalised) words become a single ``unk_token``.
      never_split: strings matched verbatim in the raw text and emitted as one token, like HF's special
        (added) tokens; ``None`` = the five special tokens; given tokens are added to them.

    Differences from HF, all outside ordinary text: HF's slow tokenizer applies NFC before tokenising and
    lower-cases whole words (Greek final sigma), the fast one does neither; we follow the fast one.
    ``never_split`` tokens are matched in the raw text (fast-tokenizer semantics), not per
    whitespace-delimited word (slow ``BasicTokenizer`` semantics).
    """

    def __init__(
        self,
        vocab: Mapping[str, int] | Sequence[str],
        *,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        unk_token: str = UNK,
        pad_token: str = PAD,
        cls_token: str = CLS,
        sep_token: str = SEP,
        mask_token: str = MASK,
        max_input_chars_per_word: int = 100,
        never_split: Iterable[str] | None = None,
    ):
        if isinstance(vocab, (str, bytes, os.PathLike)):
            raise TypeError("vocab must be a mapping or a sequence of tokens; use WordPieceTokenizer.from_file(path)")
        if isinstance(vocab, Mapping):
            v = {str(t): int(i) for t, i in vocab.items()}
            inv: dict[int, str] = {}
            for t, i in v.items():
                if i in inv:
                    raise ValueError(f"vocab: id {i} used by both {inv[i]!r} and {t!r}")
                inv[i] = t
        else:
            v, inv = {}, {}
            for i, t in enumerate(vocab):
                if t in v:
                    raise ValueError(f"vocab: duplicate token {t!r} at index {i} (first at index {v[t]})")
                v[t] = i
                inv[i] = t
        if not v:
            raise ValueError("vocab is empty")
        self._vocab = v
        self._inv = inv
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.unk_token, self.pad_token, self.cls_token = unk_token, pad_token, cls_token
        self.sep_token, self.mask_token = sep_token, mask_token
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        specials = [unk_token, pad_token, cls_token, sep_token, mask_token]
        self.never_split = frozenset(specials) | frozenset(never_split or ())
        toks = sorted((t for t in self.never_split if t), key=lambda t: (-len(t), t))
        self._never_split_re = regex.compile("|".join(regex.escape(t) for t in toks)) if toks else None
        self._basic = _BasicTokenizer(do_lower_case, strip_accents, tokenize_chinese_chars)
        self._max_piece_len = max(len(t) - 2 if t.startswith("##") else len(t) for t in v)
        self._max_piece_len = max(self._max_piece_len, 1)

    # ---- construction / io ----------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kw) -> "WordPieceTokenizer":
        """Read a BERT ``vocab.txt`` (one token per line, id = line number - 1), as HF ``load_vocab``."""
        return cls(read_vocab(path), **kw)

    def save(self, path: str | os.PathLike) -> str:
        """Write ``vocab.txt`` (to ``path``, or ``path/vocab.txt`` if ``path`` is a directory)."""
        if os.path.isdir(path):
            path = os.path.join(path, "vocab.txt")
        ids = sorted(self._inv)
        if ids != list(range(len(ids))):
            raise ValueError("vocab ids are not 0..N-1; cannot be written as vocab.txt")
        write_vocab(path, [self._inv[i] for i in ids])
        return os.fspath(path)

    # ---- vocabulary -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    @property
    def inv_vocab(self) -> dict[int, str]:
        return dict(self._inv)

    def _special_id(self, token: str, what: str) -> int:
        try:
            return self._vocab[token]
        except KeyError:
            raise KeyError(f"{what} token {token!r} is not in the vocabulary") from None

    @property
    def pad_id(self) -> int:
        return self._special_id(self.pad_token, "pad")

    @property
    def unk_id(self) -> int:
        return self._special_id(self.unk_token, "unk")

    @property
    def cls_id(self) -> int:
        return self._special_id(self.cls_token, "cls")

    @property
    def sep_id(self) -> int:
        return self._special_id(self.sep_token, "sep")

    @property
    def mask_id(self) -> int:
        return self._special_id(self.mask_token, "mask")

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Unknown tokens map to ``unk_id``."""
        v = self._vocab
        unk = v.get(self.unk_token)
        out = []
        for t in tokens:
            i = v.get(t, unk)
            if i is None:
                raise KeyError(f"token {t!r} not in vocab and unk token {self.unk_token!r} is missing")
            out.append(i)
        return out

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        out = []
        for i in ids:
            try:
                out.append(self._inv[int(i)])
            except KeyError:
                raise KeyError(f"id {int(i)} is not in the vocabulary (size {len(self._vocab)})") from None
        return out

    # ---- tokenisation ---------------------------------------------------------------------------

    def _wordpiece(self, word: str, idx: list[int], out: list[tuple[str, int, int]]):
        """Greedy longest-match-first WordPiece of one basic token (BERT ``WordpieceTokenizer``)."""
        n = len(word)
        if n > self.max_input_chars_per_word:
            out.append((self.unk_token, idx[0], idx[-1] + 1))
            return
        vocab = self._vocab
        pieces = []
        start = 0
        while start < n:
            end = min(n, start + self._max_piece_len)
            cur = None
            while start < end:
                sub = word[start:end]
                if start > 0:
                    sub = "##" + sub
                if sub in vocab:
                    cur = sub
                    break
                end -= 1
            if cur is None:
                out.append((self.unk_token, idx[0], idx[-1] + 1))
                return
            pieces.append((cur, idx[start], idx[end - 1] + 1))
            start = end
        out.extend(pieces)

    def tokenize_with_offsets(self, text: str) -> list[tuple[str, int, int]]:
        """WordPiece tokens with ``(start, end)`` character offsets into the original ``text``.

        Equal to ``BertTokenizerFast(text, return_offsets_mapping=True)``'s offsets (without the
        special tokens it adds); an unknown word is one ``unk_token`` spanning the whole word.
        """
        out: list[tuple[str, int, int]] = []
        pos = 0
        if self._never_split_re is not None:
            for m in self._never_split_re.finditer(text):
                for w, idx in self._basic.words(text, pos, m.start()):
                    self._wordpiece(w, idx, out)
                out.append((m.group(), m.start(), m.end()))
                pos = m.end()
        for w, idx in self._basic.words(text, pos, len(text)):
            self._wordpiece(w, idx, out)
        return out

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text`` (continuation pieces prefixed with ``##``)."""
        return [t for t, _, _ in self.tokenize_with_offsets(text)]

    def basic_tokenize(self, text: str) -> list[str]:
        """Only BERT's BasicTokenizer step (normalised words, before WordPiece)."""
        return self._basic.tokenize(text)

    def encode(self, text: str, text_pair: str | None = None, *, max_length: int | None = None,
               add_special_tokens: bool = True) -> dict[str, list[int]]:
        """``{"input_ids", "token_type_ids", "attention_mask"}`` for ``[CLS] a [SEP]`` or
        ``[CLS] a [SEP] b [SEP]`` (segment ids 0 for a and its [SEP]s, 1 for b and the last [SEP]).

        With ``max_length``, truncates like HF ``BertTokenizer(Fast)`` with ``truncation="longest_first"``
        (see :func:`_longest_first`); no padding.  ``text_pair=""`` is an (empty) second segment, as in HF's
        slow tokenizer (the fast one drops an empty pair).
        """
        a = self.convert_tokens_to_ids(self.tokenize(text))
        b = None if text_pair is None else self.convert_tokens_to_ids(self.tokenize(text_pair))
        if max_length is not None:
            n_special = (2 if b is None else 3) if add_special_tokens else 0
            budget = int(max_length) - n_special
            if budget < 0:
                raise ValueError(f"max_length={max_length} is smaller than the {n_special} special tokens")
            if b is None:
                a = a[:budget]
            else:
                na, nb = _longest_first(len(a), len(b), budget)
                a, b = a[:na], b[:nb]
        if add_special_tokens:
            ids = [self.cls_id] + a + [self.sep_id]
            types = [0] * len(ids)
            if b is not None:
                ids += b + [self.sep_id]
                types += [1] * (len(b) + 1)
        else:
            ids = a + (b or [])
            types = [0] * len(a) + [1] * len(b or [])
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids)}

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True,
               clean_up_tokenization_spaces: bool = True) -> str:
        """Tokens joined by spaces with ``##`` continuations glued on (HF ``convert_tokens_to_string``),
        then HF's ``clean_up_tokenization`` (``" ."`` -> ``"."``, ``" ' "`` -> ``"'"``, ...).

        As HF, CJK characters come back space-separated, and ``skip_special_tokens`` also drops
        ``[UNK]`` (it is one of the special tokens).
        """
        toks = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            toks = [t for t in toks if t not in self.never_split]
        text = " ".join(toks).replace(" ##", "").strip()
        if clean_up_tokenization_spaces:
            text = _clean_up_tokenization(text)
        return text


def _longest_first(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """Lengths after HF (fast, Rust ``tokenizers``) ``longest_first`` truncation of a pair to ``budget``.

    The shorter sequence (the first one on ties) keeps ``min(len, budget // 2)`` tokens and the longer one
    the rest.  HF's slow tokenizer and google-research/bert ``_truncate_seq_pair`` pop one token at a time
    from the longer sequence (the second on ties), which differs only when both exceed half of an odd
    budget: there the first sequence, not the longer / second one, keeps the extra token.
    """
    if n1 + n2 <= budget:
        return n1, n2
    if n1 <= n2:
        k1 = min(n1, budget // 2)
        return k1, min(n2, budget - k1)
    k2 = min(n2, budget // 2)
    return min(n1, budget - k2), k2


def _clean_up_tokenization(text: str) -> str:
    """HF ``PreTrainedTokenizerBase.clean_up_tokenization``."""
    return (
        text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
        .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
        .replace(" 've", "'ve").replace(" 're", "'re")
    )


def read_vocab(path: str | os.PathLike) -> list[str]:
    """Tokens of a ``vocab.txt`` (line i -> id i-1; lines read like HF ``load_vocab``: ``rstrip("\\n")``).

    Raises FileNotFoundError / ValueError naming the file (and line) for a missing file, an empty file or
    a duplicate token.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"vocab file not found: {path}")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    tokens: list[str] = []
    first: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        tok = line.rstrip("\n")
        if tok in first:
            raise ValueError(f"{path}:{lineno}: duplicate token {tok!r} (first on line {first[tok]})")
        first[tok] = lineno
        tokens.append(tok)
    if not tokens:
        raise ValueError(f"{path}: empty vocab file")
    return tokens


def write_vocab(path: str | os.PathLike, tokens: Sequence[str]) -> None:
    """Write a BERT ``vocab.txt``: one token per line, in id order (atomically: no partial vocab on a crash)."""
    seen = set()
    for t in tokens:
        if "\n" in t or "\r" in t:
            raise ValueError(f"token {t!r} contains a line break; cannot be written to {os.fspath(path)}")
        if t in seen:
            raise ValueError(f"duplicate token {t!r}")
        seen.add(t)
    with atomic_write(path, newline="\n") as f:
        f.writelines(t + "\n" for t in tokens)


def build_wordpiece_vocab(texts: Iterable[str], *, max_size: int, min_frequency: int = 1,
                          do_lower_case: bool = True) -> list[str]:
    """A BERT-Chinese-style WordPiece vocabulary from a local corpus (deterministic).

    Order (the id of a token is its position; truncated to ``max_size``):

    1. ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0..4);
    2. every character of every basic token (after BERT's basic tokenisation with ``do_lower_case`` and
       the matching accent stripping): CJK characters, punctuation, letters, digits, ...;
    3. ``##c`` for every such character that can continue a word (not CJK, not punctuation: those are
       always words of their own);
    4. whole multi-character basic tokens (i.e. non-CJK words) with count >= ``min_frequency``.

    Within each group tokens are ordered by decreasing corpus frequency, ties broken by the token string.
    With ``max_size`` large enough for groups 1-3, every character of the corpus is in the vocabulary, so
    nothing maps to ``[UNK]`` (words missing from group 4 fall back to ``c ##c ##c``).  Like the original
    Chinese BERT vocabulary, Chinese is tokenised per character; there is no subword learning.
    """
    if max_size < len(BERT_SPECIAL_TOKENS):
        raise ValueError(f"max_size={max_size} is smaller than the {len(BERT_SPECIAL_TOKENS)} special tokens")
    basic = _BasicTokenizer(do_lower_case=do_lower_case)
    words: collections.Counter[str] = collections.Counter()
    for text in texts:
        words.update(basic.tokenize(text))
    chars: collections.Counter[str] = collections.Counter()
    for w, c in words.items():
        for ch in w:
            chars[ch] += c

    def by_freq(counter):
        return [t for t, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]

    out = list(BERT_SPECIAL_TOKENS)
    seen = set(out)

    def add(tokens):
        for t in tokens:
            if t not in seen:
                seen.add(t)
                out.append(t)

    ordered_chars = by_freq(chars)
    add(ordered_chars)
    add("##" + ch for ch in ordered_chars if not (_is_chinese_char(ord(ch)) or _is_punctuation(ch)))
    add(w for w in by_freq(words) if len(w) > 1 and words[w] >= min_frequency)
    return out[:max_size]


# ---------------------------------------------------------------------------------------------------
# GPT-2 byte-level BPE
# ---------------------------------------------------------------------------------------------------

GPT2_PRETOKENIZE_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_GPT2_RE = regex.compile(GPT2_PRETOKENIZE_PATTERN)
EOS_TOKEN = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode-character map (openai/gpt-2 ``encoder.py``).

    Printable Latin-1 bytes map to themselves; the other 68 (control chars, space, ...) to U+0100.. in order,
    so e.g. the space byte is ``"Ġ"`` and newline ``"Ċ"``.
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_BYTE_ENCODER = bytes_to_unicode()
_BYTE_DECODER = {c: b for b, c in _BYTE_ENCODER.items()}


class ByteLevelBPETokenizer:
    """GPT-2 byte-level BPE (Radford et al. 2019; openai/gpt-2 ``src/encoder.py``).

    ``encode``: split the text on special tokens (each becomes its single id, as HF ``GPT2Tokenizer`` does
    for its added special tokens); pre-tokenise the rest with :data:`GPT2_PRETOKENIZE_PATTERN`; map each
    chunk's UTF-8 bytes through :func:`bytes_to_unicode`; apply the merges lowest rank first (cached per
    chunk); look the resulting symbols up in the vocabulary.

    Args:
      vocab: token -> id (``encoder.json`` / ``vocab.json``).
      merges: ordered merge pairs (rank = position).
      special_tokens: tokens matched verbatim in the raw text; ``None`` = ``<|endoftext|>`` if it is in the
        vocabulary.  They must be in the vocabulary.
    """

    def __init__(self, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], *,
                 special_tokens: Sequence[str] | None = None):
        self._vocab = {str(t): int(i) for t, i in vocab.items()}
        self._inv: dict[int, str] = {}
        for t, i in self._vocab.items():
            if i in self._inv:
                raise ValueError(f"vocab: id {i} used by both {self._inv[i]!r} and {t!r}")
            self._inv[i] = t
        self._merges: list[tuple[str, str]] = []
        self._ranks: dict[tuple[str, str], int] = {}
        for k, pair in enumerate(merges):
            a, b = pair
            _check_merge(self._vocab, a, b, f"merge {k}")
            self._merges.append((a, b))
            self._ranks.setdefault((a, b), k)
        if special_tokens is None:
            special_tokens = [EOS_TOKEN] if EOS_TOKEN in self._vocab else []
        for t in special_tokens:
            if t not in self._vocab:
                raise ValueError(f"special token {t!r} is not in the vocabulary")
        self.special_tokens = tuple(special_tokens)
        toks = sorted(set(self.special_tokens), key=lambda t: (-len(t), t))
        self._special_re = regex.compile("|".join(regex.escape(t) for t in toks)) if toks else None
        self._special_ids = {self._vocab[t] for t in self.special_tokens}
        self._cache: dict[str, tuple[str, ...]] = {}

    # ---- io -------------------------------------------------------------------------------------

    @classmethod
    def from_files(cls, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike, **kw) -> "ByteLevelBPETokenizer":
        """Load GPT-2 format ``vocab.json`` (``encoder.json``) + ``merges.txt`` (``vocab.bpe``).

        ``merges.txt`` may start with a ``#version`` line; blank lines are skipped; every other line must
        be two space-separated symbols whose parts and concatenation are in the vocabulary.  Errors name the
        file (and line).
        """
        vocab_json, merges_txt = os.fspath(vocab_json), os.fspath(merges_txt)
        for p in (vocab_json, merges_txt):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"file not found: {p}")
        with open(vocab_json, encoding="utf-8") as f:
            try:
                vocab = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{vocab_json}:{e.lineno}: invalid JSON: {e.msg}") from None
        if not isinstance(vocab, dict) or not all(isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()):
            raise ValueError(f"{vocab_json}: expected a JSON object mapping tokens to integer ids")
        merges = []
        with open(merges_txt, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if lineno == 1 and line.startswith("#version"):
                    continue
                if not line.strip():
                    continue
                parts = line.split(" ")
                if len(parts) != 2 or not parts[0] or not parts[1]:
                    raise ValueError(f"{merges_txt}:{lineno}: malformed merge line {line!r} "
                                     "(expected two space-separated symbols)")
                _check_merge(vocab, parts[0], parts[1], f"{merges_txt}:{lineno}")
                merges.append((parts[0], parts[1]))
        return cls(vocab, merges, **kw)

    def save(self, directory: str | os.PathLike) -> tuple[str, str]:
        """Write ``vocab.json`` and ``merges.txt`` (with a ``#version: 0.2`` header) into ``directory``, each atomically."""
        vpath = os.path.join(directory, "vocab.json")
        mpath = os.path.join(directory, "merges.txt")
        atomic_write_json(vpath, dict(sorted(self._vocab.items(), key=lambda kv: kv[1])), ensure_ascii=False)
        with atomic_write(mpath, newline="\n") as f:
            f.write("#version: 0.2\n")
            f.writelines(f"{a} {b}\n" for a, b in self._merges)
        return vpath, mpath

    # ---- vocabulary -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    @property
    def merges(self) -> list[tuple[str, str]]:
        return list(self._merges)

    def token_to_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    def id_to_token(self, i: int) -> str | None:
        return self._inv.get(int(i))

    @property
    def eos_id(self) -> int | None:
        """Id of ``<|endoftext|>``, or None if it is not in the vocabulary."""
        return self._vocab.get(EOS_TOKEN)

    # ---- encode / decode ------------------------------------------------------------------------

    def _bpe(self, chunk: str) -> tuple[str, ...]:
        """Merge the byte symbols of one pre-token, lowest-rank pair first (openai ``Encoder.bpe``)."""
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        word = tuple(chunk)
        ranks = self._ranks
        while len(word) > 1:
            best, best_rank = None, None
            for pair in zip(word, word[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            first, second = best
            new = []
            i, n = 0, len(word)
            while i < n:
                if i < n - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        if len(self._cache) >= 100_000:
            self._cache.clear()
        self._cache[chunk] = word
        return word

    def _segments(self, text: str):
        """Yield ``(is_special, piece)`` splitting ``text`` on the special tokens."""
        pos = 0
        if self._special_re is not None:
            for m in self._special_re.finditer(text):
                if m.start() > pos:
                    yield False, text[pos:m.start()]
                yield True, m.group()
                pos = m.end()
        if pos < len(text):
            yield False, text[pos:]

    def tokenize(self, text: str) -> list[str]:
        """Byte-level BPE token strings (e.g. ``"Ġworld"``); special tokens verbatim."""
        out: list[str] = []
        enc = _BYTE_ENCODER
        for special, piece in self._segments(text):
            if special:
                out.append(piece)
                continue
            for chunk in _GPT2_RE.findall(piece):
                out.extend(self._bpe("".join(enc[b] for b in chunk.encode("utf-8"))))
        return out

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS added, as GPT-2)."""
        vocab = self._vocab
        try:
            return [vocab[t] for t in self.tokenize(text)]
        except KeyError as e:
            raise KeyError(f"BPE symbol {e.args[0]!r} is not in the vocabulary "
                           "(vocab lacks some of the 256 byte symbols?)") from None

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Inverse of :meth:`encode`: byte symbols back to bytes, UTF-8 decoded with ``errors="replace"``."""
        buf = bytearray()
        for i in ids:
            i = int(i)
            tok = self._inv.get(i)
            if tok is None:
                raise KeyError(f"id {i} is not in the vocabulary (size {len(self._vocab)})")
            if i in self._special_ids:
                if not skip_special_tokens:
                    buf += tok.encode("utf-8")
                continue
            for c in tok:
                b = _BYTE_DECODER.get(c)
                buf += c.encode("utf-8") if b is None else bytes((b,))
        return buf.decode("utf-8", errors="replace")


def _check_merge(vocab: Mapping[str, int], a: str, b: str, where: str) -> None:
    for t in (a, b, a + b):
        if t not in vocab:
            raise ValueError(f"{where}: merge {a!r} {b!r}: {t!r} is not in the vocabulary")


def train_byte_level_bpe(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2,
                         special_tokens: Sequence[str] = (EOS_TOKEN,)) -> ByteLevelBPETokenizer:
    """Train a GPT-2 byte-level BPE (Sennrich et al. 2016 BPE on the byte symbols of Radford et al. 2019).

    Vocabulary: ``special_tokens`` (ids 0..), then all 256 byte symbols sorted by code point, then one new
    symbol per merge, until ``vocab_size`` or until the best pair occurs fewer than ``min_frequency`` times.
    Each text is split on the special tokens (they are not learnt from), pre-tokenised with
    :data:`GPT2_PRETOKENIZE_PATTERN` and byte-mapped; identical pre-tokens are counted once with their
    frequency.  Each step merges the most frequent adjacent pair, ties broken by the smaller
    ``(id_left, id_right)`` — the rule of HF ``tokenizers``' ``BpeTrainer``.  Pair counts are updated
    incrementally from the words that contain the merged pair (max-heap with lazy invalidation): ~1 MB of
    text and ~7.6k merges take under a second, and give exactly HF ``tokenizers``' merges when the training
    text holds no special tokens (HF does not split them out while training).
    """
    specials = list(dict.fromkeys(special_tokens))
    split_re = (regex.compile("|".join(regex.escape(t) for t in sorted(specials, key=lambda t: (-len(t), t))))
                if specials else None)
    enc = _BYTE_ENCODER
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        pieces = split_re.split(text) if split_re is not None else [text]
        for piece in pieces:
            if piece:
                counts.update(_GPT2_RE.findall(piece))

    id2tok: list[str] = list(specials)
    tok2id: dict[str, int] = {t: i for i, t in enumerate(id2tok)}
    for c in sorted(enc.values()):
        if c not in tok2id:
            tok2id[c] = len(id2tok)
            id2tok.append(c)
    if vocab_size < len(id2tok):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(id2tok)} special + byte symbols")

    words: list[list[int]] = []
    freqs: list[int] = []
    byte_cache = {}
    for chunk, c in counts.items():
        sym = []
        for ch in chunk:
            ids = byte_cache.get(ch)
            if ids is None:
                ids = byte_cache[ch] = [tok2id[enc[b]] for b in ch.encode("utf-8")]
            sym.extend(ids)
        words.append(sym)
        freqs.append(c)

    pair_counts: dict[tuple[int, int], int] = collections.defaultdict(int)
    where: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
    for wi, (w, c) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            pair_counts[p] += c
            where[p].add(wi)
    heap = [(-c, p[0], p[1]) for p, c in pair_counts.items() if c > 0]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(id2tok) < vocab_size and heap:
        negc, a, b = heapq.heappop(heap)
        cur = pair_counts.get((a, b), 0)
        if -negc != cur:
            if cur > 0:
                heapq.heappush(heap, (-cur, a, b))
            continue
        if cur < max(min_frequency, 1):
            break
        new_tok = id2tok[a] + id2tok[b]
        new = tok2id.get(new_tok)
        if new is None:
            new = tok2id[new_tok] = len(id2tok)
            id2tok.append(new_tok)
        merges.append((id2tok[a], id2tok[b]))
        changed: dict[tuple[int, int], int] = collections.defaultdict(int)
        for wi in where.pop((a, b), ()):
            w = words[wi]
            c = freqs[wi]
            i = 0
            while i < len(w) - 1:
                if w[i] == a and w[i + 1] == b:
                    if i > 0:
                        prev = w[i - 1]
                        changed[(prev, a)] -= c
                        changed[(prev, new)] += c
                        where[(prev, new)].add(wi)
                    w[i:i + 2] = [new]
                    if i < len(w) - 1:
                        nxt = w[i + 1]
                        changed[(b, nxt)] -= c
                        changed[(new, nxt)] += c
                        where[(new, nxt)].add(wi)
                i += 1
        pair_counts.pop((a, b), None)
        for p, d in changed.items():
            if p == (a, b) or d == 0:
                continue
            pair_counts[p] += d
            if d > 0:
                heapq.heappush(heap, (-pair_counts[p], p[0], p[1]))

    return ByteLevelBPETokenizer({t: i for i, t in enumerate(id2tok)}, merges, special_tokens=specials)
