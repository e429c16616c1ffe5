"""VQA v2 data: question/answer preparation, vocabularies, HDF5/TSV feature readers, VQADataset batches,
iterators, malformed-input errors and the synthetic counting-VQA generator."""
import base64
import json
import os

import h5py
import numpy as np
import pytest

from jaxmodels.projects.vqa_counting.synthetic_scenes import class_names, write_synthetic_vqa
from jaxmodels.projects.vqa_counting.data import (
    FeatureStore,
    VQADataset,
    VQAFormatError,
    build_vocab,
    check_integrity,
    convert_tsv_to_hdf5,
    extract_vocab,
    load_annotations_json,
    load_questions_json,
    load_vocab,
    prepare_question,
    process_punctuation,
    read_tsv_features,
    save_vocab,
)

D, K = 5, 4  # feature_dim and stored boxes of the small feature files


# --------------------------------------------------------------------------------------- helpers

def _write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def _qa_files(tmp_path, questions, answers, image_ids=None, *, name="q"):
    """questions: list of str; answers: list of 10-answer lists. Question i has id 100 + i."""
    image_ids = image_ids or [10, 20, 30, 10, 20][: len(questions)]
    qs = {"data_type": "mscoco", "data_subtype": "train2014",
          "questions": [{"question_id": 100 + i, "image_id": im, "question": q}
                        for i, (q, im) in enumerate(zip(questions, image_ids))]}
    anns = {"data_type": "mscoco", "data_subtype": "train2014",
            "annotations": [{"question_id": 100 + i, "image_id": im, "answer_type": "number",
                             "question_type": "how many", "multiple_choice_answer": a[0],
                             "answers": [{"answer": x, "answer_id": j + 1} for j, x in enumerate(a)]}
                            for i, (a, im) in enumerate(zip(answers, image_ids))]}
    return (_write_json(tmp_path / f"{name}_questions.json", qs),
            _write_json(tmp_path / f"{name}_annotations.json", anns))


def _arrays(n=3, d=D, k=K, seed=0):
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((n, k, d)).astype(np.float32)  # [N, K, D]
    boxes = np.sort(rng.uniform(0, 200, size=(n, k, 4)).astype(np.float32), axis=-1)
    return np.asarray([10, 20, 30][:n]), feats, boxes


def _write_h5(path, ids, feats, boxes, drop=None, override=None):
    """The vqa-counting layout: features [N, D, K], boxes [N, 4, K]."""
    data = {"features": feats.transpose(0, 2, 1), "boxes": boxes.transpose(0, 2, 1), "ids": np.asarray(ids, np.int32),
            "widths": np.full(len(ids), 640, np.int32), "heights": np.full(len(ids), 480, np.int32)}
    data.update(override or {})
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if key != drop:
                f.create_dataset(key, data=value)
    return path


def _b64(a):
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode("ascii")


def _tsv_line(image_id, boxes, feats, w=640, h=480, num_boxes=None):
    n = len(boxes) if num_boxes is None else num_boxes
    return "\t".join([str(image_id), str(w), str(h), str(n), _b64(boxes), _b64(feats)]) + "\n"


QUESTIONS = ["How many dogs?", "How many cats are there?", "Is there a dog?", "What color is the T-shirt?"]
ANSWERS = [["2"] * 6 + ["3"] * 3 + ["two"],
           ["1"] * 10,
           ["yes"] * 9 + ["no"],
           ["t-shirt"] * 5 + ["red"] * 4 + ["1,000"]]


# ----------------------------------------------------------------------- questions and vocabulary

def test_prepare_question_as_official():
    assert prepare_question("How many dogs are there?") == ["how", "many", "dogs", "are", "there"]
    assert prepare_question("What's on the T-shirt?") == ["whats", "on", "the", "tshirt"]
    # The last character is dropped whatever it is; single-space split keeps empty tokens.
    assert prepare_question("Is it red") == ["is", "it", "re"]
    assert prepare_question("A  b?") == ["a", "", "b"]


def test_process_punctuation_training_normalisation():
    assert process_punctuation("t-shirt") == "t shirt"
    assert process_punctuation("1,000") == "1000"
    assert process_punctuation("yes!") == "yes"
    assert process_punctuation("yes") == "yes"
    assert process_punctuation("yes.") == "yes."  # no listed punctuation -> returned unchanged (as the original)


def test_extract_vocab_order_and_ties():
    # counts: b 3, a 2, c 2, d 1 -> descending count, then descending string.
    vocab = extract_vocab([["a", "b", "c"], ["b", "c", "d"], ["a", "b"]], start=1)
    assert vocab == {"b": 1, "c": 2, "a": 3, "d": 4}
    # top_k=2 keeps Counter.most_common(2): b and the first-seen of the tied a / c.
    assert extract_vocab([["a", "b", "c"], ["b", "c", "a"], ["b"]], top_k=2) == {"b": 0, "a": 1}


def test_build_vocab_on_handwritten_json(tmp_path):
    q_path, a_path = _qa_files(tmp_path, QUESTIONS, ANSWERS)
    vocab = build_vocab(q_path, a_path, max_answers=3000)
    # Tokens: how 2, many 2, is 2, there 2, then 1 each -- descending count, then descending string.
    assert vocab["question"] == {
        "there": 1, "many": 2, "is": 3, "how": 4,
        "what": 5, "tshirt": 6, "the": 7, "dogs": 8, "dog": 9, "color": 10, "cats": 11, "are": 12, "a": 13}
    # Answers after process_punctuation: 1 x10, yes 9, 2 6, t shirt 5, red 4, 3 3, then 1 each.
    assert vocab["answer"] == {"1": 0, "yes": 1, "2": 2, "t shirt": 3, "red": 4, "3": 5,
                               "two": 6, "no": 7, "1000": 8}
    assert build_vocab(q_path, a_path, max_answers=3)["answer"] == {"1": 0, "yes": 1, "2": 2}
    # Loaded dicts work as well as paths; save/load round trip.
    assert build_vocab(json.loads(q_path.read_text()), json.loads(a_path.read_text())) == vocab
    save_vocab(vocab, tmp_path / "vocab.json")
    assert load_vocab(tmp_path / "vocab.json") == vocab


# -------------------------------------------------------------------------------- feature readers

def test_hdf5_reader_round_trip_pad_truncate(tmp_path):
    ids, feats, boxes = _arrays()
    path = _write_h5(tmp_path / "feats.h5", ids, feats, boxes)
    for in_memory in (True, False):
        with FeatureStore(path, in_memory=in_memory) as store:
            assert len(store) == 3 and store.num_boxes == K and store.feature_dim == D
            assert 20 in store and 99 not in store
            f, b = store.get(20)
            assert f.dtype == b.dtype == np.float32 and f.shape == (K, D) and b.shape == (K, 4)
            np.testing.assert_array_equal(f, feats[1])
            np.testing.assert_array_equal(b, boxes[1])
            fb, bb = store.get_batch([30, 10, 30])  # unordered, repeated
            np.testing.assert_array_equal(fb, feats[[2, 0, 2]])
            np.testing.assert_array_equal(bb, boxes[[2, 0, 2]])
            assert store.image_size(30) == (640, 480)
    f, b = FeatureStore(path, num_boxes=6).get(10)
    assert f.shape == (6, D) and b.shape == (6, 4)
    np.testing.assert_array_equal(f[:K], feats[0])
    assert not f[K:].any() and not b[K:].any()
    f, b = FeatureStore(path, num_boxes=2).get(10)
    np.testing.assert_array_equal(f, feats[0, :2])
    np.testing.assert_array_equal(b, boxes[0, :2])


def test_tsv_reader_and_conversion_equal_direct_read(tmp_path):
    ids, feats, boxes = _arrays()
    counts = [2, 4, 3]  # boxes per image (< K padded with zeros)
    tsv = tmp_path / "trainval_36.tsv"
    tsv.write_text("".join(_tsv_line(i, boxes[j, :c], feats[j, :c]) for j, (i, c) in enumerate(zip(ids, counts))) + "\n")
    rows = list(read_tsv_features(tsv, feature_dim=D))
    assert [r["image_id"] for r in rows] == [10, 20, 30] and [r["num_boxes"] for r in rows] == counts
    np.testing.assert_array_equal(rows[2]["features"], feats[2, :3])
    np.testing.assert_array_equal(rows[0]["boxes"], boxes[0, :2])

    h5_path = tmp_path / "genome-trainval.h5"
    assert convert_tsv_to_hdf5(tsv, h5_path, num_boxes=K, feature_dim=D) == str(h5_path)
    assert sorted(os.listdir(tmp_path)) == ["genome-trainval.h5", "trainval_36.tsv"]  # no temp file left
    with h5py.File(h5_path, "r") as f:
        assert f["features"].shape == (3, D, K) and f["boxes"].shape == (3, 4, K)
        assert f["ids"][()].tolist() == [10, 20, 30] and f["widths"][()].tolist() == [640] * 3
        assert f["heights"][()].tolist() == [480] * 3
    from_h5, from_tsv = FeatureStore(h5_path), FeatureStore.from_tsv(tsv, num_boxes=K, feature_dim=D)
    for image_id, c, j in zip(ids, counts, range(3)):
        f_h5, b_h5 = from_h5.get(image_id)
        f_tsv, b_tsv = from_tsv.get(image_id)
        np.testing.assert_array_equal(f_h5, f_tsv)
        np.testing.assert_array_equal(b_h5, b_tsv)
        np.testing.assert_array_equal(f_h5[:c], feats[j, :c])
        assert not f_h5[c:].any() and not b_h5[c:].any()
    assert from_tsv.image_size(20) == (640, 480)
    # A directory: every file with '.tsv' in its name.
    assert [r["image_id"] for r in read_tsv_features(tmp_path, feature_dim=D)] == [10, 20, 30]


# ---------------------------------------------------------------------------------------- errors

def test_json_errors_name_file_and_entry(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope_questions.json"):
        load_questions_json(tmp_path / "nope_questions.json")
    bad = tmp_path / "broken_questions.json"
    bad.write_text('{"questions": [')
    with pytest.raises(VQAFormatError, match=r"broken_questions.json: invalid JSON at line 1"):
        load_questions_json(bad)
    _write_json(bad, {"question": []})
    with pytest.raises(VQAFormatError, match=r"broken_questions.json: missing 'questions'"):
        load_questions_json(bad)
    _write_json(bad, {"questions": [{"question_id": 1, "image_id": 1, "question": "a?"},
                                    {"question_id": 2, "question": "b?"}]})
    with pytest.raises(VQAFormatError, match=r"broken_questions.json: questions\[1\]: missing 'image_id'"):
        load_questions_json(bad)
    _, a_path = _qa_files(tmp_path, QUESTIONS[:2], [ANSWERS[0], ANSWERS[1][:9]], name="short")
    with pytest.raises(VQAFormatError, match=r"short_annotations.json: annotations\[1\].answers: expected 10 answers, got 9"):
        load_annotations_json(a_path)
    data = json.loads(a_path.read_text())
    del data["annotations"][0]["answers"][3]["answer"]
    _write_json(a_path, data)
    with pytest.raises(VQAFormatError, match=r"annotations\[0\].answers\[3\]: missing 'answer'"):
        load_annotations_json(a_path, num_answers=None)


def test_integrity_errors(tmp_path):
    q_path, a_path = _qa_files(tmp_path, QUESTIONS[:3], ANSWERS[:3])
    qs, anns = load_questions_json(q_path), load_annotations_json(a_path)
    check_integrity(qs, anns, q_path, a_path)
    anns["annotations"][1]["question_id"] = 999
    with pytest.raises(VQAFormatError, match=r"q_questions.json vs q_annotations.json: questions\[1\].question_id=101"):
        check_integrity(qs, anns, q_path, a_path)
    anns["annotations"][1]["question_id"] = 101
    anns["annotations"][2]["image_id"] = 77
    with pytest.raises(VQAFormatError, match=r"questions\[2\].image_id=30 but annotations\[2\].image_id=77"):
        check_integrity(qs, anns, q_path, a_path)
    anns["annotations"][2]["image_id"] = 30
    anns["data_subtype"] = "val2014"
    with pytest.raises(VQAFormatError, match="mismatched data_subtype"):
        check_integrity(qs, anns, q_path, a_path)


def test_hdf5_errors_name_file(tmp_path):
    ids, feats, boxes = _arrays()
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        FeatureStore(tmp_path / "absent.h5")
    with pytest.raises(VQAFormatError, match=r"nobox.h5: missing dataset 'boxes'"):
        FeatureStore(_write_h5(tmp_path / "nobox.h5", ids, feats, boxes, drop="boxes"))
    with pytest.raises(VQAFormatError, match=r"shape.h5: boxes: expected shape \[3, 4, 4\]"):
        FeatureStore(_write_h5(tmp_path / "shape.h5", ids, feats, boxes, override={"boxes": np.zeros((3, 4, 2), np.float32)}))
    with pytest.raises(VQAFormatError, match=r"rank.h5: features: expected shape \[N, D, K\]"):
        FeatureStore(_write_h5(tmp_path / "rank.h5", ids, feats, boxes, override={"features": np.zeros((3, D), np.float32)}))
    with pytest.raises(VQAFormatError, match=r"ids.h5: ids: expected shape \[3\]"):
        FeatureStore(_write_h5(tmp_path / "ids.h5", ids, feats, boxes, override={"ids": np.zeros(2, np.int32)}))
    with pytest.raises(VQAFormatError, match=r"dup.h5: ids: duplicate image id 10"):
        FeatureStore(_write_h5(tmp_path / "dup.h5", ids, feats, boxes, override={"ids": np.asarray([10, 20, 10], np.int32)}))
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(VQAFormatError, match="text.h5: not a readable HDF5 file"):
        FeatureStore(tmp_path / "text.h5")


def test_tsv_errors_name_file_and_line(tmp_path):
    _, feats, boxes = _arrays()
    good = _tsv_line(10, boxes[0, :2], feats[0, :2])
    cases = {
        "fields.tsv": (good + "20\t640\t480\t2\tAAAA\n", r"fields.tsv:2: expected 6 tab-separated fields"),
        "b64.tsv": (good.replace(_b64(feats[0, :2]), "@@not base64@@"),
                    r"b64.tsv:1: field 'features' is not valid base64"),
        "dim.tsv": ("\n" + _tsv_line(10, boxes[0, :2], np.zeros(7, np.float32)),
                    r"dim.tsv:2: features blob has 7 floats, not divisible by feature_dim=5"),
        "count.tsv": (_tsv_line(10, boxes[0, :2], feats[0, :2], num_boxes=3),
                      r"count.tsv:1: num_boxes=3 but 2 boxes and 2 feature vectors"),
        "int.tsv": (good.replace("\t640\t", "\twide\t"), r"int.tsv:1: field 'image_w' is not an integer"),
        "many.tsv": (good + _tsv_line(20, boxes[1], np.concatenate([feats[1], feats[1]])[:5], num_boxes=5)
                     .replace(_b64(boxes[1]), _b64(np.concatenate([boxes[1], boxes[1]])[:5])),
                     r"many.tsv:2: 5 boxes do not fit num_boxes=4"),
    }
    for name, (text, pattern) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(VQAFormatError, match=pattern):
            convert_tsv_to_hdf5(tmp_path / name, tmp_path / "out.h5", num_boxes=K, feature_dim=D)
        assert not (tmp_path / "out.h5").exists()
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # temp file removed
    with pytest.raises(VQAFormatError, match=r"b64.tsv:1"):
        FeatureStore.from_tsv(tmp_path / "b64.tsv", num_boxes=K, feature_dim=D)
    with pytest.raises(FileNotFoundError, match="gone.tsv"):
        list(read_tsv_features(tmp_path / "gone.tsv", feature_dim=D))


def test_question_image_missing_from_features(tmp_path):
    ids, feats, boxes = _arrays()
    h5 = _write_h5(tmp_path / "feats.h5", ids, feats, boxes)
    q_path, a_path = _qa_files(tmp_path, QUESTIONS[:3], ANSWERS[:3], image_ids=[10, 20, 99])
    vocab = build_vocab(q_path, a_path)
    with pytest.raises(VQAFormatError, match=r"q_questions.json: questions\[2\]: image_id 99 not found in the "
                                             r"features file feats.h5"):
        VQADataset(q_path, a_path, h5, vocab)


# ------------------------------------------------------------------------------------- VQADataset

@pytest.fixture()
def small(tmp_path):
    ids, feats, boxes = _arrays()
    h5 = _write_h5(tmp_path / "feats.h5", ids, feats, boxes)
    questions = QUESTIONS + ["Where is the cat?"]
    answers = ANSWERS + [["on mat"] * 10]  # out of the vocabulary below -> not answerable
    q_path, a_path = _qa_files(tmp_path, questions, answers)
    # Vocabulary from the first four questions only ("on mat" is then out of vocabulary); the cut at 8
    # drops "1000", the last seen of the answers given once.
    vq, va = _qa_files(tmp_path, QUESTIONS, ANSWERS, name="vocab")
    vocab = build_vocab(vq, va, max_answers=8)
    assert vocab["answer"] == {"1": 0, "yes": 1, "2": 2, "t shirt": 3, "red": 4, "3": 5, "two": 6, "no": 7}
    return {"h5": h5, "q": q_path, "a": a_path, "vocab": vocab, "feats": feats, "boxes": boxes}


def test_dataset_batch_shapes_and_answer_counts(small):
    ds = VQADataset(small["q"], small["a"], small["h5"], small["vocab"])
    assert len(ds) == 5 and ds.max_question_length == 5 and ds.num_answers == 8
    assert ds.num_tokens == len(small["vocab"]["question"]) + 1
    b = ds.batch([0, 3, 4])
    assert {k: (v.shape, v.dtype) for k, v in b.items()} == {
        "features": ((3, K, D), np.float32), "boxes": ((3, K, 4), np.float32),
        "question": ((3, 5), np.int32), "question_length": ((3,), np.int32),
        "answers": ((3, 8), np.float32), "question_index": ((3,), np.int32)}
    np.testing.assert_array_equal(b["features"][0], small["feats"][0])  # question 0 -> image 10
    np.testing.assert_array_equal(b["boxes"][1], small["boxes"][0])  # question 3 -> image 10
    tok = small["vocab"]["question"]
    assert b["question"][0].tolist() == [tok["how"], tok["many"], tok["dogs"], 0, 0]
    assert b["question_length"].tolist() == [3, 5, 4]
    assert b["question_index"].tolist() == [0, 3, 4]
    ans = small["vocab"]["answer"]
    expected = np.zeros(8, np.float32)
    expected[ans["2"]], expected[ans["3"]], expected[ans["two"]] = 6, 3, 1
    np.testing.assert_array_equal(b["answers"][0], expected)
    expected = np.zeros(8, np.float32)
    expected[ans["t shirt"]], expected[ans["red"]] = 5, 4  # "1,000" -> "1000" is out of vocabulary
    np.testing.assert_array_equal(b["answers"][1], expected)
    assert not b["answers"][2].any()
    assert ds.human_answers[3][-1] == "1,000" and ds.answer_types[0] == "number"


def test_answerable_only_and_fixed_length(small):
    ds = VQADataset(small["q"], small["a"], small["h5"], small["vocab"], answerable_only=True,
                    max_question_length=3, num_boxes=6)
    assert len(ds) == 4 and ds.indices.tolist() == [0, 1, 2, 3]
    b = ds.batch(np.arange(4))
    assert b["question"].shape == (4, 3) and b["question_length"].tolist() == [3, 3, 3, 3]
    assert b["features"].shape == (4, 6, D) and not b["features"][:, K:].any()
    assert (b["answers"].sum(axis=1) > 0).all()
    # A split without annotations (the official dummy_answers): zero answer vectors.
    test = VQADataset(small["q"], None, FeatureStore(small["h5"]), small["vocab"])
    assert len(test) == 5 and not test.batch([0, 1])["answers"].any()
    with pytest.raises(ValueError, match="answerable_only needs annotations"):
        VQADataset(small["q"], None, small["h5"], small["vocab"], answerable_only=True)


def test_train_iterator_determinism_and_resume(small):
    ds = VQADataset(small["q"], small["a"], small["h5"], small["vocab"])  # 5 examples
    a, b = ds.train_iterator(4, seed=3), ds.train_iterator(4, seed=3)
    batches = [next(a) for _ in range(5)]
    for x in batches:
        y = next(b)
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    assert all(x["question"].shape == (4, 5) for x in batches)
    # Each epoch is a permutation; 5 batches of 4 = 4 epochs of 5.
    order = np.concatenate([x["question_index"] for x in batches])
    assert all(sorted(order[5 * e:5 * e + 5].tolist()) == [0, 1, 2, 3, 4] for e in range(4))
    assert a.get_state() == {"epoch": 4, "position": 0}
    other = ds.train_iterator(4, seed=4)
    assert not all(np.array_equal(x["question_index"], next(other)["question_index"]) for x in batches)
    # Resume from a saved state: the next batch is what the uninterrupted iterator gives.
    it = ds.train_iterator(4, seed=3)
    next(it), next(it)
    state = it.get_state()
    assert state == {"epoch": 1, "position": 3}
    expected = [next(it) for _ in range(3)]
    resumed = ds.train_iterator(4, seed=3)
    resumed.set_state(json.loads(json.dumps(state)))
    for x in expected:
        y = next(resumed)
        assert all(np.array_equal(x[k], y[k]) for k in x)
    with pytest.raises(ValueError, match="invalid iterator state"):
        resumed.set_state({"epoch": 0, "position": 5})


def test_train_iterator_reads_only_this_process_rows(small):
    ds = VQADataset(small["q"], small["a"], small["h5"], small["vocab"])  # 5 examples
    single = ds.train_iterator(4, seed=3, process_index=0, process_count=1)
    halves = [ds.train_iterator(4, seed=3, process_index=p, process_count=2) for p in range(2)]
    for _ in range(6):
        whole, parts = next(single), [next(h) for h in halves]
        assert all(p["question"].shape == (2, 5) for p in parts)
        for key in whole:  # process 0's rows then process 1's: the global batch of one process
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
    assert halves[0].get_state() == halves[1].get_state() == single.get_state()
    with pytest.raises(ValueError, match="does not divide"):
        ds.train_iterator(3, process_index=0, process_count=2)


OLD_VQA_CHECKPOINT = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "old_checkpoints", "vqa",
                                  "checkpoints", "2")


def test_train_iterator_resumes_a_state_written_by_the_old_iterator(tmp_path):
    with open(os.path.join(OLD_VQA_CHECKPOINT, "data", "metadata")) as f:
        state = json.load(f)
    with open(os.path.join(OLD_VQA_CHECKPOINT, "config", "metadata")) as f:
        config = json.load(f)
    syn = config["data"]["synthetic_scenes"]
    paths = write_synthetic_vqa(tmp_path, syn["num_train_images"], syn["num_val_images"], seed=syn["seed"],
                                num_boxes=config["data"]["num_boxes"], num_classes=syn["num_classes"],
                                feature_dim=syn["feature_dim"], max_objects=syn["max_objects"],
                                max_duplicates=syn["max_duplicates"])
    ds = VQADataset(paths["train_questions"], paths["train_annotations"], paths["features"], paths["vocab"],
                    answerable_only=True)
    it = ds.train_iterator(config["batch_size"], seed=config["seed"])
    it.set_state(state)
    assert state == {"epoch": 0, "position": 32}  # two steps of 16: what the old VQATrainIterator wrote
    positions = np.random.default_rng([config["seed"], 0]).permutation(len(ds))[32:48]
    np.testing.assert_array_equal(next(it)["question_index"], ds.indices[positions])


def test_eval_iterator_pads_and_masks(small):
    ds = VQADataset(small["q"], small["a"], small["h5"], small["vocab"])
    batches = list(ds.eval_iterator(2))
    assert len(batches) == 3 and all(b["question"].shape == (2, 5) for b in batches)
    assert [b["mask"].tolist() for b in batches] == [[1, 1], [1, 1], [1, 0]]
    assert all(b["mask"].dtype == np.float32 for b in batches)
    assert np.concatenate([b["question_index"] for b in batches]).tolist() == [0, 1, 2, 3, 4, -1]
    assert batches[-1]["features"].shape == (2, K, D)


# ------------------------------------------------------------------------------ synthetic scenes

def test_synthetic_vqa_deterministic_and_counts_correct(tmp_path):
    kw = dict(num_train_images=60, num_val_images=20, num_boxes=16, num_classes=4, feature_dim=32, answer_noise=0.0)
    p1 = write_synthetic_vqa(tmp_path / "a", seed=7, **kw)
    p2 = write_synthetic_vqa(tmp_path / "b", seed=7, **kw)
    p3 = write_synthetic_vqa(tmp_path / "c", seed=8, **kw)
    for key in ("train_questions", "train_annotations", "val_questions", "val_annotations", "vocab"):
        with open(p1[key]) as f1, open(p2[key]) as f2:
            assert f1.read() == f2.read()
    with h5py.File(p1["features"]) as f1, h5py.File(p2["features"]) as f2, h5py.File(p3["features"]) as f3:
        for key in ("features", "boxes", "ids", "widths", "heights"):
            np.testing.assert_array_equal(f1[key][()], f2[key][()])
        assert f1["features"].shape == (80, 32, 16) and f1["boxes"].shape == (80, 4, 16)
        assert not np.array_equal(f1["features"][()], f3["features"][()])

    scenes = np.load(p1["scenes"])
    names = class_names(4)
    assert scenes["class_names"].tolist() == names == ["red ball", "blue cube", "green cylinder", "yellow cone"]
    pclass, pobj, counts = scenes["proposal_class"], scenes["proposal_object"], scenes["counts"]
    store = FeatureStore(p1["features"])
    recount = np.zeros_like(counts)
    for i, image_id in enumerate(scenes["image_ids"].tolist()):
        for c in range(4):
            recount[i, c] = len(set(pobj[i][pclass[i] == c].tolist()))  # distinct objects behind the proposals
        feats, boxes = store.get(image_id)
        valid = pclass[i] != -2
        assert not feats[~valid].any() and not boxes[~valid].any()  # zero padding
        assert (boxes[valid, 2] > boxes[valid, 0]).all() and (boxes[valid] <= 100).all()
        nearest = np.argmax(feats[valid] @ scenes["embeddings"].T, axis=1)  # features = embedding + noise
        np.testing.assert_array_equal(nearest, np.where(pclass[i][valid] == -1, 4, pclass[i][valid]))
    np.testing.assert_array_equal(recount, counts)
    assert (counts.sum(axis=1) > 0).any() and (pobj >= 0).sum() > counts.sum()  # duplicates exist

    id_to_row = {im: i for i, im in enumerate(scenes["image_ids"].tolist())}
    for split in ("train", "val"):
        qs = load_questions_json(p1[f"{split}_questions"])["questions"]
        anns = load_annotations_json(p1[f"{split}_annotations"])["annotations"]
        n_count = 0
        for q, a in zip(qs, anns):
            words = q["question"][:-1].split(" ")
            row = id_to_row[q["image_id"]]
            if q["question"].startswith("how many"):
                c = names.index(" ".join(words[2:4])[:-1])  # "how many red balls are there"
                assert [x["answer"] for x in a["answers"]] == [str(counts[row, c])] * 10
                assert a["answer_type"] == "number"
                n_count += 1
            else:
                c = names.index(" ".join(words[3:5]))  # "is there a red ball"
                assert [x["answer"] for x in a["answers"]] == ["yes" if counts[row, c] else "no"] * 10
                assert a["answer_type"] == "yes/no"
        assert n_count == 4 * (60 if split == "train" else 20)

    # The real readers load it.
    ds = VQADataset(p1["train_questions"], p1["train_annotations"], p1["features"], p1["vocab"], answerable_only=True)
    b = next(ds.train_iterator(8, seed=0))
    assert b["features"].shape == (8, 16, 32) and b["answers"].sum(axis=1).tolist() == [10.0] * 8


def test_synthetic_answer_noise(tmp_path):
    p = write_synthetic_vqa(tmp_path, 50, 10, seed=1, answer_noise=0.3)
    anns = load_annotations_json(p["train_annotations"])["annotations"]
    disagree = [a for a in anns if len({x["answer"] for x in a["answers"]}) > 1]
    assert disagree
    for a in anns:
        if a["answer_type"] == "number":
            true = int(a["multiple_choice_answer"])
            assert all(abs(int(x["answer"]) - true) == 1 or x["answer"] == str(true) for x in a["answers"])
