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
# # Compute: LeNet's figs. 7, 8, 10, 11 numbers per training seed and graph protocol (`compute_lenet_verdicts`)
# Trains LeNet per seed (`models/lenet_verdicts/`) and writes `results/lenet_verdicts/`: `numbers.json` (per seed, graph
# protocol and figure, the numbers its verdict rests on, and the graph sizes), `fidelity.csv` and `repair.csv` (the
# masking sweeps); `notebooks/lenet_verdicts.py` judges and draws them.

# %% tags=["parameters"]
stage = "lenet_verdicts"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto",
          "lenet_verdicts": {"train": {"dataset": "mnist", "model": "lenet", "epochs": 1, "train_subset": 256, "test_subset": 128},
                             "seeds": [0, 1], "classes": [2, 3], "examples_per_class": 4, "correct_only": False}}
out_dir = "results/lenet_verdicts"
models_out = "models"
checkpoint_dir = ".cache/checkpoints"

# %%
import json
from pathlib import Path

from causal_interp import config, models, stability, training

cfg = config.from_dict(stability.StabilityConfig, params[stage], stage)   # bad values stop here
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
cache = Path(checkpoint_dir).parent / "lenet_verdicts"    # graphs and soft runs, so an interrupted stage resumes
print(cfg, device)

# %%
rows, fidelity, repair = stability.run(cfg, data_cfg, Path(models_out), cache, Path(checkpoint_dir), device)
(out / "numbers.json").write_text(json.dumps(rows.to_dict(orient="records"), indent=1))
fidelity.to_csv(out / "fidelity.csv", index=False)
repair.to_csv(out / "repair.csv", index=False)
print(rows.drop(columns=["graph_sizes"]).to_string())
