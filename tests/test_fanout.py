"""Fan-out (fanout.py): in this process by default, without importing Ray; over a local two-worker Ray the same graph
files and soft-intervention runs, byte for byte (timings aside); the per-class cache resumes only the missing units."""
import os
import re
import subprocess
import sys

import pytest
import torch

from causal_interp import discovery, fanout, reliability
from causal_interp.interventions import Intervention
from causal_interp.models import LeNet

from .conftest import REPO

CLASSES = [0, 1, 2, 3]


def tiny():
    """A random LeNet and 40 inputs of four classes (10 each): every unit takes well under a second."""
    torch.manual_seed(0)
    x = torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    return LeNet().eval(), x, torch.arange(40) % 4


def graphs(folder, workers=None, key="k"):
    model, x, y = tiny()
    return discovery.discover_all(model, x, y, CLASSES, [str(k) for k in range(10)], 5, Intervention(), "paired", 0.05,
                                  cache_dir=folder, key=key, correct_only=False, log=lambda line: None,
                                  workers=workers)


def files(folder) -> dict:
    """{name: bytes} of the cached graphs, every `seconds` (a timing) set to 0."""
    return {p.name: re.sub(rb'"seconds": [^,}]+', b'"seconds": 0', p.read_bytes())
            for p in sorted(folder.rglob("class_*.json"))}


def test_in_process_is_the_default_and_never_imports_ray(tmp_path, monkeypatch):
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
              "from tests.test_fanout import graphs\nfrom pathlib import Path\n"
              f"assert len(graphs(Path({str(tmp_path)!r}))) == 4\n"
              "assert 'ray' not in sys.modules, 'in-process fan-out imported ray'\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=REPO, timeout=300)
    assert len(files(tmp_path)) == 4
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not fanout.uses_ray() and fanout.uses_ray(2)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")           # a cluster is named: Ray, without `workers`
    assert fanout.uses_ray()
    monkeypatch.delenv("RAY_ADDRESS")
    seen = []
    assert fanout.run(lambda u: u * u, [3, 1, 2], done=lambda i, r: seen.append((i, r))) == [9, 1, 4]
    assert seen == [(0, 9), (1, 1), (2, 4)]


def test_two_ray_workers_give_the_same_files_and_resume_after_a_worker_dies(tmp_path, monkeypatch):
    import ray                                                         # a dependency: this test never skips

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    model, x, y = tiny()
    graphs(tmp_path / "here")
    g = discovery.ClassGraph.load(next((tmp_path / "here").rglob("class_3.json")))
    b = reliability.b_schedule(6, 0.1, 0.5, 2)
    soft_here = reliability.soft_sweep(model, x[g.examples], g, b, 0.01, 0, cache_file=tmp_path / "here.jsonl",
                                       log=lambda line: None)
    try:
        out = graphs(tmp_path / "ray", workers=2)
        assert list(out) == CLASSES                                    # unit order, whatever order they finished in
        assert files(tmp_path / "ray") == files(tmp_path / "here")
        assert ray.cluster_resources()["CPU"] >= 2 and os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
        soft_ray = reliability.soft_sweep(model, x[g.examples], g, b, 0.01, 0, cache_file=tmp_path / "ray.jsonl",
                                          log=lambda line: None, workers=2)
        assert soft_ray == soft_here
        assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "here.jsonl").read_bytes()

        original = discovery.class_examples

        def dies_on_class_3(model, x, y, k, *args, **kwargs):
            if k == 3:
                os._exit(1)                                            # the worker process dies halfway
            return original(model, x, y, k, *args, **kwargs)

        monkeypatch.setattr(discovery, "class_examples", dies_on_class_3)
        with pytest.raises(ray.exceptions.RayError):
            graphs(tmp_path / "died", workers=2)
    finally:
        ray.shutdown()
    monkeypatch.undo()
    survived = files(tmp_path / "died")
    assert "class_3.json" not in survived and survived.items() <= files(tmp_path / "here").items()
    assert len(survived) >= 2                                          # class 3 went out after two units were in
    computed = count_units(monkeypatch)
    graphs(tmp_path / "died")                                          # the re-run finishes only the missing units
    assert computed == [k for k in CLASSES if f"class_{k}.json" not in survived]
    assert files(tmp_path / "died") == files(tmp_path / "here")


def count_units(monkeypatch) -> list:
    """Classes whose graph is computed from now on (in this process)."""
    computed, original = [], discovery.discover_class_graph

    def counting(model, x, k, *args, **kwargs):
        computed.append(k)
        return original(model, x, k, *args, **kwargs)

    monkeypatch.setattr(discovery, "discover_class_graph", counting)
    return computed


def test_a_rerun_computes_only_the_missing_class_graph(tmp_path, monkeypatch):
    graphs(tmp_path)
    before = files(tmp_path)
    next(tmp_path.rglob("class_2.json")).unlink()
    computed = count_units(monkeypatch)
    out = graphs(tmp_path)
    assert computed == [2] and list(out) == CLASSES
    assert [s for _, s in out.values()].count(0.0) == 3                # the others come from the cache
    assert files(tmp_path) == before
