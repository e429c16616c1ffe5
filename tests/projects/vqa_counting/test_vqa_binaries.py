"""train/vqa_counting.py (tiny, synthetic data through the real VQA v2 readers) and train/vqa_counting_toy.py (tiny)."""
import json

import jax
import numpy as np
import pytest

import jaxmodels
from vit_runs import logged, run_binary

pytestmark = pytest.mark.slow


def test_vqa_tiny_trains_evaluates_resumes_and_loads(tmp_path):
    workdir = tmp_path / "vqa"
    proc = run_binary("vqa_counting", "--config=configs/vqa_counting.py:tiny", f"--workdir={workdir}", num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval @ step 6" in proc.stdout and "vqa_accuracy/number" in proc.stdout
    for name in ("vocab.json", "data/features-trainval.h5", "eval/predictions_6.json", "metrics.jsonl", "config.json"):
        assert (workdir / name).exists(), name
    predictions = json.loads((workdir / "eval" / "predictions_6.json").read_text())
    questions = json.loads((workdir / "data" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    assert [p["question_id"] for p in predictions] == [q["question_id"] for q in questions]

    resumed = run_binary("vqa_counting", "--config=configs/vqa_counting.py:tiny", f"--workdir={workdir}", "--config.num_train_steps=9",
                         num_devices=1, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout and "Finished at step 9" in resumed.stdout
    assert sorted(logged(workdir)) == [3, 6, 9]

    model, variables, config = jaxmodels.load(workdir)
    vocab = json.loads((workdir / "vocab.json").read_text())
    assert config.model.name == "vqa_counting" and "batch_stats" in variables
    assert config.model.num_answers == len(vocab["answer"]) and config.model.vocab_size == len(vocab["question"]) + 1
    k, d = config.data.num_boxes, config.data.synthetic_scenes.feature_dim
    logits = model.apply(variables, np.ones((2, k, d), np.float32), np.tile([[0, 0, 10, 10]], (2, k, 1)).astype(np.float32),
                         np.ones((2, 4), np.int32), np.array([4, 2], np.int32))
    assert logits.shape == (2, len(vocab["answer"])) and np.all(np.isfinite(jax.device_get(logits)))


def test_vqa_missing_data_path_is_named(tmp_path):
    proc = run_binary("vqa_counting", "--config=configs/vqa_counting.py:paper", f"--workdir={tmp_path / 'x'}", num_devices=1, timeout=120)
    assert proc.returncode != 0 and "config.data.features" in proc.stderr


def test_counting_toy_tiny_writes_figures_and_resumes(tmp_path):
    workdir = tmp_path / "toy"
    proc = run_binary("vqa_counting_toy", "--config=configs/vqa_counting_toy.py:tiny", f"--workdir={workdir}",
                      num_devices=1, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("results.json", "accuracy_curves.png", "accuracy_table.md", "learned_functions.png", "metrics.jsonl"):
        assert (workdir / name).exists(), name
    points = json.loads((workdir / "results.json").read_text())["points"]
    assert len(points) == 12  # easy/hard x side/noise x 3 values
    assert all(0.0 <= p["counter"] <= 1.0 and 0.0 <= p["baseline"] <= 1.0 for p in points.values())
    assert all(np.array(p["f_weights"]).shape == (8, 16) for p in points.values())
    table = (workdir / "accuracy_table.md").read_text()
    assert "| counter |" in table and "| baseline |" in table and "**hard** (q = 0.5)" in table
    # rerun: everything is done, nothing retrains
    again = run_binary("vqa_counting_toy", "--config=configs/vqa_counting_toy.py:tiny", f"--workdir={workdir}",
                       num_devices=1, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming: 12 of 12 sweep points already" in again.stdout and "s/point" not in again.stdout
