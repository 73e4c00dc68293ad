"""Per-example graphs (eq. 1 threshold), the KL-type causal score, frequencies and corrections of the earlier paper,
on networks small enough to compute by hand, and against a brute-force deep copy."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from causal_interp import per_example, verdicts
from causal_interp.config import ConfigError, from_dict
from causal_interp.discovery import ClassGraph, LayerGraph
from causal_interp.interventions import TracedModel


def mlp(w1, w2):
    """x (2) -> fc1 -> hidden (3) -> fc2 -> logits; linear, no bias, so every effect is a product of weights."""
    net = nn.Sequential()
    net.add_module("fc1", nn.Linear(len(w1[0]), len(w1), bias=False))
    net.add_module("fc2", nn.Linear(len(w2[0]), len(w2), bias=False))
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor(w1, dtype=torch.float32))
        net.fc2.weight.copy_(torch.tensor(w2, dtype=torch.float32))
    return net.eval()


def test_example_graph_by_hand():
    # hidden h = (x0, x1, x0 + x1) = (1, 2, 3) for x = (1, 2); class 0 logit = 2 h0 + 0 h1 - h2 / 3
    net = mlp([[1, 0], [0, 1], [1, 1]], [[2, 0, -1 / 3], [0, 0, 0]])
    g = per_example.example_graph(net, torch.tensor([[1.0, 2.0]]), 0, example=7, layers=["fc1", "fc2"])
    top, bottom = g.layers
    # fc2: removing h_j's edge to class 0 changes the logit by -w_0j h_j = (-2, 0, +1): dead zone |mean| = 1/3
    np.testing.assert_allclose(top.mean_effect, [-2, 0, 1], atol=1e-6)
    assert per_example.threshold(torch.tensor([-2.0, 0, 1])) == pytest.approx(1 / 3)
    np.testing.assert_allclose(top.z, np.array([-2, 0, 1]) / np.std([-2, 0, 1]), atol=1e-6)
    assert (top.necessary, top.distracting, top.irrelevant) == ([0], [2], [1])
    # fc1, targets {h0}: removing x_i's edge to h0 changes the logit by -2 * w1[0, i] * x_i = (-2, 0); zone |-1|
    assert bottom.targets == [0]
    np.testing.assert_allclose(bottom.mean_effect, [-2, 0], atol=1e-6)
    assert (bottom.necessary, bottom.distracting) == ([0], [])
    assert g.examples == [7] and g.n_examples == 1 and g.test == per_example.TEST
    assert ClassGraph.from_dict(g.to_dict()).layer("fc1").necessary == [0]     # the graph JSON format


def test_the_kl_score_and_the_logit_effect_rank_two_parameters_differently():
    # x0 feeds h0, which feeds both classes alike; x1 feeds h1, which feeds class 0 only
    net = mlp([[1, 0], [0, 1], [0, 0]], [[1, 0.5, 0], [1, 0, 0]])
    traced = TracedModel(net)
    traced.cache(torch.tensor([[1.0, 1.0]]))
    logit = per_example.class_scores(traced, "fc1", 0, [0, 1], "logit")[:, 0]
    kl = per_example.class_scores(traced, "fc1", 0, [0, 1], "kl")[:, 0]
    np.testing.assert_allclose(logit, [-1.0, -0.5], atol=1e-6)      # removing x0 lowers the class logit most ...
    assert abs(kl[0]) < 1e-6 < abs(kl[1])                             # ... but leaves its probability as it was
    # class 0 loses 0.5 against class 1: log p0 goes from log sigmoid(0.5) to log sigmoid(0)
    assert float(kl[1]) == pytest.approx(np.log(0.5) - np.log(1 / (1 + np.exp(-0.5))), abs=1e-6)


def test_the_kl_score_matches_a_brute_force_deep_copy():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.ReLU(),
                        nn.Linear(5, 3)).eval()
    x = torch.randn(2, 1, 8, 8)
    traced = TracedModel(net)
    traced.cache(x)
    targets = [0, 2, 4]
    kl = per_example.class_scores(traced, "3", 1, targets, "kl")
    base = torch.log_softmax(net(x), 1)[:, 1]
    for j in range(4):                      # parent j of the Linear after the flatten: conv channel j's 36 inputs
        m2 = copy.deepcopy(net)
        with torch.no_grad():
            m2[3].weight[targets, j * 36:(j + 1) * 36] = 0
        expected = torch.log_softmax(m2(x), 1)[:, 1] - base
        np.testing.assert_allclose(kl[j].detach(), expected.detach(), atol=1e-5)


def test_frequencies_filters_and_keep_masks():
    def graph(plus_top, plus_conv):
        return ClassGraph(3, "3", 1, {}, per_example.TEST, 0.0, layers=[
            LayerGraph("fc", 4, [3], plus_top, [], [], [0.0] * 4, [0.0] * 4, [0.0] * 4),
            LayerGraph("conv2", 3, plus_top, plus_conv, [], [], [0.0] * 3, [0.0] * 3, [0.0] * 3)])

    graphs = [graph([0, 1], [2]), graph([0], [2]), graph([0, 3], [1, 2]), graph([1], [2])]
    freq = per_example.frequencies(graphs)
    np.testing.assert_allclose(freq["fc"], [0.75, 0.5, 0, 0.25])
    np.testing.assert_allclose(freq["conv2"], [0, 0.25, 1.0])
    assert per_example.causal_filters(freq, ["conv1", "conv2", "fc"], 0.7) == {"conv1": [2], "conv2": [0]}
    masks = per_example.keep_masks(graphs[0])      # the lowest layer (its parents: the input) is never masked
    assert [(m.layer, m.parents, m.targets) for m in masks] == [("fc", [2, 3], [3])]
    rand = per_example.random_keep(graphs[2], seed=1)
    assert [len(rand["fc"]), len(rand["conv2"])] == [2, 2]


def test_correction_keeps_only_g_plus_and_a_random_control_of_the_same_size():
    # class 1 is predicted (logit 1.8 vs 1); the graph of the true class 0 keeps h0 and removes h2's negative edge
    net = mlp([[1, 0], [0, 1], [1, 1]], [[2, 0, -1 / 3], [0, 0, 0.6]])
    x = torch.tensor([[1.0, 2.0]])
    assert int(net(x).argmax()) == 1
    row = per_example.correct(net, x, 0, example=5, n_parents={"fc1": 2, "fc2": 3}, effect="logit", draws=4, seed=0,
                              layers=["fc1", "fc2"])
    assert row["predicted_before"] == 1 and row["kept"] == 1       # G+ at fc2: h0 (fc1 reads the input: not masked)
    # kept: logit 0 = 2 * h0 with h0 = x0 = 1 -> 2; logit 1 = 0.6 h2 = 1.8 (class 1's edges are not on the graph)
    assert row["true_prob_after"] == pytest.approx(1 / (1 + np.exp(-0.2)), rel=1e-5) and row["corrected"]
    # a random control keeps one of h0, h1, h2 at fc2: only h0 (logit 0 = 2 > 1.8) corrects the prediction
    g = per_example.example_graph(net, x, 0, 5, ["fc1", "fc2"])
    expected = np.mean([per_example.random_keep(g, [0, 5, d])["fc2"] == [0] for d in range(4)])
    assert row["random_corrected"] == expected


def test_confusion_pairs_and_verdicts():
    y = torch.tensor([3, 3, 3, 5, 5, 1])
    pred = torch.tensor([8, 5, 5, 3, 5, 1])
    assert per_example.confusion_pairs(y, pred, None) == [(3, 5), (3, 8)]
    assert per_example.confusion_pairs(y, pred, [[1, 2]]) == [(1, 2)]
    assert per_example.confusion_pairs(y, y, None) == []
    rows = [{"corrected": True, "random_corrected": 0.1, "true_prob_before": 0.2, "true_prob_after": 0.99}] * 4
    v = verdicts.correction_verdict(rows, (3, 8))
    assert v.outcome == verdicts.HOLDS and "100% corrected" in v.sentence() and verdicts.CLAIMS["correction"] in v.sentence()
    assert verdicts.correction_verdict(rows[:2], (3, 8)).outcome == verdicts.UNRESOLVED
    worse = [dict(r, random_corrected=0.9) for r in rows]
    assert verdicts.correction_verdict(worse, (3, 8)).outcome == verdicts.FAILS
    assert verdicts.filters_verdict([1, 2], [2, 1], (3, 8), "conv1", 0.8).outcome == verdicts.HOLDS
    assert "Jaccard 0.33" in verdicts.filters_verdict([1, 2], [2, 3], (3, 8), "conv1", 0.8).number


def test_bad_input_stops_early():
    with pytest.raises(ValueError, match="one example"):
        per_example.example_graph(mlp([[1, 0]], [[1]]), torch.zeros(2, 2), 0)
    for bad in ({"effect": "kld"}, {"classes": [3]}, {"pairs": [[3, 3]]}):
        with pytest.raises(ConfigError):
            from_dict(per_example.PerExampleConfig, bad, "per_example")


def lenet_like():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3)).eval()


def test_a_single_input_channel_is_not_tested_and_its_filters_survive_the_correction():
    net = lenet_like()
    x = torch.randn(1, 1, 8, 8)
    for effect in per_example.EFFECTS:
        g = per_example.example_graph(net, x, 1, effect=effect)
        first = g.layers[-1]                          # the first conv: one parent, the grey input
        assert first.layer == "0" and first.n_parents == 1 and first.necessary == first.distracting == []
        assert all(np.isfinite(lg.mean_effect).all() for lg in g.layers)
        masks = per_example.keep_masks(g)
        assert "0" not in [m.layer for m in masks], "the input channel's edges are never removed"
        kept = {lg.layer: lg.necessary for lg in g.layers}
        assert all(set(m.parents).isdisjoint(kept[m.layer]) for m in masks)


def test_correct_hands_the_model_back_as_it_came():
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    per_example.correct(net, torch.randn(1, 4), 2, 0, {"0": 4, "3": 6}, "logit", 2, 0)
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_no_causal_filter_for_either_digit_is_not_resolved():
    assert verdicts.filters_verdict([], [], (3, 8), "conv1", 0.8).outcome == verdicts.UNRESOLVED
    assert per_example.confusion_pairs(torch.tensor([1]), torch.tensor([1]), [[3, 8], [3, 8]]) == [(3, 8)]
    assert per_example.class_examples(torch.tensor([3, 3, 8, 3]), torch.tensor([3, 8, 8, 3]), 3, 5) == [0, 3]
    assert per_example.class_examples(torch.tensor([3, 3, 8, 3]), torch.tensor([3, 8, 8, 3]), 3, 2, False) == [0, 1]
    assert np.isnan(per_example.score_agreement([1, 1], [1, 2])) and per_example.score_agreement([1, 2, 3], [3, 2, 1]) == -1
