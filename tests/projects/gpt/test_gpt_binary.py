"""train/gpt.py: the tiny variant end to end (CPU): metrics, sample text, tokenizer files, load and generate."""
import jax.numpy as jnp
import pytest

import jaxmodels
from jaxmodels.text.generation import generate
from jaxmodels.text.tokenizers import ByteLevelBPETokenizer
from vit_runs import logged, run_binary

pytestmark = pytest.mark.slow


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
