"""Sanity checks of the explanations (Adebayo et al., 2018), via Quantus: does a map depend on the prediction and on
the model? (stage `sanity_checks`)

* **Random logit** (`quantus.RandomLogit`): SSIM between the map for the true class and the map for a random other
  class, per example. A class-independent map (for the causal method: near-full graphs, whose eq. 3 map is close to a
  mean response) scores near 1.
* **Model parameter randomisation, cascading top-down** (`quantus.MPRT`): Spearman correlation between the map of the
  trained model and the map of the model with its layers randomised one after the other from the output down. For
  the causal method the class graphs are **rediscovered on every randomised model** (`Rediscovering`): reusing the
  trained model's graphs would not test the method.

Every method is an explanation function of the model Quantus passes (`FollowModel`), every map normalised |a| / max |a|
per example (`evaluation.normalised`; Quantus' own normalisation would divide by the maximum of a whole batch). The thresholds of
the verdicts are ours and stated: a map passes a check when the 95% interval of its median similarity lies below 0.5,
fails when it lies above 0.9, and is not resolved otherwise.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field

import numpy as np
import quantus
import torch
from scipy.stats import ConstantInputWarning
from torch import nn

from . import baselines, discovery, evaluation
from .config import bounded
from .interventions import Intervention, device_of
from .models import evaluating
from .progress import progress

PASS_BELOW, FAIL_ABOVE = 0.5, 0.9
CHECKS = {"random_logit": "the map for the true class differs from the map for a random other class (SSIM)",
          "mprt": "the map changes when every layer of the model is randomised, top-down (Spearman correlation with "
                  "the trained model's map, all layers randomised)"}


@dataclass
class SanityConfig:
    """params.yaml section `sanity_checks`."""

    models: list = field(default_factory=lambda: ["train_lenet", "finetune_cifar10"])   # training stages (random logit)
    mprt_models: list = field(default_factory=lambda: ["train_lenet"])   # model randomisation: graphs rediscovered
                                                                         # per randomised layer (minutes on ResNet18)
    mprt_full_only: list = field(default_factory=list)   # of mprt_models: only the trained against the fully randomised
                                                         # model (Quantus' skip_layers: one rediscovery, not one per layer)
    graph_test: str = "paired"          # the trained model's graphs: results/<graphs_dir>/<model>/<graph_test>
    graphs_dir: str = "graphs"
    layers: dict = field(default_factory=dict)   # map layer per model (default: the chain's last conv layer)
    methods: list = field(default_factory=lambda: ["Causal", "IntegratedGradients", "Saliency", "GradientShap",
                                                   "InputXGradient", "Occlusion"])
    classes: list | None = None         # null: every class with a graph
    examples_per_class: int = bounded(5, 1, 10_000)        # random logit
    mprt_examples_per_class: int = bounded(2, 1, 10_000)   # model randomisation (explanations per randomised layer)
    rediscover_examples: int = bounded(20, 2, 10_000)      # discovery examples per class for a randomised model's graph
    correct_only: bool = True           # evaluation examples correctly classified by the trained model
    baselines: dict = field(default_factory=dict)          # BaselineConfig overrides
    bootstrap: int = bounded(2000, 1, 1_000_000)
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)

    def validate(self, section: str) -> None:
        baselines.check_methods(self.methods)
        if "Causal" not in self.methods:
            raise ValueError(f"{section}.methods must include Causal")
        if not isinstance(self.models, list) or not self.models:
            raise ValueError(f"{section}.models must be a non-empty list of training stages")
        if not set(self.mprt_models) <= set(self.models):
            raise ValueError(f"{section}.mprt_models must be among {section}.models {self.models}")
        if not set(self.mprt_full_only) <= set(self.mprt_models):
            raise ValueError(f"{section}.mprt_full_only must be among {section}.mprt_models {self.mprt_models}")
        self.baseline_config()

    def baseline_config(self) -> baselines.BaselineConfig:
        from .config import from_dict

        return from_dict(baselines.BaselineConfig, {"seed": self.seed, **self.baselines}, "sanity_checks.baselines")


def fingerprint(model: nn.Module) -> str:
    """A hash of the model's parameters and buffers: which (randomised) model an explanation is asked for."""
    h = hashlib.sha1()
    for t in model.state_dict().values():
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class FollowModel:
    """A Quantus explanation function that explains the model Quantus passes: `make(model)` builds the method's
    explanation function for that model, once per distinct model state (MPRT passes a randomised copy per layer)."""

    def __init__(self, name: str, make):
        self.__name__, self.make, self._cache = name, make, {}

    def __call__(self, model=None, inputs=None, targets=None, **kwargs) -> np.ndarray:
        key = fingerprint(model)
        if key not in self._cache:
            self._cache = {key: self.make(model)}     # one model at a time: MPRT goes layer by layer
        return self._cache[key](model=model, inputs=inputs, targets=targets, **kwargs)


class Rediscovering:
    """`make` for the causal method: the class graphs of `model` rediscovered on the discovery examples (x, y) of
    the classes asked for (hard interventions, `test`; any prediction counts, since a randomised model classifies
    nothing correctly), then its eq. 3 map at `layer`. A class whose rediscovered graph has no node at `layer` gets
    an all-zero map."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes, n: int, test: str, layer: str, alpha: float = 0.05):
        self.x, self.y, self.classes, self.n, self.test, self.layer, self.alpha = x, y, list(classes), n, test, layer, alpha

    def graphs(self, model: nn.Module) -> dict:
        """The class graphs of `model`, with a progress bar (a ResNet18's take minutes)."""
        out = {}
        bar = progress(total=len(self.classes) * len(discovery.layer_chain(model)), desc="rediscovering graphs",
                       unit="layer")
        with evaluating(model):
            for k in self.classes:
                idx = discovery.class_examples(model, self.x, self.y, k, self.n, correct_only=False)
                out[k] = discovery.discover_class_graph(model, self.x[idx], k, None, Intervention(), self.test, self.alpha,
                                                        bar=bar)
        bar.close()
        return out

    def __call__(self, model: nn.Module):
        graphs = self.graphs(model)
        usable, _ = evaluation.classes_with_maps(graphs, self.layer)
        return zero_for_missing(evaluation.CausalExplainer(model, {k: graphs[k] for k in usable}, self.layer)
                                if usable else None, usable)


def zero_for_missing(explain, usable):
    """`explain`, with an all-zero map for the classes outside `usable` (no graph node at the map layer)."""
    def maps(model=None, inputs=None, targets=None, **kwargs):
        y = np.asarray(targets).reshape(-1).astype(int)
        out = np.zeros((len(y), 1, *np.asarray(inputs).shape[-2:]), dtype=np.float32)
        have = np.isin(y, list(usable))
        if have.any():
            out[have] = explain(model, np.asarray(inputs)[have], y[have])
        return out

    maps.__name__ = "Causal"
    return maps


def explainers(model: nn.Module, graphs: dict, layer: str, cfg: SanityConfig, x_disc, y_disc, test: str,
               num_classes: int, same_protocol: bool = False) -> dict:
    """{method: FollowModel}. The trained model's causal maps come from its discovered `graphs` (random logit asks for
    any class: a class without a graph file gets one discovered here the same way); any other model state
    (randomised) gets every graph rediscovered. With `same_protocol` (model randomisation) the trained model's graphs
    are rediscovered in the same way too, so that the trained and the randomised maps differ only by the weights."""
    trained = fingerprint(model)
    rediscover = Rediscovering(x_disc, y_disc, range(num_classes), cfg.rediscover_examples, test, layer)
    if same_protocol:
        graphs = {}
    missing = [k for k in range(num_classes) if k not in graphs]
    if missing:
        graphs = {**graphs, **Rediscovering(x_disc, y_disc, missing, cfg.rediscover_examples, test, layer).graphs(model)}
    usable, _ = evaluation.classes_with_maps(graphs, layer)
    causal_trained = zero_for_missing(evaluation.CausalExplainer(model, {k: graphs[k] for k in usable}, layer), usable)

    def make_causal(m):
        return causal_trained if fingerprint(m) == trained else rediscover(m)

    out = {"Causal": FollowModel("Causal", make_causal)}
    base = cfg.baseline_config()
    for name in cfg.methods:
        if name != "Causal":
            out[name] = FollowModel(name, lambda m, name=name: baselines.explainer(name, m, base))
    return out


EMPTY_MAP = ("equal to zero", "uniformly distributed")   # Quantus' refusals of a map with nothing in it


def _quantus(metric, model, x, y, explain, seed: int):
    """One Quantus call, numpy's global RNG seeded (and restored after), the model's mode restored."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with evaluating(model):
            return metric(model=model, x_batch=x, y_batch=y, a_batch=None, explain_func=explain, explain_func_kwargs={},
                          device=str(device_of(model)))
    finally:
        np.random.set_state(state)


def _score(metric, model, x, y, explain, seed: int):
    """Quantus' output for the batch. Quantus refuses a whole batch when one map is empty (all zero: a class graph
    with no node at the map layer, e.g. of a randomised model); then each example is scored alone and the result is a
    list with None for an example whose map is empty (NaN in the tables: left out of the medians, and counted)."""
    try:
        return _quantus(metric, model, x, y, explain, seed)
    except AssertionError as e:
        if not any(s in str(e) for s in EMPTY_MAP):
            raise
    out = []
    for i in range(len(x)):
        try:
            out.append(_quantus(metric, model, x[i:i + 1], y[i:i + 1], explain, seed + i))
        except AssertionError as e:
            if not any(s in str(e) for s in EMPTY_MAP):
                raise
            out.append(None)
    return out


def normalised_marking_empty(fn):
    """`fn` with its maps as |a| / max |a| per example, and an all-zero map (for the causal method: a class whose graph
    has no node at the map layer, so it has no map) as NaN: such an example is not scored, rather than scored as if
    the map had changed completely."""
    def explain(model=None, inputs=None, targets=None, **kwargs) -> np.ndarray:
        a = np.abs(np.asarray(fn(model=model, inputs=inputs, targets=targets, **kwargs), dtype=np.float32))
        top = a.reshape(len(a), -1).max(1)
        return a / np.where(top > 0, top, np.nan).reshape(-1, *([1] * (a.ndim - 1)))

    explain.__name__ = getattr(fn, "__name__", "explain")
    return explain


def random_logit(model: nn.Module, x: np.ndarray, y: np.ndarray, explain, num_classes: int, seed: int) -> np.ndarray:
    """Per-example SSIM between the maps of the true class and of a random other class (Quantus' choice, seeded);
    NaN where either class has no map."""
    metric = quantus.RandomLogit(similarity_func=quantus.similarity_func.ssim, num_classes=num_classes, seed=seed,
                                 normalise=False, abs=False, disable_warnings=True)
    explain = normalised_marking_empty(explain)       # |a| / max |a| per example, not per batch
    out = _score(metric, model, x, y, explain, seed)
    if len(out) == len(x) and any(v is None or isinstance(v, (list, np.ndarray)) for v in out):    # one by one
        out = [np.nan if v is None else v[0] for v in out]
    return np.asarray(out, dtype=float)


def mprt(model: nn.Module, x: np.ndarray, y: np.ndarray, explain, seed: int,
         full_only: bool = False) -> dict[str, np.ndarray]:
    """{layer randomised last: per-example Spearman correlation with the trained model's map}, cascading top-down
    (the first entry randomises the output layer only, the last every layer; with `full_only`, the last only: Quantus'
    `skip_layers`, which explains only the trained and the fully randomised model). The model itself is not changed.
    A randomised model's map that is constant (for the causal method: its rediscovered graph has no node at the map
    layer, so the map is empty) has no rank correlation; it scores 0, no similarity: the map is gone."""
    metric = quantus.MPRT(similarity_func=quantus.similarity_func.correlation_spearman, layer_order="top_down",
                          seed=seed, skip_layers=full_only, normalise=False, abs=False, disable_warnings=True)
    explain = evaluation.normalised(explain)          # |a| / max |a| per example, not per batch
    # A constant map has no rank correlation: its spread is 0, so scipy's spearmanr returns NaN, which is scored as
    # said above, while numpy warns "invalid value encountered in divide" (and scipy, for some shapes, that an input is
    # constant). Expected, so benign: silenced here, for this call only.
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        out = _score(metric, model, x, y, explain, seed)
    if isinstance(out, list):                  # scored one example at a time: [{layer: [score]} or None, ...]
        layers = next((list(o) for o in out if o is not None), [])
        out = {layer: [np.nan if o is None else o[layer][0] for o in out] for layer in layers}
    original = np.asarray(out.get("original", np.ones(len(x))), dtype=float)   # 1 unless the trained map is empty
    scorable = np.isfinite(original)
    return {layer: np.where(scorable, np.nan_to_num(np.asarray(v, dtype=float), nan=0.0), np.nan)
            for layer, v in out.items() if layer != "original"}


def check_outcome(low: float, high: float) -> str:
    """The stated thresholds on the 95% interval [low, high] of the median similarity."""
    return "passes" if high < PASS_BELOW else "fails" if low > FAIL_ABOVE else "not resolved"


def summary_rows(scores, bootstrap: int, seed: int):
    """Median similarity with its bootstrap 95% interval and the stated outcome, per (model, check, method); MPRT is
    read with every layer randomised (the last layer of the cascade)."""
    import pandas as pd

    rows = []
    for (model, check, method), d in scores.groupby(["model", "check", "method"], sort=False):
        if check == "mprt":
            d = d[d.step == d.step.max()]
        med, lo, hi = evaluation.median_ci(d.score.dropna().to_numpy(), bootstrap, seed)
        n = int(d.score.notna().sum())
        rows.append({"model": model, "check": check, "method": method, "median": med, "ci_low": lo, "ci_high": hi,
                     "n": n, "empty_maps": int(d.score.isna().sum()),
                     "outcome": check_outcome(lo, hi) if n else "not scored: every map empty"})
    return pd.DataFrame(rows)


def sentence(row) -> str:
    """One check of one method in words: the check, the number with its interval, the outcome and the criterion."""
    return (f"{row['model']}, {row['method']}: {CHECKS[row['check']]}: median {row['median']:.3g} "
            f"[{row['ci_low']:.3g}, {row['ci_high']:.3g}] over {row['n']} examples: **{row['outcome']}** (criterion: "
            f"passes when the interval lies below {PASS_BELOW}, fails when it lies above {FAIL_ABOVE})")
