import json

import numpy as np
import pytest

from causal_interp import reliability
from causal_interp.discovery import discover_class_graph

from .test_discovery import hand_built


def test_b_schedule_rises_every_runs_per_b():
    b = reliability.b_schedule(1000, 0.01, 0.5, 10)
    assert len(b) == 1000 and len(set(b)) == 100
    assert np.all(b[:10] == 0.01) and b[-1] == pytest.approx(0.5) and np.all(np.diff(b) >= 0)
    assert list(reliability.b_schedule(3, 0.2, 0.4, 10)) == [0.2, 0.2, 0.2]


def test_hand_built_graph_is_perfectly_reliable():
    net, x = hand_built()
    hard = discover_class_graph(net, x, 0, test="paired")
    records = reliability.soft_sweep(net, x, hard, reliability.b_schedule(20, 0.01, 0.5, 5), 0.01, log=lambda *_: None)
    rates = reliability.appearance_rates(hard, records)
    assert set(rates) == {"fc2", "fc1"}
    for layer in rates.values():
        assert layer["share_always"] == 1.0 and layer["soft_only"] == {}
    rows = reliability.rates_by_b(hard, records)
    assert {r["b"] for r in rows} == set(reliability.b_schedule(20, 0.01, 0.5, 5)) and all(r["rate"] == 1 for r in rows)


def test_appearance_rates_by_hand():
    net, x = hand_built()
    hard = discover_class_graph(net, x, 0)            # fc2 necessary [0, 3], fc1 necessary [0, 1, 2]
    records = [{"run": 0, "b": 0.1, "necessary": {"fc2": [0, 3], "fc1": [0, 1]}},
               {"run": 1, "b": 0.1, "necessary": {"fc2": [0, 1], "fc1": [0, 1, 2, 4]}}]
    r = reliability.appearance_rates(hard, records)
    assert r["fc2"]["rate"] == {0: 1.0, 3: 0.5} and r["fc2"]["share_always"] == 0.5 and r["fc2"]["soft_only"] == {1: 0.5}
    assert r["fc1"]["rate"] == {0: 1.0, 1: 1.0, 2: 0.5} and r["fc1"]["share_always"] == pytest.approx(2 / 3)
    assert r["fc1"]["soft_only"] == {4: 0.5}


def test_sweep_resumes_from_its_cache(tmp_path, monkeypatch):
    net, x = hand_built()
    hard = discover_class_graph(net, x, 0)
    bs = reliability.b_schedule(6, 0.1, 0.3, 2)
    cache = tmp_path / "sweep.jsonl"
    full = reliability.soft_sweep(net, x, hard, bs, 0.01, cache_file=cache, log=lambda *_: None)
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # interrupted while writing run 3
    calls = []
    real = reliability.discover_class_graph
    monkeypatch.setattr(reliability, "discover_class_graph", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = reliability.soft_sweep(net, x, hard, bs, 0.01, cache_file=cache, log=lambda *_: None)
    assert again == full and len(calls) == 3
    assert [json.loads(line)["run"] for line in cache.read_text().splitlines()] == list(range(6))


def test_config_checks():
    with pytest.raises(ValueError, match="need eps <= b_min"):
        reliability.ReliabilityConfig(models={"m": {}}, b_min=0.0).validate("reliability")
    with pytest.raises(ValueError, match="at least one training stage"):
        reliability.ReliabilityConfig().validate("reliability")


def test_pooled_share_skips_layers_without_hard_nodes():
    import math

    from causal_interp.reliability import pooled_share
    rates = [{"hard_nodes": 4, "share_always": 0.5}, {"hard_nodes": 0, "share_always": float("nan")},
             {"hard_nodes": 6, "share_always": 1.0}]
    assert pooled_share(rates) == 0.8
    assert math.isnan(pooled_share([{"hard_nodes": 0, "share_always": float("nan")}])) and math.isnan(pooled_share([]))
