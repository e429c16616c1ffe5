"""BERT pretraining examples (S16): Google's instance creation, padded arrays, storage, grain."""
import os
import random

import grain
import numpy as np
import pytest

from jaxmodels.text.masking import JiebaSegmenter, WholeWordMask, word_groups
from jaxmodels.text.pretraining_data import (ARRAY_KEYS, ArrayDataSource, build_pretraining_arrays,
                                             create_instances_from_document, load_arrays,
                                             read_corpus, save_arrays, truncate_seq_pair)
from jaxmodels.text.tokenizers import WordPieceTokenizer

CORPUS = [
    ["哈尔滨工业大学和科大讯飞联合实验室发布了中文预训练模型。", "全词掩码技术把一个完整的词的所有汉字都遮住。",
     "使用语言模型来预测下一个词的概率。", "模型在阅读理解任务上取得了更好的效果。"],
    ["今天天气很好。", "我们去公园散步吧。", "公园里有很多人在跑步。"],
    ["自然语言处理是人工智能的一个重要方向。", "预训练语言模型改变了这个领域。", "研究人员发布了许多中文模型。",
     "这些模型可以用于文本分类。", "也可以用于命名实体识别。"],
    ["北京是中国的首都。", "上海是一个国际化的大都市。"],
    ["小明喜欢读书。", "他每天晚上都会读一个小时。", "他最喜欢的书是西游记。"],
    ["单句文档。"],
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def tok():
    return WordPieceTokenizer(SPECIALS + sorted({c for doc in CORPUS for s in doc for c in s}))


@pytest.fixture(scope="module")
def arrays(tok):
    pytest.importorskip("jieba")
    return build_pretraining_arrays(CORPUS, tok, JiebaSegmenter(), max_seq_length=48,
                                    dupe_factor=3, seed=0)


def synthetic_documents(n_docs, seed, max_sentences=12, max_len=20):
    """Sentences of tokens named "d{doc}s{sentence}t{k}"; word_start = even k."""
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        doc = []
        for s in range(rng.randint(1, max_sentences)):
            n = rng.randint(1, max_len)
            doc.append(([f"d{d}s{s}t{k}" for k in range(n)], [k % 2 == 0 for k in range(n)]))
        docs.append(doc)
    return docs


def parse(token):
    d, rest = token[1:].split("s")
    s, k = rest.split("t")
    return int(d), int(s), int(k)


# ----------------------------------------------------------------------------- instances

def test_truncate_seq_pair_by_hand():
    a, b = list(range(10)), ["x", "y", "z"]
    truncate_seq_pair(a, b, 8, np.random.default_rng(0))
    assert len(a) == 5 and b == ["x", "y", "z"]
    assert a == list(range(a[0], a[0] + 5))  # only ends are removed
    a, b = [1, 2, 3], [4, 5, 6]
    truncate_seq_pair(a, b, 4, np.random.default_rng(0))
    assert len(a) == len(b) == 2  # the longer one loses a token; B on ties


def test_instances_layout_and_nsp():
    docs = synthetic_documents(60, seed=1)
    rng = np.random.default_rng(0)
    labels = []
    for index, doc in enumerate(docs):
        for inst in create_instances_from_document(doc, docs, index, max_seq_length=32,
                                                   short_seq_prob=0.1, rng=rng):
            tokens, types, starts = inst["tokens"], inst["token_type_ids"], inst["word_start"]
            assert len(tokens) == len(types) == len(starts) <= 32
            seps = [i for i, t in enumerate(tokens) if t == "[SEP]"]
            assert tokens[0] == "[CLS]" and len(seps) == 2 and seps[1] == len(tokens) - 1
            assert "[CLS]" not in tokens[1:]
            assert types == [0] * (seps[0] + 1) + [1] * (len(tokens) - seps[0] - 1)
            a, b = tokens[1:seps[0]], tokens[seps[0] + 1:-1]
            assert a and b
            for t, s in zip(tokens, starts):  # word_start travels with its token
                assert s == (t in ("[CLS]", "[SEP]") or parse(t)[2] % 2 == 0)
            assert {parse(t)[0] for t in a} == {index}
            label = inst["next_sentence_label"]
            labels.append(label)
            if label == 0:  # actual next: same document, B after A
                assert {parse(t)[0] for t in b} == {index}
                assert parse(a[-1])[1:] < parse(b[0])[1:]
            else:  # random next: another document
                assert {parse(t)[0] for t in b} != {index}
    assert 0 < np.mean(labels) < 1


def test_nsp_half_random():
    """A chunk of two or more sentences gets a random B with probability 1/2; a chunk of one
    sentence always does. With sentences of 2-6 tokens and a target of 29 tokens
    (short_seq_prob=0), one-sentence chunks only occur at a document's last sentence."""
    rng0 = random.Random(5)
    docs = [[(t, [True] * len(t)) for t in
             ([f"d{d}s{s}t{k}" for k in range(rng0.randint(2, 6))] for s in range(40))]
            for d in range(300)]
    rng = np.random.default_rng(0)
    free, forced = [], []
    for index, doc in enumerate(docs):
        for inst in create_instances_from_document(doc, docs, index, max_seq_length=32,
                                                   short_seq_prob=0.0, rng=rng):
            first_sentence = parse(inst["tokens"][1])[1]
            (forced if first_sentence == 39 else free).append(inst["next_sentence_label"])
    assert forced and all(forced)
    se = np.sqrt(0.25 / len(free))
    assert len(free) > 1500 and abs(np.mean(free) - 0.5) < 4 * se, (np.mean(free), se)


def test_instances_deterministic_per_seed():
    docs = synthetic_documents(20, seed=2)

    def run(seed):
        rng = np.random.default_rng(seed)
        return [create_instances_from_document(doc, docs, i, max_seq_length=40, short_seq_prob=0.2,
                                               rng=rng) for i, doc in enumerate(docs)]
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_instances_without_nsp_pack_full_sentences():
    docs = synthetic_documents(30, seed=3, max_len=40)
    rng = np.random.default_rng(0)
    for index, doc in enumerate(docs):
        instances = create_instances_from_document(doc, docs, index, max_seq_length=32,
                                                   short_seq_prob=0.1, rng=rng, nsp=False)
        body = []
        for inst in instances:
            tokens = inst["tokens"]
            assert len(tokens) <= 32 and tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
            assert tokens.count("[SEP]") == 1 and inst["next_sentence_label"] == 0
            assert set(inst["token_type_ids"]) == {0}
            inner = tokens[1:-1]
            first, last = parse(inner[0]), parse(inner[-1])
            # starts at a sentence start unless it continues a sentence longer than 30 tokens
            assert first[2] == 0 or (first[2] % 30 == 0 and len(doc[first[1]][0]) > 30)
            assert last[2] == len(doc[last[1]][0]) - 1 or len(inner) == 30
            body += inner
        assert body == [t for sentence, _ in doc for t in sentence]  # every token once, in order


# ----------------------------------------------------------------------------- arrays

def test_build_arrays(arrays, tok):
    n, length = arrays["input_ids"].shape
    assert set(arrays) == set(ARRAY_KEYS) and length == 48 and n >= 3 * len(CORPUS)
    for key in ("input_ids", "token_type_ids", "attention_mask", "next_sentence_label"):
        assert arrays[key].dtype == np.int32
    assert arrays["word_start"].dtype == bool and arrays["next_sentence_label"].shape == (n,)
    ids, mask = arrays["input_ids"], arrays["attention_mask"]
    assert (ids[:, 0] == tok.cls_id).all()
    real = mask.sum(1)
    assert (mask == (np.arange(length) < real[:, None])).all()
    assert (ids[mask == 0] == tok.pad_id).all() and not arrays["word_start"][mask == 0].any()
    assert ((ids == tok.sep_id).sum(1) == 2).all() and (ids[np.arange(n), real - 1] == tok.sep_id).all()
    assert (arrays["token_type_ids"][mask == 0] == 0).all()
    assert set(np.unique(arrays["next_sentence_label"])) <= {0, 1}
    assert not (ids == tok.unk_id).any()
    # jieba's words survive into the arrays: 哈尔滨工业大学 appears as one 7-token group
    inv = {i: t for t, i in tok.vocab.items()}
    words = {"".join(inv[int(ids[r, p])] for p in g)
             for r in range(n) for g in word_groups(arrays["word_start"][r], mask[r] == 0)}
    assert "哈尔滨工业大学" in words and "语言" in words


def test_build_arrays_deterministic_and_nsp_off(tok, arrays):
    again = build_pretraining_arrays(CORPUS, tok, JiebaSegmenter(), max_seq_length=48,
                                     dupe_factor=3, seed=0)
    other = build_pretraining_arrays(CORPUS, tok, JiebaSegmenter(), max_seq_length=48,
                                     dupe_factor=3, seed=1)
    for key in ARRAY_KEYS:
        np.testing.assert_array_equal(arrays[key], again[key])
    assert not np.array_equal(arrays["input_ids"], other["input_ids"])
    single = build_pretraining_arrays(CORPUS, tok, None, max_seq_length=64, seed=0, nsp=False,
                                      short_seq_prob=0.0)
    assert ((single["input_ids"] == tok.sep_id).sum(1) == 1).all()
    assert not single["token_type_ids"].any() and not single["next_sentence_label"].any()
    n_chars = sum(len(tok.tokenize(s)) for doc in CORPUS for s in doc)
    assert single["attention_mask"].sum() == n_chars + 2 * len(single["input_ids"])


def test_save_load_atomic(arrays, tmp_path):
    path = tmp_path / "sub" / "train.npz"
    save_arrays(path, arrays)
    save_arrays(path, arrays)  # overwrite in place
    assert os.listdir(path.parent) == ["train.npz"]  # no temp file left behind
    back = load_arrays(path)
    assert set(back) == set(arrays)
    for key in arrays:
        np.testing.assert_array_equal(back[key], arrays[key])
        assert back[key].dtype == arrays[key].dtype


def test_read_corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes("\ufeff第一句。\n第二句。\n\n\n  第三句。 \n\n".encode("utf-8"))
    assert read_corpus(path) == [["第一句。", "第二句。"], ["第三句。"]]
    bad = tmp_path / "bad.txt"
    bad.write_bytes("好\n\n".encode("utf-8") + b"\xff\xfe bad\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 3"):
        read_corpus(bad)


# ----------------------------------------------------------------------------- grain

def test_grain_map_dataset_pipeline(arrays, tok):
    source = ArrayDataSource(arrays)
    assert len(source) == len(arrays["input_ids"])
    mask = WholeWordMask.from_tokenizer(tok, max_predictions=8)

    def pipeline(seed):
        return grain.MapDataset.source(source).seed(seed).shuffle().random_map(mask).batch(4)
    a, b, c = pipeline(7), pipeline(7), pipeline(8)
    first = a[0]
    assert first["input_ids"].shape == (4, 48) and first["masked_lm_positions"].shape == (4, 8)
    assert "word_start" not in first
    for i in range(len(a)):
        for key in first:
            np.testing.assert_array_equal(a[i][key], b[i][key])
    assert any(not np.array_equal(a[i]["input_ids"], c[i]["input_ids"]) for i in range(len(a)))
    # masks are fresh per epoch and labels are the original ids
    epochs = grain.MapDataset.source(source).seed(7).repeat(2).random_map(mask)
    n = len(source)
    assert any(not np.array_equal(epochs[i]["masked_lm_positions"], epochs[n + i]["masked_lm_positions"])
               for i in range(n))
    for i in range(n):
        ex = epochs[i]
        k = int(ex["masked_lm_weights"].sum())
        np.testing.assert_array_equal(ex["masked_lm_ids"][:k],
                                      arrays["input_ids"][i][ex["masked_lm_positions"][:k]])
    # source rows are not modified by the transform
    np.testing.assert_array_equal(source[0]["input_ids"], arrays["input_ids"][0])


def test_grain_data_loader(arrays, tok):
    source = ArrayDataSource(arrays)
    sampler = grain.samplers.IndexSampler(len(source), shuffle=True, num_epochs=1, seed=3)
    loader = grain.DataLoader(data_source=source, sampler=sampler, worker_count=0,
                              operations=[WholeWordMask.from_tokenizer(tok),
                                          grain.transforms.Batch(8, drop_remainder=True)])
    batches = list(loader)
    assert len(batches) == len(source) // 8
    assert batches[0]["masked_lm_weights"].shape == (8, 20)
    for batch in batches:
        labels = batch["masked_lm_ids"][batch["masked_lm_weights"] > 0]
        assert labels.size and not np.isin(labels, [tok.cls_id, tok.sep_id, tok.pad_id]).any()
