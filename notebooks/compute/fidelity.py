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
# # Compute: masking the critical neurons, fig. 10 (`compute_fidelity`, `compute_arch_fidelity`)
# Writes the masked class accuracies of every class graph, share and ranking (`results/<stage>/fidelity.csv`) and the
# run's settings and time (`results/<stage>/run.json`); `notebooks/fidelity.py` draws and judges them.

# %% tags=["parameters"]
stage = "fidelity"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto", "fidelity": {"models": ["train_lenet"], "classes": [3]}}
out_dir = "results/fidelity"
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
rows, seconds = masking.write_sweep("fidelity", setups, cfg, out)     # results/<stage>/fidelity.csv and run.json
print(f"{len(rows)} masked evaluations in {seconds:.0f} s")
