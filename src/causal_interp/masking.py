"""Masking parents of a layer at inference (fidelity and repair, figs. 10-11).

A mask zeroes, inside a `with masked(...)` block, the weights from chosen parent nodes of a layer (a whole
filter slice for conv layers, a block of features for a linear layer fed by a flattened conv map), either to
every output of the layer or only to given targets. The original weights are restored bit for bit on exit,
also when the block raises. Nothing is retrained.
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import bounded
from .discovery import ClassGraph, graph_files
from .interventions import (TracedModel, _edge_slices, _out_nodes, apply_layer, check_finite, device_of, edge_pairs,
                            edge_weights, effective_weight, is_standardised)
from .models import evaluating


@dataclass
class LayerMask:
    """Parents of `layer` whose weights are zeroed (to `targets` only, or to every output when None)."""

    layer: str
    parents: list[int]
    targets: list[int] | None = None


@contextlib.contextmanager
def masked(model: nn.Module, masks: list[LayerMask], n_parents: dict[str, int]):
    """Zero the masked weights of `model` for the duration of the block; `n_parents` maps layer -> parents.
    A weight-standardised conv (timm's StdConv2d) has the masked entries of its effective weight zeroed: it runs
    as a conv with that weight for the duration of the block (zeroing stored entries would re-standardise them)."""
    modules = dict(model.named_modules())
    saved, overridden = [], {}      # overridden: module -> its instance `forward` before the block (None: none)
    try:
        for m in masks:
            if m.layer not in modules:
                raise KeyError(f"unknown layer {m.layer!r}")
            module = modules[m.layer]
            if is_standardised(module):
                current = vars(module).get("forward")
                if module not in overridden:      # first mask of this layer in the block: a copy of what it applies
                    overridden[module] = current
                    base = current.keywords["weight"] if isinstance(current, functools.partial) else effective_weight(module)
                    w = base.detach().clone()
                    module.forward = functools.partial(apply_layer, module, weight=w)
                else:                             # masked twice in one block: keep zeroing the same copy
                    w = current.keywords["weight"]
            else:
                w = module.weight
                saved.append((w, w.detach().clone()))
            if not m.parents:
                continue
            view = _edge_slices(w.data, n_parents[m.layer])
            parents = torch.as_tensor(m.parents, dtype=torch.long)
            targets = torch.arange(view.shape[0]) if m.targets is None else torch.as_tensor(m.targets, dtype=torch.long)
            exists, cols = edge_pairs(modules[m.layer], targets, parents)   # grouped convs: own group only
            t_idx, j_idx = torch.nonzero(exists, as_tuple=True)
            view[targets[t_idx], cols[j_idx]] = 0
        yield model
    finally:
        for w, original in reversed(saved):
            w.data.copy_(original)
        for module, previous in overridden.items():
            if previous is None:
                vars(module).pop("forward", None)
            else:
                module.forward = previous         # an enclosing `masked` block's weights


def top_share(order: list[int], n_parents: int, share: float) -> list[int]:
    """The first ceil(share * n_parents) nodes of `order`."""
    return list(order[: min(len(order), math.ceil(share * n_parents - 1e-9))])


def critical_order(graph: ClassGraph, layer: str) -> list[int]:
    """Parents of `layer` from most to least critical: by mean effect, most negative (removal hurts the
    class most) first."""
    lg = graph.layer(layer)
    return sorted(range(lg.n_parents), key=lambda j: lg.mean_effect[j])


def magnitude_order(model: nn.Module, layer: str, n_parents: int) -> list[int]:
    """Parents by decreasing L1 norm of their outgoing weights (the weight-magnitude baseline)."""
    module = dict(model.named_modules())[layer]
    w, _ = edge_weights(module, n_parents, torch.arange(_out_nodes(module)), torch.arange(n_parents))
    norms = w.abs().transpose(0, 1).reshape(n_parents, -1).sum(1)
    return torch.argsort(norms, descending=True, stable=True).tolist()


def random_order(n_parents: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).permutation(n_parents).tolist()


def hidden_layers(graph: ClassGraph):
    """The graph's layers whose parents are neurons: all but the first layer of the chain, whose parents
    are the input image channels."""
    return graph.layers[:-1]


def fidelity_masks(graph: ClassGraph, share: float, how: str, model: nn.Module | None = None,
                   n_parents: dict | None = None, seed: int = 0) -> list[LayerMask]:
    """Masks of the top `share` of every layer's parent neurons (all outgoing weights), ranked by the graph's
    effects (`how="critical"`), at random (`"random"`) or by weight magnitude (`"magnitude"`)."""
    masks = []
    for i, lg in enumerate(hidden_layers(graph)):
        if how == "critical":
            order = critical_order(graph, lg.layer)
        elif how == "random":
            order = random_order(lg.n_parents, seed * 7919 + i)
        elif how == "magnitude":
            order = magnitude_order(model, lg.layer, lg.n_parents)
        else:
            raise ValueError(f"unknown ranking {how!r}; use critical, random or magnitude")
        masks.append(LayerMask(lg.layer, top_share(order, lg.n_parents, share)))
    return masks


REPAIR_MASKS = ("graph", "irrelevant", "random")


def repair_masks(graph: ClassGraph, share: float, how: str = "graph", seed: int = 0) -> list[LayerMask]:
    """Masks of a `share` of every layer's distracting and irrelevant parents (edges to the layer's graph
    targets only), distracting ones first by decreasing effect (`how="graph"`, what the paper masks); of the
    irrelevant parents only (`how="irrelevant"`, the literal reading: paths that do not matter); or the same number
    of parents as `graph` drawn at random among all parents (`how="random"`). Input channels are never masked."""
    masks = []
    for i, lg in enumerate(hidden_layers(graph)):
        if not lg.targets:
            continue
        irrelevant = sorted(lg.irrelevant, key=lambda j: -abs(lg.mean_effect[j]))
        pool = sorted(lg.distracting, key=lambda j: -lg.mean_effect[j]) + irrelevant
        count = math.ceil(share * len(pool) - 1e-9)
        if how == "graph":
            chosen = pool[:count]
        elif how == "irrelevant":
            chosen = irrelevant[:math.ceil(share * len(irrelevant) - 1e-9)]
        elif how == "random":
            chosen = random_order(lg.n_parents, seed * 7919 + i)[:count]
        else:
            raise ValueError(f"unknown repair mask {how!r}; use one of {REPAIR_MASKS}")
        masks.append(LayerMask(lg.layer, chosen, list(lg.targets)))
    return masks


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Share of `x` predicted as `y` (eval mode; the model's mode is restored). NaN/inf in the inputs or the
    logits raise `NonFiniteError` naming the classes of the affected examples."""
    if len(x) == 0:
        return float("nan")
    check_finite(x, "input values", "masking: accuracy", labels=y)
    correct, device = 0, device_of(model)
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size].to(device))
            check_finite(logits, "logits", "masking: accuracy", labels=y[i:i + batch_size])
            correct += (logits.argmax(1).cpu() == y[i:i + batch_size]).sum().item()
    return correct / len(x)


@torch.no_grad()
def class_bias(model: nn.Module, x: torch.Tensor, y: torch.Tensor, c: int, batch_size: int = 1024) -> dict:
    """How the model treats class `c` on a labelled sample of all classes: accuracy on all classes, and for `c` its
    false-positive rate (share of the other classes' examples predicted as `c`) and precision (share of the
    predictions of `c` that are right). A mask that raises the class accuracy by predicting `c` for everything
    shows up here as a false-positive rate near 1 and a precision near the class's share of the sample."""
    if len(x) == 0:
        return {"all_accuracy": float("nan"), "false_positive_rate": float("nan"), "precision": float("nan")}
    check_finite(x, "input values", "masking: class bias", labels=y)
    with evaluating(model):
        device = device_of(model)
        pred = torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])
    others, predicted = y != c, pred == c
    return {"all_accuracy": float((pred == y).float().mean()),
            "false_positive_rate": float(predicted[others].float().mean()) if others.any() else float("nan"),
            "precision": float((y[predicted] == c).float().mean()) if predicted.any() else float("nan")}


@torch.no_grad()
def correction_masks(model: nn.Module, x1: torch.Tensor, true_class: int, layers: list[str] | None = None,
                     max_batch: int = 4096) -> list[LayerMask]:
    """Per-example graph of the earlier version of the method, for correcting a wrong prediction.

    Top-down from the true class's logit, on the single example `x1` (1, ...): every parent's edges to the
    current targets are removed in turn. Parents whose removal *raises* the true-class logit (negative
    contribution) are masked (edges to the targets); parents whose removal lowers it are kept and become the
    targets of the next layer down. Only the positive-effect parameters remain on the path to the class.
    """
    from .discovery import layer_chain
    from .interventions import Intervention, treatment_effects

    chain = layer_chain(model, layers)
    traced = TracedModel(model)
    traced.cache(x1, where=f"correction of an example of class {true_class}")
    masks, targets = [], [true_class]
    for name in reversed(chain):
        if not targets:
            break
        te = treatment_effects(traced, name, true_class, targets, Intervention("hard"), max_batch=max_batch)[:, 0]
        masks.append(LayerMask(name, torch.nonzero(te > 0).flatten().tolist(), list(targets)))
        targets = torch.nonzero(te < 0).flatten().tolist()
    return masks


@dataclass
class MaskingConfig:
    """params.yaml sections `fidelity` and `repair`."""

    models: list
    classes: list | None = None          # null: every class with a graph
    graph_test: str = "paired"           # which discovered graphs (results/<graphs_dir>/<model>/<test>)
    graphs_dir: str = "graphs"
    shares: list = None                  # shares of each layer's parents (fidelity) / of D (repair) to mask
    random_draws: int = bounded(3, 1, 1000)
    all_classes_examples: int | None = bounded(1000, 1)   # repair: evaluation examples for the all-classes accuracy
    correction_model: str | None = "train_lenet"   # null: no correction experiment
    correction_true: int = bounded(3, 0)
    correction_predicted: int = bounded(8, 0)
    correction_fallback: bool = True     # no such error: use every misclassified example of the true class
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)

    def validate(self, section: str) -> None:
        if not self.models:
            raise ValueError(f"{section}.models must name at least one training stage")
        if not self.shares or any(not 0 <= s <= 1 for s in self.shares) or list(self.shares) != sorted(self.shares):
            raise ValueError(f"{section}.shares must be increasing values in [0, 1], got {self.shares}")
        if self.correction_model is not None and self.correction_true == self.correction_predicted:
            raise ValueError(f"{section}: correction_true and correction_predicted must differ")


@dataclass
class Setup:
    """A trained model, its class graphs and the evaluation half of the test set."""

    model: nn.Module
    classes: list
    graphs: dict
    x_test: torch.Tensor      # the whole official test set (model input)
    y_test: torch.Tensor
    eval_idx: torch.Tensor    # its evaluation half
    n_parents: dict

    @property
    def x_eval(self):
        return self.x_test[self.eval_idx]

    @property
    def y_eval(self):
        return self.y_test[self.eval_idx]

    def class_examples(self, c: int):
        idx = self.eval_idx[self.y_test[self.eval_idx] == c]
        return self.x_test[idx], self.y_test[idx]

    def evaluation_subset(self, n: int | None, seed: int):
        idx = self.eval_idx
        if n is not None and n < len(idx):
            idx = idx[torch.from_numpy(np.random.default_rng(seed).permutation(len(idx))[:n])]
        return self.x_test[idx], self.y_test[idx]


def mask_seed(seed: int, class_index: int, draw: int) -> int:
    """The seed of one random mask set: different for every class and draw (so the random control of one class is
    not the same parents as another's), the same on every run."""
    return (seed * 1_000_003 + class_index) * 1009 + draw


def fidelity_rows(su: Setup, shares, random_draws: int, seed: int, desc: str = "classes") -> list[dict]:
    """Fig. 10: per class graph and share, the class accuracy (evaluation half) with that share of every layer's
    parents masked, ranked by `critical` effect, weight `magnitude` and `random_draws` random orders (`mask_seed`)."""
    from .progress import progress

    rows = []
    for c, g in progress(su.graphs.items(), total=len(su.graphs), desc=desc, unit="class"):
        xc, yc = su.class_examples(c)
        for share in shares:
            for how, draw in [("critical", 0), ("magnitude", 0)] + [("random", d) for d in range(random_draws)]:
                masks = fidelity_masks(g, share, how, su.model, seed=mask_seed(seed, c, draw))
                with masked(su.model, masks, su.n_parents):
                    rows.append({"class": c, "class_name": su.classes[c], "share": share, "ranking": how,
                                 "accuracy": accuracy(su.model, xc, yc),
                                 "masked_nodes": sum(len(k.parents) for k in masks)})
    return rows


def fidelity_at(rows) -> tuple[float, float | None, dict]:
    """Fig. 10's reading of `fidelity_rows` (a DataFrame, one model): the unmasked class accuracy, the largest share of
    at most 20% (None if there is none) and the mean class accuracy there per ranking."""
    d = rows.groupby(["ranking", "share"]).accuracy.mean()
    small = [s for s in sorted(set(rows.share)) if 0 < s <= 0.2]
    if not small:
        return float(d["critical"][0.0]), None, {}
    return float(d["critical"][0.0]), float(small[-1]), {h: float(d[h][small[-1]]) for h in ("critical", "random", "magnitude")}


def repair_rows(su: Setup, shares, random_draws: int, seed: int, all_classes_examples: int | None,
                desc: str = "classes") -> list[dict]:
    """Fig. 11: per class graph and share, with that share of the class's distracting-then-irrelevant parents masked
    (`graph`), of its irrelevant parents only (`irrelevant`) and of as many random parents (`random`, `mask_seed`):
    the class accuracy and, on `all_classes_examples` evaluation examples of every class, `class_bias`."""
    from .progress import progress

    x_all, y_all = su.evaluation_subset(all_classes_examples, seed)
    rows = []
    for c, g in progress(su.graphs.items(), total=len(su.graphs), desc=desc, unit="class"):
        xc, yc = su.class_examples(c)
        for share in shares:
            for how, draw in [("graph", 0), ("irrelevant", 0)] + [("random", d) for d in range(random_draws)]:
                masks = repair_masks(g, share, how, seed=mask_seed(seed, c, draw))
                with masked(su.model, masks, su.n_parents):
                    rows.append({"class": c, "class_name": su.classes[c], "share": share, "mask": how,
                                 "class_accuracy": accuracy(su.model, xc, yc), **class_bias(su.model, x_all, y_all, c),
                                 "masked_nodes": sum(len(k.parents) for k in masks)})
    return rows


def load_setup(stage: str, models_dir, graphs_dir, classes, data_cfg, device: torch.device | str = "cpu") -> Setup:
    """Model of training stage `stage` (on `device`), its graphs under `graphs_dir` and the evaluation split (on the
    CPU); fails early on a missing model or graph and on classes without a graph."""
    from pathlib import Path

    from . import data, models

    path = Path(models_dir) / f"{stage}.pt"
    info = models.model_info(path)
    graphs = {c: ClassGraph.load(p) for c, p in graph_files(graphs_dir, classes).items()}
    model = models.load_model(path).to(device)
    h = data.load_halves(info, data_cfg)
    any_graph = next(iter(graphs.values()))
    return Setup(model, h.data.classes, graphs, h.x, h.y, h.evaluation, {lg.layer: lg.n_parents for lg in any_graph.layers})


def load_setups(cfg: MaskingConfig, models_dir, results_dir, data_cfg, device: torch.device | str = "cpu") -> dict:
    """{stage: `load_setup`} of every training stage of `cfg.models` (in order), its graphs under
    `results_dir/<cfg.graphs_dir>/<stage>/<cfg.graph_test>`; a missing model or graph, or classes without a graph, stop
    here, before any masking runs."""
    from pathlib import Path

    return {m: load_setup(m, Path(models_dir), Path(results_dir) / cfg.graphs_dir / m / cfg.graph_test, cfg.classes,
                          data_cfg, device=device) for m in cfg.models}


SWEEPS = ("fidelity", "repair")


def sweep(kind: str, setups: dict, cfg: MaskingConfig) -> tuple[list[dict], float]:
    """Fig. 10 (`kind="fidelity"`: `fidelity_rows`) or fig. 11 (`"repair"`: `repair_rows`) of every model of `setups`
    with `cfg`'s shares, draws and seed: the rows, each with its `model` first, and the seconds they took."""
    import time

    if kind not in SWEEPS:
        raise ValueError(f"unknown masking sweep {kind!r}; use one of {SWEEPS}")
    rows = []
    t0 = time.perf_counter()
    for m, su in setups.items():
        if kind == "fidelity":
            done = fidelity_rows(su, cfg.shares, cfg.random_draws, cfg.seed, desc=f"{m} classes")
        else:
            done = repair_rows(su, cfg.shares, cfg.random_draws, cfg.seed, cfg.all_classes_examples, desc=f"{m} classes")
        rows += [{"model": m, **r} for r in done]
    return rows, time.perf_counter() - t0


def run_record(cfg: MaskingConfig, models, seconds: float) -> dict:
    """`run.json` of a masking sweep: the settings (all but `threads`, which never change the numbers), its seconds
    and the models, in order."""
    from dataclasses import asdict

    return {"settings": {k: v for k, v in asdict(cfg).items() if k != "threads"}, "seconds": seconds,
            "models": list(models)}


def write_sweep(kind: str, setups: dict, cfg: MaskingConfig, out) -> tuple[list[dict], float]:
    """`sweep` into `out/<kind>.csv` and `out/run.json` (`run_record`); returns the rows and the seconds."""
    import json
    from pathlib import Path

    import pandas as pd

    rows, seconds = sweep(kind, setups, cfg)
    pd.DataFrame(rows).to_csv(Path(out) / f"{kind}.csv", index=False)
    (Path(out) / "run.json").write_text(json.dumps(run_record(cfg, setups, seconds), indent=2))
    return rows, seconds


def read_sweep(kind: str, results, out):
    """What `write_sweep` wrote under `results` (compute_<kind>'s folder): the rows as a DataFrame and run.json; the
    csv is copied to `out`, beside the report that reads it."""
    import json
    from pathlib import Path

    import pandas as pd

    if kind not in SWEEPS:
        raise ValueError(f"unknown masking sweep {kind!r}; use one of {SWEEPS}")
    results = Path(results)
    run = json.loads((results / "run.json").read_text())
    df = pd.read_csv(results / f"{kind}.csv", dtype={"model": str, "class_name": str})
    df.to_csv(Path(out) / f"{kind}.csv", index=False)
    return df, run
