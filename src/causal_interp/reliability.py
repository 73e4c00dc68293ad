"""Reliability of the graphs under soft interventions (fig. 7).

The graph is re-discovered many times with soft interventions, beta ~ U(b - eps, b + eps) drawn anew for
every edge and run, b rising every `runs_per_b` runs over (b_min, b_max). For every node of the
hard-intervention graph, its appearance rate is the share of runs whose graph has it as a necessary node of the
same layer. Nodes that are necessary in some soft run but not in the hard graph are reported separately.
Because the walk is top-down, a chain restricted to the top layers gives those layers' graph exactly; the
reduced ResNet sweep relies on that.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import fanout
from .config import bounded
from .discovery import ClassGraph, discover_class_graph, warn_degenerate
from .interventions import Intervention
from .progress import progress


@dataclass
class SweepConfig:
    """One model's sweep in params.yaml's `reliability.models.<training stage>`."""

    runs: int = bounded(1000, 1, 1_000_000)
    classes: list | None = None       # null: every class with a graph
    layers: list | None = None        # null: the full chain; else the top of it, e.g. [layer4.1.conv2, fc]

    def validate(self, section: str) -> None:
        if self.runs < 1:
            raise ValueError(f"{section}.runs must be >= 1")


@dataclass
class ReliabilityConfig:
    """params.yaml section `reliability`."""

    models: dict = field(default_factory=dict)   # training stage -> SweepConfig fields
    graph_test: str = "paired"       # which discovered graphs (results/graphs/<model>/<test>) are the reference
    graphs_dir: str = "graphs"        # results/<graphs_dir>/<model>/<graph_test>/
    b_min: float = bounded(0.01, 0, 1)
    b_max: float = bounded(0.5, 0, 1)
    runs_per_b: int = bounded(10, 1)
    eps: float = bounded(0.01, 0, 0.5)
    max_batch: int = bounded(4096, 1)
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)
    workers: int | None = bounded(None, 1, 1024)   # Ray workers (fanout.py); null: in-process, or RAY_ADDRESS's

    def validate(self, section: str) -> None:
        if not self.models:
            raise ValueError(f"{section}.models must name at least one training stage")
        if not (self.eps <= self.b_min <= self.b_max <= 1 - self.eps):
            raise ValueError(f"{section}: need eps <= b_min <= b_max <= 1 - eps, got "
                             f"b_min={self.b_min}, b_max={self.b_max}, eps={self.eps}")
        for name, sweep in self.models.items():
            sweep_config(sweep, f"{section}.models.{name}")


def b_schedule(runs: int, b_min: float, b_max: float, runs_per_b: int) -> np.ndarray:
    """b of every run: constant for `runs_per_b` runs, rising linearly from b_min to b_max."""
    steps = max(1, int(np.ceil(runs / runs_per_b)))
    levels = np.linspace(b_min, b_max, steps) if steps > 1 else np.array([b_min])
    return np.repeat(levels, runs_per_b)[:runs]


def soft_sweep(model: nn.Module, x: torch.Tensor, graph: ClassGraph, b_values, eps: float, seed: int = 0,
               layers: list[str] | None = None, max_batch: int = 4096, cache_file: str | Path | None = None,
               log=print, desc: str = "soft runs", workers: int | None = None) -> list[dict]:
    """Re-discover `graph` once per b in `b_values` with soft interventions (same examples, test and alpha), one run
    at a time, or fanned out over Ray workers (`workers`, RAY_ADDRESS: `fanout.run`; the same records).

    Returns one record per run: {"run", "b", "necessary": {layer: [nodes]}}. With `cache_file`, records are
    appended as JSON lines in run order as they finish and reused on a re-run, so an interruption loses at most the
    runs running (and, over Ray, those finished after a run still running).
    """
    records = []
    cache_file = Path(cache_file) if cache_file else None
    if cache_file is not None and cache_file.exists():
        for line in cache_file.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by an interruption
                break
        records = [r for i, r in enumerate(records) if r["run"] == i and abs(r["b"] - b_values[i]) < 1e-12][:len(b_values)]
        log(f"class {graph.class_index}: {len(records)} runs from the cache")
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    bar = progress(total=len(b_values), initial=len(records), desc=f"{desc}, class {graph.class_index}", unit="run")

    # --- fan-out (fanout.py): one unit = one soft run, computed here or on a Ray worker; recorded here in run order
    def one(run):
        iv = Intervention("soft", b=float(b_values[run]), eps=eps, seed=seed * 1_000_003 + run)
        return discover_class_graph(model, x, graph.class_index, layers, iv, graph.test, graph.alpha,
                                    max_batch=max_batch, min_effect=graph.min_effect, fallback=graph.fallback)

    first, arrived = len(records), {}

    def finished(i, g):
        arrived[first + i] = g
        while len(records) in arrived:       # the runs up to the first one still missing
            run, g = len(records), arrived.pop(len(records))
            rec = {"run": run, "b": float(b_values[run]), "necessary": {lg.layer: lg.necessary for lg in g.layers}}
            if warn_degenerate(g, lambda line: log(f"run {run}: {line}")):
                rec["degenerate"] = {lg.layer: lg.degenerate for lg in g.layers if lg.degenerate}
            records.append(rec)
            if cache_file is not None:
                with open(cache_file, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            bar.update(1)

    fanout.run(one, range(first, len(b_values)), workers, done=finished)
    # --- end of fan-out
    bar.close()
    return records


def appearance_rates(graph: ClassGraph, records: list[dict]) -> dict:
    """Per layer of the sweep: the appearance rate of every hard-graph node, the share of hard nodes that appear
    in every run, and the nodes found only under soft interventions (with their rates)."""
    out = {}
    layers = list(records[0]["necessary"]) if records else []
    for layer in layers:
        hard = graph.layer(layer).necessary
        counts: dict[int, int] = {}
        for r in records:
            for j in r["necessary"][layer]:
                counts[j] = counts.get(j, 0) + 1
        n = len(records)
        rate = {j: counts.get(j, 0) / n for j in hard}
        out[layer] = {
            "hard_nodes": len(hard),
            "rate": rate,
            "share_always": float(np.mean([v == 1.0 for v in rate.values()])) if hard else float("nan"),
            "mean_rate": float(np.mean(list(rate.values()))) if hard else float("nan"),
            "soft_only": {j: c / n for j, c in sorted(counts.items()) if j not in set(hard)},
        }
    return out


def pooled_share(rates: list[dict]) -> float:
    """Fig. 7's number: the share of hard-graph nodes necessary in every run, pooled over the given per-layer rates
    (`appearance_rates` values, any classes and layers). A layer without hard nodes contributes nothing; NaN when no
    layer has any."""
    nodes = sum(r["hard_nodes"] for r in rates)
    return sum(r["share_always"] * r["hard_nodes"] for r in rates if r["hard_nodes"]) / nodes if nodes else float("nan")


def rates_by_b(graph: ClassGraph, records: list[dict]) -> list[dict]:
    """Rows (layer, b, node, rate over the runs at that b) for the hard-graph nodes."""
    rows = []
    bs = sorted({r["b"] for r in records})
    for b in bs:
        runs = [r for r in records if r["b"] == b]
        for layer in runs[0]["necessary"]:
            for j in graph.layer(layer).necessary:
                rows.append({"layer": layer, "b": b, "node": j,
                             "rate": sum(j in r["necessary"][layer] for r in runs) / len(runs)})
    return rows


def sweep_config(values: dict, section: str) -> SweepConfig:
    from .config import from_dict

    return from_dict(SweepConfig, values or {}, section)

