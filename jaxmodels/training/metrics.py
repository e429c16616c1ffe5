"""Metric writers: TensorBoard event files (tensorboardX), ``metrics.jsonl`` and the console.

Only process 0 writes; on other processes every method is a no-op. The console (stdout) carries what
a binary shows its user: the progress line, progress notes of long runs and the end-of-run summary;
diagnostics go to absl logging instead.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import sys
import time
from typing import Mapping

import jax
import numpy as np


def _to_float(value) -> float:
    return float(np.asarray(value))


class MetricWriter:
    """Writes scalars to ``<workdir>/tensorboard/`` and appends them to ``<workdir>/metrics.jsonl``."""

    def __init__(self, workdir: str, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        self._jsonl_path = os.path.join(workdir, "metrics.jsonl")
        if self.enabled:
            from tensorboardX import SummaryWriter  # imported lazily: only process 0 writes
            os.makedirs(workdir, exist_ok=True)
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        values = {name: _to_float(value) for name, value in scalars.items()}
        for name, value in values.items():
            self._tb.add_scalar(name, value, step)
        record = {"step": int(step), **{k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}}
        with open(self._jsonl_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class ProgressLine:
    """Console progress: ``step 120/1000 | loss 0.4321 | 35.2 steps/s | ETA 0:00:25``."""

    def __init__(self, total_steps: int, first_step: int = 0, *, enabled: bool | None = None, stream=None):
        self.total_steps = total_steps
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.stream = stream or sys.stdout
        self._last_step, self._last_time = first_step, time.perf_counter()

    def steps_per_second(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        return rate

    def line(self, step: int, scalars: Mapping[str, float], steps_per_second: float) -> str:
        parts = [f"step {step}/{self.total_steps}"]
        names = sorted(scalars, key=lambda name: (name != "loss", name))  # the loss first
        parts += [f"{name} {_to_float(scalars[name]):.4g}" for name in names]
        remaining = (self.total_steps - step) / steps_per_second if steps_per_second > 0 else float("inf")
        eta = str(datetime.timedelta(seconds=round(remaining))) if math.isfinite(remaining) else "?"
        parts += [f"{steps_per_second:.2f} steps/s", f"ETA {eta}"]
        return " | ".join(parts)

    def print(self, text: str) -> None:
        if self.enabled:
            _write_line(self.stream, text)


def console(text: str) -> None:
    """Writes ``text`` as lines of the binary's console output (stdout), on process 0 only.

    For what the user of a binary reads while it runs and when it ends; a trailing newline is added
    unless ``text`` already ends with one.
    """
    if jax.process_index() == 0:
        _write_line(sys.stdout, text)


def _write_line(stream, text: str) -> None:
    stream.write(text if text.endswith("\n") else text + "\n")
    stream.flush()
