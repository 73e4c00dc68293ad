"""The README's results block says what the committed reports say (regenerate it with `make readme`)."""
import pytest

from causal_interp import book

from .conftest import REPO


def test_the_readme_results_block_matches_the_committed_summaries():
    import subprocess

    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO, capture_output=True, text=True)
    if shallow.stdout.strip() == "true":
        pytest.skip("a shallow clone cannot name the commits the stale stages' results come from")
    text = (REPO / "README.md").read_text()
    block = text.split(book.README_BEGIN, 1)[1].split(book.README_END, 1)[0]
    assert block == "\n" + book.results_markdown(REPO / "reports"), "run `make readme` after committing new reports"


def test_update_readme_rewrites_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{book.README_BEGIN}\nOLD-BLOCK\n{book.README_END}\nrest\n")
    assert book.update_readme(readme, tmp_path / "reports")
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "* **Figure 7.**" in text and "OLD-BLOCK" not in text
    assert not book.update_readme(readme, tmp_path / "reports")
    (tmp_path / "bad.md").write_text("no block")
    with pytest.raises(ValueError, match="no results block"):
        book.update_readme(tmp_path / "bad.md", tmp_path / "reports")
