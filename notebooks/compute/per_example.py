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
# # Compute: the earlier paper's per-example explanations (`compute_per_example`)
# Writes into `results/per_example/`: the per-example graphs (`graphs/class_<k>.json`), the causal scores of one example
# of each of the first two classes (`causal_scores.csv`), the G+ frequencies (`frequencies.csv`), the causal filters'
# responses (`filter_responses.json`), the corrections of wrong predictions (`corrections.json`) and the run's facts
# (`run.json`); `notebooks/per_example.py` draws and judges them.

# %% tags=["parameters"]
stage = "per_example"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto", "per_example": {"examples": 4, "random_draws": 2}}
out_dir = "results/per_example"
models_dir = "models"

# %%
import dataclasses, json, time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from causal_interp import config, data, discovery, models, per_example, training
from causal_interp.interventions import TracedModel
from causal_interp.progress import progress

cfg = config.from_dict(per_example.PerExampleConfig, params[stage], stage)
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
(out / "graphs").mkdir(exist_ok=True)
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
path = Path(models_dir) / f"{cfg.model}.pt"
info = models.model_info(path)                      # a missing model stops here
model = models.load_model(path).to(device).eval()   # the examples stay on the CPU; each step moves them
halves = data.load_halves(info, data_cfg)
x, y = halves.x, halves.y                            # the whole test set, as the earlier paper (no class graph is used)
names = halves.data.classes
discovery.check_classes(cfg.classes, len(names))     # a class out of range stops here
chain = discovery.layer_chain(model, cfg.layers)     # an unknown layer stops here
traced = TracedModel(model)
with torch.no_grad():
    pred = torch.cat([model(x[i:i + 1024].to(device)).argmax(1).cpu() for i in range(0, len(x), 1024)])
test_accuracy = float((pred == y).float().mean())
print(cfg, device)

# %%
t0 = time.perf_counter()
graphs = {}
bar = progress(total=len(cfg.classes) * cfg.examples, desc="per-example graphs", unit="graph")
for k in cfg.classes:
    ids = per_example.class_examples(y, pred, k, cfg.examples, cfg.correct_only)
    if not ids:
        raise ValueError(f"{stage}: no test example of class {k}" + (" is classified correctly" if cfg.correct_only else ""))
    graphs[k] = []
    for i in ids:
        graphs[k].append(per_example.example_graph(model, x[i:i + 1], k, i, cfg.layers, cfg.effect, traced,
                                                   cfg.max_batch, cfg.model, names[k]))
        bar.update(1)
    (out / "graphs" / f"class_{k}.json").write_text(json.dumps([g.to_dict() for g in graphs[k]], allow_nan=True))
bar.close()
graph_seconds = time.perf_counter() - t0

# %%
rows, agreement = [], []
for k in cfg.classes[:2]:
    g = graphs[k][0]
    i = g.examples[0]
    traced.cache(x[i:i + 1], where=f"class {k}")
    for lg in g.layers:
        if not lg.targets or lg.n_parents < 2:     # a single parent (the input of a grey image) cannot stand out
            continue
        kl = per_example.class_scores(traced, lg.layer, k, lg.targets, "kl", cfg.max_batch)[:, 0].numpy()
        logit = per_example.class_scores(traced, lg.layer, k, lg.targets, "logit", cfg.max_batch)[:, 0].numpy()
        label = np.full(lg.n_parents, "no effect", dtype=object)
        label[lg.necessary], label[lg.distracting] = "G+", "G-"
        rows += [{"class": f"{names[k]} (test {i})", "layer": lg.layer, "parent": j, "causal score": kl[j], "set": label[j]}
                 for j in range(lg.n_parents)]
        agreement.append({"class": names[k], "layer": lg.layer, "parents": lg.n_parents,
                          "spearman(kl, logit)": per_example.score_agreement(kl, logit)})
pd.DataFrame(rows, columns=["class", "layer", "parent", "causal score", "set"]).to_csv(out / "causal_scores.csv", index=False)

# %%
freq = {k: per_example.frequencies(graphs[k]) for k in cfg.classes}
pd.DataFrame([{"class": names[k], "layer": layer, "parent": j, "frequency": f}
              for k in cfg.classes for layer, v in freq[k].items() for j, f in enumerate(v)]
             ).to_csv(out / "frequencies.csv", index=False)
filters = {k: per_example.causal_filters(freq[k], chain, cfg.frequent) for k in cfg.classes}
convs = [l for l in chain[:-1] if isinstance(traced.modules[l], torch.nn.Conv2d)]
panels = []
for k in cfg.classes[:2]:
    i = graphs[k][0].examples[0]
    traced.cache(x[i:i + 1], where=f"class {k}")
    for l in convs:
        z = traced.env[traced.node(l)][0]
        panels += [{"title": f"{names[k]} (test {i}): {l} filter {c}", "response": z[c].cpu().tolist()} for c in filters[k][l]]
(out / "filter_responses.json").write_text(json.dumps(panels))

# %%
pairs = per_example.confusion_pairs(y, pred, cfg.pairs)
errors = {}                                          # every (true, predicted) confusion of the test set: its count
for t, p in zip(y[y != pred].tolist(), pred[y != pred].tolist()):
    errors[f"{t} -> {p}"] = errors.get(f"{t} -> {p}", 0) + 1
n_parents = {l: traced.parents(l)[0] for l in chain}
corrections = []
for t, p in pairs:
    ids = torch.nonzero((y == t) & (pred == p)).flatten().tolist()
    for i in progress(ids, desc=f"corrections {t} -> {p}", unit="example"):
        corrections.append({"pair": f"{t} -> {p}", **per_example.correct(model, x[i:i + 1], t, i, n_parents, cfg.effect,
                                                                          cfg.random_draws, cfg.seed, cfg.layers, traced)})
(out / "corrections.json").write_text(json.dumps(corrections, indent=1, default=float))
(out / "run.json").write_text(json.dumps({
    "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "threads"}, "model_name": info.get("name"),
    "test_accuracy": test_accuracy, "classes": names, "chain": chain, "convs": convs, "graph_seconds": graph_seconds,
    "pairs": [list(pp) for pp in pairs], "test_errors": dict(sorted(errors.items(), key=lambda e: -e[1])),
    "causal_filters": {str(k): filters[k] for k in cfg.classes},
    "score_agreement": agreement}, indent=2, default=float))
print(f"{sum(len(v) for v in graphs.values())} per-example graphs in {graph_seconds:.0f} s, {len(corrections)} corrections")
