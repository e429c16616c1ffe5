"""Checkpoints written by the main before the layout change (tests/fixtures/old_checkpoints) still load.

Each was written by one binary's tiny variant on commit 839ea59; ``expected.json`` records what
``jaxmodels.load`` gave there. Today's code must restore the same variables and, for the models with a
probe, give the same outputs on the same inputs.
"""
import json
import os
import sys

import jax
import numpy as np
import pytest

import jaxmodels

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "old_checkpoints")
sys.path.insert(0, FIXTURES)
from probe import probe  # noqa: E402

with open(os.path.join(FIXTURES, "expected.json")) as f:
    EXPECTED = json.load(f)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_old_checkpoint_loads_with_the_same_variables_and_outputs(name):
    expected = EXPECTED[name]
    model, variables, config = jaxmodels.load(os.path.join(FIXTURES, name))
    assert config.model.name == expected["model_name"]
    leaves = {jax.tree_util.keystr(k): [list(v.shape), float(np.asarray(v, np.float64).sum())]
              for k, v in jax.tree_util.tree_leaves_with_path(variables)}
    assert sorted(leaves) == sorted(expected["variables"])
    for key, (shape, total) in expected["variables"].items():
        assert leaves[key][0] == shape, key
        np.testing.assert_allclose(leaves[key][1], total, rtol=1e-6, atol=1e-6, err_msg=key)
    out = probe(name, model, variables, config)
    if "probe" in expected:
        got = {jax.tree_util.keystr(k): np.asarray(v, np.float64).ravel()[:64]
               for k, v in jax.tree_util.tree_leaves_with_path(out)}
        assert sorted(got) == sorted(expected["probe"])
        for key, values in expected["probe"].items():
            np.testing.assert_allclose(got[key], values, atol=2e-5, rtol=1e-4, err_msg=f"{name}{key}")
