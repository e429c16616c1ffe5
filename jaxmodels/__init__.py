"""jaxmodels: JAX/Flax reimplementations of 18 ML systems, with one sharded training loop.

``model, variables, config = jaxmodels.load(run_dir)`` loads any checkpoint a binary wrote.
"""
from jaxmodels.loading import CheckpointNotFoundError, load

__version__ = "0.1.0"
__all__ = ["load", "CheckpointNotFoundError", "__version__"]
