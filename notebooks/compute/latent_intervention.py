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
# # Compute: latent-space explanation by intervention on data with a planted bias (`compute_latent_intervention`)
# Builds the planted-bias tasks (`planted.py`) and, per task, training split and seed, trains the classifier, its
# discrete VAE and its two explanatory networks (with and without the regulariser) and measures them (`latent.run_unit`).
# Writes to `results/latent_intervention/`: `recipe.csv` (the splits' counts), `units.csv` (Tables 1 and 2, one row per
# classifier), `examples.csv` (per test example: predictions before and after the intervention, the attribute of the
# concept images), `grids.npz` (the images of figs. 3, 4 and 6, first seed) and `run.json`;
# `notebooks/latent_intervention.py` draws and judges them.

# %% tags=["parameters"]
stage = "latent_intervention"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto",
          "latent_intervention": {"tasks": ["mnist"], "seeds": [0], "train_per_class": 20, "test_per_cell": 5,
                                  "classifier_epochs": 1, "dvae_epochs": 2, "explainer_epochs": 1, "grid_examples": 4}}
out_dir = "results/latent_intervention"
checkpoint_dir = ".cache/checkpoints"

# %%
import dataclasses, hashlib, json, time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from causal_interp import config, data, latent, models, planted, training

cfg = config.from_dict(latent.LatentConfig, params[stage], stage)
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
cache = Path(checkpoint_dir).parent / stage                       # one file per finished classifier: a re-run resumes
cache.mkdir(parents=True, exist_ok=True)
settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("threads", "bootstrap")}
print(cfg, device)

# %% [markdown]
# ## The planted-bias data
# The same training images in three versions that differ only in who carries the painted attribute; a test set balanced
# over label x attribute. The counts below are the recipe's, exact by construction.

# %%
tasks, recipe = {}, []
for t in cfg.tasks:
    task = planted.TASKS[t]
    ds = data.load_dataset(task.dataset, data_cfg)                 # verified raw data
    splits = planted.train_splits(task, ds.y_train, cfg.train_per_class, cfg.bias, cfg.data_seed)
    test = planted.balanced_test(task, ds.y_test, cfg.test_per_cell, cfg.data_seed)
    x_test = planted.paint(task, ds.x_test[test["index"]], test["attribute"])
    score = planted.attribute_score(task, x_test)
    scale = float(score[test["attribute"] == 1].mean() - score[test["attribute"] == 0].mean())
    tasks[t] = {"splits": splits, "test": test, "x_test": x_test, "scale": scale,
                "x": {s: planted.paint(task, ds.x_train[v["index"]], v["attribute"]) for s, v in splits.items()}}
    for name, part in [*splits.items(), ("test", test)]:
        for lab in (1, 0):
            sel = part["label"] == lab
            recipe.append({"task": t, "split": name, "label": task.label_names[lab], "positive": lab,
                           "images": int(sel.sum()), "with_A": int(part["attribute"][sel].sum()),
                           "share_A": float(part["attribute"][sel].mean())})
    del ds
recipe = pd.DataFrame(recipe)
recipe.to_csv(out / "recipe.csv", index=False)
recipe

# %% [markdown]
# ## Classifier, DVAE and explanatory networks, per task x split x seed

# %%
units, examples, grids = [], [], {}
t_start = time.perf_counter()
for t, bundle in tasks.items():
    test = bundle["test"]
    explain_split = "control" if cfg.explainer_data == "control" else None
    for split, part in bundle["splits"].items():
        for seed in cfg.seeds:
            unit_settings = {k: v for k, v in settings.items() if k not in ("tasks", "seeds")}
            key = hashlib.sha256(json.dumps([unit_settings, t, split, seed, device.type]).encode()).hexdigest()[:12]
            path = cache / f"{t}-{split}-seed{seed}-{key}.pt"
            if path.is_file():
                unit = torch.load(path, weights_only=False)
                print(f"{t} {split} seed {seed}: resumed from {path.name}")
            else:
                unit = latent.run_unit(t, bundle["x"][split], torch.as_tensor(part["label"]),
                                       bundle["x"][explain_split or split], bundle["x_test"], test["label"],
                                       test["attribute"], seed, cfg, device)
                torch.save(unit, path)
            m = unit["metrics"]
            units.append({"task": t, "split": split, "seed": seed, **m})
            examples.append(unit["examples"].assign(task=t, split=split, seed=seed))
            print(f"{t} {split} seed {seed}: accuracy {m['acc_original']:.3f} -> {m['acc_reconstructed']:.3f} "
                  f"reconstructed, {m['flipped']:.1%} flipped, cosine {m['cos_unregularised']:.2f} -> "
                  f"{m['cos_regularised']:.2f}, {m['seconds']:.0f} s")
            if seed == cfg.seeds[0]:
                for name, g in unit["grid"].items():
                    for kind, images in g.items():
                        grids[f"{t}/{split}/{name}/{kind}"] = np.round(images * 255).astype(np.uint8)
                order = unit["order"]
                grids[f"{t}/{split}/pred_reconstructed"] = unit["examples"].pred_reconstructed.to_numpy()[order]
                grids[f"{t}/{split}/pred_intervened"] = unit["examples"].pred_intervened.to_numpy()[order]
    grids[f"{t}/original"] = np.round(bundle["x_test"][order].numpy() * 255).astype(np.uint8)
    grids[f"{t}/label"], grids[f"{t}/attribute"] = test["label"][order], test["attribute"][order]
units = pd.DataFrame(units)
examples = pd.concat(examples, ignore_index=True)
units.to_csv(out / "units.csv", index=False, float_format="%.6g")
columns = ["task", "split", "seed", "explainer", "example", "label", "attribute", "pred_original", "pred_reconstructed",
           "pred_intervened", "m0", "m1", "cos"]
examples[columns].to_csv(out / "examples.csv", index=False, float_format="%.5g")
np.savez_compressed(out / "grids.npz", **grids)
run = {"settings": settings, "device": str(device), "machine": training.machine(),
       "scales": {t: b["scale"] for t, b in tasks.items()},
       "seconds": time.perf_counter() - t_start, "seconds_per_unit": float(units.seconds.mean())}
(out / "run.json").write_text(json.dumps(run, indent=2))
units.groupby(["task", "split"], sort=False)[["acc_original", "acc_reconstructed", "flipped", "cos_unregularised",
                                             "cos_regularised", "seconds"]].mean().round(3)
