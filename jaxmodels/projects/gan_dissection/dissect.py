"""GAN Dissection of a trained generator (Bau et al., ICLR 2019): what ``train/gan_dissection_dissect.py`` runs.

``run_dissection(config, workdir)`` loads the generator (EMA weights) of ``config.gan_workdir`` and
the scene segmenter of ``config.segmenter_workdir`` with ``jaxmodels.load`` and writes the whole
report of ``report.write_report`` into ``workdir`` (default ``<gan_workdir>/dissection``): dissection
of ``config.report.layer`` (IQR thresholds, IoU per unit and concept), unit figures, the unit-set
search and ablation curves per concept, insertion, per-unit FID and artifact-unit ablation. Real
images for the FID reference are the eval split of the GAN run's own data config.
"""
from __future__ import annotations

import os

import numpy as np

from jaxmodels.training.files import atomic_write_json
from jaxmodels.training.metrics import console

_SEQUENCE_FIELDS = ("ablation_sizes",)  # ReportOptions fields that are tuples of ints
_NAME_LIST_FIELDS = ("concepts", "ignore_classes")  # comma-separated class names in the config


def report_options(config_report):
    """``report.ReportOptions`` from ``config.report`` (class-name lists are comma-separated strings)."""
    from jaxmodels.projects.gan_dissection import report

    fields = config_report.to_dict()
    for name in _NAME_LIST_FIELDS:
        fields[name] = tuple(n.strip() for n in str(fields[name]).split(",") if n.strip())
    for name in _SEQUENCE_FIELDS:
        fields[name] = tuple(int(n) for n in fields[name])
    return report.ReportOptions(**fields)


def real_images(config, num: int) -> np.ndarray:
    """The first ``num`` eval-split images of the GAN's data config, float [num, R, R, 3] in [-1, 1]."""
    from jaxmodels.data.generative import build_preprocess
    from jaxmodels.projects.gan_dissection.scenes import build_source

    split = config.data.get("eval_split", "test")
    source = build_source(config.data, split)
    preprocess = build_preprocess(config.data, train=False)
    num = min(num, len(source))
    return np.stack([preprocess(source[i])["image"] for i in range(num)])


def load_models(config):
    """(generator, its variables, its run config, segmenter, its variables), checked to fit together."""
    import jaxmodels
    from jaxmodels.gan.progan import Generator
    from jaxmodels.gan.segmenter import Segmenter
    from jaxmodels.projects.gan_dissection.scenes import CLASSES

    if not config.gan_workdir or not config.segmenter_workdir:
        raise ValueError("Set both --config.gan_workdir (a train/gan_dissection.py run) and "
                         "--config.segmenter_workdir (a train/gan_dissection_segmenter.py run).")
    generator, g_variables, g_config = jaxmodels.load(config.gan_workdir)
    segmenter, s_variables, s_config = jaxmodels.load(config.segmenter_workdir)
    if not isinstance(generator, Generator):
        raise ValueError(f"config.gan_workdir={config.gan_workdir} holds a {type(generator).__name__}, not a GAN "
                         f"generator (config.model.name={g_config.model.name!r})")
    if not isinstance(segmenter, Segmenter):
        raise ValueError(f"config.segmenter_workdir={config.segmenter_workdir} holds a {type(segmenter).__name__}, "
                         f"not a scene segmenter (config.model.name={s_config.model.name!r})")
    if segmenter.num_classes != len(CLASSES):
        raise ValueError(f"config.segmenter_workdir: the segmenter has {segmenter.num_classes} classes; "
                         f"the scenes have {len(CLASSES)}")
    return generator, g_variables, g_config, segmenter, s_variables


def run_dissection(config, workdir: str) -> dict:
    """Writes the report folder (``report.md``, ``summary.json``, ...) and ``config.json`` into ``workdir``.

    Returns ``write_report``'s summary, with the report folder under ``"out"``.
    """
    from jaxmodels.projects.gan_dissection import report
    from jaxmodels.projects.gan_dissection.scenes import CLASSES
    from jaxmodels.training.checkpoint import config_to_json_dict

    options = report_options(config.report)
    generator, g_variables, g_config, segmenter, s_variables = load_models(config)
    out = workdir or os.path.join(config.gan_workdir, "dissection")
    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, "config.json"), config_to_json_dict(config), indent=2, sort_keys=True)
    reals = real_images(g_config, options.real_samples) if options.real_samples > 0 else None
    summary = report.write_report(generator, g_variables, segmenter, s_variables, out, class_names=CLASSES,
                                  real_images=reals, options=options, log=console)
    return {**summary, "out": out}


def describe(workdir: str, summary: dict) -> str:
    """The end-of-run console summary: interpretable units, ablation, insertion and FID per concept."""
    lines = [f"Interpretable units: {summary['interpretable_units']}/{summary['num_units']} "
             f"({summary['units_per_concept']})"]
    for concept, curve in summary["ablation"].items():
        lines.append(f"  {concept}: ablating top {curve['sizes'][-1]} units removes {curve['top'][-1]:.2f} of its "
                     f"pixels (random: {curve['random_mean'][-1]:.2f}); ACE {curve['ace_top_units']:+.3f}")
    for concept, ins in summary["insertion"].items():
        lines.append(f"  {concept}: inserted in a {ins['window']}x{ins['window']} window, mean gain "
                     f"{ins['mean_gain']:.3f} (best location {ins['best_location_gain']:.3f}; "
                     f"{ins['fraction_inserted']:.0%} of samples)")
    if "artifacts" in summary:
        a = summary["artifacts"]
        lines.append(f"  FID {a['fid_original']:.4g} -> {a['fid_ablated']:.4g} ablating {a['num_units']} worst units "
                     f"(random: {a['fid_random']:.4g})")
    lines.append(f"Report: {os.path.join(summary['out'], 'report.md')}")
    return "\n".join(lines)
