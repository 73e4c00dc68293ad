"""Sanity checks (random logit, cascading model randomisation) on a tiny CNN: explanation functions follow the model
Quantus passes, the causal graphs are rediscovered for a randomised model, and a class-independent map fails."""
import numpy as np
import torch
from torch import nn

from causal_interp import discovery, sanity
from causal_interp.interventions import Intervention


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()


def data(model, n=30, seed=0):
    x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x).argmax(1)
    return x, y


def test_follow_model_builds_one_explainer_per_model_state():
    built = []

    def make(m):
        built.append(sanity.fingerprint(m))
        return lambda model=None, inputs=None, targets=None, **kw: np.zeros((len(inputs), 1, 8, 8), np.float32)

    f = sanity.FollowModel("x", make)
    m = tiny()
    x = np.zeros((2, 1, 8, 8), np.float32)
    f(m, x, [0, 1]); f(m, x, [0, 1])
    with torch.no_grad():
        m[0].weight.add_(1.0)
    f(m, x, [0, 1])
    assert len(built) == 2 and built[0] != built[1]


def test_a_randomised_model_gets_its_own_graphs(monkeypatch):
    m = tiny()
    x, y = data(m, 60)
    classes = sorted(set(y.tolist()))
    graphs = {k: discovery.discover_class_graph(m, x[y == k][:10], k, None, Intervention(), "paired") for k in classes}
    cfg = sanity.SanityConfig(methods=["Causal", "Saliency"], rediscover_examples=10)
    ex = sanity.explainers(m, {k: graphs[k] for k in classes}, "2", cfg, x, y, "paired", num_classes=max(classes) + 1)
    asked = []
    real = sanity.Rediscovering.graphs
    monkeypatch.setattr(sanity.Rediscovering, "graphs", lambda self, model: asked.append(sanity.fingerprint(model))
                        or real(self, model))
    a_trained = ex["Causal"](m, x[:4].numpy(), y[:4].numpy())
    assert asked == [], "the trained model's maps come from its discovered graphs"
    r = tiny(seed=5)                                        # another model state: its graphs are rediscovered
    a_other = ex["Causal"](r, x[:4].numpy(), y[:4].numpy())
    assert asked == [sanity.fingerprint(r)] and a_trained.shape == a_other.shape == (4, 1, 8, 8)
    ex["Causal"](r, x[4:8].numpy(), y[4:8].numpy())
    assert len(asked) == 1, "once per model state"


def test_a_class_independent_map_fails_random_logit_and_the_quantus_checks_run():
    m = tiny()
    x, y = data(m, 12)
    x, y = x.numpy(), y.numpy()

    def same_for_every_class(model=None, inputs=None, targets=None, **kw):
        return np.abs(np.asarray(inputs)).astype(np.float32) + 0.01

    ssim = sanity.random_logit(m, x, y, same_for_every_class, num_classes=3, seed=0)
    assert np.allclose(ssim, 1.0) and sanity.check_outcome(ssim.min(), ssim.max()) == "fails"
    saliency = sanity.FollowModel("Saliency", lambda mm: __import__("causal_interp").baselines.explainer("Saliency", mm))
    layers = sanity.mprt(m, x, y, saliency, seed=0)
    assert list(layers)[0] == "5" and len(layers) == 3 and all(len(v) == len(y) for v in layers.values())
    assert sanity.check_outcome(0.1, 0.4) == "passes" and sanity.check_outcome(0.4, 0.95) == "not resolved"


def test_the_summary_reads_mprt_with_every_layer_randomised_and_counts_empty_maps():
    import pandas as pd

    scores = pd.DataFrame([{"model": "m", "check": "mprt", "method": "Causal", "step": st, "example": i, "score": v}
                           for st, vals in [(1, [0.95, 0.96, 0.97]), (2, [0.1, 0.2, np.nan])] for i, v in enumerate(vals)]
                          + [{"model": "m", "check": "random_logit", "method": "Causal", "step": 0, "example": 0,
                              "score": np.nan}])
    t = sanity.summary_rows(scores, 50, 0).set_index("check")
    assert t.loc["mprt", "n"] == 2 and t.loc["mprt", "empty_maps"] == 1 and t.loc["mprt", "outcome"] == "passes"
    assert t.loc["random_logit", "outcome"] == "not scored: every map empty"


def test_random_logit_does_not_score_a_class_without_a_map():
    m = tiny()
    x, _ = data(m, 6)
    x = x.numpy()

    def only_class_0(model=None, inputs=None, targets=None, **kw):       # class 1 has no map (e.g. an empty graph)
        a = np.abs(np.asarray(inputs)).astype(np.float32) + 0.01
        a[np.asarray(targets).reshape(-1) != 0] = 0
        return a

    off_has_no_map = sanity.random_logit(m, x, np.zeros(6, int), only_class_0, num_classes=2, seed=0)
    assert np.isnan(off_has_no_map).all(), "SSIM against an empty map would read as a pass"
    both = sanity.random_logit(m, x, np.zeros(6, int), lambda model=None, inputs=None, targets=None, **kw:
                               np.abs(np.asarray(inputs)).astype(np.float32) + 0.01, num_classes=2, seed=0)
    assert np.allclose(both, 1.0)
