"""Engine hardening (issue 18): non-finite inputs stop the run, zero variance follows a documented rule, and
every entry point hands the model back exactly as it came (weights, buffers, requires_grad, train/eval mode)."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from causal_interp import baselines, discovery, evaluation, masking, per_example, reliability
from causal_interp.discovery import ClassGraph, discover_all, discover_class_graph
from causal_interp.interventions import NonFiniteError
from causal_interp.models import LeNet, evaluating

from .test_discovery import hand_built


def lenet_and_digits(n=12, seed=0):
    torch.manual_seed(seed)
    model = LeNet().eval()
    x = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))
    return model, x


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_one_non_finite_pixel_stops_discovery_naming_class_and_layer(bad, tmp_path):
    model, x = lenet_and_digits()
    x[4, 0, 7, 9] = bad
    with pytest.raises(NonFiniteError, match=r"class 3, input of layer 'conv1': 1 of 12 examples have non-finite input"):
        discover_class_graph(model, x, 3)
    y = torch.full((12,), 3)
    with pytest.raises(NonFiniteError, match=r"class 3, input of layer 'conv1', discovery examples: 1 of 12 examples"):
        discover_all(model, x, y, [0, 3], [str(i) for i in range(10)], 10, discovery.Intervention(), "paired", 0.05,
                     cache_dir=tmp_path / "cache", key="k", correct_only=False, log=lambda *_: None)
    assert not list(tmp_path.rglob("*.json")), "no graph file may be written"


def test_a_nan_weight_names_the_first_layer_with_non_finite_output():
    model, x = lenet_and_digits()
    with torch.no_grad():
        model.fc1.weight[5, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"class 1, first non-finite output at layer 'fc1': 12 of 12 examples "
                                             r"have non-finite logits"):
        discover_class_graph(model, x, 1)


def test_non_finite_inputs_stop_reliability_masking_and_evaluation():
    net, x = hand_built()
    hard = discover_class_graph(net, x, 0, test="paired")
    x_bad = x.clone()
    x_bad[2, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="class 0"):
        reliability.soft_sweep(net, x_bad, hard, [0.1], 0.01, log=lambda *_: None)
    y = net(x).argmax(1)
    with pytest.raises(NonFiniteError, match=r"masking: accuracy: 1 of 60 examples \(classes \[.\]\)"):
        masking.accuracy(net, x_bad, y)
    with pytest.raises(NonFiniteError, match="per-example graph of class 0"):
        per_example.example_graph(net, x_bad[2:3], 0)
    model, xl = lenet_and_digits(3)
    xl[1, 0, 0, 0] = float("inf")
    cfg = evaluation.EvaluationConfig(models=["m"], le_samples=2)

    def Saliency(**kwargs):
        raise AssertionError("must not be called")

    with pytest.raises(NonFiniteError, match=r"LE of Saliency: 1 of 3 examples \(classes \[2\]\)"):
        evaluation.score("LE", cfg, model, xl.numpy(), np.array([1, 2, 3]), Saliency)


def test_identical_examples_give_flagged_degenerate_tests_not_infinities(tmp_path):
    """60 copies of one input: every effect is the same on every example, so no test has any variance. The
    documented outcome: those parents are irrelevant (z = 0, p = 1) and listed as `degenerate`; a parent with
    exactly no effect (hidden 2 at fc2 for class 0: weight 0) is irrelevant and not degenerate."""
    net, x = hand_built()
    same = x[:1].repeat(60, 1)
    for test in ("paired", "two_sample"):
        g = discover_class_graph(net, same, 0, test=test)
        top = g.layer("fc2")
        assert top.necessary == [] and top.distracting == [] and top.irrelevant == [0, 1, 2, 3]
        assert top.degenerate == [0, 1, 3]        # non-zero effects without variance; hidden 2 has none
        assert all(np.isfinite(top.z)) and set(top.z) == {0.0} and set(top.p) == {1.0}
        path = g.save(tmp_path / f"{test}.json")
        assert json.loads(path.read_text())["layers"][0]["degenerate"] == [0, 1, 3]
        assert "Infinity" not in path.read_text()
        assert ClassGraph.load(path).layer("fc2").degenerate == [0, 1, 3]
    lines = []
    discover_all(net, same, torch.zeros(60, dtype=torch.long), [0], ["0", "1"], 60, discovery.Intervention(),
                 "paired", 0.05, correct_only=False, log=lines.append)
    assert any(line.startswith("WARNING class 0: zero-variance (degenerate) tests") and "'fc2': 3" in line
               for line in lines)


def test_graph_files_without_the_degenerate_field_still_load(tmp_path):
    net, x = hand_built()
    d = discover_class_graph(net, x, 0).to_dict()
    for lg in d["layers"]:
        del lg["degenerate"]
    (tmp_path / "old.json").write_text(json.dumps(d))
    assert ClassGraph.load(tmp_path / "old.json").layer("fc1").degenerate == []


class BNNet(nn.Module):
    """conv -> BatchNorm -> ReLU -> Dropout -> pool -> fc, so train/eval mode changes the output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).mean((2, 3)))


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()])


def assert_as_it_came(model, before):
    state, modes, grads = snapshot(model)
    assert modes == before[1], "train/eval mode changed"
    assert grads == before[2], "requires_grad changed"
    for k, v in before[0].items():
        assert torch.equal(state[k], v), k


def test_every_entry_point_hands_the_model_back_as_it_came():
    torch.manual_seed(0)
    model = BNNet()
    with torch.no_grad():                       # non-trivial BatchNorm buffers
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 1.5)
    model.train()
    model.drop.eval()                           # a mixed mode, to be kept as it is
    model.conv.weight.requires_grad_(False)     # a frozen parameter, to stay frozen
    before = snapshot(model)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with evaluating(model):
        y = model(x).argmax(1)
    k = int(y.mode().values)

    g = discover_class_graph(model, x[y == k], k, test="paired")
    assert_as_it_came(model, before)
    discover_all(model, x, y, [k], ["a", "b", "c"], 10, discovery.Intervention(), "paired", 0.05, log=lambda *_: None)
    assert_as_it_came(model, before)
    reliability.soft_sweep(model, x[y == k], g, [0.1, 0.2], 0.01, log=lambda *_: None)
    assert_as_it_came(model, before)
    n = {lg.layer: lg.n_parents for lg in g.layers}
    with masking.masked(model, masking.fidelity_masks(g, 0.5, "critical"), n):
        masking.accuracy(model, x, y)
    per_example.correct(model, x[:1], k, 0, n, "kl", 2, 0)
    assert_as_it_came(model, before)
    cfg = evaluation.EvaluationConfig(models=["m"], le_samples=2)
    xs, ys = x[y == k][:2].numpy(), y[y == k][:2].numpy()
    evaluation.CausalExplainer(model, {k: g}, "conv")(model, xs, ys)
    evaluation.score("LE", cfg, model, xs, ys, baselines.explainer("Saliency", model))
    assert_as_it_came(model, before)


def test_eval_mode_results_do_not_depend_on_the_mode_the_model_came_in():
    torch.manual_seed(0)
    model = BNNet()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    g_eval = discover_class_graph(model.eval(), x, 0, test="paired")
    g_train = discover_class_graph(model.train(), x, 0, test="paired")
    assert model.training
    assert g_eval.to_dict()["layers"][0]["mean_effect"] == g_train.to_dict()["layers"][0]["mean_effect"]


def test_effects_at_float32_rounding_level_are_not_significant():
    """Effects of a tiny weight, 1e-6 on logits near 10 (one float32 rounding step is ~1e-6 there), that vary by
    rounding only: the paired z would be ~60, 'necessary'. Below the resolution 4 * eps * max|y| they are a
    degenerate test (flagged) or no measurable effect, never significant; real effects are still tested."""
    g = torch.Generator().manual_seed(0)
    base = 10 + torch.rand(100, generator=g)
    effects = torch.stack([-1e-5 + 1e-7 * torch.randn(100, generator=g),      # constant beyond rounding: degenerate
                           -1e-6 * torch.rand(100, generator=g),               # within rounding: no effect
                           -0.3 + 0.05 * torch.randn(100, generator=g)])       # a real effect
    for test in ("paired", "two_sample"):
        z, p, labels, degenerate = discovery.significance(effects, base, test)
        assert list(degenerate) == [test == "paired", False, False]
        assert labels[0] == labels[1] == "irrelevant" and labels[2] == "necessary"
        if test == "paired":        # two-sample: the between-example spread makes the tiny effects testable, z ~ 0
            assert p[0] == p[1] == 1.0 and z[0] == z[1] == 0.0


class FoldedBN(nn.Module):
    """A norm layer defined outside torch.nn (like timm's BatchNormAct2d): torch.fx traces *through* it, so an
    `if self.training` branch would be frozen into the trace with the mode the model had."""

    def __init__(self, c):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x):
        if self.training:
            mean = x.mean((0, 2, 3))
            self.running_mean.mul_(0.9).add_(0.1 * mean.detach())
        else:
            mean = self.running_mean
        return (x - mean[None, :, None, None]) / self.running_var.sqrt()[None, :, None, None]


def test_a_train_mode_model_with_a_custom_norm_layer_is_traced_in_eval_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), FoldedBN(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 2))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    reference = discover_class_graph(net.eval(), x, 0, test="paired").to_dict()
    net.train()
    before = snapshot(net)
    again = discover_class_graph(net, x, 0, test="paired").to_dict()
    assert_as_it_came(net, before)                      # running_mean untouched, still in train mode
    assert again["layers"][0]["mean_effect"] == reference["layers"][0]["mean_effect"]
