"""jaxmodels: JAX/Flax reimplementations of 18 ML systems, with one sharded training loop.

``model, variables, config = jaxmodels.load(run_dir)`` loads any checkpoint a binary wrote.
``import jaxmodels`` imports nothing else: ``load`` (and the family that a checkpoint's
``config.model.name`` names) are imported on first use.
"""
__version__ = "0.1.0"
__all__ = ["load", "CheckpointNotFoundError", "__version__"]


def __getattr__(name):
    if name in ("load", "CheckpointNotFoundError"):
        from jaxmodels import loading

        return getattr(loading, name)
    raise AttributeError(f"module 'jaxmodels' has no attribute {name!r}")
