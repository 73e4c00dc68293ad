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
# # Compute: explanation maps and their LE / IROF scores (`compute_evaluate_explanations`, `compute_arch_evaluate`)
# Writes `results/<stage>/`: `scores.csv` (every method's per-example scores), `run.json` (examples, map layers,
# methods, timings, failed methods, models) and `maps_<model>.npz` (three examples' maps per method, for the figure);
# `notebooks/evaluate_explanations.py` draws them.

# %% tags=["parameters"]
stage = "evaluate_explanations"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto", "evaluate_explanations": {"models": ["train_lenet"], "classes": [3],
          "examples_per_class": 2, "correct_only": False, "le_samples": 2, "baselines": {"rise_masks": 16}}}
out_dir = "results/evaluate_explanations"
results_dir = "results"
models_dir = "models"
checkpoint_dir = ".cache/checkpoints"

# %%
import dataclasses, hashlib, json, time, warnings
from pathlib import Path

import numpy as np
import pandas as pd

from causal_interp import baselines, config, evaluation, masking, models, training

warnings.filterwarnings("ignore", category=UserWarning)   # captum's hook notices, torchray's non-leaf .grad notice
cfg = config.from_dict(evaluation.EvaluationConfig, params[stage], stage)
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
graphs_root = Path(results_dir) / cfg.graphs_dir
setups, explainers, examples, skipped, notes = {}, {}, {}, {}, []
for m in cfg.models:   # missing model/graphs, classes without a graph, unknown layer: all stop here
    su = masking.load_setup(m, Path(models_dir), graphs_root / m / cfg.graph_test, cfg.classes, data_cfg, device=device)
    layers = [evaluation.map_layer(su.model, next(iter(su.graphs.values())), spec) for spec in cfg.map_layers(m)]
    explainers[m] = {**{evaluation.causal_name(l, i == 0): evaluation.CausalExplainer(su.model, su.graphs, l)
                        for i, l in enumerate(layers)},
                     **{b: baselines.explainer(b, su.model, cfg.baseline_config) for b in cfg.methods if b != "Causal"}}
    usable = sorted(set.intersection(*(set(evaluation.classes_with_maps(su.graphs, l)[0]) for l in layers)))
    empty = sorted(set(su.graphs) - set(usable))
    if empty:
        notes.append(f"{m}: the graphs of classes {empty} have no node at {' or '.join(layers)} (no causal map): "
                     f"their examples are left out")
        print(notes[-1])
    examples[m] = evaluation.pick_examples(su, usable, cfg.per_class(m), cfg.correct_only, cfg.seed)
    if len(examples[m][1]) == 0:
        skipped[m] = (f"no usable evaluation example (classes with a causal map at {' and '.join(layers)}: {usable}"
                      + ("; only correctly classified examples are used" if cfg.correct_only else "") + ")")
        print(f"{m}: SKIPPED, {skipped[m]}")
        continue
    setups[m] = su
    print(f"{m}: causal maps from layer(s) {', '.join(layers)}; {len(examples[m][1])} examples "
          f"({np.bincount(examples[m][1], minlength=len(su.classes)).tolist()} per class)")
if not setups:
    raise ValueError(f"{stage}: no model has causal maps to evaluate: {skipped}")


# %%
def file_md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()

rows, seconds, failed_methods = [], {}, []
t_all = time.perf_counter()
for m, su in setups.items():
    x, y, idx = examples[m]
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("models", "threads", "methods", "bootstrap", "graphs_dir", "workers")}
    key = hashlib.sha256(json.dumps([settings, file_md5(Path(models_dir) / f"{m}.pt"), idx.tolist(),
                                     sorted(file_md5(p) for p in (graphs_root / m / cfg.graph_test).glob("class_*.json"))],
                                    sort_keys=True, default=str).encode()).hexdigest()[:12]
    # one unit per method, in this process or over Ray workers (cfg.workers, RAY_ADDRESS); each method's scores are
    # saved as it finishes, so an interrupted run computes only the missing methods
    found = evaluation.evaluate_methods(explainers[m], cfg, su.model, x, y,
                                        Path(checkpoint_dir).parent / "evaluation" / f"{m}-{key}", workers=cfg.workers,
                                        desc=f"{m} ", may_fail=[k for k in explainers[m] if not k.startswith("Causal")])
    for method, r in found.items():
        if isinstance(r, RuntimeError):   # a baseline library that cannot handle this architecture: reported, not scored
            print(f"{m} {method}: FAILED, left out: {str(r)[:160]}")
            failed_methods.append({"model": m, "method": method, "error": str(r)[:300]})
            continue
        seconds[(m, method)] = r["seconds"]
        for metric in evaluation.METRICS:
            rows += [{"model": m, "method": method, "metric": metric, "example": int(i), "class": int(c), "score": v}
                     for i, c, v in zip(idx, y, r[metric])]
        print(f"{m} {method:28s} {r['seconds']:7.1f} s  median LE {np.nanmedian(r['LE']):.3f}  "
              f"IROF {np.nanmedian(r['IROF']):.1f}")
total_seconds = time.perf_counter() - t_all
scores = pd.DataFrame(rows, columns=["model", "method", "metric", "example", "class", "score"])
scores.to_csv(out / "scores.csv", index=False)
print(f"{len(scores)} scores; this run {total_seconds / 60:.1f} min; compute over all runs {sum(seconds.values()) / 60:.1f} min")

# %%
# three evaluation examples per model, every scored method, as the protocol scores them (|a| / max|a|)
for m, su in setups.items():
    x, y, idx = examples[m]
    pick = np.unique(np.linspace(0, len(y) - 1, 3).round().astype(int))
    shown = [k for k in explainers[m] if not any(f["model"] == m and f["method"] == k for f in failed_methods)]
    maps = np.stack([np.stack([evaluation.abs_max(explainers[m][k](su.model, x[i:i + 1], y[i:i + 1]))[0, 0]
                               for k in shown]) for i in pick])                       # (examples, methods, H, W)
    np.savez_compressed(out / f"maps_{m}.npz", inputs=x[pick], maps=maps, methods=np.array(shown),
                        labels=y[pick], examples=idx[pick])

# %%
run = {"stage": stage, "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("threads", "workers")},
       "baselines": dataclasses.asdict(cfg.baseline_config),
       "compute_seconds": sum(seconds.values()), "run_seconds": total_seconds,
       "seconds_per_method": {f"{m}/{meth}": s for (m, meth), s in seconds.items()},
       "failed_methods": failed_methods, "skipped": skipped, "notes": notes,
       "models": {m: {"examples": int(len(examples[m][1])),
                      "per_class": np.bincount(examples[m][1], minlength=len(su.classes)).tolist(),
                      "classes": list(su.classes),
                      "methods": list(explainers[m]),
                      "layers": {k: e.layer for k, e in explainers[m].items() if k.startswith("Causal")},
                      "info": {k: v for k, v in models.model_info(Path(models_dir) / f"{m}.pt").items()
                               if k in ("name", "dataset", "image_size", "pretrained", "test_accuracy")}}
                  for m, su in setups.items()}}
(out / "run.json").write_text(json.dumps(run, indent=2, default=float))
print(json.dumps({k: run[k] for k in ("compute_seconds", "run_seconds", "failed_methods", "skipped")}, indent=1, default=float))
