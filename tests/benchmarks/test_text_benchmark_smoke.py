"""``benchmarks/text_step.py --small`` runs end to end in a subprocess and prints its table.

Tiny BERT/GPT-2 sizes, one repeat: the script's two cases, ours against ``transformers``, with
positive rates and a ratio in every row (the numbers themselves are for the README run).
"""
import os
import pathlib
import subprocess
import sys

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[2]


def test_small_text_benchmark_prints_the_table():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not conftest's 8 fake devices
    result = subprocess.run([sys.executable, str(_REPO / "benchmarks" / "text_step.py"), "--small", "--repeats", "1",
                             "--warmup", "1", "--threads", "1", "--new-tokens", "8", "--prompt", "8", "--seq", "32"],
                            capture_output=True, text=True, timeout=300, env=env, cwd=_REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| case")]
    assert [row.split("|")[1].strip() for row in rows] == ["bert_mlm", "bert_mlm_full", "gpt2_generate"], result.stdout
    for row in rows:
        ours, theirs, ratio = (float(c) for c in row.strip("|").split("|")[2:5])
        assert ours > 0 and theirs > 0 and ratio > 0
