r"""GAN Dissection of a trained generator: one command from two checkpoints to a report folder.

    python train/gan_dissection_dissect.py --gan=runs/gan_scenes --segmenter=runs/segmenter_scenes \
        --out=runs/gan_scenes/dissection --layer=layer4 --num_samples=10000

Loads the generator (EMA weights) and the scene segmenter with ``jaxmodels.load``, then (Bau et al.,
ICLR 2019; ``jaxmodels.projects.gan_dissection.report``): dissects ``--layer`` (IQR thresholds, IoU per unit and concept,
interpretable units), draws each top unit's top-activating samples with its mask, runs the relaxed
unit-set search per concept and the ablation curves (top-n units vs n random units), inserts the top
units into samples that lack the concept, ranks units by per-unit FID and ablates the worst ones.
Everything is written under ``--out`` (report.md links the figures). Real images for the FID reference
come from the GAN run's own data config (its eval split).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from absl import app, flags, logging  # noqa: E402

_GAN = flags.DEFINE_string("gan", None, "GAN run directory (or checkpoint) written by train/gan_dissection.py.")
_SEGMENTER = flags.DEFINE_string("segmenter", None, "Segmenter run directory written by train/gan_dissection_segmenter.py.")
_OUT = flags.DEFINE_string("out", None, "Report folder to write (default <gan>/dissection).")
_LAYER = flags.DEFINE_string("layer", "layer4", "Generator layer to dissect (netdissect names: layer1, ...).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 10_000, "Generated samples for the dissection (paper: 10,000).")
_TOP_K = flags.DEFINE_integer("top_k", 200, "Top-activating samples kept per unit (figures, per-unit FID).")
_BATCH = flags.DEFINE_integer("batch_size", 100, "Samples per jitted batch.")
_CONCEPTS = flags.DEFINE_list("concepts", [], "Concepts to intervene on (default: those with the most units).")
_MAX_CONCEPTS = flags.DEFINE_integer("max_concepts", 4, "How many concepts when --concepts is empty.")
_SEARCH = flags.DEFINE_integer("search_samples", 4_000, "z searched for samples with / without a concept.")
_TRAIN = flags.DEFINE_integer("train_samples", 400, "Samples for the unit-set optimisation (paper: 1,000).")
_EVAL = flags.DEFINE_integer("eval_samples", 100, "Held-out samples for it (paper: 200).")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Unit-set optimisation epochs (paper: 10).")
_ABLATION_SAMPLES = flags.DEFINE_integer("ablation_samples", 500, "Samples the ablation curves are measured on.")
_INSERTION_UNITS = flags.DEFINE_integer("insertion_units", 20, "Units set per concept in insertion / ACE (paper: 20).")
_INSERTION_WINDOW = flags.DEFINE_integer("insertion_window", 2, "Side, in featuremap cells, of the square the units "
                                        "are inserted in (paper: one cell of a 256px generator).")
_INSERTION_SAMPLES = flags.DEFINE_integer("insertion_samples", 100, "Held-out samples lacking a concept that its "
                                          "insertion is measured on.")
_FID_SAMPLES = flags.DEFINE_integer("fid_samples", 2_000, "Generated samples per FID.")
_REAL_SAMPLES = flags.DEFINE_integer("real_samples", 2_000, "Real images for the FID reference (0: skip FID).")
_NUM_ARTIFACT = flags.DEFINE_integer("num_artifact", 20, "Worst per-unit-FID units ablated (paper: 20).")
_UNIT_FIGURES = flags.DEFINE_integer("unit_figures", 12, "Top units that get a figure.")
_IGNORE = flags.DEFINE_list("ignore_classes", [], "Segmenter classes never chosen as a unit's concept.")


def real_images(config, num: int):
    """The first ``num`` eval-split images of the GAN's data config, in [-1, 1]."""
    import numpy as np

    from jaxmodels.projects.gan_dissection.scenes import build_source
    from jaxmodels.data.generative import build_preprocess

    split = config.data.get("eval_split", "test")
    source = build_source(config.data, split)
    preprocess = build_preprocess(config.data, train=False)
    num = min(num, len(source))
    return np.stack([preprocess(source[i])["image"] for i in range(num)])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    import jaxmodels
    from jaxmodels.projects.gan_dissection.scenes import CLASSES
    from jaxmodels.projects.gan_dissection import report
    from jaxmodels.gan.progan import Generator
    from jaxmodels.gan.segmenter import Segmenter

    generator, g_variables, g_config = jaxmodels.load(_GAN.value)
    segmenter, s_variables, s_config = jaxmodels.load(_SEGMENTER.value)
    if not isinstance(generator, Generator):
        raise app.UsageError(f"--gan={_GAN.value} holds a {type(generator).__name__}, not a GAN generator "
                             f"(config.model.name={g_config.model.name!r})")
    if not isinstance(segmenter, Segmenter):
        raise app.UsageError(f"--segmenter={_SEGMENTER.value} holds a {type(segmenter).__name__}, not a scene "
                             f"segmenter (config.model.name={s_config.model.name!r})")
    if segmenter.num_classes != len(CLASSES):
        raise app.UsageError(f"--segmenter has {segmenter.num_classes} classes; the scenes have {len(CLASSES)}")
    out = _OUT.value or os.path.join(_GAN.value, "dissection")
    options = report.ReportOptions(
        layer=_LAYER.value, num_samples=_NUM_SAMPLES.value, top_k=_TOP_K.value, batch_size=_BATCH.value,
        concepts=tuple(_CONCEPTS.value), max_concepts=_MAX_CONCEPTS.value, search_samples=_SEARCH.value,
        train_samples=_TRAIN.value, eval_samples=_EVAL.value, epochs=_EPOCHS.value,
        ablation_samples=_ABLATION_SAMPLES.value, insertion_units=_INSERTION_UNITS.value,
        insertion_window=_INSERTION_WINDOW.value, insertion_samples=_INSERTION_SAMPLES.value,
        fid_samples=_FID_SAMPLES.value, real_samples=_REAL_SAMPLES.value, num_artifact=_NUM_ARTIFACT.value,
        unit_figures=_UNIT_FIGURES.value, ignore_classes=tuple(_IGNORE.value))
    reals = real_images(g_config, _REAL_SAMPLES.value) if _REAL_SAMPLES.value > 0 else None
    summary = report.write_report(generator, g_variables, segmenter, s_variables, out, class_names=CLASSES,
                                  real_images=reals, options=options)
    print(f"Interpretable units: {summary['interpretable_units']}/{summary['num_units']} "
          f"({summary['units_per_concept']})")
    for concept, curve in summary["ablation"].items():
        print(f"  {concept}: ablating top {curve['sizes'][-1]} units removes {curve['top'][-1]:.2f} of its pixels "
              f"(random: {curve['random_mean'][-1]:.2f}); ACE {curve['ace_top_units']:+.3f}")
    for concept, ins in summary["insertion"].items():
        print(f"  {concept}: inserted in a {ins['window']}x{ins['window']} window, mean gain {ins['mean_gain']:.3f} "
              f"(best location {ins['best_location_gain']:.3f}; {ins['fraction_inserted']:.0%} of samples)")
    if "artifacts" in summary:
        a = summary["artifacts"]
        print(f"  FID {a['fid_original']:.4g} -> {a['fid_ablated']:.4g} ablating {a['num_units']} worst units "
              f"(random: {a['fid_random']:.4g})")
    print(f"Report: {os.path.join(out, 'report.md')}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["gan", "segmenter"])
    app.run(main)
