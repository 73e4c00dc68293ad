"""Every notebook stage of dvc.yaml runs end to end through papermill with the smoke profile on tiny fake data.

The stage list is `pipeline.dvc_stages()`, the same list `make smoke` runs. One smoke run is shared by the tests;
it runs two stages at a time (each in its own kernel), a stage starting once the stages it depends on are done.
"""
import json
import re
import multiprocessing
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import pytest

from causal_interp import pipeline, reporting

from .conftest import REPO

STAGES = pipeline.dvc_stages(REPO)
NOTEBOOK_STAGES = [s for s in STAGES if s.notebook]
WORKERS = 2


def _run_one(stage, root, fake_root):
    """One stage on one core: two kernels with two torch threads each on two cores make OpenMP spin-wait for
    each other and run ten times slower than one after the other."""
    overrides = {"data": {"root": str(fake_root), "verify": False}, stage.section: {"threads": 1}}
    return pipeline.run_stage(stage.section, stage.notebook, profile="smoke", reports=root / "reports",
                              models=root / "models", overrides=overrides, checkpoints=root / "ckpt", stages=STAGES,
                              results=root / "results")


def prerequisites(stage) -> set[str]:
    """The notebook stages producing what `stage` depends on."""
    return {s.name for s in NOTEBOOK_STAGES for out in s.outs for dep in stage.deps
            if dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")} - {stage.name}


@pytest.fixture(scope="module")
def smoke_run(fake_root, tmp_path_factory, request):
    """Every notebook stage into one scratch tree; results (executed notebook or the exception) per stage. A stage
    whose prerequisite failed is not run and reports that. The tree (about 1 GB of models and checkpoints) is
    removed afterwards unless a test failed."""
    root = tmp_path_factory.mktemp("smoke")
    results, running = {}, {}
    waiting = list(NOTEBOOK_STAGES)
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        while waiting or running:
            for s in list(waiting):
                needs = prerequisites(s)
                failed = [n for n in needs if isinstance(results.get(n), Exception)]
                if failed:
                    results[s.name] = RuntimeError(f"not run: prerequisite {failed} failed")
                    waiting.remove(s)
                elif needs <= set(results) and len(running) < WORKERS:
                    running[pool.submit(_run_one, s, root, fake_root)] = s.name
                    waiting.remove(s)
            if running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    try:
                        results[name] = future.result()
                    except Exception as e:  # reported by the stage's own test
                        results[name] = e
    failures = request.session.testsfailed
    yield root, results
    if request.session.testsfailed == failures:
        shutil.rmtree(root, ignore_errors=True)


def test_prerequisites_follow_dvc_yaml():
    by_name = {s.name: s for s in NOTEBOOK_STAGES}
    assert prerequisites(by_name["compute_discover_graphs"]) == {"compute_train_lenet", "compute_finetune_cifar10"}
    assert prerequisites(by_name["discover_graphs"]) >= {"compute_discover_graphs"}
    assert prerequisites(by_name["compute_reliability"]) >= {"compute_discover_graphs"}
    assert "compute_arch_graphs" in prerequisites(by_name["compute_arch_repair"])
    assert prerequisites(by_name["compute_train_lenet"]) == set()
    assert prerequisites(by_name["train_lenet"]) == {"compute_train_lenet"}


@pytest.mark.notebooks
@pytest.mark.parametrize("stage", [s.name for s in NOTEBOOK_STAGES])
def test_stage_runs_with_smoke_profile(stage, smoke_run):
    root, results = smoke_run
    executed = results[stage]
    if isinstance(executed, Exception):
        raise executed
    spec = next(s for s in STAGES if s.name == stage)
    assert executed.exists() and not (executed.parent / f"{spec.section}.failed.ipynb").exists()
    assert not (root / "reports" / ".staging" / spec.section).exists(), "the staging folder is removed"
    for path in spec.outs:                      # every declared output (relative to reports/ and models/) was written
        top, rest = path.split("/", 1)
        assert (root / top / rest).exists(), path
        if path.endswith(".json"):
            json.loads((root / path).read_text())
    summary = root / "reports" / spec.section / "summary"
    rows = [json.loads(p.read_text()) for p in summary.glob("*.json")]
    if spec.compute:
        assert not rows or spec.section in {s.section for s in STAGES if s.notebook and not s.compute}
        assert executed.parent == root / "results" / spec.section, "a compute stage writes results/, not reports/"
    else:
        assert rows and all(set(r) == set(reporting.SUMMARY_KEYS) for r in rows), "dvc metrics rows share one schema"
    nb = json.loads(executed.read_text())
    streams = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
               if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    noise = [o for o in streams if "TqdmWarning" in "".join(o["text"]) or "it/s]" in "".join(o["text"])]
    widgets = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not noise and not widgets, "progress bars and tqdm warnings stay out of the executed notebook"
    source = (REPO / spec.notebook).with_suffix(".py").read_text()
    pngs = [c for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
    if "plotting.save(" in source:
        assert pngs, "a stage that makes figures shows them in its executed notebook"
    texts = ["".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
             for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [t for t in texts if "PosixPath(" in t], "a cell ending in plotting.save(...) prints the file's path"
    tags = [t for c in nb["cells"] for t in c.get("metadata", {}).get("tags", [])]
    assert "injected-parameters" in tags and "parameters" not in tags, "the run's parameters only, not the defaults"


@pytest.mark.notebooks
def test_the_book_builds_from_the_smoke_reports(smoke_run):
    from causal_interp import book

    root, results = smoke_run
    site = book.build(root / "reports", root / "book")
    index = (site / "index.html").read_text()
    done = [s.section for s in NOTEBOOK_STAGES if not s.compute and not isinstance(results[s.name], Exception)]
    assert all((site / f"{s}.html").is_file() for s in done) and "figure 7" in index
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?:', index), "nothing is fetched from the network"
