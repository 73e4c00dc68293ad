"""How long the kit's heavy steps take on the device at hand (the CPU or a CUDA GPU), kept beside the other device's.

    python benchmarks/device.py [--device auto|cpu|cuda|cuda:N] [--out reports/benchmarks] [--data-root DIR]
                                [--synthetic-data] [--random-model] [--examples 100] [--batches 3]
                                [--fig8-examples 10] [--methods Saliency Causal] [--smoke] [--threads N]

Times, on `--device` (`causal_interp.models.resolve_device`; auto: CUDA when torch sees it, else the CPU), with the
settings of params.yaml (default profile) and the engine's own functions, each on the model placed on the device:
1. one class graph of ResNet18 (timm resnet18, 10 classes, 64 px: `finetune_cifar10`'s model), Algorithm 1 with
   `discover_graphs`' test, alpha and max_batch, on `--examples` discovery-half examples of `--class-index`;
   the trained models/finetune_cifar10.pt when it exists (correctly classified examples, as the pipeline), else a
   randomly initialised ResNet18 (any examples of the class): the output says which;
2. one training epoch of `finetune_cifar10` (fresh model, its batch size, augmentation, optimiser and `bf16: auto` as
   it resolves on the device), projected from `--batches` timed batches after a warm-up batch, as
   benchmarks/training_precision.py does, to the 50,000 CIFAR-10 training images;
3. one fig. 8 method, or a few (`--methods`, default Saliency and the Causal map from the graph of step 1): the maps
   scored with LE and IROF by Quantus (`causal_interp.evaluation.evaluate_method`, `evaluate_explanations`' settings)
   on `--fig8-examples` evaluation-half examples of the class;
4. with `--smoke`, the smoke profile end to end (`python -m causal_interp.pipeline --all --profile smoke`, into a
   temporary root, on the device; about 10 minutes on a 2-core CPU).
CUDA timings synchronise the device before each clock reading, after a warm-up forward pass (context start, cuDNN).
The CUDA run is made deterministic as the pipeline's stages are (`models.deterministic`).

Writes device.json to --out: one entry per device kind ("cpu", "cuda"), each with the device, the machine
(`training.machine()`), the settings it ran with (model, data, sizes) and its timings. The entries of the other kinds
are kept from the device.json already in --out, or else from the committed reports/benchmarks/device.json (so a GPU
run with --out $OUT keeps the CPU figures beside its own); `comparison` gives CPU seconds / CUDA seconds per timing,
and says whether both ran with the same settings. The data root is params.yaml's `data.root` (default data/) unless
--data-root names another (not checked against the published checksums), or --synthetic-data writes CIFAR-10
look-alikes (tests/conftest.make_fake_root) to a temporary folder, for a machine without data/ (the lent GPU machine:
data/ and models/ do not travel there; benchmarks/gpu_check.sh).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# Quantus 0.6.0's IROF calls np.trapz, which numpy 2.4 removed (the kit pins numpy<2.4; a lent GPU machine's image has
# a newer numpy). np.trapezoid is the same function under its new name; with numpy < 2.4 this does nothing.
if not hasattr(np, "trapz"):
    np.trapz = np.trapezoid

from causal_interp import baselines, config, data, discovery, evaluation, models, training  # noqa: E402

TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000}
SECTION = "finetune_cifar10"           # the ResNet18 of the paper's CIFAR-10 experiments
FILE = "device.json"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> float:
    """perf_counter after the device has finished what it was given (CUDA runs asynchronously)."""
    sync(device)
    return time.perf_counter()


def resnet18(cfg: config.TrainConfig, model_file: Path, random_model: bool, device: torch.device):
    """(model on `device` in eval mode, what it is, whether it is trained)."""
    if not random_model and model_file.is_file():
        info = models.model_info(model_file)
        if (info.get("name"), info.get("image_size"), info.get("num_classes")) != (cfg.model, cfg.image_size, 10):
            raise SystemExit(f"{model_file} is a {info.get('name')} at {info.get('image_size')} px with "
                             f"{info.get('num_classes')} classes; this benchmark wants {cfg.model} at {cfg.image_size} "
                             f"px with 10 (params.yaml {SECTION}); use --random-model")
        return models.load_model(model_file).to(device).eval(), f"trained: {model_file}", True
    # timm zero-initialises the last BatchNorm of every residual block (zero_init_last), which a freshly built ResNet
    # trains from but which cuts every block's main branch off: its graph would end below the top layer. Not here.
    torch.manual_seed(cfg.seed)
    model_args = {**(cfg.model_args or {}), "zero_init_last": False}
    model = models.build_model(cfg.model, 10, in_chans=3, model_args=model_args)
    why = "--random-model" if random_model else f"{model_file} not found"
    return model.to(device).eval(), f"random init, zero_init_last off ({why})", False


def class_graph(model, halves, k: int, n: int, trained: bool, dcfg, device: torch.device) -> tuple:
    """Step 1: (graph, row) for one class graph on `n` discovery-half examples of class k."""
    x, y = halves.x[halves.discovery], halves.y[halves.discovery]
    idx = discovery.class_examples(model, x, y, k, n, correct_only=trained and dcfg.correct_only)
    if len(idx) < 2:
        raise SystemExit(f"only {len(idx)} discovery-half example(s) of class {k}"
                         + (" that the model classifies correctly" if trained else "") + "; need 2 or more")
    xs = x[idx]
    with torch.no_grad():                                    # warm-up: CUDA context, cuDNN, allocator
        model(xs[:2].to(device))
    t0 = clock(device)
    g = discovery.discover_class_graph(model, xs, k, dcfg.layers.get(SECTION), intervention=dcfg.intervention_obj(),
                                       test=dcfg.test, alpha=dcfg.alpha, min_effect=dcfg.min_effect,
                                       fallback=dcfg.fallback, max_batch=dcfg.max_batch, model_name=SECTION)
    seconds = clock(device) - t0
    samples = sum(lg.n_parents * len(xs) for lg in g.layers if lg.targets) + len(xs)
    row = {"seconds": seconds, "examples": len(xs), "class_index": k, "test": dcfg.test, "max_batch": dcfg.max_batch,
           "layers": len(g.layers), "layers_with_targets": sum(1 for lg in g.layers if lg.targets),
           "samples_evaluated": samples, "samples_per_second": samples / seconds,
           "necessary_per_layer": {lg.layer: len(lg.necessary) for lg in g.layers},
           "per_layer_seconds": {lg.layer: lg.seconds for lg in g.layers}}
    return g, row


def training_epoch(cfg: config.TrainConfig, data_cfg, batches: int, device: torch.device) -> dict:
    """Step 2: seconds per training batch of a fresh model at `cfg`'s settings on `device`, after one warm-up batch;
    the epoch projected to the full training set (the training loop only: the stage adds its test pass)."""
    n = cfg.batch_size * batches
    ds = data.load_dataset(cfg.dataset, data_cfg, cfg.image_size, train_subset=n, test_subset=cfg.batch_size,
                           seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    model = models.build_model(cfg.model, ds.num_classes, in_chans=ds.x_train.shape[1], model_args=cfg.model_args)
    run = dataclasses.replace(cfg, epochs=1)
    quiet = dict(log=lambda *a: None, device=device)
    training.train(model, dataclasses.replace(ds, x_train=ds.x_train[:cfg.batch_size],
                                              y_train=ds.y_train[:cfg.batch_size]), run, **quiet)
    result = training.train(model, ds, run, **quiet)
    timed = -(-len(ds.y_train) // cfg.batch_size)               # batches in the timed epoch (fewer if data is short)
    per_batch = result["history"][0]["epoch_seconds"] / timed
    size = TRAIN_SIZE.get(cfg.dataset)
    steps = -(-size // cfg.batch_size) if size else None
    return {"section": SECTION, "model": cfg.model, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
            "batches_timed": timed, "images_timed": len(ds.y_train), "bf16_set": cfg.bf16,
            "precision": result["precision"], "seconds_per_batch": per_batch, "steps_per_epoch": steps,
            "epoch_seconds": per_batch * steps if steps else None,
            "epoch_minutes": per_batch * steps / 60 if steps else None}


def causal_layer(model, graph, ecfg) -> tuple[str | None, str]:
    """The map layer of the Causal method: the first of `evaluate_explanations.layers.finetune_cifar10` whose graph
    layer has necessary nodes (an empty one gives an all-zero map, which Quantus refuses), else the last conv layer."""
    wanted = [evaluation.map_layer(model, graph, spec) for spec in ecfg.map_layers(SECTION)]
    chain = [lg.layer for lg in graph.layers]
    for layer in wanted + [evaluation.map_layer(model, graph)]:
        if layer in chain and graph.layer(layer).necessary:
            return layer, "" if layer == wanted[0] else f"{wanted[0]} has no necessary node in this graph"
    return None, f"no necessary node at {', '.join(dict.fromkeys(wanted + [evaluation.map_layer(model, graph)]))}"


def fig8_methods(model, halves, graph, k: int, n: int, trained: bool, methods: list[str], ecfg,
                 device: torch.device) -> dict:
    """Step 3: each method's maps scored with LE and IROF (the fair protocol of `evaluation.score`) on `n`
    evaluation-half examples of class k: {method: {seconds, examples, LE_median, IROF_median} or {skipped}}."""
    xe, ye = halves.x[halves.evaluation], halves.y[halves.evaluation]
    idx = discovery.class_examples(model, xe, ye, k, n, correct_only=trained and ecfg.correct_only)
    x, y = xe[idx].numpy(), ye[idx].numpy()
    if len(x) == 0:
        return {m: {"skipped": f"no evaluation-half example of class {k}"} for m in methods}
    out = {}
    for method in methods:
        if method == "Causal":
            layer, note = causal_layer(model, graph, ecfg)
            if layer is None:
                out[method] = {"skipped": note}
                continue
            explain = evaluation.CausalExplainer(model, {k: graph}, layer)
        else:
            explain, layer, note = baselines.explainer(method, model, ecfg.baseline_config), None, ""
        t0 = clock(device)
        r = evaluation.evaluate_method(method, explain, ecfg, model, x, y)
        seconds = clock(device) - t0
        out[method] = {"seconds": seconds, "examples": len(x), "seconds_per_example": seconds / max(len(x), 1),
                       "LE_median": float(np.nanmedian(r["LE"])), "IROF_median": float(np.nanmedian(r["IROF"])),
                       **({"layer": layer} if layer else {}), **({"note": note} if note else {})}
    return out


def smoke_run(device: torch.device, data_root: str | None) -> dict:
    """Step 4: the smoke profile end to end into a temporary root, on `device`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory(prefix="device-smoke-") as root:
        cmd = [sys.executable, "-m", "causal_interp.pipeline", "--all", "--profile", "smoke", "--root", root,
               "--device", str(device), "--quiet"] + (["--data-root", data_root] if data_root else [])
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    row = {"seconds": seconds, "minutes": seconds / 60, "returncode": p.returncode,
           "command": f"python -m causal_interp.pipeline --all --profile smoke --root TMP --device {device}"}
    if p.returncode:
        row["error_tail"] = (p.stdout + p.stderr)[-2000:]
    return row


def previous_entries(out: Path, previous: str | None) -> dict:
    """The entries already measured: --previous, else out/device.json, else the committed one."""
    for path in ([Path(previous)] if previous else [out / FILE, REPO / "reports" / "benchmarks" / FILE]):
        if path.is_file():
            try:
                return dict(json.loads(path.read_text()).get("devices", {}))
            except (json.JSONDecodeError, AttributeError) as e:
                print(f"warning: {path} is not a device.json ({e}); its entries are not kept", file=sys.stderr)
            return {}
    return {}


def comparison(devices: dict) -> dict | None:
    """CPU seconds / CUDA seconds per timing, when both kinds were measured."""
    cpu, gpu = devices.get("cpu"), devices.get("cuda")
    if not cpu or not gpu:
        return None

    def seconds(entry):
        s = {"class_graph": (entry.get("class_graph") or {}).get("seconds"),
             "training_epoch": (entry.get("training_epoch") or {}).get("epoch_seconds")}
        s.update({f"fig8_{m}": r.get("seconds") for m, r in (entry.get("fig8") or {}).items()})
        if isinstance(entry.get("smoke"), dict) and entry["smoke"].get("returncode") == 0:
            s["smoke"] = entry["smoke"].get("seconds")
        return s

    c, g = seconds(cpu), seconds(gpu)
    return {"same_settings": cpu.get("settings") == gpu.get("settings"),
            "cpu_over_cuda": {k: c[k] / g[k] for k in c if k in g and c[k] and g[k]}}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA when torch sees it, else the CPU), cpu, cuda, cuda:N")
    p.add_argument("--out", default=str(REPO / "reports" / "benchmarks"))
    p.add_argument("--previous", help="device.json whose other device kinds are kept (default: --out's, else the "
                                      "committed reports/benchmarks/device.json)")
    p.add_argument("--data-root", help="another data root in the same layout (not checksum-verified)")
    p.add_argument("--synthetic-data", action="store_true",
                   help="CIFAR-10 look-alikes in a temporary folder (tests/conftest.make_fake_root), for a machine "
                        "without data/")
    p.add_argument("--model-file", default=str(REPO / "models" / f"{SECTION}.pt"))
    p.add_argument("--random-model", action="store_true", help="a randomly initialised ResNet18 even if trained exists")
    p.add_argument("--class-index", type=int, default=3)
    p.add_argument("--examples", type=int, default=None,
                   help="examples of the class graph (default: discover_graphs.examples_per_class, 100)")
    p.add_argument("--batches", type=int, default=3, help="timed training batches, after one warm-up batch")
    p.add_argument("--batch-size", type=int, default=None, help=f"training batch (default: {SECTION}'s, 128)")
    p.add_argument("--fig8-examples", type=int, default=10, help="examples scored per fig. 8 method")
    p.add_argument("--methods", nargs="+", default=["Saliency", "Causal"],
                   help="fig. 8 methods: Causal and the baselines of causal_interp.baselines")
    p.add_argument("--smoke", action="store_true", help="also the smoke profile end to end (~10 min on a CPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core, as the pipeline)")
    args = p.parse_args(argv)
    baselines.check_methods(args.methods)

    try:
        device = models.resolve_device(args.device)
    except config.ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    models.deterministic(device)
    training.set_threads(args.threads)
    params = config.load_params(REPO / "params.yaml")
    cfg = config.stage_config(params, SECTION)
    cfg = dataclasses.replace(cfg, threads=args.threads, **({"batch_size": args.batch_size} if args.batch_size else {}))
    dcfg = config.stage_config(params, "discover_graphs", discovery.DiscoveryConfig)
    ecfg = config.stage_config(params, "evaluate_explanations", evaluation.EvaluationConfig)
    n_examples = args.examples or dcfg.examples_per_class
    data_cfg = config.data_config(params)
    tmp = None
    if args.synthetic_data:
        sys.path.insert(0, str(REPO))
        from tests.conftest import make_fake_root

        tmp = tempfile.TemporaryDirectory(prefix="device-data-")
        make_fake_root(Path(tmp.name) / "data", n_train=max(cfg.batch_size * args.batches, 128),
                       n_test=max(40 * (n_examples + args.fig8_examples), 200))
        data_cfg, data_desc = dataclasses.replace(data_cfg, root=str(Path(tmp.name) / "data"), verify=False), \
            "synthetic (tests/conftest.make_fake_root)"
    elif args.data_root:
        data_cfg, data_desc = dataclasses.replace(data_cfg, root=args.data_root, verify=False), args.data_root
    else:
        data_desc = data_cfg.root
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kept = previous_entries(out, args.previous)

    t_all = time.perf_counter()
    model, model_desc, trained = resnet18(cfg, Path(args.model_file), args.random_model, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else training.machine()["cpu"]
    print(f"device {device} ({name}); ResNet18: {model_desc}; "
          f"data: {data_desc}", flush=True)
    halves = data.load_halves({"dataset": cfg.dataset, "image_size": cfg.image_size}, data_cfg)

    graph, graph_row = class_graph(model, halves, args.class_index, n_examples, trained, dcfg, device)
    print(f"1. ResNet18 class graph: {graph_row['seconds']:.1f} s ({graph_row['examples']} examples, "
          f"{graph_row['samples_evaluated']} samples evaluated)", flush=True)
    epoch = training_epoch(cfg, data_cfg, args.batches, device)
    print(f"2. training epoch ({epoch['precision']}): {epoch['seconds_per_batch']:.3f} s/batch, projected "
          f"{epoch['epoch_minutes']:.2f} min/epoch", flush=True)
    fig8 = fig8_methods(model, halves, graph, args.class_index, args.fig8_examples, trained, args.methods, ecfg, device)
    for m, r in fig8.items():
        print(f"3. fig. 8 {m}: " + (f"{r['seconds']:.1f} s ({r['examples']} examples)" if "seconds" in r
                                    else f"skipped, {r['skipped']}"), flush=True)
    own_data = args.data_root or args.synthetic_data
    smoke = smoke_run(device, data_cfg.root if own_data else None) if args.smoke else None
    if smoke:
        print(f"4. smoke profile end to end: {smoke['minutes']:.1f} min (exit {smoke['returncode']})", flush=True)
    if tmp is not None:
        tmp.cleanup()

    machine = training.machine()
    settings = {"model": "trained" if trained else "random init",
                "data": "synthetic" if args.synthetic_data else str(data_cfg.root), "class_index": args.class_index,
                "examples": n_examples, "batch_size": cfg.batch_size, "batches": args.batches,
                "fig8_examples": args.fig8_examples, "methods": list(args.methods)}
    entry = {"device": str(device), "device_name": name, "machine": machine,
             "measured": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(), "settings": settings,
             "model": model_desc, "data": data_desc,
             "class_graph": graph_row, "training_epoch": epoch, "fig8": fig8,
             "smoke": smoke, "total_seconds": time.perf_counter() - t_all}
    devices = {**kept, device.type: entry}
    result = {"what": "the kit's heavy steps timed per device kind (benchmarks/device.py): one ResNet18 class graph, "
                      "one finetune_cifar10 training epoch (projected from timed batches), fig. 8 methods scored with "
                      "LE and IROF, and optionally the smoke profile end to end",
              "devices": dict(sorted(devices.items())), "comparison": comparison(devices)}
    (out / FILE).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {out / FILE} (device kinds: {', '.join(sorted(devices))})")
    return result


if __name__ == "__main__":
    main()
