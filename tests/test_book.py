"""The offline HTML book: the index page from summary rows (fast), and the built site in a real headless browser
(`make test-book`: every page loads from the file system with no network request, every image decodes, no console
error, every link of the index and of the documentation pages resolves, every page of docs/ is in the book). The
documentation pages themselves: every internal link of the README and of docs/ resolves (on GitHub and in the book),
the API page names documented objects, and every code block marked runnable runs in the smoke setting.

A runnable block is a ```python block right after the comment `<!-- runnable -->`, or
`<!-- runnable smoke: {"what the page says": "what the smoke run uses instead", ...} -->` to shrink it (every key must
occur in the block). It runs as a script in a folder that holds `my_model.pt` (the state_dict of a timm resnet18 with
10 classes, trained for a few seconds) and `my_examples.pt` (200 synthetic 32x32 images of ten classes and labels)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from causal_interp import book

from .conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DOCS = REPO / book.DOCS


def fake_reports(tmp_path: Path) -> Path:
    reports = tmp_path / "reports"
    (reports / "reliability" / "figures").mkdir(parents=True)
    (reports / "reliability" / "figures" / "fig7_reliability.png").write_bytes(b"png")
    (reports / "reliability" / "summary").mkdir()
    (reports / "reliability" / "summary" / "a.json").write_text(json.dumps(
        {"what": "share of nodes in every run | all", "ours": 0.61234, "paper": 0.98, "verdict": "does not hold"}))
    return reports


def test_the_index_has_one_row_per_paper_figure_with_our_numbers_and_verdicts(tmp_path):
    page = book.index_page(fake_reports(tmp_path), {"reliability": "reliability.ipynb"})
    rows = [line for line in page.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == list(range(3, 12))
    fig7 = next(r for r in rows if r.startswith("| 7 "))
    assert "[![figure 7](figures/reliability/fig7_reliability.png){ width=220 }](reliability.ipynb)" in fig7
    assert "`reliability`: share of nodes in every run \\| all: **0.612** (paper 0.98): does not hold" in fig7
    assert next(r for r in rows if r.startswith("| 10 ")).count("(not run)") == 2


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium: make test-book installs it")
def test_the_built_book_works_offline_in_a_headless_browser(tmp_path):
    """Built from the committed reports, then opened page by page from file:// with every other request refused."""
    from playwright.sync_api import sync_playwright

    site = book.build(REPO / "reports", tmp_path / "book")
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html") in pages and len(pages) > 5
    assert any(p.parent.name == "graphs" for p in pages), "the interactive graphs are part of the book"
    doc_pages = [site / "docs" / f"{Path(name).stem}.html" for name in book.docs_pages(REPO)]
    assert len(doc_pages) == len(list(DOCS.glob("*.md"))) > 5
    assert not [p for p in doc_pages if p not in pages], "every page of docs/ is in the book"
    doc_links, ids = [], {}
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        page = browser.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(f"{page.url}: console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"{page.url}: script error: {e}"))
        external = []

        def route(r):
            if urlparse(r.request.url).scheme in ("file", "data", "blob"):
                return r.continue_()
            external.append(r.request.url)
            return r.abort()

        page.route("**/*", route)
        for html in pages:
            page.goto(html.as_uri(), wait_until="load")
            if html.parent.name == "graphs":          # plotly draws an SVG once its script has run
                problems += [] if page.locator(".main-svg").count() else [f"{html.name}: no plotly drawing"]
            broken = page.evaluate("""() => [...document.images]
                .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))""")
            problems += [f"{html.name}: image does not decode: {b}" for b in broken]
            if html in doc_pages or html == site / "index.html":
                ids[html] = set(page.evaluate("() => [...document.querySelectorAll('[id]')].map(e => e.id)"))
            if html in doc_pages:
                doc_links += [(html, u) for u in page.evaluate(
                    "() => [...document.querySelectorAll('.rst-content a[href]')].map(a => a.href)")]
        page.goto((site / "index.html").as_uri())
        links = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        browser.close()
    local = {urlparse(u).path for u in links if urlparse(u).scheme == "file"}
    problems += [f"index links to a missing file {p}" for p in local if not Path(p).exists()]
    problems += [f"network request: {u}" for u in external]
    for html, url in doc_links:                 # every link of a documentation page: its file, and its anchor there
        target = Path(unquote(urlparse(url).path))
        if urlparse(url).scheme != "file":
            continue
        if not target.is_file():
            problems.append(f"{html.name} links to a missing file {target}")
        elif urlparse(url).fragment and target in ids and unquote(urlparse(url).fragment) not in ids[target]:
            problems.append(f"{html.name} links to a missing anchor {url}")
    assert not problems, "\n".join(problems[:20])
    assert sum(Path(p).name != "index.html" for p in local) >= len(book.FIGURES)
    assert len(doc_links) > 20
    assert {f"docs/{p.name}" for p in doc_pages} <= {str(Path(p).relative_to(site)) for p in local}, \
        "the index links every documentation page"
    api = (site / "docs" / "api.html").read_text()
    assert "Algorithm 1 for class" in api and "Quantus explanation function" in api, "the API page shows the docstrings"


def test_a_stage_pattern_takes_only_the_matching_summary_rows(tmp_path):
    reports = fake_reports(tmp_path)
    (reports / "reliability" / "summary" / "fig8-kit.json").write_text(json.dumps(
        {"what": "LE", "ours": 0.5, "paper": None, "verdict": "holds (every seed)"}))
    assert [json.loads(p.read_text())["what"] for p in book.summary_files(reports, "reliability:fig8-*")] == ["LE"]
    assert len(book.summary_files(reports, "reliability")) == 2


def test_every_class_graph_gets_an_interactive_page(tmp_path):
    from causal_interp import graph_view
    from causal_interp.discovery import ClassGraph, LayerGraph

    g = ClassGraph(3, "three", 4, {"mode": "hard"}, "paired", 0.05, layers=[
        LayerGraph("fc2", 3, [0], [1], [2], [0], [0.0, -0.5, 0.2], [0.0, -3.0, 2.0], [0.5, 0.001, 0.02]),
        LayerGraph("fc1", 2, [1], [0], [], [1], [-0.3, 0.0], [-2.5, 0.1], [0.006, 0.46])])
    results = tmp_path / "results"
    g.save(results / "graphs" / "train_lenet" / "paired" / "class_3.json")
    files = book.graph_files(results)
    assert list(files) == ["train_lenet-paired-class_3"]
    pages = graph_view.write_pages(files, tmp_path / "site" / "graphs")
    html = (tmp_path / "site" / "graphs" / pages["train_lenet-paired-class_3"]).read_text()
    assert 'src="plotly.min.js"' in html and "mean effect -0.5" in html and (tmp_path / "site" / "graphs" / "plotly.min.js").stat().st_size > 1e6
    assert "[class 3](graphs/train_lenet-paired-class_3.html)" in book.explorer_page(pages)
    assert "[three (class 3)](graphs/train_lenet-paired-class_3.html)" in book.explorer_page(
        pages, {"train_lenet-paired-class_3": "three"})
    assert "input channel 1" in html and "fc1 output 0" in html and "input output" not in html
    again = graph_view.write_pages(files, tmp_path / "again")
    assert (tmp_path / "again" / again["train_lenet-paired-class_3"]).read_bytes() == html.encode(), \
        "the same graph gives the same page (the book's pages change only when their graphs do)"


def test_the_book_is_dated_by_its_newest_stage_run(tmp_path):
    import nbformat

    times = ["2026-11-29T07:52:12.010216+00:00", "2026-11-29T09:52:12.5+02:00", "2026-11-30T01:00:00", None]
    for i, end in enumerate(times):
        nb = nbformat.v4.new_notebook(metadata={"papermill": {"end_time": end}})
        nbformat.write(nb, str(tmp_path / f"{i}.ipynb"))
    assert book.last_run(sorted(tmp_path.glob("*.ipynb"))) == 1796000400            # 2026-11-30 01:00 UTC
    assert book.last_run([tmp_path / "0.ipynb", tmp_path / "1.ipynb"]) == 1795938732   # 07:52:12 UTC, both
    assert book.last_run([tmp_path / "3.ipynb"]) == 0


def test_headline_rows_gather_verdicts_and_published_numbers_less_the_sub_numbers_and_replace_old_files(tmp_path):
    reports = fake_reports(tmp_path)
    for stage, name, row in [("reliability", "b", {"what": "no verdict, no paper number", "ours": 3.0}),
                             ("train_lenet", "train_lenet", {"what": "test accuracy", "ours": 0.98, "verdict": None}),
                             ("metric_agreement", "m-robustness", {"what": "ranks", "ours": 2.0, "verdict": "holds"}),
                             ("repair", "m-false-positive-rate", {"what": "FPR", "ours": 0.4, "verdict": "bias"}),
                             ("repair", "m-class", {"what": "class accuracy", "ours": 0.9, "verdict": "bias"}),
                             ("lenet_verdicts", "fig11-floor", {"what": "seeds", "ours": 0.0, "verdict": "holds"}),
                             ("evaluate_explanations", "resnet-layer4.1.conv2-LE", {"what": "LE", "ours": 0.1, "verdict": "holds"}),
                             ("evaluate_explanations", "resnet-LE", {"what": "LE", "ours": 0.2, "verdict": "holds"})]:
        (reports / stage / "summary").mkdir(parents=True, exist_ok=True)
        (reports / stage / "summary" / f"{name}.json").write_text(json.dumps({"paper": None, "verdict": None, **row}))
    params = tmp_path / "params.yaml"
    params.write_text("architectures: []\n")
    (reports / "summary").mkdir()
    (reports / "summary" / "stale.json").write_text("{}")
    folder = book.write_headlines(reports, params)
    got = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert got == {"fig07-reliability-a": {"ours": 0.61234, "paper": 0.98, "verdict": "does not hold"},
                   "fig08-evaluate_explanations-resnet-LE": {"ours": 0.2, "paper": None, "verdict": "holds"},
                   "fig11-repair-m-class": {"ours": 0.9, "paper": None, "verdict": "bias"},
                   "beyond-metric_agreement-m-robustness": {"ours": 2.0, "paper": None, "verdict": "holds"}}
    assert not (reports / ".summary.new").exists() and not (reports / ".summary.old").exists()


def lenet_verdicts_reports(reports: Path, rows: list, stability: str) -> None:
    """The two reports default_test_markdown reads: lenet_verdicts' rows and verdicts across seeds, and the authors'
    committed graph from authors_protocol."""
    (reports / "lenet_verdicts").mkdir(parents=True)
    (reports / "authors_protocol").mkdir()
    (reports / "lenet_verdicts" / "metrics.json").write_text(json.dumps({"settings": {"le_class": 3}, "rows": rows}))
    (reports / "lenet_verdicts" / "stability.csv").write_text("figure,protocol,verdict across seeds\n" + stability)
    (reports / "authors_protocol" / "metrics.json").write_text(json.dumps(
        {"graph_sizes": {"authors' committed graph": {"fc3": 13, "fc2": 8, "fc1": 8, "conv2": 3}}}))


def test_the_default_test_paragraph_names_the_verdicts_that_change_with_the_graphs(tmp_path):
    reports = tmp_path / "reports"
    assert book.default_test_markdown(reports) == ""                    # not run yet: nothing to say
    rows = [{"seed": 0, "protocol": p, "figure": 7, "graph_sizes": {"3": s}}
            for p, s in (("kit", [30, 50, 16, 6, 1]), ("floor", [14, 11, 9, 5, 1]), ("authors", [8, 2, 14, 5, 1]))]
    lenet_verdicts_reports(reports, rows, "7,kit,holds (every seed)\n7,floor,does not hold (every seed)\n"
                           "7,authors,does not hold (every seed)\n10,kit,holds (every seed)\n10,floor,holds (every seed)\n"
                           "10,authors,holds (every seed)\n")
    text = book.default_test_markdown(reports)
    assert "keeps 102 necessary parents over these layers, the authors' committed graph 32" in text
    assert "the verdicts of fig. 7 (on the effect-size-floor graphs and the authors'-test graphs) change" in text
    assert "| paired test (the default) | 30 / 50 / 16 / 6 | holds (every seed) | holds (every seed) |" in text
    assert "| the authors' committed graph | 13 / 8 / 8 / 3 | | |" in text


def test_the_same_reports_build_the_same_book_dated_by_their_last_run(tmp_path):
    import nbformat

    reports = fake_reports(tmp_path)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# LeNet\n\ntrained.")],
                                  metadata={"papermill": {"end_time": "2026-11-29T07:52:12.010216+00:00"}})
    (reports / "train_lenet").mkdir()
    nbformat.write(nb, str(reports / "train_lenet" / "train_lenet.ipynb"))
    first, second = (book.build(reports, tmp_path / name) for name in ("first", "second"))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert "Build Date UTC : 2026-11-29 07:52:12+00:00" in (first / "index.html").read_text()


def test_fig11_rows_put_the_class_accuracy_first_and_say_its_verdict_once_per_model(tmp_path):
    reports = tmp_path / "reports"
    (reports / "repair" / "summary").mkdir(parents=True)
    for model in ("a", "b"):
        for row, ours in (("all-classes", 0.5), ("class", 1.0), ("false-positive-rate", 0.4)):
            (reports / "repair" / "summary" / f"{model}-{row}.json").write_text(json.dumps(
                {"what": f"{model} {row}", "ours": ours, "paper": None, "verdict": f"bias {model}"}))
    assert book.stage_lines(reports, ["repair"]) == [
        "`repair`: a class: **1**: bias a", "`repair`: a all-classes: **0.5**", "`repair`: a false-positive-rate: **0.4**",
        "`repair`: b class: **1**: bias b", "`repair`: b all-classes: **0.5**", "`repair`: b false-positive-rate: **0.4**"]


def test_a_verdict_that_flips_differently_with_the_graphs_counts_as_a_change(tmp_path):
    reports = tmp_path / "reports"
    rows = [{"seed": 0, "protocol": p, "figure": 8, "graph_sizes": {"3": [1, 1, 1, 1]}} for p in book.PROTOCOL_NAMES]
    lenet_verdicts_reports(reports, rows, "8,kit,flips with the seed: seed 0 holds; seed 1 does not hold\n"
                           "8,floor,flips with the seed: seed 0 does not hold; seed 1 holds\n"
                           "8,authors,flips with the seed: seed 0 holds; seed 1 does not hold\n")
    assert "the verdicts of fig. 8 (on the effect-size-floor graphs) change" in book.default_test_markdown(reports)


def test_the_reading_notes_come_from_what_the_stages_recorded(tmp_path):
    reports = tmp_path / "reports"
    for stage, metrics in {
        "reliability": {"settings": {"models": {"m": {"runs": 100, "classes": [3], "layers": ["fc"]}}}},
        "arch_graphs": {"settings": {"models": ["arch_x"], "classes": [1], "examples_per_class": 10}},
        "arch_x": {"dataset": "cifar10", "image_size": 32, "epochs": 2, "pretrained": False,
                   "per_class_accuracy": {"plane": 0.5, "car": 0.6}},
        "sanity_checks": {"settings": {"examples_per_class": 5, "layers": {}}},
        "metric_agreement": {"settings": {"examples_per_class": {"m": 3}, "layers": {"m": "conv2"}}},
        "arch_evaluate": {"settings": {"examples_per_class": 4, "layers": {"arch_x": "blocks.1.conv_pwl"}},
                          "failed_methods": [{"model": "arch_x", "method": "EB", "error": "it broke. details"}]},
    }.items():
        (reports / stage).mkdir(parents=True)
        (reports / stage / "metrics.json").write_text(json.dumps(metrics))
    notes = book.reading_notes(reports)
    assert "`m` 100 runs, class 3, fc." in notes
    assert "`arch_x` cifar10 32×32 px, 2 epochs, from scratch" in notes and "class 1 (car) with 10 examples" in notes
    assert "fig. 9 scores 4 evaluation examples per class" in notes
    assert 'EB on `arch_x` ("it broke")' in notes
    assert "`sanity_checks` 5 examples per class; `metric_agreement` `m` 3 examples per class. Maps: `sanity_checks` " \
           "from each model's default map layer" in notes and "; `metric_agreement` from `m` conv2." in notes
    assert "published fig. 8 numbers" not in notes                      # authors_protocol has not run


def test_the_notes_give_fig8_irof_against_mwp_and_name_a_model_below_twice_chance(tmp_path):
    reports = tmp_path / "reports"
    (reports / "evaluate_explanations").mkdir(parents=True)
    (reports / "evaluate_explanations" / "medians.csv").write_text(
        "model,metric,method,median,ci_low,ci_high,n\n"
        "m,IROF,Causal,60,55,65,30\nm,LE,ExcitationBackprop,0.1,0.1,0.1,30\nm,IROF,ExcitationBackprop,70,66,74,30\n"
        "m,IROF,Causal @ l4,90,88,92,30\nm,IROF,Occlusion,80,77,83,30\n")
    assert book.irof_against_mwp(reports) == ["`m` causal 60.0 [55.0, 65.0], MWP 70.0 [66.0, 74.0], best Occlusion 80.0 "
                                              "[77.0, 83.0]"]
    for stage, metrics in {"arch_fidelity": {"models": {"a": {"accuracy_unmasked": 0.15}, "b": {"accuracy_unmasked": 0.5}}},
                           "a": {"per_class_accuracy": dict.fromkeys("0123456789", 0.1)}}.items():
        (reports / stage).mkdir(parents=True, exist_ok=True)
        (reports / stage / "metrics.json").write_text(json.dumps(metrics))
    notes = book.reading_notes(reports)
    assert "`arch_fidelity`): `a` 0.150 (chance 0.10); its figs. 10-11 rows say little." in notes and "`b`" not in notes


def test_the_notes_say_when_a_lenet_verdicts_figure_is_the_same_on_every_graph(tmp_path):
    reports = tmp_path / "reports"
    (reports / "lenet_verdicts").mkdir(parents=True)
    rows = [{"figure": f, "seed": seed, "protocol": p, "sentence": f"fig {f}, seed {seed}, {p} graphs: "
             + ("0.0" if f == 10 else p)} for f in (7, 10) for seed in (0, 1) for p in ("kit", "authors")]
    (reports / "lenet_verdicts" / "metrics.json").write_text(json.dumps(
        {"settings": {"le_class": 3, "le_examples": 100}, "rows": rows}))
    notes = book.reading_notes(reports)
    assert "on 100 examples of digit 3; fig. 10 gives the same numbers on every kind of graph" in notes
    assert "the agreement of its rows across the graphs does not show robustness" in notes
    (reports / "lenet_verdicts" / "summary").mkdir()           # the report shows such a figure as one row
    (reports / "lenet_verdicts" / "summary" / "fig10-every-graph.json").write_text("{}")
    assert "so it is given as one row: an agreement across the graphs" in book.reading_notes(reports)


def _links(text: str) -> list[str]:
    """The targets of the Markdown links and images of `text`, outside code blocks and code spans."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _anchors(page: Path) -> tuple[set[str], set[str]]:
    """The heading anchors of a Markdown page as GitHub names them and as MkDocs (Python-Markdown's toc) does."""
    from markdown.extensions.toc import slugify

    github, mkdocs = set(), set()
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        plain = re.sub(r"[`*]", "", heading).strip()
        github.add(re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-"))
        mkdocs.add(slugify(plain, "-"))
    return github, mkdocs


def test_every_internal_link_of_the_readme_and_the_docs_resolves():
    """On GitHub and in the book: the file exists, its anchor is a heading there under both naming rules, and a page
    of docs/ links only within docs/ (the book holds docs/, not the rest of the repository)."""
    problems = []
    for source in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]:
        for link in _links(source.read_text()):
            if re.match(r"[a-z]+:", link):            # https:, mailto:: not internal
                continue
            path, _, fragment = link.partition("#")
            target = (source.parent / path).resolve() if path else source
            if not target.exists():
                problems.append(f"{source.name}: {link}: no such file")
                continue
            if source.parent == DOCS and DOCS.resolve() not in target.resolve().parents:
                problems.append(f"{source.name}: {link}: outside docs/, so not in the book")
            if fragment and target.suffix == ".md" and not all(fragment in names for names in _anchors(target)):
                problems.append(f"{source.name}: {link}: no heading {fragment!r} in {target.name}")
    assert not problems, "\n".join(problems)
    assert len(_links((REPO / "README.md").read_text())) >= 10


def test_the_api_page_names_documented_objects_of_the_package():
    import importlib

    names = re.findall(r"^::: (causal_interp\.[\w.]+)$", (DOCS / "api.md").read_text(), flags=re.M)
    assert {"causal_interp.discovery.discover_class_graph", "causal_interp.interventions.TracedModel",
            "causal_interp.evaluation.CausalExplainer", "causal_interp.baselines.explainer",
            "causal_interp.evaluation.score"} <= set(names)
    for name in names:
        module, _, attr = name.rpartition(".")
        obj = getattr(importlib.import_module(module), attr)
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring for the API page"


def test_the_index_links_the_documentation_pages(tmp_path):
    docs = {f"docs/{name}": title for name, title in book.docs_pages(REPO).items()}
    assert docs["docs/api.md"].startswith("API") and len(docs) == len(list(DOCS.glob("*.md")))
    page = book.index_page(fake_reports(tmp_path), {"reliability": "reliability.ipynb"}, docs=docs)
    assert "## Documentation" in page and all(f"]({p})" in page for p in docs)


RUNNABLE = re.compile(r"<!-- runnable(?: smoke: (\{.*?\}))? -->\n```python\n(.*?)\n```", re.S)


def runnable_blocks() -> list[tuple[str, str]]:
    """(where, code) of every runnable block of docs/, with its smoke substitutions made."""
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        for i, (smoke, code) in enumerate(RUNNABLE.findall(page.read_text())):
            for old, new in json.loads(smoke or "{}").items():
                assert old in code, f"{page.name}, runnable block {i + 1}: its smoke substitution {old!r} is not in it"
                code = code.replace(old, new)
            blocks.append((f"{page.name}#{i + 1}", code))
    return blocks


def write_stand_in(folder: Path) -> None:
    """my_model.pt and my_examples.pt for the runnable blocks: a timm resnet18 (10 classes) trained for 40 steps on
    synthetic 32x32 images whose class is where a bright bar is, and 200 such images with their labels."""
    import timm
    import torch

    def images(n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 10
        x = torch.rand(n, 3, 32, 32, generator=g) * 0.15
        for i, c in enumerate(y.tolist()):
            x[i, :, 2 + (c // 5) * 16:10 + (c // 5) * 16, 2 + (c % 5) * 5:7 + (c % 5) * 5] = 0.9
        return x, y

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10)
    x, y = images(320, 0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(40):
        i = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(model.eval().state_dict(), folder / "my_model.pt")
    torch.save(images(200, 1), folder / "my_examples.pt")


def test_the_docs_have_a_runnable_example():
    assert [where for where, _ in runnable_blocks()] == ["example-own-model.md#1"]


@pytest.mark.browser      # not a browser, but the book's slow check: `make test-book` runs it, `make test` does not
def test_every_runnable_code_block_runs_in_the_smoke_setting(tmp_path):
    write_stand_in(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    for where, code in runnable_blocks():
        script = tmp_path / "block.py"
        script.write_text(code + "\n")
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{where}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        assert done.stdout.strip(), f"{where} printed nothing"
