"""Readers for ChnSentiCorp / XNLI / LCQMC TSV, People's Daily BIO and CMRC/DRCD JSON on small files."""
import json
import warnings

import pytest

from jaxmodels.projects.bert_wwm.readers import (
    PEOPLE_DAILY_NER_LABELS,
    TextFormatError,
    read_chnsenticorp,
    read_classification,
    read_ner_bio,
    read_sentence_pair,
    read_squad_json,
    read_xnli_tsv,
    to_bio,
)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ TSV

def test_chnsenticorp_with_header(tmp_path):
    p = _write(tmp_path / "train.tsv", "label\ttext_a\n1\t房间很干净，服务好。\n0\t太吵了\r\n\n1\t  不错 \n")
    ex = read_chnsenticorp(p)
    assert [(e.label, e.label_id, e.text_a) for e in ex] == [
        ("1", 1, "房间很干净，服务好。"), ("0", 0, "太吵了"), ("1", 1, "不错")]
    assert ex[0].text_b is None and ex[0].guid == "train-0"


def test_classification_header_with_extra_column_and_headerless_columns(tmp_path):
    p = _write(tmp_path / "dev.tsv", "qid\tlabel\ttext_a\n7\t0\t差\n")
    (e,) = read_classification(p, ("0", "1"))
    assert (e.label, e.text_a) == ("0", "差")
    p = _write(tmp_path / "nohead.tsv", "好\t1\n差\t0\n")
    ex = read_classification(p, ("0", "1"), columns=("text_a", "label"))
    assert [(e.text_a, e.label_id) for e in ex] == [("好", 1), ("差", 0)]


def test_tsv_errors_name_file_and_line(tmp_path):
    p = _write(tmp_path / "train.tsv", "label\ttext_a\n1\t好\n\n0\t差\n1\n")
    with pytest.raises(TextFormatError, match=r"^train\.tsv:5: expected 2 tab-separated fields \(label, text_a\), got 1$"):
        read_chnsenticorp(p)
    p = _write(tmp_path / "bad_label.tsv", "label\ttext_a\n1\t好\n2\t差\n")
    with pytest.raises(TextFormatError, match=r"^bad_label\.tsv:3: unknown label '2'"):
        read_chnsenticorp(p)
    p = _write(tmp_path / "nohdr.tsv", "1\t好\n")
    with pytest.raises(TextFormatError, match=r"nohdr\.tsv:1: header .* has no 'label' column"):
        read_chnsenticorp(p)
    p = tmp_path / "bytes.tsv"
    p.write_bytes("label\ttext_a\n1\t好\n".encode() + b"0\t\xff\xfe\n")
    with pytest.raises(TextFormatError, match=r"^bytes\.tsv:3: not valid UTF-8"):
        read_chnsenticorp(p)
    assert issubclass(TextFormatError, ValueError)


def test_xnli_mt_layout_and_contradictory_spelling(tmp_path):
    p = _write(tmp_path / "xnli.tsv", "premise\thypo\tlabel\n他来了\t他没来\tcontradictory\n"
               "他来了\t有人来了\tentailment\n他来了\t他很高兴\tneutral\n")
    ex = read_xnli_tsv(p)
    assert [(e.label, e.label_id) for e in ex] == [("contradiction", 0), ("entailment", 1), ("neutral", 2)]
    assert (ex[0].text_a, ex[0].text_b) == ("他来了", "他没来")
    # No header works as well.
    p = _write(tmp_path / "nohead.tsv", "甲\t乙\tneutral\n")
    assert read_xnli_tsv(p)[0].label == "neutral"
    p = _write(tmp_path / "bad.tsv", "甲\t乙\tneutral\n甲\t乙\tmaybe\n")
    with pytest.raises(TextFormatError, match=r"^bad\.tsv:2: unknown label 'maybe'"):
        read_xnli_tsv(p)
    p = _write(tmp_path / "short.tsv", "甲\t乙\n")
    with pytest.raises(TextFormatError, match=r"short\.tsv:1: expected 3 tab-separated fields \(premise, hypothesis, label\), got 2"):
        read_xnli_tsv(p)


def test_xnli_official_layout_keeps_only_zh(tmp_path):
    header = "language\tgold_label\tsentence1_binary_parse\tsentence1\tsentence2\tpairID\n"
    rows = "en\tneutral\t_\tHe came\tHe is happy\t1\nzh\tentailment\t_\t他来了\t有人来了\t1\n"
    ex = read_xnli_tsv(_write(tmp_path / "xnli.dev.tsv", header + rows))
    assert [(e.text_a, e.text_b, e.label) for e in ex] == [("他来了", "有人来了", "entailment")]


def test_sentence_pair_lcqmc_layout(tmp_path):
    p = _write(tmp_path / "lcqmc.tsv", "喜欢打篮球的男生喜欢什么样的女生\t爱打篮球的男生喜欢什么样的女生\t1\n"
               "我手机丢了\t我想换个手机\t0\n")
    ex = read_sentence_pair(p)
    assert [e.label_id for e in ex] == [1, 0] and ex[1].text_b == "我想换个手机"
    p = _write(tmp_path / "bq.tsv", "text_a\ttext_b\tlabel\n甲\t乙\t0\n甲\t乙\n")
    with pytest.raises(TextFormatError, match=r"^bq\.tsv:3: expected 3 tab-separated fields \(text_a, text_b, label\), got 2"):
        read_sentence_pair(p)


# ------------------------------------------------------------------------------------------ NER

def test_ner_bio_space_and_tab_separated(tmp_path):
    text = "江 B-PER\n泽\tI-PER\n民 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n\n新 B-ORG\n华 I-ORG\n社 I-ORG\n１ O\n"
    ex = read_ner_bio(_write(tmp_path / "train.txt", text), label_list=PEOPLE_DAILY_NER_LABELS)
    assert len(ex) == 2
    assert "".join(ex[0].chars) == "江泽民在北京"
    assert ex[0].tags == ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    assert ex[1].chars[-1] == "１" and ex[1].tags == ["B-ORG", "I-ORG", "I-ORG", "O"]


def test_ner_bioes_is_converted_to_bio(tmp_path):
    text = "张 S-PER\n去 O\n上 B-LOC\n海 M-LOC\n市 E-LOC\n"
    (e,) = read_ner_bio(_write(tmp_path / "msra.txt", text))
    assert e.tags == ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC"]
    assert to_bio("E-ORG") == "I-ORG" and to_bio("O") == "O"


def test_ner_errors_name_file_and_line(tmp_path):
    p = _write(tmp_path / "dev.txt", "北 B-LOC\n京 I-LOC\n\n在 O\n京 I-LOC\n")
    with pytest.raises(TextFormatError, match=r"^dev\.txt:5: I-LOC follows O"):
        read_ner_bio(p)
    p = _write(tmp_path / "type.txt", "北 B-LOC\n京 I-ORG\n")
    with pytest.raises(TextFormatError, match=r"^type\.txt:2: I-ORG follows B-LOC"):
        read_ner_bio(p)
    p = _write(tmp_path / "fields.txt", "北 B-LOC\n京\n")
    with pytest.raises(TextFormatError, match=r"^fields\.txt:2: expected 'char tag'"):
        read_ner_bio(p)
    p = _write(tmp_path / "tag.txt", "北 B-LOC\n京 X-LOC\n")
    with pytest.raises(TextFormatError, match=r"^tag\.txt:2: bad tag 'X-LOC'"):
        read_ner_bio(p)
    p = _write(tmp_path / "list.txt", "北 B-GPE\n")
    with pytest.raises(TextFormatError, match=r"^list\.txt:1: tag 'B-GPE' not in the label list"):
        read_ner_bio(p, label_list=PEOPLE_DAILY_NER_LABELS)


def test_ner_repair_mode(tmp_path):
    p = _write(tmp_path / "dev.txt", "在 O\n京 I-LOC\n城 I-LOC\n人 I-PER\n")
    with pytest.warns(UserWarning, match="repaired 2"):
        (e,) = read_ner_bio(p, strict=False)
    assert e.tags == ["O", "B-LOC", "I-LOC", "B-PER"]


# ------------------------------------------------------------------------------------------ JSON

def _squad(context="北京是中国的首都，位于华北平原。", answers=None, **qa_extra):
    if answers is None:
        answers = [{"text": "北京", "answer_start": 0}]
    qa = {"id": "TRAIN_1_QUERY_0", "question": "中国的首都是哪里？", "answers": answers, **qa_extra}
    return {"version": "v1.0", "data": [{"id": "TRAIN_1", "title": "北京", "paragraphs": [
        {"id": "TRAIN_1", "context": context, "qas": [qa]}]}]}


def test_squad_reader(tmp_path):
    doc = _squad(answers=[{"text": "北京", "answer_start": 0}, {"text": "华北平原", "answer_start": 11},
                          {"text": "不在文中的参考答案", "answer_start": -1}])
    p = tmp_path / "cmrc.json"
    p.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    (e,) = read_squad_json(p)
    assert e.qa_id == "TRAIN_1_QUERY_0" and e.title == "北京" and e.paragraph_id == "TRAIN_1"
    assert [a["answer_start"] for a in e.answers] == [0, 11, -1]
    assert e.context[11:15] == "华北平原"


def test_squad_errors_name_json_path(tmp_path):
    p = tmp_path / "cmrc.json"
    doc = _squad()
    doc["data"][0]["paragraphs"][0]["qas"].append({"id": "q2", "question": "?"})
    p.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(TextFormatError, match=r"^cmrc\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]: missing 'answers'$"):
        read_squad_json(p)
    assert len(read_squad_json(p, require_answers=False)) == 2

    p.write_text(json.dumps({"data": [{"paragraphs": [{"context": 3, "qas": []}]}]}), encoding="utf-8")
    with pytest.raises(TextFormatError, match=r"data\[0\]\.paragraphs\[0\]\.context: expected a string, got int"):
        read_squad_json(p)
    p.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(TextFormatError, match=r"^cmrc\.json:1: invalid JSON"):
        read_squad_json(p)
    doc = _squad()
    doc["data"][0]["paragraphs"][0]["qas"].append(doc["data"][0]["paragraphs"][0]["qas"][0])
    p.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(TextFormatError, match="duplicate qa id 'TRAIN_1_QUERY_0'"):
        read_squad_json(p)


def test_squad_offset_check_and_fix(tmp_path):
    # Off by one, as in a few CMRC 2018 / DRCD answers: 华北平原 starts at 11, not 12.
    context = "北京是中国的首都，位于华北平原。华北平原很大。"
    p = tmp_path / "drcd.json"
    p.write_text(json.dumps(_squad(context, [{"text": "华北平原", "answer_start": 12}]), ensure_ascii=False),
                 encoding="utf-8")
    with pytest.raises(TextFormatError, match=r"^drcd\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\]: "
                       r"qa 'TRAIN_1_QUERY_0': context\[12:16\] = '北平原。' != answer text '华北平原'"):
        read_squad_json(p)
    with pytest.warns(UserWarning, match=r"moved 1 answer_start.*TRAIN_1_QUERY_0: 12->11"):
        (e,) = read_squad_json(p, fix_offsets=True)
    assert e.answers[0]["answer_start"] == 11
    # Nearest occurrence wins: 15 is nearer to the second copy at 16.
    p.write_text(json.dumps(_squad(context, [{"text": "华北平原", "answer_start": 15}]), ensure_ascii=False),
                 encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_squad_json(p, fix_offsets=True)[0].answers[0]["answer_start"] == 16
    # Text absent from the context: an error even with fix_offsets.
    p.write_text(json.dumps(_squad(context, [{"text": "上海", "answer_start": 3}]), ensure_ascii=False),
                 encoding="utf-8")
    with pytest.raises(TextFormatError, match="does not occur in the context"):
        read_squad_json(p, fix_offsets=True)
