"""Fan-out (fanout.py): in this process by default, without importing Ray; over a local two-worker Ray the same graph
files and soft-intervention runs, byte for byte, and the same explanation scores (timings aside); the per-class and
per-method caches resume only the missing units."""
import json
import os
import re
import subprocess
import sys

import numpy as np
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


# --- explanation scores (evaluation.evaluate_methods): one unit per method

def methods():
    """Causal maps of the tiny LeNet's class graphs (classes 1 and 2: their graphs have nodes at conv2) and three
    baselines, with four examples (two per class, not among the eight the graphs were found on) and a small Quantus
    configuration."""
    from causal_interp import baselines, config, evaluation

    model, x, y = tiny()
    graphs = {k: discovery.discover_class_graph(model, x[y == k][:8], k) for k in (1, 2)}
    cfg = config.from_dict(evaluation.EvaluationConfig, {"models": ["m"], "le_samples": 2,
                                                        "baselines": {"rise_masks": 8, "shap_samples": 2}}, "e")
    found = {"Causal": evaluation.CausalExplainer(model, graphs, "conv2"),
             **{b: baselines.explainer(b, model, cfg.baseline_config) for b in ("Saliency", "RISE", "GradientShap")}}
    xs = torch.cat([x[y == k][8:10] for k in (1, 2)]).numpy()
    return found, cfg, model, xs, torch.tensor([1, 1, 2, 2]).numpy()


def scores(folder, workers=None, **kwargs) -> dict:
    from causal_interp import evaluation

    found, cfg, model, x, y = methods()
    return evaluation.evaluate_methods(found, cfg, model, x, y, folder, workers=workers, **kwargs)


def untimed(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "seconds"}


def score_files(folder) -> dict:
    return {p.name: untimed(json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))}


def test_a_causal_explainer_pickles_after_it_ran():
    """Its torch.fx trace is rebuilt on unpickling (a GraphModule comes back re-generated, its cached activations keyed
    by nodes of the old graph): the copy gives the same maps, before and after the original cached a batch."""
    import pickle

    from ray import cloudpickle

    found, _, model, x, y = methods()
    causal = found["Causal"]
    fresh = pickle.loads(pickle.dumps(causal))
    before = causal(model, x, y)
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        copy = loads(dumps(causal))
        assert copy.layer == "conv2" and copy.__name__ == "Causal" and copy.traced is not causal.traced
        np.testing.assert_array_equal(copy(model, x, y), before)
    np.testing.assert_array_equal(fresh(model, x, y), before)
    for name in ("Saliency", "RISE"):                   # closures: cloudpickle (what Ray uses) takes them
        np.testing.assert_array_equal(cloudpickle.loads(cloudpickle.dumps(found[name]))(model, x, y),
                                      found[name](model, x, y))


def test_two_ray_workers_give_the_same_scores(tmp_path, monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    here = scores(tmp_path / "here")
    try:
        there = scores(tmp_path / "ray", workers=2)
    finally:
        ray.shutdown()
    assert list(there) == list(here) == ["Causal", "Saliency", "RISE", "GradientShap"]   # method order
    assert {m: untimed(r) for m, r in there.items()} == {m: untimed(r) for m, r in here.items()}
    assert all(np.isfinite(r["LE"]).all() for r in here.values())
    assert score_files(tmp_path / "ray") == score_files(tmp_path / "here")
    assert sorted(score_files(tmp_path / "here")) == ["Causal-conv2.json", "GradientShap.json", "RISE.json",
                                                      "Saliency.json"]


def test_a_rerun_scores_only_the_missing_methods_and_a_baseline_may_fail(tmp_path, monkeypatch):
    from causal_interp import evaluation

    first = scores(tmp_path)
    (tmp_path / "RISE.json").unlink()
    (tmp_path / "Causal-conv2.json").unlink()
    computed, original = [], evaluation.method_scores

    def counting(explain, *args, **kwargs):
        computed.append(explain.__name__)
        return original(explain, *args, **kwargs)

    monkeypatch.setattr(evaluation, "method_scores", counting)
    again = scores(tmp_path)
    assert computed == ["Causal", "RISE"]
    assert {m: untimed(r) for m, r in again.items()} == {m: untimed(r) for m, r in first.items()}
    assert again["Saliency"] == first["Saliency"]                  # from its file, timing included

    def broken(**kwargs):
        raise RuntimeError("this library cannot explain this architecture")

    broken.__name__ = "Deconvolution"
    found, cfg, model, x, y = methods()
    computed.clear()
    out = evaluation.evaluate_methods({"Saliency": found["Saliency"], "Deconvolution": broken}, cfg, model, x, y,
                                      tmp_path, may_fail=["Deconvolution"])
    assert computed == ["Deconvolution"] and isinstance(out["Deconvolution"], RuntimeError)
    assert not (tmp_path / "Deconvolution.json").exists()          # not cached: tried again next time
    with pytest.raises(RuntimeError, match="cannot explain"):
        evaluation.evaluate_methods({"Deconvolution": broken}, cfg, model, x, y, tmp_path)


@pytest.mark.parametrize("workers", [None, 2], ids=["in-process", "two-ray-workers"])
def test_the_architectures_train_each_by_its_own_command_and_a_failure_is_named(tmp_path, monkeypatch, workers):
    from causal_interp import pipeline

    def stage(name, cmd):
        return pipeline.Stage(name, cmd, [], [], None)

    stages = [stage(f"compute_train_arch@arch_{k}", f"echo {k} > {tmp_path}/{k}.txt") for k in ("a", "b", "c")]
    monkeypatch.setattr(pipeline, "dvc_stages", lambda: stages + [stage("compute_discover_graphs", "exit 1")])
    assert pipeline.train_architectures(workers, record=False) == [s.name for s in stages]
    assert sorted(p.read_text() for p in tmp_path.glob("*.txt")) == ["a\n", "b\n", "c\n"]
    stages[1] = stage("compute_train_arch@arch_b", "exit 3")
    with pytest.raises(SystemExit, match="compute_train_arch@arch_b failed; the others are trained"):
        pipeline.train_architectures(workers, record=False)
