"""Agreement of the first-order estimators (first_order.py) with the exact engine, on the kit's own models (issue 33).

    python benchmarks/first_order.py [--models train_lenet finetune_cifar10 arch_mobilenetv2_100 arch_vit_tiny]
                                     [--classes 3 5] [--examples N] [--steps 8] [--margin 4] [--sample 0.1]
                                     [--exact-from results|compute] [--results results] [--out reports/benchmarks]
                                     [--device cpu] [--threads N] [--file first_order.json]

For every model and class (default: the classes of the model's params section, `discover_graphs` for train_lenet and
finetune_cifar10, `arch_graphs` for the arch_* models; all classes where the section says null), with that section's
examples, layer chain, test, alpha, min_effect, fallback, intervention and max_batch:
1. the exact graph (Algorithm 1, eq. 2): read from results/<graphs_dir>/<model>/<test>/class_<k>.json with
   `--exact-from results` when it exists and was found with these settings, on the examples the model selects now, by
   this model (the md5 in results/<section>/discovery.json, and the classifier layer's exact effects recomputed); its
   per-layer `seconds` are then the pipeline's timings. Otherwise it is discovered here and timed (the JSON says why);
2. layer by layer, on the exact graph's targets and with the same per-layer intervention seed (`seed * 1009 + depth`,
   as `discovery.discover_class_graph`), the `taylor` and `taylor_ig` (`--steps` gradients) estimates of every
   parent's effect, timed, and labelled with `discovery.significance` (and the fallback, where the section sets it);
3. a full `effects="screened"` discovery (`--margin`, `--sample`), timed, and its differences from the exact graph.

Per model: the Spearman rank correlation of the parents' mean effects per layer (estimate vs exact); the 3x3 label
confusion table (rows exact, columns estimate: necessary, distracting, irrelevant) and the F1 of `necessary` and of
non-irrelevant against exact, for taylor and taylor_ig; for screened, the share of edges sent to exact confirmation,
the sampled false negatives with a pooled 95% Clopper-Pearson interval, and the parents whose label differs from the
exact graph; the wall time of each estimator and its ratio to exact (sums of per-layer seconds, as the graph files
record them). `paper_scale` applies the screened/exact ratios to the graph-discovery parts of the estimate of the
paper-scale profile (docs/timing.md "The paper-scale profile", *What it costs*, whose total the README states: prose,
so its inputs are written here).

Times are only comparable within one run on one machine: `--exact-from compute` times the exact engine in the same
run; `--exact-from results` takes the pipeline's timings (the JSON says, per class, where each exact time came from).
Writes first_order.json to --out and prints a compact table.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest, spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from causal_interp import config, data, discovery, first_order, models, training  # noqa: E402
from causal_interp.interventions import Intervention, TracedModel, treatment_effects  # noqa: E402

FILE = "first_order.json"
LABELS = ("necessary", "distracting", "irrelevant")
ESTIMATES = ("taylor", "taylor_ig")
DEFAULT_MODELS = ["train_lenet", "finetune_cifar10", "arch_mobilenetv2_100", "arch_vit_tiny"]
SECTIONS = ("discover_graphs", "arch_graphs")

# "The paper-scale profile", *What it costs* (docs/timing.md; the README states the total, about two and a half months,
# and links there): an order of magnitude in hours on the reference CPU (2 cores), given in prose, not computed
# anywhere. The two graph-discovery parts are the ones the screen can shorten; each is matched with the models whose
# measured screened/exact ratio applies to it.
PAPER_SCALE_HOURS = {
    "training_architectures_224px": 310.0,   # "training the five architectures at 224 px about 310 hours"
    "fig7_resnet18_soft_graphs": 440.0,      # "fig. 7 on ResNet18 about 440 hours (10,000 soft runs, ... ~160 s)"
    "arch_graphs": 580.0,                    # "the architectures' graphs about 580 hours"
    "fig9_architectures": 370.0,             # "and their fig. 9 about 370 hours"
    "rest": 36.0,                            # "the rest (figs. 8, 10 and 11 of both studies) about a day and a half"
}
PAPER_SCALE_QUOTES = ("about 310 hours", "about 440 hours", "graphs about 580 hours", "about 370 hours",
                      "about a day and a half", "About 72 days")
DISCOVERY_PARTS = {"fig7_resnet18_soft_graphs": ["finetune_cifar10"], "arch_graphs": "arch_*"}


# ---------------------------------------------------------------- comparisons of one layer / one graph

def layer_labels(lg: discovery.LayerGraph) -> np.ndarray:
    """The label of every parent of a layer of a graph."""
    labels = np.full(lg.n_parents, "irrelevant", dtype=object)
    labels[lg.necessary] = "necessary"
    labels[lg.distracting] = "distracting"
    return labels.astype(str)


def confusion(exact: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """3x3 counts: rows the exact label, columns the estimate's (order `LABELS`)."""
    table = np.zeros((3, 3), dtype=int)
    for i, a in enumerate(LABELS):
        for j, b in enumerate(LABELS):
            table[i, j] = int(((exact == a) & (estimate == b)).sum())
    return table


def f1_scores(table) -> dict:
    """F1 against exact of `necessary` and of non-irrelevant (necessary or distracting) from a confusion table. With no
    positive in either the exact labels or the estimate, the two agree perfectly: F1 = 1."""
    t = np.asarray(table)

    def f1(pos):
        tp = t[np.ix_(pos, pos)].sum()
        fp = t[np.ix_([i for i in range(3) if i not in pos], pos)].sum()
        fn = t[np.ix_(pos, [i for i in range(3) if i not in pos])].sum()
        return 1.0 if tp + fp + fn == 0 else float(2 * tp / (2 * tp + fp + fn))

    return {"necessary": f1([0]), "non_irrelevant": f1([0, 1])}


def rank_correlation(estimate, exact) -> float | None:
    """Spearman's rho of the parents' mean effects; None with fewer than 3 parents or a constant side."""
    a, b = np.asarray(estimate, dtype=float), np.asarray(exact, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(a, b).statistic
    return None if not np.isfinite(rho) else float(rho)


def graph_differences(exact: discovery.ClassGraph, other: discovery.ClassGraph) -> dict:
    """Where `other` differs from `exact`: per layer, the parents whose label differs, whether the targets differ (a
    different label above changes what a layer is tested against), and the graph edges (necessary parent -> target)
    one has and the other has not."""
    layers, relabelled, added, removed = [], 0, 0, 0
    for a, b in zip(exact.layers, other.layers):
        if a.layer != b.layer:
            raise ValueError(f"the graphs walk different chains ({a.layer!r} vs {b.layer!r})")
        la, lb = layer_labels(a), layer_labels(b)
        diff = int((la != lb).sum())
        ea, eb = set(a.edges()), set(b.edges())
        row = {"layer": a.layer, "relabelled": diff, "targets_differ": a.targets != b.targets,
               "edges_added": len(eb - ea), "edges_removed": len(ea - eb)}
        if diff:
            row["relabelled_as"] = {f"{x}->{y}": int(((la == x) & (lb == y)).sum())
                                    for x in LABELS for y in LABELS if x != y and ((la == x) & (lb == y)).any()}
        layers.append(row)
        relabelled, added, removed = relabelled + diff, added + len(eb - ea), removed + len(ea - eb)
    return {"relabelled": relabelled, "edges_added": added, "edges_removed": removed,
            "layers_with_other_targets": sum(r["targets_differ"] for r in layers),
            "identical_labels": relabelled == 0, "layers": layers}


# ---------------------------------------------------------------- the estimators on one class

@dataclasses.dataclass
class Settings:
    """What a model's graphs are found with (its params section), and the first-order settings."""

    test: str = "paired"
    alpha: float = 0.05
    min_effect: float = 0.0
    fallback: bool = False
    intervention: Intervention = dataclasses.field(default_factory=Intervention)
    layers: list | None = None
    max_batch: int = 4096
    steps: int = 8
    margin: float = 4.0
    sample: float = 0.1

    def graph_kwargs(self) -> dict:
        return dict(intervention=self.intervention, test=self.test, alpha=self.alpha, min_effect=self.min_effect,
                    fallback=self.fallback, max_batch=self.max_batch)


def exact_graph(model, x, k: int, s: Settings, class_name: str = "", model_name: str = "") -> tuple:
    """(exact graph, wall seconds) discovered here."""
    t0 = time.perf_counter()
    g = discovery.discover_class_graph(model, x, k, s.layers, class_name=class_name, model_name=model_name,
                                       **s.graph_kwargs())
    return g, time.perf_counter() - t0


def estimate_layers(model, x, k: int, exact: discovery.ClassGraph, s: Settings, steps: int) -> list[dict]:
    """The first-order estimate (`steps` = 1: taylor; > 1: taylor_ig) of every layer of `exact` that has targets, on
    its targets with its per-layer intervention draws, labelled as discovery labels; compared with `exact`."""
    traced = TracedModel(model)
    traced.cache(x, where=f"class {k}")
    base = traced.logits[:, k].cpu()
    rows = []
    for depth, lg in enumerate(exact.layers):
        if not lg.targets:
            continue
        iv = dataclasses.replace(s.intervention, seed=s.intervention.seed * 1009 + depth)
        t0 = time.perf_counter()
        te = first_order.estimated_effects(traced, lg.layer, k, lg.targets, iv, steps, max_batch=s.max_batch)
        _, _, labels, _ = discovery.significance(te, base, s.test, s.alpha, s.min_effect)
        if s.fallback and not (labels == "necessary").any():
            labels = labels.copy()
            labels[discovery.fallback_parents(te, base)] = "necessary"
        seconds = time.perf_counter() - t0
        exact_labels = layer_labels(lg)
        rows.append({"layer": lg.layer, "parents": lg.n_parents, "targets": len(lg.targets), "seconds": seconds,
                     "exact_seconds": lg.seconds, "spearman": rank_correlation(te.mean(1).numpy(), lg.mean_effect),
                     "confusion": confusion(exact_labels, labels.astype(str)).tolist()})
    return rows


def screened_graph(model, x, k: int, s: Settings) -> tuple:
    """(screened graph, wall seconds)."""
    t0 = time.perf_counter()
    g = discovery.discover_class_graph(model, x, k, s.layers, effects="screened", ig_steps=s.steps,
                                       screen_margin=s.margin, screen_sample=s.sample, **s.graph_kwargs())
    return g, time.perf_counter() - t0


def layer_seconds(g: discovery.ClassGraph) -> float:
    return float(sum(lg.seconds for lg in g.layers if lg.targets))


def class_benchmark(model, x, k: int, s: Settings, exact: discovery.ClassGraph | None = None,
                    exact_source: str = "computed", class_name: str = "", model_name: str = "") -> dict:
    """One class: the exact graph (given, or discovered here), taylor and taylor_ig layer by layer on its targets, and
    a screened discovery. Times are sums of per-layer seconds (`seconds`) and, where timed here, wall seconds."""
    row = {"class": k, "examples": len(x)}
    wall = None
    if exact is None:
        exact, wall = exact_graph(model, x, k, s, class_name, model_name)
        exact_source = "computed"
    row["exact"] = {"source": exact_source, "seconds": layer_seconds(exact), "wall_seconds": wall,
                    "per_layer_seconds": {lg.layer: lg.seconds for lg in exact.layers if lg.targets},
                    "necessary_per_layer": {lg.layer: len(lg.necessary) for lg in exact.layers}}
    for name, steps in zip(ESTIMATES, (1, s.steps)):
        layers = estimate_layers(model, x, k, exact, s, steps)
        row[name] = {"steps": steps, "seconds": float(sum(r["seconds"] for r in layers)), "layers": layers}
    g, wall = screened_graph(model, x, k, s)
    screens = [dict(lg.screen, layer=lg.layer, parents=lg.n_parents, seconds=lg.seconds)
               for lg in g.layers if lg.targets]
    row["screened"] = {"seconds": layer_seconds(g), "wall_seconds": wall, "layers": screens,
                       "differences": graph_differences(exact, g)}
    return row


# ---------------------------------------------------------------- per model

def summarize(rows: list[dict]) -> dict:
    """The agreement and the times of one model over its classes."""
    out = {"classes": [r["class"] for r in rows]}
    exact_s = sum(r["exact"]["seconds"] for r in rows)
    out["exact"] = {"seconds": exact_s, "sources": sorted({r["exact"]["source"] for r in rows})}
    for name in ESTIMATES:
        layers = [lr for r in rows for lr in r[name]["layers"]]
        rhos = [lr["spearman"] for lr in layers if lr["spearman"] is not None]
        per_layer = {}
        for lr in layers:
            if lr["spearman"] is not None:
                per_layer.setdefault(lr["layer"], []).append(lr["spearman"])
        table = np.sum([lr["confusion"] for lr in layers], axis=0) if layers else np.zeros((3, 3), dtype=int)
        seconds = sum(r[name]["seconds"] for r in rows)
        out[name] = {
            "spearman": {"median": float(np.median(rhos)) if rhos else None,
                         "mean": float(np.mean(rhos)) if rhos else None,
                         "min": float(np.min(rhos)) if rhos else None, "layers_compared": len(rhos),
                         "layers_undefined": len(layers) - len(rhos),
                         "per_layer_mean": {k: float(np.mean(v)) for k, v in per_layer.items()}},
            "confusion": {"rows_exact_columns_estimate": list(LABELS), "counts": np.asarray(table).tolist()},
            "f1": f1_scores(table), "label_agreement": float(np.trace(table) / max(1, np.sum(table))),
            "seconds": seconds, "ratio_to_exact": seconds / exact_s if exact_s else None}
    layers = [lr for r in rows for lr in r["screened"]["layers"]]
    edges = sum(lr["confirmed"] + lr["screened_out"] for lr in layers)
    confirmed = sum(lr["confirmed"] for lr in layers)
    sampled = sum(lr["sampled"] for lr in layers)
    missed = sum(lr["missed"] for lr in layers)
    ci = binomtest(missed, sampled).proportion_ci(0.95) if sampled else None
    seconds = sum(r["screened"]["seconds"] for r in rows)
    diffs = [r["screened"]["differences"] for r in rows]
    out["screened"] = {
        "edges_tested": edges, "confirmed": confirmed, "confirmed_share": confirmed / edges if edges else None,
        "exact_share": (confirmed + sampled) / edges if edges else None,   # confirmed + sampled: computed exactly
        "screened_out": edges - confirmed, "sampled": sampled, "missed": missed,
        "false_negative_rate": missed / sampled if sampled else None,
        "false_negative_ci": [ci.low, ci.high] if ci is not None else None, "ci": "Clopper-Pearson 95%, pooled",
        "relabelled": sum(d["relabelled"] for d in diffs), "edges_added": sum(d["edges_added"] for d in diffs),
        "edges_removed": sum(d["edges_removed"] for d in diffs),
        "classes_identical": sum(d["identical_labels"] for d in diffs),
        "seconds": seconds, "wall_seconds": sum(r["screened"]["wall_seconds"] for r in rows),
        "ratio_to_exact": seconds / exact_s if exact_s else None}
    return out


# ---------------------------------------------------------------- what it buys

COST_TEXTS = (REPO / "docs" / "timing.md", REPO / "README.md")   # where the estimate is stated


def paper_scale(ratios: dict, texts=COST_TEXTS) -> dict:
    """The paper-scale estimate with `effects: screened` in its graph-discovery parts: each part's hours x the measured
    screened/exact time ratio of the models that stand for it (fig. 7: finetune_cifar10, ResNet18; the architectures'
    graphs: the mean over the arch_* models measured). A part none of whose models was measured keeps no screened
    figure (LeNet's graphs take milliseconds, their ratio says nothing of ResNet18's), nor does the total then.
    `ratios`: {model: screened seconds / exact seconds}. The estimate's figures are prose, so they are inputs here
    (PAPER_SCALE_HOURS); `stated_in` names the first of `texts` that still states every one of them (None: none does
    any more, and the inputs may be stale; `texts` empty: not checked)."""
    def rel(path):
        return str(Path(path).relative_to(REPO)) if Path(path).is_relative_to(REPO) else str(path)

    stated_in = None
    for path in texts or ():
        if Path(path).is_file() and all(q in " ".join(Path(path).read_text().split()) for q in PAPER_SCALE_QUOTES):
            stated_in = rel(path)
            break
    measured = {m: r for m, r in ratios.items() if r is not None and math.isfinite(r)}
    parts, used = dict(PAPER_SCALE_HOURS), {}
    for part, who in DISCOVERY_PARTS.items():
        models_ = [m for m in measured if (m.startswith("arch_") if who == "arch_*" else m in who)]
        used[part] = {"ratio": float(np.mean([measured[m] for m in models_])) if models_ else None, "from": models_,
                      "stands_for_it": who}
    screened = {p: (h if p not in used else h * used[p]["ratio"] if used[p]["ratio"] is not None else None)
                for p, h in parts.items()}
    complete = all(v is not None for v in screened.values())
    total = sum(parts.values())
    total_screened = sum(screened.values()) if complete else None
    days = 24.0
    return {
        "source": "'The paper-scale profile', What it costs (docs/timing.md; prose, its figures are the inputs here)",
        "stated_in": stated_in, "checked": [rel(p) for p in texts or ()],
        "hours_exact": parts, "discovery_parts": list(DISCOVERY_PARTS), "ratios_used": used,
        "hours_screened": screened,
        "total_hours_exact": total, "total_days_exact": total / days,
        "total_hours_screened": total_screened,
        "total_days_screened": total_screened / days if complete else None,
        "discovery_hours_exact": sum(parts[p] for p in DISCOVERY_PARTS),
        "discovery_hours_screened": sum(screened[p] for p in DISCOVERY_PARTS) if complete else None,
        "assumptions": "the ratio measured on the benchmark's graphs (the sections' intervention, hard by default, and "
                       "sizes) holds for fig. 7's soft runs on ResNet18 and for the architectures' graphs at 224 px "
                       "with 100 examples; the other parts do not change"}


# ---------------------------------------------------------------- report

def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def table(result: dict) -> str:
    """A compact text table of the per-model summary."""
    head = (f"{'model':<22}{'cls':>4}{'exact s':>9} | {'estimator':<10}{'sec':>8}{'x exact':>8}{'rho med':>8}"
            f"{'F1 nec':>7}{'F1 n-i':>7}{'agree':>7} | screen: {'conf%':>6}{'exact%':>7}{'FN':>8}{'95% CI':>14}"
            f"{'relab':>6}")
    lines = [head, "-" * len(head)]
    for m, r in result["models"].items():
        s = r["summary"]
        sc = s["screened"]
        ci = sc["false_negative_ci"]
        for i, name in enumerate(ESTIMATES + ("screened",)):
            e = s[name]
            left = f"{m if i == 0 else '':<22}{len(s['classes']) if i == 0 else '':>4}" \
                   f"{fmt(s['exact']['seconds'], '.1f') if i == 0 else '':>9} | {name:<10}{e['seconds']:>8.2f}" \
                   f"{fmt(e['ratio_to_exact'], '.3f'):>8}"
            if name == "screened":
                lines.append(left + f"{'':>8}{'':>7}{'':>7}{'':>7} | {'':>8}{fmt(sc['confirmed_share'], '.1%'):>6}"
                                    f"{fmt(sc['exact_share'], '.1%'):>7}{sc['missed']:>4}/{sc['sampled']:<3}"
                                    f"{(f'[{ci[0]:.3f},{ci[1]:.3f}]' if ci else '-'):>14}{sc['relabelled']:>6}")
            else:
                lines.append(left + f"{fmt(e['spearman']['median'], '.3f'):>8}{e['f1']['necessary']:>7.3f}"
                                    f"{e['f1']['non_irrelevant']:>7.3f}{e['label_agreement']:>7.3f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the models of the pipeline

def section_of(params: dict, model: str) -> str:
    for section in SECTIONS:
        if model in (params.get(section) or {}).get("models", []):
            return section
    raise SystemExit(f"{model} is in none of {SECTIONS}.models of params.yaml")


def results_graph(path: Path, s: Settings, idx: torch.Tensor, model, x: torch.Tensor, k: int,
                  run_md5: str | None = None, model_md5: str | None = None) -> tuple:
    """(graph, '') from a pipeline graph file when it was found with these settings, on these examples (`idx`, their
    inputs `x`), by this model, else (None, why not). The model: the md5 the pipeline's run recorded (`run_md5`,
    results/<section>/discovery.json) where there is one, and always the classifier layer's exact mean effects
    recomputed (one layer: a graph of an earlier model, found on the same examples, differs there)."""
    if not path.is_file():
        return None, f"no {path}"
    try:
        g = discovery.ClassGraph.load(path)
    except (OSError, ValueError, TypeError, KeyError) as e:
        return None, f"{path} unreadable ({e})"
    wanted = {"test": s.test, "alpha": s.alpha, "min_effect": s.min_effect, "fallback": s.fallback,
              "intervention": dataclasses.asdict(s.intervention), "examples": idx.tolist(), "effects": "exact",
              "layers": list(reversed(discovery.layer_chain(model, s.layers)))}
    have = {"test": g.test, "alpha": g.alpha, "min_effect": g.min_effect, "fallback": g.fallback,
            "intervention": g.intervention, "examples": g.examples, "effects": g.effects,
            "layers": [lg.layer for lg in g.layers]}
    stale = [key for key in wanted if wanted[key] != have[key]]
    if stale:
        return None, f"{path} found with other {', '.join(stale)} (the pipeline is re-running, or the settings differ)"
    if run_md5 and model_md5 and run_md5 != model_md5:
        return None, f"{path} is from another model (md5 {run_md5} in the pipeline's discovery.json, {model_md5} now)"
    top = g.layers[0]
    traced = TracedModel(model)
    traced.cache(x, where=f"class {k}")
    iv = dataclasses.replace(s.intervention, seed=s.intervention.seed * 1009)
    now = treatment_effects(traced, top.layer, k, top.targets, iv, max_batch=s.max_batch).mean(1)
    tol = 1e-5 * (1 + float(traced.logits.abs().max()))
    if not torch.allclose(now.double(), torch.tensor(top.mean_effect, dtype=torch.float64), rtol=1e-4, atol=tol):
        gap = float((now.double() - torch.tensor(top.mean_effect, dtype=torch.float64)).abs().max())
        return None, f"{path}: {top.layer}'s mean effects differ from this model's by up to {gap:.3g} (another model)"
    return g, ""


def run_model(m: str, params: dict, args, results: Path) -> dict:
    section = section_of(params, m)
    cfg = config.from_dict(discovery.DiscoveryConfig, params[section], section)   # as notebooks/compute/discover_graphs
    cfg.validate(section)
    path = REPO / "models" / f"{m}.pt"
    info = models.model_info(path)
    device = models.resolve_device(args.device or params.get("device", "auto"))
    models.deterministic(device)
    model = models.load_model(path).to(device)
    data_cfg = config.data_config(params)
    if not Path(data_cfg.root).is_absolute():
        data_cfg = dataclasses.replace(data_cfg, root=str(REPO / data_cfg.root))
    halves = data.load_halves(info, data_cfg)
    x, y = halves.x[halves.discovery], halves.y[halves.discovery]
    classes = discovery.check_classes(args.classes if args.classes else cfg.classes, info["num_classes"])
    n = args.examples or cfg.examples_per_class
    s = Settings(test=cfg.test, alpha=cfg.alpha, min_effect=cfg.min_effect if cfg.test == "paired" else 0.0,
                 fallback=cfg.fallback, intervention=cfg.intervention_obj(), layers=cfg.layers.get(m),
                 max_batch=cfg.max_batch, steps=args.steps, margin=args.margin, sample=args.sample)
    pipeline_run = results / section / "discovery.json"
    run = (json.loads(pipeline_run.read_text()).get("models", {}).get(m, {}) if pipeline_run.is_file() else {})
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    rows, notes = [], {}
    for k in classes:
        idx = discovery.class_examples(model, x, y, k, n, correct_only=cfg.correct_only)
        if len(idx) < 2:
            raise SystemExit(f"{m} class {k}: only {len(idx)} examples in the discovery split")
        exact, source = None, "computed"
        if args.exact_from == "results":
            exact, why = results_graph(results / cfg.graphs_dir / m / cfg.test / f"class_{k}.json", s, idx, model,
                                       x[idx], k, run.get("model_md5"), md5)
            if exact is None:
                notes[str(k)] = f"exact computed here: {why}"
            else:
                source = "results (the pipeline's run)"
        t0 = time.perf_counter()
        row = class_benchmark(model, x[idx], k, s, exact, source, halves.data.classes[k], f"{info['name']} ({m})")
        rows.append(row)
        e, ig, sc = row["exact"]["seconds"], row["taylor_ig"]["seconds"], row["screened"]["seconds"]
        print(f"{m} class {k}: exact {e:.2f} s ({row['exact']['source']}), taylor {row['taylor']['seconds']:.2f} s, "
              f"taylor_ig {ig:.2f} s, screened {sc:.2f} s, screened relabelled "
              f"{row['screened']['differences']['relabelled']} ({time.perf_counter() - t0:.0f} s in all)", flush=True)
    return {"section": section, "name": info["name"], "dataset": info["dataset"], "examples": n,
            "device": str(device), "settings": {"test": s.test, "alpha": s.alpha, "min_effect": s.min_effect,
                                                "fallback": s.fallback,
                                                "intervention": dataclasses.asdict(s.intervention),
                                                "layers": s.layers, "max_batch": s.max_batch,
                                                "correct_only": cfg.correct_only},
            "model_md5": md5, "exact_notes": notes,
            "pipeline_torch_threads": (json.loads(pipeline_run.read_text()).get("torch_threads")
                                       if pipeline_run.is_file() and args.exact_from == "results" else None),
            "summary": summarize(rows), "per_class": rows}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="training stages (models/<name>.pt)")
    p.add_argument("--classes", nargs="+", type=int, default=None, help="default: the section's classes")
    p.add_argument("--examples", type=int, default=None, help="default: the section's examples_per_class")
    p.add_argument("--steps", type=int, default=8, help="taylor_ig / screened: gradients along the path")
    p.add_argument("--margin", type=float, default=4.0, help="screened: confirm |z| >= z_crit / margin")
    p.add_argument("--sample", type=float, default=0.1, help="screened: share of the rest confirmed (false negatives)")
    p.add_argument("--exact-from", choices=("results", "compute"), default="results",
                   help="the exact graph from the pipeline's graph file where it matches (results), or found here")
    p.add_argument("--results", default=str(REPO / "results"), help="the pipeline's results folder")
    p.add_argument("--params", default=str(REPO / "params.yaml"))
    p.add_argument("--device", default=None, help="default: params.yaml's device (auto)")
    p.add_argument("--out", default=str(REPO / "reports" / "benchmarks"))
    p.add_argument("--file", default=FILE, help="the JSON's name under --out (another margin beside the default's)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core, as the pipeline)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.margin < 1 or not 0 <= args.sample <= 1:
        raise SystemExit("need --steps >= 1, --margin >= 1 and --sample in [0, 1]")
    missing = [m for m in args.models if not (REPO / "models" / f"{m}.pt").is_file()]
    if missing:
        raise SystemExit(f"no trained model for {missing} under {REPO / 'models'}: run their training stages first")
    training.set_threads(args.threads)
    params = config.load_params(args.params)
    for m in args.models:
        section_of(params, m)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    result = {"what": "first-order estimates (taylor, taylor_ig) and the screened discovery against the exact engine "
                      "(benchmarks/first_order.py, issue 33)",
              "measured": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": training.machine(),
              "settings": {"steps": args.steps, "margin": args.margin, "sample": args.sample,
                           "exact_from": args.exact_from, "examples": args.examples, "classes": args.classes},
              "times": "seconds are sums of per-layer seconds over the layers with targets (what the graph files "
                       "record); wall_seconds also count tracing and the check of the chain",
              "models": {}}
    for m in args.models:
        result["models"][m] = run_model(m, params, args, Path(args.results))
    ratios = {m: r["summary"]["screened"]["ratio_to_exact"] for m, r in result["models"].items()}
    result["paper_scale"] = paper_scale(ratios)
    result["total_seconds"] = time.perf_counter() - t_all
    (out / args.file).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(table(result))
    ps = result["paper_scale"]
    print(f"paper scale (2 cores): graph discovery {ps['discovery_hours_exact']:.0f} h -> "
          f"{fmt(ps['discovery_hours_screened'], '.0f')} h; total {ps['total_days_exact']:.0f} -> "
          f"{fmt(ps['total_days_screened'], '.0f')} days"
          + ("" if ps["total_days_screened"] is not None else
             f" (not measured: {[p for p, u in ps['ratios_used'].items() if u['ratio'] is None]})"))
    print(f"wrote {out / args.file} ({result['total_seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
