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
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from .pipeline import REPO, dvc_stages
from .reporting import ROOT_ENV, RUN_ALL_ENV


@dataclass(frozen=True)
class PaperFigure:
    number: int
    claim: str                  # what the paper shows or claims with it
    stages: tuple[str, ...]     # the stages (params sections) that make it, the first one gives the thumbnail;
                                # "stage:pattern" takes only that stage's summary rows whose file name matches
    thumbnail: str              # file name pattern under reports/<first stage>/figures/
    rows_in: int | None = None  # the figure whose row already lists these stages' numbers (not repeated here)


FIGURES = (
    PaperFigure(3, "Removing a node's edges moves the class logit; the distribution over examples, per layer (LeNet/MNIST).",
                ("discover_graphs", "arch_graphs"), "fig3_effects_train_lenet.png"),
    PaperFigure(4, "The causal graph of digit 3: necessary (red) and distracting nodes, layer by layer.",
                ("discover_graphs", "arch_graphs"), "fig4_graph_train_lenet_*.png", rows_in=3),
    PaperFigure(5, "Causal responses of the graph's nodes, up to conv2, locate the digit's strokes.",
                ("discover_graphs", "arch_graphs"), "fig5_graph_responses_train_lenet.png", rows_in=3),
    PaperFigure(6, "ResNet18: the response to each relevant node's top-1 filter; its local maxima mark object parts.",
                ("discover_graphs", "arch_graphs"), "fig6_top_filter_finetune_cifar10.png", rows_in=3),
    PaperFigure(7, "Reliability: 98-100% of the hard-intervention graph's nodes reappear in every one of 1000 soft runs.",
                ("reliability", "lenet_verdicts:fig7-*"), "fig7_reliability*.png"),
    PaperFigure(8, "LeNet and ResNet18: the causal maps have the lowest LE by a wide margin; IROF best or on par with MWP.",
                ("evaluate_explanations", "authors_protocol", "lenet_verdicts:fig8-*"), "fig8_fair.png"),
    PaperFigure(9, "Four ImageNet architectures: the same two metrics, the same claims.",
                ("arch_evaluate",), "fig9_fair.png"),
    PaperFigure(10, "Fidelity: masking the top-k% critical neurons of every layer drops accuracy drastically below 20%.",
                ("fidelity", "arch_fidelity", "lenet_verdicts:fig10-*"), "fig10_fidelity*.png"),
    PaperFigure(11, "Repair: masking a growing share of irrelevant/distracting weights at inference improves accuracy.",
                ("repair", "arch_repair", "lenet_verdicts:fig11-*"), "fig11_repair*.png"),
)


def summary_rows(reports: Path, stage: str) -> list[dict]:
    """The headline rows (reporting.write_summary) of `stage` or "stage:pattern", in file-name order."""
    stage, _, pattern = stage.partition(":")
    return [json.loads(p.read_text()) for p in sorted((reports / stage / "summary").glob(f"{pattern or '*'}.json"))]


def _number(v) -> str:
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return "" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def row_text(row: dict) -> str:
    """One summary row in words: what, ours (paper), verdict."""
    text = f"{row['what']}: **{_number(row['ours'])}**"
    if row.get("paper") is not None:
        text += f" (paper {_number(row['paper'])})"
    if row.get("verdict"):
        text += f": {row['verdict']}"
    return text.replace("|", "\\|")


def index_page(reports: Path, pages: dict[str, str]) -> str:
    """Markdown of the index: one table row per paper figure. `pages`: stage -> page file of its notebook."""
    lines = ["# Causal Analysis for Robust Interpretability of Neural Networks: the replication report", "",
             "One row per figure of the paper. *Our numbers* are each stage's summary rows (`summary/*.json`; the "
             "headlines among them, all but those `book.NOT_HEADLINES` names, are what `dvc metrics show` prints); every verdict is worded as in the stage's notebook, which shows the figure, the "
             "protocol and the criterion. Thumbnails come from the first stage named.", "",
             "| figure | | the paper | our numbers and verdicts | notebooks |", "|---|---|---|---|---|"]
    for fig in FIGURES:
        first = fig.stages[0]
        thumbs = sorted((reports / first / "figures").glob(fig.thumbnail))
        thumb = f"[![figure {fig.number}](figures/{first}/{thumbs[0].name}){{ width=220 }}]({pages[first]})" if (
            thumbs and first in pages) else "(not run)"
        rows = [f"`{s.partition(':')[0]}`: {row_text(r)}" for s in fig.stages for r in summary_rows(reports, s)]
        if fig.rows_in:
            rows = [f"(graph sizes: see figure {fig.rows_in})"]
        names = [s.partition(":")[0] for s in fig.stages]
        links = ", ".join(f"[{s}]({pages[s]})" for s in names if s in pages) or "(not run)"
        lines.append(f"| {fig.number} | {thumb} | {fig.claim} | {'<br>'.join(rows) or '(no summary)'} | {links} |")
    why = default_test_markdown(reports)
    if why:
        lines += ["", why]
    other = [s for s in pages if not any(s in (t.partition(":")[0] for t in f.stages) for f in FIGURES)]
    lines += ["", "## The other stages", ""] + [f"* [{s}]({pages[s]})" for s in other]
    lines += ["", "Every class graph, interactively: [the graph explorer](graph_explorer.md)."]
    return "\n".join(lines) + "\n"


README_BEGIN, README_END = "<!-- results:begin (make readme) -->", "<!-- results:end -->"


BEYOND_THE_PAPER = ("sanity_checks", "metric_agreement", "benchmarks")
EARLIER_PAPER = ("per_example",)   # the earlier version of the method (interventional-black-box-explanations.txt)


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
    changes = [f for f in figures if len({verdict.get((p, f), "").split(":")[0] for p in PROTOCOL_NAMES}) > 1]
    return "\n".join([
        "**Which test of significance, and why.** Every stage uses the graphs of the paired test without an "
        "effect-size floor: it is eq. 1 applied to per-example effects, with no threshold fitted to anything. The "
        f"table (stage `lenet_verdicts`, LeNet retrained with each seed) shows what that choice does: digit {k}'s graph "
        f"keeps {sum((sizes.get('kit') or [])[:len(layers)])} necessary parents over these layers, the authors' "
        f"committed graph {sum(committed.values())}; and the verdicts of "
        + (", ".join(f"fig. {f}" for f in changes) or "no figure")
        + " change when the same checks run on graphs of the authors' size. Those verdicts are therefore reported "
        "for both kinds of graphs, and each one is read with the graphs it was found on.", "", *lines, ""])


def results_markdown(reports: Path, params_file: Path = REPO / "params.yaml") -> str:
    """The README's results: the trained models' accuracy, then per paper figure its claim and every headline row
    (number and verdict) of the stages that make it, then the checks beyond the paper; from the committed
    `summary/*.json`, worded as in the notebooks."""
    lines = []
    for _, head, stages in result_groups(params_file):
        rows = [f"  * `{s.partition(':')[0]}`: {row_text(r)}" for s in stages for r in summary_rows(reports, s)]
        lines += [f"* {head}", *(rows or ["  * (not run yet)"])]
    why = default_test_markdown(reports)
    return "\n".join(lines) + "\n" + (f"\n{why}" if why else "")


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
    """Rewrite the results block of `readme` from `reports`; True if it changed."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme} has no results block ({README_BEGIN} ... {README_END})")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = head + README_BEGIN + "\n" + results_markdown(reports) + README_END + tail
    readme.write_text(new)
    return new != text


CSS = """/* the index table: wide pages, wrapped cells, readable thumbnails */
.wy-nav-content { max-width: 1500px; }
.wy-table-responsive table td, .wy-table-responsive table th { white-space: normal; vertical-align: top; }
.wy-table-responsive table td img { width: 220px; max-width: none; }
"""

GRAPH_FOLDERS = ("graphs", "graphs_architectures")     # reports/<folder>/<model>/<test>/class_<k>.json


def graph_files(reports: Path) -> dict[str, Path]:
    """Every class graph the stages wrote: {"<model>-<test>-class_<k>": path}, in a stable order."""
    out = {}
    for folder in GRAPH_FOLDERS:
        for path in sorted((reports / folder).glob("*/*/class_*.json")):
            out[f"{path.parent.parent.name}-{path.parent.name}-{path.stem}"] = path
    return out


def explorer_page(pages: dict[str, str]) -> str:
    """Markdown of the graph explorer's index: one link per interactive class graph, grouped by model and test."""
    lines = ["# Graph explorer", "",
             "Every class graph the stages discovered, drawn interactively (plotly): hover over a node for its effect, z "
             "and p; click a legend entry to hide a layer. The static fig. 4 of each stage shows one class per model.", ""]
    groups: dict[str, list[str]] = {}
    for name, page in pages.items():
        model, test, cls = name.rsplit("-", 2)
        groups.setdefault(f"{model}, {test} test", []).append(f"[{cls.replace('_', ' ')}](graphs/{page})")
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


def build(reports: str | Path = REPO / "reports", out: str | Path | None = None, root: str | Path = REPO) -> Path:
    """Build the site into `out` (default reports/book), replacing it only when the build has succeeded."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    reports = Path(reports).resolve()
    out = Path(out).resolve() if out else reports / "book"
    sections = [s.section for s in dvc_stages(root) if s.notebook]
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
        (docs / "index.md").write_text(index_page(reports, pages))
        (docs / "book.css").write_text(CSS)
        from .graph_view import write_pages

        graph_pages = write_pages(graph_files(reports), docs / "graphs")
        (docs / "graph_explorer.md").write_text(explorer_page(graph_pages))
        nav = [{"Figures of the paper": "index.md"}, {"Graph explorer": "graph_explorer.md"}] + \
              [{s: f"{s}.ipynb"} for s in pages]
        cfg = {"site_name": "Causal analysis: replication report", "docs_dir": str(docs), "site_dir": str(site),
               "use_directory_urls": False, "nav": nav, "markdown_extensions": ["tables", "attr_list"],
               "theme": {"name": "readthedocs", "highlightjs": False}, "extra_css": ["book.css"],
               "plugins": [{"mkdocs-jupyter": {"include_requirejs": False, "ignore_h1_titles": True}}]}
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
    print(f"book: {len(pages)} notebooks, {len(graph_pages)} interactive graphs; open {out / 'index.html'}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causal_interp.book", description=__doc__.splitlines()[0])
    root = Path(os.environ[ROOT_ENV]) if os.environ.get(RUN_ALL_ENV) == "1" and ROOT_ENV in os.environ else REPO
    parser.add_argument("--reports", default=str(root / "reports"), help="the reports folder (default: reports/)")
    parser.add_argument("--out", default=None, help="where the site goes (default: <reports>/book)")
    parser.add_argument("--readme", default=None, help="only rewrite this README's results block from the reports")
    args = parser.parse_args(argv)
    if args.readme:
        changed = update_readme(Path(args.readme), Path(args.reports))
        print(f"{args.readme}: results block {'rewritten' if changed else 'already up to date'}")
        return 0
    build(args.reports, args.out)
    folder = write_headlines(Path(args.reports))
    print(f"book: {len(list(folder.glob('*.json')))} headline rows in {folder} (dvc metrics show)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
