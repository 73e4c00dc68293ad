"""Algorithm 1 on networks whose causal structure is known by construction."""
import pytest
import timm
import torch
from torch import nn

from causal_interp import discovery
from causal_interp.discovery import ClassGraph, discover_class_graph, layer_chain, significance
from causal_interp.explanations import causal_responses, saliency_map, top_filter_responses
from causal_interp.interventions import Intervention, TracedModel
from causal_interp.models import LeNet


def hand_built():
    """x (5 positive inputs) -> hidden = relu(W1 x) (4) -> logits = W2 hidden (2).

    Class 0: W2[0] = [2, -1.5, 0, 1]: hidden 0 and 3 necessary, 1 distracting, 2 irrelevant.
    Targets of the first layer are then {0, 3}: W1[0] = [2, .5, 0, 0, -.5], W1[3] = [0, 0, 1, 0, 0]:
    inputs 0, 1, 2 necessary, input 4 distracting (negative edge into hidden 0), input 3 irrelevant
    (its only edge goes to hidden 2, which is not a target).
    """
    net = nn.Sequential()
    net.add_module("fc1", nn.Linear(5, 4, bias=False))
    net.add_module("relu", nn.ReLU())
    net.add_module("fc2", nn.Linear(4, 2, bias=False))
    net.fc1.weight.data = torch.tensor([[2, .5, 0, 0, -.5], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0]])
    net.fc2.weight.data = torch.tensor([[2, -1.5, 0, 1], [0, 1, 1, 0.]])
    x = 0.5 + torch.rand(60, 5, generator=torch.Generator().manual_seed(0))
    return net.eval(), x


def conv_net_with_known_graph():
    """conv1 (1->3, all-ones 3x3) -> relu -> conv2 (3->3, 3x3) -> relu -> global sum -> fc (3->2).

    fc: class 0 reads conv2 channels 0 and 1. conv2: channels 0 and 1 read conv1 channels 0 (weight 2)
    and 2 (weight 1); channel 1 is never read by channel 0/1 of conv2, so the graph at conv2 is known.
    """
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 3, 3, bias=False)
            self.conv2 = nn.Conv2d(3, 3, 3, bias=False)
            self.fc = nn.Linear(3, 2, bias=False)

        def forward(self, x):
            return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).sum((2, 3)))

    net = Net()
    with torch.no_grad():
        net.conv1.weight.fill_(1.0)
        net.conv2.weight.zero_()
        net.conv2.weight[[0, 1], 0] = 2.0
        net.conv2.weight[[0, 1], 2] = 1.0
        net.conv2.weight[2, 1] = 1.0
        net.fc.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    x = 0.5 + torch.rand(30, 1, 10, 10, generator=torch.Generator().manual_seed(2))
    return net.eval(), x


@pytest.mark.parametrize("test", ["two_sample", "paired"])
@pytest.mark.parametrize("iv", [Intervention("hard"), Intervention("soft", b=0.01, eps=0.01)], ids=["hard", "soft"])
def test_hand_built_graph_is_recovered_exactly(test, iv):
    net, x = hand_built()
    g = discover_class_graph(net, x, 0, intervention=iv, test=test)
    top, first = g.layer("fc2"), g.layer("fc1")
    assert (top.targets, top.necessary, top.distracting, top.irrelevant) == ([0], [0, 3], [1], [2])
    assert (first.targets, first.necessary, first.distracting, first.irrelevant) == ([0, 3], [0, 1, 2], [4], [3])
    assert top.ranked() == [0, 3]  # |mean effect| of hidden 0 (2*h0) exceeds hidden 3 (1*h3)
    assert first.edges() == [(0, 0), (0, 3), (1, 0), (1, 3), (2, 0), (2, 3)]


def test_hand_built_other_class():
    net, x = hand_built()
    g = discover_class_graph(net, x, 1)
    assert g.layer("fc2").necessary == [1, 2] and g.layer("fc2").irrelevant == [0, 3]
    assert g.layer("fc1").necessary == [1, 3]


def test_significance_by_hand():
    base = torch.tensor([1.0, 2.0, 3.0, 4.0])
    effects = torch.tensor([[-3.0, -3, -3, -3], [0, 0, 0, 0], [0.1, -0.1, 0.1, -0.1], [5, 5, 5, 5]])
    z, p, labels, degenerate = significance(effects, base, "two_sample")
    # two-sample: diff / sqrt(var_do/n + var/n), var(base) = 5/3
    assert z[0] == pytest.approx(-3 / (2 * (5 / 3) / 4) ** 0.5)
    assert list(labels) == ["necessary", "irrelevant", "irrelevant", "distracting"] and not degenerate.any()
    # paired: rows 0 and 3 do not vary (std 0), so their z would be -inf / +inf: degenerate, irrelevant, flagged;
    # row 1 is exactly zero everywhere: no effect, irrelevant, not degenerate
    z, p, labels, degenerate = significance(effects, base, "paired")
    assert list(z) == [0, 0, 0, 0] and list(p) == [1, 1, 0.5, 1]
    assert list(labels) == ["irrelevant"] * 4 and list(degenerate) == [True, False, False, True]
    with pytest.raises(ValueError, match="test must be one of"):
        significance(effects, base, "t-test")


def test_flatten_parents_are_conv_channels():
    """conv (3 channels) -> flatten -> linear: only channel 1's block of features reaches class 0."""
    net = nn.Sequential()
    net.add_module("conv", nn.Conv2d(1, 3, 3, padding=1))
    net.add_module("relu", nn.ReLU())
    net.add_module("flatten", nn.Flatten())
    net.add_module("fc", nn.Linear(3 * 4 * 4, 2))
    with torch.no_grad():
        net.conv.weight.fill_(0.2)
        net.conv.bias.fill_(0.1)
        net.fc.weight.zero_()
        net.fc.weight[0, 16:32] = 1.0
        net.fc.weight[1, 32:48] = 1.0
    x = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    g = discover_class_graph(net.eval(), x, 0)
    fc = g.layer("fc")
    assert fc.n_parents == 3 and fc.necessary == [1] and fc.irrelevant == [0, 2]
    assert g.layer("conv").targets == [1] and g.layer("conv").necessary == [0]


def test_resnet18_chain_and_channel_mapping():
    model = timm.create_model("resnet18", num_classes=10)
    chain = layer_chain(model)
    assert chain[0] == "conv1" and chain[-1] == "fc" and len(chain) == 18
    assert not any("downsample" in name for name in chain)
    assert chain[1:5] == ["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2"]


def test_chains_are_derived_for_residual_depthwise_and_channels_last_nets():
    from .test_interventions import TinyConvNeXt, TinyMobile, TinyResidual

    assert layer_chain(TinyResidual()) == ["stem", "a1", "a2", "c1", "c2", "fc"]        # not the downsample
    assert layer_chain(TinyMobile()) == ["stem", "dw1", "pw1", "expand", "dw2", "project", "grouped", "fc"]
    assert layer_chain(TinyConvNeXt()) == ["stem", "dw", "fc1", "fc2", "down", "head"]   # downsample on the path


@pytest.mark.parametrize("name,length,first,last", [
    ("resnetv2_50", 50, ["stem.conv", "stages.0.blocks.0.conv1"], "head.fc"),
    ("mobilenetv2_100", 53, ["conv_stem", "blocks.0.0.conv_dw", "blocks.0.0.conv_pw"], "classifier"),
    ("convnext_tiny", 59, ["stem.0", "stages.0.blocks.0.conv_dw", "stages.0.blocks.0.mlp.fc1"], "head.fc"),
])
def test_timm_chains_are_connected_channel_by_channel(name, length, first, last):
    from causal_interp.interventions import _out_nodes

    model = timm.create_model(name, num_classes=10).eval()
    chain = layer_chain(model)
    assert len(chain) == length and chain[:len(first)] == first and chain[-1] == last
    assert not any("downsample.conv" in c for c in chain)
    traced = TracedModel(model)
    traced.cache(torch.randn(2, 3, 32, 32))
    for lower, upper in zip(chain, chain[1:]):
        assert traced.parents(upper)[0] == _out_nodes(traced.modules[lower]), (lower, upper)
    if name == "convnext_tiny":   # channels-last MLP: parents are the 96 channels, not blocks of the 8x8 map
        assert traced.parents("stages.0.blocks.0.mlp.fc1") == (96, 1)
        assert "stages.1.downsample.1" in chain


def test_unsupported_layer_in_chain_is_named():
    class Std(torch.nn.Conv2d):
        def forward(self, x):
            return torch.nn.functional.conv2d(x, self.weight / self.weight.norm(), self.bias)

    model = LeNet()
    model.conv2 = Std(6, 16, 5)
    with pytest.raises(NotImplementedError, match="layer 'conv2' is a Std"):
        layer_chain(model)


def test_explicit_chain_is_checked():
    model = LeNet()
    assert layer_chain(model, ["conv2", "fc3"]) == ["conv2", "fc3"]
    with pytest.raises(KeyError, match="unknown layer 'fc4'"):
        layer_chain(model, ["conv2", "fc4"])
    with pytest.raises(TypeError, match="only Conv2d/Linear"):
        layer_chain(model, ["pool1"])
    with pytest.raises(ValueError, match="forward order"):
        layer_chain(model, ["fc1", "conv1"])


def test_bad_input_fails_before_any_intervention(monkeypatch):
    def no_intervention(*args, **kwargs):
        raise AssertionError("an intervention ran before the input was checked")

    monkeypatch.setattr(discovery, "treatment_effects", no_intervention)
    model = LeNet().eval()
    x = torch.randn(4, 1, 32, 32)
    with pytest.raises(IndexError, match=r"class index 10 out of range \[0, 10\)"):
        discover_class_graph(model, x, 10)
    with pytest.raises(KeyError, match="unknown layer 'conv3'"):
        discover_class_graph(model, x, 0, layers=["conv3", "fc3"])
    with pytest.raises(ValueError, match="not connected channel by channel"):
        discover_class_graph(model, x, 0, layers=["conv1", "fc3"])  # conv1 has 6 outputs, fc3 84 parents
    with pytest.raises(ValueError, match="test must be one of"):
        discover_class_graph(model, x, 0, test="bayes")
    with pytest.raises(ValueError, match="at least 2 examples"):
        discover_class_graph(model, x[:1], 0)


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = LeNet().eval()
    g = discover_class_graph(model, torch.randn(12, 1, 32, 32), 4, class_name="4", model_name="lenet")
    back = ClassGraph.load(g.save(tmp_path / "g.json"))
    assert back == g
    assert [lg.layer for lg in back.layers] == ["fc3", "fc2", "fc1", "conv2", "conv1"]
    assert set(back.sizes()["fc3"]) == {"necessary", "distracting", "irrelevant", "parents"}


def test_graph_of_random_lenet_is_consistent():
    torch.manual_seed(3)
    model = LeNet().eval()
    g = discover_class_graph(model, torch.randn(40, 1, 32, 32), 2)
    for upper, lower in zip(g.layers, g.layers[1:]):
        assert lower.targets == upper.necessary  # top-down path selection
    for lg in g.layers:
        parts = lg.necessary + lg.distracting + lg.irrelevant
        assert sorted(parts) == list(range(lg.n_parents))


def test_causal_responses_eq3():
    net, x = conv_net_with_known_graph()
    g = discover_class_graph(net, x, 0)
    traced = TracedModel(net)
    traced.cache(x)
    lg = g.layer("conv2")
    assert lg.targets == [0, 1] and lg.necessary == [0, 2]
    s = causal_responses(traced, g, "conv2")
    assert s.shape == (len(x), 2, 6, 6)
    a = traced.env[traced.node("conv2").args[0]]
    for ci, t in enumerate(lg.targets):
        expected = sum(torch.nn.functional.conv2d(a[:, [j]], net.conv2.weight[[t]][:, [j]]) for j in lg.necessary)
        assert torch.allclose(s[:, ci], expected[:, 0] / len(lg.necessary), atol=1e-5)
    m = saliency_map(s, (8, 8))
    assert m.shape == (len(x), 8, 8)
    top = top_filter_responses(traced, g, "conv2")  # strongest parent is channel 0 (weight 2 vs 1)
    assert torch.allclose(top, torch.nn.functional.conv2d(a[:, [0]], net.conv2.weight[[0, 1]][:, [0]]), atol=1e-6)


def test_class_examples_are_correct_and_of_the_class():
    net, x = hand_built()
    y = net(x).argmax(1)
    idx = discovery.class_examples(net, x, torch.zeros(len(x), dtype=torch.long), 0, 5)
    assert len(idx) <= 5 and bool((y[idx] == 0).all())


def test_graph_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="run discover_graphs"):
        discovery.graph_files(tmp_path)
    net, x = hand_built()
    for k in (0, 1):
        discover_class_graph(net, x, k).save(tmp_path / f"class_{k}.json")
    assert discovery.graph_files(tmp_path) == {0: tmp_path / "class_0.json", 1: tmp_path / "class_1.json"}
    assert list(discovery.graph_files(tmp_path, [1])) == [1]
    with pytest.raises(IndexError, match=r"class \[4\]"):
        discovery.graph_files(tmp_path, [1, 4])


def test_causal_responses_of_a_depthwise_layer_use_each_childs_own_parent():
    from .test_interventions import TinyMobile

    net = TinyMobile().eval()
    x = torch.randn(3, 2, 8, 8)
    traced = TracedModel(net)
    traced.cache(x)
    g = ClassGraph(0, "", 3, {}, "paired", 0.05)
    from causal_interp.discovery import LayerGraph
    g.layers = [LayerGraph("dw2", 12, [1, 4, 7], [1, 7, 9], [], [], [0.0] * 12, [0.0] * 12, [1.0] * 12)]
    s = causal_responses(traced, g, "dw2")
    a = traced.env[traced.node("dw2").args[0]]
    w = net.dw2.weight
    assert s.shape == (3, 3, 8, 8)
    assert torch.allclose(s[:, 0], torch.nn.functional.conv2d(a[:, [1]], w[[1]], padding=1)[:, 0], atol=1e-6)
    assert torch.allclose(s[:, 2], torch.nn.functional.conv2d(a[:, [7]], w[[7]], padding=1)[:, 0], atol=1e-6)
    assert s[:, 1].abs().sum() == 0   # child 4's only parent (4) is not necessary
