"""train/bert_wwm_pretrain.py and train/bert_wwm_finetune.py on their tiny variants (CPU).

One pretraining run through the binary (6 steps on 2 devices, resumed to 9 on 1) is what every fine-tuning test
starts from; the sentiment fine-tuning runs through its binary (``--config.init.workdir``), the NER and span
extraction ones in-process through the paper's ``finetune.train_and_evaluate`` (no fresh interpreter each).
"""
import json
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmodels
from jaxmodels.projects.bert_wwm import finetune
from jaxmodels.text.tokenizers import WordPieceTokenizer
from vit_runs import REPO, logged, run_binary

sys.path.insert(0, os.path.join(REPO, "configs"))
import bert_wwm_finetune as finetune_configs  # noqa: E402  (configs/bert_wwm_finetune.py)

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


def _check_finetuned(workdir, key):
    metrics = json.loads((workdir / "results.json").read_text())
    assert 0.0 <= metrics["eval"][key] <= 100.0
    _, _, config = jaxmodels.load(workdir)
    assert config.model.hidden_size == 64  # the pretrained run's architecture, not the config's default


def test_finetune_binary_from_pretrained_run(pretrained, tmp_path):
    workdir = tmp_path / "tiny_sentiment"
    proc = run_binary("bert_wwm_finetune", "--config=configs/bert_wwm_finetune.py:tiny_sentiment",
                      f"--workdir={workdir}", f"--config.init.workdir={pretrained}", num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_finetuned(workdir, "accuracy")


def test_finetune_ner_from_pretrained_run(pretrained, tmp_path):
    config = finetune_configs.get_config("tiny_ner")
    config.init.workdir = str(pretrained)
    config.mesh.data = 2
    finetune.train_and_evaluate(config, str(tmp_path))
    _check_finetuned(tmp_path, "f1")


def test_finetune_span_extraction_on_written_cmrc_files(tmp_path):
    config = finetune_configs.get_config("tiny_cmrc")
    config.mesh.data = 1
    finetune.train_and_evaluate(config, str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"em", "f1"} <= set(results["eval"]) and (tmp_path / "predictions.json").exists()
