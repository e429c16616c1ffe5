"""Test set-up: 8 fake CPU devices so mesh/sharding tests run on one CPU host.

XLA_FLAGS must be set before JAX is imported anywhere, hence at the top of conftest.
"""
import importlib.util
import os
import shutil
import tempfile

# XLA's CPU backend at optimisation level 0: the suite's time goes into compiling many small programs
# (level 0 halves it, e.g. tests/projects/diffusion/test_diffusion_pipeline.py 151 s -> 81 s) rather than running
# them; numerics are compared with tolerances or with runs under the same flags.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# One persistent XLA compilation cache per pytest run, shared by the xdist workers and inherited by
# every binary and notebook kernel a test starts: the SIGKILL/SIGTERM/resume tests run one config
# several times, and each repeat then loads its executables instead of recompiling (CI time).
# Entries are keyed on the HLO, the flags and the devices, so a hit is the same program.
# The first conftest to run (the xdist controller, before it starts the workers) makes the directory
# and removes it at the end; the workers inherit it through the environment.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxmodels-xla-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
if importlib.util.find_spec("filelock") is not None:  # a size bound turns on the cache's file lock
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))

import jax  # noqa: E402

assert jax.device_count() == 8, "conftest must run before anything imports jax"


def pytest_sessionfinish(session):
    if _OWN_CACHE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
