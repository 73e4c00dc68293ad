"""Benchmark of graph discovery: the batched engine against the naive reference and Captum.

    python benchmarks/discovery.py [--out reports/benchmarks] [--examples 100] [--class-index 3]

Run by `dvc repro benchmark_discovery`. Under `make smoke` (CAUSAL_PROFILE=smoke, CAUSAL_ROOT=DIR) it reads the
models from DIR/models, writes under DIR and uses 4 examples, so that every stage of dvc.yaml is exercised.

Measured in one run, on the trained models of the pipeline (models/train_lenet.pt, models/finetune_cifar10.pt):
1. one class graph of LeNet: engine vs the naive reference (one deep-copied model per intervention, one
   example per forward pass, the authors' approach) over the same layers and targets, effects compared;
2. one class graph of ResNet18: engine wall time; naive reference timed on 2 parents per layer and
   extrapolated to all parents (stated as such: running it in full would take hours);
3. the all-channels ablation of one layer (every input channel of LeNet fc3 / ResNet18 layer4.1.conv2
   removed in turn) with Captum's LayerFeatureAblation, one perturbation per forward and batched, against
   the engine doing the same ablation (targets = all outputs), results compared;
4. scaling: engine time against the number of examples, and per-layer time against the layer's parents.
Writes discovery.json and discovery.png to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from causal_interp import config, data, discovery, models, plotting  # noqa: E402
from causal_interp.reporting import PROFILE_ENV, ROOT_ENV, write_summary  # noqa: E402
from causal_interp.interventions import Intervention, TracedModel, naive_effects, treatment_effects  # noqa: E402


class Counting(torch.nn.Module):
    """Counts forward calls and samples of a wrapped model (for Captum)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls, self.samples = model, 0, 0

    def forward(self, x):
        self.calls += 1
        self.samples += len(x)
        return self.model(x)


MODELS = REPO / "models"


def examples_of(stage, k, n, root):
    info = models.model_info(MODELS / f"{stage}.pt")
    model = models.load_model(MODELS / f"{stage}.pt")
    h = data.load_halves(info, config.DataConfig(root=root))     # the pipeline's default split
    x, y = h.x[h.discovery], h.y[h.discovery]
    return model, x[discovery.class_examples(model, x, y, k, n)]


def engine_graph(model, x, k, test):
    t0 = time.perf_counter()
    g = discovery.discover_class_graph(model, x, k, test=test)
    seconds = time.perf_counter() - t0
    samples = sum(lg.n_parents * len(x) for lg in g.layers if lg.targets) + len(x)
    return g, seconds, samples


def naive_graph(model, x, k, g, parents_per_layer=None):
    """The naive reference over the layers/targets of graph g; with parents_per_layer, timed on that many
    parents per layer and extrapolated. Returns (seconds, forward calls, max |difference| to the engine)."""
    traced = TracedModel(model)
    traced.cache(x)
    total, calls, diff = 0.0, 0, 0.0
    for lg in g.layers:
        if not lg.targets:
            continue
        parents = list(range(lg.n_parents))[:parents_per_layer] if parents_per_layer else None
        t0 = time.perf_counter()
        slow = naive_effects(model, lg.layer, k, x, lg.targets, Intervention(), lg.n_parents, parents)
        dt = time.perf_counter() - t0
        scale = lg.n_parents / len(parents) if parents else 1.0
        total += dt * scale
        calls += len(x) + lg.n_parents * len(x)  # naive_effects: N base forwards + one per (parent, example)
        fast = treatment_effects(traced, lg.layer, k, lg.targets, Intervention(), parents=parents)
        diff = max(diff, float((fast - slow).abs().max()))
    return total, calls, diff


def captum_ablation(model, x, k, layer, per_eval):
    from captum.attr import LayerFeatureAblation

    counting = Counting(model)
    module = dict(model.named_modules())[layer]
    abl = LayerFeatureAblation(counting, module)
    with torch.no_grad():
        shape = None

        def grab(m, i):
            nonlocal shape
            shape = i[0].shape

        h = module.register_forward_pre_hook(grab)
        model(x[:1])
        h.remove()
    mask = torch.arange(shape[1]).view(1, shape[1], *([1] * (len(shape) - 2)))
    t0 = time.perf_counter()
    with torch.no_grad():
        attr = abl.attribute(x, target=k, layer_baselines=0.0, attribute_to_layer_input=True, layer_mask=mask,
                             perturbations_per_eval=per_eval)
    seconds = time.perf_counter() - t0
    # captum's attribution of a group = output(original) - output(ablated), the same on every element of the group
    per_channel = attr.reshape(len(x), shape[1], -1)[:, :, 0].T
    return seconds, counting.calls, -per_channel


def engine_ablation(model, x, k, layer):
    traced = TracedModel(model)
    t0 = time.perf_counter()
    traced.cache(x)
    module = traced.modules[layer]
    outs = module.out_channels if isinstance(module, torch.nn.Conv2d) else module.out_features
    te = treatment_effects(traced, layer, k, range(outs), Intervention())
    return time.perf_counter() - t0, te


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/benchmarks", help="relative paths are under CAUSAL_ROOT or the repository")
    p.add_argument("--root", default=str(REPO / "data"))
    p.add_argument("--examples", type=int, default=100)
    p.add_argument("--class-index", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--test", default="paired", help="significance test of the graphs (the pipeline's default: paired)")
    args = p.parse_args(argv)
    global MODELS
    base = Path(os.environ.get(ROOT_ENV) or REPO)
    MODELS = base / "models"
    smoke = os.environ.get(PROFILE_ENV, "default") == "smoke"
    if smoke:
        args.examples = 4
    torch.set_num_threads(args.threads or torch.get_num_threads())
    out = base / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    k, n = args.class_index, args.examples
    res = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "torch": torch.__version__, "threads": torch.get_num_threads()},
           "class_index": k, "examples": n, "test": args.test}

    # 1. LeNet: engine vs naive, full graph
    lenet, xl = examples_of("train_lenet", k, n, args.root)
    g, t_engine, s_engine = engine_graph(lenet, xl, k, args.test)
    t_naive, calls_naive, diff = naive_graph(lenet, xl, k, g)
    res["lenet_graph"] = {"engine_seconds": t_engine, "engine_samples_evaluated": s_engine,
                          "naive_seconds": t_naive, "naive_forward_calls": calls_naive,
                          "speedup": t_naive / t_engine, "max_abs_difference": diff,
                          "per_layer_seconds": {lg.layer: lg.seconds for lg in g.layers}}
    print("lenet", res["lenet_graph"])

    # 2. ResNet18: engine full graph, naive extrapolated from 2 parents per layer
    resnet, xr = examples_of("finetune_cifar10", k, n, args.root)
    g, t_engine, s_engine = engine_graph(resnet, xr, k, args.test)
    t_naive, calls_naive, diff = naive_graph(resnet, xr, k, g, parents_per_layer=2)
    res["resnet18_graph"] = {"engine_seconds": t_engine, "engine_samples_evaluated": s_engine,
                             "naive_seconds_extrapolated": t_naive, "naive_forward_calls_extrapolated": calls_naive,
                             "speedup_vs_extrapolated_naive": t_naive / t_engine, "max_abs_difference_on_timed_parents": diff,
                             "necessary_per_layer": {lg.layer: len(lg.necessary) for lg in g.layers},
                             "per_layer": [{"layer": lg.layer, "parents": lg.n_parents, "targets": len(lg.targets),
                                            "seconds": lg.seconds} for lg in g.layers],
                             "under_10_minutes": t_engine < 600}
    print("resnet18", {k_: v for k_, v in res["resnet18_graph"].items() if k_ != "per_layer"})

    # 3. all-channels ablation of one layer: Captum vs engine
    res["layer_ablation"] = []
    for name, model, x, layer in [("lenet", lenet, xl, "fc3"), ("resnet18", resnet, xr, "layer4.1.conv2")]:
        t_eng, te = engine_ablation(model, x, k, layer)
        row = {"model": name, "layer": layer, "parents": te.shape[0], "engine_seconds": t_eng}
        for per_eval in (1, 32):
            t_cap, calls, te_cap = captum_ablation(model, x, k, layer, per_eval)
            row[f"captum_ppe{per_eval}_seconds"] = t_cap
            row[f"captum_ppe{per_eval}_forward_calls"] = calls
            row[f"speedup_vs_captum_ppe{per_eval}"] = t_cap / t_eng
            row["max_abs_difference_to_captum"] = float((te - te_cap).abs().max())
        res["layer_ablation"].append(row)
        print("ablation", row)

    # 4. scaling with the number of examples (engine, full LeNet graph and one ResNet layer)
    res["scaling_examples"] = []
    for m in (2, 4) if smoke else (25, 50, 100, 200):
        _, xm = examples_of("train_lenet", k, m, args.root)
        _, t_l, _ = engine_graph(lenet, xm, k, args.test)
        _, xr_m = examples_of("finetune_cifar10", k, m, args.root)
        t_r, _ = engine_ablation(resnet, xr_m, k, "layer3.1.conv1")
        res["scaling_examples"].append({"examples": len(xm), "lenet_graph_seconds": t_l,
                                        "resnet18_layer3.1.conv1_seconds": t_r, "resnet_examples": len(xr_m)})
        print("scaling", res["scaling_examples"][-1])

    (out / "discovery.json").write_text(json.dumps(res, indent=2))
    write_summary(out, {
        "lenet-graph-speedup": {"what": f"LeNet class graph: naive reference / engine time "
                                        f"({res['lenet_graph']['engine_seconds']:.3f} s)",
                                "ours": res["lenet_graph"]["speedup"]},
        "resnet18-graph-speedup": {"what": f"ResNet18 class graph: extrapolated naive / engine time "
                                           f"({res['resnet18_graph']['engine_seconds']:.0f} s)",
                                   "ours": res["resnet18_graph"]["speedup_vs_extrapolated_naive"]},
        "max-difference": {"what": "largest |effect difference| to the naive reference and Captum",
                           "ours": max([res["lenet_graph"]["max_abs_difference"],
                                        res["resnet18_graph"]["max_abs_difference_on_timed_parents"]]
                                       + [r["max_abs_difference_to_captum"] for r in res["layer_ablation"]])}})
    fig = scaling_figure(res)
    plotting.save(fig, out / "discovery.png")
    return res


def scaling_figure(res):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ax = axes[0]
    labels = ["LeNet graph", "ResNet18 graph"]
    engine = [res["lenet_graph"]["engine_seconds"], res["resnet18_graph"]["engine_seconds"]]
    naive = [res["lenet_graph"]["naive_seconds"], res["resnet18_graph"]["naive_seconds_extrapolated"]]
    xs = np.arange(2)
    ax.bar(xs - 0.2, engine, 0.4, label="engine")
    ax.bar(xs + 0.2, naive, 0.4, label="naive reference (ResNet: extrapolated)")
    ax.set_xticks(xs, labels)
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log)")
    ax.set_title("one class graph")
    ax.legend(fontsize=7)
    ax = axes[1]
    s = res["scaling_examples"]
    ax.plot([r["examples"] for r in s], [r["lenet_graph_seconds"] for r in s], "o-", label="LeNet full graph")
    ax.plot([r["resnet_examples"] for r in s], [r["resnet18_layer3.1.conv1_seconds"] for r in s], "s-",
            label="ResNet18 layer3.1.conv1, all targets")
    ax.set_xlabel("examples")
    ax.set_ylabel("seconds")
    ax.set_title("time vs examples")
    ax.legend(fontsize=7)
    ax = axes[2]
    pl = res["resnet18_graph"]["per_layer"]
    ax.scatter([r["parents"] for r in pl], [r["seconds"] for r in pl])
    for r in pl:
        ax.annotate(r["layer"].replace("layer", "L"), (r["parents"], r["seconds"]), fontsize=6)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("parents (channels) of the layer")
    ax.set_ylabel("seconds")
    ax.set_title("ResNet18: per-layer time vs channels")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
