"""jaxmodels.projects.gan_dissection.report end to end on a small randomly initialised generator and segmenter."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels.projects.gan_dissection.scenes import CLASSES
from jaxmodels.projects.gan_dissection import report
from jaxmodels.gan.progan import Generator
from jaxmodels.gan.segmenter import Segmenter


@pytest.fixture(scope="module")
def models():
    generator = Generator(resolution=16, latent_dim=8, fmap_base=32, fmap_max=8)
    g_variables = generator.init(jax.random.PRNGKey(0), jnp.zeros((1, 8)))
    segmenter = Segmenter(num_classes=len(CLASSES), widths=(4, 8))
    s_variables = segmenter.init(jax.random.PRNGKey(1), jnp.zeros((1, 16, 16, 3)))
    return generator, g_variables, segmenter, s_variables


def test_bad_layer_is_named(models):
    generator, g_variables, segmenter, s_variables = models
    with pytest.raises(ValueError, match="layer='layer9'.*layers"):
        report.GanFunctions(generator, g_variables, segmenter, s_variables, "layer9")


def test_report_writes_every_part(models, tmp_path):
    generator, g_variables, segmenter, s_variables = models
    fns = report.GanFunctions(generator, g_variables, segmenter, s_variables, "layer4")
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (32, 8)))
    common = CLASSES[int(np.bincount(fns.labels(fns.images(z)).ravel(), minlength=len(CLASSES)).argmax())]
    options = report.ReportOptions(layer="layer4", num_samples=64, top_k=16, threshold_seed=None, batch_size=32,
                                   unit_figures=2, figure_samples=3, concepts=(common,), search_samples=64,
                                   train_samples=8, eval_samples=4, epochs=1, ablation_sizes=(1, 2, 4),
                                   ablation_samples=16, num_random=2, insertion_units=2, insertion_samples=3,
                                   fid_samples=32,
                                   real_samples=32, num_artifact=2)
    reals = np.asarray(jax.random.uniform(jax.random.PRNGKey(4), (32, 16, 16, 3), minval=-1, maxval=1))
    out = tmp_path / "report"
    summary = report.write_report(generator, g_variables, segmenter, s_variables, str(out), class_names=CLASSES,
                                  real_images=reals, options=options, log=lambda *_: None)
    for name in ("report.md", "dissection.json", "units.md", "concepts.md", "ablation.json", "ablation.png",
                 f"insertion_{common}.png", "artifacts.json", "summary.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp*"))  # written atomically
    assert summary["num_units"] == 8 and summary["layer"] == "layer4"
    curve = summary["ablation"][common]
    assert curve["sizes"] == [1, 2, 4] and all(np.isfinite(v) and v <= 1.0 + 1e-9 for v in curve["top"])
    insertion = json.loads((out / "ablation.json").read_text())["insertions"][0]
    assert insertion["window"] == 2 and insertion["grid"] == [8, 8] and len(insertion["gain_by_location"]) == 49
    assert -1.0 <= insertion["mean_gain"] <= insertion["best_location_gain"] <= 1.0
    artifacts = json.loads((out / "artifacts.json").read_text())
    assert len(artifacts["unit_fid"]) == 8 and len(artifacts["units"]) == 2
    # The worst units by per-unit FID are the ones ablated.
    assert sorted(artifacts["units"]) == sorted(np.argsort(-np.asarray(artifacts["unit_fid"]))[:2].tolist())
    assert np.isfinite([artifacts["fid_original"], artifacts["fid_ablated"], artifacts["fid_random"]]).all()
    text = (out / "report.md").read_text()
    assert "## Ablation" in text and "## Artifact units" in text and "ablation.png" in text
