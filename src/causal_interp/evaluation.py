"""Explanation quality (figure 8): Quantus' Local Lipschitz Estimate and IROF for the causal maps and the baselines.

The causal method is a Quantus explanation function (`CausalExplainer`): for an input of class k it takes the
class-k graph, computes the causal responses (eq. 3) of the graph's nodes at one layer and aggregates them into
a map at the input size. The same Quantus metric object then scores it and every baseline.

Every method is scored under one fair protocol: every map goes through the same per-example |a| / max|a| (`abs_max`,
applied before Quantus sees the map, because Quantus refuses all-negative raw maps before it would normalise them), the
same seeded perturbations, examples from the evaluation half, IROF as the area over the curve, RISE masks drawn afresh
per call. The authors' own conventions (raw baselines, L1/L2 numerators, area under the curve) are emulated apart, in
`protocols.py` (stage `authors_protocol`), against their published LeNet numbers.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import fanout
from .baselines import BaselineConfig, check_methods
from .config import bounded
from .discovery import ClassGraph
from .explanations import causal_responses, saliency_map
from .interventions import TracedModel, check_finite, device_of
from .models import deterministic, evaluating
from .progress import progress

METRICS = ("LE", "IROF")


@dataclass
class EvaluationConfig:
    """params.yaml section `evaluate_explanations`."""

    models: list
    layers: dict = field(default_factory=dict)          # {model stage: map layer, or a list of them (first: "Causal")}
    examples_per_class: dict | int = 10                 # int, or {model stage: int}
    classes: list | None = None                         # null: every class with a graph
    correct_only: bool = True                           # explain only correctly classified evaluation examples
    graph_test: str = "paired"
    graphs_dir: str = "graphs"                          # results/<graphs_dir>/<model>/<graph_test>/
    methods: list = field(default_factory=lambda: ["Causal", "RISE", "Occlusion", "IntegratedGradients", "Saliency",
                                                   "GradientShap", "InputXGradient", "Deconvolution",
                                                   "ExcitationBackprop"])
    le_samples: int = bounded(10, 1, 10_000)            # LE: perturbations per input (METHOD.md)
    le_mean: float = bounded(0.1, -10, 10)              # LE: Gaussian noise mean and std (METHOD.md)
    le_std: float = bounded(0.1, 0, 10, low_open=True)
    irof_segmentation: str = "slic"
    irof_baseline: str = "mean"
    baselines: dict = field(default_factory=dict)       # BaselineConfig fields
    bootstrap: int = bounded(2000, 1, 1_000_000)        # resamples for the 95% intervals of the medians
    batch_size: int = bounded(64, 1, 65_536)
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)
    workers: int | None = bounded(None, 1, 1024)   # Ray workers (fanout.py); null: in-process, or RAY_ADDRESS's

    def validate(self, section: str) -> None:
        from .config import ConfigError, from_dict

        def fail(msg):
            raise ConfigError(f"{section}.{msg}")

        if not self.models:
            fail("models must name at least one training stage")
        try:
            check_methods(self.methods)
        except ValueError as e:
            fail(f"methods: {e}")
        if "Causal" not in self.methods:
            fail("methods must include 'Causal' (the method under study)")
        for m in self.models:
            if isinstance(self.examples_per_class, dict) and m not in self.examples_per_class:
                fail(f"examples_per_class has no entry for {m}")
            if self.per_class(m) < 1:
                fail(f"examples_per_class must be >= 1 for {m}")
        for m, spec in self.layers.items():
            names = [spec] if isinstance(spec, str) else spec
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names) \
                    or len(set(names)) < len(names):
                fail(f"layers.{m} must be a layer name or a list of distinct layer names, got {spec!r}")
        if self.irof_baseline not in ("mean", "black", "white", "uniform"):
            fail(f"irof_baseline must be mean, black, white or uniform, got {self.irof_baseline!r}")
        if self.irof_segmentation not in ("slic", "felzenszwalb"):
            fail("irof_segmentation must be slic or felzenszwalb")
        self.baseline_config = from_dict(BaselineConfig, dict(self.baselines, seed=self.seed), f"{section}.baselines")

    def per_class(self, model: str) -> int:
        if isinstance(self.examples_per_class, dict):
            return int(self.examples_per_class[model])
        return int(self.examples_per_class)

    def map_layers(self, model: str) -> list[str | None]:
        """The map layers asked for `model` (None: the default of `map_layer`); the first one makes "Causal"."""
        spec = self.layers.get(model)
        return [spec] if spec is None or isinstance(spec, str) else list(spec)


def causal_name(layer: str, first: bool) -> str:
    """The method name of the causal maps from `layer`: "Causal" for the model's first map layer, else
    "Causal @ <layer>" (scored and judged like "Causal", against the baselines only)."""
    return "Causal" if first else f"Causal @ {layer}"


class CausalExplainer:
    """Quantus explanation function of the causal method: (model, inputs, targets) -> (N, 1, H, W) float32.

    For each input of class k: the responses s_i (eq. 3) of the class-k graph's nodes at `layer`, averaged over
    the nodes and resized to the input (`explanations.saliency_map`). Raw (signed) values; `normalised` gives the
    authors' |map| / max|map|.
    """

    def __init__(self, model: nn.Module, graphs: dict[int, ClassGraph], layer: str):
        self.traced = TracedModel(model)
        self.graphs, self.layer = graphs, layer
        self.traced.node(layer)                      # unknown layer stops here
        if not isinstance(self.traced.modules[layer], nn.Conv2d):
            raise ValueError(f"causal maps need a conv layer; {layer!r} is {type(self.traced.modules[layer]).__name__}")
        for k, g in graphs.items():
            if layer not in [lg.layer for lg in g.layers]:
                raise KeyError(f"layer {layer!r} is not in the layer chain of the class-{k} graph "
                               f"({[lg.layer for lg in g.layers]})")
        self.__name__ = "Causal"

    def __getstate__(self) -> dict:
        """Pickled (for a Ray worker, `evaluate_methods`) as the model, the graphs and the layer: a torch.fx GraphModule
        does not come back whole (it is re-generated from its code, so the traced model's node table and its cached
        activations would point at nodes of another graph); the traced model is rebuilt on unpickling."""
        return {"model": self.traced.model, "graphs": self.graphs, "layer": self.layer, "__name__": self.__name__}

    def __setstate__(self, state: dict) -> None:
        self.traced = TracedModel(state["model"])
        self.graphs, self.layer, self.__name__ = state["graphs"], state["layer"], state["__name__"]

    def __call__(self, model=None, inputs=None, targets=None, **kwargs) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        y = np.asarray(targets).reshape(-1).astype(int)
        missing = sorted(set(y.tolist()) - set(self.graphs))
        if missing:
            raise KeyError(f"no causal graph for class(es) {missing} (have {sorted(self.graphs)})")
        out = torch.zeros(len(x), 1, *x.shape[-2:])
        for k in np.unique(y):
            idx = torch.from_numpy(np.flatnonzero(y == k))
            self.traced.cache(x[idx], where=f"causal map of class {int(k)}")
            s = causal_responses(self.traced, self.graphs[int(k)], self.layer)
            out[idx, 0] = saliency_map(s, tuple(x.shape[-2:])).cpu()
        return out.numpy()


def normalised(fn):
    """`fn` with its maps turned into |a| / max|a| per example (how the authors normalised their causal maps)."""
    def explain(model=None, inputs=None, targets=None, **kwargs) -> np.ndarray:
        return abs_max(fn(model=model, inputs=inputs, targets=targets, **kwargs))

    explain.__name__ = getattr(fn, "__name__", "explain")
    return explain


def abs_max(a: np.ndarray) -> np.ndarray:
    """|a| / max|a| per example (all-zero maps stay zero). Quantus' own normalise works over the whole batch."""
    a = np.abs(np.asarray(a, dtype=np.float32))
    m = a.reshape(len(a), -1).max(1).reshape(-1, *([1] * (a.ndim - 1)))
    return np.divide(a, m, out=np.zeros_like(a), where=m > 0)


class Cached:
    """Memoises an explanation function by (inputs, targets) bytes, so that both metrics reuse one computation of each
    explanation (Quantus' perturbations are reproduced by seeding)."""

    def __init__(self, fn, bar=None):
        self.fn, self.store, self.calls, self.bar = fn, {}, 0, bar
        self.__name__ = getattr(fn, "__name__", "explain")

    def __call__(self, model=None, inputs=None, targets=None, **kwargs) -> np.ndarray:
        x, y = np.ascontiguousarray(inputs, dtype=np.float32), np.ascontiguousarray(targets)
        key = hashlib.sha1(x.tobytes() + y.tobytes() + str(x.shape).encode()).hexdigest()
        if key not in self.store:
            self.calls += 1
            self.store[key] = self.fn(model=model, inputs=x, targets=y, **kwargs)
            check_finite(torch.as_tensor(self.store[key]), "explanation values", f"maps of {self.__name__}", labels=y)
            if self.bar is not None:
                self.bar.update(len(x))
        return self.store[key].copy()


def metric(name: str, cfg: EvaluationConfig):
    """The Quantus metric object for `name` (LE | IROF). It scores the maps as it gets them: normalisation is
    the explanation function's (see `score`)."""
    import quantus

    common = dict(return_aggregate=False, disable_warnings=True, display_progressbar=False, normalise=False, abs=False)
    if name == "LE":
        return quantus.LocalLipschitzEstimate(nr_samples=cfg.le_samples, perturb_mean=cfg.le_mean,
                                              perturb_std=cfg.le_std, **common)
    if name == "IROF":
        return quantus.IROF(segmentation_method=cfg.irof_segmentation, perturb_baseline=cfg.irof_baseline,
                            perturb_func=replace_segment, **common)
    raise ValueError(f"unknown metric {name!r}; choose from {METRICS}")


def replace_segment(arr: np.ndarray, mask: np.ndarray, **kwargs) -> np.ndarray:
    """IROF's perturbation, Quantus' `baseline_replacement_by_mask` with the (N, 1, H, W) superpixel mask broadcast
    over the channels: Quantus 0.6.0 IROF asserts equal shapes and so fails on every RGB image."""
    from quantus.functions.perturb_func import baseline_replacement_by_mask

    return baseline_replacement_by_mask(arr=arr, mask=np.broadcast_to(mask, arr.shape), **kwargs)


def score(name: str, cfg: EvaluationConfig, model: nn.Module, x: np.ndarray, y: np.ndarray, explain) -> np.ndarray:
    """Per-example scores of one method under the fair protocol: one Quantus metric call on the maps as
    |a| / max|a| per example (`normalised`), with numpy's global RNG (Quantus' noise) seeded from `cfg.seed` so that
    every method sees the same perturbations. Quantus checks the maps it gets and refuses a batch that is all
    negative, which its own normalise + abs would come too late for: this way a map of negative responses (e.g. a
    conv without a ReLU after it) is scored like any other."""
    explain = normalised(explain)
    return np.asarray(run_metric(metric(name, cfg), f"{name} of {getattr(explain, '__name__', 'a method')}", model, x, y,
                                 explain, cfg.seed, cfg.batch_size), dtype=float)


def run_metric(quantus_metric, what: str, model: nn.Module, x: np.ndarray, y: np.ndarray, explain, seed: int,
               batch_size: int):
    """One Quantus metric call on a batch: inputs checked for NaN/inf, numpy's global RNG (Quantus' noise) seeded with
    `seed` so that every method sees the same perturbations (and restored after), the model's mode restored. A batch
    Quantus refuses because a map is all negative scores NaN per example. Returns Quantus' per-example output."""
    check_finite(torch.as_tensor(np.asarray(x)), "input values", what, labels=np.asarray(y))
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with evaluating(model), warnings.catch_warnings():   # Quantus leaves the model in eval mode; restored here
            # IROF replaces a superpixel by the image's mean: a superpixel already at the mean (a flat MNIST background)
            # leaves the input as it was, and Quantus warns "perturb_func didn't cause change in input". The step is
            # scored as it is (the class probability does not move), the same way for every method. Benign, so filtered.
            warnings.filterwarnings("ignore", message="The settings for perturbing input e.g., 'perturb_func' didn't "
                                    "cause change", category=UserWarning)
            out = quantus_metric(model=model, x_batch=x, y_batch=y, a_batch=None, explain_func=explain,
                                 explain_func_kwargs={}, device=str(device_of(model)), batch_size=batch_size)
    except AssertionError as e:
        if "should not all be less than zero" not in str(e):
            raise
        out = np.full(len(x), np.nan)
    finally:
        np.random.set_state(state)
    return out


def median_ci(values, n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(median, low, high): percentile-bootstrap interval of the median (scipy.stats.bootstrap); NaNs dropped."""
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (float("nan"),) * 3
    if len(v) == 1 or np.all(v == v[0]):
        return (float(v[0]),) * 3
    r = bootstrap((v,), np.median, n_resamples=n_resamples, confidence_level=level, method="percentile",
                  random_state=np.random.default_rng(seed))
    return float(np.median(v)), float(r.confidence_interval.low), float(r.confidence_interval.high)


def map_layer(model: nn.Module, graph: ClassGraph, layer: str | None = None) -> str:
    """The layer whose graph nodes make the causal map: `layer` if given (`CausalExplainer` checks it against every
    graph), else the chain's last conv layer."""
    if layer is not None:
        return layer
    modules = dict(model.named_modules())
    convs = [lg.layer for lg in graph.layers if isinstance(modules.get(lg.layer), nn.Conv2d)]   # stored top-down
    if not convs:
        raise ValueError("the layer chain has no conv layer to build a causal map from")
    return convs[0]


def classes_with_maps(graphs: dict[int, ClassGraph], layer: str) -> tuple[list[int], list[int]]:
    """(classes whose graph has necessary parents at `layer`, classes whose graph has none). The latter have an
    all-zero causal map, which Quantus rejects and which would score a perfect LE: their examples are left out
    for every method."""
    ok = [k for k, g in sorted(graphs.items()) if g.layer(layer).necessary]
    return ok, [k for k in sorted(graphs) if k not in ok]


def pick_examples(setup, classes: list[int], per_class: int, correct_only: bool, seed: int):
    """Up to `per_class` seeded-random evaluation-split examples of each class (correctly classified ones only, if
    asked): (x, y) numpy arrays ready for Quantus, and the indices into the whole test set."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in classes:
        idx = setup.eval_idx[setup.y_test[setup.eval_idx] == c]
        if correct_only:
            with torch.no_grad(), evaluating(setup.model):
                logits = setup.model(setup.x_test[idx].to(device_of(setup.model)))
            check_finite(logits, "logits", f"evaluation examples of class {c}")
            idx = idx[logits.argmax(1).cpu() == c]
        picked.append(idx[torch.from_numpy(np.sort(rng.permutation(len(idx))[:per_class]))])
    idx = torch.cat(picked) if picked else torch.zeros(0, dtype=torch.long)
    return setup.x_test[idx].numpy(), setup.y_test[idx].numpy(), idx.numpy()


def evaluate_method(name: str, explain, cfg: EvaluationConfig, model: nn.Module, x: np.ndarray, y: np.ndarray,
                    cache_file=None, desc: str = "") -> dict:
    """Scores of one method: {"seconds": s, "<metric>": [per-example scores]} for both metrics, under the fair
    protocol (`score`). The explanations are computed once (`Cached`). With `cache_file`, a finished method is stored
    and reused, so an interrupted stage resumes."""
    if cache_file is not None and Path(cache_file).exists():
        return json.loads(Path(cache_file).read_text())
    result = method_scores(explain, cfg, model, x, y, f"{desc}{name}")
    if cache_file is not None:
        save_scores(cache_file, result)
    return result


def method_scores(explain, cfg: EvaluationConfig, model: nn.Module, x: np.ndarray, y: np.ndarray,
                  bar_desc: str | None = None) -> dict:
    """`evaluate_method`'s computation, without its cache: {"<metric>": [per-example scores], "seconds": s}. With
    `bar_desc`, a progress bar of the explanations computed (the inputs, each LE perturbation of them and, for IROF,
    the inputs again, cached)."""
    bar = progress(total=len(x) * (cfg.le_samples + 1), desc=bar_desc, unit="map") if bar_desc is not None else None
    cached = Cached(explain, bar)
    result, t0 = {}, time.perf_counter()
    for met in METRICS:
        result[met] = score(met, cfg, model, x, y, cached).tolist()
    result["seconds"] = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return result


def save_scores(cache_file, result: dict) -> None:
    """Write a method's scores to `cache_file` (through a .part file, so that an interruption leaves no half file)."""
    path = Path(cache_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)


def scores_file(name: str, explain) -> str:
    """The cache file name of a method's scores: `Causal-<layer>.json` for causal maps ("Causal", "Causal @ <layer>"),
    else `<name>.json`."""
    return f"Causal-{explain.layer}.json" if name.startswith("Causal") else f"{name}.json"


def evaluate_methods(methods: dict, cfg: EvaluationConfig, model: nn.Module, x: np.ndarray, y: np.ndarray,
                     cache_dir=None, workers: int | None = None, desc: str = "", may_fail=()) -> dict:
    """`evaluate_method` of every method in `methods` ({name: explanation function}), one method at a time, or fanned
    out over Ray workers (`workers`, RAY_ADDRESS: `fanout.run`; the same scores, each method's perturbations being
    seeded by `score`).

    With `cache_dir`, each method's scores are written to `cache_dir/<scores_file>` in this process as the method
    finishes and reused on a re-run, so an interrupted run computes only the missing methods. A RuntimeError of a method
    named in `may_fail` (a baseline library that cannot handle the architecture) is returned in place of its scores
    (and not cached); any other error is raised (over Ray, once the methods already running have finished and been
    saved). Returns {name: scores, or the RuntimeError} in the order of `methods`.
    """
    folder = Path(cache_dir) if cache_dir is not None else None
    out, todo = {}, []
    for name, explain in methods.items():
        path = folder / scores_file(name, explain) if folder is not None else None
        if path is not None and path.exists():
            out[name] = json.loads(path.read_text())
        else:
            todo.append(name)
    remote = fanout.uses_ray(workers)
    may_fail = set(may_fail)

    # --- fan-out (fanout.py): one unit = one method's scores, computed here or on a Ray worker; saved here as it comes
    def one(name):
        if remote:                      # a worker: the driver's deterministic kernels too (a no-op on the CPU)
            deterministic(device_of(model))
        try:
            return method_scores(methods[name], cfg, model, x, y, None if remote else f"{desc}{name}")
        except RuntimeError as e:
            if name not in may_fail:
                raise
            return e

    bar = progress(total=len(todo), desc=f"{desc}methods", unit="method") if remote else None

    def finished(i, result):
        name = todo[i]
        if folder is not None and not isinstance(result, Exception):
            save_scores(folder / scores_file(name, methods[name]), result)
        out[name] = result
        if bar is not None:
            bar.update(1)

    try:
        fanout.run(one, todo, workers, done=finished)
    finally:
        if bar is not None:
            bar.close()
    # --- end of fan-out
    return {name: out[name] for name in methods}
