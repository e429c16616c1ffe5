"""Test set-up: 8 fake CPU devices so mesh/sharding tests run on one CPU host.

XLA_FLAGS must be set before JAX is imported anywhere, hence at the top of conftest.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

assert jax.device_count() == 8, "conftest must run before anything imports jax"
