"""Do the LeNet verdicts survive another training seed and the authors' graphs? (stage `lenet_verdicts`)

For each training seed LeNet is retrained with the `train_lenet` settings. For each graph protocol the class graphs are
rediscovered on the discovery half: `kit` (the paired test, the pipeline's default), `floor` (the paired test with an
effect-size floor) and `authors` (their two-sample test with their fallback, `explain.py`). `run` computes, per seed,
graph protocol and figure, the numbers each figure's verdict rests on, at the reduced sizes of params.yaml's
`lenet_verdicts` section:

* fig. 7, reliability: the share of hard-graph nodes in every one of `reliability_runs` soft runs per class (the
  reliability stage runs 1000);
* fig. 8, LE: the fair protocol of `authors_protocol` (raw pixels, one convention for every method) on the evaluation
  examples of `le_class`, the causal maps being the authors' map (`protocols.AuthorsCausalExplainer`) of each graph:
  each method's median with its bootstrap 95% interval;
* fig. 10, fidelity and fig. 11, repair: the masking sweeps of the fidelity and repair stages, read as they read them.

Each number is stored under the argument names of its verdict function, so the report applies the criterion of the
figure's own stage with `verdicts.of_claim(FIGURES[figure], numbers, verdict_protocol(...))`; this module computes and
judges nothing (it does not import `verdicts`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import baselines, config, data, discovery, masking, models, protocols, reliability, training
from .config import bounded
from .progress import progress

# kit: the pipeline's default; floor: the paired test with the effect-size floor whose LeNet digit-3 graph comes closest
# to the authors' committed graph (authors_protocol's graph-size table); authors: their test and fallback
GRAPH_PROTOCOLS = {"kit": {"test": "paired"}, "floor": {"test": "paired", "min_effect": 0.15},
                   "authors": {"test": "two_sample", "fallback": True}}
FIGURES = {7: "reliability", 8: "le", 10: "fidelity", 11: "repair"}   # figure -> claim (verdicts.CLAIMS)


@dataclass
class StabilityConfig:
    """params.yaml section `lenet_verdicts`."""

    train: dict = field(default_factory=dict)   # the train_lenet settings (params.yaml: an alias of that section)
    seeds: list = field(default_factory=lambda: [0, 1, 2])   # training seeds of LeNet
    classes: list | None = None                 # null: every class
    examples_per_class: int = bounded(100, 2, 100_000)      # discovery examples per class graph
    correct_only: bool = True
    alpha: float = bounded(0.05, 0, 1, low_open=True, high_open=True)
    reliability_runs: int = bounded(200, 1, 1_000_000)
    runs_per_b: int = bounded(10, 1)
    b_min: float = bounded(0.01, 0, 1)
    b_max: float = bounded(0.5, 0, 1)
    eps: float = bounded(0.01, 0, 0.5)
    fidelity_shares: list = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2])
    repair_shares: list = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    random_draws: int = bounded(2, 1, 100)
    all_classes_examples: int | None = bounded(1000, 1)      # repair: examples of every class for FPR and precision
    le_class: int = bounded(3, 0)
    le_examples: int = bounded(100, 2, 10_000)
    le: dict = field(default_factory=dict)      # overrides of the authors_protocol LE settings (ProtocolConfig)
    bootstrap: int = bounded(2000, 1, 1_000_000)
    max_batch: int = bounded(4096, 1)
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)

    def validate(self, section: str) -> None:
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            raise ValueError(f"{section}.seeds must be a non-empty list of integers >= 0")
        for name in ("fidelity_shares", "repair_shares"):
            v = getattr(self, name)
            if not v or v[0] != 0 or sorted(v) != list(v) or not all(0 <= s <= 1 for s in v):
                raise ValueError(f"{section}.{name} must be increasing shares in [0, 1] starting at 0, got {v}")
        if not any(0 < s <= 0.2 for s in self.fidelity_shares):
            raise ValueError(f"{section}.fidelity_shares needs a share in (0, 0.2]: fig. 10's claim is about 20% or less")
        if self.classes is not None and self.le_class not in self.classes:
            raise ValueError(f"{section}.le_class {self.le_class} is not one of {section}.classes {self.classes}")
        if not (self.eps <= self.b_min <= self.b_max <= 1 - self.eps):
            raise ValueError(f"{section}: need eps <= b_min <= b_max <= 1 - eps")
        self.protocol_config()
        self.train_config()

    def train_config(self) -> config.TrainConfig:
        return config.from_dict(config.TrainConfig, self.train, "lenet_verdicts.train")

    def protocol_config(self) -> protocols.ProtocolConfig:
        return config.from_dict(protocols.ProtocolConfig, {"class_index": self.le_class, "examples": self.le_examples,
                                                           "correct_only": self.correct_only, "seed": self.seed,
                                                           "bootstrap": self.bootstrap,
                                                           **self.le}, "lenet_verdicts.le")


def train_seed(train_cfg: config.TrainConfig, seed: int, data_cfg, path: Path, checkpoints: Path,
               device: torch.device | str = "cpu") -> Path:
    """LeNet trained with `train_cfg` but `seed` on `device`, saved at `path` (kept when it was trained with the same
    settings)."""
    cfg = dataclasses.replace(train_cfg, seed=seed)
    ds = data.load_dataset(cfg.dataset, data_cfg, cfg.image_size, cfg.train_subset, cfg.test_subset, seed=seed)
    key = training.config_hash(cfg, {"n_train": len(ds.y_train), "root": str(data_cfg.root)})
    if path.is_file() and models.model_info(path).get("config_hash") == key:
        return path
    torch.manual_seed(seed)
    model = models.build_model(cfg.model, ds.num_classes, in_chans=ds.input_shape[0])
    training.train(model, ds, cfg, checkpoint=checkpoints / f"lenet_verdicts-seed{seed}-{key}.pt", device=device)
    acc = training.classification_metrics(training.predict(model, ds, ds.x_test), ds.y_test, ds.classes)["accuracy"]
    models.save_model(model, path, cfg.model, ds.num_classes, ds.input_shape[0],
                      extra={"image_size": cfg.image_size, "dataset": cfg.dataset, "test_accuracy": acc, "seed": seed,
                             "config_hash": key})
    return path


def discover(model, halves, cfg: StabilityConfig, protocol: str, cache_dir: Path, model_hash: str) -> dict:
    """{class: ClassGraph} of one graph protocol, cached per class like discover_graphs."""
    classes = cfg.classes if cfg.classes is not None else list(range(halves.data.num_classes))
    kw = GRAPH_PROTOCOLS[protocol]
    key = settings_key(model_hash, kw, cfg.examples_per_class, cfg.alpha, cfg.correct_only, data_split(halves))
    xd, yd = halves.x[halves.discovery], halves.y[halves.discovery]
    found = discovery.discover_all(model, xd, yd, classes, halves.data.classes, cfg.examples_per_class,
                                   discovery.Intervention(), kw["test"], cfg.alpha, cache_dir=cache_dir, key=key,
                                   max_batch=cfg.max_batch, correct_only=cfg.correct_only, log=lambda *a: None,
                                   desc=f"{protocol} graphs", fallback=kw.get("fallback", False),
                                   min_effect=kw.get("min_effect", 0.0))
    return {c: g for c, (g, _) in found.items()}


def settings_key(*settings) -> str:
    """A cache key of everything that changes a cached result (JSON of the settings, hashed)."""
    return hashlib.sha256(json.dumps(settings, default=str).encode()).hexdigest()[:12]


def data_split(halves) -> str:
    """The discovery half itself (graph examples are indices into it): a key part that changes with the split."""
    return hashlib.md5(halves.discovery.numpy().tobytes()).hexdigest()


def setup(model, halves, graphs: dict) -> masking.Setup:
    any_graph = next(iter(graphs.values()))
    return masking.Setup(model, halves.data.classes, graphs, halves.x, halves.y, halves.evaluation,
                         {lg.layer: lg.n_parents for lg in any_graph.layers})


def reliability_numbers(model, halves, graphs: dict, cfg: StabilityConfig, name: str, cache_dir: Path) -> dict:
    """Fig. 7: the share of hard-graph nodes necessary in every soft run, pooled over classes and layers
    (`verdicts.reliability_verdict`'s argument)."""
    b = reliability.b_schedule(cfg.reliability_runs, cfg.b_min, cfg.b_max, cfg.runs_per_b)
    rates = []
    for c, hard in graphs.items():
        records = reliability.soft_sweep(model, halves.x[halves.discovery][hard.examples], hard, b, cfg.eps, cfg.seed,
                                         None, cfg.max_batch, cache_dir / f"class_{c}.jsonl", log=lambda *a: None,
                                         desc=f"{name} soft runs")
        rates += list(reliability.appearance_rates(hard, records).values())
    return {"share_in_every_run": float(reliability.pooled_share(rates))}


def fidelity_numbers(df: pd.DataFrame) -> dict:
    """Fig. 10's numbers from `masking.fidelity_rows` (`verdicts.fidelity_verdict`'s arguments): the unmasked class
    accuracy, the largest share of at most 20% and the mean class accuracy there per ranking."""
    unmasked, share, at_share = masking.fidelity_at(df)
    return {"unmasked": unmasked, "at_share": at_share, "share": share}


def repair_numbers(df: pd.DataFrame) -> dict:
    """Fig. 11's numbers from `masking.repair_rows` (`verdicts.repair_verdict`'s arguments): the graph masks, means over
    classes, per share in increasing order."""
    g = df[df["mask"] == "graph"].groupby("share")[["class_accuracy", "all_accuracy", "false_positive_rate"]].mean()
    return {k: [float(v) for v in g[k]] for k in ("class_accuracy", "all_accuracy", "false_positive_rate")}


def le_baseline_scores(raw, x01, y, pcfg: protocols.ProtocolConfig) -> dict[str, np.ndarray]:
    """Fair-protocol LE of the four baselines the authors scored (they do not depend on the graphs)."""
    base = baselines.BaselineConfig(ig_steps=pcfg.ig_steps, shap_samples=pcfg.shap_samples, rise_masks=pcfg.rise_masks,
                                    seed=pcfg.seed)
    return {m: protocols.le_scores("fair", m, baselines.explainer(m, raw, base), raw, x01, y, pcfg)
            for m in protocols.AUTHORS_METHODS[1:]}


def le_numbers(raw, graph, x01, y, others: dict, pcfg: protocols.ProtocolConfig) -> dict:
    """Fig. 8: LE under the fair protocol, the causal maps from `graph`: {method: (median, ci_low, ci_high)}
    (`verdicts.le_verdict`'s argument)."""
    from .evaluation import median_ci

    explain = protocols.AuthorsCausalExplainer(raw, {pcfg.class_index: graph}, pcfg.layer, pcfg.parent_layer)
    scores = {"Causal": protocols.le_scores("fair", "Causal", explain, raw, x01, y, pcfg), **others}
    return {"summary": {m: [float(x) for x in median_ci(v, pcfg.bootstrap, pcfg.seed)] for m, v in scores.items()}}


def le_examples(model, halves, pcfg: protocols.ProtocolConfig):
    """(raw-pixel model, raw evaluation examples of the LE class in [0, 1], labels), as in authors_protocol."""
    raw = protocols.RawPixels(model, halves.data.mean, halves.data.std)
    xe, ye = halves.x[halves.evaluation], halves.y[halves.evaluation]
    ie = discovery.class_examples(model, xe, ye, pcfg.class_index, pcfg.examples, correct_only=pcfg.correct_only)
    x01 = halves.data.x_test[halves.evaluation][ie].float().numpy() / 255.0
    return raw, x01, ye[ie].numpy()


def stability(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per figure and graph protocol: the outcome for every seed, and whether it is the same for all seeds ("holds
    (every seed)"; "does not hold (every seed)" never reads as "not for every seed")."""
    rows = []
    for (fig, protocol), d in outcomes.groupby(["figure", "protocol"], sort=False):
        seeds = dict(zip(d.seed, d.outcome))
        same = len(set(seeds.values())) == 1
        rows.append({"figure": fig, "protocol": protocol, **{f"seed {s}": o for s, o in seeds.items()},
                     "verdict across seeds": (f"{next(iter(seeds.values()))} (every seed)" if same else
                                              "flips with the seed: " + "; ".join(f"seed {s} {o}" for s, o in seeds.items()))})
    return pd.DataFrame(rows)


def run(cfg: StabilityConfig, data_cfg, models_dir: Path, cache: Path, checkpoints: Path,
        device: torch.device | str = "cpu"):
    """Every seed x graph protocol x figure: one row (seed, protocol, figure, test_accuracy, graph_sizes, le_examples,
    numbers: what the figure's verdict rests on); and the fidelity and repair sweeps behind figs. 10 and 11 (one row
    per seed, protocol, class, share and mask, as `masking.fidelity_rows` / `repair_rows`). Every model is trained and
    run on `device` (the examples stay on the CPU: each step moves what it needs to the model's device)."""
    pcfg = cfg.protocol_config()
    rows, fidelity, repair = [], [], []
    for seed in progress(cfg.seeds, total=len(cfg.seeds), desc="seeds", unit="seed"):
        path = train_seed(cfg.train_config(), seed, data_cfg, models_dir / "lenet_verdicts" / f"lenet_seed{seed}.pt",
                          checkpoints, device)
        info = models.model_info(path)
        model = models.load_model(path).to(device)
        model_hash = hashlib.md5(path.read_bytes()).hexdigest()
        halves = data.load_halves(info, data_cfg)
        discovery.check_classes([pcfg.class_index], info["num_classes"])
        raw, x01, y = le_examples(model, halves, pcfg)
        others = le_baseline_scores(raw, x01, y, pcfg)
        for protocol in GRAPH_PROTOCOLS:
            name = f"LeNet seed {seed}, {protocol} graphs"
            graphs = discover(model, halves, cfg, protocol, cache / "graphs", model_hash)
            su = setup(model, halves, graphs)
            fid = pd.DataFrame(masking.fidelity_rows(su, cfg.fidelity_shares, cfg.random_draws, cfg.seed,
                                                     desc=f"{name}: fig. 10"))
            rep = pd.DataFrame(masking.repair_rows(su, cfg.repair_shares, cfg.random_draws, cfg.seed,
                                                   cfg.all_classes_examples, desc=f"{name}: fig. 11"))
            found = {
                7: reliability_numbers(model, halves, graphs, cfg, name, cache / "reliability" / settings_key(
                    model_hash, protocol, data_split(halves), cfg.examples_per_class, cfg.alpha, cfg.correct_only,
                    cfg.reliability_runs, cfg.runs_per_b, cfg.b_min, cfg.b_max, cfg.eps, cfg.seed)),
                8: le_numbers(raw, graphs[pcfg.class_index], x01, y, others, pcfg),
                10: fidelity_numbers(fid),
                11: repair_numbers(rep),
            }
            fidelity.append(fid.assign(seed=seed, protocol=protocol))
            repair.append(rep.assign(seed=seed, protocol=protocol))
            rows += [{"seed": seed, "protocol": protocol, "figure": fig, "test_accuracy": info["test_accuracy"],
                      "graph_sizes": {c: [len(lg.necessary) for lg in g.layers] for c, g in graphs.items()},
                      "le_examples": len(y), "numbers": numbers} for fig, numbers in found.items()]
    return pd.DataFrame(rows), pd.concat(fidelity, ignore_index=True), pd.concat(repair, ignore_index=True)


def verdict_protocol(row, cfg: StabilityConfig) -> str:
    """How a row of `run` was obtained, in the words its verdict sentence gives (the `protocol` of `verdicts.of_claim`)."""
    name = f"LeNet seed {row['seed']}, {row['protocol']} graphs"
    if row["figure"] == 7:
        return name + f", {cfg.reliability_runs} soft runs per class"
    if row["figure"] == 8:
        return name + f", fair protocol, {row['le_examples']} examples of class {cfg.le_class}"
    return name
