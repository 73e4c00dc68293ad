"""The batched engine against the naive reference (one intervention, one example, deep-copied weights)."""
import pytest
import torch
from torch import nn

from causal_interp.interventions import Intervention, TracedModel, naive_effects, treatment_effects
from causal_interp.models import LeNet


class TinyResidual(nn.Module):
    """stem conv -> [conv-bn-relu-conv-bn + skip] -> [same with a 1x1 downsample shortcut] -> pool -> fc."""

    def __init__(self, c=4, k=3):
        super().__init__()
        self.stem = nn.Conv2d(2, c, 3, padding=1)
        self.a1, self.b1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.a2, self.b2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.c1, self.d1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.BatchNorm2d(2 * c)
        self.c2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.downsample = nn.Conv2d(c, 2 * c, 1, stride=2)
        self.fc = nn.Linear(2 * c, k)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.b2(self.a2(torch.relu(self.b1(self.a1(x))))))
        x = torch.relu(self.downsample(x) + self.c2(torch.relu(self.d1(self.c1(x)))))
        return self.fc(x.mean((2, 3)))


class TinyMobile(nn.Module):
    """MobileNetV2-like: stem -> depthwise -> pointwise; inverted residual (expand 1x1, depthwise 3x3 with
    stride, project 1x1) with a skip; a grouped (groups=2) conv; pool -> fc."""

    def __init__(self, c=4, k=3):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(2, c, 3, padding=1), nn.BatchNorm2d(c)
        self.dw1 = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.pw1 = nn.Conv2d(c, c, 1)
        self.expand, self.bn1 = nn.Conv2d(c, 3 * c, 1), nn.BatchNorm2d(3 * c)
        self.dw2, self.bn2 = nn.Conv2d(3 * c, 3 * c, 3, padding=1, groups=3 * c), nn.BatchNorm2d(3 * c)
        self.project = nn.Conv2d(3 * c, c, 1)
        self.grouped = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(2 * c, k)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        x = self.pw1(torch.relu(self.dw1(x)))
        x = x + self.project(torch.relu(self.bn2(self.dw2(torch.relu(self.bn1(self.expand(x)))))))
        return self.fc(torch.relu(self.grouped(x)).mean((2, 3)))


class TinyConvNeXt(nn.Module):
    """ConvNeXt-like: patchify stem -> [depthwise 7x7, channels-last LayerNorm -> Linear -> GELU -> Linear,
    layer scale, skip] -> LayerNorm + 2x2 conv downsample -> pool -> LayerNorm -> Linear."""

    def __init__(self, c=4, k=3):
        super().__init__()
        self.stem = nn.Conv2d(2, c, 2, stride=2)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 0.7))
        self.down_norm, self.down = nn.LayerNorm(c), nn.Conv2d(c, 2 * c, 2, stride=2)
        self.head_norm, self.head = nn.LayerNorm(2 * c), nn.Linear(2 * c, k)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(nn.functional.gelu(self.fc1(self.norm(y))))
        x = x + (y * self.gamma).permute(0, 3, 1, 2)
        x = self.down(self.down_norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        return self.head(self.head_norm(x.mean((2, 3))))


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=g)
            m.bias.data = 0.4 * torch.rand(m.bias.shape, generator=g) - 0.2
            m.running_mean = 0.2 * torch.rand(m.running_mean.shape, generator=g) - 0.1
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
    return model.eval()


CASES = [  # model factory, input shape, {layer: targets}
    (lambda: LeNet(1, 10), (1, 32, 32), {"fc3": [1], "fc2": [0, 5, 83], "fc1": [2, 7, 119], "conv2": [0, 15],
                                          "conv1": [1, 4]}),
    (lambda: LeNet(3, 4), (3, 32, 32), {"fc1": list(range(120)), "conv2": [3], "conv1": list(range(6))}),
    (lambda: TinyResidual(), (2, 8, 8), {"fc": [1], "c2": [0, 7], "c1": [2, 5], "a2": [1, 3], "a1": [0],
                                         "stem": [0, 1, 2, 3]}),
    (lambda: TinyMobile(), (2, 8, 8), {"fc": [1], "grouped": [0, 5, 6], "project": [1, 2], "dw2": [0, 4, 11],
                                       "expand": [2, 3, 5], "pw1": [0, 3], "dw1": [1, 2], "stem": [0, 3]}),
    (lambda: TinyConvNeXt(), (2, 12, 12), {"head": [1], "down": [0, 6, 7], "fc2": [1, 3], "fc1": [0, 9, 15],
                                           "dw": [2, 3], "stem": [0, 1, 2]}),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("iv", [Intervention("hard"), Intervention("soft", b=0.3, seed=5),
                                Intervention("constant", u=0.05)], ids=["hard", "soft", "constant"])
def test_batched_effects_match_naive_reference(case, iv):
    factory, shape, layers = CASES[case]
    torch.manual_seed(case)
    model = randomize(factory(), case)
    x = torch.randn(6, *shape)
    traced = TracedModel(model)
    traced.cache(x)
    for layer, targets in layers.items():
        n_parents = traced.parents(layer)[0]
        betas = None if iv.mode == "constant" else iv.beta((len(targets), n_parents))
        fast = treatment_effects(traced, layer, 1, targets, iv, betas=betas, max_batch=16)  # forces chunking
        slow = naive_effects(model, layer, 1, x, targets, iv, n_parents, betas=betas)
        assert fast.shape == (n_parents, len(x))
        assert torch.allclose(fast, slow, atol=1e-4), (layer, (fast - slow).abs().max())
        assert fast.abs().max() > 1e-6 or layer == "conv1"  # the comparison is not vacuous
        module = traced.modules[layer]
        if getattr(module, "groups", 1) > 1:   # a parent without an edge to the targets has no effect at all
            cin, cout = module.in_channels // module.groups, module.out_channels // module.groups
            unlinked = [j for j in range(n_parents) if all(t // cout != j // cin for t in targets)]
            assert fast[unlinked].abs().sum() == 0 and (unlinked or layer == "grouped")


def test_parents_of_flattened_linear_are_channels():
    traced = TracedModel(LeNet())
    traced.cache(torch.zeros(2, 1, 32, 32))
    assert traced.parents("fc1") == (16, 25)
    assert traced.parents("fc2") == (120, 1)
    assert traced.parents("conv2") == (6, 1)


def test_hard_effect_of_classifier_parent_is_minus_weight_times_activation():
    torch.manual_seed(0)
    model = LeNet().eval()
    x = torch.randn(5, 1, 32, 32)
    traced = TracedModel(model)
    traced.cache(x)
    te = treatment_effects(traced, "fc3", 7, [7], Intervention("hard"))
    a = traced.env[traced.node("fc3").args[0]]
    assert torch.allclose(te, -(model.fc3.weight[7][:, None] * a.T), atol=1e-6)


def test_soft_with_small_b_approaches_hard():
    torch.manual_seed(0)
    model = LeNet().eval()
    traced = TracedModel(model)
    traced.cache(torch.randn(8, 1, 32, 32))
    hard = treatment_effects(traced, "fc2", 2, [0, 1, 2], Intervention("hard"))
    soft = treatment_effects(traced, "fc2", 2, [0, 1, 2], Intervention("soft", b=0.01, eps=0.01))
    full = treatment_effects(traced, "fc2", 2, [0, 1, 2], Intervention("soft", b=0.99, eps=0.01))
    assert (soft - hard).abs().max() <= 0.03 * hard.abs().max()
    assert full.abs().max() < 0.05 * hard.abs().max()  # beta ~ 1 leaves the weights almost unchanged


def test_bad_indices_and_modes_are_rejected():
    traced = TracedModel(LeNet())
    traced.cache(torch.zeros(2, 1, 32, 32))
    with pytest.raises(IndexError, match=r"class index \[10\] out of range"):
        treatment_effects(traced, "fc3", 10, [0], Intervention())
    with pytest.raises(IndexError, match=r"target of fc2 \[84\]"):
        treatment_effects(traced, "fc2", 0, [84], Intervention())
    with pytest.raises(IndexError, match=r"parent of conv2 \[6\]"):
        treatment_effects(traced, "conv2", 0, [0], Intervention(), parents=[6])
    with pytest.raises(KeyError, match="not called"):
        treatment_effects(traced, "fc9", 0, [0], Intervention())
    with pytest.raises(ValueError, match="mode must be one of"):
        Intervention("medium")
    with pytest.raises(ValueError, match="soft intervention needs"):
        Intervention("soft", b=0.0, eps=0.01)


def test_unsupported_layers_are_named():
    from causal_interp.interventions import check_layer, layer_parents

    assert layer_parents(nn.Conv2d(4, 8, 3, groups=4), (4, 8, 8)) == (4, 1)      # grouped convs are supported
    assert layer_parents(nn.Linear(6, 5), (3, 3, 6), channels_last=True) == (6, 1)
    with pytest.raises(NotImplementedError, match="'net.c1': conv padding_mode 'reflect'"):
        layer_parents(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), (4, 8, 8), name="net.c1")
    with pytest.raises(TypeError, match="is a BatchNorm2d"):
        layer_parents(nn.BatchNorm2d(4), (4, 8, 8))

    class StdConv(nn.Conv2d):   # like timm's StdConv2d: not linear in its stored weights
        def forward(self, x):
            w = (self.weight - self.weight.mean((1, 2, 3), keepdim=True)) / self.weight.std((1, 2, 3), keepdim=True)
            return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)

    with pytest.raises(NotImplementedError, match="layer 'stem.conv' is a StdConv, a Conv2d with its own forward"):
        check_layer(StdConv(3, 4, 3), "stem.conv")


class InPlace(nn.Module):
    """Convs whose outputs are overwritten in place later in the forward pass: nn.ReLU(inplace=True), F.relu(...,
    inplace=True), torch.relu_, x.add_(), x += y, an Identity in between (the activation overwrites the conv's
    output through the alias). Caching the conv outputs as they are at the end would cache the activations."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
        self.id, self.act, self.fc = nn.Identity(), nn.ReLU(inplace=True), nn.Linear(4, 3)

    def forward(self, x):
        x = self.act(self.id(self.c1(x)))
        y = self.c2(x)
        y += x
        y = torch.nn.functional.relu(y, inplace=True)
        z = self.c3(y)
        z.add_(1.0)
        return self.fc(torch.relu_(z).mean((2, 3)))


@pytest.mark.parametrize("layer,targets", [("c1", [0, 3]), ("c2", [1]), ("c3", [0, 2]), ("fc", [1])])
def test_in_place_operations_do_not_corrupt_the_cache(layer, targets):
    torch.manual_seed(4)
    model = InPlace().eval()
    x = torch.randn(5, 2, 6, 6)
    traced = TracedModel(model)
    traced.cache(x)
    n = traced.parents(layer)[0]
    fast = treatment_effects(traced, layer, 1, targets, Intervention())
    slow = naive_effects(model, layer, 1, x, targets, Intervention(), n)
    assert torch.allclose(fast, slow, atol=1e-5) and fast.abs().max() > 1e-4
    assert torch.allclose(traced.logits, model(x), atol=1e-6)
    assert model.act.inplace is True          # the model's own module is untouched


class OverwrittenAfterUse(nn.Module):
    """A conv output used, then overwritten in place by `overwrite`, then used again."""

    def __init__(self):
        super().__init__()
        self.c1, self.fc = nn.Conv2d(2, 4, 3), nn.Linear(4, 3)

    def forward(self, x):
        y = self.c1(x)
        z = y.mean((2, 3))
        self.overwrite(y)
        return self.fc(z + y.mean((2, 3)))


class SetItem(OverwrittenAfterUse):
    """Overwritten through indexing: `y[:, 0] = 0` (torch.fx cannot trace item assignment)."""

    def overwrite(self, y):
        y[:, 0] = 0.0


class ViewAlias(nn.Module):
    """A view taken before an in-place op and read after it: the partial overwrite cannot be replayed."""

    def __init__(self):
        super().__init__()
        self.c1, self.fc = nn.Conv2d(2, 4, 3), nn.Linear(6, 3)

    def forward(self, x):
        y = self.c1(x)
        v = y[:, :2]
        y.relu_()
        return self.fc(torch.cat([v, y], 1).mean((2, 3)))


class ZeroesInPlace(OverwrittenAfterUse):
    """Overwritten by an in-place op with no out-of-place twin (`zero_`)."""

    def overwrite(self, y):
        y.zero_()


def test_models_whose_activations_change_in_place_unseen_are_refused_with_the_reason():
    from causal_interp.discovery import layer_chain
    from causal_interp.interventions import InPlaceError

    with pytest.raises(TypeError, match="torch.fx cannot trace SetItem"):
        layer_chain(SetItem())
    with pytest.raises(InPlaceError, match="through a view"):
        TracedModel(ViewAlias().eval())
    with pytest.raises(InPlaceError, match=r"changes 1 tensor.s. in place after computing them .first: %c1"):
        TracedModel(ZeroesInPlace().eval()).cache(torch.randn(2, 2, 5, 5))


def test_run_from_frees_its_activations_without_waiting_for_the_cyclic_gc():
    """A batch of interventions' activations must go when `run_from` returns: kept alive in a reference cycle until
    the next cyclic collection, the chunks of one ResNet18 class graph piled up to 16 GB."""
    import gc
    import weakref

    traced = TracedModel(TinyResidual().eval())
    traced.cache(torch.randn(3, 2, 8, 8))
    made, compute = [], traced._compute

    def spy(node, load):
        out = compute(node, load)
        if isinstance(out, torch.Tensor):
            made.append(weakref.ref(out))
        return out

    traced._compute = spy
    gc.disable()
    try:
        out = traced.run_from("a1", traced.env[traced.node("a1")].repeat(2, 1, 1, 1), 2)
        del out
        assert len(made) > 5 and all(r() is None for r in made)
    finally:
        gc.enable()
