"""train/gan_dissection_segmenter.py end to end on the tiny config (CPU): results.json agrees with the loaded checkpoint."""
import json

import jax
import numpy as np
import pytest

import jaxmodels
from jaxmodels.projects.gan_dissection import scenes
from jaxmodels.gan.segmenter import Segmenter
from vit_runs import logged, run_binary

pytestmark = pytest.mark.slow


def test_tiny_run_writes_results_and_loads(tmp_path):
    workdir = tmp_path / "run"
    proc = run_binary("gan_dissection_segmenter", "--config=configs/gan_dissection_segmenter.py:tiny", f"--workdir={workdir}", num_devices=2,
                      timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Finished at step 8" in proc.stdout and sorted(logged(workdir)) == [4, 8]
    results = json.loads((workdir / "results.json").read_text())
    assert results["step"] == 8 and results["classes"] == list(scenes.CLASSES)
    assert set(results["iou"]) == set(scenes.CLASSES) and 0.0 <= results["pixel_accuracy"] <= 1.0

    model, variables, config = jaxmodels.load(workdir)
    assert isinstance(model, Segmenter) and config.model.name == "scene_segmenter"
    # The loaded segmenter reproduces the reported held-out pixel accuracy and pixel frequencies.
    size, num_test = config.data.image_size, config.data.num_test
    images, segmentation = scenes.render_scenes(scenes.TEST_INDEX_OFFSET + np.arange(num_test), config.data.seed,
                                                size)
    logits = jax.jit(model.apply)(variables, images.astype(np.float32) / 127.5 - 1.0)
    accuracy = float(np.mean(np.argmax(logits, -1) == segmentation))
    assert accuracy == pytest.approx(results["pixel_accuracy"], abs=1e-3)  # argmax ties may flip under other XLA flags
    frequency = np.bincount(segmentation.ravel(), minlength=len(scenes.CLASSES)) / segmentation.size
    np.testing.assert_allclose([results["pixel_frequency"][c] for c in scenes.CLASSES], frequency, atol=1e-6)
