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
# # Compute: the sanity checks' similarity scores (`compute_sanity_checks`)
# Writes `results/sanity_checks/`: `scores.csv` (per model, check, method, randomisation step and example: the
# similarity) and `run.json` (per model: map layer, example counts); `notebooks/sanity_checks.py` judges and draws them.

# %% tags=["parameters"]
stage = "sanity_checks"
params = {"seed": 0, "data": {"root": "data"},
          "sanity_checks": {"models": ["train_lenet"], "mprt_models": ["train_lenet"], "classes": [2, 3],
                            "methods": ["Causal", "Saliency"], "examples_per_class": 2, "mprt_examples_per_class": 1,
                            "rediscover_examples": 4, "correct_only": False, "bootstrap": 50}}
out_dir = "results/sanity_checks"
results_dir = "results"
models_dir = "models"

# %%
import json
from pathlib import Path

import pandas as pd

from causal_interp import config, data, evaluation, masking, models, sanity, training
from causal_interp.progress import progress

cfg = config.from_dict(sanity.SanityConfig, params[stage], stage)    # unknown method or model list stops here
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
setups, explain, explain_mprt, examples, run = {}, {}, {}, {}, {}
for m in cfg.models:    # missing model or graphs, classes without a graph, unknown layer: all stop here
    su = masking.load_setup(m, Path(models_dir), Path(results_dir) / cfg.graphs_dir / m / cfg.graph_test, cfg.classes, data_cfg, device=device)
    layer = evaluation.map_layer(su.model, next(iter(su.graphs.values())), cfg.layers.get(m))
    halves = data.load_halves(models.model_info(Path(models_dir) / f"{m}.pt"), data_cfg)
    disc = (halves.x[halves.discovery], halves.y[halves.discovery])
    explain[m] = sanity.explainers(su.model, su.graphs, layer, cfg, *disc, cfg.graph_test, len(su.classes))
    if m in cfg.mprt_models:     # trained and randomised graphs discovered the same way
        explain_mprt[m] = sanity.explainers(su.model, su.graphs, layer, cfg, *disc, cfg.graph_test, len(su.classes),
                                            same_protocol=True)
    examples[m] = evaluation.pick_examples(su, sorted(su.graphs), cfg.examples_per_class, cfg.correct_only, cfg.seed)
    setups[m] = su
    run[m] = {"layer": layer, "random_logit_examples": len(examples[m][1]),
              "mprt_examples_per_class": cfg.mprt_examples_per_class if m in cfg.mprt_models else None}
    print(m, run[m])

# %%
rows = []
jobs = [(m, meth) for m in setups for meth in cfg.methods]
for m, meth in progress(jobs, total=len(jobs), desc="random logit", unit="method"):
    x, y, _ = examples[m]
    s = sanity.random_logit(setups[m].model, x, y, explain[m][meth], len(setups[m].classes), cfg.seed)
    rows += [{"model": m, "check": "random_logit", "method": meth, "step": 0, "layer": None, "example": i, "score": v}
             for i, v in enumerate(s)]
jobs = [(m, meth) for m in cfg.mprt_models for meth in cfg.methods]
for m, meth in progress(jobs, total=len(jobs), desc="model randomisation", unit="method"):
    x, y, _ = evaluation.pick_examples(setups[m], sorted(setups[m].graphs), cfg.mprt_examples_per_class, cfg.correct_only, cfg.seed)
    cascade = sanity.mprt(setups[m].model, x, y, explain_mprt[m][meth], cfg.seed, full_only=m in cfg.mprt_full_only)
    for step, (layer, s) in enumerate(cascade.items(), 1):
        rows += [{"model": m, "check": "mprt", "method": meth, "step": step, "layer": layer, "example": i, "score": v}
                 for i, v in enumerate(s)]
scores = pd.DataFrame(rows)
scores.to_csv(out / "scores.csv", index=False)
(out / "run.json").write_text(json.dumps(run, indent=2))
print(scores.groupby(["model", "check", "method"]).score.median().to_string())   # every row
