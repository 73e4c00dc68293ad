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
# # Compute: fig. 8's LeNet digit-3 graphs and scores under both protocols (`compute_authors_protocol`)
# Writes `results/authors_protocol/`: `graphs/` (the digit-3 graph of every test variant), `graph_sizes.csv` (their
# necessary parents per layer), `scores.csv` (per-example LE / IROF of every method under both protocols) and
# `run.json` (examples, class); `notebooks/authors_protocol.py` draws them.

# %% tags=["parameters"]
stage = "authors_protocol"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto", "authors_protocol": {"examples": 12, "le_samples": 2, "rise_masks": 16, "bootstrap": 50}}
out_dir = "results/authors_protocol"
models_dir = "models"

# %%
import dataclasses, json, re
from pathlib import Path

import pandas as pd

from causal_interp import baselines, config, data, discovery, models, protocols, training
from causal_interp.progress import progress

cfg = config.from_dict(protocols.ProtocolConfig, params[stage], stage)
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
model_path = Path(models_dir) / f"{cfg.model}.pt"
info = models.model_info(model_path)                                   # missing model stops here
discovery.check_classes([cfg.class_index], info["num_classes"])        # class index out of range stops here
model = models.load_model(model_path).to(device)
discovery.layer_chain(model, [cfg.parent_layer, cfg.layer])            # unknown layers stop here
halves = data.load_halves(info, data_cfg)
raw = protocols.RawPixels(model, halves.data.mean, halves.data.std)
k = cfg.class_index
print(cfg)

# %%
xd, yd = halves.x[halves.discovery], halves.y[halves.discovery]
idx = discovery.class_examples(model, xd, yd, k, cfg.examples, correct_only=cfg.correct_only)
variants = protocols.graph_variants(cfg.floors)
graphs, rows, files = {}, [], {}
for name, kw in progress(variants.items(), total=len(variants), desc="graph variants", unit="graph"):
    g = discovery.discover_class_graph(model, xd[idx], k, class_name=halves.data.classes[k], **kw)
    g.examples = idx.tolist()
    graphs[name] = g
    files[name] = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") + ".json"
    g.save(out / "graphs" / files[name])
    rows.append({"graph": name, **protocols.graph_sizes_against_authors(g),
                 "fallback used at": ", ".join(lg.layer for lg in g.layers if lg.fallback) or "-"})
pd.DataFrame(rows).to_csv(out / "graph_sizes.csv", index=False)

# %%
xe, ye = halves.x[halves.evaluation], halves.y[halves.evaluation]
ie = discovery.class_examples(model, xe, ye, k, cfg.examples, correct_only=cfg.correct_only)
x01 = halves.data.x_test[halves.evaluation][ie].float().numpy() / 255.0      # raw pixels, as the authors' model read them
y = ye[ie].numpy()
authors_graph = graphs["authors: two-sample + fallback"]
base = baselines.BaselineConfig(ig_steps=cfg.ig_steps, shap_samples=cfg.shap_samples, rise_masks=cfg.rise_masks, seed=cfg.seed)
methods = {"Causal": protocols.AuthorsCausalExplainer(raw, {k: authors_graph}, cfg.layer, cfg.parent_layer),
           **{m: baselines.explainer(m, raw, base) for m in protocols.AUTHORS_METHODS[1:]},
           "RISE (fixed masks)": baselines.explainer("RISE", raw, dataclasses.replace(base, rise_per_call=False)),
           "RISE (masks per call)": baselines.explainer("RISE", raw, base)}
bar = progress(total=len(protocols.AUTHORS_METHODS) + 1 + 2 * len(methods), desc="scores", unit="metric")
scores = pd.DataFrame(protocols.score_methods(methods, raw, x01, y, cfg, bar=bar)); bar.close()
scores.to_csv(out / "scores.csv", index=False)

# %%
run = {"stage": stage, "class_index": k, "class_name": halves.data.classes[k],
       "examples": {"discovery": len(idx), "evaluation": len(y)},
       "discovery_examples": idx.tolist(), "evaluation_examples": ie.tolist(), "graphs": files,
       "parents_per_layer": {name: {lg.layer: lg.n_parents for lg in g.layers} for name, g in graphs.items()}}
(out / "run.json").write_text(json.dumps(run, indent=2))
print(json.dumps({k_: run[k_] for k_ in ("examples", "graphs")}, indent=1))
