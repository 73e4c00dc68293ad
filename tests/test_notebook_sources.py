"""Notebook sources: every stage notebook has a jupytext source that says the same, every engine module a notebook uses
(directly or through other modules) is a DVC dependency of the stages that run it, and no stage that computes depends
on presentation code (issue 28: a plot change re-runs only report stages)."""
import ast
from pathlib import Path

import pytest

from causal_interp import config, pipeline

from .conftest import REPO

STAGES = [s for s in pipeline.dvc_stages(REPO) if s.notebook]
NOTEBOOKS = sorted({s.notebook for s in STAGES})
PACKAGE = REPO / "src" / "causal_interp"
# how a stage is run, fanned out (in this process or over Ray: the same results, tests/test_fanout.py) and drawn on the
# terminal: no stage's dependency (they never change what a stage writes)
RUNNER = {"pipeline", "progress", "fanout"}
# what presents results: no stage that writes a model, a class graph, soft-intervention runs or explanation scores
# may depend on these, nor on a report notebook (its prose)
PRESENTATION = {"plotting", "reporting", "verdicts", "book", "graph_view", *RUNNER}


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_stage_notebook_has_a_source_that_says_the_same(notebook):
    source = (REPO / notebook).with_suffix(".py")
    assert source.is_file(), f"{notebook} has no jupytext source"
    cells = pipeline.notebook_cells(source)
    assert cells == pipeline.notebook_cells(REPO / notebook)
    assert [c for c in cells if "parameters" in c[2]], "papermill needs a cell tagged parameters"


def test_a_drifted_notebook_is_refused_before_it_runs(tmp_path):
    import jupytext

    source = tmp_path / "nb.py"
    source.write_text("# %% [markdown]\n# # Title\n\n# %% tags=[\"parameters\"]\nx = 1\n\n# %%\nprint(x)\n")
    notebook = tmp_path / "nb.ipynb"
    jupytext.write(jupytext.read(source), notebook)
    pipeline.check_paired(notebook)
    source.write_text(source.read_text().replace("print(x)", "print(x + 1)"))
    with pytest.raises(config.ConfigError, match="nb.ipynb differs from its source nb.py; .*jupytext --sync"):
        pipeline.check_paired(notebook)


def imported_modules(tree: ast.Module, nested: bool = True) -> set[str]:
    """causal_interp modules named by `from causal_interp import a, b`, `from .a import x`, `from . import a`;
    with nested=False only the module-level imports."""
    names = set()
    for node in (ast.walk(tree) if nested else tree.body):
        if isinstance(node, ast.ImportFrom):
            if node.module == "causal_interp" or (node.level == 1 and node.module is None):
                names |= {a.name for a in node.names}
            elif node.level == 1 and node.module:
                names.add(node.module.split(".")[0])
            elif node.module and node.module.startswith("causal_interp."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):               # import causal_interp.x
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("causal_interp.")}
    return {n for n in names if (PACKAGE / f"{n}.py").is_file()}


def closure(modules: set[str]) -> set[str]:
    todo, seen = list(modules), set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += imported_modules(ast.parse((PACKAGE / f"{m}.py").read_text()))
    return seen


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_module_a_stage_uses_is_its_dependency(stage):
    used = closure(imported_modules(ast.parse(Path(REPO / stage.notebook).with_suffix(".py").read_text())))
    assert "pipeline" not in used, "a notebook uses the runner: how a stage is run must not change what it computes"
    missing = sorted(f"src/causal_interp/{m}.py" for m in used - RUNNER if f"src/causal_interp/{m}.py" not in stage.deps)
    assert not missing, f"{stage.name} uses {missing} but dvc.yaml does not list them as deps"
    runner = sorted(d for d in stage.deps if Path(d).stem in RUNNER and d.startswith("src/"))
    assert not runner, f"{stage.name} depends on {runner}, which never change what it writes"


def computes(stage) -> bool:
    """It writes a model or results (class graphs, soft-intervention runs, explanation scores, masking sweeps)."""
    return any(o.startswith(("models/", "results/")) for o in stage.outs)


ALL_STAGES = pipeline.dvc_stages(REPO)


@pytest.mark.parametrize("stage", [s for s in ALL_STAGES if computes(s)], ids=lambda s: s.name)
def test_no_stage_that_computes_depends_on_presentation(stage):
    presentation = sorted(d for d in stage.deps if d.startswith("src/") and Path(d).stem in PRESENTATION)
    assert not presentation, f"{stage.name} writes models or results but depends on {presentation}"
    assert stage.compute, f"{stage.name} writes models or results but runs {stage.notebook}, a report notebook"
    reports = sorted(d for d in stage.deps if d.startswith("notebooks/") and not pipeline.is_compute(d))
    assert not reports, f"{stage.name} depends on a report notebook's prose: {reports}"


def test_compute_and_report_stages_pair_up():
    """Every compute stage writes `results/<section>`, read by the report stage of the same section, and no report stage
    writes a model or results."""
    compute = {s.section: s for s in ALL_STAGES if s.compute}
    reports = {s.section: s for s in ALL_STAGES if s.notebook and not s.compute}
    assert compute and set(compute) <= set(reports)
    for section, s in compute.items():
        assert f"results/{section}" in s.outs, s.name
        assert f"results/{section}" in reports[section].deps, reports[section].name
    assert not [s.name for s in reports.values() if computes(s)]


def test_the_presentation_check_fails_on_a_stage_that_computes_and_draws():
    bad = pipeline.Stage("x", "bin/kit-python -m causal_interp.pipeline x notebooks/x.ipynb",
                         ["notebooks/x.ipynb", "src/causal_interp/plotting.py"], ["models/x.pt"], "notebooks/x.ipynb")
    with pytest.raises(AssertionError, match="depends on"):
        test_no_stage_that_computes_depends_on_presentation(bad)
