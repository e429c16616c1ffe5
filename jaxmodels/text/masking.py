"""Chinese whole word masking (Cui et al., arXiv 1906.08101; ymcui/Chinese-BERT-wwm) in numpy.

Three pieces:

1. **Segmenters** turn raw text into words: any ``Callable[[str], list[str]]`` works
   (:class:`JiebaSegmenter`, :class:`CharSegmenter`, or e.g. ``lambda s: ltp.pipeline([s],
   tasks=["cws"]).cws[0]`` for the paper's LTP).
2. **Word starts**: BERT-Chinese tokenizers keep one token per CJK character, so a word is a
   run of tokens. A token *continues* the previous word (``word_start = False``) when it is
   (a) a ``##`` WordPiece continuation (Google's whole word masking), or (b) a CJK character
   inside a multi-character segmenter word whose characters are all CJK, after its first
   character (the rule of HF ``examples/research_projects/mlm_wwm/run_chinese_ref.py``: only
   Chinese characters inside Chinese words are joined; ``T恤`` or ``3.14`` are not). Everything
   else (punctuation, English words, digits) starts its own word.
3. **Masking**: :func:`create_masked_lm_predictions` is Google's ``create_masked_lm_predictions``
   (google-research/bert ``create_pretraining_data.py``, ``do_whole_word_mask=True``) on ids;
   :func:`mask_example` / :class:`WholeWordMask` apply it to a fixed-length example inside a
   grain pipeline, so every epoch sees fresh masks (dynamic masking), reproducible from
   grain's seed.

Google's procedure, which is followed exactly:

* candidates = every non-special token, grouped into whole words (or one token per group
  with ``whole_word=False``); the groups are shuffled;
* ``num_to_predict = min(max_predictions, max(1, int(round(n_tokens * masked_lm_prob))))``
  where ``n_tokens`` counts *all* real tokens, [CLS] and [SEP] included (Google's
  ``len(tokens)`` of the unpadded sequence), and ``round`` is Python 3's round-half-to-even
  (``round(2.5) == 2``), as when Google's script runs under Python 3;
* groups are taken in shuffled order; a group that would push the count past
  ``num_to_predict`` is *skipped* (not truncated) and the scan goes on with the next group,
  so whole words are never split and fewer than ``num_to_predict`` tokens can be chosen
  when only long words are left;
* each chosen token independently: 80% -> [MASK]; otherwise 50/50 keep the original or a
  random id drawn uniformly from ``[0, vocab_size)``. Like Google (``vocab_words[randint]``)
  the random id may be *any* vocabulary entry, special tokens ([PAD], [CLS], [MASK], ...)
  included;
* positions are returned sorted.

The random stream is consumed in Google's order (shuffle, then per chosen token one uniform,
a second uniform when not [MASK], and an integer when random), so with a ``random.Random``
generator the draws match Google's script call for call.

Differences from the references, all minor:

* Groups never cross special tokens. Google groups by the previous *candidate*, so a ``##``
  token right after a [SEP] would join the last word before it (cannot happen with real
  sentences, which start with a word start).
* Only [CLS]/[SEP] are skipped by Google (its sequences are unpadded); here ``special_mask``
  decides, and :func:`mask_example` marks padding and the ids in ``special_ids``.
* HF's ``add_sub_symbol`` marks Chinese words by greedy longest match of the *set* of
  segmenter words over the token strings; :func:`tokenize_with_word_starts` aligns the
  segmenter's words with the text by position instead, so a string is only joined where the
  segmenter actually produced it. :func:`word_starts` implements HF's set-based rule for
  pre-tokenised input. The two agree whenever the segmenter's words tile the sentence in the
  same way as the greedy match (the usual case; see the tests).
* HF's current ``DataCollatorForLanguageModeling(whole_word_mask=True)`` samples words by
  Bernoulli trials and forces 100% [MASK]; here it is Google's fixed-count scheme with 80/10/10.
"""
from __future__ import annotations

import logging
import random
import threading
from typing import Callable, Iterable, Sequence

import grain
import numpy as np

Segmenter = Callable[[str], list[str]]
"""Any callable from text to its words (their concatenation should be the text)."""

_RandomMapBase = getattr(getattr(grain, "transforms", None), "RandomMap", None)
if _RandomMapBase is None:  # pragma: no cover - older grain layout
    import grain.python as _gp
    _RandomMapBase = _gp.RandomMapTransform


# ----------------------------------------------------------------------------- characters

def is_cjk_char(ch: str) -> bool:
    """CJK ideograph test of BERT's ``_is_chinese_char`` / HF ``run_chinese_ref.py``."""
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def is_chinese_word(word: str) -> bool:
    """True when every character of ``word`` is a CJK ideograph (HF's ``is_chinese``)."""
    return bool(word) and all(is_cjk_char(c) for c in word)


# ----------------------------------------------------------------------------- segmenters

class CharSegmenter:
    """Every character is its own word: whole word masking reduces to character masking."""

    def __call__(self, text: str) -> list[str]:
        return list(text)

    def __repr__(self) -> str:
        return "CharSegmenter()"


class JiebaSegmenter:
    """Word segmentation with jieba (``lcut``; HMM new-word discovery on by default).

    jieba is imported and its dictionary loaded on the first call (about a second; jieba
    caches the parsed dictionary in the temp dir), with jieba's log output silenced. With
    ``user_dict`` a private ``jieba.Tokenizer`` is used so the global one is left untouched.
    jieba ships its dictionary, so this works offline; it is not the paper's LTP, so the word
    boundaries (and hence the masks) only approximate the released models'.
    """

    def __init__(self, hmm: bool = True, user_dict: str | None = None):
        self.hmm = hmm
        self.user_dict = user_dict
        self._tokenizer = None
        self._lock = threading.Lock()

    def _get(self):
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    import jieba
                    jieba.setLogLevel(logging.WARNING)
                    tok = jieba.Tokenizer() if self.user_dict else jieba.dt
                    tok.initialize()
                    if self.user_dict:
                        tok.load_userdict(self.user_dict)
                    self._tokenizer = tok
        return self._tokenizer

    def __call__(self, text: str) -> list[str]:
        return self._get().lcut(text, HMM=self.hmm)

    def __getstate__(self):  # picklable for multiprocess pipelines; reloads lazily
        return {"hmm": self.hmm, "user_dict": self.user_dict}

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"JiebaSegmenter(hmm={self.hmm}, user_dict={self.user_dict!r})"


# ----------------------------------------------------------------------------- word starts

def char_continues_word(text: str, words: Sequence[str]) -> list[bool]:
    """Per character of ``text``: True for a CJK character inside a multi-character, all-CJK
    segmenter word, after the word's first character.

    Words are located in ``text`` left to right (``str.find``), so a segmenter that drops
    whitespace or skips characters is tolerated; a word not found is ignored.
    """
    cont = [False] * len(text)
    pos = 0
    for word in words:
        if not word:
            continue
        at = text.find(word, pos)
        if at < 0:
            continue
        if len(word) > 1 and is_chinese_word(word):
            for k in range(at + 1, at + len(word)):
                cont[k] = True
        pos = at + len(word)
    return cont


def _runs(text: str) -> Iterable[tuple[int, str, bool]]:
    """Maximal runs of CJK / non-CJK characters: (offset, run, is_cjk)."""
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text) or is_cjk_char(text[i]) != is_cjk_char(text[start]):
            yield start, text[start:i], is_cjk_char(text[start])
            start = i


def tokenize_with_word_starts(text: str, tokenizer, segmenter: Segmenter | None
                              ) -> tuple[list[str], list[bool]]:
    """Tokenise ``text`` and flag the tokens that start a word (see the module docstring).

    ``tokenizer`` needs ``tokenize(text) -> list[str]`` with BERT's Chinese behaviour (every
    CJK character becomes its own token, ``##`` marks continuations). Each CJK token is tied to
    its character in ``text``:

    * with ``tokenizer.tokenize_with_offsets(text) -> [(token, start, end)]`` (our
      :class:`~jaxmodels.text.tokenizers.WordPieceTokenizer`) the text is tokenised whole and a
      token spanning exactly one CJK character is that character (also when it is [UNK]);
    * otherwise the text is tokenised in runs split at CJK/non-CJK boundaries, which gives the
      same tokens as tokenising it whole because BERT's basic tokenizer puts whitespace around
      every CJK character anyway. If a CJK run does not come back as one token per character
      (a tokenizer without the CJK split) it is tokenised character by character.

    ``segmenter=None`` means no Chinese word grouping (only ``##`` joins).
    """
    cont = char_continues_word(text, segmenter(text)) if segmenter is not None else [False] * len(text)
    tokens: list[str] = []
    starts: list[bool] = []
    with_offsets = getattr(tokenizer, "tokenize_with_offsets", None)
    if with_offsets is not None:
        for token, begin, end in with_offsets(text):
            tokens.append(token)
            if end - begin == 1 and is_cjk_char(text[begin]):
                starts.append(not cont[begin])
            else:
                starts.append(not token.startswith("##"))
        return tokens, starts
    for off, run, cjk in _runs(text):
        if not cjk:
            toks = tokenizer.tokenize(run)
            tokens.extend(toks)
            starts.extend(not t.startswith("##") for t in toks)
            continue
        toks = tokenizer.tokenize(run)
        if len(toks) == len(run):
            tokens.extend(toks)
            starts.extend(not cont[off + k] for k in range(len(run)))
            continue
        for k, ch in enumerate(run):
            for j, t in enumerate(tokenizer.tokenize(ch)):
                tokens.append(t)
                starts.append(not cont[off + k] if j == 0 else not t.startswith("##"))
    return tokens, starts


def word_starts(tokens: Sequence[str], words: Iterable[str]) -> list[bool]:
    """Word-start flags for already-tokenised text, by HF ``run_chinese_ref.py``'s rule.

    The multi-character all-CJK ``words`` form a set; scanning the tokens left to right, at
    each CJK token the longest run of tokens whose concatenation is in the set becomes one
    word (``add_sub_symbol``). ``##`` tokens continue their word; everything else starts one.
    """
    chinese = {w for w in words if len(w) > 1 and is_chinese_word(w)}
    starts = [not t.startswith("##") for t in tokens]
    if not chinese:
        return starts
    longest = max(len(w) for w in chinese)
    i, n = 0, len(tokens)
    while i < n:
        step = 1
        if is_chinese_word(tokens[i]):
            for k in range(min(n - i, longest), 1, -1):
                if "".join(tokens[i:i + k]) in chinese:
                    for j in range(i + 1, i + k):
                        starts[j] = False
                    step = k
                    break
        i += step
    return starts


def word_groups(word_start: Sequence[bool], special_mask: Sequence[bool] | None = None,
                whole_word: bool = True) -> list[list[int]]:
    """Candidate groups: runs of non-special positions, a new one at every word start (or at
    every position with ``whole_word=False``); special positions end a group."""
    groups: list[list[int]] = []
    current: list[int] | None = None
    for i, start in enumerate(word_start):
        if special_mask is not None and special_mask[i]:
            current = None
            continue
        if whole_word and current is not None and not start:
            current.append(i)
        else:
            current = [i]
            groups.append(current)
    return groups


# ----------------------------------------------------------------------------- masking

class _Draws:
    """Google's rng calls (``random()``, inclusive ``randint``, ``shuffle``) on either a numpy
    Generator or a ``random.Random`` (the latter reproduces Google's script draw for draw)."""

    def __init__(self, rng):
        self.rng = rng
        self.py = isinstance(rng, random.Random)

    def random(self) -> float:
        return self.rng.random()

    def randint(self, a: int, b: int) -> int:
        return self.rng.randint(a, b) if self.py else int(self.rng.integers(a, b + 1))

    def shuffle(self, items: list) -> list:
        if self.py:
            self.rng.shuffle(items)
            return items
        return [items[k] for k in self.rng.permutation(len(items))]


def num_to_predict(n_tokens: int, masked_lm_prob: float = 0.15, max_predictions: int = 20) -> int:
    """Google's count: ``min(max_predictions, max(1, int(round(n_tokens * masked_lm_prob))))``."""
    return min(max_predictions, max(1, int(round(n_tokens * masked_lm_prob))))


def create_masked_lm_predictions(input_ids, word_start, special_mask, *, rng, vocab_size: int,
                                 mask_id: int, masked_lm_prob: float = 0.15,
                                 max_predictions: int = 20, whole_word: bool = True,
                                 num_tokens: int | None = None
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Google's masked-LM selection on token ids (see the module docstring for the rules).

    Args:
      input_ids: [L] token ids.
      word_start: [L] bools, True where a token starts a word.
      special_mask: [L] bools, True for positions never masked ([CLS], [SEP], padding).
      rng: ``np.random.Generator`` (or ``random.Random``).
      vocab_size, mask_id: random replacements are uniform over ``[0, vocab_size)``.
      num_tokens: the token count the 15% refers to; default ``L`` (Google: the unpadded
        length, [CLS]/[SEP] included).

    Returns:
      ``(masked_ids [L] int32, positions [K] int32 sorted, labels [K] int32)`` with
      ``K <= num_to_predict``; ``labels`` are the original ids at ``positions``.
    """
    ids = np.asarray(input_ids)
    draws = _Draws(rng)
    groups = draws.shuffle(word_groups(list(map(bool, word_start)),
                                       list(map(bool, special_mask)), whole_word))
    n = len(ids) if num_tokens is None else int(num_tokens)
    target = num_to_predict(n, masked_lm_prob, max_predictions)
    out = ids.astype(np.int32, copy=True)
    chosen: list[int] = []
    for group in groups:
        if len(chosen) >= target:
            break
        if len(chosen) + len(group) > target:  # Google: skip a word that does not fit
            continue
        for index in group:
            if draws.random() < 0.8:
                out[index] = mask_id
            elif draws.random() < 0.5:
                pass  # keep the original token
            else:
                out[index] = draws.randint(0, vocab_size - 1)
            chosen.append(index)
    positions = np.array(sorted(chosen), dtype=np.int32)
    labels = ids[positions].astype(np.int32)
    return out, positions, labels


def mask_example(element: dict, rng, *, vocab_size: int, mask_id: int,
                 special_ids: Sequence[int] = (), masked_lm_prob: float = 0.15,
                 max_predictions: int = 20, whole_word: bool = True,
                 keep_word_start: bool = False) -> dict:
    """Mask one fixed-length example (a dict of numpy arrays).

    In: ``input_ids`` int [L], ``attention_mask`` int [L] (1 = real token), ``word_start``
    bool [L]; any other keys (``token_type_ids``, ``next_sentence_label``, ...) pass through.
    Positions with ``attention_mask == 0`` or an id in ``special_ids`` are never masked; the
    15% is of the real tokens (``attention_mask.sum()``, [CLS]/[SEP] included, as Google).
    Without ``word_start`` every token is its own word.

    Out: the same keys (``word_start`` dropped unless ``keep_word_start``) with ``input_ids``
    int32 replaced, plus ``masked_lm_positions`` int32 [P], ``masked_lm_ids`` int32 [P] (the
    original ids) and ``masked_lm_weights`` float32 [P] (1 for a prediction), P =
    ``max_predictions``, padded with position 0, id 0, weight 0.
    """
    ids = np.asarray(element["input_ids"])
    length = ids.shape[0]
    attention = np.asarray(element.get("attention_mask", np.ones(length, np.int32)))
    word_start = np.asarray(element.get("word_start", np.ones(length, bool)), dtype=bool)
    special = (attention == 0) | np.isin(ids, np.asarray(list(special_ids), dtype=ids.dtype))
    masked, positions, labels = create_masked_lm_predictions(
        ids, word_start, special, rng=rng, vocab_size=vocab_size, mask_id=mask_id,
        masked_lm_prob=masked_lm_prob, max_predictions=max_predictions,
        whole_word=whole_word, num_tokens=int(attention.sum()))
    k = len(positions)
    out = {key: value for key, value in element.items()
           if keep_word_start or key != "word_start"}
    out["input_ids"] = masked
    out["masked_lm_positions"] = np.zeros(max_predictions, np.int32)
    out["masked_lm_positions"][:k] = positions
    out["masked_lm_ids"] = np.zeros(max_predictions, np.int32)
    out["masked_lm_ids"][:k] = labels
    out["masked_lm_weights"] = np.zeros(max_predictions, np.float32)
    out["masked_lm_weights"][:k] = 1.0
    return out


class WholeWordMask(_RandomMapBase):
    """grain ``RandomMap``: :func:`mask_example` with grain's per-example generator.

    ``grain.MapDataset.source(src).seed(s).random_map(WholeWordMask(...))`` gives the same
    masks for the same seed and index, and new ones per epoch after ``repeat``.
    ``whole_word=False`` masks single tokens (the original BERT) for comparison.
    """

    def __init__(self, *, vocab_size: int, mask_id: int, special_ids: Sequence[int] = (),
                 masked_lm_prob: float = 0.15, max_predictions: int = 20,
                 whole_word: bool = True, keep_word_start: bool = False):
        if not 0.0 <= masked_lm_prob <= 1.0:
            raise ValueError(f"masked_lm_prob={masked_lm_prob} is not a probability.")
        if not 0 <= mask_id < vocab_size:
            raise ValueError(f"mask_id={mask_id} is outside the vocabulary [0, {vocab_size}).")
        self.vocab_size = int(vocab_size)
        self.mask_id = int(mask_id)
        self.special_ids = tuple(int(i) for i in special_ids)
        self.masked_lm_prob = float(masked_lm_prob)
        self.max_predictions = int(max_predictions)
        self.whole_word = bool(whole_word)
        self.keep_word_start = bool(keep_word_start)

    @classmethod
    def from_tokenizer(cls, tokenizer, **kwargs) -> "WholeWordMask":
        """Vocabulary size, [MASK] and the never-masked [CLS]/[SEP]/[PAD] from a tokenizer."""
        special = tuple(getattr(tokenizer, name) for name in ("cls_id", "sep_id", "pad_id"))
        return cls(vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id,
                   special_ids=special, **kwargs)

    def random_map(self, element, rng: np.random.Generator):
        return mask_example(element, rng, vocab_size=self.vocab_size, mask_id=self.mask_id,
                            special_ids=self.special_ids, masked_lm_prob=self.masked_lm_prob,
                            max_predictions=self.max_predictions, whole_word=self.whole_word,
                            keep_word_start=self.keep_word_start)

    def __repr__(self) -> str:
        return (f"WholeWordMask(vocab_size={self.vocab_size}, mask_id={self.mask_id}, "
                f"special_ids={self.special_ids}, masked_lm_prob={self.masked_lm_prob}, "
                f"max_predictions={self.max_predictions}, whole_word={self.whole_word})")
