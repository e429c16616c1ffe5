"""``benchmarks/counting_step.py`` at a small batch: it checks that both sides compute the same loss,
times them and prints the ratio table."""
import importlib.util
import pathlib
import sys

import pytest

_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "counting_step.py"


def test_small_counting_benchmark_prints_the_table(capsys, tmp_path):
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("counting_step", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["counting_step"] = module
    spec.loader.exec_module(module)
    # one torch thread: with the other test worker busy, torch's second thread mostly waits (CI time)
    module.main(["--repeats", "2", "--warmup", "1", "--batch-scale", "0.03", "--threads", "1",
                 "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| workload")]
    assert [row.split("|")[1].strip() for row in rows] == ["toy", "vqa"], out
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) > 0 and float(cells[4]) > 0
    assert "load average" in out and (tmp_path / "r.json").exists()
