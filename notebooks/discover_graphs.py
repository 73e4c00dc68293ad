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
# # Discovering the causal graphs (Algorithm 1, figures 3-6)
#
# For every class *k* of each trained model, Algorithm 1 walks the layer chain from the classifier down. At each layer,
# every parent node *j* has all its edges to the current targets removed at once (a hard path intervention, eq. 2).
# Its treatment effect on the logit of *k* is measured over correctly classified examples of *k* from the
# **discovery half** of the test set and tested for significance (eq. 1). Necessary parents become the next layer's targets.
#
# The engine (`causal_interp.interventions`, `causal_interp.discovery`) is exact: the test suite holds it to 1e-4 against a naive
# reference that uses one deep-copied model per intervention and one example per forward pass. It is fast because it caches
# every activation once, computes the changed output of the intervened layer for all parents in one grouped convolution
# (the layer is linear in its weights), and runs only the downstream part of the network on a parents × examples batch.
#
# The graphs were discovered by the compute stage `compute_<stage>` (`compute_discover_graphs` / `compute_arch_graphs`,
# `notebooks/compute/discover_graphs.py`), which wrote them to `results/<graphs_dir>/` and its timings and figure-3
# effects to `results/<stage>/`; this notebook only reads and draws them, so editing it re-runs no compute (figures 5
# and 6 recompute the responses of a handful of examples through the model, seconds).

# %% tags=["parameters"]
# parameters (papermill replaces these with params.yaml's discover_graphs section)
stage = "discover_graphs"
params = {"seed": 0, "data": {"root": "data"}, "discover_graphs": {"models": ["train_lenet"], "classes": [3], "examples_per_class": 20}}
out_dir = "reports/discover_graphs"
results_dir = "results"
models_dir = "models"


# %%
import dataclasses, json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from skimage.feature import peak_local_max

from causal_interp import config, data, discovery, explanations, interventions, models, plotting, reporting

cfg = config.from_dict(discovery.DiscoveryConfig, params[stage], stage)
data_cfg = config.data_config(params)
# whole tables: a report hides no row, column or text behind "..."
pd.set_option("display.max_rows", None, "display.max_columns", None, "display.max_colwidth", None)
out, figs = reporting.output_dirs(out_dir)
computed = Path(results_dir) / stage
run = json.loads((computed / "discovery.json").read_text())      # written by compute_<stage>
graphs_dir = Path(results_dir) / run["graphs_dir"]
model_paths = {m: Path(models_dir) / f"{m}.pt" for m in cfg.models}
missing = [m for m in cfg.models if m not in run["models"]]
if missing:
    raise FileNotFoundError(f"{computed / 'discovery.json'} has no graphs of {missing}; run compute_{stage} first")
print(cfg)


# %% [markdown]
# ## Discovery
# The graphs were cached per class under `.cache/graphs/` (keyed by the model's hash and the settings) by the compute
# stage, so an interrupted discovery resumed where it stopped. Here they are read back from `results/`.

# %%
results, examples = {}, {}
for m in cfg.models:
    info = models.model_info(model_paths[m])
    results[m] = {}
    for test, seconds in run["models"][m]["this_run_seconds_per_class"].items():
        files = discovery.graph_files(graphs_dir / m / test, [int(c) for c in seconds])
        results[m][test] = {k: (discovery.ClassGraph.load(p), seconds[str(k)]) for k, p in files.items()}
        print(f"{m} ({info['name']} on {info['dataset']}), {test} test: {len(files)} class graphs")
    model = models.load_model(model_paths[m])
    halves = data.load_halves(info, data_cfg)
    examples[m] = (model, halves.data, halves.x[halves.discovery], halves.y[halves.discovery])

# %% [markdown]
# ## Graph sizes per layer and class
# Columns are the layers whose *parents* are tested, from the classifier down. A layer with no necessary node ends the walk: every layer below it is empty.

# %%
rows = []
for m in results:
    for test, graphs in results[m].items():
        for r in discovery.sizes_table(graphs):
            rows.append({"model": m, "test": test, **r})
sizes = pd.DataFrame(rows)
sizes.to_csv(out / "graph_sizes.csv", index=False)
for m in results:
    for test in results[m]:
        t = sizes[(sizes.model == m) & (sizes.test == test)]
        table = t.pivot_table(index="class_name", columns="layer", values="necessary", sort=False)
        display(Markdown(f"**{m}: necessary nodes per layer, {test} test** (parents per layer: "
                         f"{dict(zip(t.layer.unique(), t.groupby('layer', sort=False).parents.first()))})"))
        display(table)

# %% [markdown]
# ## Figure 3: distribution of the treatment effects
# For the figure class, each node's effect over the discovery examples, per layer: the change in the class logit when the node's edges to the layer's targets are removed (eq. 2). Red: necessary, blue: distracting, grey: irrelevant. A layer with more than 40 parents shows, of each label, the nodes of largest |mean effect| (the counts of every label are in the panel title).

# %%
k = cfg.figure_class   # validated: one of cfg.classes, and a class of every model
for m in results:
    model, ds, x, y = examples[m]
    g = results[m][cfg.test][k][0]
    saved = run["models"][m]["fig3_effects"]                        # the effects measured by compute_<stage>
    arrays = np.load(computed / saved["file"])
    effects = {layer: arrays[f"layer_{i}"] for i, layer in enumerate(saved["layers"])}
    fig = plotting.effect_distributions(effects, g, title=f"{m}: effects for class {ds.classes[k]} ({cfg.test} test)")
    plotting.save(fig, figs / f"fig3_effects_{m}.png")

# %% [markdown]
# ## Figures 4-5: the causal graph of the figure class
# Each column holds the outputs of the layer named under it (input side left), i.e. the parents tested for the next layer; necessary nodes are drawn at the top with their ids, and a column of more than 48 nodes shows the necessary ones of largest |mean effect| first, then the largest of each other label (the counts are under the column). Lines join necessary parents to their targets; in a layer with more than 400 such edges a seeded sample of 400 is drawn, and the title says so.

# %%
for m in results:
    for test in results[m]:
        g = results[m][test][k][0]
        fig = plotting.graph_drawing(g, title=f"{m}: causal graph of class {g.class_name} ({test} test)")
        plotting.save(fig, figs / f"fig4_graph_{m}_{test}.png")


# %% [markdown]
# ## Figure 5: causal responses (eq. 3)
# The class graph drawn as the paper draws it: each graph node of the first two conv layers is shown as its causal
# response to one example (eq. 3: the mean over its necessary parents of the parent's activation convolved with the
# connecting filter), the nodes of largest mean |response| per layer, with the edges between them and one colour scale
# for every map. Below, for three examples, the per-layer saliency map (the mean response of the layer's graph nodes,
# resized to the input).

# %%
def conv_layers(g, traced):
    return [lg.layer for lg in reversed(g.layers) if isinstance(traced.modules[lg.layer], torch.nn.Conv2d)]

for m in results:
    model, ds, x, y = examples[m]
    g = results[m][cfg.test][k][0]
    idx = discovery.class_examples(model, x, y, k, 3, correct_only=cfg.correct_only)
    traced = interventions.TracedModel(model); traced.cache(x[idx])
    responses = {layer: explanations.causal_responses(traced, g, layer) for layer in conv_layers(g, traced)[:2]}
    fig = plotting.graph_responses(g, {layer: s.numpy() for layer, s in responses.items()}, example=0, max_nodes=6,
                                   title=f"{m}: the class-{ds.classes[k]} graph, each node drawn as its causal "
                                         f"response to example 0")
    plotting.save(fig, figs / f"fig5_graph_responses_{m}.png")
    maps, titles = [], []
    for layer, s in responses.items():
        if s.shape[1]:
            maps.append(explanations.saliency_map(s, tuple(x.shape[-2:])))
            titles += [f"{layer}, ex. {i}" for i in range(len(idx))]
    if maps:
        fig = plotting.map_overlays(ds.denormalize(x[idx]).repeat(len(maps), 1, 1, 1), torch.cat(maps), titles,
                                    ncols=len(idx), title=f"{m}: causal saliency maps, class {ds.classes[k]}")
        plotting.save(fig, figs / f"fig5_maps_{m}.png")

# %% [markdown]
# ## Figure 6: top-1 filter responses at the last conv layer
# For every model, each graph node of its last conv layer with maps of at least 7x7 (the paper's 224-px ResNet18 has
# 7x7 maps at its last layer) responds to its single strongest necessary parent (largest |mean effect|). Crosses mark
# local maxima of the response, upsampled to the input.

# %%
for m in results:
    model, ds, x, y = examples[m]
    g = results[m][cfg.test][k][0]
    idx = discovery.class_examples(model, x, y, k, 4, correct_only=cfg.correct_only)
    traced = interventions.TracedModel(model); traced.cache(x[idx])
    convs = conv_layers(g, traced)
    map_sizes = {layer: tuple(traced.env[traced.node(layer)].shape[-2:]) for layer in convs}
    fine = [layer for layer in convs if min(map_sizes[layer]) >= 7]
    last = fine[-1] if fine else convs[-1]
    if last != convs[-1]:
        display(Markdown(f"`{m}`: its last conv layer `{convs[-1]}` has {map_sizes[convs[-1]][0]}x{map_sizes[convs[-1]][1]} maps, "
                         f"too coarse to show where a filter responds; figure 6 uses `{last}` "
                         f"({map_sizes[last][0]}x{map_sizes[last][1]}), the last conv layer of the graph with maps of at least 7x7."))
    r = explanations.top_filter_responses(traced, g, last)          # (N, nodes, h, w)
    nodes = min(3, r.shape[1])
    up = torch.nn.functional.interpolate(r[:, :nodes].reshape(-1, 1, *r.shape[2:]), size=tuple(x.shape[-2:]),
                                         mode="bilinear", align_corners=False)[:, 0]
    peaks = [peak_local_max(u.numpy(), min_distance=max(1, x.shape[-1] // 16), num_peaks=3, exclude_border=False)
             for u in up]
    imgs = ds.denormalize(x[idx]).repeat_interleave(nodes, 0)
    titles = [f"ex. {i}, node {g.layer(last).targets[j]}" for i in range(len(idx)) for j in range(nodes)]
    fig = plotting.map_overlays(imgs, up, titles, peaks=peaks, ncols=max(nodes, 1) * 2,
                                title=f"{m}: top-1 filter responses at {last} ({r.shape[2]}x{r.shape[3]} maps), class {ds.classes[k]}")
    plotting.save(fig, figs / f"fig6_top_filter_{m}.png")

# %% [markdown]
# ## Metrics and verdict

# %%
metrics = {"settings": {k_: v for k_, v in dataclasses.asdict(cfg).items() if k_ != "threads"},
           "torch_threads": run["torch_threads"], "models": {}}
lines, headline = [], {}
for m in results:
    per_test = {}
    for test, graphs in results[m].items():
        # discovery time of each graph as measured when it was discovered (its layers' timings, kept in the graph file),
        # so a graph reused from the cache still reports its real cost; this run's wall time beside it
        secs = [sum(lg.seconds for lg in g.layers) for g, _ in graphs.values()]
        t = sizes[(sizes.model == m) & (sizes.test == test)]
        per_layer = t.groupby("layer", sort=False)[["necessary", "distracting", "irrelevant", "parents"]].mean()
        per_test[test] = {
            "seconds_per_class": {str(c): s for c, s in zip(graphs, secs)},
            "max_seconds_per_class": max(secs), "mean_seconds_per_class": float(np.mean(secs)),
            "this_run_seconds_per_class": {str(c): s for c, (_, s) in graphs.items()},
            "n_examples": {str(c): g.n_examples for c, (g, _) in graphs.items()},
            "mean_nodes_per_layer": per_layer.round(2).to_dict(orient="index"),
            "empty_graphs": int(sum(len(g.layers[0].necessary) == 0 for g, _ in graphs.values())),
            "deepest_nonempty_layer": {str(c): next((lg.layer for lg in reversed(g.layers) if lg.necessary), None)
                                        for c, (g, _) in graphs.items()},
        }
        headline[f"{m}-{test}"] = {"what": f"{m}, {test} test: necessary nodes per class graph, all layers (mean)",
                                  "ours": float(per_layer.necessary.sum())}
        lines.append(f"* **{m}, {test} test**: {len(graphs)} class graphs; mean necessary nodes per layer "
                     f"{per_layer.necessary.round(1).to_dict()}; discovery time per class graph: mean {np.mean(secs):.1f} s, "
                     f"slowest {max(secs):.1f} s ({sum(s == 0 for _, s in graphs.values())} graphs reused from the cache in this run).")
    metrics["models"][m] = per_test
(out / "metrics.json").write_text(json.dumps(metrics, indent=2))
reporting.write_summary(out, headline)
display(Markdown("\n".join(lines)))
