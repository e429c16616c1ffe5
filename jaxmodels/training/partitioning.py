"""Logical axis names and the rules that map them onto the device mesh.

Every parameter in jaxmodels is created with ``nn.with_logical_partitioning`` using the *parameter*
names below, and activations are constrained with ``nn.with_logical_constraint`` using the
``act_*`` names. One rule table then shards every model: data parallelism over ``data``,
ZeRO-3 style parameter sharding over ``fsdp``, tensor parallelism over ``model``.

Parameter axes:
  embed    model width (d_model); sharded over ``fsdp``
  mlp      hidden width of feed-forward blocks; sharded over ``model``
  heads    attention heads; sharded over ``model``
  kv       per-head feature dimension; replicated
  vocab    token vocabulary; sharded over ``model``
  classes  classifier outputs; replicated
  (any other name, e.g. ``patch``, ``channels``, ``seq``, ``norm``: replicated)

Activation axes:
  act_batch  the batch; sharded over ``data`` and ``fsdp``
  act_seq    tokens / positions; replicated
  act_embed  model width; replicated (FSDP gathers weights, not activations)
  act_mlp    feed-forward hidden; sharded over ``model``
  act_heads  attention heads; sharded over ``model``
  act_vocab  output logits over the vocabulary; sharded over ``model``
"""
from __future__ import annotations

MESH_AXES = ("data", "fsdp", "model")

LOGICAL_AXIS_RULES: tuple[tuple[str, object], ...] = (
    # parameters
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("vocab", "model"),
    ("classes", None),
    # activations
    ("act_batch", ("data", "fsdp")),
    ("act_seq", None),
    ("act_embed", None),
    ("act_mlp", "model"),
    ("act_heads", "model"),
    ("act_kv", None),
    ("act_vocab", "model"),
)
