"""Shared helpers for tests that train the tiny ViT config (importable: tests/ is on sys.path)."""
import json
import os
import subprocess
import sys

import ml_collections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "configs"))

import vit as vit_configs  # noqa: E402  (configs/vit.py)


def tiny_config(**overrides) -> ml_collections.ConfigDict:
    config = vit_configs.get_config("tiny")
    config.update_from_flattened_dict(overrides)
    return config


def logged(workdir, key="train/loss"):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return {r["step"]: r[key] for r in records if key in r}


# XLA's CPU backend at optimisation level 0 compiles the tiny test models' programs ~20% faster; the
# binaries' outputs are still compared only with runs under the same flags or with tolerances.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0"


def binary_env(num_devices: int = 8, fast_compile: bool = True) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    if fast_compile:  # off for the few runs whose time goes into executing many steps, not compiling
        env["XLA_FLAGS"] += " " + FAST_COMPILE_FLAGS
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run_binary(name: str, *args: str, num_devices: int = 8, timeout: int = 300, fast_compile: bool = True,
               **popen):
    """Runs ``train/<name>.py`` with ``args`` in a fresh interpreter; returns the CompletedProcess."""
    command = [sys.executable, os.path.join(REPO, "train", f"{name}.py"), *args]
    popen.setdefault("cwd", REPO)
    return subprocess.run(command, env=binary_env(num_devices, fast_compile), capture_output=True,
                          text=True, timeout=timeout, **popen)
