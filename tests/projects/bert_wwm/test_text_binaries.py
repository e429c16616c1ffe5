"""train/bert_wwm_pretrain.py, train/bert_wwm_finetune.py and train/gpt.py: tiny variants end to end (CPU)."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodels
from jaxmodels.text.generation import generate
from jaxmodels.text.tokenizers import ByteLevelBPETokenizer, WordPieceTokenizer
from vit_runs import logged, run_binary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny BERT pretrained with whole word masking on the offline corpus (6 steps, then resumed to 9)."""
    workdir = tmp_path_factory.mktemp("bert") / "pretrain"
    proc = run_binary("bert_wwm_pretrain", "--config=configs/bert_wwm_pretrain.py:tiny", f"--workdir={workdir}",
                      num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval @ step 6" in proc.stdout
    resumed = run_binary("bert_wwm_pretrain", "--config=configs/bert_wwm_pretrain.py:tiny", f"--workdir={workdir}",
                         "--config.num_train_steps=9", num_devices=1, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout and "Finished at step 9" in resumed.stdout
    return workdir


def test_pretraining_run_writes_vocab_metrics_and_loads(pretrained):
    assert sorted(logged(pretrained)) == [3, 6, 9]
    assert np.isfinite(logged(pretrained, "eval/mlm_loss")[9])
    tokenizer = WordPieceTokenizer.from_file(pretrained / "vocab.txt")
    model, variables, config = jaxmodels.load(pretrained)
    assert config.model.vocab_size == tokenizer.vocab_size and config.data.segmenter == "jieba"
    enc = tokenizer.encode("中国人民")
    ids = jnp.asarray([enc["input_ids"]])
    out = model.apply(variables, ids, jnp.asarray([enc["token_type_ids"]]), jnp.asarray([enc["attention_mask"]]))
    assert out["mlm_logits"].shape == (1, ids.shape[1], tokenizer.vocab_size)
    assert out["nsp_logits"].shape == (1, 2)


@pytest.mark.parametrize("variant", ["tiny_sentiment", "tiny_ner"])
def test_finetune_from_pretrained_run(pretrained, tmp_path, variant):
    workdir = tmp_path / variant
    proc = run_binary("bert_wwm_finetune", f"--config=configs/bert_wwm_finetune.py:{variant}", f"--workdir={workdir}",
                      f"--config.init.workdir={pretrained}", num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((workdir / "results.json").read_text())
    key = "accuracy" if variant == "tiny_sentiment" else "f1"
    assert 0.0 <= metrics["eval"][key] <= 100.0
    _, _, config = jaxmodels.load(workdir)
    assert config.model.hidden_size == 64  # the pretrained run's architecture, not the config's default


def test_finetune_span_extraction_on_written_cmrc_files(tmp_path):
    workdir = tmp_path / "cmrc"
    proc = run_binary("bert_wwm_finetune", "--config=configs/bert_wwm_finetune.py:tiny_cmrc", f"--workdir={workdir}",
                      num_devices=1, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert {"em", "f1"} <= set(results["eval"]) and (workdir / "predictions.json").exists()


def test_gpt_run_samples_and_generates(tmp_path):
    workdir = tmp_path / "gpt"
    proc = run_binary("gpt", "--config=configs/gpt.py:tiny", f"--workdir={workdir}", num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(logged(workdir)) == [3, 6]
    assert (workdir / "samples" / "step_6.txt").read_text(encoding="utf-8").count("\n") == 4
    tokenizer = ByteLevelBPETokenizer.from_files(workdir / "tokenizer" / "vocab.json",
                                                 workdir / "tokenizer" / "merges.txt")
    model, variables, config = jaxmodels.load(workdir)
    assert config.model.vocab_size == tokenizer.vocab_size
    prompt = jnp.asarray([tokenizer.encode("人民")])
    out = generate(model, variables["params"], prompt, max_new_tokens=5, temperature=0.0)
    assert out["tokens"].shape == (1, 5)
