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

# %% [markdown]
# # Compute: masking distracting and irrelevant paths, fig. 11 (`compute_repair`, `compute_arch_repair`)
# Writes, for every class graph, share and mask, the class accuracy, the all-class accuracy, the class's false-positive
# rate and precision (`results/<stage>/repair.csv`) and the run's settings and time (`results/<stage>/run.json`);
# `notebooks/repair.py` draws and judges them.

# %% tags=["parameters"]
stage = "repair"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto", "repair": {"models": ["train_lenet"], "classes": [3]}}
out_dir = "results/repair"
results_dir = "results"
models_dir = "models"

# %%
from pathlib import Path

from causal_interp import config, masking, models, training

cfg = config.from_dict(masking.MaskingConfig, params[stage], stage)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
# missing model/graphs, classes without a graph: all stop here
setups = masking.load_setups(cfg, models_dir, results_dir, config.data_config(params), device=device)
print(cfg)

# %%
rows, seconds = masking.write_sweep("repair", setups, cfg, out)     # results/<stage>/repair.csv and run.json
print(f"{len(rows)} masked evaluations in {seconds:.0f} s")
