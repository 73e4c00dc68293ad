# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %%

# %% [markdown]
# # Compute: every method's scores under three robustness and four faithfulness metrics (`compute_metric_agreement`)
# Writes `results/metric_agreement/`: `scores.csv` (per model, metric, method and example: the score) and `run.json`
# (per model: map layer, examples, or why it was not scored); `notebooks/metric_agreement.py` ranks, judges and draws them.

# %% tags=["parameters"]
stage = "metric_agreement"
params = {"seed": 0, "data": {"root": "data"},
          "metric_agreement": {"models": ["train_lenet"], "classes": [2, 3], "examples_per_class": 2,
                               "methods": ["Causal", "Saliency", "IntegratedGradients"], "samples": 2,
                               "correct_only": False, "bootstrap": 50}}
out_dir = "results/metric_agreement"
results_dir = "results"
models_dir = "models"

# %%
import json, warnings
from pathlib import Path

import pandas as pd

from causal_interp import agreement, baselines, config, evaluation, masking, models, training
from causal_interp.progress import progress

# Pixel-Flipping, Region-Perturbation and Selectivity set removed pixels to Quantus' "black" baseline, the smallest value
# of the example's input: on MNIST the background. A step whose pixels are all background already leaves the input as
# it was, and Quantus warns "perturb_func didn't cause change in input"; the step is scored as it is (the class
# probability does not move), the same way for every method. Benign, so filtered.
warnings.filterwarnings("ignore", message="The settings for perturbing input e.g., 'perturb_func' didn't cause change",
                        category=UserWarning)
cfg = config.from_dict(agreement.AgreementConfig, params[stage], stage)    # unknown methods stop here
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
base = config.from_dict(baselines.BaselineConfig, {"seed": cfg.seed, **cfg.baselines}, f"{stage}.baselines")
setups, methods, examples, run = {}, {}, {}, {}
for m in cfg.models:    # missing model or graphs, classes without a graph, unknown layer: all stop here
    su = masking.load_setup(m, Path(models_dir), Path(results_dir) / cfg.graphs_dir / m / cfg.graph_test, cfg.classes, data_cfg, device=device)
    layer = evaluation.map_layer(su.model, next(iter(su.graphs.values())), cfg.layers.get(m))
    usable, _ = evaluation.classes_with_maps(su.graphs, layer)
    methods[m] = {"Causal": evaluation.CausalExplainer(su.model, {k: su.graphs[k] for k in usable}, layer),
                  **{b: baselines.explainer(b, su.model, base) for b in cfg.methods if b != "Causal"}}
    examples[m] = evaluation.pick_examples(su, usable, cfg.per_class(m), cfg.correct_only, cfg.seed)
    run[m] = {"layer": layer, "classes_with_a_map": [int(k) for k in usable], "examples": len(examples[m][1])}
    print(m, run[m])
    if len(examples[m][1]):
        setups[m] = su
if not setups:
    raise ValueError(f"{stage}: no model has examples with a causal map to score")

# %%
rows = []
bar = progress(total=len(setups) * len(cfg.methods) * sum(map(len, agreement.PROPERTIES.values())), desc="metrics", unit="metric")
for m in setups:
    x, y, _ = examples[m]
    rows += [{"model": m, **r} for r in agreement.scores(methods[m], setups[m].model, x, y, cfg, bar=bar)]
bar.close()
scores = pd.DataFrame(rows)
scores.to_csv(out / "scores.csv", index=False)
(out / "run.json").write_text(json.dumps(run, indent=2))
print(scores.groupby(["model", "metric", "method"]).score.median().to_string())   # every row
