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
# # Compute: discover the class graphs (`compute_discover_graphs`, `compute_arch_graphs`)
# Writes the graphs (`results/<graphs_dir>/<model>/<test>/class_<k>.json`), the run's timings and the figure class's
# treatment effects (`results/<stage>/`); `notebooks/discover_graphs.py` draws them.

# %% tags=["parameters"]
stage = "discover_graphs"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto", "discover_graphs": {"models": ["train_lenet"], "classes": [3], "examples_per_class": 20}}
out_dir = "results/discover_graphs"
models_dir = "models"
checkpoint_dir = ".cache/checkpoints"

# %%
import dataclasses, hashlib, json
from pathlib import Path

import numpy as np
import torch

from causal_interp import config, data, discovery, interventions, models, training

cfg = config.from_dict(discovery.DiscoveryConfig, params[stage], stage)
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
graphs_dir = out.parent / cfg.graphs_dir
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
model_paths = {m: Path(models_dir) / f"{m}.pt" for m in cfg.models}
infos = {m: models.model_info(p) for m, p in model_paths.items()}   # missing model file stops here
for m, info in infos.items():
    discovery.check_classes(cfg.classes, info["num_classes"])        # class index out of range stops here
    discovery.check_classes([cfg.figure_class], info["num_classes"])
    data.check_present(data_cfg, info["dataset"])
    discovery.layer_chain(models.load_model(model_paths[m]), cfg.layers.get(m))  # unknown layer names stop here
print(cfg)


# %%
def file_md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()

run = {"torch_threads": torch.get_num_threads(), "graphs_dir": cfg.graphs_dir, "models": {}}
for m in cfg.models:
    info = infos[m]
    model = models.load_model(model_paths[m]).to(device)
    halves = data.load_halves(info, data_cfg)
    ds, x, y = halves.data, halves.x[halves.discovery], halves.y[halves.discovery]
    classes = discovery.check_classes(cfg.classes, info["num_classes"])
    run["models"][m] = {"name": info["name"], "dataset": info["dataset"], "model_md5": file_md5(model_paths[m]),
                        "this_run_seconds_per_class": {}}
    graphs = {}
    for test in [cfg.test] + ([cfg.compare_test] if cfg.compare_test and cfg.compare_test != cfg.test else []):
        settings = dict(dataclasses.asdict(cfg), test=test, model_md5=run["models"][m]["model_md5"],
                        split=[data_cfg.discovery_fraction, data_cfg.split_seed])
        for k in ("classes", "models", "compare_test", "figure_class", "threads", "max_batch", "graphs_dir", "workers"):
            settings.pop(k)
        for k, default in (("min_effect", 0.0), ("fallback", False)):    # keys of graphs found before these existed
            if settings[k] == default:
                settings.pop(k)
        if cfg.effects == "exact":                                       # first-order settings do not apply
            for k in ("effects", "ig_steps", "screen_margin", "screen_sample"):
                settings.pop(k)
        key = f"{m}-{hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]}"
        print(f"== {m} ({info['name']} on {info['dataset']}), test = {test}")
        graphs[test] = discovery.discover_all(
            model, x, y, classes, ds.classes, cfg.examples_per_class, cfg.intervention_obj(), test, cfg.alpha,
            cfg.layers.get(m), cache_dir=Path(checkpoint_dir).parent / "graphs", key=key,
            max_batch=cfg.max_batch, correct_only=cfg.correct_only, desc=f"{m} graphs ({test} test)",
            min_effect=cfg.min_effect if test == "paired" else 0.0, fallback=cfg.fallback, workers=cfg.workers,
            effects=cfg.effects, ig_steps=cfg.ig_steps, screen_margin=cfg.screen_margin, screen_sample=cfg.screen_sample)
        for k, (g, seconds) in graphs[test].items():
            g.model = f"{info['name']} ({m})"
            g.save(graphs_dir / m / test / f"class_{k}.json")
        run["models"][m]["this_run_seconds_per_class"][test] = {str(k): s for k, (_, s) in graphs[test].items()}

    # figure 3's data: each node's effect over the discovery examples of the figure class, per layer (first 6 layers)
    g = graphs[cfg.test][cfg.figure_class][0]
    idx = discovery.class_examples(model, x, y, cfg.figure_class, cfg.examples_per_class, correct_only=cfg.correct_only)
    traced = interventions.TracedModel(model); traced.cache(x[idx])
    effects = {lg.layer: interventions.treatment_effects(traced, lg.layer, cfg.figure_class, lg.targets,
                                                         cfg.intervention_obj(), max_batch=cfg.max_batch).numpy()
               for lg in g.layers[:6] if lg.targets}
    np.savez(out / f"fig3_effects_{m}.npz", **{f"layer_{i}": e for i, e in enumerate(effects.values())})
    run["models"][m]["fig3_effects"] = {"file": f"fig3_effects_{m}.npz", "class": cfg.figure_class,
                                        "test": cfg.test, "layers": list(effects)}
(out / "discovery.json").write_text(json.dumps(run, indent=2))
print(json.dumps({m: v["this_run_seconds_per_class"] for m, v in run["models"].items()}, indent=1))
