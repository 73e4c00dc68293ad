"""Fig. 7 with the plain first-order estimate (issue 33's follow-up): the soft-intervention runs of the `reliability`
stage re-discovered with `effects="taylor"` beside the exact runs, on the same examples, layers, b schedule and draws.

    python benchmarks/first_order_soft.py [--model finetune_cifar10] [--class 3] [--runs 100] [--out reports/benchmarks]

The exact runs are fig. 7's own: the stage's committed `results/reliability/<model>/class_<k>.runs.jsonl`, used when
its recorded settings (`sweeps.json`: eps, seed, b schedule, layers) and hard graph (`class_<k>.graph.json`) are this
run's, with the stage's time for them; otherwise they are computed here (`reliability.soft_sweep`) and timed. For
every run and layer: the F1 of the taylor run's necessary nodes against the exact run's (the mean and the lowest run);
then fig. 7's number (the share of the hard graph's nodes necessary in every run, `reliability.pooled_share`) from
each, and the times. Writes `<out>/first_order_soft.json`. Nothing is asserted: it measures whether `taylor` could
stand in for fig. 7's runs.
"""
import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from causal_interp import config, data, discovery, models, reliability, training  # noqa: E402
from causal_interp.discovery import ClassGraph  # noqa: E402
from causal_interp.interventions import Intervention  # noqa: E402


def f1(estimate: set, exact: set) -> float:
    """F1 of `estimate` against `exact` (1 when both are empty)."""
    if not estimate and not exact:
        return 1.0
    tp = len(estimate & exact)
    return 2 * tp / (len(estimate) + len(exact))


def compare(hard: ClassGraph, exact: list[dict], taylor: list[dict]) -> dict:
    """Per layer the mean and minimum F1 of the runs' necessary nodes (taylor against exact, run by run), and fig. 7's
    pooled share of hard nodes necessary in every run from each (`exact` and `taylor`: `soft_sweep`-style records)."""
    if [r["run"] for r in exact] != [r["run"] for r in taylor]:
        raise ValueError("the exact and the taylor records must be the same runs")
    layers = {}
    for layer in (exact[0]["necessary"] if exact else {}):
        scores = [f1(set(t["necessary"][layer]), set(e["necessary"][layer])) for e, t in zip(exact, taylor)]
        layers[layer] = {"mean_f1": sum(scores) / len(scores), "min_f1": min(scores)}
    rates = {name: reliability.appearance_rates(hard, recs) for name, recs in (("exact", exact), ("taylor", taylor))}
    return {"runs": len(exact), "layers": layers,
            "fig7_share": {name: reliability.pooled_share(list(r.values())) for name, r in rates.items()},
            "share_per_layer": {name: {layer: v["share_always"] for layer, v in r.items()} for name, r in rates.items()}}


def taylor_runs(model, x, hard: ClassGraph, b_values, eps: float, seed: int, layers, max_batch: int) -> list[dict]:
    """`reliability.soft_sweep`'s runs (the same interventions and seeds) with `effects="taylor"`."""
    out = []
    for run, b in enumerate(b_values):
        iv = Intervention("soft", b=float(b), eps=eps, seed=seed * 1_000_003 + run)
        g = discovery.discover_class_graph(model, x, hard.class_index, layers, iv, hard.test, hard.alpha,
                                           max_batch=max_batch, min_effect=hard.min_effect, fallback=hard.fallback,
                                           effects="taylor")
        out.append({"run": run, "b": float(b), "necessary": {lg.layer: lg.necessary for lg in g.layers}})
    return out


def stage_runs(results: Path, model: str, k: int, graph_file: Path, cfg, layers, b_values) -> tuple[list, float] | None:
    """The reliability stage's committed exact runs of `model`'s class `k` and their time (its `seconds_this_run`), when
    they were made with these settings, this hard graph and (at least) these b values; None otherwise."""
    sweeps, runs = results / "sweeps.json", results / model / f"class_{k}.runs.jsonl"
    graph = results / model / f"class_{k}.graph.json"
    if not (sweeps.exists() and runs.exists() and graph.exists()) or graph.read_bytes() != graph_file.read_bytes():
        return None
    recorded = json.loads(sweeps.read_text())
    settings, entry = recorded["settings"], recorded["models"].get(model, {})
    if (settings["eps"], settings["seed"]) != (cfg.eps, cfg.seed) or \
            settings["models"].get(model, {}).get("layers") != layers or str(k) not in entry.get("classes", {}):
        return None
    records = [json.loads(line) for line in runs.read_text().splitlines()][:len(b_values)]
    if len(records) < len(b_values) or any(r["run"] != i or abs(r["b"] - b) > 1e-12
                                           for i, (r, b) in enumerate(zip(records, b_values))):
        return None
    share = len(b_values) / entry["classes"][str(k)]["runs"]
    return records, entry["classes"][str(k)]["seconds_this_run"] * share


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="finetune_cifar10")
    p.add_argument("--class", dest="class_index", type=int, default=None, help="default: the section's first class")
    p.add_argument("--runs", type=int, default=None, help="the first N runs of the schedule (default: all)")
    p.add_argument("--params", default=str(REPO / "params.yaml"))
    p.add_argument("--out", default=str(REPO / "reports" / "benchmarks"))
    args = p.parse_args(argv)

    params = config.read_yaml(Path(args.params))
    cfg = config.from_dict(reliability.ReliabilityConfig, params["reliability"], "reliability")
    if args.model not in cfg.models:
        raise SystemExit(f"reliability.models has no {args.model!r}: {sorted(cfg.models)}")
    sweep = reliability.sweep_config(cfg.models[args.model], f"reliability.models.{args.model}")
    b_values = reliability.b_schedule(sweep.runs, cfg.b_min, cfg.b_max, cfg.runs_per_b)[:args.runs]
    k = args.class_index if args.class_index is not None else (sweep.classes or [0])[0]
    path = discovery.graph_files(REPO / "results" / cfg.graphs_dir / args.model / cfg.graph_test, [k])[k]
    training.set_threads(cfg.threads)
    model = models.load_model(REPO / "models" / f"{args.model}.pt")
    data_cfg = config.data_config(params)
    if not Path(data_cfg.root).is_absolute():
        data_cfg = dataclasses.replace(data_cfg, root=str(REPO / data_cfg.root))
    halves = data.load_halves(models.model_info(REPO / "models" / f"{args.model}.pt"), data_cfg)
    hard = ClassGraph.load(path)
    x = halves.x[halves.discovery][hard.examples]

    committed = stage_runs(REPO / "results" / "reliability", args.model, k, path, cfg, sweep.layers, b_values)
    if committed is not None:
        exact, exact_seconds = committed
        source = "results/reliability (the stage's committed runs; its time)"
    else:
        t0 = time.perf_counter()
        exact = reliability.soft_sweep(model, x, hard, b_values, cfg.eps, cfg.seed, sweep.layers, cfg.max_batch,
                                       desc=f"{args.model} exact soft runs")
        exact_seconds, source = time.perf_counter() - t0, "computed here"
    t0 = time.perf_counter()
    taylor = taylor_runs(model, x, hard, b_values, cfg.eps, cfg.seed, sweep.layers, cfg.max_batch)
    taylor_seconds = time.perf_counter() - t0
    result = {"model": args.model, "class_index": k, "layers": sweep.layers, "b_values": [float(b) for b in b_values],
              **compare(hard, exact, taylor), "taylor_seconds": taylor_seconds, "exact_seconds": exact_seconds,
              "exact_source": source, "machine": training.machine()}
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out / "first_order_soft.json").write_text(json.dumps(result, indent=1))
    print(f"{args.model} class {k}, {result['runs']} soft runs: fig. 7 share exact {result['fig7_share']['exact']:.3f}, "
          f"taylor {result['fig7_share']['taylor']:.3f}; taylor {taylor_seconds:.0f} s, exact {exact_seconds:.0f} s "
          f"({source})")
    for layer, v in result["layers"].items():
        print(f"  {layer}: F1 of the necessary nodes, mean {v['mean_f1']:.3f}, min {v['min_f1']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
