import pytest
import torch

from causal_interp import masking
from causal_interp.discovery import discover_class_graph
from causal_interp.masking import LayerMask, masked
from causal_interp.models import LeNet

from .test_discovery import hand_built


def test_masking_is_undone_bit_for_bit_even_on_error():
    torch.manual_seed(0)
    model = LeNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = {"conv2": 6, "fc1": 16, "fc3": 84}
    with masked(model, [LayerMask("fc1", [2, 5]), LayerMask("conv2", [0], [1, 3])], n):
        assert model.fc1.weight.view(120, 16, 25)[:, [2, 5]].abs().sum() == 0
        assert model.fc1.weight.view(120, 16, 25)[:, 3].abs().sum() > 0
        assert model.conv2.weight[[1, 3], 0].abs().sum() == 0 and model.conv2.weight[0, 0].abs().sum() > 0
    with pytest.raises(RuntimeError):
        with masked(model, [LayerMask("fc3", list(range(84)))], n):
            raise RuntimeError("stage crashed")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_masking_a_grouped_conv_zeroes_only_existing_edges():
    conv = torch.nn.Conv2d(4, 6, 3, groups=2)   # in groups {0,1},{2,3}; out groups {0,1,2},{3,4,5}
    model = torch.nn.Sequential(conv).eval()
    before = conv.weight.detach().clone()
    with masked(model, [LayerMask("0", [1, 2])], {"0": 4}):
        w = conv.weight
        assert w[:3, 1].abs().sum() == 0 and w[3:, 0].abs().sum() == 0   # parent 1 -> out 0-2, parent 2 -> out 3-5
        assert torch.equal(w[:3, 0], before[:3, 0]) and torch.equal(w[3:, 1], before[3:, 1])
    with masked(model, [LayerMask("0", [3], [0, 4])], {"0": 4}):
        assert conv.weight[4, 1].abs().sum() == 0 and torch.equal(conv.weight[0], before[0])
    assert torch.equal(conv.weight, before)
    assert masking.magnitude_order(model, "0", 4) == torch.argsort(
        torch.stack([before[:3, 0], before[:3, 1], before[3:, 0], before[3:, 1]]).abs().flatten(1).sum(1),
        descending=True, stable=True).tolist()


def test_share_zero_masks_nothing_and_keeps_accuracy():
    net, x = hand_built()
    g = discover_class_graph(net, x, 0)
    y = net(x).argmax(1)
    n = {lg.layer: lg.n_parents for lg in g.layers}
    for how in ("critical", "random"):
        with masked(net, masking.fidelity_masks(g, 0.0, how), n):
            assert masking.accuracy(net, x, y) == 1.0
    assert all(not m.parents for m in masking.repair_masks(g, 0.0))


def test_critical_masks_follow_the_graph():
    net, x = hand_built()
    g = discover_class_graph(net, x, 0)   # fc2: hidden 0 (w=2) most critical, then 3; fc1: input 0 first
    masks = {m.layer: m.parents for m in masking.fidelity_masks(g, 0.25, "critical")}
    assert masks == {"fc2": [0]}   # ceil(0.25 * 4) = 1; fc1 (parents = the inputs) is never masked
    n = {lg.layer: lg.n_parents for lg in g.layers}
    logit = net(x)[:, 0].mean()
    with masked(net, masking.fidelity_masks(g, 0.25, "critical"), n):
        assert net(x)[:, 0].mean() < logit - 1.0
    assert masking.magnitude_order(net, "fc2", 4) == [1, 0, 2, 3]  # column L1 norms 2, 2.5, 1, 1


def test_repair_masks_distracting_first_to_targets_only():
    net, x = hand_built()
    g = discover_class_graph(net, x, 0)  # fc2: distracting [1], irrelevant [2]; fc1: distracting [4], irrelevant [3]
    masks = masking.repair_masks(g, 0.5)
    assert [(m.layer, m.parents, m.targets) for m in masks] == [("fc2", [1], [0])]  # fc1's parents are inputs
    n = {lg.layer: lg.n_parents for lg in g.layers}
    logit = net(x)[:, 0]
    with masked(net, masks, n):
        assert bool((net(x)[:, 0] >= logit - 1e-6).all())  # removing distracting paths only raises the class logit


def test_unknown_rankings():
    net, x = hand_built()
    g = discover_class_graph(net, x, 0)
    with pytest.raises(ValueError, match="unknown ranking"):
        masking.fidelity_masks(g, 0.1, "biggest")
    with pytest.raises(ValueError, match="unknown repair mask"):
        masking.repair_masks(g, 0.1, "smart")


def test_correction_masks_remove_negative_paths():
    net, x = hand_built()
    x1 = x[:1]
    masks = masking.correction_masks(net, x1, 0)
    # fc2: hidden 1 (weight -1.5) lowers class 0 -> masked; hidden 0 and 3 raise it -> next targets
    assert (masks[0].layer, masks[0].parents, masks[0].targets) == ("fc2", [1], [0])
    assert (masks[1].layer, masks[1].parents, masks[1].targets) == ("fc1", [4], [0, 3])
    n = {"fc1": 5, "fc2": 4}
    before = torch.softmax(net(x1), 1)[0, 0]
    with masked(net, masks, n):
        after = torch.softmax(net(x1), 1)[0, 0]
    assert after > before


def test_irrelevant_only_masks_and_class_bias_by_hand():
    net, x = hand_built()
    g = discover_class_graph(net, x, 0)          # fc2 for class 0: necessary [0, 3], distracting [1], irrelevant [2]
    assert {m.layer: m.parents for m in masking.repair_masks(g, 1.0, "irrelevant")} == {"fc2": [2]}
    assert {m.layer: m.parents for m in masking.repair_masks(g, 1.0, "graph")} == {"fc2": [1, 2]}
    y = torch.tensor([0, 0, 1, 1, 1])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(5, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]]))
    xb = torch.tensor([[1.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0], [0, 1.0, 0, 0, 0]])
    r = masking.class_bias(model, xb, y, 0)        # predictions 0, 0, 0, 1, 1: one of the three 1s called 0
    assert r["all_accuracy"] == pytest.approx(0.8) and r["false_positive_rate"] == pytest.approx(1 / 3)
    assert r["precision"] == pytest.approx(2 / 3)


def test_fidelity_at_reads_the_largest_share_of_at_most_a_fifth():
    import pandas as pd

    from causal_interp.masking import fidelity_at
    rows = pd.DataFrame([{"share": s, "ranking": h, "accuracy": a} for s, h, a in
                         [(0.0, "critical", 0.9), (0.0, "random", 0.9), (0.0, "magnitude", 0.9),
                          (0.1, "critical", 0.3), (0.1, "random", 0.8), (0.1, "random", 0.6), (0.1, "magnitude", 0.7),
                          (0.5, "critical", 0.0), (0.5, "random", 0.1), (0.5, "magnitude", 0.1)]])
    assert fidelity_at(rows) == (0.9, 0.1, {"critical": 0.3, "random": 0.7, "magnitude": 0.7})
    assert fidelity_at(rows[rows.share != 0.1])[1:] == (None, {})


def test_random_mask_sets_differ_between_classes_and_draws_but_not_between_runs():
    from causal_interp.masking import mask_seed
    seeds = {mask_seed(0, c, d) for c in range(10) for d in range(3)}
    assert len(seeds) == 30 and mask_seed(0, 3, 1) == mask_seed(0, 3, 1) != mask_seed(1, 3, 1)


def _tiny_setups():
    """Two hand-built 'models' (the same net) with their class-0 graph; every example is the evaluation half."""
    net, x = hand_built()
    g = discover_class_graph(net, x, 0)
    y = net(x).argmax(1)
    n = {lg.layer: lg.n_parents for lg in g.layers}
    return {m: masking.Setup(net, ["zero", "one"], {0: g}, x, y, torch.arange(len(x)), n) for m in ("b", "a")}


def test_load_setups_loads_every_model_in_order_from_its_graph_folder(monkeypatch, tmp_path):
    from pathlib import Path

    calls = []
    monkeypatch.setattr(masking, "load_setup", lambda *a, **k: calls.append((a, k)) or a[0])
    cfg = masking.MaskingConfig(models=["m2", "m1"], classes=[3], graphs_dir="graphs_x", graph_test="two_sample",
                                shares=[0.0])
    assert masking.load_setups(cfg, "models", tmp_path, "data_cfg", device="cuda:1") == {"m2": "m2", "m1": "m1"}
    assert calls[0] == (("m2", Path("models"), tmp_path / "graphs_x" / "m2" / "two_sample", [3], "data_cfg"),
                        {"device": "cuda:1"})


@pytest.mark.parametrize("kind", masking.SWEEPS)
def test_write_sweep_is_the_rows_of_every_model_with_its_run_record(kind, tmp_path):
    import json

    import pandas as pd

    setups = _tiny_setups()
    cfg = masking.MaskingConfig(models=list(setups), shares=[0.0, 0.5], random_draws=1, all_classes_examples=10,
                                threads=1)
    rows, seconds = masking.write_sweep(kind, setups, cfg, tmp_path)
    one = (masking.fidelity_rows(setups["a"], cfg.shares, 1, 0) if kind == "fidelity" else
           masking.repair_rows(setups["a"], cfg.shares, 1, 0, 10))
    assert rows == [{"model": m, **r} for m in ("b", "a") for r in one]      # models in order, model column first
    table = pd.read_csv(tmp_path / f"{kind}.csv")
    assert list(table.columns) == list(rows[0]) and len(table) == len(rows) == 2 * 2 * 3
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["models"] == ["b", "a"] and run["seconds"] == seconds >= 0
    assert "threads" not in run["settings"] and run["settings"]["shares"] == [0.0, 0.5]
    with pytest.raises(ValueError, match="unknown masking sweep"):
        masking.sweep("prune", setups, cfg)
    report = tmp_path / "report"
    report.mkdir()
    df, back = masking.read_sweep(kind, tmp_path, report)           # what the report notebook reads
    assert back == run and df.to_dict("records") == table.assign(model=table["model"].astype(str)).to_dict("records")
    assert (report / f"{kind}.csv").read_text() == (tmp_path / f"{kind}.csv").read_text()
    with pytest.raises(ValueError, match="unknown masking sweep"):
        masking.read_sweep("prune", tmp_path, report)
