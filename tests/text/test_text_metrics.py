"""CMRC 2018 EM/F1 (official-script semantics), entity-level NER F1 and accuracy, hand-checked."""
import numpy as np
import pytest

from jaxmodels.text.metrics import (
    accuracy,
    cmrc_em_f1,
    cmrc_f1_score,
    find_lcs,
    get_entities,
    mixed_segmentation,
    ner_f1,
    remove_punctuation,
    simple_word_tokenize,
)


def test_mixed_segmentation_splits_cjk_keeps_ascii_runs_and_drops_punctuation():
    assert mixed_segmentation("Hello World北京大学，2018年") == [
        "hello", "world", "北", "京", "大", "学", "，", "2018", "年"]
    assert mixed_segmentation("Hello World北京大学，2018年", rm_punc=True) == [
        "hello", "world", "北", "京", "大", "学", "2018", "年"]
    # rm_punc drops '-' before tokenizing, so the hyphenated run is glued (as in the official script).
    assert mixed_segmentation("state-of-the-art", rm_punc=True) == ["stateoftheart"]
    assert mixed_segmentation("a-b") == ["a", "-", "b"]
    # Only U+4E00..U+9FA5 count as CJK: full-width digits stay a run.
    assert mixed_segmentation("１９９８年") == ["１９９８", "年"]


def test_simple_word_tokenize():
    assert simple_word_tokenize("iPhone 6s, 3.14 (U.S) 100%") == [
        "iPhone", "6s", ",", "3.14", "(", "U.S", ")", "100", "%"]
    assert simple_word_tokenize("   ") == []


def test_remove_punctuation_and_the_two_char_ellipsis_quirk():
    assert remove_punctuation(" 《北京》。 ") == "北京"
    assert remove_punctuation("ABC") == "abc"
    # '……' is one 2-char entry of sp_char, so a char-by-char test never removes '…'.
    assert remove_punctuation("好……") == "好……"


def test_find_lcs_is_longest_common_substring():
    assert find_lcs(list("abcde"), list("xbcdy")) == (list("bcd"), 3)
    assert find_lcs(list("ab"), list("cd")) == ([], 0)


def test_f1_by_hand():
    # pred 北京大学 vs ref 北京: LCS 2, P = 2/4, R = 2/2, F1 = 2*(.5*1)/(1.5) = 2/3.
    r = cmrc_em_f1({"q": "北京大学"}, {"q": ["北京"]})
    assert r["f1"] == pytest.approx(66.6667, abs=1e-3)
    assert r["em"] == 0.0
    # Mixed: pred [iphone, 6, 手, 机] vs ref [iphone, 6]: P = 2/4, R = 1 -> 2/3.
    assert cmrc_f1_score(["iPhone 6"], "iPhone 6手机") == pytest.approx(2 / 3)
    # LCS is contiguous: pred 北大京 vs ref 北京 share only 1-token runs: P = 1/3, R = 1/2, F1 = 0.4.
    assert cmrc_f1_score(["北京"], "北大京") == pytest.approx(0.4)


def test_em_after_punctuation_removal_and_max_over_references():
    r = cmrc_em_f1({"q": "《北京》。"}, {"q": ["北京"]})
    assert r["em"] == 100.0 and r["f1"] == 100.0
    r = cmrc_em_f1({"q": "北京"}, {"q": ["上海", "北京市", "北京"]})
    assert r["em"] == 100.0 and r["f1"] == 100.0
    # Max over refs for F1: vs 北京市, P = 2/2, R = 2/3 -> 0.8; vs 上海 0.
    r = cmrc_em_f1({"q": "北京"}, {"q": ["上海", "北京市"]})
    assert r["em"] == 0.0 and r["f1"] == pytest.approx(80.0)


def test_totals_skip_and_average():
    preds = {"a": "北京", "b": "北京大学", "extra": "x"}
    refs = {"a": ["北京"], "b": ["北京"], "c": ["上海"]}
    r = cmrc_em_f1(preds, refs)
    assert r["total"] == 3 and r["skip"] == 1
    assert r["em"] == pytest.approx(100 / 3)
    assert r["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert r["average"] == pytest.approx((r["em"] + r["f1"]) / 2)
    # Empty prediction scores 0, not an error.
    assert cmrc_em_f1({"a": ""}, {"a": ["北京"]})["f1"] == 0.0


def test_get_entities_conlleval_and_strict():
    assert get_entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    # BIOES reads as in conlleval.
    assert get_entities(["S-PER", "B-LOC", "E-LOC", "O"]) == [("PER", 0, 0), ("LOC", 1, 2)]
    # Orphan I-X starts an entity in conlleval mode, not in strict mode.
    assert get_entities(["O", "I-LOC", "I-LOC"]) == [("LOC", 1, 2)]
    assert get_entities(["O", "I-LOC", "I-LOC"], mode="strict") == []
    # A type change inside an I-run splits the entity.
    assert get_entities(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]
    assert get_entities(["B-PER", "I-LOC"], mode="strict") == [("PER", 0, 0)]


def test_ner_f1_by_hand():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG", "O", "O"]]
    r = ner_f1(true, pred)
    # true: PER, LOC, ORG(0-2); pred: PER, ORG(3), ORG(0-1); only PER is right (boundaries matter).
    assert (r["n_true"], r["n_pred"], r["n_correct"]) == (3, 3, 1)
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(1 / 3)
    assert r["per_type"]["PER"]["f1"] == 1.0
    assert r["per_type"]["LOC"] == dict(precision=0.0, recall=0.0, f1=0.0, support=1)
    assert r["per_type"]["ORG"]["precision"] == 0.0 and r["per_type"]["ORG"]["support"] == 1
    # Two of three right: P = 2/3, R = 2/2 -> F1 = 0.8.
    r = ner_f1([["B-PER", "O", "B-LOC", "I-LOC"]], [["B-PER", "B-ORG", "B-LOC", "I-LOC"]])
    assert r["f1"] == pytest.approx(0.8)
    # Orphan I-: conlleval counts the chunk, strict does not.
    assert ner_f1([["O", "B-LOC", "I-LOC"]], [["O", "I-LOC", "I-LOC"]])["f1"] == 1.0
    assert ner_f1([["O", "B-LOC", "I-LOC"]], [["O", "I-LOC", "I-LOC"]], mode="strict")["f1"] == 0.0
    with pytest.raises(ValueError, match="sentence 0"):
        ner_f1([["O"]], [["O", "O"]])


def test_accuracy():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(logits, [1, 1, 1]) == pytest.approx(2 / 3)
    assert accuracy([1, 0, 1], [1, 1, 1], weights=[1, 0, 1]) == 1.0
    with pytest.raises(ValueError):
        accuracy([1, 2], [1, 2, 3])
