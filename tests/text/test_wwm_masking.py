"""Chinese whole word masking (S16): segmentation -> word starts -> Google's masked-LM selection."""
import pickle
import types

import numpy as np
import pytest

from jaxmodels.text import masking
from jaxmodels.text.masking import (CharSegmenter, JiebaSegmenter, WholeWordMask,
                                    create_masked_lm_predictions, mask_example, num_to_predict,
                                    tokenize_with_word_starts, word_groups, word_starts)
from jaxmodels.text.tokenizers import WordPieceTokenizer

jieba = pytest.importorskip("jieba")

PAPER = "使用语言模型来预测下一个词的概率"  # Cui et al. section 3 / ymcui README example
PAPER_WORDS = ["使用", "语言", "模型", "来", "预测", "下", "一个", "词", "的", "概率"]
TEXTS = [PAPER + "。", "I love unaffable 自然语言处理。", "研究生研究生命的起源",
         "我买了一件T恤衫，花了3.14元。", "哈尔滨工业大学和科大讯飞联合实验室发布了中文预训练模型。",
         "全词掩码技术把一个完整的词的所有汉字都遮住。"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizer():
    """Our BERT WordPiece tokenizer over a small BERT-Chinese-style vocabulary."""
    chars = {c for text in TEXTS for c in text if masking.is_cjk_char(c) or not c.isalnum()}
    words = ["i", "love", "un", "##aff", "##able", "t", "3", "14", "."]
    return WordPieceTokenizer(SPECIALS + sorted(chars - {" ", "."}) + words)


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def seg():
    return JiebaSegmenter()


def groups_as_text(tokens, starts):
    return ["".join(t.removeprefix("##") for t in (tokens[i] for i in g))
            for g in word_groups(starts)]


# ----------------------------------------------------------------------------- word starts

def test_paper_example_groups(tok, seg):
    assert seg(PAPER) == PAPER_WORDS  # jieba reproduces the paper's LTP segmentation here
    tokens, starts = tokenize_with_word_starts(PAPER, tok, seg)
    assert tokens == list(PAPER)  # one token per character
    assert groups_as_text(tokens, starts) == PAPER_WORDS
    assert word_groups(starts) == [[0, 1], [2, 3], [4, 5], [6], [7, 8], [9], [10, 11], [12],
                                   [13], [14, 15]]
    assert word_starts(tokens, seg(PAPER)) == starts  # HF run_chinese_ref.py's rule agrees
    # Character segmentation: every character is its own word (plain char masking).
    _, char_starts = tokenize_with_word_starts(PAPER, tok, CharSegmenter())
    assert all(char_starts)


def test_wordpieces_english_and_mixed_words(tok, seg):
    tokens, starts = tokenize_with_word_starts("I love unaffable 自然语言处理。", tok, seg)
    assert tokens == ["i", "love", "un", "##aff", "##able", "自", "然", "语", "言", "处", "理", "。"]
    assert groups_as_text(tokens, starts) == ["i", "love", "unaffable", "自然语言", "处理", "。"]
    # Only all-Chinese words are joined: jieba's "T恤衫" and "3.14" stay separate tokens/words.
    tokens, starts = tokenize_with_word_starts("我买了一件T恤衫，花了3.14元。", tok, seg)
    assert "T恤衫" in seg("我买了一件T恤衫，花了3.14元。")
    assert groups_as_text(tokens, starts) == ["我", "买", "了", "一件", "t", "恤", "衫", "，", "花",
                                              "了", "3", ".", "14", "元", "。"]
    # Without a segmenter only ## joins.
    tokens, starts = tokenize_with_word_starts("unaffable 自然", tok, None)
    assert starts == [True, False, False, True, True]
    # An unknown CJK character is [UNK] but still belongs to its word.
    tokens, starts = tokenize_with_word_starts("使用语言", tok, lambda s: ["使用", "语言"])
    assert (tokens, starts) == (["使", "用", "语", "言"], [True, False, True, False])
    tokens, starts = tokenize_with_word_starts("使用鑫言", tok, lambda s: ["使用", "鑫言"])
    assert (tokens, starts) == (["使", "用", "[UNK]", "言"], [True, False, True, False])


def test_tokenizer_without_offsets_gives_the_same(tok, seg):
    """The run-splitting path (a tokenizer with only ``tokenize``) matches the offsets path."""
    plain = types.SimpleNamespace(tokenize=tok.tokenize)
    for text in TEXTS + ["使用鑫言 unaffable,3.14元"]:
        assert tokenize_with_word_starts(text, plain, seg) == tokenize_with_word_starts(text, tok, seg)
        assert tokenize_with_word_starts(text, plain, seg)[0] == tok.tokenize(text)


def test_position_rule_vs_hf_set_rule(tok, seg):
    text = "研究生研究生命的起源"
    words = seg(text)
    assert words == ["研究生", "研究", "生命", "的", "起源"]
    tokens, starts = tokenize_with_word_starts(text, tok, seg)
    assert groups_as_text(tokens, starts) == words  # aligned with the segmentation
    # HF's greedy longest match of the word *set* joins the second 研究生 as well.
    assert groups_as_text(tokens, word_starts(tokens, words)) == ["研究生", "研究生", "命", "的", "起源"]
    for other in TEXTS:  # elsewhere the two rules agree
        if other != text:
            t, s = tokenize_with_word_starts(other, tok, seg)
            assert word_starts(t, seg(other)) == s, other


def test_jieba_segmenter_options(tmp_path):
    s = JiebaSegmenter()
    assert pickle.loads(pickle.dumps(s))(PAPER) == PAPER_WORDS
    user = tmp_path / "user.txt"
    user.write_text("语言模型 100000 n\n", encoding="utf-8")
    custom = JiebaSegmenter(user_dict=str(user))
    assert "语言模型" in custom(PAPER)
    assert JiebaSegmenter()(PAPER) == PAPER_WORDS  # the global jieba is untouched


# ----------------------------------------------------------------------------- masking rules

def test_google_count_and_skip_rule():
    assert [num_to_predict(n) for n in (3, 10, 30, 50, 128, 512)] == [1, 2, 4, 8, 19, 20]
    # 14 tokens -> round(2.1) = 2 predictions; the 3-token word can never fit and is skipped.
    ids = np.arange(10, 24)
    starts = np.array([1, 1, 0, 0] + [1] * 10, bool)  # tokens 1..3 form one word
    special = np.zeros(14, bool)
    special[[0, 13]] = True
    for seed in range(200):
        out, pos, lab = create_masked_lm_predictions(
            ids, starts, special, rng=np.random.default_rng(seed), vocab_size=100, mask_id=4)
        assert len(pos) == 2 and not set(pos) & {0, 1, 2, 3, 13}
        np.testing.assert_array_equal(lab, ids[pos])
        assert list(pos) == sorted(pos)
        untouched = np.setdiff1d(np.arange(14), pos)
        np.testing.assert_array_equal(out[untouched], ids[untouched])
    # With whole words of two tokens and a budget of 2, a word is masked whole or not at all.
    starts2 = np.array([1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1], bool)
    for seed in range(50):
        _, pos, _ = create_masked_lm_predictions(
            ids, starts2, special, rng=np.random.default_rng(seed), vocab_size=100, mask_id=4)
        assert len(pos) == 2 and pos[1] == pos[0] + 1 and starts2[pos[0]]


def chinese_element(tok, seg, texts):
    """[CLS] text [SEP] text ... [SEP] padded to 128, with word starts."""
    ids, starts = [tok.cls_id], [True]
    for text in texts:
        t, s = tokenize_with_word_starts(text, tok, seg)
        ids += tok.convert_tokens_to_ids(t) + [tok.sep_id]
        starts += s + [True]
    n = len(ids)
    pad = 128 - n
    return {"input_ids": np.array(ids + [tok.pad_id] * pad, np.int32),
            "token_type_ids": np.zeros(128, np.int32),
            "attention_mask": np.array([1] * n + [0] * pad, np.int32),
            "word_start": np.array(starts + [False] * pad, bool),
            "next_sentence_label": np.int32(1)}


def test_whole_words_masked_together(tok, seg):
    element = chinese_element(tok, seg, TEXTS[:2] + TEXTS[3:])
    special = element["attention_mask"] == 0
    groups = word_groups(element["word_start"], special | np.isin(element["input_ids"], [2, 3]))
    group_of = {i: tuple(g) for g in groups for i in g}
    assert max(len(g) for g in groups) >= 4  # 哈尔滨工业大学 is one 7-character word
    kwargs = dict(vocab_size=tok.vocab_size, mask_id=tok.mask_id,
                  special_ids=(tok.cls_id, tok.sep_id, tok.pad_id))
    partial = 0
    multi_masked = 0
    for seed in range(300):
        out = mask_example(element, np.random.default_rng(seed), **kwargs)
        chosen = set(out["masked_lm_positions"][out["masked_lm_weights"] > 0].tolist())
        for p in chosen:
            assert set(group_of[p]) <= chosen  # every character of the word is chosen
        multi_masked += any(len(group_of[p]) > 1 for p in chosen)
        plain = mask_example(element, np.random.default_rng(seed), whole_word=False, **kwargs)
        chosen = set(plain["masked_lm_positions"][plain["masked_lm_weights"] > 0].tolist())
        partial += any(not set(group_of[p]) <= chosen for p in chosen)
    assert multi_masked > 250  # multi-character words do get masked
    assert partial > 250  # plain token masking usually splits some word


def synthetic_batch(n, length, vocab, seed):
    """Random examples: real length 8..length, words of 1-4 tokens, ids in [5, vocab)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        real = int(rng.integers(8, length + 1))
        ids = np.zeros(length, np.int32)
        ids[:real] = rng.integers(5, vocab, real)
        ids[0], ids[real - 1] = 2, 3
        starts = np.zeros(length, bool)
        i = 0
        while i < real:
            starts[i] = True
            i += int(rng.integers(1, 5))
        out.append({"input_ids": ids, "attention_mask": (np.arange(length) < real).astype(np.int32),
                    "token_type_ids": np.zeros(length, np.int32), "word_start": starts})
    return out


@pytest.mark.parametrize("whole_word", [True, False])
def test_masking_statistics(whole_word):
    vocab, length = 1000, 128
    examples = synthetic_batch(2000, length, vocab, seed=0)
    chosen = targets = real_total = 0
    n_mask = n_keep = n_random = 0
    for k, ex in enumerate(examples):
        out = mask_example(ex, np.random.default_rng([k, 11]), vocab_size=vocab, mask_id=4,
                           special_ids=(2, 3, 0), whole_word=whole_word)
        w = out["masked_lm_weights"] > 0
        pos = out["masked_lm_positions"][w]
        real = int(ex["attention_mask"].sum())
        target = num_to_predict(real)
        assert len(pos) <= target
        if not whole_word:
            assert len(pos) == target  # single tokens always fill the budget exactly
        chosen += len(pos)
        targets += target
        real_total += real
        new = out["input_ids"][pos]
        orig = ex["input_ids"][pos]
        n_mask += int((new == 4).sum())
        n_keep += int((new == orig).sum())
        n_random += int(((new != 4) & (new != orig)).sum())
    # ~15% of the real tokens (rounded per example, Google's count); the skip rule rarely
    # leaves a whole-word budget unfilled.
    assert chosen >= 0.99 * targets
    assert abs(targets / real_total - 0.15) < 0.01
    # 80/10/10 per chosen token, within 4 standard errors; a random id can hit [MASK] or the
    # original with probability 1/vocab each.
    p_mask = 0.8 + 0.1 / vocab
    p_keep = 0.1 + 0.1 / vocab
    p_rand = 0.1 * (1 - 2 / vocab)
    for count, p in ((n_mask, p_mask), (n_keep, p_keep), (n_random, p_rand)):
        se = np.sqrt(p * (1 - p) / chosen)
        assert abs(count / chosen - p) < 4 * se, (count / chosen, p, se)


def test_specials_labels_and_padding(tok, seg):
    element = chinese_element(tok, seg, [PAPER, "全词掩码技术"])
    before = {k: np.copy(v) for k, v in element.items()}
    t = WholeWordMask.from_tokenizer(tok)
    assert t.special_ids == (tok.cls_id, tok.sep_id, tok.pad_id)
    real = int(element["attention_mask"].sum())
    for seed in range(200):
        out = t.random_map(element, np.random.default_rng(seed))
        assert set(out) == {"input_ids", "token_type_ids", "attention_mask",
                            "next_sentence_label", "masked_lm_positions", "masked_lm_ids",
                            "masked_lm_weights"}
        assert out["masked_lm_positions"].shape == (20,) and out["masked_lm_positions"].dtype == np.int32
        assert out["masked_lm_ids"].dtype == np.int32 and out["masked_lm_weights"].dtype == np.float32
        w = out["masked_lm_weights"]
        k = int(w.sum())
        assert k == num_to_predict(real) or 0 < k < num_to_predict(real)
        np.testing.assert_array_equal(w, (np.arange(20) < k).astype(np.float32))
        pos = out["masked_lm_positions"][:k]
        assert not np.isin(element["input_ids"][pos], [tok.cls_id, tok.sep_id, tok.pad_id]).any()
        assert (element["attention_mask"][pos] == 1).all()
        np.testing.assert_array_equal(out["masked_lm_ids"][:k], element["input_ids"][pos])
        assert (out["masked_lm_positions"][k:] == 0).all() and (out["masked_lm_ids"][k:] == 0).all()
        rest = np.setdiff1d(np.arange(128), pos)
        np.testing.assert_array_equal(out["input_ids"][rest], element["input_ids"][rest])
        assert out["next_sentence_label"] == 1
    for key in before:  # the input element is not modified
        np.testing.assert_array_equal(element[key], before[key])


def test_same_seed_same_masks(tok, seg):
    element = chinese_element(tok, seg, TEXTS)
    t = WholeWordMask(vocab_size=tok.vocab_size, mask_id=tok.mask_id, special_ids=(2, 3, 0))
    a = t.random_map(element, np.random.default_rng(5))
    b = t.random_map(element, np.random.default_rng(5))
    c = t.random_map(element, np.random.default_rng(6))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["masked_lm_positions"], c["masked_lm_positions"])
    with pytest.raises(ValueError):
        WholeWordMask(vocab_size=10, mask_id=10)
