"""First-order estimates of the treatment effects (first_order.py): exact where they must be, and a screen that returns
the exact graph when it confirms every edge."""
import math

import pytest
import torch
from torch import nn

from causal_interp import first_order
from causal_interp.discovery import DiscoveryConfig, discover_class_graph
from causal_interp.first_order import estimated_effects, screen
from causal_interp.interventions import Intervention, TracedModel, treatment_effects
from tests.test_interventions import TinyResidual


class Quadratic(nn.Module):
    """z = W x (no bias); y_0 = z_0^2 + z_1, y_1 = -y_0: dy_0/dz = (2 z_0, 1), known by hand."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.l1.weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]))

    def forward(self, x):
        z = self.l1(x)
        y0 = z[:, 0] ** 2 + z[:, 1]
        return torch.stack([y0, -y0], 1)


class Linear(nn.Module):
    """No activation function: conv -> BN (eval: affine) -> conv -> avg pool -> fc. The logits are linear in every
    weight slice, so a first-order estimate is exact."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.c1, self.bn = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 5, 3, padding=1, groups=1)
        self.fc = nn.Linear(5 * 4, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.3, 0.3)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        h = self.c2(self.bn(self.c1(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 2), 1))


def x_small(n=6, shape=(2, 6, 6), seed=1):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def test_taylor_is_the_hand_computed_first_order_change():
    net, x = Quadratic().eval(), x_small(shape=(3,))
    traced = TracedModel(net)
    traced.cache(x)
    w = net.l1.weight.detach()
    z = x @ w.T
    est = estimated_effects(traced, "l1", 0, [0, 1], Intervention("hard"))
    # hard: dz_t = -w[t, j] x_j; dy = 2 z_0 dz_0 + dz_1
    expected = torch.stack([2 * z[:, 0] * (-w[0, j] * x[:, j]) + (-w[1, j] * x[:, j]) for j in range(3)])
    torch.testing.assert_close(est, expected, rtol=0, atol=1e-5)
    # taylor_ig: y is quadratic in z, so the midpoints' mean gradient is the gradient at z + dZ/2, dZ = all edges
    d_all = -(x @ w.T)
    ig = estimated_effects(traced, "l1", 0, [0, 1], Intervention("hard"), steps=4)
    mid0 = z[:, 0] + 0.5 * d_all[:, 0]
    expected_ig = torch.stack([2 * mid0 * (-w[0, j] * x[:, j]) + (-w[1, j] * x[:, j]) for j in range(3)])
    torch.testing.assert_close(ig, expected_ig, rtol=0, atol=1e-5)
    # the quadratic's exact effect differs from the first-order one by (dz_0)^2: the estimate is not the exact engine
    exact = treatment_effects(traced, "l1", 0, [0, 1], Intervention("hard"))
    torch.testing.assert_close(exact - est, torch.stack([(w[0, j] * x[:, j]) ** 2 for j in range(3)]),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("iv", [Intervention("hard"), Intervention("soft", b=0.2, eps=0.1, seed=5),
                                Intervention("constant", u=0.1)], ids=["hard", "soft", "constant"])
@pytest.mark.parametrize("steps", [1, 3])
def test_without_activations_the_estimate_is_the_exact_effect(iv, steps):
    net, x = Linear().eval(), x_small()
    traced = TracedModel(net)
    traced.cache(x)
    for layer, targets in (("fc", [1]), ("c2", [0, 2, 4]), ("c1", [1, 3])):
        exact = treatment_effects(traced, layer, 1, targets, iv)
        est = estimated_effects(traced, layer, 1, targets, iv, steps=steps, max_batch=2 * len(x))   # chunks of 2
        torch.testing.assert_close(est, exact, rtol=1e-4, atol=1e-5)


def test_a_relu_network_gets_an_estimate_that_is_not_exact_but_ranks_alike():
    torch.manual_seed(0)
    net, x = TinyResidual().eval(), x_small(n=8, shape=(2, 8, 8))
    traced = TracedModel(net)
    traced.cache(x)
    exact = treatment_effects(traced, "a2", 2, [0, 1, 2, 3], Intervention()).mean(1)
    est = estimated_effects(traced, "a2", 2, [0, 1, 2, 3], Intervention()).mean(1)
    assert not torch.allclose(est, exact, atol=1e-6)
    assert torch.corrcoef(torch.stack([est, exact]))[0, 1] > 0.5


def test_a_screen_that_confirms_every_edge_returns_the_exact_graph():
    torch.manual_seed(0)
    net, x = TinyResidual().eval(), x_small(n=10, shape=(2, 8, 8))
    iv = Intervention("soft", b=0.3, eps=0.2, seed=7)
    exact = discover_class_graph(net, x, 1, intervention=iv, test="paired")
    for margin, sample in ((math.inf, 0.1), (4.0, 1.0)):
        screened = discover_class_graph(net, x, 1, intervention=iv, test="paired", effects="screened",
                                        screen_margin=margin, screen_sample=sample)
        for a, b in zip(exact.layers, screened.layers):
            assert (a.layer, a.necessary, a.distracting, a.irrelevant, a.mean_effect, a.z) == \
                   (b.layer, b.necessary, b.distracting, b.irrelevant, b.mean_effect, b.z)
            if b.targets:
                assert b.screen["confirmed"] + b.screen["screened_out"] == b.n_parents
                assert b.screen["missed"] == 0
        assert screened.to_dict()["effects"] == "screened" and "effects" not in exact.to_dict()
        assert "screen" not in exact.to_dict()["layers"][0]


def test_the_screen_counts_what_it_dropped_and_the_sample_finds():
    base = torch.linspace(5, 6, 20)
    true = torch.zeros(6, 20)
    true[0] -= 1.0 + 0.01 * torch.arange(20)           # necessary
    true[1] += 1.0 + 0.01 * torch.arange(20)           # distracting
    true[2:] = 1e-3 * torch.randn(4, 20, generator=torch.Generator().manual_seed(0))
    estimate = true.clone()
    estimate[1] = 0.0                                  # the estimate misses parent 1 (a saturated ReLU, say)
    asked = []

    def exact(parents):
        asked.append(parents.tolist())
        return true[parents]

    te, info = screen(estimate, base, exact, "paired", 0.05, margin=4.0, sample=1.0, seed=0)
    assert info["screened_out"] >= 1 and info["sampled"] == info["screened_out"]
    assert info["missed"] == 1 and 0 < info["false_negative_rate"] <= 1
    lo, hi = info["false_negative_ci"]
    assert 0 <= lo <= info["false_negative_rate"] <= hi <= 1
    torch.testing.assert_close(te, true)               # everything was confirmed: sample = 1
    te, info = screen(estimate, base, exact, "paired", 0.05, margin=4.0, sample=0.0)
    assert info["sampled"] == 0 and info["false_negative_rate"] is None
    assert torch.equal(te[1], estimate[1]) and torch.equal(te[0], true[0])   # parent 1 missed, unknown to the screen


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="effects must be one of"):
        DiscoveryConfig(effects="fast").validate("discover_graphs")
    with pytest.raises(ValueError, match="effects must be one of"):
        discover_class_graph(Linear().eval(), x_small(), 0, effects="approximate")
    with pytest.raises(ValueError, match="margin"):
        screen(torch.zeros(2, 3), torch.ones(3), lambda p: None, "paired", 0.05, margin=0.5)
    with pytest.raises(ValueError, match="steps"):
        traced = TracedModel(Linear().eval())
        traced.cache(x_small())
        estimated_effects(traced, "fc", 0, [0], Intervention(), steps=0)
    assert first_order.EFFECTS[0] == "exact"
