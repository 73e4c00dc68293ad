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
import dataclasses, json, time
from pathlib import Path

import pandas as pd

from causal_interp import config, masking, models, training

cfg = config.from_dict(masking.MaskingConfig, params[stage], stage)
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
setups = {m: masking.load_setup(m, Path(models_dir), Path(results_dir) / cfg.graphs_dir / m / cfg.graph_test,
                                cfg.classes, data_cfg, device=device) for m in cfg.models}   # missing model/graphs, bad classes stop here
print(cfg)

# %%
rows = []
t0 = time.perf_counter()
for m, su in setups.items():
    rows += [{"model": m, **r} for r in masking.fidelity_rows(su, cfg.shares, cfg.random_draws, cfg.seed, desc=f"{m} classes")]
seconds = time.perf_counter() - t0
pd.DataFrame(rows).to_csv(out / "fidelity.csv", index=False)
(out / "run.json").write_text(json.dumps({
    "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "threads"}, "seconds": seconds,
    "models": list(setups)}, indent=2))
print(f"{len(rows)} masked evaluations in {seconds:.0f} s")
