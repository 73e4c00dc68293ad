"""The README's verdict table and the results page (docs/results.md) say what the committed reports say (regenerate
both with `make readme`), and the README stays short: the two commands, the verdict table, links to pages that exist."""
import re

import pytest

from causal_interp import book

from .conftest import REPO

README_LIMIT = 12_500        # "at most about 12,000 characters" (issue 32); the generated table grows with the claims


def _skip_if_shallow():
    import subprocess

    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO, capture_output=True, text=True)
    if shallow.stdout.strip() == "true":
        pytest.skip("a shallow clone cannot name the commits the stale stages' results come from")


def test_the_readme_verdict_table_matches_the_committed_headlines():
    _skip_if_shallow()
    text = (REPO / "README.md").read_text()
    block = text.split(book.HEADLINES_BEGIN, 1)[1].split(book.HEADLINES_END, 1)[0]
    assert block == "\n" + book.headline_markdown(REPO / "reports"), "run `make readme` after committing new reports"


def test_the_results_page_block_matches_the_committed_summaries():
    _skip_if_shallow()
    text = (REPO / book.RESULTS_PAGE).read_text()
    block = text.split(book.README_BEGIN, 1)[1].split(book.README_END, 1)[0]
    assert block == "\n" + book.results_markdown(REPO / "reports"), "run `make readme` after committing new reports"


def test_the_verdict_table_shows_every_headline_once_under_a_named_claim():
    rows = book.headline_rows(REPO / "reports")
    table = book.headline_table(REPO / "reports")
    shown = [id(row) for _, entries in table for _, row, _ in entries]
    assert len(shown) == len(rows) == len(set(shown)) and rows
    assert "other headline rows" not in [claim for claim, _ in table], "name the new headline's claim in HEADLINE_TABLE"


def test_the_readme_is_short_and_keeps_the_two_commands_the_table_and_its_links():
    text = (REPO / "README.md").read_text()
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters; move the detail to a page under docs/"
    assert "make test " in text and "make repro " in text
    assert book.HEADLINES_BEGIN in text and "| claim | paper | ours | verdict |" in text
    pages = set(re.findall(r"\]\((docs/[\w-]+\.md)[)#]", text))
    assert len(pages) >= 8 and all((REPO / p).is_file() for p in pages), pages


def _fake_headlines(tmp_path):
    import json

    reports = tmp_path / "reports"
    for stage, name, row in [("reliability", "train_lenet", {"ours": 0.99, "paper": 0.98, "verdict": "holds"}),
                             ("reliability", "finetune_cifar10", {"ours": 0.9, "paper": 0.98, "verdict": "does not hold"}),
                             ("fidelity", "train_lenet", {"ours": 0.0, "paper": None, "verdict": "holds"}),
                             ("fidelity", "finetune_cifar10", {"ours": 0.1, "paper": None, "verdict": "holds"})]:
        (reports / stage / "summary").mkdir(parents=True, exist_ok=True)
        (reports / stage / "summary" / f"{name}.json").write_text(json.dumps({"what": f"{stage} {name}", **row}))
    params = tmp_path / "params.yaml"
    params.write_text("architectures: []\n")
    return reports, params


def test_the_verdict_table_has_one_row_per_claim_with_each_verdict_once(tmp_path):
    reports, params = _fake_headlines(tmp_path)
    text = book.headline_markdown(reports, params)
    assert "stale" not in text                       # not the pipeline's own reports: no stale stages to name
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == [
        "| 98-100% of the hard-intervention graph's nodes are necessary in every soft-intervention run (fig. 7) | 0.98 | "
        "ResNet18 **0.9**<br>LeNet **0.99** | ResNet18: does not hold<br>LeNet: holds |",
        "| masking the top critical neurons of every layer (20% or less) drops class accuracy drastically (fig. 10) |  | "
        "ResNet18 **0.1**<br>LeNet **0** | holds |"]


def test_the_verdict_table_marks_the_numbers_of_stale_stages(tmp_path, monkeypatch):
    from causal_interp import staleness

    reports, params = _fake_headlines(tmp_path)
    for name in ("dvc.yaml", "dvc.lock"):                # the pipeline's own reports: staleness is asked
        (tmp_path / name).write_text("stages: {}\n")
    monkeypatch.setattr(staleness, "stale_stages", lambda root: [staleness.Stale("compute_fidelity", "fidelity"),
                                                                 staleness.Stale("fidelity", "fidelity")])
    text = book.headline_markdown(reports, params)
    assert text.startswith("**2 stages are stale:**") and "a number marked † comes from one of them" in text
    assert "ResNet18 **0.1**†<br>LeNet **0**† |" in text and "ResNet18 **0.9**<br>LeNet **0.99** |" in text
    monkeypatch.setattr(staleness, "stale_stages", lambda root: [staleness.Stale(s, s) for s in ("fidelity", "reliability")])
    text = book.headline_markdown(reports, params)
    assert "every number below comes from one of them" in text and "†" not in text
    monkeypatch.setattr(staleness, "stale_stages", lambda root: [staleness.Stale("report", "report")])
    text = book.headline_markdown(reports, params)
    assert text.startswith("**1 stage is stale:** its results") and "no number below comes from it." in text
    assert "lists it with what changed; `make status` gives its re-run's cost" in text


def test_update_readme_rewrites_only_the_blocks(tmp_path):
    results = tmp_path / "results.md"
    results.write_text(f"intro\n{book.README_BEGIN}\nOLD-BLOCK\n{book.README_END}\nrest\n")
    assert book.update_readme(results, tmp_path / "reports")
    text = results.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "* **Figure 7.**" in text and "OLD-BLOCK" not in text
    assert not book.update_readme(results, tmp_path / "reports")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{book.HEADLINES_BEGIN}\nOLD-TABLE\n{book.HEADLINES_END}\nrest\n")
    assert book.update_readme(readme, tmp_path / "reports")
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "| claim | paper | ours | verdict |" in text
    assert "OLD-TABLE" not in text and not book.update_readme(readme, tmp_path / "reports")
    (tmp_path / "bad.md").write_text("no block")
    with pytest.raises(ValueError, match="no results block"):
        book.update_readme(tmp_path / "bad.md", tmp_path / "reports")


def test_make_readme_rewrites_the_readme_and_the_results_page_beside_it(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"{book.HEADLINES_BEGIN}\n{book.HEADLINES_END}\n")
    (tmp_path / book.RESULTS_PAGE).write_text(f"{book.README_BEGIN}\n{book.README_END}\n")
    assert book.main(["--readme", str(tmp_path / "README.md"), "--reports", str(tmp_path / "reports")]) == 0
    assert "| claim |" in (tmp_path / "README.md").read_text()
    assert "* **Figure 7.**" in (tmp_path / book.RESULTS_PAGE).read_text()
