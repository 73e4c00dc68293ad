"""Do metrics of one property agree? Three robustness and four faithfulness metrics, via Quantus (stage
`metric_agreement`).

Fig. 8 rests on one metric per property (LE, IROF). Metrics of the same property often rank methods differently
(Vandersmissen & Oramas), so here every method is scored by three of each, all under the fair protocol of the
evaluation stage: every map normalised the same way (|a| / max |a| per example, `evaluation.normalised`), the same
seeded perturbations for every method, examples from the evaluation half.

* robustness (lower is better): Local Lipschitz Estimate, Max-Sensitivity, Avg-Sensitivity;
* faithfulness: IROF (area over the curve, higher is better), Pixel-Flipping (most relevant first, area under the
  class-probability curve, lower is better; about `flip_steps` steps per channel, Quantus flips RGB channels apart), Region-Perturbation (most relevant first, AOPC: the mean drop of the class
  probability over the perturbation steps, higher is better), Selectivity (Montavon et al. 2018: patches of
  `region_patch` pixels removed most relevant first until none is left; area under the class-probability curve,
  lower is better). Removal ("black", Quantus' baseline) sets the pixels to the smallest value of the example's
  standardised input, for every method alike: on MNIST the background, so a step that reaches only background pixels
  changes nothing.

A property-level claim ("the causal maps are the most robust / faithful") is made only where every metric of that
property ranks the causal maps first, clear of every other method (`CRITERION`); the report gives each method's rank per
metric and the Spearman correlation of the metrics' rankings.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .config import bounded
from .evaluation import replace_segment

PROPERTIES = {"robustness": ("LE", "MaxSensitivity", "AvgSensitivity"),
              "faithfulness": ("IROF", "PixelFlipping", "RegionPerturbation", "Selectivity")}
HIGHER_IS_BETTER = {"IROF", "RegionPerturbation"}
CLAIMS = {"robustness": "the causal maps are the most robust (stable) explanations",
          "faithfulness": "the causal maps are the most faithful explanations"}


@dataclass
class AgreementConfig:
    """params.yaml section `metric_agreement`."""

    models: list = field(default_factory=lambda: ["train_lenet", "finetune_cifar10"])
    layers: dict = field(default_factory=dict)         # map layer per model (default: the chain's last conv layer)
    examples_per_class: dict | int = 3
    classes: list | None = None
    correct_only: bool = True
    graph_test: str = "paired"
    graphs_dir: str = "graphs"
    methods: list = field(default_factory=lambda: ["Causal", "IntegratedGradients", "Saliency", "GradientShap",
                                                   "InputXGradient", "Occlusion", "Deconvolution"])
    samples: int = bounded(10, 1, 10_000)              # perturbations per input, for the three robustness metrics
    noise_mean: float = bounded(0.1, -10, 10)          # LE's Gaussian noise (the authors' settings)
    noise_std: float = bounded(0.1, 0, 10, low_open=True)
    sensitivity_radius: float = bounded(0.2, 0, 10, low_open=True)   # Max/Avg-Sensitivity: uniform noise in [-r, r]
    flip_steps: int = bounded(16, 2, 10_000)           # Pixel-Flipping: pixels flipped in this many equal steps
    region_patch: int = bounded(4, 1, 1024)            # Region-Perturbation, Selectivity: square patches of this side
    region_steps: int = bounded(16, 1, 10_000)         # ... this many of them, most relevant first
    baselines: dict = field(default_factory=dict)
    bootstrap: int = bounded(2000, 1, 1_000_000)
    batch_size: int = bounded(64, 1, 65_536)
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)

    def validate(self, section: str) -> None:
        from .baselines import check_methods
        from .config import ConfigError

        check_methods(self.methods)
        if "Causal" not in self.methods or len(self.methods) < 3:
            raise ConfigError(f"{section}.methods must include Causal and at least two other methods to rank")
        if not self.models:
            raise ConfigError(f"{section}.models must name at least one training stage")
        for m in self.models:
            if isinstance(self.examples_per_class, dict) and m not in self.examples_per_class:
                raise ConfigError(f"{section}.examples_per_class has no entry for {m}")

    def per_class(self, model: str) -> int:
        return int(self.examples_per_class[model] if isinstance(self.examples_per_class, dict) else self.examples_per_class)


def metrics(cfg: AgreementConfig, image_shape: tuple) -> dict:
    """{name: Quantus metric object}, every one scoring the maps as it gets them (the caller normalises)."""
    import quantus

    common = dict(return_aggregate=False, disable_warnings=True, display_progressbar=False, normalise=False, abs=False)
    pixels = int(np.prod(image_shape[-2:]))
    step = max(d for d in range(1, max(1, pixels // cfg.flip_steps) + 1) if pixels % d == 0)   # Quantus: must divide
    return {
        "LE": quantus.LocalLipschitzEstimate(nr_samples=cfg.samples, perturb_mean=cfg.noise_mean,
                                             perturb_std=cfg.noise_std, **common),
        "MaxSensitivity": quantus.MaxSensitivity(nr_samples=cfg.samples, lower_bound=cfg.sensitivity_radius,
                                                 **common),
        "AvgSensitivity": quantus.AvgSensitivity(nr_samples=cfg.samples, lower_bound=cfg.sensitivity_radius,
                                                 **common),
        "IROF": quantus.IROF(segmentation_method="slic", perturb_baseline="mean", perturb_func=replace_segment, **common),
        "PixelFlipping": quantus.PixelFlipping(features_in_step=step, perturb_baseline="black",
                                               return_auc_per_sample=True, **common),
        "RegionPerturbation": quantus.RegionPerturbation(patch_size=cfg.region_patch, order="morf",
                                                         regions_evaluation=cfg.region_steps, perturb_baseline="black",
                                                         **common),
        "Selectivity": quantus.Selectivity(patch_size=cfg.region_patch, perturb_baseline="black", **common),
    }


def per_example(name: str, out) -> np.ndarray:
    """One number per example: Region-Perturbation's curve of probability drops becomes its mean (AOPC), Selectivity's
    curve of class probabilities its area (Quantus's own `calculate_auc`, as its `get_auc_score` does per batch)."""
    if name == "RegionPerturbation":
        return np.array([np.mean(c) if np.ndim(c) and len(c) else np.nan for c in out], dtype=float)
    if name == "Selectivity":
        from quantus.helpers.utils import calculate_auc

        return np.array([calculate_auc(np.asarray(c, dtype=float)) if np.ndim(c) and len(c) else np.nan for c in out],
                        dtype=float)
    return np.asarray(out, dtype=float)


def ranks(medians: pd.DataFrame) -> pd.DataFrame:
    """medians: rows (model, metric, method, median). Adds `rank` (1 = best, by the metric's direction)."""
    out = []
    for (model, metric), d in medians.groupby(["model", "metric"], sort=False):
        ascending = metric not in HIGHER_IS_BETTER
        out.append(d.assign(rank=d["median"].rank(ascending=ascending, method="min").astype("Int64")))   # NaN: unranked
    return pd.concat(out)


def rank_correlations(ranked: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation between the method rankings of every two metrics of one property, per model."""
    rows = []
    for model, d in ranked.groupby("model", sort=False):
        wide = d.pivot(index="method", columns="metric", values="rank")
        for prop, names in PROPERTIES.items():
            names = [n for n in names if n in wide]
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    both = wide[[a, b]].dropna().astype(float)
                    rho = spearmanr(both[a], both[b]).statistic if both[a].nunique() > 1 and both[b].nunique() > 1 else np.nan
                    rows.append({"model": model, "property": prop, "metric_a": a, "metric_b": b, "spearman": float(rho)})
    return pd.DataFrame(rows)


CRITERION = ("holds when every metric of the property ranks the causal maps first with a 95% interval clear of every "
             "other method's; does not hold when some metric has another method better with intervals apart; otherwise "
             "not resolved (the metrics disagree, or the intervals overlap)")


def _clearly_better(a, b, metric: str) -> bool:
    """Row `a`'s interval lies entirely on the better side of row `b`'s, in the metric's direction."""
    return a.ci_low > b.ci_high if metric in HIGHER_IS_BETTER else a.ci_high < b.ci_low


def property_verdicts(ranked: pd.DataFrame) -> pd.DataFrame:
    """Per model and property: the causal maps' rank under each metric and the outcome by `CRITERION` (`ranked` has
    the median's 95% interval in ci_low / ci_high)."""
    rows = []
    for model, dm in ranked.groupby("model", sort=False):
        for prop, names in PROPERTIES.items():
            ranks, clear_first, beaten = {}, [], []
            for n in names:
                d = dm[(dm.metric == n) & dm["median"].notna()]
                if not (d.method == "Causal").any():
                    ranks[n] = "unranked"
                    continue
                causal = d[d.method == "Causal"].iloc[0]
                others = [r for _, r in d[d.method != "Causal"].iterrows()]
                ranks[n] = int(causal["rank"])
                if ranks[n] == 1 and all(_clearly_better(causal, o, n) for o in others):
                    clear_first.append(n)
                if any(_clearly_better(o, causal, n) for o in others):
                    beaten.append(n)
            outcome = ("holds" if len(clear_first) == len(names) else "does not hold" if beaten else "not resolved")
            n_methods = int(dm[dm.metric == names[0]].method.nunique())
            rows.append({"model": model, "property": prop, "claim": CLAIMS[prop],
                         "causal_ranks": ", ".join(f"{n} {k} of {n_methods}" for n, k in ranks.items()),
                         "metrics_ranking_causal_first": sum(k == 1 for k in ranks.values()),
                         "clearly_first_in": ", ".join(clear_first) or "none", "clearly_beaten_in": ", ".join(beaten) or "none",
                         "outcome": outcome})
    return pd.DataFrame(rows)


def scores(methods: dict, model, x: np.ndarray, y: np.ndarray, cfg: AgreementConfig, bar=None) -> list[dict]:
    """Per-example scores, rows (metric, method, example, score), every map normalised |a| / max |a| per example and
    computed once per input (`evaluation.Cached`: the faithfulness metrics explain the same inputs)."""
    from .evaluation import Cached, normalised, run_metric

    rows = []
    objects = metrics(cfg, x.shape)
    for method, fn in methods.items():
        explain = normalised(Cached(fn))
        for name, metric in objects.items():
            out = per_example(name, run_metric(metric, f"{name} of {method}", model, x, y, explain, cfg.seed,
                                               cfg.batch_size))
            rows += [{"metric": name, "method": method, "example": i, "score": float(v)} for i, v in enumerate(out)]
            if bar is not None:
                bar.update(1)
    return rows
