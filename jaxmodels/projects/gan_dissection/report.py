"""The GAN Dissection report: dissect a layer, intervene on its units, find artifact units, write it all.

Bau et al., ICLR 2019, "GAN Dissection", secs. 3.1 (dissection), 3.2 (intervention: ablation,
insertion, the relaxed unit-set search) and 4.3 (artifact units ranked by a per-unit FID). This module
ties :mod:`jaxmodels.projects.gan_dissection.dissection`, :mod:`jaxmodels.projects.gan_dissection.intervention` and :mod:`jaxmodels.projects.gan_dissection.fid`
to a trained :class:`jaxmodels.gan.progan.Generator` and a scene segmenter
(:class:`jaxmodels.gan.segmenter.Segmenter`) and writes one report folder (``train/gan_dissection_dissect.py``):

  report.md                   everything below in one page (tables, figure links, the artifact result)
  dissection.json             the full DissectionResult (thresholds, IQR, IoU, coverage [units, concepts], ...)
  units.md                    unit-concept table (units by IoU at their best concept)
  concepts.md                 interpretable units per concept
  units/unit_<u>.png          a top unit's top-activating samples with its thresholded mask overlaid
  ablation.json, ablation.png fraction of class pixels removed by a concept's top-n units vs n random units
  insertion_<concept>.png     samples without the concept, before / after inserting its top units in one
                              window of the featuremap, and the mean gain per location
  artifacts.json              per-unit FID, the worst units, FID before / after ablating them vs random units
  summary.json                the headline numbers

Unit rankings for the ablation curves come from the relaxed unit-set optimisation
(``intervention.optimize_unit_set``, Adam lr 0.01, lambda 0.005, alpha initialised from the IoU ranking,
as the official ``aceoptimize.py``), trained on samples where the concept is present / absent.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.data.generative import to_uint8
from jaxmodels.projects.gan_dissection import dissection
from jaxmodels.projects.gan_dissection import fid
from jaxmodels.projects.gan_dissection import intervention
from jaxmodels.gan.progan import Generator, Intervention
from jaxmodels.training.files import atomic_write, atomic_write_json, atomic_write_text


@dataclasses.dataclass
class ReportOptions:
    """What the report measures and on how many samples (official defaults in brackets).

    layer: the dissected generator layer ["layer4"].   num_samples: dissection samples [10,000].
    top_k: top-activating samples kept per unit (also the per-unit FID sample size).
    seed / threshold_seed: z seeds of the dissection and threshold samples [1 / 2].
    unit_figures: how many top units get a figure.   figure_samples: samples per unit figure.
    concepts: class names for the interventions (empty: the ``max_concepts`` concepts with the most
      interpretable units).   search_samples: z searched for present/absent samples per concept [10,000].
    train_samples / eval_samples: samples for the unit-set optimisation [1,000 / 200].
    epochs: optimisation epochs [10].   ablation_sizes: n of the ablation curves (20 = the paper's figure).
    ablation_samples: z the curves are measured on.   num_random: random unit sets per size.
    insertion_units: units inserted in the insertion examples.   insertion_window: side of the inserted
      square in featuremap cells (the paper inserts at one cell of a 256px generator's 8x8 layer4).
    insertion_samples: held-out samples lacking the concept the insertion is measured on.
    fid_samples: generated samples per FID.
    real_samples: real images for the FID reference statistics.   num_artifact: units ablated [20].
    """
    layer: str = "layer4"
    num_samples: int = 10_000
    top_k: int = 200
    seed: int = 1
    threshold_seed: int | None = 2
    batch_size: int = 100
    unit_figures: int = 12
    figure_samples: int = 8
    concepts: Sequence[str] = ()
    max_concepts: int = 4
    search_samples: int = 4_000
    train_samples: int = 400
    eval_samples: int = 100
    epochs: int = 10
    ablation_sizes: Sequence[int] = (1, 2, 4, 8, 12, 16, 20)
    ablation_samples: int = 500
    num_random: int = 5
    insertion_units: int = 20
    insertion_window: int = 2
    insertion_samples: int = 100
    fid_samples: int = 2_000
    real_samples: int = 2_000
    num_artifact: int = 20
    ignore_classes: Sequence[str] = ()


class GanFunctions:
    """The jittable callables the dissection modules take, built from a generator and a segmenter."""

    def __init__(self, generator: Generator, g_variables, segmenter, s_variables, layer: str):
        if layer not in generator.layer_names or layer == "output":
            raise ValueError(f"layer={layer!r} is not a hidden layer of this {generator.resolution}px generator; "
                             f"layers: {generator.layer_names[:-1]}")
        self.generator, self.segmenter, self.layer = generator, segmenter, layer
        self.g_variables, self.s_variables = g_variables, s_variables
        self.num_units = generator.feature_shapes()[layer][-1]
        self.latent_dim = generator.latent_dim
        gv, sv = g_variables, s_variables

        def render_fn(z, alpha, value):
            edit = Intervention(layer=layer, alpha=alpha, value=value)
            return jnp.clip(generator.apply(gv, z, intervention=edit), -1.0, 1.0)

        def generate_fn(z):
            images, maps = generator.apply(gv, z, capture=(layer,))
            return jnp.clip(images, -1.0, 1.0), maps[layer]

        def segment_fn(images):
            return jax.nn.softmax(segmenter.apply(sv, images, train=False), axis=-1)

        self.render_fn, self.generate_fn, self.segment_fn = render_fn, generate_fn, segment_fn
        self.features = jax.jit(lambda images: segmenter.apply(sv, images, method="features"))
        self._render = jax.jit(render_fn)
        self._generate = jax.jit(generate_fn)
        self._labels = jax.jit(lambda images: jnp.argmax(segment_fn(images), -1))

    def images(self, z, alpha=None, value=0.0) -> np.ndarray:
        alpha = np.zeros(self.num_units, np.float32) if alpha is None else np.asarray(alpha, np.float32)
        value = np.broadcast_to(np.asarray(value, np.float32), alpha.shape)
        return np.asarray(self._render(jnp.asarray(z), alpha, value))

    def images_and_maps(self, z) -> tuple[np.ndarray, np.ndarray]:
        images, maps = self._generate(jnp.asarray(z))
        return np.asarray(images), np.asarray(maps)

    def labels(self, images) -> np.ndarray:
        return np.asarray(self._labels(jnp.asarray(images)))


def _savefig(fig, path: str) -> None:
    """Writes ``fig`` as a PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def unit_figure(fns: GanFunctions, result: dissection.DissectionResult, unit: int, num: int, path: str) -> None:
    """Top-activating samples of ``unit`` with its mask [upsampled map > t_u] outlined (paper fig. 1)."""
    import matplotlib.pyplot as plt

    indices = result.top_indices[unit, :num]
    z = np.asarray(dissection.sample_z(result.seed, indices, fns.latent_dim))
    images, maps = fns.images_and_maps(z)
    size = images.shape[1:3]
    up = np.asarray(dissection.bilinear_upsample(jnp.asarray(maps[..., unit:unit + 1]), size))[..., 0]
    mask = up > result.unit_threshold[unit]
    fig, axes = plt.subplots(1, len(indices), figsize=(1.6 * len(indices), 1.9), squeeze=False)
    for ax, image, m in zip(axes[0], to_uint8(images), mask):
        shown = image.astype(np.float32) / 255.0
        shown = np.where(m[..., None], shown, 0.35 * shown)  # dim outside the mask
        ax.imshow(shown)
        ax.contour(m.astype(float), levels=[0.5], colors="yellow", linewidths=0.8)
        ax.axis("off")
    c = result.best_concept[unit]
    fig.suptitle(f"{fns.layer} unit {unit}: {result.concept_name(c)} (IoU {result.iou[unit, c]:.2f})", fontsize=9)
    _savefig(fig, path)


def choose_concepts(result: dissection.DissectionResult, names: Sequence[str], max_concepts: int,
                    class_names: Sequence[str]) -> list[int]:
    if names:
        unknown = [n for n in names if n not in class_names]
        if unknown:
            raise ValueError(f"concepts {unknown} are not segmenter classes; classes: {list(class_names)}")
        return [list(class_names).index(n) for n in names]
    counts = np.bincount(result.best_concept[result.interpretable], minlength=len(class_names))
    order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    return order[:max_concepts]


def concept_interventions(fns: GanFunctions, result: dissection.DissectionResult, concept: int,
                          opts: ReportOptions) -> dict:
    """Unit-set search, ablation curve (top-n vs random) and ACE of the top units for one concept."""
    stats = intervention.class_statistics(fns.generate_fn, fns.segment_fn, concept, latent_dim=fns.latent_dim,
                                          num_samples=opts.search_samples, seed=10, batch_size=opts.batch_size)
    present_train, present_eval = intervention.select_samples(stats.presence, opts.train_samples, opts.eval_samples)
    absent_train, absent_eval = intervention.select_samples(stats.fraction, opts.train_samples, opts.eval_samples,
                                                            largest=False)
    search_z = np.asarray(dissection.sample_z(10, np.arange(opts.search_samples), fns.latent_dim))
    unit_set = intervention.optimize_unit_set(
        fns.render_fn, fns.segment_fn, concept, stats.insertion_value, search_z[present_train],
        search_z[absent_train], eval_present_z=search_z[present_eval], eval_candidate_z=search_z[absent_eval],
        init_alpha=intervention.initial_alpha_from_iou(result.iou[:, concept]), epochs=opts.epochs,
        top_n=min(opts.insertion_units, fns.num_units))
    sizes = [n for n in opts.ablation_sizes if n <= fns.num_units]
    # Curves on samples that contain the concept (a fresh seed, not the search set).
    curve_stats = intervention.class_statistics(fns.generate_fn, fns.segment_fn, concept, latent_dim=fns.latent_dim,
                                                num_samples=4 * opts.ablation_samples, seed=20,
                                                batch_size=opts.batch_size)
    curve_idx = np.sort(np.argsort(-curve_stats.fraction, kind="stable")[:opts.ablation_samples])
    curve_z = np.asarray(dissection.sample_z(20, curve_idx, fns.latent_dim))
    curve = intervention.ablation_curve(fns.render_fn, fns.segment_fn, concept, unit_set.ranking,
                                        num_units=fns.num_units, z=curve_z, sizes=sizes, num_random=opts.num_random,
                                        batch_size=opts.batch_size)
    top = unit_set.top_units(min(opts.insertion_units, fns.num_units))
    ace = intervention.average_causal_effect(fns.render_fn, fns.segment_fn, concept, top, stats.insertion_value,
                                             z=curve_z, batch_size=opts.batch_size)
    return {"concept": result.concept_name(concept), "class_id": int(concept),
            "dissection_units": [int(u) for u in result.units_for_concept(concept)],
            "ranking": [int(u) for u in unit_set.ranking], "alpha": np.round(unit_set.alpha, 4).tolist(),
            "train_loss": unit_set.train_loss.tolist(), "eval_loss": unit_set.eval_loss.tolist(),
            "eval_top_n_loss": unit_set.eval_top_n_loss.tolist(),
            "insertion_value": stats.insertion_value.tolist(), "ablation": curve, "ace_top_units": ace,
            "absent_eval": absent_eval.tolist()}


def ablation_plot(concept_results: Sequence[dict], path: str) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(concept_results), figsize=(3.4 * len(concept_results), 3.0), squeeze=False)
    for ax, res in zip(axes[0], concept_results):
        curve = res["ablation"]
        ax.plot(curve["sizes"], curve["top"], "o-", label="top units (ACE search)")
        mean, std = np.asarray(curve["random_mean"]), np.asarray(curve["random_std"])
        ax.errorbar(curve["sizes"], mean, yerr=std, fmt="s--", color="gray", label="random units")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("units ablated")
        ax.set_title(res["concept"])
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("fraction of class pixels removed")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    _savefig(fig, path)


def insertion_figure(fns: GanFunctions, res: dict, opts: ReportOptions, path: str, num: int = 6) -> dict:
    """Inserts a concept's top units at one place of the featuremap (paper sec. 4.3, Figs. 8-9).

    Samples lacking the concept (held-out ``absent_eval``): the units are set to k inside one
    ``insertion_window x insertion_window`` square, at every location in turn
    (``intervention.insertion_at_locations``). The figure shows ``num`` samples before / after the
    insertion at their best location (window outlined) and the mean gain of class pixels inside the
    window per location (the context map).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    units = res["ranking"][:min(opts.insertion_units, fns.num_units)]
    indices = np.asarray(res["absent_eval"][:opts.insertion_samples], np.int64)
    z = np.asarray(dissection.sample_z(10, indices, fns.latent_dim))
    grid = fns.generator.feature_shapes()[fns.layer][:2]
    k = np.asarray(res["insertion_value"], np.float32)
    window = opts.insertion_window  # intervention.window_locations names a window that does not fit
    loc = intervention.insertion_at_locations(fns.render_fn, fns.segment_fn, res["class_id"], units, k, grid=grid,
                                              z=z, window=window, batch_size=min(opts.batch_size, 50))
    gain, best = np.asarray(loc["gain"]), np.asarray(loc["best_location"], np.int64)
    locations = np.asarray(loc["locations"])
    shown = np.argsort(-gain[np.arange(len(best)), best], kind="stable")[:num]
    before = fns.images(z[shown])
    afters = []
    for j in shown:
        y, x = locations[best[j]]
        alpha = intervention.window_alpha(units, fns.num_units, grid, y, x, window)
        afters.append(fns.images(z[j:j + 1], alpha, k)[0])
    size = before.shape[1]
    cell = size / grid[0]
    cols = len(shown) + 1
    fig, axes = plt.subplots(2, cols, figsize=(1.6 * cols, 3.5), squeeze=False)
    for j, index in enumerate(shown):
        y, x = locations[best[index]]
        axes[0, j].imshow(to_uint8(before[j]))
        axes[1, j].imshow(to_uint8(afters[j]))
        axes[1, j].add_patch(Rectangle((x * cell - 0.5, y * cell - 0.5), window * cell, window * cell, fill=False,
                                       edgecolor="yellow", linewidth=1))
        axes[1, j].set_title(f"+{gain[index, best[index]]:.2f}", fontsize=7)
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    side = grid[0] - window + 1
    heat = np.asarray(loc["mean_gain"]).reshape(side, -1)
    axes[0, -1].axis("off")
    im = axes[1, -1].imshow(heat, cmap="viridis", vmin=0)
    axes[1, -1].set_title("mean gain", fontsize=7)
    axes[1, -1].set_xticks([])
    axes[1, -1].set_yticks([])
    fig.colorbar(im, ax=axes[1, -1], fraction=0.046)
    axes[0, 0].set_title("before", fontsize=8, loc="left")
    fig.suptitle(f"{len(units)} {res['concept']} units set to k in a {window}x{window} window of the "
                 f"{grid[0]}x{grid[1]} featuremap", fontsize=8)
    _savefig(fig, path)
    best_gain = np.asarray(loc["best_gain"])
    return {"concept": res["concept"], "units": units, "samples": indices.tolist(), "window": window,
            "grid": list(grid), "num_samples": int(len(indices)),
            "window_before": float(np.mean(loc["before"])), "window_after": float(np.mean(loc["after"])),
            "mean_gain": float(gain.mean()), "best_location_gain": float(best_gain.mean()),
            "fraction_inserted": float(np.mean(best_gain >= 0.25)),
            "gain_by_location": loc["mean_gain"], "locations": loc["locations"],
            "image_before": float(np.mean(loc["image_before"])), "image_after": float(np.mean(loc["image_after"]))}


def write_report(generator: Generator, g_variables, segmenter, s_variables, out_dir: str, *,
                 class_names: Sequence[str], real_images: np.ndarray | None = None,
                 options: ReportOptions | None = None, log=print) -> dict:
    """Runs the whole analysis and writes the report folder; returns the summary dict.

    real_images: float [N, R, R, 3] in [-1, 1] for the FID reference (None skips the artifact part).
    """
    opts = options or ReportOptions()
    os.makedirs(os.path.join(out_dir, "units"), exist_ok=True)
    fns = GanFunctions(generator, g_variables, segmenter, s_variables, opts.layer)
    unknown = [n for n in opts.ignore_classes if n not in class_names]
    if unknown:
        raise ValueError(f"ignore_classes {unknown} are not segmenter classes; classes: {list(class_names)}")
    top_k = min(opts.top_k, opts.num_samples)

    log(f"dissecting {opts.layer} ({fns.num_units} units) over {opts.num_samples} samples")
    result = dissection.dissect(fns.generate_fn, fns.segment_fn, latent_dim=fns.latent_dim,
                                num_samples=opts.num_samples, seed=opts.seed, threshold_seed=opts.threshold_seed,
                                batch_size=opts.batch_size, top_k=top_k, class_names=tuple(class_names),
                                ignore_classes=[list(class_names).index(n) for n in opts.ignore_classes])
    atomic_write_text(os.path.join(out_dir, "dissection.json"), result.to_json())
    atomic_write_text(os.path.join(out_dir, "units.md"), result.markdown_table() + "\n")
    atomic_write_text(os.path.join(out_dir, "concepts.md"), result.concept_summary_markdown() + "\n")
    num_interpretable = int(result.interpretable.sum())
    log(f"  {num_interpretable}/{fns.num_units} interpretable units")

    order = np.argsort(-result.best_iou, kind="stable")
    figure_units = [int(u) for u in order[result.interpretable[order]][:opts.unit_figures]]
    for u in figure_units:
        unit_figure(fns, result, u, min(opts.figure_samples, top_k), os.path.join(out_dir, "units", f"unit_{u:03d}.png"))

    concepts = choose_concepts(result, opts.concepts, opts.max_concepts, class_names)
    concept_results, insertions = [], []
    for c in concepts:
        log(f"interventions for {class_names[c]}")
        res = concept_interventions(fns, result, c, opts)
        insertions.append(insertion_figure(fns, res, opts, os.path.join(out_dir, f"insertion_{class_names[c]}.png")))
        concept_results.append(res)
    atomic_write_json(os.path.join(out_dir, "ablation.json"), {"concepts": concept_results, "insertions": insertions},
                      indent=1)
    if concept_results:
        ablation_plot(concept_results, os.path.join(out_dir, "ablation.png"))

    artifacts = None
    if real_images is not None:
        log(f"per-unit FID over each unit's top {top_k} samples; artifact-unit ablation")
        real = fid.real_statistics(fns.features, np.asarray(real_images, np.float32)[:opts.real_samples],
                                   batch_size=opts.batch_size)
        unit_fid = fid.per_unit_fid(fns.render_fn, fns.features, result.top_indices, real, seed=result.seed,
                                    latent_dim=fns.latent_dim, batch_size=opts.batch_size)
        num_ablate = min(opts.num_artifact, fns.num_units)
        artifacts = fid.artifact_ablation(fns.render_fn, fns.features, unit_fid, real, num_ablate=num_ablate,
                                          num_random=3, seed=100, num_samples=opts.fid_samples,
                                          latent_dim=fns.latent_dim, batch_size=opts.batch_size)
        artifacts["unit_fid"] = np.asarray(unit_fid, np.float64).tolist()
        artifacts["real_trace"] = float(np.trace(real.cov))
        atomic_write_json(os.path.join(out_dir, "artifacts.json"), artifacts, indent=1)

    summary = {"layer": opts.layer, "num_units": fns.num_units, "num_samples": opts.num_samples,
               "interpretable_units": num_interpretable,
               "units_per_concept": {class_names[c]: int(n) for c, n in enumerate(
                   np.bincount(result.best_concept[result.interpretable], minlength=len(class_names))) if n},
               "ablation": {r["concept"]: {"sizes": r["ablation"]["sizes"], "top": r["ablation"]["top"],
                                           "random_mean": r["ablation"]["random_mean"],
                                           "ace_top_units": r["ace_top_units"]["ace"]} for r in concept_results},
               "insertion": {i["concept"]: {k: i[k] for k in ("window", "num_samples", "mean_gain",
                                                              "best_location_gain", "fraction_inserted")}
                             for i in insertions}}
    if artifacts is not None:
        summary["artifacts"] = {k: artifacts[k] for k in ("fid_original", "fid_ablated", "fid_random")}
        summary["artifacts"]["num_units"] = len(artifacts["units"])
    atomic_write_json(os.path.join(out_dir, "summary.json"), summary, indent=1)
    atomic_write_text(os.path.join(out_dir, "report.md"),
                      markdown_report(result, summary, figure_units, concept_results, insertions, artifacts, opts))
    return summary


def markdown_report(result, summary, figure_units, concept_results, insertions, artifacts, opts) -> str:
    lines = [f"# GAN Dissection report: {opts.layer}", "",
             f"{summary['num_units']} units, {opts.num_samples} samples (z seed {opts.seed}, thresholds fitted on "
             f"seed {opts.threshold_seed}); interpretable: IQR > {result.iqr_threshold}, IoU > "
             f"{result.iou_threshold}, mask coverage <= {result.max_coverage}.", "",
             f"**{summary['interpretable_units']} of {summary['num_units']} units are interpretable.**", "",
             "## Concepts", "", result.concept_summary_markdown(), "",
             "## Top units", "", result.markdown_table(only_interpretable=True, max_rows=30), ""]
    lines += [f"![unit {u}](units/unit_{u:03d}.png)" for u in figure_units]
    if concept_results:
        lines += ["", "## Ablation: fraction of class pixels removed", "",
                  "Top units from the relaxed unit-set search (Adam lr 0.01, lambda 0.005, alpha initialised from "
                  "the IoU ranking) vs random unit sets of the same size (mean +- std over "
                  f"{opts.num_random} draws); hard segmentation pixels over {opts.ablation_samples} samples "
                  "that contain the concept.", ""]
        sizes = concept_results[0]["ablation"]["sizes"]
        lines += ["| concept | " + " | ".join(f"n={n} top / random" for n in sizes) + " | ACE of top units |",
                  "|---|" + "---:|" * (len(sizes) + 1)]
        for r in concept_results:
            a = r["ablation"]
            cells = [f"{t:.2f} / {m:.2f}" for t, m in zip(a["top"], a["random_mean"])]
            lines.append(f"| {r['concept']} | " + " | ".join(cells) + f" | {r['ace_top_units']['ace']:+.3f} |")
        lines += ["", "![ablation](ablation.png)", "", "## Insertion", ""]
        if insertions:
            i0 = insertions[0]
            lines += [f"A concept's top {len(i0['units'])} units set to k inside one {i0['window']}x{i0['window']} "
                      f"window of the {i0['grid'][0]}x{i0['grid'][1]} featuremap, at every location in turn, on "
                      f"{i0['num_samples']} held-out samples that lack the concept. Gain: fraction of the window's "
                      "pixels segmented as the concept after minus before; best location: per sample, the location "
                      "with the largest gain; inserted: samples whose best gain is at least 0.25.", "",
                      "| concept | mean gain, all locations | mean gain, best location | inserted |",
                      "|---|---:|---:|---:|"]
            for i in insertions:
                lines.append(f"| {i['concept']} | {i['mean_gain']:.3f} | {i['best_location_gain']:.3f} | "
                             f"{i['fraction_inserted']:.0%} |")
            lines.append("")
        for i in insertions:
            lines.append(f"![insertion {i['concept']}](insertion_{i['concept']}.png)")
    if artifacts is not None:
        lines += ["", "## Artifact units", "",
                  f"Per-unit FID (segmenter-backbone features) over each unit's top {min(opts.top_k, opts.num_samples)} "
                  f"samples; the {len(artifacts['units'])} worst units {artifacts['units']} ablated, FID over "
                  f"{artifacts['num_samples']} samples vs {opts.real_samples} real scenes:", "",
                  "| generator | FID | relative to original |", "|---|---:|---:|",
                  f"| original | {artifacts['fid_original']:.4g} | 1 |",
                  f"| worst units ablated | {artifacts['fid_ablated']:.4g} | "
                  f"{artifacts['fid_ablated'] / artifacts['fid_original']:.3g} |",
                  f"| random units ablated (mean of {len(artifacts['fid_random_draws'])}) | "
                  f"{artifacts['fid_random']:.4g} | {artifacts['fid_random'] / artifacts['fid_original']:.3g} |", "",
                  "The segmenter's pooled features are small (their real-image covariance has trace "
                  f"{artifacts.get('real_trace', float('nan')):.4g}), so FIDs here are small numbers; compare them "
                  "with each other, not with Inception FIDs."]
    return "\n".join(lines) + "\n"
