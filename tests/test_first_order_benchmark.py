"""benchmarks/first_order.py on tiny networks: the structure of what it reports, and perfect agreement where the
first-order estimate is exact (a network without activation functions)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from causal_interp import discovery
from causal_interp.interventions import Intervention
from tests.test_first_order import Linear, x_small
from tests.test_interventions import TinyResidual

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("first_order_benchmark", REPO / "benchmarks" / "first_order.py")
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench            # its dataclass looks its module up
spec.loader.exec_module(bench)


def test_an_estimator_equal_to_exact_agrees_perfectly():
    net, x = Linear().eval(), x_small(n=30, seed=2)
    # margin 1: only what the estimate calls significant is confirmed, half of the rest sampled
    s = bench.Settings(test="paired", intervention=Intervention("soft", b=0.2, eps=0.1, seed=5), margin=1.0,
                       sample=0.5)
    rows = [bench.class_benchmark(net, x, k, s) for k in (0, 1)]
    summary = bench.summarize(rows)
    for name in bench.ESTIMATES:
        e = summary[name]
        assert e["spearman"]["layers_compared"] >= 3
        assert e["spearman"]["min"] == pytest.approx(1.0)
        assert e["f1"] == {"necessary": 1.0, "non_irrelevant": 1.0} and e["label_agreement"] == 1.0
        counts = np.array(e["confusion"]["counts"])
        assert counts.sum() == np.trace(counts) and (np.diag(counts) > 0).all()   # every label occurs
    sc = summary["screened"]
    assert sc["relabelled"] == sc["edges_added"] == sc["edges_removed"] == 0 and sc["classes_identical"] == 2
    assert sc["screened_out"] > 0 and sc["sampled"] > 0 and sc["missed"] == 0
    assert 0 < sc["confirmed_share"] < sc["exact_share"] <= 1
    assert all(r["screened"]["differences"]["identical_labels"] for r in rows)


def test_the_report_of_a_relu_network_has_every_part(tmp_path):
    torch.manual_seed(0)
    net = TinyResidual().eval()
    x = x_small(n=10, shape=(2, 8, 8))
    s = bench.Settings(test="paired", steps=3, margin=4.0, sample=1.0)
    rows = [bench.class_benchmark(net, x, k, s) for k in (0, 2)]
    # the exact graph given (as from a results file) is used as is, with its own per-layer seconds
    given, _ = bench.exact_graph(net, x, 1, s)
    rows.append(bench.class_benchmark(net, x, 1, s, exact=given, exact_source="results"))
    assert rows[-1]["exact"]["source"] == "results"
    assert rows[-1]["exact"]["seconds"] == pytest.approx(bench.layer_seconds(given))
    summary = bench.summarize(rows)
    result = {"models": {"tiny": {"summary": summary, "per_class": rows}},
              "paper_scale": bench.paper_scale({"tiny": summary["screened"]["ratio_to_exact"]}, texts=())}
    path = tmp_path / bench.FILE
    path.write_text(json.dumps(result, default=float))
    back = json.loads(path.read_text())["models"]["tiny"]["summary"]
    assert back["classes"] == [0, 2, 1]
    for name in bench.ESTIMATES:
        assert set(back[name]) >= {"spearman", "confusion", "f1", "label_agreement", "seconds", "ratio_to_exact"}
        assert len(back[name]["confusion"]["counts"]) == 3 and back[name]["seconds"] > 0
    sc = back["screened"]
    assert set(sc) >= {"confirmed_share", "exact_share", "sampled", "missed", "false_negative_rate",
                       "false_negative_ci", "relabelled", "seconds", "ratio_to_exact"}
    assert sc["sampled"] == sc["screened_out"]                       # sample = 1: every screened-out edge checked
    if sc["sampled"]:
        lo, hi = sc["false_negative_ci"]
        assert 0 <= lo <= sc["false_negative_rate"] <= hi <= 1
    # every layer with targets is compared, in the chain's order
    tested = [lg.layer for lg in given.layers if lg.targets]
    assert [r["layer"] for r in rows[-1]["taylor"]["layers"]] == tested
    assert [r["layer"] for r in rows[-1]["screened"]["layers"]] == tested
    assert "tiny" in bench.table({"models": {"tiny": {"summary": summary}}})


def test_confusion_f1_and_differences_by_hand():
    exact = np.array(["necessary", "necessary", "distracting", "irrelevant", "irrelevant"])
    est = np.array(["necessary", "irrelevant", "necessary", "irrelevant", "distracting"])
    t = bench.confusion(exact, est)
    assert t.tolist() == [[1, 0, 1], [1, 0, 0], [0, 1, 1]]
    f1 = bench.f1_scores(t)
    assert f1["necessary"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))     # tp 1, fp 1, fn 1
    assert f1["non_irrelevant"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2 (n/d either way), fp 1, fn 1
    assert bench.f1_scores(np.diag([0, 0, 4])) == {"necessary": 1.0, "non_irrelevant": 1.0}
    assert bench.rank_correlation([1, 2, 3], [10, 20, 30]) == 1.0 and bench.rank_correlation([1, 2], [1, 2]) is None

    def graph(nec, dis, targets):
        lg = discovery.LayerGraph("l", 4, targets, nec, dis, [j for j in range(4) if j not in nec + dis],
                                  [0.0] * 4, [0.0] * 4, [1.0] * 4)
        return discovery.ClassGraph(0, "", 2, {}, "paired", 0.05, layers=[lg])

    d = bench.graph_differences(graph([0, 1], [2], [0, 1]), graph([0], [3], [0, 1]))
    assert (d["relabelled"], d["edges_added"], d["edges_removed"]) == (3, 0, 2)
    assert d["layers"][0]["relabelled_as"] == {"necessary->irrelevant": 1, "distracting->irrelevant": 1,
                                               "irrelevant->distracting": 1}


def test_paper_scale_applies_the_ratio_to_the_discovery_parts_only():
    same = bench.paper_scale({"finetune_cifar10": 1.0, "arch_vit_tiny": 1.0}, texts=())
    assert same["total_hours_screened"] == same["total_hours_exact"] == sum(bench.PAPER_SCALE_HOURS.values())
    ps = bench.paper_scale({"finetune_cifar10": 0.1, "arch_vit_tiny": 0.2, "arch_mobilenetv2_100": 0.4,
                            "train_lenet": 5.0}, texts=())
    h = bench.PAPER_SCALE_HOURS
    assert ps["hours_screened"]["fig7_resnet18_soft_graphs"] == pytest.approx(0.1 * h["fig7_resnet18_soft_graphs"])
    assert ps["hours_screened"]["arch_graphs"] == pytest.approx(0.3 * h["arch_graphs"])
    assert ps["ratios_used"]["arch_graphs"]["from"] == ["arch_vit_tiny", "arch_mobilenetv2_100"]
    assert ps["hours_screened"]["training_architectures_224px"] == h["training_architectures_224px"]
    assert ps["total_hours_screened"] == pytest.approx(sum(ps["hours_screened"].values()))
    partial = bench.paper_scale({"train_lenet": 0.5, "arch_vit_tiny": 0.2}, texts=())   # no ResNet18: no fig. 7
    assert partial["ratios_used"]["fig7_resnet18_soft_graphs"]["ratio"] is None
    assert partial["hours_screened"]["fig7_resnet18_soft_graphs"] is None and partial["total_hours_screened"] is None
    assert partial["hours_screened"]["arch_graphs"] == pytest.approx(0.2 * h["arch_graphs"])


def test_the_docs_still_state_the_inputs():
    assert bench.paper_scale({})["stated_in"] in ("docs/timing.md", "README.md")


def test_a_results_graph_is_used_only_when_this_model_found_it(tmp_path):
    torch.manual_seed(0)
    net, x = TinyResidual().eval(), x_small(n=10, shape=(2, 8, 8))
    s = bench.Settings(test="paired")
    g, _ = bench.exact_graph(net, x, 1, s)
    idx = torch.arange(10, 20)
    g.examples = idx.tolist()
    path = g.save(tmp_path / "class_1.json")
    kept, why = bench.results_graph(path, s, idx, net, x, 1)
    assert why == "" and [lg.necessary for lg in kept.layers] == [lg.necessary for lg in g.layers]
    assert bench.results_graph(path, s, idx + 1, net, x, 1)[1].count("examples")          # other examples
    assert "alpha" in bench.results_graph(path, bench.Settings(test="paired", alpha=0.01), idx, net, x, 1)[1]
    assert "another model" in bench.results_graph(path, s, idx, net, x, 1, run_md5="a", model_md5="b")[1]
    with torch.no_grad():
        net.fc.weight.mul_(1.1)                                       # retrained, found on the same examples
    assert "differ" in bench.results_graph(path, s, idx, net, x, 1)[1]
    assert bench.results_graph(tmp_path / "class_9.json", s, idx, net, x, 9)[0] is None


spec_soft = importlib.util.spec_from_file_location("first_order_soft_benchmark",
                                                   REPO / "benchmarks" / "first_order_soft.py")
soft_bench = importlib.util.module_from_spec(spec_soft)
spec_soft.loader.exec_module(soft_bench)


def test_the_soft_run_benchmark_agrees_perfectly_where_taylor_is_exact():
    from causal_interp import reliability

    net, x = Linear().eval(), x_small(n=30, seed=2)
    hard = discovery.discover_class_graph(net, x, 1, None, Intervention("hard"), "paired")
    b_values = reliability.b_schedule(6, 0.1, 0.4, 2)
    exact = reliability.soft_sweep(net, x, hard, b_values, 0.05, 0, None, log=lambda *_: None)
    taylor = soft_bench.taylor_runs(net, x, hard, b_values, 0.05, 0, None, 4096)
    assert [r["necessary"] for r in taylor] == [r["necessary"] for r in exact], "no activation: taylor is exact"
    out = soft_bench.compare(hard, exact, taylor)
    assert out["runs"] == 6 and all(v["min_f1"] == 1.0 for v in out["layers"].values())
    assert out["fig7_share"]["taylor"] == out["fig7_share"]["exact"]
    # a run that loses a node: its F1 drops, fig. 7's share can only fall
    layer = next(l for l, nodes in taylor[0]["necessary"].items() if nodes)
    taylor[0]["necessary"][layer] = taylor[0]["necessary"][layer][1:]
    worse = soft_bench.compare(hard, exact, taylor)
    assert worse["layers"][layer]["min_f1"] < 1.0 and worse["fig7_share"]["taylor"] <= out["fig7_share"]["exact"]
    assert soft_bench.f1(set(), set()) == 1.0 and soft_bench.f1({1, 2}, {2, 3}) == 0.5
    with pytest.raises(ValueError, match="same runs"):
        soft_bench.compare(hard, exact, taylor[:-1])


def test_the_soft_run_benchmark_takes_the_stage_runs_only_when_made_with_these_settings(tmp_path):
    from types import SimpleNamespace

    graph = tmp_path / "class_3.json"
    graph.write_text('{"graph": 1}')
    results = tmp_path / "reliability"
    (results / "m").mkdir(parents=True)
    (results / "m" / "class_3.graph.json").write_text('{"graph": 1}')
    b_values = [0.1, 0.1, 0.2, 0.2]
    (results / "m" / "class_3.runs.jsonl").write_text(
        "".join(json.dumps({"run": i, "b": b, "necessary": {"fc": [i]}}) + "\n" for i, b in enumerate(b_values)))
    settings = {"eps": 0.01, "seed": 0, "models": {"m": {"layers": ["fc"]}}}
    (results / "sweeps.json").write_text(json.dumps(
        {"settings": settings, "models": {"m": {"classes": {"3": {"runs": 4, "seconds_this_run": 40.0}}}}}))
    cfg = SimpleNamespace(eps=0.01, seed=0)
    records, seconds = soft_bench.stage_runs(results, "m", 3, graph, cfg, ["fc"], b_values[:2])
    assert [r["necessary"]["fc"] for r in records] == [[0], [1]] and seconds == 20.0, "the first runs, their share"
    assert soft_bench.stage_runs(results, "m", 3, graph, SimpleNamespace(eps=0.05, seed=0), ["fc"], b_values) is None
    assert soft_bench.stage_runs(results, "m", 3, graph, cfg, ["conv", "fc"], b_values) is None
    assert soft_bench.stage_runs(results, "m", 3, graph, cfg, ["fc"], [0.1, 0.3]) is None, "another b schedule"
    assert soft_bench.stage_runs(results, "m", 3, graph, cfg, ["fc"], b_values + [0.3]) is None, "too few runs"
    assert soft_bench.stage_runs(results, "m", 5, graph, cfg, ["fc"], b_values) is None
    graph.write_text('{"graph": 2}')
    assert soft_bench.stage_runs(results, "m", 3, graph, cfg, ["fc"], b_values) is None, "another hard graph"
