"""Tokenizers vs Hugging Face references (``tokenizers`` + ``transformers``), on vocabularies and corpora
written to tmp_path (nothing is downloaded)."""
import sys
import time

import pytest

from jaxmodels.text.tokenizers import (
    ByteLevelBPETokenizer,
    WordPieceTokenizer,
    _longest_first,
    build_wordpiece_vocab,
    bytes_to_unicode,
    read_vocab,
    train_byte_level_bpe,
    write_vocab,
)

hf_tokenizers = pytest.importorskip("tokenizers")


def _transformers():
    sys.modules.setdefault("torchvision", None)  # a broken CUDA torchvision wheel is installed here
    return pytest.importorskip("transformers")


# ---------------------------------------------------------------------------------------------------
# Shared corpus
# ---------------------------------------------------------------------------------------------------

TRAIN_CORPUS = [
    "今天天气很好，我们去公园散步吧。",
    "北京是中华人民共和国的首都，也是一座历史文化名城。",
    "机器学习和深度学习是人工智能的重要分支。",
    "Hello, World! This is a test of the tokenizer.",
    "Café crème brûlée à la française, naïve résumé.",
    "The quick brown fox jumps over the lazy dog.",
    "BERT模型在2019年由Google发布，效果很好！",
    "Don't stop believing, it's really fine; we've tried.",
    "Tokenization splits words into wordpieces: token ##ization.",
    "混合 mixed 文本 text 123 和 numbers 4.56%",
    "Ελληνικά γράμματα και Русский текст",
    "日本語のテキストとひらがな、カタカナ",
] * 3

SENTENCES = [
    "今天天气很好，我们去公园散步吧。",
    "北京是中华人民共和国的首都。",
    "Hello, World! This is a test.",
    "Café crème brûlée à la française, naïve résumé.",
    "Ünïcödé ÀÉÎÕÜ façade Ångström",
    "BERT模型在2019年由Google发布，效果很好！",
    "混合mixed文本text 123和numbers 4.56%",
    "Don't stop believing... it's (really) fine; ok?",
    "email@example.com http://x.y/z?a=b&c=d #tag $100",
    "supercalifragilisticexpialidocious" * 4 + " short",
    "Unknown ☃ snowman and ⚡ bolt, unseen words: xylophone zebra",
    "  leading and trailing spaces\t\n and tabs  ",
    "zero\x00width\u200bjoiner\ufffdreplace\x07bell",
    "日本語のテキストとひらがな、カタカナ",
    "한국어 텍스트 Hangul",
    "Ελληνικά γράμματα ΑΒΓ and Русский текст Ёё",
    "数学公式：E=mc²，x₁+x₂=½",
    "[MASK] 是 [CLS] 特殊 [SEP] tokens[MASK]inline [unk]",
    "Emoji 😀 test 👍🏽 done",
    "हिन्दी पाठ",
    "ﬁne ligature and ＡＢＣ fullwidth １２３",
    "",
]


@pytest.fixture(scope="module")
def wp_vocab(tmp_path_factory):
    """A small realistic cased WordPiece vocab (trained by HF ``tokenizers`` so it has ## pieces)."""
    d = tmp_path_factory.mktemp("wp")
    t = hf_tokenizers.BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    t.train_from_iterator(TRAIN_CORPUS + [s.lower() for s in TRAIN_CORPUS], vocab_size=260, min_frequency=2,
                          limit_alphabet=1000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    (path,) = t.save_model(str(d))
    tokens = read_vocab(path)
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert any(t.startswith("##") and len(t) > 3 for t in tokens)
    return path


CONFIGS = [
    dict(do_lower_case=True),
    dict(do_lower_case=False),
    dict(do_lower_case=True, strip_accents=False),
    dict(do_lower_case=False, strip_accents=True),
]


def _hf_fast(path, cfg):
    tr = _transformers()
    from transformers.models.bert.tokenization_bert import load_vocab

    return tr.BertTokenizer(vocab=dict(load_vocab(path)), **cfg)


def _hf_slow(path, cfg):
    _transformers()
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    return BertTokenizerLegacy(path, **cfg)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_wordpiece_matches_hf(wp_vocab, cfg):
    ours = WordPieceTokenizer.from_file(wp_vocab, **cfg)
    fast = _hf_fast(wp_vocab, cfg)
    slow = _hf_slow(wp_vocab, cfg)
    strip = cfg.get("strip_accents", cfg["do_lower_case"])
    rust = hf_tokenizers.BertWordPieceTokenizer(wp_vocab, lowercase=cfg["do_lower_case"], strip_accents=strip)
    n_unk = n_pieces = 0
    for s in SENTENCES:
        toks = ours.tokenize_with_offsets(s)
        ids = ours.encode(s)["input_ids"]
        ref = fast(s, return_offsets_mapping=True)
        assert ids == ref["input_ids"], s
        assert ids == slow(s)["input_ids"], s
        assert ids == rust.encode(s).ids, s
        assert [(a, b) for _, a, b in toks] == ref["offset_mapping"][1:-1], s
        assert [t for t, _, _ in toks] == fast.convert_ids_to_tokens(ref["input_ids"])[1:-1], s
        n_unk += sum(t == "[UNK]" for t, _, _ in toks)
        n_pieces += sum(t.startswith("##") for t, _, _ in toks)
    assert n_unk >= 3 and n_pieces >= 10  # the corpus exercises both paths


def test_wordpiece_offsets_examples(wp_vocab):
    ours = WordPieceTokenizer.from_file(wp_vocab)
    text = "Café 北京!"
    toks = ours.tokenize_with_offsets(text)
    assert toks[-3:] == [("北", 5, 6), ("京", 6, 7), ("!", 7, 8)]
    assert "".join(t.lstrip("#") for t, _, _ in toks[:-3]) == "cafe"  # accents stripped, offsets on original
    assert toks[0][1] == 0 and toks[len(toks) - 4][2] == 4
    long = "x" * 101
    assert ours.tokenize_with_offsets(f"a {long} b")[1] == ("[UNK]", 2, 103)


@pytest.mark.parametrize("max_length", [None, 5, 8, 11, 16, 64])
def test_wordpiece_pair_truncation_matches_hf(wp_vocab, max_length):
    ours = WordPieceTokenizer.from_file(wp_vocab)
    fast = _hf_fast(wp_vocab, {})
    slow = _hf_slow(wp_vocab, {})
    pairs = [(SENTENCES[i], SENTENCES[j]) for i, j in [(0, 2), (3, 1), (6, 7), (5, 5), (2, 13), (15, 4)]]
    kw = {} if max_length is None else dict(truncation="longest_first", max_length=max_length)
    for a, b in pairs:
        got = ours.encode(a, b, max_length=max_length)
        ref = fast(a, b, **kw)
        for k in ("input_ids", "token_type_ids", "attention_mask"):
            assert got[k] == ref[k], (a, b, k)
        if max_length is None:  # HF slow truncates odd budgets differently (see _longest_first)
            ref_s = slow(a, b, return_token_type_ids=True)
            assert got["input_ids"] == ref_s["input_ids"] and got["token_type_ids"] == ref_s["token_type_ids"]
        else:
            single = ours.encode(a, max_length=max_length)
            assert single["input_ids"] == fast(a, **kw)["input_ids"] == slow(a, **kw)["input_ids"]
            nospec = ours.encode(a, b, max_length=max_length, add_special_tokens=False)
            assert nospec["input_ids"] == fast(a, b, add_special_tokens=False, **kw)["input_ids"]


def test_longest_first_matches_hf_fast():
    tr = _transformers()
    fast = tr.BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])})
    ours = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])
    for n1 in range(1, 8):
        for n2 in range(1, 8):
            a, b = " ".join("a" * n1), " ".join("b" * n2)
            for m in range(3, 3 + n1 + n2 + 1):
                want = fast(a, b, truncation="longest_first", max_length=m)["input_ids"]
                assert ours.encode(a, b, max_length=m)["input_ids"] == want, (n1, n2, m)
    assert _longest_first(5, 5, 5) == (2, 3) and _longest_first(6, 5, 5) == (3, 2)
    with pytest.raises(ValueError, match="special tokens"):
        ours.encode("a", "b", max_length=2)


def test_wordpiece_decode_matches_hf(wp_vocab):
    ours = WordPieceTokenizer.from_file(wp_vocab)
    fast = _hf_fast(wp_vocab, {})
    slow = _hf_slow(wp_vocab, {})
    for s in SENTENCES:
        ids = ours.encode(s)["input_ids"]
        for skip in (True, False):
            want = slow.decode(ids, skip_special_tokens=skip)
            assert ours.decode(ids, skip_special_tokens=skip) == want, s
            assert fast.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True) == want, s
    ids = ours.encode("hello, world! it's")["input_ids"]
    assert ours.decode(ids) == "hello, world! it's"


def test_wordpiece_properties_and_save(tmp_path, wp_vocab):
    ours = WordPieceTokenizer.from_file(wp_vocab)
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 1, 2, 3, 4)
    assert ours.vocab_size == len(read_vocab(wp_vocab)) == len(ours.vocab) == len(ours.inv_vocab)
    assert all(ours.inv_vocab[i] == t for t, i in ours.vocab.items())
    toks = ours.tokenize("北京 Hello")
    assert ours.convert_ids_to_tokens(ours.convert_tokens_to_ids(toks)) == toks
    assert ours.convert_tokens_to_ids(["definitely-not-a-token"]) == [ours.unk_id]
    out = ours.save(tmp_path)
    assert open(out, encoding="utf-8").read() == open(wp_vocab, encoding="utf-8").read()
    no_mask = WordPieceTokenizer(["[PAD]", "[UNK]", "a"])
    with pytest.raises(KeyError, match=r"\[MASK\]"):
        no_mask.mask_id
    assert WordPieceTokenizer({"[UNK]": 1, "a": 0}).tokenize("A b") == ["a", "[UNK]"]


def test_vocab_file_errors(tmp_path):
    missing = tmp_path / "nope" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nope/vocab.txt"):
        WordPieceTokenizer.from_file(missing)
    dup = tmp_path / "vocab.txt"
    dup.write_text("[PAD]\n[UNK]\nx\ny\nx\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab\.txt:5: duplicate token 'x' \(first on line 3\)"):
        WordPieceTokenizer.from_file(dup)
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt: empty"):
        WordPieceTokenizer.from_file(empty)
    with pytest.raises(ValueError, match="duplicate"):
        WordPieceTokenizer(["a", "b", "a"])


# ---------------------------------------------------------------------------------------------------
# build_wordpiece_vocab
# ---------------------------------------------------------------------------------------------------

def test_build_wordpiece_vocab(tmp_path):
    corpus = TRAIN_CORPUS + ["Ünïcödé x₁ 😀 résumé résumé résumé"]
    v1 = build_wordpiece_vocab(corpus, max_size=400)
    v2 = build_wordpiece_vocab(list(reversed(corpus)), max_size=400)
    assert v1 == v2  # deterministic, order-independent
    assert v1[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(v1) == len(set(v1)) <= 400
    tok = WordPieceTokenizer(v1)
    for s in corpus:
        for ch in "".join(tok.basic_tokenize(s)):
            assert ch in tok.vocab, ch
        assert "[UNK]" not in tok.tokenize(s), s
    assert "resume" in v1 and "##e" in v1 and "北" in v1 and "##北" not in v1 and "##，" not in v1
    small = build_wordpiece_vocab(corpus, max_size=50)
    assert small == v1[:50]
    counted = build_wordpiece_vocab(corpus, max_size=10_000, min_frequency=4)
    assert "resume" in counted and "xylophone" not in counted and "tokenizer" not in counted
    path = tmp_path / "vocab.txt"
    write_vocab(path, v1)
    assert read_vocab(path) == v1
    # HF agrees on the ids with our vocabulary too.
    fast = _hf_fast(str(path), {})
    for s in SENTENCES:
        assert WordPieceTokenizer.from_file(path).encode(s)["input_ids"] == fast(s)["input_ids"], s


# ---------------------------------------------------------------------------------------------------
# Byte-level BPE
# ---------------------------------------------------------------------------------------------------

BPE_CORPUS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged, that we've got    multiple   spaces.",
    "Line one\nLine two\n\n\tTabbed line\r\nWindows line",
    "中文文本测试：今天天气很好，我们去公园散步吧。",
    "Emoji 😀😀 and 👍🏽 thumbs, ümlauts ñ é ß",
    "Numbers 12345 and 3.14159, dates 2024-01-01.",
    "def f(x):\n    return x ** 2  # code\n",
    "<|endoftext|>A new document starts here.<|endoftext|>",
] * 10

BPE_TESTS = [
    "Hello world!",
    " leading space and trailing   ",
    "multiple   spaces\n\n\nand newlines\r\n",
    "中文文本 测试 unseen 汉字 龘",
    "emoji 😀 👍🏽 🚀 and zero-width\u200bjoiner",
    "it's they're we'll I'd she's",
    "doc one<|endoftext|>doc two <|endoftext|> three",
    "\t\ttabs\tand \x00 control",
    "code: def g(y):\n    return [y for y in range(10)]",
    "",
    " ",
]


def _gpt2_from_dir(d):
    tr = _transformers()
    return tr.GPT2Tokenizer.from_pretrained(str(d))


def test_bytes_to_unicode():
    m = bytes_to_unicode()
    assert len(m) == 256 and len(set(m.values())) == 256
    assert m[ord(" ")] == "Ġ" and m[ord("\n")] == "Ċ" and m[ord("A")] == "A"
    assert all(c.isprintable() and not c.isspace() for c in m.values())


def test_bpe_matches_hf(tmp_path):
    ref = hf_tokenizers.ByteLevelBPETokenizer()
    ref.train_from_iterator(BPE_CORPUS, vocab_size=500, min_frequency=2, special_tokens=["<|endoftext|>"])
    ref.save_model(str(tmp_path))
    ours = ByteLevelBPETokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    gpt2 = _gpt2_from_dir(tmp_path)
    assert ours.vocab_size == ref.get_vocab_size() == 500
    assert ours.eos_id == ref.token_to_id("<|endoftext|>") == 0
    for s in BPE_TESTS + BPE_CORPUS[:8]:
        ids = ours.encode(s)
        assert ids == ref.encode(s).ids, s
        assert ids == gpt2(s)["input_ids"], s
        assert ours.tokenize(s) == gpt2.convert_ids_to_tokens(ids), s
        assert ours.decode(ids) == s == gpt2.decode(ids)
    assert ours.encode("a<|endoftext|>b")[1] == ours.eos_id
    assert ours.decode(ours.encode("a<|endoftext|>b"), skip_special_tokens=True) == "ab"
    assert ours.token_to_id("Ġthe") == ref.token_to_id("Ġthe") is not None
    assert ours.token_to_id("not-a-token") is None
    # Invalid UTF-8 from a partial sequence decodes with replacement characters.
    emoji_ids = ours.encode("🚀")  # not in the training corpus: 4 byte tokens
    assert len(emoji_ids) > 1 and "\ufffd" in ours.decode(emoji_ids[:1])
    # save() round-trips and is loadable by HF.
    out = tmp_path / "resaved"
    ours.save(out)
    again = ByteLevelBPETokenizer.from_files(out / "vocab.json", out / "merges.txt")
    assert again.vocab == ours.vocab and again.merges == ours.merges
    assert _gpt2_from_dir(out)(BPE_TESTS[4])["input_ids"] == ours.encode(BPE_TESTS[4])


def test_train_bpe_files_load_in_hf(tmp_path):
    ours = train_byte_level_bpe(BPE_CORPUS, vocab_size=500, min_frequency=2)
    assert ours.vocab_size == 500 and ours.eos_id == 0
    assert len(ours.merges) == 500 - 257
    ours.save(tmp_path)
    ref = hf_tokenizers.ByteLevelBPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    ref.add_special_tokens(["<|endoftext|>"])
    gpt2 = _gpt2_from_dir(tmp_path)
    for s in BPE_TESTS + BPE_CORPUS[:8]:
        ids = ours.encode(s)
        assert ids == ref.encode(s).ids == gpt2(s)["input_ids"], s
        assert ours.decode(ids) == s
    # Same data, same settings: HF tokenizers' BpeTrainer learns the same merges (same tie-break rule).
    # (Without special tokens in the text: HF learns merges from "<|endoftext|>" in the training text, we
    # split the text on it.)
    plain = [s.replace("<|endoftext|>", " ") for s in BPE_CORPUS]
    ours = train_byte_level_bpe(plain, vocab_size=500, min_frequency=2)
    hf = hf_tokenizers.ByteLevelBPETokenizer()
    hf.train_from_iterator(plain, vocab_size=500, min_frequency=2, special_tokens=["<|endoftext|>"])
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    hf.save_model(str(hf_dir))
    theirs = ByteLevelBPETokenizer.from_files(hf_dir / "vocab.json", hf_dir / "merges.txt")
    assert ours.vocab == theirs.vocab
    assert ours.merges == theirs.merges


def test_train_bpe_min_frequency_and_speed():
    # Every merge needs >= min_frequency occurrences, so training stops early on a tiny corpus.
    tiny = train_byte_level_bpe(["abab abab"], vocab_size=1000, min_frequency=2)
    assert tiny.vocab_size < 1000 and tiny.encode("abab") == [tiny.token_to_id("abab")]
    # ~200 KB of varied text, 1000 merges: incremental counts keep this to a few seconds.
    words = [f"w{i % 997}x{i % 13}" for i in range(4000)]
    corpus = [" ".join(words[i:i + 50]) + " " + BPE_CORPUS[i % 8] for i in range(0, 4000, 20)] * 10
    assert sum(map(len, corpus)) > 150_000
    t0 = time.perf_counter()
    tok = train_byte_level_bpe(corpus, vocab_size=1257, min_frequency=2)
    assert time.perf_counter() - t0 < 30
    assert tok.vocab_size == 1257
    assert tok.decode(tok.encode(corpus[0])) == corpus[0]


def test_bpe_file_errors(tmp_path):
    v = {c: i for i, c in enumerate(sorted(bytes_to_unicode().values()))}
    v["ab"] = len(v)
    vp = tmp_path / "vocab.json"
    vp.write_text(__import__("json").dumps(v), encoding="utf-8")
    mp = tmp_path / "merges.txt"
    mp.write_text("#version: 0.2\na b\nthis line is bad\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges\.txt:3: malformed merge line"):
        ByteLevelBPETokenizer.from_files(vp, mp)
    mp.write_text("a b\nb c\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges\.txt:2: .*'bc' is not in the vocabulary"):
        ByteLevelBPETokenizer.from_files(vp, mp)
    mp.write_text("a b\n\n", encoding="utf-8")
    tok = ByteLevelBPETokenizer.from_files(vp, mp)
    assert tok.encode("ab") == [v["ab"]] and tok.eos_id is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 0,\n "b": }', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json:2: invalid JSON"):
        ByteLevelBPETokenizer.from_files(bad, mp)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        ByteLevelBPETokenizer.from_files(vp, tmp_path / "missing.txt")
