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
# # Compute: soft-intervention sweeps (`compute_reliability`)
# Re-discovers the hard graphs of `results/graphs/` under soft interventions and writes every run's necessary nodes,
# with the hard graph it is compared with, to `results/reliability/<model>/`; `notebooks/reliability.py` draws them.

# %% tags=["parameters"]
stage = "reliability"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto", "reliability": {"models": {"train_lenet": {"runs": 20, "classes": [3]}}}}
out_dir = "results/reliability"
results_dir = "results"
models_dir = "models"
checkpoint_dir = ".cache/checkpoints"

# %%
import dataclasses, hashlib, json, shutil, time
from pathlib import Path

import torch

from causal_interp import config, data, discovery, models, reliability, training
from causal_interp.discovery import ClassGraph

cfg = config.from_dict(reliability.ReliabilityConfig, params[stage], stage)
data_cfg = config.data_config(params)
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
graphs_dir = Path(results_dir) / cfg.graphs_dir
training.set_threads(cfg.threads)
device = models.resolve_device(params.get("device", "auto"))     # auto: the GPU when there is one
models.deterministic(device)
sweeps, graph_files = {}, {}
for m, values in cfg.models.items():
    sweeps[m] = reliability.sweep_config(values, f"{stage}.models.{m}")
    model = models.load_model(Path(models_dir) / f"{m}.pt")                   # missing model stops here
    graph_files[m] = discovery.graph_files(graphs_dir / m / cfg.graph_test, sweeps[m].classes)  # missing graphs stop here
    chain = discovery.layer_chain(model)
    if sweeps[m].layers is not None:
        discovery.layer_chain(model, sweeps[m].layers)                       # unknown layer names stop here
        if chain[-len(sweeps[m].layers):] != list(sweeps[m].layers):
            raise ValueError(f"{stage}.models.{m}.layers must be the top of the layer chain, i.e. end with "
                             f"{chain[-3:]}; got {sweeps[m].layers}")
print(cfg)

# %%
# each run is appended to .cache/reliability/ as it finishes, so an interrupted stage resumes where it stopped
b_values = {m: reliability.b_schedule(s.runs, cfg.b_min, cfg.b_max, cfg.runs_per_b) for m, s in sweeps.items()}
run = {"settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("threads", "workers")},
       "torch_threads": torch.get_num_threads(), "models": {}}
for m, sweep in sweeps.items():
    info = models.model_info(Path(models_dir) / f"{m}.pt")
    model = models.load_model(Path(models_dir) / f"{m}.pt").to(device)
    halves = data.load_halves(info, data_cfg)
    x = halves.x[halves.discovery]
    classes = {}
    t0 = time.perf_counter()
    for c, path in graph_files[m].items():
        hard = ClassGraph.load(path)
        key = hashlib.sha256(json.dumps([hashlib.md5(path.read_bytes()).hexdigest(),
                                         hashlib.md5((Path(models_dir) / f"{m}.pt").read_bytes()).hexdigest(),
                                         b_values[m].tolist(), cfg.eps, cfg.seed, sweep.layers]).encode()).hexdigest()[:12]
        t1 = time.perf_counter()
        records = reliability.soft_sweep(model, x[hard.examples], hard, b_values[m], cfg.eps, cfg.seed, sweep.layers,
                                         cfg.max_batch, Path(checkpoint_dir).parent / "reliability" / m / f"class_{c}-{key}.jsonl",
                                         desc=f"{m} soft runs", workers=cfg.workers)
        (out / m).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / m / f"class_{c}.graph.json")          # the hard graph the runs are compared with
        (out / m / f"class_{c}.runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        classes[str(c)] = {"runs": len(records), "seconds_this_run": time.perf_counter() - t1}
        print(f"{m} class {c}: {len(records)} runs, {time.perf_counter() - t1:.0f} s")
    run["models"][m] = {"classes": classes, "seconds": time.perf_counter() - t0, "b_values": b_values[m].tolist()}
(out / "sweeps.json").write_text(json.dumps(run, indent=2))
