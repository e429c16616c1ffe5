"""``benchmarks/diffusion_step.py --small`` runs end to end in a subprocess and prints its table.

The subprocess keeps the benchmark's own XLA set-up (no 8 fake devices from ``tests/conftest.py``) and
times a small U-Net (ch 32, two levels, 16x16) for one repeat, ours against diffusers' ``UNet2DModel``.
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "diffusion_step.py"


def test_small_benchmark_prints_the_table():
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not conftest's 8 fake devices
    # one torch thread and LLVM optimisations off: the smoke run takes ~30 s instead of ~80 s
    result = subprocess.run([sys.executable, str(_SCRIPT), "--small", "--repeats", "1", "--warmup", "1", "--threads", "1",
                             "--xla-flags=--xla_backend_optimization_level=0"],
                            capture_output=True, text=True, timeout=240, env=env,
                            cwd=pathlib.Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| workload")]
    assert [row.split("|")[1].strip() for row in rows] == ["train", "sample"], result.stdout
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        ours, theirs, ratio = float(cells[3]), float(re.match(r"[\d.]+", cells[4]).group()), float(cells[5])
        assert ours > 0 and theirs > 0 and ratio > 0
        assert "small (0.7M, 16px)" in cells[1]
    assert "load average" in result.stdout and "diffusers 0.42.1" in result.stdout
