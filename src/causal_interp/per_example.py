"""Per-example explanations of the earlier version of the method (`paper/interventional-black-box-explanations.txt`).

* **Per-example graphs** (its Algorithm 1 on one input): top-down from the class, every parent's edges to the current
  targets are removed in turn (hard intervention) and the change of the class score is read against the layer's
  threshold (its eq. 1). The paper's extracted text lost the formula's division and, in Algorithm 1 (line 6), which
  side of the comparison is the intervened score; it reads delta_l = (mu_y - mu_j) / sigma_y, with mu_j the class
  score without intervention and mu_y, sigma_y the mean and standard deviation of the class score over the layer's
  interventions: the layer's mean change in units of its spread. Read literally, line 6 compares every change with
  that one threshold and would put every parameter in G+ or G-, which contradicts the paper's own sec. 3.1 ("many
  parameters that don't have any effect"). Here both sides are put in the same units (the change divided by sigma_y
  against delta_l) and read as a dead zone around "no change": **G+** (the removal lowers the class: necessary, kept
  as the next layer's targets) when the change is below -|mean change|, **G-** (the removal raises it) when above
  +|mean change|, no effect otherwise, |mean change| being the absolute value of the layer's mean change (when the
  changes of both signs cancel, the zone shrinks towards 0). This symmetric zone is a reading, stated as such.
  A layer with a single parent (the input of a grey image) cannot stand out from itself: it is not tested and,
  like every layer reading the input, never masked. The graph is a `ClassGraph` of one example (`examples` = its test
  index; necessary = G+, distracting = G-, irrelevant = the rest; `z` = change / spread; `p` = NaN, no test).
* **The causal score** (its Proposition 2): the paper writes it as an expectation of a log-ratio of softmax
  probabilities with and without the intervention, a KL-type information flow. A divergence has no sign, so the kit
  keeps the signed change of the class's log-probability, log p(k | do(w = 0), x) - log p(k | x) (`effect="kl"`),
  beside the change of the class logit (`effect="logit"`). It needs every class's logit under each intervention: one
  `treatment_effects` call per class.
* **Frequencies** (its fig. 4): the share of a class's examples in whose G+ each parent of each layer appears; a
  conv layer's "causal filters" are its output channels in the G+ of the layer above in more than 80% of them.
* **Correction** (its sec. 3.2 and fig. 5): a wrong prediction is corrected by keeping only the G+ parameters of the
  true class's per-example graph (every other parent's edges to each layer's targets removed; the layer reading the
  input keeps all its parents, as in every stage); a control keeps as many random parents per layer. The graph is
  found with the true label of the very example it corrects.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import bounded
from .discovery import ClassGraph, LayerGraph, layer_chain
from .interventions import Intervention, TracedModel, device_of, treatment_effects
from .masking import LayerMask, masked
from .models import evaluating

EFFECTS = ("logit", "kl")
TEST = "per-example threshold (eq. 1 of the earlier paper)"

# The earlier paper's claims, their criteria and their verdicts (`correction_verdict`, `filters_verdict`) live in
# `verdicts`, beside every other claim: this module computes and judges nothing (it does not import `verdicts`).


@dataclass
class PerExampleConfig:
    """params.yaml section `per_example`."""

    model: str = "train_lenet"
    classes: list = dataclasses.field(default_factory=lambda: [3, 8])   # the earlier paper's digits
    examples: int = bounded(100, 1, 100_000)   # test examples per class (frequencies) ...
    correct_only: bool = True                  # ... correctly classified ones
    effect: str = "logit"                      # the score G+ / G- are read from: logit | kl
    frequent: float = bounded(0.8, 0, 1)       # "causal filters": in G+ of more than this share of the examples
    pairs: list | None = None                  # [[true, predicted], ...]; null: the most frequent confusion and 3 -> 8
    random_draws: int = bounded(10, 1, 10_000)
    layers: list | None = None                 # the chain (default: derived)
    max_batch: int = bounded(4096, 1, 1 << 24)
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)

    def validate(self, section: str) -> None:
        if self.effect not in EFFECTS:
            raise ValueError(f"{section}.effect must be one of {EFFECTS}, got {self.effect!r}")
        if len(self.classes) < 2:
            raise ValueError(f"{section}.classes must name two classes to compare (the earlier paper: [3, 8])")
        for pair in self.pairs or []:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"{section}.pairs: each pair is [true, predicted] with two different classes, got {pair}")


@torch.no_grad()
def class_scores(traced: TracedModel, layer: str, class_index: int, targets, effect: str = "logit",
                 max_batch: int = 4096) -> torch.Tensor:
    """(n_parents, N): per parent of `layer`, the change of the class score when its edges to `targets` are removed,
    on the examples cached in `traced`. `logit`: the class logit (eq. 2 with beta = 0); `kl`: the class's
    log-probability (Proposition 2 of the earlier paper), from every class's logit under the same intervention.
    Computed where the model is; returned on the CPU, as `treatment_effects` returns its effects."""
    hard = Intervention("hard")
    if effect == "logit":
        return treatment_effects(traced, layer, class_index, targets, hard, max_batch=max_batch)
    if effect != "kl":
        raise ValueError(f"effect must be one of {EFFECTS}, got {effect!r}")
    base = traced.logits                                                         # (N, K), where the model is
    changes = torch.stack([treatment_effects(traced, layer, c, targets, hard, max_batch=max_batch)
                           for c in range(base.shape[1])], -1).to(base.device)  # (P, N, K), back from the CPU
    log_p = torch.log_softmax((base.unsqueeze(0) + changes).double(), -1)[..., class_index]
    return (log_p - torch.log_softmax(base.double(), -1)[:, class_index]).to(base.dtype).cpu()


def threshold(changes: torch.Tensor) -> float:
    """The half-width of the dead zone of eq. 1 as read here (see the module docstring): |mean change| of the layer's
    interventions, in the score's own units (|delta_l| times the spread)."""
    return abs(float(changes.double().mean()))


@torch.no_grad()
def example_graph(model: nn.Module, x1: torch.Tensor, class_index: int, example: int = -1, layers=None,
                  effect: str = "logit", traced: TracedModel | None = None, max_batch: int = 4096,
                  model_name: str = "", class_name: str = "") -> ClassGraph:
    """Algorithm 1 of the earlier paper on one input `x1` (1, ...): G+ / G- per layer by the eq. 1 threshold
    (`threshold`), read from the class logit or the causal score (`effect`)."""
    if x1.shape[0] != 1:
        raise ValueError(f"a per-example graph takes one example, got {x1.shape[0]}")
    chain = layer_chain(model, layers)
    traced = traced or TracedModel(model)
    traced.cache(x1, where=f"per-example graph of class {class_index}")
    graph = ClassGraph(class_index, class_name, 1, dataclasses.asdict(Intervention("hard")), TEST, 0.0,
                       model=model_name, examples=[int(example)])
    targets = [class_index]
    for name in reversed(chain):
        n_parents, _ = traced.parents(name)
        if not targets:
            change = torch.zeros(n_parents)
        else:
            change = class_scores(traced, name, class_index, targets, effect, max_batch)[:, 0]
        delta = threshold(change)
        tested = bool(targets) and n_parents > 1          # one parent cannot stand out from its own layer
        plus = torch.nonzero(change < -delta).flatten().tolist() if tested else []
        minus = torch.nonzero(change > delta).flatten().tolist() if tested else []
        spread = float(change.double().std(unbiased=False)) if n_parents > 1 else 0.0
        graph.layers.append(LayerGraph(
            name, n_parents, list(targets), plus, minus, sorted(set(range(n_parents)) - set(plus) - set(minus)),
            mean_effect=change.tolist(), z=(change / spread).tolist() if spread > 0 else [0.0] * n_parents,
            p=[float("nan")] * n_parents))
        targets = plus
    return graph


def class_examples(y: torch.Tensor, pred: torch.Tensor, k: int, n: int, correct_only: bool = True) -> list[int]:
    """The first `n` test indices of class `k` (correctly classified ones with `correct_only`), in test order."""
    ok = (y == k) & (pred == k) if correct_only else (y == k)
    return torch.nonzero(ok).flatten()[:n].tolist()


def score_agreement(a, b) -> float:
    """Spearman correlation of two scores of the same interventions (NaN when either is constant)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")


def frequencies(graphs: list[ClassGraph]) -> dict[str, np.ndarray]:
    """{layer: share of the graphs in whose G+ each parent of the layer appears}."""
    out = {}
    for lg in graphs[0].layers:
        counts = np.zeros(lg.n_parents)
        for g in graphs:
            counts[g.layer(lg.layer).necessary] += 1
        out[lg.layer] = counts / len(graphs)
    return out


def causal_filters(freq: dict[str, np.ndarray], chain: list[str], share: float) -> dict[str, list[int]]:
    """{conv layer: its output channels in the G+ of the next layer up in more than `share` of the examples}: the
    parents of chain[i + 1] are the filters of chain[i]."""
    return {lower: [int(j) for j in np.flatnonzero(freq[upper] > share)] for lower, upper in zip(chain, chain[1:])}


def keep_masks(graph: ClassGraph, keep: dict[str, list[int]] | None = None) -> list[LayerMask]:
    """Masks that remove, at every layer of `graph` but the lowest (its parents are the input channels, never masked),
    the edges to the layer's targets of every parent not kept (default: kept = G+), as the earlier paper's correction
    does."""
    out = []
    for lg in graph.layers[:-1]:
        if not lg.targets:
            continue
        kept = set(lg.necessary if keep is None else keep[lg.layer])
        out.append(LayerMask(lg.layer, [j for j in range(lg.n_parents) if j not in kept], list(lg.targets)))
    return out


def random_keep(graph: ClassGraph, seed: int) -> dict[str, list[int]]:
    """The control: per layer, as many parents as G+ has, drawn at random (`seed`: an int or a sequence of ints)."""
    g = np.random.default_rng(seed)
    return {lg.layer: sorted(g.choice(lg.n_parents, len(lg.necessary), replace=False).tolist()) for lg in graph.layers}


def confusion_pairs(y: torch.Tensor, pred: torch.Tensor, pairs: list | None) -> list[tuple[int, int]]:
    """`pairs` as tuples, or (null) the model's most frequent (true, predicted) confusion and, when the model makes
    that error, (3, 8) as in the earlier paper."""
    if pairs:
        return list(dict.fromkeys(tuple(int(v) for v in p) for p in pairs))
    wrong = y != pred
    if not wrong.any():
        return []
    counts = {}
    for t, p in zip(y[wrong].tolist(), pred[wrong].tolist()):
        counts[(t, p)] = counts.get((t, p), 0) + 1
    top = max(sorted(counts), key=lambda k: counts[k])
    return [top] + ([(3, 8)] if (3, 8) in counts and top != (3, 8) else [])


@torch.no_grad()
def correct(model: nn.Module, x: torch.Tensor, true_class: int, example: int, n_parents: dict, effect: str,
            draws: int, seed: int, layers=None, traced: TracedModel | None = None) -> dict:
    """One wrong prediction: the true class's per-example graph, the prediction with only its G+ kept, and the mean
    of `draws` random controls of the same size. Computed where the model is (`x` is moved there)."""
    graph = example_graph(model, x, true_class, example, layers, effect, traced)
    x = x.to(device_of(model))
    with evaluating(model):                       # the model comes back in the mode it came in, its statistics intact
        p0 = torch.softmax(model(x), 1)[0].cpu()
        with masked(model, keep_masks(graph), n_parents):
            p1 = torch.softmax(model(x), 1)[0].cpu()
        rand = []
        for d in range(draws):
            with masked(model, keep_masks(graph, random_keep(graph, [seed, example, d])), n_parents):
                rand.append(torch.softmax(model(x), 1)[0].cpu())
    rand = torch.stack(rand)
    return {"example": int(example), "true": int(true_class), "predicted_before": int(p0.argmax()),
            "true_prob_before": float(p0[true_class]), "predicted_after": int(p1.argmax()),
            "true_prob_after": float(p1[true_class]), "corrected": bool(int(p1.argmax()) == true_class),
            "kept": sum(len(lg.necessary) for lg in graph.layers[:-1] if lg.targets),
            "random_corrected": float((rand.argmax(1) == true_class).float().mean()),
            "random_true_prob_after": float(rand[:, true_class].mean())}


def jaccard(a, b) -> float:
    """|a & b| / |a | b| (1 for two empty sets)."""
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else 1.0
