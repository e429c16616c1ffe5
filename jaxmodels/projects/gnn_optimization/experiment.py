"""The GNN optimisation study (Xu, Zhang, Jegelka, Kawaguchi, ICML 2021, arXiv 2105.04550): runs the
comparisons of ``configs/gnn_optimization.py``, fits linear rates and writes figures, tables and
findings (``train/gnn_optimization.py`` is the absl binary around ``train_and_evaluate``).
See ``docs/gnn_optimization.md`` for the setup and the measured results.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxmodels.projects.gnn_optimization import linear_gnn as opt
from jaxmodels.training.metrics import MetricWriter, console

MODELS = {  # config name -> (activation, skip)
    "linear": ("linear", False),
    "linear_skip": ("linear", True),
    "relu": ("relu", False),
    "relu_skip": ("relu", True),
}
GROUPS = ("study", "nonlinear")
LABEL_MODES = ("true", "random")
INSTABILITY_TOLERANCE = 1e-3  # a step that raises the loss by more than this fraction counts as unstable


@dataclasses.dataclass(frozen=True)
class Graph:
    adjacency: object  # scipy sparse [n, n]
    features: np.ndarray  # [n, d]
    labels: np.ndarray  # [n]
    labelled_idx: np.ndarray  # [|I|]
    num_classes: int


def load_graph(data) -> Graph:
    if data.source == "sbm":
        from jaxmodels.projects.gnn_optimization.sbm import make_sbm_graph
        g = make_sbm_graph(num_nodes=data.num_nodes, num_classes=data.num_classes, feature_dim=data.feature_dim,
                           p_in=data.p_in, p_out=data.p_out, feature_kind=data.feature_kind, signal=data.signal,
                           noise=data.noise, labelled_per_class=data.labelled_per_class, seed=data.seed)
        return Graph(g.adjacency, g.features, g.labels, g.labelled_idx, g.num_classes)
    if data.source == "planetoid":
        from jaxmodels.data.planetoid import load_planetoid
        if not data.root:
            raise ValueError("data.source=planetoid needs --config.data.root=<directory with ind.<name>.* files>")
        p = load_planetoid(data.root, data.name)
        return Graph(p.adjacency, p.features, p.labels, p.train_idx, p.num_classes)
    raise ValueError(f"unknown data.source {data.source!r}; choose 'sbm' or 'planetoid'")


def node_features(features: np.ndarray, labelled_idx: np.ndarray, *, pca_dim: int, scale: float) -> np.ndarray:
    """X [m_0, n] (the paper's features x nodes): optionally the top ``pca_dim`` singular directions
    of the (uncentred) features, rescaled so that sigma_max(X_{*,I}) = ``scale``."""
    x = np.asarray(features, np.float64)  # [n, d]
    if pca_dim and pca_dim < x.shape[1]:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        x = x @ vt[:pca_dim].T  # [n, pca_dim]
    x = x.T  # [m_0, n]
    return x * (scale / np.linalg.norm(x[:, labelled_idx], 2))


def targets(labels: np.ndarray, labelled_idx: np.ndarray, num_classes: int, mode: str, seed: int) -> np.ndarray:
    """Y [num_classes, |I|]: one-hot true classes, or classes drawn uniformly (seeded) for ``random``."""
    if mode == "true":
        classes = labels[labelled_idx]
    elif mode == "random":
        classes = np.random.default_rng(10_000 + seed).integers(0, num_classes, size=len(labelled_idx))
    else:
        raise ValueError(f"unknown label mode {mode!r}; choose one of {LABEL_MODES}")
    return np.eye(num_classes)[classes].T


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def run_one(*, X, S, idx, Y, depth, model, seed, group_config, config, lstar_cache, sigma_cache) -> tuple[dict, dict]:
    """Trains one model; returns its record and its curves."""
    activation, skip = MODELS[model]
    dtype = jnp.dtype(config.dtype)
    key = (depth, skip)
    if key not in sigma_cache:
        sigma_cache[key] = opt.sigma_min_aggregated(X, S, idx, depth, multiscale=skip)
    sigma_min2 = sigma_cache[key]
    if activation == "linear":
        lkey = (depth, skip, Y.tobytes())
        if lkey not in lstar_cache:
            lstar_cache[lkey] = opt.optimal_loss(X, S, idx, Y, depth, multiscale=skip)
        lstar = lstar_cache[lkey]
    else:
        lstar = 0.0  # unknown for ReLU GNNs; 0 bounds the loss below (and is reached by interpolation)

    dims = [X.shape[0]] + [config.width] * depth
    params = opt.init_params(jax.random.PRNGKey(seed), dims, Y.shape[0], skip=skip, init=config.init,
                             scale=config.init_scale, dtype=dtype)
    steps, lr = int(group_config.num_steps), float(group_config.learning_rate)
    _, trace = opt.gd_train(params, X, S, idx, jnp.asarray(Y, dtype), skip=skip, activation=activation,
                            learning_rate=lr, num_steps=steps, diagnostics_every=config.diagnostics_every)
    losses = np.asarray(trace.loss, np.float64)  # [T+1]
    lambdas = np.asarray(trace.lambda_min, np.float64)  # [T+1], nan where not measured
    per_depth = None if trace.lambda_min_per_depth is None else np.asarray(trace.lambda_min_per_depth, np.float64)
    lambda_t = float(np.nanmin(lambdas))
    lambda_bound = lambda_t if per_depth is None else float(np.nanmin(per_depth))
    gaps = losses - lstar
    increases = np.diff(losses) / np.maximum(np.abs(losses[:-1]), 1e-30)
    early, late = (tuple(int(round(f * steps)) for f in config.rate_windows[w]) for w in ("early", "late"))
    record = dict(
        activation=activation, skip=skip, depth=depth, model=model, seed=seed, learning_rate=lr, num_steps=steps,
        lstar=lstar, initial_gap=gaps[0], final_gap=gaps[-1],
        gap_ratio_early=gaps[early[1]] / gaps[0],  # (L - L*) at the end of the early window / at t=0
        rate=opt.fit_linear_rate(losses, lstar), rate_early=opt.fit_linear_rate(losses, lstar, early),
        rate_late=opt.fit_linear_rate(losses, lstar, late),
        rate_bound=opt.rate_bound(lambda_bound, sigma_min2, lr) if activation == "linear" else float("nan"),
        lambda_T=lambda_t, sigma_min2=sigma_min2, max_relative_increase=float(np.max(increases)),
    )
    record["stable"] = bool(np.all(np.isfinite(losses)) and record["max_relative_increase"] <= INSTABILITY_TOLERANCE)
    record = {k: (_finite_or_none(v) if isinstance(v, (float, np.floating)) else v) for k, v in record.items()}
    curves = dict(gap=gaps.astype(np.float32), lambda_min=lambdas.astype(np.float32))
    return record, curves


def run_name(r: dict) -> str:
    return f"{r['group']}/{r['aggregation']}/{r['model']}/H{r['depth']}/{r['labels']}/seed{r['seed']}"


def run_comparisons(config, graph: Graph, progress=console) -> tuple[list[dict], dict]:
    dtype = jnp.dtype(config.dtype)
    X = jnp.asarray(node_features(graph.features, graph.labelled_idx, pca_dim=config.data.pca_dim,
                                  scale=config.feature_scale), dtype)
    idx = jnp.asarray(graph.labelled_idx)
    records, curves = [], {}
    for aggregation in config.aggregations:
        S = opt.sparse_propagation(graph.adjacency, aggregation, eps=config.gin_eps, dtype=dtype)
        lstar_cache, sigma_cache = {}, {}
        for group in GROUPS:
            group_config = config[group]
            for depth in group_config.depths:
                for model in group_config.models:
                    if model not in MODELS:
                        raise ValueError(f"config.{group}.models: unknown model {model!r}; choose from {sorted(MODELS)}")
                    for labels in group_config.label_modes:
                        for seed in config.seeds:
                            Y = targets(graph.labels, graph.labelled_idx, graph.num_classes, labels, seed)
                            start = time.perf_counter()
                            record, curve = run_one(X=X, S=S, idx=idx, Y=Y, depth=int(depth), model=model,
                                                    seed=int(seed), group_config=group_config, config=config,
                                                    lstar_cache=lstar_cache, sigma_cache=sigma_cache)
                            record = dict(group=group, aggregation=aggregation, labels=labels, **record)
                            records.append(record)
                            curves[run_name(record)] = curve
                            progress(f"{run_name(record):<44} rate {record['rate'] or float('nan'):.3e} "
                                     f"final L-L* {record['final_gap'] or float('nan'):.3e} "
                                     f"({time.perf_counter() - start:.1f}s)")
    return records, curves


# ----------------------------------------------------------------------------------- findings


def _select(records, **where):
    return [r for r in records if all(r[k] == v for k, v in where.items())]


def _one(records, **where):
    found = _select(records, **where)
    return found[0] if found else None


def _gt(a, b):
    return a is not None and b is not None and a > b


def findings(records: list[dict]) -> dict:
    """The paper's claims, checked on the ``study`` runs (and ReLU on ``nonlinear``), per aggregation
    and seed. "Faster" = larger whole-run fitted rate unless stated; true vs random labels is also
    judged by the normalised gap at the end of the early window and by the final gap. Linear runs
    also check that their fitted rates (whole run and late window) exceed ``opt.rate_bound``."""
    out = {}
    for agg in sorted({r["aggregation"] for r in records}):
        for seed in sorted({r["seed"] for r in records}):
            study = _select(records, group="study", aggregation=agg, seed=seed)
            depths = sorted({r["depth"] for r in study})
            labels = sorted({r["labels"] for r in study})
            skip_vs = {f"H{h}/{lab}": _gt((_one(study, depth=h, labels=lab, model="linear_skip") or {}).get("rate"),
                                          (_one(study, depth=h, labels=lab, model="linear") or {}).get("rate"))
                       for h in depths for lab in labels}
            deeper = {}
            for lab in labels:
                rates = [(_one(study, depth=h, labels=lab, model="linear_skip") or {}).get("rate") for h in depths]
                deeper[lab] = all(_gt(b, a) for a, b in zip(rates, rates[1:])) if len(rates) > 1 else None
            true_vs = {}
            for model in sorted({r["model"] for r in study}):
                for h in depths:
                    t, r = _one(study, depth=h, labels="true", model=model), _one(study, depth=h, labels="random", model=model)
                    if t and r:
                        true_vs[f"{model}/H{h}"] = dict(
                            rate=_gt(t["rate"], r["rate"]), early_gap_ratio=_gt(r["gap_ratio_early"], t["gap_ratio_early"]),
                            final_gap=_gt(r["final_gap"], t["final_gap"]))
            nonlinear = _select(records, group="nonlinear", aggregation=agg, seed=seed)
            relu_skip = {}
            for r in nonlinear:
                plain = _one(nonlinear, depth=r["depth"], labels=r["labels"], model="relu")
                if r["model"] == "relu_skip" and plain:
                    relu_skip[f"H{r['depth']}/{r['labels']}"] = _gt(r["rate"], plain["rate"])
            linear_runs = [r for r in records if r["aggregation"] == agg and r["seed"] == seed and r["activation"] == "linear"]
            out[f"{agg}/seed{seed}"] = dict(
                skip_faster_than_no_skip=skip_vs, deeper_skip_faster=deeper, true_faster_than_random=true_vs,
                relu_skip_faster_than_relu=relu_skip,
                lambda_T_positive=all((r["lambda_T"] or 0.0) > 0 for r in linear_runs),
                rate_above_bound=all(_gt(r["rate_late"], r["rate_bound"]) and _gt(r["rate"], r["rate_bound"])
                                     for r in linear_runs),
                all_runs_stable=all(r["stable"] for r in records if r["aggregation"] == agg and r["seed"] == seed))
    return out


# ------------------------------------------------------------------------------------- outputs


def _fmt(value, spec=".2e"):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


TABLE_COLUMNS = [  # (header, record key, format)
    ("group", "group", ""), ("agg", "aggregation", ""), ("model", "model", ""), ("H", "depth", ""),
    ("labels", "labels", ""), ("seed", "seed", ""), ("eta", "learning_rate", ".0e"), ("T", "num_steps", ""),
    ("L*", "lstar", ".2e"), ("L(0)-L*", "initial_gap", ".3g"), ("L(T)-L*", "final_gap", ".2e"),
    ("gap ratio at 10%", "gap_ratio_early", ".2e"), ("rate (all)", "rate", ".2e"),
    ("rate (early)", "rate_early", ".2e"), ("rate (late)", "rate_late", ".2e"),
    ("bound 4 eta lambda_T sigma^2", "rate_bound", ".1e"), ("lambda_T", "lambda_T", ".3f"),
    ("sigma_min^2", "sigma_min2", ".2e"), ("stable", "stable", ""),
]


def rate_table(records: list[dict]) -> str:
    header = "| " + " | ".join(h for h, _, _ in TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    rows = ["| " + " | ".join(_fmt(r[k], f) for _, k, f in TABLE_COLUMNS) + " |" for r in records]
    return "\n".join([header, rule, *rows]) + "\n"


def write_metrics(workdir: str, records: list[dict], curves: dict, every: int) -> None:
    writer = MetricWriter(workdir)
    length = max(len(c["gap"]) for c in curves.values())
    for step in range(0, length, max(1, every)):
        scalars = {}
        for r in records:
            curve = curves[run_name(r)]
            if step < len(curve["gap"]):
                for name in ("gap", "lambda_min"):
                    value = float(curve[name][step])
                    if math.isfinite(value):
                        scalars[f"{run_name(r)}/{'loss_minus_lstar' if name == 'gap' else name}"] = value
        writer.write_scalars(step, scalars)
    writer.close()


def _plot_panels(path, panels, *, ylabel="L(t) - L*", title=""):
    """``panels``: list of (title, [(label, y, style dict)]). One log-scale axis per panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (panel_title, lines) in zip(axes[0], panels):
        for label, y, style in lines:
            y = np.asarray(y, np.float64)
            steps = np.arange(len(y))
            keep = np.isfinite(y) & (y > 0)
            ax.semilogy(steps[keep], y[keep], label=label, **style)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("GD step")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        if lines:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_figures(workdir: str, records: list[dict], curves: dict) -> list[str]:
    """Figures of the first aggregation and seed. Returns the written paths."""
    if not records:
        return []
    agg, seed = records[0]["aggregation"], records[0]["seed"]
    study = _select(records, group="study", aggregation=agg, seed=seed)
    nonlinear = _select(records, group="nonlinear", aggregation=agg, seed=seed)
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    written = []

    def curve(r, name="gap"):
        return curves[run_name(r)][name]

    def eta(rs):
        return f"{agg.upper()}, eta={rs[0]['learning_rate']:g}" if rs else agg.upper()

    depths = sorted({r["depth"] for r in study})
    colour = {h: cmap(i / max(1, len(depths) - 1) * 0.9) for i, h in enumerate(depths)}
    if study:
        panels = []
        for h in depths:
            lines = [(f"{'skip' if r['skip'] else 'no skip'}", curve(r), dict(color="C1" if r["skip"] else "C0"))
                     for r in _select(study, depth=h, labels="true")]
            panels.append((f"H = {h}, true labels", lines))
        path = os.path.join(workdir, "skip_vs_noskip.png")
        _plot_panels(path, panels, title=f"Linear GNN, skip vs no skip ({eta(study)})")
        written.append(path)

        panels = []
        for model, name in (("linear_skip", "with skip (multiscale)"), ("linear", "without skip")):
            lines = [(f"H = {r['depth']}", curve(r), dict(color=colour[r["depth"]]))
                     for r in _select(study, model=model, labels="true")]
            panels.append((f"linear GNN {name}, true labels", lines))
        path = os.path.join(workdir, "depth.png")
        _plot_panels(path, panels, title=f"Depth ({eta(study)})")
        written.append(path)

        panels = []
        for model, name in (("linear_skip", "with skip"), ("linear", "without skip")):
            lines = [(f"H = {r['depth']}, {r['labels']}", curve(r),
                      dict(color=colour[r["depth"]], linestyle="-" if r["labels"] == "true" else "--"))
                     for r in _select(study, model=model)]
            panels.append((f"linear GNN {name}: true (solid) vs random (dashed)", lines))
        path = os.path.join(workdir, "labels.png")
        _plot_panels(path, panels, title=f"True vs random labels ({eta(study)})")
        written.append(path)

        panels = []
        for model, name in (("linear_skip", "with skip"), ("linear", "without skip")):
            lines = [(f"H = {r['depth']}", curve(r, "lambda_min"), dict(color=colour[r["depth"]], marker=".", markersize=2, linestyle="none"))
                     for r in _select(study, model=model, labels="true")]
            panels.append((f"{name}: lambda_min(Bbar^T Bbar)(t)", lines))
        path = os.path.join(workdir, "lambda_min.png")
        _plot_panels(path, panels, ylabel="lambda_min", title=f"lambda_min over training, true labels ({eta(study)})")
        written.append(path)

    if nonlinear:
        panels = []
        for h in sorted({r["depth"] for r in nonlinear}):
            lines = [(r["model"].replace("_", " + "), curve(r),
                      dict(color="C1" if r["skip"] else "C0", linestyle="-" if r["activation"] == "linear" else "--"))
                     for r in _select(nonlinear, depth=h, labels="true")]
            panels.append((f"H = {h}, true labels (ReLU: L* := 0)", lines))
        path = os.path.join(workdir, "linear_vs_relu.png")
        _plot_panels(path, panels, title=f"Linear (solid) vs ReLU (dashed) ({eta(nonlinear)})")
        written.append(path)
    return written


MEAN_COLUMNS = [  # (header, record key, format): means over seeds, except lambda_T (the minimum)
    ("L(T)-L*", "final_gap", ".2e"), ("gap ratio at 10%", "gap_ratio_early", ".2e"), ("rate (all)", "rate", ".2e"),
    ("rate (early)", "rate_early", ".2e"), ("rate (late)", "rate_late", ".2e"),
    ("bound", "rate_bound", ".1e"), ("lambda_T (min)", "lambda_T", ".3f"), ("sigma_min^2", "sigma_min2", ".2e"),
]
RUN_KEYS = ("group", "aggregation", "model", "depth", "labels")


def mean_over_seeds(records: list[dict]) -> list[dict]:
    """One row per (group, aggregation, model, depth, labels): means over seeds (lambda_T: min), the
    spread of the whole-run rate, and whether every seed was stable."""
    rows = {}
    for r in records:
        rows.setdefault(tuple(r[k] for k in RUN_KEYS), []).append(r)
    out = []
    for key, rs in rows.items():
        row = dict(zip(RUN_KEYS, key), seeds=len(rs), learning_rate=rs[0]["learning_rate"], stable=all(r["stable"] for r in rs))
        for _, k, _ in MEAN_COLUMNS:
            values = [r[k] for r in rs if r[k] is not None]
            row[k] = None if not values else float(np.min(values) if k == "lambda_T" else np.mean(values))
        rates = [r["rate"] for r in rs if r["rate"] is not None]
        row["rate_std"] = float(np.std(rates)) if len(rates) > 1 else None
        out.append(row)
    return out


def mean_table(rows: list[dict]) -> str:
    columns = [("group", "group", ""), ("agg", "aggregation", ""), ("model", "model", ""), ("H", "depth", ""),
               ("labels", "labels", ""), ("seeds", "seeds", ""), ("eta", "learning_rate", ".0e"), *MEAN_COLUMNS,
               ("rate std", "rate_std", ".1e"), ("stable", "stable", "")]
    header = "| " + " | ".join(h for h, _, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = ["| " + " | ".join(_fmt(r[k], f) for _, k, f in columns) + " |" for r in rows]
    return "\n".join([header, rule, *lines]) + "\n"


def _tally(values) -> str:
    values = [v for v in values if v is not None]
    return f"{sum(bool(v) for v in values)}/{len(values)}"


def summary(rows: list[dict], found: dict) -> str:
    lines = ["Mean over seeds of the fitted linear rate -d log(L - L*)/dt (whole run) and final L - L*:"]
    for r in rows:
        lines.append(f"  {r['group']:<9} {r['aggregation']} {r['model']:<11} H={r['depth']:<2} {r['labels']:<6} "
                     f"rate {_fmt(r['rate'])}  L(T)-L* {_fmt(r['final_gap'])}  lambda_T {_fmt(r['lambda_T'], '.3f')}"
                     + ("" if r["stable"] else "  UNSTABLE"))
    every = list(found.values())
    true_vs = [v for f in every for v in f["true_faster_than_random"].values()]
    lines += [
        f"Findings over {len(every)} (aggregation, seed) pairs; held / compared:",
        "  skip faster than no skip (same H, labels): " + _tally(v for f in every for v in f["skip_faster_than_no_skip"].values()),
        "  deeper skip faster (all H, per labels):    " + _tally(v for f in every for v in f["deeper_skip_faster"].values()),
        f"  true faster than random labels:           whole-run rate {_tally(v['rate'] for v in true_vs)}, "
        f"gap at 10% of T {_tally(v['early_gap_ratio'] for v in true_vs)}, final gap {_tally(v['final_gap'] for v in true_vs)}",
        "  ReLU skip faster than ReLU:                " + _tally(v for f in every for v in f["relu_skip_faster_than_relu"].values()),
        "  lambda_T > 0 in every linear run:          " + _tally(f["lambda_T_positive"] for f in every),
        "  fitted rates >= 4 eta lambda_T sigma^2:    " + _tally(f["rate_above_bound"] for f in every),
        "  every run stable (loss never rose):        " + _tally(f["all_runs_stable"] for f in every),
    ]
    return "\n".join(lines)


def train_and_evaluate(config, workdir: str) -> dict:
    """Runs the study of ``config`` and writes results, table, curves, figures and metrics to ``workdir``.

    Returns what ``results.json`` holds and, under ``"figures"``, the file names of the figures.
    """
    start = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    with jax.enable_x64(config.dtype == "float64"):
        graph = load_graph(config.data)
        records, curves = run_comparisons(config, graph)
    found = findings(records)
    rows = mean_over_seeds(records)
    runtime = time.perf_counter() - start
    results = dict(config=config.to_dict(), graph=dict(num_nodes=int(graph.labels.shape[0]),
                                                       num_edges=int(graph.adjacency.nnz // 2),
                                                       num_labelled=int(len(graph.labelled_idx)),
                                                       num_classes=graph.num_classes,
                                                       feature_dim=int(graph.features.shape[1])),
                   runs=records, mean_over_seeds=rows, findings=found, runtime_s=runtime)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else list(o))
    with open(os.path.join(workdir, "rates.md"), "w") as f:
        f.write(f"# Fitted linear rates ({config.experiment})\n\n"
                "rate = -slope of log(L(t) - L*) over the whole run; early / late windows = "
                f"{tuple(config.rate_windows.early)} / {tuple(config.rate_windows.late)} of T. "
                "ReLU rows use L* := 0. bound = 4 eta lambda_T sigma_min^2 (linear models).\n\n")
        f.write(f"## Mean over seeds {tuple(config.seeds)}\n\n" + mean_table(rows) + "\n## Every run\n\n" + rate_table(records))
    np.savez_compressed(os.path.join(workdir, "curves.npz"),
                        **{name.replace("/", "__") + "__" + key: value
                           for name, curve in curves.items() for key, value in curve.items()})
    write_metrics(workdir, records, curves, config.log_every_steps)
    figures = plot_figures(workdir, records, curves)
    return dict(results, figures=[os.path.basename(p) for p in figures])


def describe(workdir: str, results: dict) -> str:
    """The end-of-run console summary: the findings and where ``train_and_evaluate`` wrote its files."""
    return (summary(results["mean_over_seeds"], results["findings"]) + "\n"
            f"Wrote {len(results['runs'])} runs to {os.path.abspath(workdir)}: results.json, rates.md, curves.npz, "
            f"{', '.join(results['figures'])} ({results['runtime_s']:.0f}s)")
