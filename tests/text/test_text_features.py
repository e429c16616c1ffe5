"""Fine-tuning features: classification, NER label alignment, SQuAD windows and post-processing."""
import numpy as np
import pytest

from jaxmodels.text.features import (
    IGNORE_INDEX,
    classification_features,
    decode_ner,
    ner_features,
    postprocess_squad,
    squad_features,
    truncate_seq_pair,
)
from jaxmodels.text.tokenizers import WordPieceTokenizer, build_wordpiece_vocab

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

FILLER = ("一年来，各地区各部门认真贯彻落实中央的部署，经济建设取得新的成就，人民生活继续改善。"
          "农业生产再次获得好的收成，企业改革继续深化，对外经济技术合作与交流不断扩大。")
ANSWER = "中华人民共和国"
LONG_CONTEXT = FILLER * 2 + "我们的国家是" + ANSWER + "。" + FILLER * 2
QUESTION = "我们的国家叫什么？"
MIXED_CONTEXT = "香港歌手Andy Lau出生于一九六一年。"


@pytest.fixture(scope="module")
def tok():
    texts = [LONG_CONTEXT, QUESTION, MIXED_CONTEXT, "我爱北京天安门广场很大张三去"]
    vocab = build_wordpiece_vocab(texts, max_size=10_000)
    vocab += [t for t in ("play", "##ing") if t not in vocab]
    return WordPieceTokenizer(vocab)


def test_truncate_seq_pair_pops_from_the_longer():
    a, b = list("abcd"), list("efghijk")
    truncate_seq_pair(a, b, 7)
    assert a == list("abcd") and b == list("efg")
    a, b = list("abcdef"), list("xy")
    truncate_seq_pair(a, b, 5)
    assert a == list("abc") and b == list("xy")


def test_classification_features_single_and_pair(tok):
    ex = [{"text_a": "我爱北京", "label": "1"},
          {"text_a": "我爱北京", "text_b": "天安门广场很大", "label": "0"},
          {"text_a": "张三", "text_b": None}]
    f = classification_features(ex, tok, 10, ["0", "1"])
    assert {k: v.shape for k, v in f.items()} == {
        "input_ids": (3, 10), "token_type_ids": (3, 10), "attention_mask": (3, 10), "label": (3,)}
    assert all(v.dtype == np.int32 for v in f.values())
    ids = lambda s: tok.convert_tokens_to_ids(list(s))  # noqa: E731
    c, s, p = tok.cls_id, tok.sep_id, tok.pad_id
    assert f["input_ids"][0].tolist() == [c] + ids("我爱北京") + [s] + [p] * 4
    # Pair: 4 + 7 tokens into 10 - 3 = 7 -> b popped down to 3 tokens (run_classifier._truncate_seq_pair).
    assert f["input_ids"][1].tolist() == [c] + ids("我爱北京") + [s] + ids("天安门") + [s]
    assert f["token_type_ids"][1].tolist() == [0] * 6 + [1] * 4
    assert f["attention_mask"][0].tolist() == [1] * 6 + [0] * 4
    assert f["label"].tolist() == [1, 0, -1]
    with pytest.raises(ValueError, match="label '2'"):
        classification_features([{"text_a": "好", "label": 2}], tok, 8, ["0", "1"])


def test_ner_label_alignment_and_decode(tok):
    chars = ["张", "三", "playing", " ", "去", "北", "京"]
    tags = ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "I-LOC"]
    f, meta = ner_features([{"chars": chars, "tags": tags}], tok, 12, NER_LABELS)
    toks = tok.convert_ids_to_tokens(f["input_ids"][0][f["attention_mask"][0] == 1])
    assert toks == ["[CLS]", "张", "三", "play", "##ing", "去", "北", "京", "[SEP]"]
    lab = [NER_LABELS.index(t) for t in tags]
    I = IGNORE_INDEX
    # The space makes no token; "##ing" (a non-first wordpiece), [CLS], [SEP] and padding are ignored.
    assert f["labels"][0].tolist() == [I, lab[0], lab[1], lab[2], I, lab[4], lab[5], lab[6], I, I, I, I]
    assert f["label_weights"][0].tolist() == [0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0]
    assert meta.char_positions[0].tolist() == [1, 2, 3, -1, 5, 6, 7]
    # Gold labels at the labelled positions decode back to the tags (the space decodes as O).
    pred = np.where(f["labels"] >= 0, f["labels"], 0)
    assert decode_ner(pred, meta) == [tags]
    # Logits are arg-maxed.
    logits = np.eye(len(NER_LABELS))[pred]
    assert decode_ner(logits, meta) == [tags]


def test_ner_truncation_and_unknown_tag(tok):
    f, meta = ner_features([{"chars": list("张三去北京"), "tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]}],
                           tok, 5, NER_LABELS)
    assert meta.char_positions[0].tolist() == [1, 2, 3, -1, -1]
    assert f["input_ids"][0, 4] == tok.sep_id
    assert decode_ner(np.full((1, 5), 1), meta) == [["B-PER", "B-PER", "B-PER", "O", "O"]]
    with pytest.raises(ValueError, match="tag 'B-GPE'"):
        ner_features([{"chars": ["北"], "tags": ["B-GPE"]}], tok, 5, NER_LABELS)


def _squad_example(qa_id="q1", context=LONG_CONTEXT, answer=ANSWER):
    return {"qa_id": qa_id, "question": QUESTION, "context": context,
            "answers": [{"text": answer, "answer_start": context.index(answer)}]}


def test_squad_windows_hold_the_answer_or_point_at_cls(tok):
    ex = _squad_example()
    f, meta = squad_features([ex], tok, max_seq_length=48, doc_stride=16, max_query_length=64)
    n_feat = len(meta)
    assert n_feat >= 4 and f["input_ids"].shape == (n_feat, 48)
    a0 = ex["answers"][0]["answer_start"]
    a1 = a0 + len(ANSWER)
    q_len = len(tok.tokenize(QUESTION))
    holding = 0
    for i, m in enumerate(meta):
        s, e = int(f["start_positions"][i]), int(f["end_positions"][i])
        offs = m.token_offsets
        ctx = offs[:, 0] >= 0
        covers = ctx.any() and offs[ctx, 0].min() <= a0 and offs[ctx, 1].max() >= a1
        if covers:
            holding += 1
            assert s > 0 and e >= s
            assert "".join(m.tokens[s:e + 1]) == ANSWER
            assert ex["context"][offs[s, 0]:offs[e, 1]] == ANSWER
            ids = f["input_ids"][i, s:e + 1].tolist()
            assert "".join(tok.convert_ids_to_tokens(ids)) == ANSWER
        else:
            assert s == 0 and e == 0
        # Layout: [CLS] query [SEP] window [SEP], segment 1 from the window on.
        assert m.tokens[0] == "[CLS]" and m.tokens[q_len + 1] == "[SEP]" and m.tokens[-1] == "[SEP]"
        n = len(m.tokens)
        assert f["token_type_ids"][i].tolist() == [0] * (q_len + 2) + [1] * (n - q_len - 2) + [0] * (48 - n)
        assert f["span_mask"][i].tolist() == [1] + [0] * (q_len + 1) + [1] * (n - q_len - 3) + [0] * (49 - n)
        assert f["attention_mask"][i].sum() == n
        assert m.example_index == 0 and m.doc_span_index == i
    assert 2 <= holding < n_feat
    # Windows start every doc_stride tokens: each context token is max-context in exactly one window.
    seen = {}
    for m in meta:
        for p in np.nonzero(m.token_is_max_context)[0]:
            key = tuple(m.token_offsets[p])
            assert key not in seen
            seen[key] = True
    assert len(seen) == len(tok.tokenize(ex["context"]))


def test_postprocess_recovers_answers_and_applies_max_context(tok):
    examples = [_squad_example("q1"), _squad_example("q2", MIXED_CONTEXT, "Andy Lau")]
    f, meta = squad_features(examples, tok, max_seq_length=48, doc_stride=16)
    start = np.zeros(f["input_ids"].shape, np.float32)
    end = np.zeros_like(start)
    for i in range(len(meta)):
        if f["start_positions"][i] > 0:
            start[i, f["start_positions"][i]] = 10.0
            end[i, f["end_positions"][i]] = 10.0
    # A decoy with a higher score on a token whose max context lies in another window: ignored.
    m0 = meta[0]
    decoy = int(np.nonzero(m0.token_offsets[:, 0] >= 0)[0][-1])
    assert not m0.token_is_max_context[decoy]
    start[0, decoy] = end[0, decoy] = 50.0
    preds, nbest = postprocess_squad(examples, meta, start, end, n_best_size=5, max_answer_length=30,
                                     return_nbest=True)
    # Cut from the original context: the English name keeps its case and space.
    assert preds == {"q1": ANSWER, "q2": "Andy Lau"}
    assert nbest["q1"][0]["text"] == ANSWER
    assert sum(d["probability"] for d in nbest["q1"]) == pytest.approx(1.0)
    # max_answer_length excludes the 7-token answer.
    short = postprocess_squad(examples[:1], [m for m in meta if m.example_index == 0],
                              start[: sum(m.example_index == 0 for m in meta)],
                              end[: sum(m.example_index == 0 for m in meta)], max_answer_length=3)
    assert short["q1"] != ANSWER


def test_squad_answer_start_minus_one_and_no_answer(tok):
    ex = _squad_example()
    ex["answers"][0]["answer_start"] = -1  # CMRC dev: falls back to the first occurrence
    f, meta = squad_features([ex, {**ex, "answers": []}], tok, max_seq_length=64, doc_stride=32)
    first = [i for i, m in enumerate(meta) if m.example_index == 0]
    second = [i for i, m in enumerate(meta) if m.example_index == 1]
    assert (f["start_positions"][first] > 0).any()
    assert (f["start_positions"][second] == 0).all() and (f["end_positions"][second] == 0).all()
    assert f["example_index"].tolist() == [m.example_index for m in meta]
