"""Fig. 8 under two named protocols: the authors' conventions, emulated, and one fair protocol.

**authors**: what OlaAhmad/ienn does for LeNet/MNIST digit 3 (`explain_utils.py`, `evaluation_metrics.py`, quantus
0.1.3), emulated on the current quantus:
- inputs are raw pixels in [0, 1] (their LeNet reads unstandardised pixels; ours is wrapped, `RawPixels`, so the
  same function of the pixels is explained and the Gaussian noise is in pixel units);
- graph: two-sample z-test with their fallback (`discovery.fallback_parents`); hard interventions: they set the
  edge weights to the constant u = 0, which is beta = 0;
- causal map (`authors_causal_maps`): for every child of the map layer in the graph and every necessary parent,
  the parent's conv output *before* ReLU and pooling, convolved in "full" mode with the connecting filter
  (scipy.signal.convolve2d), a softmax over space, the mean over parents, the **sum** over children, then
  |a| / max |a| per example;
- baselines through quantus 0.1.3's `explain` (captum): Integrated Gradients (zero baseline, 10 steps),
  GradientShap (zero baseline, 5 samples), Gradient x Input, Saliency (|gradient|), channels summed, scored raw;
- Local Lipschitz Estimate: 10 perturbations x + N(0.1, 0.1^2); numerator L1 for the baselines (quantus 0.1.3
  calls its similarity function without the norm arguments, so `lipschitz_constant` falls back to the Manhattan
  distance) and L2 for the causal maps (their subclass passes them); denominator L2. For the causal maps the
  maximum is not reset per example but per batch of 6 (their `similarity_max` lives outside the example loop):
  `running_max`;
- IROF, causal maps only: np.trapz of p(x perturbed) / p(x), i.e. the area **under** the curve (lower = more
  faithful there), averaged over each batch of 6.

**fair**: the same inputs and maps, one convention for every method: |a| / max |a| per example, L2 / L2, the
maximum per example, IROF as the area **over** the curve (quantus 0.6; higher = more faithful), RISE masks drawn
afresh per call. Under both protocols every method sees the same noise draws.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import bounded
from .discovery import ClassGraph
from .interventions import TracedModel, device_of
from .models import evaluating

PROTOCOLS = ("authors", "fair")
AUTHORS_METHODS = ("Causal", "IntegratedGradients", "GradientShap", "InputXGradient", "Saliency")
# The authors' published LeNet/MNIST digit-3 medians (their output/evaluation_metrics/LeNet/*.csv): LE of every
# method; IROF of the causal maps only, as an area UNDER the curve (median of their 17 batch means).
PUBLISHED = {"LE": {"Causal": 0.26, "IntegratedGradients": 1.62, "GradientShap": 1.93, "InputXGradient": 1.95,
                    "Saliency": 3.28},
             "IROF_AUC": {"Causal": 38.0}}
AUTHORS_GRAPH = {"fc3": 13, "fc2": 8, "fc1": 8, "conv2": 3}   # necessary parents, their committed digit-3 graph


class RawPixels(nn.Module):
    """`model` (trained on standardised inputs) as a function of raw pixels in [0, 1]: model((x - mean) / std)."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        device = device_of(model)                  # beside the model's weights
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x):
        return self.model(self.standardise(x))


def authors_normalise(a: np.ndarray) -> np.ndarray:
    """Their `normalise_fun`, per example: a / max for non-negative maps, -a / min for non-positive ones (which keeps
    them negative), else positive and negative parts scaled separately. Applied after |a|, it is a / max."""
    out = np.empty_like(a, dtype=np.float32)
    for i, m in enumerate(a):
        if m.max() <= 0:
            out[i] = -m / m.min() if m.min() < 0 else m
        elif m.min() >= 0:
            out[i] = m / m.max()
        else:
            out[i] = (m > 0) * m / m.max() - (m < 0) * m / m.min()
    return out


@torch.no_grad()
def authors_causal_maps(traced: TracedModel, graph: ClassGraph, layer: str, parent_layer: str,
                        size: tuple[int, int]) -> torch.Tensor:
    """The authors' causal map (explain_utils.get_path_specific_visual_attributions) of the examples cached in
    `traced`: (N, H, W), before abs and normalisation. Parents: the necessary parents of `layer` in the graph, read
    at the output of `parent_layer` (the previous conv, before its ReLU and pooling); children: the layer's targets."""
    lg = graph.layer(layer)
    module = traced.modules[layer]
    if not isinstance(module, nn.Conv2d) or module.groups != 1:
        raise ValueError(f"the authors' causal map needs a dense conv layer; {layer!r} is not one")
    n = traced.n
    if not lg.necessary or not lg.targets:
        return torch.zeros(n, *size, device=traced.device)
    parents = torch.as_tensor(lg.necessary)
    children = torch.as_tensor(lg.targets)
    a = traced.env[traced.node(parent_layer)][:, parents].double()          # (N, P, h, w)
    w = module.weight.detach()[children][:, parents].double()               # (C, P, k, k)
    k = w.shape[-2:]
    filters = w.transpose(0, 1).flip(-1, -2).reshape(len(parents) * len(children), 1, *k)   # true convolution
    v = F.conv2d(a, filters, padding=(k[0] - 1, k[1] - 1), groups=len(parents))          # "full" mode
    hw = v.shape[-2:]
    v = torch.softmax(v.view(n, len(parents), len(children), -1), dim=-1)                 # over space, per map
    maps = v.mean(1).sum(1).view(n, 1, *hw)                            # mean over parents, sum over children
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[:, 0].float()


class AuthorsCausalExplainer:
    """Quantus explanation function of the authors' causal maps, on raw-pixel inputs: (N, 1, H, W), |a| / max."""

    def __init__(self, raw: RawPixels, graphs: dict[int, ClassGraph], layer: str, parent_layer: str):
        self.raw, self.graphs, self.layer, self.parent_layer = raw, graphs, layer, parent_layer
        self.traced = TracedModel(raw.model)
        for name in (layer, parent_layer):          # unknown layers stop here
            self.traced.node(name)
        self.__name__ = "Causal"

    def __call__(self, model=None, inputs=None, targets=None, **kwargs) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        y = np.asarray(targets).reshape(-1).astype(int)
        out = np.zeros((len(x), 1, *x.shape[-2:]), dtype=np.float32)
        for k in np.unique(y):
            idx = np.flatnonzero(y == k)
            self.traced.cache(self.raw.standardise(x[idx].to(self.raw.mean.device)),
                              where=f"authors' causal map of class {int(k)}")
            m = authors_causal_maps(self.traced, self.graphs[int(k)], self.layer, self.parent_layer, tuple(x.shape[-2:]))
            out[idx, 0] = authors_normalise(np.abs(m.cpu().numpy()))
        return out


def running_max(values, batch: int) -> np.ndarray:
    """The authors' causal LE: the maximum carried over the examples of each consecutive batch of `batch`."""
    v = np.asarray(values, dtype=float)
    out = v.copy()
    for start in range(0, len(v), batch):
        out[start:start + batch] = np.maximum.accumulate(v[start:start + batch])
    return out


def batch_means(values, batch: int) -> np.ndarray:
    """The authors' causal IROF: the mean over each consecutive batch of `batch` examples."""
    v = np.asarray(values, dtype=float)
    return np.array([v[s:s + batch].mean() for s in range(0, len(v), batch)])


def superpixel_counts(x: np.ndarray, method: str = "slic") -> np.ndarray:
    """Number of IROF superpixels of each image (Quantus' segmentation), to turn its area over the curve into the
    area under it: AUC = segments - AOC."""
    from quantus.helpers.utils import get_superpixel_segments

    return np.array([len(np.unique(get_superpixel_segments(np.moveaxis(xi, 0, -1).astype("double"), method)))
                     for xi in x])


def le_scores(protocol: str, method: str, explain, raw: nn.Module, x: np.ndarray, y: np.ndarray,
              cfg: "ProtocolConfig") -> np.ndarray:
    """Per-example Local Lipschitz Estimate of one method under `protocol` (see the module docstring), with
    numpy's RNG seeded from `cfg.seed` so that every method sees the same perturbations."""
    import quantus
    from quantus.functions.similarity_func import distance_euclidean, distance_manhattan

    from .evaluation import abs_max

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")
    if protocol == "fair":
        fn, numerator = (lambda model=None, inputs=None, targets=None, **kw: abs_max(explain(model, inputs, targets))), \
            distance_euclidean
    else:
        fn, numerator = explain, distance_euclidean if method == "Causal" else distance_manhattan
    metric = quantus.LocalLipschitzEstimate(nr_samples=cfg.le_samples, perturb_mean=cfg.le_mean, perturb_std=cfg.le_std,
                                            norm_numerator=numerator, norm_denominator=distance_euclidean,
                                            normalise=False, abs=False, return_aggregate=False, disable_warnings=True,
                                            display_progressbar=False)
    state = np.random.get_state()
    np.random.seed(cfg.seed)
    try:
        with evaluating(raw):
            out = np.asarray(metric(model=raw, x_batch=x, y_batch=y, a_batch=None, explain_func=fn,
                                    explain_func_kwargs={}, device=str(device_of(raw)), batch_size=cfg.batch),
                             dtype=float)
    finally:
        np.random.set_state(state)
    return running_max(out, cfg.batch) if protocol == "authors" and method == "Causal" else out


def irof_scores(protocol: str, explain, raw: nn.Module, x: np.ndarray, y: np.ndarray, cfg: "ProtocolConfig") -> np.ndarray:
    """Per-example IROF: the area over the curve (quantus 0.6) under `fair`, the area under it under `authors`."""
    import quantus

    from .evaluation import abs_max, replace_segment

    fn = explain if protocol == "authors" else \
        (lambda model=None, inputs=None, targets=None, **kw: abs_max(explain(model, inputs, targets)))
    metric = quantus.IROF(segmentation_method="slic", perturb_baseline="mean", perturb_func=replace_segment,
                          normalise=False, abs=False, return_aggregate=False, disable_warnings=True,
                          display_progressbar=False)
    with evaluating(raw):
        aoc = np.asarray(metric(model=raw, x_batch=x, y_batch=y, a_batch=None, explain_func=fn, explain_func_kwargs={},
                                device=str(device_of(raw)), batch_size=cfg.batch), dtype=float)
    return superpixel_counts(x) - aoc if protocol == "authors" else aoc


def reproduction_bar(ours: dict[str, float], published: dict = PUBLISHED) -> dict:
    """The bar for "the published numbers reproduce under the authors' protocol": the same ordering of the five LE
    medians, every baseline-to-causal ratio within a factor of 2 of the published ratio, and the causal IROF (area
    under the curve) within 25% of the published ~38. `ours`: {"LE": {method: median}, "IROF_AUC": {"Causal": m}}."""
    le_pub, le = published["LE"], ours["LE"]
    order_pub = sorted(le_pub, key=le_pub.get)
    order = sorted(le_pub, key=lambda m: le[m])
    ratios = {m: {"ours": le[m] / le["Causal"], "published": le_pub[m] / le_pub["Causal"]}
              for m in le_pub if m != "Causal"}
    for r in ratios.values():
        r["factor"] = r["ours"] / r["published"]
        r["within_2x"] = bool(0.5 <= r["factor"] <= 2.0)
    irof, irof_pub = ours["IROF_AUC"]["Causal"], published["IROF_AUC"]["Causal"]
    out = {"order_published": order_pub, "order_ours": order, "same_order": order == order_pub, "ratios": ratios,
           "ratios_within_2x": all(r["within_2x"] for r in ratios.values()),
           "irof_auc": irof, "irof_auc_published": irof_pub, "irof_relative_difference": irof / irof_pub - 1,
           "irof_within_25pct": bool(abs(irof / irof_pub - 1) <= 0.25)}
    out["met"] = bool(out["same_order"] and out["ratios_within_2x"] and out["irof_within_25pct"])
    return out


def graph_sizes_against_authors(graph: ClassGraph) -> dict[str, int]:
    """Necessary parents per layer of the layers the authors' committed digit-3 graph has."""
    return {layer: len(graph.layer(layer).necessary) for layer in AUTHORS_GRAPH}


@dataclass
class ProtocolConfig:
    """params.yaml section `authors_protocol`: fig. 8's LeNet/MNIST digit-3 numbers under both protocols."""

    model: str = "train_lenet"
    class_index: int = bounded(3, 0)
    examples: int = bounded(100, 2, 10_000)   # correctly classified 3s: discovery half (graph), evaluation half (scores)
    correct_only: bool = True                 # the authors' examples are correctly classified (false: any, smoke runs)
    batch: int = bounded(6, 1, 1000)          # the authors' batches (100 // 16 = 6): the causal LE maximum runs within one
    layer: str = "conv2"                      # the map layer (their first conv-named key of the graph, top-down)
    parent_layer: str = "conv1"               # whose output (before ReLU and pooling) feeds the map
    le_samples: int = bounded(10, 1, 1000)
    le_mean: float = bounded(0.1, -10, 10)
    le_std: float = bounded(0.1, 0, 10, low_open=True)
    ig_steps: int = bounded(10, 1, 1000)      # quantus 0.1.3 explain(): IntegratedGradients(n_steps=10)
    shap_samples: int = bounded(5, 1, 1000)   # captum's GradientShap default
    rise_masks: int = bounded(500, 1, 100_000)   # fair: RISE beside the authors' four baselines, masks per call
    floors: list = field(default_factory=lambda: [0.0, 0.01, 0.02, 0.05, 0.1, 0.2])   # paired-test floors compared
    bootstrap: int = bounded(2000, 1, 1_000_000)
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)

    def validate(self, section: str) -> None:
        if not self.floors or not all(isinstance(f, (int, float)) and f >= 0 for f in self.floors):
            raise ValueError(f"{section}.floors must be a non-empty list of numbers >= 0")


def graph_variants(floors) -> dict[str, dict]:
    """The discovery settings compared for the authors' digit-3 graph: both tests, with and without the authors'
    fallback (two-sample) and an effect-size floor (paired)."""
    out = {"authors: two-sample + fallback": {"test": "two_sample", "fallback": True},
           "two-sample": {"test": "two_sample"}}
    for f in floors:
        out["paired" if f == 0 else f"paired, floor {f:g}"] = {"test": "paired", "min_effect": float(f)}
    return out


def score_methods(methods: dict, raw: nn.Module, x: np.ndarray, y: np.ndarray, cfg: ProtocolConfig,
                  authors_methods=AUTHORS_METHODS, bar=None) -> list[dict]:
    """Per-example scores, as rows (protocol, metric, method, example, score). Under `authors`: LE of the methods they
    scored and the causal IROF as an area under the curve (`IROF_AUC`); under `fair`: LE and IROF as an area over
    the curve (`IROF_AOC`) of every method in `methods` ({name: explanation function})."""
    rows = []

    def add(protocol, metric, method, values):
        rows.extend({"protocol": protocol, "metric": metric, "method": method, "example": i, "score": float(v)}
                    for i, v in enumerate(values))
        if bar is not None:
            bar.update(1)

    for method in authors_methods:
        add("authors", "LE", method, le_scores("authors", method, methods[method], raw, x, y, cfg))
    add("authors", "IROF_AUC", "Causal", irof_scores("authors", methods["Causal"], raw, x, y, cfg))
    for method, fn in methods.items():
        add("fair", "LE", method, le_scores("fair", method, fn, raw, x, y, cfg))
        add("fair", "IROF_AOC", method, irof_scores("fair", fn, raw, x, y, cfg))
    return rows


def medians(scores, cfg: ProtocolConfig):
    """Median and bootstrap 95% interval per (protocol, metric, method); the authors' causal IROF is also given as
    the median of its batch means, the number their CSV holds."""
    import pandas as pd

    from .evaluation import median_ci

    table = []
    for (protocol, metric, method), d in scores.groupby(["protocol", "metric", "method"], sort=False):
        values = d.sort_values("example").score.to_numpy()
        med, lo, hi = median_ci(values, cfg.bootstrap, cfg.seed)
        table.append({"protocol": protocol, "metric": metric, "method": method, "median": med, "ci_low": lo,
                      "ci_high": hi, "n": len(values)})
        if protocol == "authors" and metric == "IROF_AUC":
            means = batch_means(values, cfg.batch)
            med, lo, hi = median_ci(means, cfg.bootstrap, cfg.seed)
            table.append({"protocol": protocol, "metric": "IROF_AUC_batch_means", "method": method, "median": med,
                          "ci_low": lo, "ci_high": hi, "n": len(means)})
    return pd.DataFrame(table)


def comparison_table(table) -> "pd.DataFrame":
    """Published vs authors-protocol vs fair-protocol, one row per (metric, method): LE for every method, IROF as
    the area under the curve (published, authors) and, separately, over it (fair): never side by side in one
    column."""
    import pandas as pd

    def cell(protocol, metric, method):
        r = table[(table.protocol == protocol) & (table.metric == metric) & (table.method == method)]
        return None if r.empty else f"{r['median'].iloc[0]:.3g} [{r.ci_low.iloc[0]:.3g}, {r.ci_high.iloc[0]:.3g}]"

    rows = []
    methods = list(dict.fromkeys(table.method))
    for method in methods:
        rows.append({"metric": "LE (lower is more stable)", "method": method, "published": PUBLISHED["LE"].get(method),
                     "authors protocol": cell("authors", "LE", method), "fair protocol": cell("fair", "LE", method)})
    for method in methods:
        rows.append({"metric": "IROF (area under the curve, lower is more faithful)", "method": method,
                     "published": PUBLISHED["IROF_AUC"].get(method),
                     "authors protocol": cell("authors", "IROF_AUC_batch_means", method), "fair protocol": None})
    for method in methods:
        rows.append({"metric": "IROF (area over the curve, higher is more faithful)", "method": method,
                     "published": None, "authors protocol": None, "fair protocol": cell("fair", "IROF_AOC", method)})
    out = pd.DataFrame(rows)
    return out[out[["published", "authors protocol", "fair protocol"]].notna().any(axis=1)].reset_index(drop=True)
