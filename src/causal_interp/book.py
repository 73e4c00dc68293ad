"""The offline HTML book of the report (`dvc repro report`, then open reports/book/index.html).

MkDocs with mkdocs-jupyter renders every executed stage notebook under reports/ as one page, and an index page has one
row per figure of the paper (3-11): a thumbnail, the paper's claim, our numbers with their verdicts (the stages'
`summary/*.json` rows, the same words the notebooks print) and links to the notebooks. The site works from the file
system with no network: no search (its index is fetched by script, which browsers refuse on file://), no highlight.js
from a CDN (mkdocs-jupyter highlights code itself), and notebook figures embedded as data URIs.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from .pipeline import REPO, dvc_stages
from .reporting import ROOT_ENV, RUN_ALL_ENV
from .verdicts import CLAIMS, CRITERIA


@dataclass(frozen=True)
class PaperFigure:
    number: int
    claim: str                  # what the paper shows or claims with it
    stages: tuple[str, ...]     # the stages (params sections) that make it, the first one gives the thumbnail;
                                # "stage:pattern" takes only that stage's summary rows whose file name matches
    thumbnail: str              # file name pattern under reports/<first stage>/figures/
    rows_in: int | None = None  # the figure whose row already lists these stages' numbers (not repeated here)


def _claim(key: str) -> str:
    """The claim of `verdicts.CLAIMS`, as the notebooks judge it, without its "(fig. N)"."""
    return re.sub(r" \(fig\. \d+\)$", "", CLAIMS[key])


FIGURES = (
    PaperFigure(3, "Removing a node's edges moves the class logit; the distribution over examples, per layer (LeNet/MNIST).",
                ("discover_graphs", "arch_graphs"), "fig3_effects_train_lenet.png"),
    PaperFigure(4, "The causal graph of digit 3: necessary (red) and distracting nodes, layer by layer.",
                ("discover_graphs", "arch_graphs"), "fig4_graph_train_lenet_*.png", rows_in=3),
    PaperFigure(5, "Causal responses of the graph's nodes, up to conv2, locate the digit's strokes.",
                ("discover_graphs", "arch_graphs"), "fig5_graph_responses_train_lenet.png", rows_in=3),
    PaperFigure(6, "ResNet18: the response to each relevant node's top-1 filter; its local maxima mark object parts.",
                ("discover_graphs", "arch_graphs"), "fig6_top_filter_finetune_cifar10.png", rows_in=3),
    PaperFigure(7, f"Reliability: {_claim('reliability')}.", ("reliability", "lenet_verdicts:fig7-*"),
                "fig7_reliability*.png"),
    PaperFigure(8, f"LeNet and ResNet18: {_claim('le')}; {_claim('irof')}; {_claim('irof_mwp')}.",
                ("evaluate_explanations", "authors_protocol", "lenet_verdicts:fig8-*"), "fig8_fair.png"),
    PaperFigure(9, "Four ImageNet architectures in the paper (see the notes below for the models here): the LE claim of "
                   "figure 8 (\"in each experiment\"); IROF is judged by figure 8's criterion, an extension (the paper's "
                   "fig. 9 IROF claim is that all methods rank the four models alike).", ("arch_evaluate",),
                "fig9_fair.png"),
    PaperFigure(10, f"Fidelity: {_claim('fidelity')}.", ("fidelity", "arch_fidelity", "lenet_verdicts:fig10-*"),
                "fig10_fidelity*.png"),
    PaperFigure(11, f"Repair: {_claim('repair')}.", ("repair", "arch_repair", "lenet_verdicts:fig11-*"),
                "fig11_repair*.png"),
)
ROW_ORDER = ("class", "all-classes", "false-positive-rate")   # fig. 11: the class accuracy the paper plots, then the
                                                              # two numbers beside it that tell repair from bias


def _row_key(stem: str) -> tuple[str, int]:
    """Sort key of a summary file: its model prefix, then ROW_ORDER within it (other rows: file-name order)."""
    for rank, suffix in enumerate(ROW_ORDER):
        if stem.endswith(f"-{suffix}"):
            return stem[:-len(suffix) - 1], rank
    return stem, 0


def summary_files(reports: Path, stage: str) -> list[Path]:
    """The summary files (reporting.write_summary) of `stage` or "stage:pattern": per model, fig. 11's class row first."""
    stage, _, pattern = stage.partition(":")
    return sorted((reports / stage / "summary").glob(f"{pattern or '*'}.json"), key=lambda p: _row_key(p.stem))


def stage_lines(reports: Path, stages) -> list[str]:
    """One line per summary row of `stages`: "`stage`: what: **ours** (paper N): verdict". A verdict the row before
    (same stage, same model) already gave is not repeated: fig. 11's three numbers share one."""
    lines, before = [], None
    for spec in stages:
        stage = spec.partition(":")[0]
        for path in summary_files(reports, spec):
            row = json.loads(path.read_text())
            said = (stage, _row_key(path.stem)[0], row.get("verdict"))
            lines.append(f"`{stage}`: {row_text(row, verdict=said != before)}")
            before = said
    return lines


def _number(v) -> str:
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return "" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def row_text(row: dict, verdict: bool = True) -> str:
    """One summary row in words: what, ours (paper), verdict (unless `verdict` is False)."""
    text = f"{row['what']}: **{_number(row['ours'])}**"
    if row.get("paper") is not None:
        text += f" (paper {_number(row['paper'])})"
    if verdict and row.get("verdict"):
        text += f": {row['verdict']}"
    return text.replace("|", "\\|")


def index_page(reports: Path, pages: dict[str, str], params_file: Path = REPO / "params.yaml",
               docs: dict[str, str] | None = None) -> str:
    """Markdown of the index: one table row per paper figure, then the earlier paper's and the beyond-the-paper rows,
    the notes on reading them, and the claims with their criteria. `pages`: stage -> page file of its notebook;
    `docs`: page file -> title of the documentation pages, linked at the end."""
    lines = ["# Causal Analysis for Robust Interpretability of Neural Networks: the replication report", "",
             "One row per figure of the paper. *Our numbers* are each stage's summary rows (`summary/*.json`; the "
             "headlines among them, all but those `book.NOT_HEADLINES` names, are what `dvc metrics show` prints): the "
             "number and the outcome. The stage's notebook gives each verdict whole: the claim, the protocol, the "
             "number with its bootstrap 95% interval and the criterion (the claims and criteria are listed at the "
             "end). Thumbnails come from the first stage named.", "",
             "| figure | | the paper | our numbers and verdicts | notebooks |", "|---|---|---|---|---|"]
    stale = stale_block(reports)
    if stale:
        lines[2:2] = [stale]
    for fig in FIGURES:
        first = fig.stages[0]
        thumbs = sorted((reports / first / "figures").glob(fig.thumbnail))
        thumb = f"[![figure {fig.number}](figures/{first}/{thumbs[0].name}){{ width=220 }}]({pages[first]})" if (
            thumbs and first in pages) else "(not run)"
        rows = [f"(graph sizes: see figure {fig.rows_in})"] if fig.rows_in else stage_lines(reports, fig.stages)
        links = _links(fig.stages, pages)
        lines.append(f"| {fig.number} | {thumb} | {fig.claim} | {'<br>'.join(rows) or '(no summary)'} | {links} |")
    shown = {s.partition(":")[0] for f in FIGURES for s in f.stages}
    for key, head, stages in result_groups(params_file):
        if key in ("earlier", "latent", "beyond"):
            shown |= set(stages)
            lines += ["", head, "", *[f"* {line}" for line in stage_lines(reports, stages)],
                      f"* notebooks: {_links(stages, pages)}"]
    why = default_test_markdown(reports)
    if why:
        lines += ["", why]
    notes = reading_notes(reports)
    if notes:
        lines += ["", notes]
    from .agreement import CRITERION as AGREEMENT_CRITERION
    from .sanity import FAIL_ABOVE, PASS_BELOW

    lines += ["", "**The claims and their criteria** (`src/causal_interp/verdicts.py`, the same words in every notebook):",
              "", *[f"* **{CLAIMS[k]}**: {CRITERIA[k]}." for k in CLAIMS],
              f"* **`metric_agreement`, a property's claim** (`agreement.py`): {AGREEMENT_CRITERION}.",
              f"* **`sanity_checks`**: passes when the 95% interval of the similarity between the two maps it compares "
              f"lies below {PASS_BELOW}, fails when it lies above {FAIL_ABOVE}, and is not resolved otherwise."]
    other = [s for s in pages if s not in shown]
    lines += ["", "## The other stages", ""] + [f"* [{s}]({pages[s]})" for s in other]
    lines += ["", "Every class graph, interactively: [the graph explorer](graph_explorer.md)."]
    if docs:
        lines += ["", "## Documentation", "", "How to run, change and extend the kit:", ""] + \
                 [f"* [{title}]({page})" for page, title in docs.items()]
    return "\n".join(lines) + "\n"


def _links(stages, pages: dict[str, str]) -> str:
    names = dict.fromkeys(s.partition(":")[0] for s in stages)
    return ", ".join(f"[{s}]({pages[s]})" for s in names if s in pages) or "(not run)"


def _metrics(reports: Path, stage: str) -> dict | None:
    try:
        return json.loads((reports / stage / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def irof_against_mwp(reports: Path) -> list[str]:
    """Per model of `evaluate_explanations/medians.csv`: the causal IROF median and interval beside MWP's (Excitation
    Backprop) and the best other method's, in words."""
    import csv

    try:
        rows = [r for r in csv.DictReader((reports / "evaluate_explanations" / "medians.csv").open()) if r["metric"] == "IROF"]
    except FileNotFoundError:
        return []
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        got = {r["method"]: r for r in rows if r["model"] == model}
        if "Causal" not in got or "ExcitationBackprop" not in got:
            continue
        say = lambda m: f"{float(got[m]['median']):.1f} [{float(got[m]['ci_low']):.1f}, {float(got[m]['ci_high']):.1f}]"
        best = max((m for m in got if not m.startswith("Causal")), key=lambda m: float(got[m]["median"]))
        out.append(f"`{model}` causal {say('Causal')}, MWP {say('ExcitationBackprop')}"
                   + (f", best {best} {say(best)}" if best != "ExcitationBackprop" else " (the best other method)"))
    return out


def reading_notes(reports: Path) -> str:
    """What the numbers do not say by themselves, from what the stages recorded (their metrics.json): the runs behind
    fig. 7, how the architectures were trained and sampled, the methods a model could not run, how close the authors'
    protocol comes to the published numbers. The README's results block and the book's index both show it."""
    from .protocols import PUBLISHED

    metrics = functools.cache(functools.partial(_metrics, reports))   # each stage's metrics.json read once
    notes = []
    rel = metrics("reliability")
    if rel:
        runs = []
        for model, s in rel["settings"]["models"].items():
            classes = "every class" if s.get("classes") is None else "class " + ", ".join(map(str, s["classes"]))
            runs.append(f"`{model}` {s['runs']} runs, {classes}, {'every layer' if not s.get('layers') else ', '.join(s['layers'])}")
        lv = metrics("lenet_verdicts")
        if lv and lv["settings"].get("reliability_runs"):
            classes = lv["settings"].get("classes")
            runs.append(f"the `lenet_verdicts` rows {lv['settings']['reliability_runs']} runs per class, "
                        f"{'every digit' if classes is None else 'digits ' + ', '.join(map(str, classes))}, per seed")
        notes.append("**Reliability (fig. 7):** the paper runs 1000 soft interventions; the `reliability` rows come from "
                     + "; ".join(runs) + ".")
    graphs = metrics("arch_graphs")
    if graphs:
        models = graphs["settings"]["models"]
        trained = {m: metrics(m) for m in models}
        how = "; ".join(f"`{m}` {t['dataset']} {t['image_size']}×{t['image_size']} px, {t['epochs']} epochs, "
                        f"{'ImageNet weights' if t.get('pretrained') else 'from scratch'}"
                        for m, t in trained.items() if t)
        names = (trained[models[0]] or {}).get("per_class_accuracy", {})
        classes = [f"{k} ({list(names)[k]})" if k < len(names) else str(k) for k in graphs["settings"]["classes"] or []]
        line = (f"**The architectures (figs. 9–11):** the paper uses ImageNet-pretrained models on ImageNet; here: "
                f"{how}; so their accuracies are modest (see the trained models). Their graphs cover class"
                f"{'es' if len(classes) > 1 else ''} {', '.join(classes) or 'all'} with "
                f"{graphs['settings']['examples_per_class']} examples each")
        ev = metrics("arch_evaluate")
        if ev:
            line += (f"; fig. 9 scores {ev['settings']['examples_per_class']} evaluation examples per class of those "
                     "classes, so its intervals are wide")
        notes.append(line + ".")
    for stage in ("evaluate_explanations", "arch_evaluate"):
        failed = (metrics(stage) or {}).get("failed_methods") or []
        if failed:
            notes.append(f"**Left out in `{stage}`** (the method raised an error; recorded in its metrics.json): "
                         + "; ".join(f"{f['method']} on `{f['model']}` (\"{f['error'].split('. ')[0]}\")" for f in failed) + ".")
    mwp = irof_against_mwp(reports)
    if mwp:
        notes.append("**Fig. 8's IROF against MWP** (Excitation Backprop), the method the paper says the causal maps are "
                     "comparable to (judged by its own verdict; the IROF verdict compares with the best other method), "
                     "fair protocol, the causal maps of "
                     "the map layer listed first in `evaluate_explanations.layers`, median [95% interval]: " + "; ".join(mwp) + ".")
    fid = metrics("arch_fidelity")
    if fid:
        classes = {m: len((metrics(m) or {}).get("per_class_accuracy", {})) for m in fid["models"]}
        weak = [f"`{m}` {v['accuracy_unmasked']:.3f} (chance {1 / classes[m]:.2f})" for m, v in fid["models"].items()
                if classes[m] and v["accuracy_unmasked"] < 2 / classes[m]]
        if weak:
            notes.append("**Below twice chance before any masking** (class accuracy on the graph classes, "
                         "`arch_fidelity`): " + ", ".join(weak) + f"; {'its' if len(weak) == 1 else 'their'} figs. 10-11 rows "
                         "say little.")
    ap = metrics("authors_protocol")
    if ap and "reproduction_bar" in ap:
        le = {r["method"]: r["median"] for r in ap["medians"] if r["protocol"] == "authors" and r["metric"] == "LE"}
        factors = [le[m] / v for m, v in PUBLISHED["LE"].items() if m in le]
        met = "reproduce" if ap["reproduction_bar"].get("met") else "do NOT reproduce"
        notes.append("**The published fig. 8 numbers (LeNet, digit 3)** are compared only with numbers computed the "
                     f"authors' way (`authors_protocol`). There they {met} by the bar its notebook states: the same "
                     "ordering of the five LE medians, every baseline-to-causal LE ratio within a factor of 2 of the "
                     "published one, and the causal IROF within 25%"
                     + (f"; the LE medians themselves are {min(factors):.1f}-{max(factors):.1f} times the published ones"
                        if factors else "")
                     + ". The kit's own scores use one fair protocol for every method.")
    ran = {s: m["settings"] for s in ("sanity_checks", "metric_agreement") if (m := metrics(s))}
    if ran:
        def per_class(n) -> str:
            return ", ".join(f"`{k}` {v}" for k, v in n.items()) if isinstance(n, dict) else str(n)

        default = [f"`{s}`" for s, st in ran.items() if not st.get("layers")]
        chosen = [f"`{s}` from " + ", ".join(f"`{k}` {v}" for k, v in st["layers"].items())
                  for s, st in ran.items() if st.get("layers")]
        maps = ([f"{' and '.join(default)} from each model's default map layer, the last conv layer of its chain (for "
                 "ResNet18 not the layer of fig. 8's headline, which `evaluate_explanations.layers` sets)"]
                if default else []) + chosen
        def examples(stage, st) -> str:
            if stage == "sanity_checks" and "mprt_examples_per_class" in st:
                return (f"{st['examples_per_class']} examples per class (random logit), {st['mprt_examples_per_class']} "
                        f"(model randomisation, graphs rediscovered from {st.get('rediscover_examples')})")
            return f"{per_class(st['examples_per_class'])} examples per class"

        notes.append("**Beyond the paper:** " + "; ".join(f"`{s}` {examples(s, st)}" for s, st in ran.items())
                     + ". Maps: " + "; ".join(maps) + ".")
    scored = {"evaluate_explanations": "the kit's maps (eq. 3) from the paired-test graphs, on evaluation examples of every "
                                       "class, against eight baselines",
              "authors_protocol": "the authors' map from the authors' graph (two-sample test with their fallback), on "
                                  "digit 3, against the four baselines the authors scored, then also against RISE (masks drawn per call, "
                                  "and one fixed mask set to show the artefact)",
              "lenet_verdicts": "the authors' map from each kind of graph, on digit 3, against the four baselines the "
                                "authors scored, LE only"}
    scored = {s: v for s, v in scored.items() if metrics(s)}
    if len(scored) > 1:
        notes.append("**\"Fair protocol\"** names one way of scoring: every map |a| / max|a| per example, the same "
                     "seeded perturbations for every method, IROF as the area over the curve. What it scores differs by "
                     "stage: " + "; ".join(f"`{s}` {v}" for s, v in scored.items()) + ". `evaluate_explanations` "
                     "perturbs the model's standardised inputs, the other two raw pixels in [0, 1] (as the authors), so "
                     "their LE values are not on one scale.")
    lv = metrics("lenet_verdicts")
    if lv:
        line = ("**What a row's number means when the row does not say:** a `lenet_verdicts` row gives the share of training seeds "
                "for which the claim holds, and its fig. 8 rows judge the LE claim only, on "
                f"{lv['settings'].get('le_examples')} examples of digit {lv['settings'].get('le_class')}")
        same = [f for f in sorted({r["figure"] for r in lv["rows"]}) if all(
            len({r["sentence"].replace(f", {r['protocol']} graphs", "") for r in lv["rows"]
                 if r["figure"] == f and r["seed"] == seed}) == 1 for seed in {r["seed"] for r in lv["rows"]})]
        if same:
            line += (f"; fig. {', '.join(map(str, same))} gives the same numbers on every kind of graph, seed by seed "
                     "(its unmasked, random and weight-magnitude numbers do not use the graph, and the critical ranking "
                     "takes the class accuracy to the same value on every graph), so "
                     + ("it is given as one row: an agreement across the graphs would show no robustness to the graph"
                        if all((reports / "lenet_verdicts" / "summary" / f"fig{f}-every-graph.json").is_file() for f in same)
                        else "the agreement of its rows across the graphs does not show robustness to the graph"))
        if metrics("metric_agreement"):
            line += ("; a `metric_agreement` row gives how many of the property's metrics rank the causal maps first")
        notes.append(line + ".")
    notes += ["**Graph density decides some verdicts:** see *Which test of significance, and why*; figure 7's "
              "\"holds\" is found on the default (dense) graphs.",
              "**Repair (fig. 11):** class accuracy is the kit's reading of the paper's \"test accuracy ... on these "
              "samples\" (the class studied); the all-class accuracy and the class's "
              "false-positive rate beside it, under the same masks, tell a repair from a bias towards the class."]
    return "**Reading the results.** What the numbers do not say by themselves:\n\n" + "\n".join(f"* {n}" for n in notes)


README_BEGIN, README_END = "<!-- results:begin (make readme) -->", "<!-- results:end -->"   # docs/results.md
HEADLINES_BEGIN, HEADLINES_END = "<!-- headlines:begin (make readme) -->", "<!-- headlines:end -->"   # README.md
RESULTS_PAGE = Path("docs") / "results.md"    # beside the README: the whole results block, which `make readme` rewrites too


BEYOND_THE_PAPER = ("sanity_checks", "metric_agreement", "benchmarks")
EARLIER_PAPER = ("per_example",)   # the earlier version of the method (interventional-black-box-explanations.txt)
LATENT_METHOD = ("latent_intervention",)   # the third method of the line of work (latent-space-explanation-by-...txt)


SMALL_GRAPHS = {"floor": "effect-size-floor graphs", "authors": "authors'-test graphs"}   # the graphs of the authors' size
PROTOCOL_NAMES = {"kit": "paired test (the default)", "floor": "paired test, effect-size floor 0.15",
                  "authors": "the authors' two-sample test with their fallback"}


def default_test_markdown(reports: Path) -> str:
    """Why the default test of significance is what it is: per graph protocol of stage `lenet_verdicts`, LeNet's
    graph of its LE class (digit 3) (necessary parents per layer, seed 0) beside the authors' committed graph, and the verdict of each
    figure across the training seeds; the figures whose verdict changes with the protocol are named. Empty when
    `lenet_verdicts` or `authors_protocol` has not run."""
    import csv

    try:
        metrics = json.loads((reports / "lenet_verdicts" / "metrics.json").read_text())
        rows, k = metrics["rows"], str(metrics["settings"].get("le_class", 3))
        outcomes = list(csv.DictReader((reports / "lenet_verdicts" / "stability.csv").open()))
        committed = json.loads((reports / "authors_protocol" / "metrics.json").read_text())["graph_sizes"][
            "authors' committed graph"]
    except (FileNotFoundError, KeyError):
        return ""
    layers = list(committed)
    sizes = {r["protocol"]: r["graph_sizes"].get(k) for r in rows if r["seed"] == rows[0]["seed"] and r["figure"] == 7}
    figures = sorted({int(o["figure"]) for o in outcomes})
    verdict = {(o["protocol"], int(o["figure"])): o["verdict across seeds"] for o in outcomes}
    head = f"| graphs | digit {k}: necessary parents (" + ", ".join(layers) + ") | " + \
        " | ".join(f"fig. {f}" for f in figures) + " |"
    lines = [head, "|" + "---|" * (2 + len(figures))]
    for prot, name in PROTOCOL_NAMES.items():
        if prot in sizes:
            lines.append(f"| {name} | {' / '.join(str(v) for v in (sizes[prot] or [])[:len(layers)])} | "
                         + " | ".join(verdict.get((prot, f), "") for f in figures) + " |")
    lines.append(f"| the authors' committed graph | {' / '.join(str(committed[l]) for l in layers)} |"
                 + " |" * len(figures))
    other = {f: [SMALL_GRAPHS[p] for p in SMALL_GRAPHS if verdict.get((p, f), "") != verdict.get(("kit", f), "")]
             for f in figures}
    changes = [f"fig. {f} (on the {' and the '.join(other[f])})" for f in figures if other[f]]
    return "\n".join([
        "**Which test of significance, and why.** Every stage but `authors_protocol` (which scores the authors' own "
        "graph and map) uses the graphs of the paired test without an effect-size floor: it is eq. 1 applied to per-example effects, with no threshold fitted to anything. The "
        f"table (stage `lenet_verdicts`, LeNet retrained with each seed) shows what that choice does: digit {k}'s graph "
        f"keeps {sum((sizes.get('kit') or [])[:len(layers)])} necessary parents over these layers, the authors' "
        f"committed graph {sum(committed.values())}; and the verdicts of "
        + (", ".join(changes) or "no figure")
        + " change when the same checks run on graphs of the authors' size. Those verdicts are therefore reported "
        "for every kind of graph, and each one is read with the graphs it was found on.", "", *lines, ""])


def stale_block(reports: Path) -> str:
    """The stale stages (`staleness.markdown`) of the pipeline whose reports these are; "" when all are up to date or
    when `reports` is not the pipeline's own (a smoke run's)."""
    from . import staleness

    root = reports.parent
    if not ((root / "dvc.yaml").is_file() and (root / "dvc.lock").is_file()):
        return ""
    return staleness.markdown(staleness.stale_stages(root))


def results_markdown(reports: Path, params_file: Path = REPO / "params.yaml") -> str:
    """The README's results: the stale stages if any, the trained models' accuracy, then per paper figure its claim
    and every headline row (number and verdict) of the stages that make it, then the checks beyond the paper; from the
    committed `summary/*.json`, worded as in the notebooks."""
    stale = stale_block(reports)
    lines = [stale] if stale else []
    for _, head, stages in result_groups(params_file):
        rows = [f"  * {line}" for line in stage_lines(reports, stages)]
        lines += [f"* {head}", *(rows or ["  * (not run yet)"])]
    why, notes = default_test_markdown(reports), reading_notes(reports)
    return "\n".join(lines) + "\n" + (f"\n{why}" if why else "") + f"\n{notes}\n"


HEADLINE_KEYS = ("ours", "paper", "verdict")


def result_groups(params_file: Path = REPO / "params.yaml") -> list[tuple[str, str, tuple]]:
    """(short key, heading, stages) of the report's results, in order: the trained models, every paper figure with
    rows of its own, the earlier paper, the checks beyond the paper. The README block and `reports/summary/` both
    follow it."""
    from .config import read_yaml

    trained = ("train_lenet", "finetune_cifar10", *(read_yaml(params_file).get("architectures") or []))
    return [("training", "**The trained models.**", trained),
            *[(f"fig{fig.number:02d}", f"**Figure {fig.number}.** {fig.claim}", fig.stages) for fig in FIGURES
              if not fig.rows_in],
            ("earlier", "**The earlier paper:** per-example G+ / G- graphs, causal filters, corrected wrong "
                        "predictions.", EARLIER_PAPER),
            ("latent", "**The third method of the line of work:** latent-space explanation by intervention (a discrete "
                       "VAE's bits flipped), on data with a planted bias whose discovery is measured.", LATENT_METHOD),
            ("beyond", "**Beyond the paper:** sanity checks, agreement of metrics, speed of the engine.",
             BEYOND_THE_PAPER)]


# Rows that stay in their stage's summary and the README but are not headlines (`dvc metrics show`): the headlines are
# one row per claim and model under the pipeline's defaults, the authors'-protocol reproduction of fig. 8 (LeNet digit 3,
# as published, under both protocols), the LeNet verdicts across training seeds on the default and on the authors'
# graphs, the earlier paper's claims and the checks beyond the paper.
NOT_HEADLINES = (
    "training-*",                                    # accuracies: context, not claims (each training stage's summary)
    "fig08-evaluate_explanations-train_lenet-*",     # LeNet's fig. 8 headline is authors_protocol's digit 3, as published
    "fig08-evaluate_explanations-*-*.*-*",           # a second map layer's rows (its name has a dot: layer4.1.conv2)
    "fig09-arch_evaluate-*-*.*-*",
    "*-lenet_verdicts-*-floor",                      # the effect-size-floor graphs: a third protocol, in lenet_verdicts
    "fig10-arch_fidelity-*", "fig11-arch_repair-*",  # the architectures' figs. 10-11: the kit's extension, in its stages
    "fig11-*-all-classes", "fig11-*-false-positive-rate",   # the bias numbers beside fig. 11's class accuracy
)


def headline_rows(reports: Path, params_file: Path = REPO / "params.yaml") -> dict[str, dict]:
    """The report's headline numbers, `{file name: {ours, paper, verdict}}` for `reports/summary/` (the pipeline's only
    `dvc metrics` file set): every summary row of a paper figure's stages that carries a verdict or a published number,
    then the earlier paper's and the checks beyond the paper, less the rows `NOT_HEADLINES` keeps in their stages. The
    file name says what the number is (figure, stage, row); the words of the verdict are the stage's own."""
    from fnmatch import fnmatchcase

    groups = [(key, spec) for key, _, stages in result_groups(params_file) for spec in stages]
    out = {}
    for head, spec in groups:
        stage, _, pattern = spec.partition(":")
        for p in sorted((reports / stage / "summary").glob(f"{pattern or '*'}.json")):
            row = json.loads(p.read_text())
            name = f"{head}-{stage}" if p.stem == stage else f"{head}-{stage}-{p.stem}"
            if (row.get("verdict") or row.get("paper") is not None) and not any(
                    fnmatchcase(name, pat) for pat in NOT_HEADLINES):
                out[name] = {k: row.get(k) for k in HEADLINE_KEYS}
    return out


SEEDS = "LeNet ×3 seeds"    # a lenet_verdicts row: the share of training seeds for which the claim holds
# The README's verdict table: one row per claim, made of the headline rows (`headline_rows`, what `dvc metrics show`
# prints). Each claim lists the headline names (fnmatch patterns) that judge it and how each is labelled in its row:
# "{model}" is the model the row is about (`model_label`).
HEADLINE_TABLE = (
    (CLAIMS["reliability"], (("fig07-reliability-*", "{model}"), ("fig07-lenet_verdicts-fig7-kit", f"{SEEDS} (kit graphs)"),
                             ("fig07-lenet_verdicts-fig7-authors", f"{SEEDS} (authors' graphs)"))),
    (f"{CLAIMS['le']} (fig. 8)", (("fig08-evaluate_explanations-*-LE", "{model}"),
                                 ("fig08-authors_protocol-fair-causal-le", "LeNet digit 3"),
                                 ("fig08-lenet_verdicts-fig8-kit", f"{SEEDS} (kit graphs)"),
                                 ("fig08-lenet_verdicts-fig8-authors", f"{SEEDS} (authors' graphs)"))),
    (f"{CLAIMS['irof']} (fig. 8)", (("fig08-evaluate_explanations-*-IROF", "{model}"),
                                   ("fig08-authors_protocol-fair-causal-irof", "LeNet digit 3"))),
    ("fig. 8's published LeNet digit-3 numbers, recomputed the authors' way (`authors_protocol`)",
     (("fig08-authors_protocol-authors-causal-le", "LE median"),
      ("fig08-authors_protocol-authors-causal-irof-auc", "IROF (area under the curve)"),
      ("fig08-authors_protocol-authors-reproduction", "LE order, ratios within 2x, IROF within 25%"))),
    ("fig. 8's LE claim on the architectures (fig. 9)", (("fig09-*-LE", "{model}"),)),
    ("fig. 8's IROF claim on the architectures (fig. 9)", (("fig09-*-IROF", "{model}"),)),
    (f"{CLAIMS['irof_mwp']} (figs. 8 and 9)", (("fig08-evaluate_explanations-*-IROF-MWP", "{model} (fig. 8)"),
                                              ("fig09-*-IROF-MWP", "{model} (fig. 9)"))),
    (CLAIMS["fidelity"], (("fig10-fidelity-*", "{model}"),
                          ("fig10-lenet_verdicts-fig10-every-graph", f"{SEEDS} (kit, floor and authors' graphs)"))),
    (CLAIMS["repair"], (("fig11-repair-*", "{model}"), ("fig11-lenet_verdicts-fig11-kit", f"{SEEDS} (kit graphs)"),
                        ("fig11-lenet_verdicts-fig11-authors", f"{SEEDS} (authors' graphs)"))),
    (CLAIMS["conv1_filters"], (("earlier-per_example-conv1-filters", "Jaccard"),)),
    (CLAIMS["correction"], (("earlier-per_example-correction-*", "share corrected"),)),
    ("the third method: the classifier keeps its accuracy on the DVAE-reconstructed representation (Table 1)",
     (("latent-latent_intervention-*-accuracy", "{model}"),)),
    ("the third method: flipping the latent bits flips the prediction (Table 1)",
     (("latent-latent_intervention-*-flipped", "{model}"),)),
    ("the third method: the regulariser raises the shared information (Table 2)",
     (("latent-latent_intervention-*-cosine", "{model}"),)),
    ("beyond the third method: the intervention moves the attribute planted with the positive class (MNIST: red digits; "
     "CIFAR-10: a tinted frame), by training split",
     (("latent-latent_intervention-*-bias-a_majority", "{model}, 70/30 split"),
      ("latent-latent_intervention-*-bias-b_majority", "{model}, mirror split"),
      ("latent-latent_intervention-*-bias-control", "{model}, 50/50 control"))),
    ("beyond the paper, a sanity check: the causal map changes when the model's weights are randomised",
     (("beyond-sanity_checks-*-mprt", "{model}"),)),
    ("beyond the paper, a sanity check: the causal map of the true class differs from another class's",
     (("beyond-sanity_checks-*-random_logit", "{model}"),)),
    ("beyond the paper: every robustness metric ranks the causal maps first (ours: how many do)",
     (("beyond-metric_agreement-*-robustness", "{model}"),)),
    ("beyond the paper: every faithfulness metric ranks the causal maps first (ours: how many do)",
     (("beyond-metric_agreement-*-faithfulness", "{model}"),)),
)
MODEL_LABELS = {"train_lenet": "LeNet", "finetune_cifar10": "ResNet18",
                "mnist": "MNIST task", "cifar10": "CIFAR-10 task"}      # the third method's planted-bias tasks


def model_label(name: str) -> str:
    """The model of a headline row, from its name "<figure>-<stage>-<model>-...": LeNet, ResNet18 (the main study) or
    the architecture (`arch_resnet18` -> resnet18)."""
    model = name.split("-")[2] if name.count("-") >= 2 else name
    return MODEL_LABELS.get(model, model.removeprefix("arch_"))


def headline_table(reports: Path, params_file: Path = REPO / "params.yaml",
                   stale: set[str] | None = None) -> list[tuple[str, list[tuple[str, dict, bool]]]]:
    """`HEADLINE_TABLE` filled in: (claim, [(label, headline row, stale?)]) per claim that has rows, then every headline
    row no claim names (as "other headline rows"), so that the table shows each headline once. `stale`: the stale
    stages' names (a row is stale when its stage or that stage's compute stage is)."""
    from fnmatch import fnmatchcase

    rows, stale = headline_rows(reports, params_file), stale or set()
    left = dict(rows)
    out = []

    def entry(name, label):
        stage = name.split("-")[1]
        return label.format(model=model_label(name)), rows[name], bool({stage, f"compute_{stage}"} & stale)

    for claim, specs in HEADLINE_TABLE:
        entries = []
        for pattern, label in specs:
            for name in [n for n in rows if n in left and fnmatchcase(n, pattern)]:
                entries.append(entry(name, label))
                del left[name]
        if entries:
            out.append((claim, entries))
    if left:
        out.append(("other headline rows", [entry(name, name) for name in left]))
    return out


def headline_markdown(reports: Path, params_file: Path = REPO / "params.yaml") -> str:
    """The README's verdict table (`headline_table`): claim, the paper's number, ours, the verdict (each verdict once,
    with the rows that have it). Above it, how many stages are stale (their list with what changed is on the results
    page, `make status` gives their cost); a number from a stale stage is marked †, unless every number is."""
    from . import staleness

    root = reports.parent
    stale = []
    if (root / "dvc.yaml").is_file() and (root / "dvc.lock").is_file():
        stale = staleness.stale_stages(root)
    table = headline_table(reports, params_file, {s.name for s in stale})
    flags = [old for _, entries in table for _, _, old in entries]
    mark = any(flags) and not all(flags)
    lines = []
    if stale:
        one = len(stale) == 1
        them = "it" if one else "one of them"
        which = (f"every number below comes from {them}" if flags and all(flags) else
                 f"a number marked † comes from {them}" if mark else f"no number below comes from {them}")
        lines += [f"**{len(stale)} {'stage is' if one else 'stages are'} stale:** {'its' if one else 'their'} results "
                  f"come from older code or params (main runs ahead of its results until the next full re-run), and "
                  f"{which}. The [results page](docs/results.md) lists {'it' if one else 'them'} with what changed; "
                  f"`make status` gives {'its' if one else 'each'} re-run's cost.", ""]
    lines += ["| claim | paper | ours | verdict |", "|---|---|---|---|"]
    for claim, entries in table:
        published = [(label, row["paper"]) for label, row, _ in entries if row.get("paper") is not None]
        if len({p for _, p in published}) == 1:
            paper = _number(published[0][1])
        else:
            paper = "<br>".join(f"{label} {_number(p)}" for label, p in published)
        ours = "<br>".join(f"{label} **{_number(row['ours'])}**{'†' if old and mark else ''}"
                           for label, row, old in entries)
        said: dict[str, list[str]] = {}
        for label, row, _ in entries:
            if row.get("verdict"):
                said.setdefault(row["verdict"], []).append(label)
        if len(said) == 1 and len(next(iter(said.values()))) == len(entries):
            verdict = next(iter(said))
        else:
            verdict = "<br>".join(f"{', '.join(labels)}: {v}" for v, labels in said.items())
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in (claim, paper, ours, verdict)) + " |")
    return "\n".join(lines) + "\n"


def write_headlines(reports: Path, params_file: Path = REPO / "params.yaml") -> Path:
    """Write `headline_rows` to `<reports>/summary/`, replacing the folder whole (no row left from an older run)."""
    rows = headline_rows(reports, params_file)
    folder = reports / "summary"
    tmp = reports / ".summary.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, row in rows.items():
        (tmp / f"{name}.json").write_text(json.dumps(row) + "\n")
    replace_dir(tmp, folder)
    return folder


def replace_dir(new: Path, dest: Path) -> None:
    """Put the folder `new` at `dest`, the previous `dest` removed only once the new one is in place."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    shutil.move(str(new), str(dest))
    shutil.rmtree(old, ignore_errors=True)


def update_readme(readme: Path, reports: Path) -> bool:
    """Rewrite the generated blocks of `readme` from `reports`: the headline table (the README's, `HEADLINES_BEGIN`)
    and the whole results block (the results page's, `README_BEGIN`), whichever it has; True if it changed."""
    text = readme.read_text()
    blocks = [(b, e, fill) for b, e, fill in ((HEADLINES_BEGIN, HEADLINES_END, headline_markdown),
                                              (README_BEGIN, README_END, results_markdown)) if b in text and e in text]
    if not blocks:
        raise ValueError(f"{readme} has no results block ({README_BEGIN} ... {README_END}) and no headline table "
                         f"({HEADLINES_BEGIN} ... {HEADLINES_END})")
    new = text
    for begin, end, fill in blocks:
        head, rest = new.split(begin, 1)
        _, tail = rest.split(end, 1)
        new = head + begin + "\n" + fill(reports) + end + tail
    readme.write_text(new)
    return new != text


CSS = """/* the index table: wide pages, wrapped cells, readable thumbnails */
.wy-nav-content { max-width: 1500px; }
.wy-table-responsive table td, .wy-table-responsive table th { white-space: normal; vertical-align: top; }
.wy-table-responsive table td img { width: 220px; max-width: none; }
"""

GRAPH_FOLDERS = ("graphs", "graphs_architectures")     # results/<folder>/<model>/<test>/class_<k>.json


def graph_files(results: Path) -> dict[str, Path]:
    """Every class graph the compute stages wrote (under `results`): {"<model>-<test>-class_<k>": path}, stable order."""
    out = {}
    for folder in GRAPH_FOLDERS:
        for path in sorted((results / folder).glob("*/*/class_*.json")):
            out[f"{path.parent.parent.name}-{path.parent.name}-{path.stem}"] = path
    return out


def explorer_page(pages: dict[str, str], class_names: dict[str, str] | None = None) -> str:
    """Markdown of the graph explorer's index: one link per interactive class graph, grouped by model and test.
    `class_names`: graph name -> the class's name (the link then reads "cat (class 3)")."""
    lines = ["# Graph explorer", "",
             "Every class graph the stages discovered, drawn interactively (plotly): hover over a node for its effect, z "
             "and p; click a legend entry to hide a layer. The static fig. 4 of each stage shows one class per model.", ""]
    groups: dict[str, list[str]] = {}
    for name, page in pages.items():
        model, test, cls = name.rsplit("-", 2)
        label = cls.replace("_", " ")
        if (class_names or {}).get(name):
            label = f"{class_names[name]} ({label})"
        groups.setdefault(f"{model}, {test} test", []).append(f"[{label}](graphs/{page})")
    lines += [f"* **{g}**: " + ", ".join(links) for g, links in groups.items()]
    return "\n".join(lines) + "\n"


def last_run(notebooks) -> int:
    """When the newest of these executed notebooks finished (papermill's `end_time`), in seconds since 1970: the
    book's build date, so that the same reports build the same bytes. 0 (the book then says 1970-01-01) when no
    notebook records it, e.g. notebooks not run by papermill."""
    import nbformat

    ends = [nbformat.read(str(nb), as_version=4).metadata.get("papermill", {}).get("end_time") for nb in notebooks]
    times = [datetime.datetime.fromisoformat(e) for e in ends if e]
    return max([int((t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)).timestamp()) for t in times],
               default=0)


DOCS = "docs"     # the documentation pages (Markdown) beside the README; the book shows them under docs/
DOCS_ORDER = ("running-the-pipeline", "data", "stages", "protocols-and-verdicts", "results", "params",
              "architectures-and-imagenet", "engine", "api", "example-own-model", "deviations", "timing",
              "gpu-and-ray", "sharing-models", "troubleshooting")     # the book's order; a page not named goes last


def docs_pages(root: str | Path = REPO) -> dict[str, str]:
    """The documentation pages of `root`/docs: {file name: title (its first "# " heading)}, in `DOCS_ORDER`, then
    any other page in file-name order."""
    pages = {}
    found = sorted((Path(root) / DOCS).glob("*.md"))
    rank = {name: i for i, name in enumerate(DOCS_ORDER)}
    for page in sorted(found, key=lambda p: (rank.get(p.stem, len(rank)), p.name)):
        title = next((line[2:].strip() for line in page.read_text().splitlines() if line.startswith("# ")), page.stem)
        pages[page.name] = title
    return pages


def mkdocstrings_plugin(root: str | Path = REPO) -> dict:
    """The mkdocstrings plugin that renders the API page's `::: causal_interp.<module>.<name>` directives from the
    package's docstrings, read from `root`/src by static analysis (nothing imported, nothing fetched)."""
    return {"mkdocstrings": {"default_handler": "python", "handlers": {"python": {
        "paths": [str(Path(root) / "src")],
        "options": {"show_root_heading": True, "show_root_full_path": False, "show_source": False,
                    "heading_level": 3, "members_order": "source", "show_signature_annotations": True,
                    "separate_signature": False, "docstring_style": None, "show_bases": False}}}}}


def build(reports: str | Path = REPO / "reports", out: str | Path | None = None, root: str | Path = REPO) -> Path:
    """Build the site into `out` (default reports/book), replacing it only when the build has succeeded."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    reports = Path(reports).resolve()
    out = Path(out).resolve() if out else reports / "book"
    sections = list(dict.fromkeys(s.section for s in dvc_stages(root) if s.notebook and not s.compute))
    missing = [s for s in sections if not (reports / s / f"{s}.ipynb").is_file()]
    if missing:
        print(f"book: no executed notebook yet for {missing}; they are left out (dvc repro runs them first)")
    with tempfile.TemporaryDirectory(prefix="book-") as tmp:
        docs, site = Path(tmp) / "docs", Path(tmp) / "site"
        docs.mkdir()
        pages = {}
        for s in sections:
            if s in missing:
                continue
            shutil.copy(reports / s / f"{s}.ipynb", docs / f"{s}.ipynb")
            pages[s] = f"{s}.ipynb"     # mkdocs rewrites a link to a page source into the page's URL
        for fig in FIGURES:                                 # the notebooks embed their figures; only thumbnails are files
            first = fig.stages[0]
            for thumb in sorted((reports / first / "figures").glob(fig.thumbnail))[:1]:
                (docs / "figures" / first).mkdir(parents=True, exist_ok=True)
                shutil.copy(thumb, docs / "figures" / first / thumb.name)
        documentation = docs_pages(root)
        if documentation:                                   # the pages of docs/, under docs/ in the book
            shutil.copytree(Path(root) / DOCS, docs / DOCS, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        (docs / "index.md").write_text(index_page(reports, pages, docs={f"{DOCS}/{name}": title
                                                                        for name, title in documentation.items()}))
        (docs / "book.css").write_text(CSS)
        from .graph_view import write_pages

        files = graph_files(reports.parent / "results")
        graph_pages = write_pages(files, docs / "graphs")
        names = {n: json.loads(p.read_text()).get("class_name") for n, p in files.items()}
        (docs / "graph_explorer.md").write_text(explorer_page(graph_pages, names))
        nav = [{"Figures of the paper": "index.md"}, {"Graph explorer": "graph_explorer.md"}] + \
              ([{"Documentation": [{title: f"{DOCS}/{name}"} for name, title in documentation.items()]}]
               if documentation else []) + [{s: f"{s}.ipynb"} for s in pages]
        cfg = {"site_name": "Causal analysis: replication report", "docs_dir": str(docs), "site_dir": str(site),
               "use_directory_urls": False, "nav": nav, "markdown_extensions": ["tables", "attr_list"],
               "theme": {"name": "readthedocs", "highlightjs": False}, "extra_css": ["book.css"],
               "plugins": [{"mkdocs-jupyter": {"include_requirejs": False, "ignore_h1_titles": True}}]
               + ([mkdocstrings_plugin(root)] if documentation else [])}
        config_file = Path(tmp) / "mkdocs.yml"
        config_file.write_text(json.dumps(cfg))            # JSON is YAML
        os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
        built = {"SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH") or str(last_run(docs.glob("*.ipynb")))}
        with mock.patch.dict(os.environ, built):     # the pages' build date: when the newest stage ran, not now
            mkdocs_build(load_config(str(config_file)))
        for extra in ("sitemap.xml", "sitemap.xml.gz", "404.html"):     # for web servers only
            (site / extra).unlink(missing_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(site, out)
    print(f"book: {len(pages)} notebooks, {len(documentation)} documentation pages, {len(graph_pages)} interactive "
          f"graphs; open {out / 'index.html'}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causal_interp.book", description=__doc__.splitlines()[0])
    root = Path(os.environ[ROOT_ENV]) if os.environ.get(RUN_ALL_ENV) == "1" and ROOT_ENV in os.environ else REPO
    parser.add_argument("--reports", default=str(root / "reports"), help="the reports folder (default: reports/)")
    parser.add_argument("--out", default=None, help="where the site goes (default: <reports>/book)")
    parser.add_argument("--readme", default=None, help="only rewrite this README's verdict table, and the results "
                                                          f"block of the {RESULTS_PAGE} beside it, from the reports")
    args = parser.parse_args(argv)
    if args.readme:
        readme = Path(args.readme)
        for path in (readme, readme.parent / RESULTS_PAGE):
            if path == readme or path.is_file():
                changed = update_readme(path, Path(args.reports))
                print(f"{path}: generated block {'rewritten' if changed else 'already up to date'}")
        return 0
    build(args.reports, args.out)
    folder = write_headlines(Path(args.reports))
    print(f"book: {len(list(folder.glob('*.json')))} headline rows in {folder} (dvc metrics show)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
