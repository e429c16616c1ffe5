"""train/gan_dissection_dissect.py end to end on the tiny checkpoints of tests/fixtures/old_checkpoints (CPU).

The tiny variant with the layer overridden: the report folder holds every file with finite numbers, and
its top-activating samples are those of the fixture generator's own units at that layer, recomputed here.
"""
import json
import os

import jax
import numpy as np
import pytest

import jaxmodels
from jaxmodels.projects.gan_dissection import dissection, report
from vit_runs import REPO, run_binary

pytestmark = pytest.mark.slow

FIXTURES = os.path.join(REPO, "tests", "fixtures", "old_checkpoints")
GAN, SEGMENTER = os.path.join(FIXTURES, "gan"), os.path.join(FIXTURES, "segmenter")


def _all_finite(value) -> bool:
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return not isinstance(value, float) or np.isfinite(value)


def test_tiny_dissection_report(tmp_path):
    out = tmp_path / "dissection"
    proc = run_binary("gan_dissection_dissect", "--config=configs/gan_dissection_dissect.py:tiny",
                      f"--config.gan_workdir={GAN}", f"--config.segmenter_workdir={SEGMENTER}",
                      "--config.report.layer=layer5", f"--workdir={out}", num_devices=1, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("report.md", "summary.json", "dissection.json", "units.md", "concepts.md", "ablation.json",
                 "artifacts.json", "config.json"):
        assert (out / name).is_file(), name
    assert not os.path.exists(os.path.join(GAN, "dissection"))  # the report goes to --workdir only
    summary, result, artifacts = (json.loads((out / name).read_text())
                                  for name in ("summary.json", "dissection.json", "artifacts.json"))
    assert _all_finite(summary) and _all_finite(artifacts) and _all_finite(result["top_values"])
    config = json.loads((out / "config.json").read_text())
    assert config["gan_workdir"] == GAN and config["report"]["layer"] == "layer5"

    generator, g_variables, _ = jaxmodels.load(GAN)
    segmenter, s_variables, _ = jaxmodels.load(SEGMENTER)
    num_units = generator.feature_shapes()["layer5"][-1]
    assert summary["layer"] == "layer5" and summary["num_units"] == num_units == 4 and summary["num_samples"] == 64
    assert summary["interpretable_units"] == sum(result["interpretable"])
    assert f"Interpretable units: {summary['interpretable_units']}/{num_units}" in proc.stdout
    assert f"Report: {out / 'report.md'}" in proc.stdout
    # The worst units by per-unit FID are the ones ablated.
    assert sorted(artifacts["units"]) == sorted(np.argsort(-np.asarray(artifacts["unit_fid"]))[:2].tolist())

    # Top samples per unit: the 16 of the 64 dissection latents with the largest spatial-max activation.
    fns = report.GanFunctions(generator, g_variables, segmenter, s_variables, "layer5")
    z = dissection.sample_z(1, np.arange(64), fns.latent_dim)
    _, maps = jax.jit(fns.generate_fn)(z)  # [64, h, w, U]
    unit_max = np.asarray(maps).max(axis=(1, 2))  # [64, U]
    top_values, top_indices = np.asarray(result["top_values"]), np.asarray(result["top_indices"])
    assert top_values.shape == top_indices.shape == (num_units, 16)
    expected = -np.sort(-unit_max, axis=0)[:16].T  # [U, 16]
    np.testing.assert_allclose(top_values, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(unit_max.T, top_indices, axis=1), top_values, rtol=1e-4, atol=1e-5)
