"""Explanation quality (issue 5): the causal explanation function, the eight baselines, Quantus LE and IROF."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from causal_interp import baselines, evaluation
from causal_interp.config import ConfigError, from_dict
from causal_interp.discovery import discover_class_graph
from causal_interp.models import LeNet

from .test_discovery import conv_net_with_known_graph


def box(x):
    return F.conv2d(x, torch.ones(1, 1, 3, 3))


@pytest.fixture(scope="module")
def known():
    net, x = conv_net_with_known_graph()
    graphs = {k: discover_class_graph(net, x, k, test="paired") for k in (0, 1)}
    return net, x, graphs


def test_causal_map_by_hand(known):
    """Class 0 at conv2: targets {0, 1} each read conv1 channels 0 (w = 2) and 2 (w = 1) through all-ones 3x3 filters,
    and every conv1 channel is box(x) (x > 0): the map is the mean of (2 + 1) / 2 * box(box(x)), resized.
    Class 1: target 2 reads channel 1 (w = 1): box(box(x))."""
    net, x, graphs = known
    assert graphs[0].layer("conv2").necessary == [0, 2] and graphs[1].layer("conv2").necessary == [1]
    explain = evaluation.CausalExplainer(net, graphs, "conv2")
    y = np.array([0, 1] * 5)
    a = explain(net, x[:10].numpy(), y)
    assert a.shape == (10, 1, 10, 10) and a.dtype == np.float32
    bb = box(box(x[:10]))
    expected = torch.where(torch.as_tensor(y == 0)[:, None, None, None], 1.5 * bb, bb)
    expected = F.interpolate(expected, size=(10, 10), mode="bilinear", align_corners=False)
    assert np.allclose(a, expected.numpy(), atol=1e-4)
    assert np.array_equal(a, explain(net, x[:10].numpy(), y))          # deterministic
    single = np.concatenate([explain(net, x[i:i + 1].numpy(), y[i:i + 1]) for i in range(10)])
    assert np.allclose(a, single, atol=1e-5)                            # grouping by class changes nothing


def test_causal_explainer_rejects_bad_input(known):
    net, x, graphs = known
    with pytest.raises(KeyError, match="not called"):
        evaluation.CausalExplainer(net, graphs, "conv9")
    with pytest.raises(ValueError, match="conv layer"):
        evaluation.CausalExplainer(net, graphs, "fc")
    explain = evaluation.CausalExplainer(net, {0: graphs[0]}, "conv2")
    with pytest.raises(KeyError, match="no causal graph for class"):
        explain(net, x[:2].numpy(), np.array([0, 1]))


def test_abs_max_is_per_example_and_zero_safe():
    a = np.stack([np.full((1, 2, 2), -4.0), np.zeros((1, 2, 2)), np.array([[[1.0, -2.0], [0.5, 0.0]]])])
    n = evaluation.abs_max(a)
    assert np.allclose(n[0], 1) and np.all(n[1] == 0) and np.allclose(n[2], [[[0.5, 1.0], [0.25, 0.0]]])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    net = LeNet(1, 10).eval()
    x = torch.randn(4, 1, 32, 32).numpy()
    return net, x, np.array([0, 1, 2, 3])


@pytest.mark.parametrize("method", baselines.METHODS)
def test_every_baseline_runs_on_a_tiny_model(tiny, method):
    net, x, y = tiny
    cfg = baselines.BaselineConfig(rise_masks=40, ig_steps=4, shap_samples=3, batch_size=3)
    explain = baselines.explainer(method, net, cfg)
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = explain(net, x, y)
    assert np.array_equal(state, np.random.get_state()[1])   # Quantus' noise stream is left alone
    assert a.shape == (4, 1, 32, 32) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.abs(a).max() > 0
    assert np.array_equal(a, explain(net, x, y))               # deterministic
    other = explain(net, x, np.array([5, 6, 7, 8]))
    assert not np.array_equal(a, other)                        # the target matters


def test_baseline_names_are_checked():
    with pytest.raises(ValueError, match="unknown explanation method"):
        baselines.explainer("GradCam++", LeNet())


def cfg(**kw):
    return from_dict(evaluation.EvaluationConfig, {"models": ["m"], **kw}, "evaluate_explanations")


def test_lipschitz_estimate_by_hand(tiny):
    """Explaining x by x itself: LE = max ||a - a'|| / ||x - x'|| = 1 exactly without normalisation (the raw Quantus
    call, `run_metric`); a constant explanation (a fixed pattern, whatever the input) has LE 0 under the protocol."""
    net, x, y = tiny
    c = cfg(le_samples=3)
    identity = lambda model=None, inputs=None, targets=None, **kw: np.asarray(inputs, dtype=np.float32)
    pattern = np.random.default_rng(0).random((1, 1, 32, 32)).astype(np.float32)
    constant = lambda model=None, inputs=None, targets=None, **kw: np.repeat(pattern, len(inputs), 0)
    raw = evaluation.run_metric(evaluation.metric("LE", c), "LE", net, x, y, identity, c.seed, c.batch_size)
    assert np.allclose(raw, 1.0, atol=1e-5)
    assert np.allclose(evaluation.score("LE", c, net, x, y, constant), 0.0)


def test_scores_are_seeded_and_cached(tiny):
    net, x, y = tiny
    c = cfg(le_samples=3)
    explain = evaluation.Cached(baselines.explainer("Saliency", net))
    le1 = evaluation.score("LE", c, net, x, y, explain)
    calls = explain.calls
    assert calls == 4                                          # x, then 3 perturbations
    le2 = evaluation.run_metric(evaluation.metric("LE", c), "LE", net, x, y, explain, c.seed, c.batch_size)   # raw maps
    assert explain.calls == calls                              # same perturbations: nothing recomputed
    assert np.array_equal(le1, evaluation.score("LE", c, net, x, y, explain))
    assert le1.shape == (4,) and np.isfinite(le1).all() and np.isfinite(le2).all()


@pytest.mark.parametrize("chans", [1, 3])
def test_irof_runs_with_the_pinned_numpy(chans):
    """Quantus 0.6.0's IROF calls np.trapz (gone in numpy 2.4) and, unpatched, fails on RGB inputs."""
    torch.manual_seed(0)
    net = LeNet(chans, 10).eval()
    x = torch.rand(3, chans, 32, 32).numpy()
    y = net(torch.from_numpy(x)).argmax(1).numpy()
    good = evaluation.score("IROF", cfg(), net, x, y, baselines.explainer("Saliency", net))
    assert good.shape == (3,) and np.isfinite(good).all()


def test_median_ci():
    rng = np.random.default_rng(0)
    v = rng.normal(5, 1, 200)
    med, lo, hi = evaluation.median_ci(v, 500, seed=1)
    assert lo < med < hi and abs(med - np.median(v)) < 1e-12
    assert evaluation.median_ci(v, 500, seed=1) == (med, lo, hi)
    assert evaluation.median_ci([np.nan, 2.0]) == (2.0, 2.0, 2.0)


def test_config_is_checked():
    with pytest.raises(ConfigError):
        cfg(methods=["Causal", "LRP-Magic"])
    with pytest.raises(ConfigError, match="Causal"):
        cfg(methods=["Saliency"])
    with pytest.raises(ConfigError):
        cfg(examples_per_class={"other": 3})
    with pytest.raises(ConfigError):
        cfg(baselines={"rise_mask": 10})                       # typo in a baseline setting
    assert cfg(examples_per_class={"m": 7}).per_class("m") == 7


def test_classes_without_nodes_at_the_layer_are_reported(known):
    net, x, graphs = known
    g = graphs[1]
    empty = type(g).from_dict(g.to_dict())
    empty.layer("conv2").necessary = []
    assert evaluation.classes_with_maps({0: graphs[0], 1: empty}, "conv2") == ([0], [1])
    a = evaluation.CausalExplainer(net, {1: empty}, "conv2")(net, x[:2].numpy(), np.array([1, 1]))
    assert np.all(a == 0)


def test_map_layer_defaults_to_the_last_conv_layer(known):
    net, x, graphs = known
    assert evaluation.map_layer(net, graphs[0]) == "conv2"
    assert evaluation.map_layer(net, graphs[0], "conv1") == "conv1"


@pytest.fixture
def lenet_batch():
    """A random LeNet, three random inputs and their targets, and a small Quantus configuration."""
    from causal_interp.evaluation import EvaluationConfig
    from causal_interp.models import LeNet

    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(3, 1, 32, 32)).astype(np.float32)
    return LeNet().eval(), x, np.array([1, 2, 3]), EvaluationConfig(models=["m"], le_samples=2)


def positive_maps(model=None, inputs=None, targets=None, **kwargs):
    """Positive random maps, a deterministic function of the inputs (so perturbed inputs get their own maps)."""
    g = np.random.default_rng(int(abs(np.asarray(inputs)).sum() * 1e3) % 2**32)
    return g.uniform(0.1, 1.0, size=(len(inputs), 1, 32, 32)).astype(np.float32)


def negative_maps(model=None, inputs=None, targets=None, **kwargs):
    return -positive_maps(inputs=inputs)


def test_all_negative_raw_maps_score_nan_instead_of_stopping(lenet_batch):
    from causal_interp.evaluation import metric, run_metric

    model, x, y, cfg = lenet_batch
    out = run_metric(metric("LE", cfg), "LE", model, x, y, negative_maps, cfg.seed, cfg.batch_size)   # raw maps
    assert out.shape == (3,) and np.isnan(out).all()


def test_the_fair_protocol_scores_all_negative_maps_as_their_absolute_values(lenet_batch):
    """Under the fair protocol a map and its negation are the same |a| / max|a| map, so they score alike."""
    from causal_interp.evaluation import score

    model, x, y, cfg = lenet_batch
    for met in ("LE", "IROF"):
        neg = score(met, cfg, model, x, y, negative_maps)
        pos = score(met, cfg, model, x, y, positive_maps)
        assert np.isfinite(neg).all()
        np.testing.assert_array_equal(neg, pos)


def test_map_layers_name_the_causal_methods_and_bad_layer_lists_stop_early():
    c = cfg(layers={"m": ["layer2", "layer4"], "n": "conv2"})
    assert c.map_layers("m") == ["layer2", "layer4"] and c.map_layers("n") == ["conv2"] and c.map_layers("o") == [None]
    assert [evaluation.causal_name(l, i == 0) for i, l in enumerate(c.map_layers("m"))] == ["Causal", "Causal @ layer4"]
    for bad in ([], ["a", "a"], [1], {"a": 1}):
        with pytest.raises(ConfigError, match="layers.m"):
            cfg(layers={"m": bad})


def test_evaluate_method_scores_both_metrics_once_and_resumes_from_its_file(tiny, tmp_path):
    net, x, y = tiny
    c = cfg(le_samples=2)
    out = evaluation.evaluate_method("Saliency", baselines.explainer("Saliency", net), c, net, x, y, tmp_path / "s.json")
    assert set(out) == {"seconds", *evaluation.METRICS} and all(len(out[m]) == len(x) for m in evaluation.METRICS)
    never = lambda **kw: (_ for _ in ()).throw(AssertionError("recomputed"))
    again = evaluation.evaluate_method("Saliency", never, c, net, x, y, tmp_path / "s.json")
    assert again == out


def test_quantus_benign_perturbation_warning_is_filtered_and_others_are_not():
    import warnings

    import numpy as np

    from causal_interp.evaluation import run_metric
    from causal_interp.models import LeNet

    def metric(message):
        def call(**kwargs):
            warnings.warn(message, UserWarning)
            return np.zeros(2)
        return call

    x, y = np.zeros((2, 1, 32, 32), np.float32), np.array([0, 1])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run_metric(metric("The settings for perturbing input e.g., 'perturb_func' didn't cause change in input. "
                          "Reconsider the parameter settings."), "IROF", LeNet().eval(), x, y, None, 0, 2)
        run_metric(metric("something else"), "IROF", LeNet().eval(), x, y, None, 0, 2)
    assert [str(w.message) for w in seen] == ["something else"]
