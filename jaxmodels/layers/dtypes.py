"""Computation dtypes by the names configs use for them (``model.dtype = "bfloat16"``)."""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp

# The computation dtypes the models support; parameters stay float32 in all of them.
DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def dtype_from_name(name: str, field: str = "model.dtype") -> Any:
    """The jnp dtype called ``name`` in ``DTYPES``; a ``ValueError`` naming the config ``field`` otherwise."""
    if not isinstance(name, str) or name not in DTYPES:
        raise ValueError(f"{field} must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]
