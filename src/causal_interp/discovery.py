"""Causal graph discovery (Algorithm 1) with the test of significance of eq. 1.

Top-down: at the classifier the targets are {k}; every parent j of the layer is intervened on (all its
edges to the targets at once, eq. 2), its effects over the examples X are tested, and the necessary
parents become the targets of the next layer down.

Layer chain. The chain is the ordered list of Conv2d/Linear layers the graph walks. Consecutive layers
must be connected channel by channel: the parents of layer l+1 (its input channels, or the channels of a
flattened conv map) are the output channels of layer l, possibly through BatchNorm, ReLU, pooling or
flatten. In residual networks the chain follows the main branch: the parents of a block's first conv are
the channels of the residual stream at the block input, which are, index for index, the outputs of the
previous block's last conv after the residual add. So the necessary parents found at a block's first
conv are the targets of the previous block's last conv. Shortcut (downsample) convs are not in the
chain; their weights are never intervened on. The chain is derived from the traced forward pass
(`layer_chain`), or given per model in params.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from .interventions import (Intervention, NonFiniteError, TracedModel, _out_nodes, check_finite, check_layer,
                            device_of, examples_per_cache, trace, treatment_effects)
from . import fanout, first_order
from .config import bounded
from .models import evaluating
from .progress import progress

TESTS = ("two_sample", "paired")
GRAPH_FORMAT = 3  # bump when ClassGraph's JSON or its labelling changes: cached graphs of other formats are not reused


def layer_chain(model: nn.Module, layers: list[str] | None = None) -> list[str]:
    """The Conv2d/Linear layers the graph walks, in forward order.

    With `layers` given, they are checked (exist, are Conv2d/Linear, are in forward order); otherwise the
    chain is derived from the traced forward pass: the longest path of Conv2d/Linear layers that ends at the
    layer producing the logits. In residual networks it follows the main branch (conv1 -> conv2 [-> conv3]
    of every block) and skips the shortcut/downsample convs, which are shorter paths to the same add;
    depthwise convs, inverted residuals (MobileNetV2), ConvNeXt's channels-last MLPs and the convs between
    stages are on the path. Every layer of the chain is checked by `check_layer` (the error names the layer).
    """
    traced = trace(model)
    modules = dict(traced.named_modules())
    order = [n.target for n in traced.graph.nodes if n.op == "call_module"
             and isinstance(modules[n.target], (nn.Conv2d, nn.Linear))]
    if not order:
        raise ValueError(f"{type(model).__name__} has no Conv2d/Linear layer to analyse")
    if layers is None:
        layers = _longest_layer_path(traced, modules)
    for name in layers:
        if name not in modules:
            close = [o for o in order if name.split(".")[-1] in o][:5]
            raise KeyError(f"unknown layer {name!r}" + (f"; similar: {close}" if close else f"; layers: {order[:8]}..."))
        if name not in order:
            raise TypeError(f"layer {name!r} is a {type(modules[name]).__name__}; only Conv2d/Linear layers can be analysed")
        check_layer(modules[name], name)
    positions = [order.index(n) for n in layers]
    if positions != sorted(positions):
        raise ValueError(f"layers must be given in forward order: {layers}")
    return list(layers)


class LayerRunError(ValueError):
    """A layer of the chain on which the engine cannot run an intervention (named with the reason before any
    discovery starts)."""


def check_chain_runs(traced: TracedModel, chain: list[str], class_index: int, x: torch.Tensor) -> None:
    """Run the engine on every layer of `chain` before any discovery, on two examples: two parents with an edge to
    the targets (in a grouped conv: the first channel of two groups) intervened together (one batch of 2 x 2) and one
    at a time. First the traced forward pass is compared with the model's own. A layer that raises, or whose effects
    change with the number of interventions in a batch (a model that mixes the examples of a batch, say), stops the
    run with its name and the reason. `traced` is left with the two examples cached."""
    logits = traced.cache(x[:2], where=f"class {class_index}, checking the layers")
    with torch.no_grad(), evaluating(traced.model):
        own = traced.model(x[:2].to(traced.device, copy=True))   # a model that changes its input in place changes a copy
    if not torch.allclose(logits, own, rtol=1e-4, atol=1e-5 * (1 + float(own.abs().max()))):
        raise LayerRunError(f"the traced model's logits differ from the model's own by up to "
                            f"{float((logits - own).abs().max()):.3g}: its forward pass does something torch.fx cannot "
                            f"replay (in-place updates of views, say); the engine cannot analyse it")
    for depth, name in enumerate(reversed(chain)):
        module = traced.modules[name]
        try:
            n = traced.parents(name)[0]
            # two parents with an edge to the targets: in a grouped (depthwise) conv, the first of two groups
            groups = getattr(module, "groups", 1)
            step_in, step_out = (n // groups, _out_nodes(module) // groups) if groups > 1 else (1, 0)
            parents = [j for j in (0, step_in) if j < n]
            targets = [class_index] if depth == 0 else sorted({0, step_out})
            together = treatment_effects(traced, name, class_index, targets, Intervention(), parents=parents)
            alone = torch.cat([treatment_effects(traced, name, class_index, targets, Intervention(), parents=[j])
                               for j in parents])
        except NonFiniteError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of the engine on this layer is reported with its name
            raise LayerRunError(f"layer {name!r}: the engine cannot run an intervention on it ({type(e).__name__}: "
                                f"{e}); give a layer chain without it (discover_graphs.layers)") from e
        if not torch.allclose(together, alone, rtol=1e-4, atol=1e-5 * (1 + float(traced.logits.abs().max()))):
            raise LayerRunError(f"layer {name!r}: effects differ when interventions share a batch (largest gap "
                                f"{float((together - alone).abs().max()):.3g}): the model mixes the examples of a "
                                f"batch, or reads something upstream of the layer that the engine cannot see; give "
                                f"a layer chain without it")


def _channel_connected(lower: nn.Module, upper: nn.Module) -> bool:
    """Whether the outputs of `lower` can be the parents of `upper` one to one (`upper`'s input channels or features;
    a linear layer after a flattened conv map: the map's channels). A vision transformer's qkv layer (3C outputs)
    and its attention's proj (C inputs) are not: attention mixes the q, k and v channels."""
    out = _out_nodes(lower)
    if isinstance(upper, nn.Conv2d):
        return upper.in_channels == out
    return upper.in_features == out or (isinstance(lower, nn.Conv2d) and upper.in_features % out == 0)


def _reads_shape(node: torch.fx.Node) -> bool:
    """`x.shape`, `x.size()`, `x.dim()`: a value about a tensor's shape, not a path for the tensor's values."""
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] in ("shape", "ndim", "dtype", "device")
    return node.op == "call_method" and node.target in ("size", "dim")


def _longest_layer_path(traced: torch.fx.GraphModule, modules: dict) -> list[str]:
    """Longest path through Conv2d/Linear layers (edges: a layer's nearest analysable ancestors whose outputs are its
    parents one to one, `_channel_connected`; shape reads are not edges) ending at the last such layer before the
    output; ties go to the later layer in forward order. A layer with analysable ancestors none of which is connected
    to it restarts a path one step shorter than one from the input. In a vision transformer the path therefore runs
    along the residual stream through every block's MLP (fc1 -> fc2), from the patch embedding to the head:
    attention's proj reads channels that attention has mixed from qkv's 3C outputs. Attention is still computed
    downstream of every intervention. In a Swin transformer (patch merging: 4C parents) and after a concatenation
    the path restarts, so it covers the last stage only."""
    upstream: dict = {}   # fx node -> nearest Conv2d/Linear layers feeding it
    length, previous = {}, {}
    for position, node in enumerate(traced.graph.nodes):
        feeding = set().union(*(upstream.get(a, set()) for a in node.all_input_nodes)) if node.all_input_nodes else set()
        if node.op == "call_module" and isinstance(modules[node.target], (nn.Conv2d, nn.Linear)):
            joined = [p for p in feeding if _channel_connected(modules[p], modules[node.target])]
            best = max(joined, key=lambda p: (length[p][0], length[p][1]), default=None)
            # a path starts at the first layer (length 1) or restarts at a layer none of whose analysable ancestors
            # is connected to it (length 0: attention's proj, a Swin patch merging, a layer after a concatenation)
            length[node.target] = (length[best][0] + 1 if best else 0 if feeding else 1, position)
            previous[node.target] = best
            upstream[node] = {node.target}
        else:
            upstream[node] = set() if _reads_shape(node) else feeding
        if node.op == "output":
            last = max(feeding, key=lambda p: length[p][1])
    path = [last]
    while previous[path[-1]] is not None:
        path.append(previous[path[-1]])
    return path[::-1]


ROUNDING = 4 * torch.finfo(torch.float32).eps   # x |logit|: the resolution of a float32 logit difference


def significance(effects: torch.Tensor, base: torch.Tensor, method: str = "two_sample", alpha: float = 0.05,
                 min_effect: float = 0.0):
    """z statistic, p-value, label and degenerate flag per parent (eq. 1).

    two_sample (the authors' code): one-sided test of mean(y_do) against mean(y) with
    se = sqrt(var_do/n + var/n). paired: z = mean(TE) / (std(TE) / sqrt(n)) on per-example effects.
    Label: 'necessary' when z < -z_{1-alpha} (removing the edges lowers the logit), 'distracting' when
    z > z_{1-alpha}, else 'irrelevant'. p is the one-sided p-value of the direction of the effect.

    Effect-size floor (`min_effect`, default 0 = none): a parent is necessary (distracting) only if, besides the
    test, its mean effect is below -min_effect (above +min_effect) times the spread (standard deviation over the
    examples) of the class logit itself. With many near-deterministic examples the paired test calls even a
    consistent 1e-4 change "significant"; the floor asks for an effect of a size that matters for the logit.

    Zero and near-zero variance, the documented rule (both tests). Effects are differences of float32 logits, so
    they are resolved only to r = 4 * eps_float32 * max |y_k| (about 5e-6 for logits near 10). The spread of a
    test is se * sqrt(n): the standard deviation of the effects (paired), sqrt(var_do + var) (two-sample).
    * spread and |mean effect| both <= r: no measurable effect; irrelevant, z = 0, p = 1 (e.g. a parent whose
      effect is exactly zero on every example);
    * spread <= r but |mean effect| > r (identical examples, or an effect that does not vary): the test is
      degenerate, z would be +-inf or a rounding artefact and any effect, however tiny, "significant". It is
      labelled irrelevant with z = 0, p = 1 and flagged `degenerate` (returned here, kept in the graph file and
      logged by discovery), never silently;
    * spread > r: tested as above.
    """
    if method not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {method!r}")
    effects = effects.double()
    n = effects.shape[1]
    diff = effects.mean(1)
    if n < 2:
        se = torch.zeros_like(diff)
    elif method == "two_sample":
        y_do = base.double()[None] + effects
        se = torch.sqrt(y_do.var(1) / n + base.double().var() / n)
    else:
        se = effects.std(1) / np.sqrt(n)
    spread = se * np.sqrt(n)
    resolution = ROUNDING * float(base.double().abs().max()) if len(base) else 0.0
    testable = spread > resolution                 # False for no measurable effect and for degenerate tests
    degenerate = (~testable & (diff.abs() > resolution)).numpy()
    z = torch.where(testable, diff / torch.where(testable, se, 1.0), 0.0)
    crit = norm.ppf(1 - alpha)
    zn = z.numpy()
    p = norm.sf(np.abs(zn))
    p[~testable.numpy()] = 1.0
    floor = min_effect * float(base.double().std()) if min_effect > 0 and n > 1 else 0.0
    d = diff.numpy()
    labels = np.where((zn < -crit) & (d <= -floor), "necessary",
                      np.where((zn > crit) & (d >= floor), "distracting", "irrelevant"))
    return zn, p, labels, degenerate


FALLBACK_RELATIVE = -0.001   # the authors' fallback: mean relative effect below -0.1% (explain.py, select_causal_path)


def fallback_parents(effects: torch.Tensor, base: torch.Tensor) -> list[int]:
    """The authors' fallback when no parent of a layer passes their test: every parent whose mean *relative* effect,
    mean over x of TE_j(x) / y_k(x), is below -0.001 (their `relative_diff`, y_do / y - 1)."""
    relative = (effects.double() / base.double()[None]).mean(1)
    return [int(j) for j in torch.nonzero(relative < FALLBACK_RELATIVE).flatten()]


@dataclass
class LayerGraph:
    """One step of Algorithm 1: parents of `layer` tested against their edges to `targets`."""

    layer: str
    n_parents: int
    targets: list[int]
    necessary: list[int]
    distracting: list[int]
    irrelevant: list[int]
    mean_effect: list[float]   # per parent, mean over X of TE_j (eq. 2)
    z: list[float]
    p: list[float]
    seconds: float = 0.0       # wall time of this layer's interventions
    degenerate: list[int] = field(default_factory=list)   # parents whose test had zero variance (see `significance`)
    fallback: bool = False     # no parent passed the test; the necessary ones come from the authors' fallback
    screen: dict = field(default_factory=dict)   # `effects: screened`: what the screen did (`first_order.screen`)

    def edges(self) -> list[tuple[int, int]]:
        """Edges kept in the graph: every necessary parent to every target."""
        return [(j, t) for j in self.necessary for t in self.targets]

    def ranked(self, nodes: list[int] | None = None) -> list[int]:
        """`nodes` (default: necessary) sorted by decreasing |mean effect|."""
        nodes = self.necessary if nodes is None else nodes
        return sorted(nodes, key=lambda j: -abs(self.mean_effect[j]))


@dataclass
class ClassGraph:
    """The causal graph of one class: per layer (classifier first) its necessary nodes, and D."""

    class_index: int
    class_name: str
    n_examples: int
    intervention: dict
    test: str
    alpha: float
    layers: list[LayerGraph] = field(default_factory=list)
    model: str = ""
    examples: list[int] = field(default_factory=list)   # indices of X in the discovery split
    min_effect: float = 0.0    # effect-size floor of the test (see `significance`)
    fallback: bool = False     # the authors' fallback applied where no parent passed (see `fallback_parents`)
    effects: str = "exact"     # how the effects were computed (`first_order.EFFECTS`): exact, or a first-order estimate

    def layer(self, name: str) -> LayerGraph:
        for lg in self.layers:
            if lg.layer == name:
                return lg
        raise KeyError(f"layer {name!r} not in graph ({[lg.layer for lg in self.layers]})")

    def sizes(self) -> dict:
        return {lg.layer: {"necessary": len(lg.necessary), "distracting": len(lg.distracting),
                           "irrelevant": len(lg.irrelevant), "parents": lg.n_parents} for lg in self.layers}

    def to_dict(self) -> dict:
        """The graph as JSON-ready data. The test options `min_effect` / `fallback` and a first-order `effects` are
        written only when set, so a graph found without them reads exactly as before they existed (its cached scores
        stay valid)."""
        d = dataclasses.asdict(self)
        for key in ("min_effect", "fallback"):
            if not d[key]:
                del d[key]
        if d["effects"] == "exact":
            del d["effects"]
        for lg in d["layers"]:
            for key in ("fallback", "screen"):
                if not lg[key]:
                    del lg[key]
        return d

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(self.to_dict(), allow_nan=True))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d: dict) -> "ClassGraph":
        d = dict(d)
        d["layers"] = [LayerGraph(**lg) for lg in d["layers"]]
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "ClassGraph":
        return cls.from_dict(json.loads(Path(path).read_text()))


def graph_files(folder: str | Path, classes: list[int] | None = None) -> dict[int, Path]:
    """{class: path} of the `class_<k>.json` graphs in `folder` (all of them, or `classes`); fails early on
    an empty folder or a class without a graph."""
    found = {int(p.stem[6:]): p for p in Path(folder).glob("class_*.json")}
    if not found:
        raise FileNotFoundError(f"no graphs under {folder}; run discover_graphs first")
    wanted = sorted(found) if classes is None else list(classes)
    missing = [c for c in wanted if c not in found]
    if missing:
        raise IndexError(f"no discovered graph for class {missing} under {folder} (have {sorted(found)})")
    return {c: found[c] for c in wanted}


def discover_class_graph(model: nn.Module, x: torch.Tensor, class_index: int, layers: list[str] | None = None,
                         intervention: Intervention | None = None, test: str = "two_sample", alpha: float = 0.05,
                         class_name: str = "", model_name: str = "", max_batch: int = 4096,
                         traced: TracedModel | None = None, bar=None, min_effect: float = 0.0,
                         fallback: bool = False, effects: str = "exact", ig_steps: int = 8,
                         screen_margin: float = 4.0, screen_sample: float = 0.1) -> ClassGraph:
    """Algorithm 1 for class `class_index` on examples `x` (correctly classified examples of the class).

    All inputs are checked before any intervention: unknown layer names, a class index out of range,
    an unknown test, chains whose consecutive layers are not connected channel by channel, and NaN/inf in
    the examples or their logits (`NonFiniteError`, naming the class and the layer; effects are checked too).
    The model comes back in the train/eval mode it came in. `bar` (a `progress` bar) advances by one per layer.
    `min_effect`: the effect-size floor of `significance`; `fallback`: where no parent passes, keep the parents
    of `fallback_parents` (what the authors' code does), flagging the layer.
    `effects`: `exact` (the default, eq. 2 by intervention), or a first-order estimate (`first_order`): `taylor`,
    `taylor_ig` (`ig_steps` gradients), or `screened` (`taylor_ig`, then exact effects wherever the estimate is not
    clearly irrelevant under `screen_margin`, and for a `screen_sample` share of the rest).
    """
    intervention = intervention or Intervention()
    if effects not in first_order.EFFECTS:
        raise ValueError(f"effects must be one of {first_order.EFFECTS}, got {effects!r}")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    chain = layer_chain(model, layers)
    traced = traced or TracedModel(model)
    if class_index < 0 or class_index >= _out_nodes(traced.modules[chain[-1]]):
        raise IndexError(f"class index {class_index} out of range [0, {_out_nodes(traced.modules[chain[-1]])})")
    if len(x) < 2:
        raise ValueError(f"need at least 2 examples for the test of significance, got {len(x)}")
    traced.cache(x, where=f"class {class_index}")
    parents = {name: traced.parents(name)[0] for name in chain}
    for lower, upper in zip(chain, chain[1:]):
        if parents[upper] != _out_nodes(traced.modules[lower]):
            raise ValueError(f"layers {lower!r} -> {upper!r} are not connected channel by channel "
                             f"({_out_nodes(traced.modules[lower])} outputs, {parents[upper]} parents); "
                             f"give the chain explicitly")
    check_chain_runs(traced, chain, class_index, x)       # every layer runs, or is named, before any discovery
    per_cache = examples_per_cache(traced, len(x))        # all of them, except where a GPU's memory is too small
    spans = [(i, min(i + per_cache, len(x))) for i in range(0, len(x), per_cache)]
    if len(spans) == 1:
        traced.cache(x, where=f"class {class_index}")

    def over_examples(fn) -> tuple[torch.Tensor, torch.Tensor]:
        """fn() (effects of parents, (P, n)) on every example, and the examples' logits of the class: at once, or one
        span of examples at a time (`examples_per_cache`)."""
        if len(spans) == 1:
            return fn(), traced.logits[:, class_index].cpu()
        te, base = [], []
        for a, b in spans:
            traced.cache(x[a:b], where=f"class {class_index}")
            te.append(fn())
            base.append(traced.logits[:, class_index].cpu())
        return torch.cat(te, 1), torch.cat(base)

    def layer_effects(name: str, targets: list[int], iv: Intervention) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """TE of `name`'s parents on every example (eq. 2, or its estimate: `effects`), the class logits, and what a
        screen did. Every span and every estimator uses the same draws."""
        betas = None if iv.mode == "constant" or len(spans) == 1 and effects == "exact" else \
            iv.beta((len(targets), parents[name]))

        def exact(subset=None):
            return over_examples(lambda: treatment_effects(traced, name, class_index, targets, iv, parents=subset,
                                                           max_batch=max_batch, betas=betas))[0]

        if effects == "exact":
            return (*over_examples(lambda: treatment_effects(traced, name, class_index, targets, iv,
                                                             max_batch=max_batch, betas=betas)), {})
        steps = 1 if effects == "taylor" else ig_steps
        est, base = over_examples(lambda: first_order.estimated_effects(traced, name, class_index, targets, iv, steps,
                                                                        betas=betas, max_batch=max_batch))
        if effects != "screened":
            return est, base, {}
        te, info = first_order.screen(est, base, exact, test, alpha, min_effect, screen_margin, screen_sample,
                                      seed=iv.seed)
        return te, base, info

    graph = ClassGraph(class_index, class_name, len(x), dataclasses.asdict(intervention), test, alpha, model=model_name,
                       min_effect=min_effect, fallback=fallback, effects=effects)
    targets = [class_index]
    for depth, name in enumerate(reversed(chain)):
        if not targets:  # nothing upstream can matter any more
            graph.layers.append(LayerGraph(name, parents[name], [], [], [], list(range(parents[name])),
                                           [0.0] * parents[name], [0.0] * parents[name], [1.0] * parents[name]))
            if bar is not None:
                bar.update(1)
            continue
        iv = dataclasses.replace(intervention, seed=intervention.seed * 1009 + depth)
        t0 = time.perf_counter()
        te, base, screened = layer_effects(name, targets, iv)
        z, p, labels, degenerate = significance(te, base, test, alpha, min_effect)
        rescued = fallback and not (labels == "necessary").any()
        if rescued:
            labels = labels.copy()
            labels[fallback_parents(te, base)] = "necessary"
        lg = LayerGraph(name, parents[name], list(targets),
                        necessary=[int(j) for j in np.flatnonzero(labels == "necessary")],
                        distracting=[int(j) for j in np.flatnonzero(labels == "distracting")],
                        irrelevant=[int(j) for j in np.flatnonzero(labels == "irrelevant")],
                        mean_effect=te.mean(1).tolist(), z=z.tolist(), p=p.tolist(),
                        seconds=time.perf_counter() - t0,
                        degenerate=[int(j) for j in np.flatnonzero(degenerate)], fallback=bool(rescued),
                        screen=screened)
        graph.layers.append(lg)
        targets = lg.necessary
        if bar is not None:
            bar.set_postfix_str(f"class {class_index}, {name}", refresh=False)
            bar.update(1)
    return graph


@torch.no_grad()
def class_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, class_index: int, n: int,
                   batch_size: int = 512, correct_only: bool = True) -> torch.Tensor:
    """Indices (into x) of the first `n` examples of `class_index` that `model` classifies correctly
    (with `correct_only=False`: the first `n` examples of the class). Predictions in eval mode, where the model is."""
    idx = torch.nonzero(y == class_index).flatten()
    if not correct_only:
        return idx[:n]
    keep, device = [], device_of(model)
    with evaluating(model):
        for i in range(0, len(idx), batch_size):
            b = idx[i:i + batch_size]
            keep.append(b[model(x[b].to(device)).argmax(1).cpu() == class_index])
            if sum(len(k) for k in keep) >= n:
                break
    return torch.cat(keep)[:n] if keep else idx[:0]


@dataclass
class DiscoveryConfig:
    """params.yaml section `discover_graphs`."""

    models: list = field(default_factory=lambda: ["train_lenet", "finetune_cifar10"])  # training stages
    classes: list | None = None          # null: every class
    examples_per_class: int = bounded(100, 2, 100_000)
    correct_only: bool = True            # the paper: correctly classified examples only
    test: str = "paired"
    compare_test: str | None = "two_sample"  # also discover with this test, for the comparison table
    alpha: float = bounded(0.05, 0, 1, low_open=True, high_open=True)
    min_effect: float = bounded(0.0, 0)  # paired test: effect-size floor, x the class logit's spread (`significance`)
    fallback: bool = False               # where no parent passes, keep the authors' fallback parents (their code)
    intervention: str = "hard"
    b: float = bounded(0.0, 0, 1)
    eps: float = bounded(0.01, 0, 0.5)
    layers: dict = field(default_factory=dict)   # training stage -> explicit layer chain
    graphs_dir: str = "graphs"           # graphs are written to results/<graphs_dir>/<model>/<test>/
    figure_class: int = bounded(3, 0)    # class shown in figs. 3-6 (one of `classes`)
    max_batch: int = bounded(4096, 1)
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)
    workers: int | None = bounded(None, 1, 1024)   # Ray workers (fanout.py); null: in-process, or RAY_ADDRESS's
    effects: str = "exact"               # exact (eq. 2 by intervention), or first-order: taylor, taylor_ig, screened
    ig_steps: int = bounded(8, 1, 1000)  # taylor_ig / screened: gradients along the path (first_order.py)
    screen_margin: float = bounded(4.0, 1)   # screened: exact for every edge with |z| >= z_{1-alpha} / margin ...
    screen_sample: float = bounded(0.1, 0, 1)   # ... and for this share of the rest (the false-negative rate)

    def validate(self, section: str) -> None:
        if self.effects not in first_order.EFFECTS:
            raise ValueError(f"{section}.effects must be one of {first_order.EFFECTS}, got {self.effects!r}")
        if self.test not in TESTS or (self.compare_test is not None and self.compare_test not in TESTS):
            raise ValueError(f"{section}.test / compare_test must be one of {TESTS}")
        if self.examples_per_class < 2:
            raise ValueError(f"{section}.examples_per_class must be >= 2")
        if not 0 < self.alpha < 1:
            raise ValueError(f"{section}.alpha must be in (0, 1)")
        if not isinstance(self.models, list) or not self.models:
            raise ValueError(f"{section}.models must be a non-empty list of training stages")
        unknown = set(self.layers) - set(self.models)
        if unknown:
            raise ValueError(f"{section}.layers names models not in {section}.models: {sorted(unknown)}")
        if self.classes is not None:
            if not self.classes or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                           for c in self.classes):
                raise ValueError(f"{section}.classes must be null or a non-empty list of class indices")
            if self.figure_class not in self.classes:
                raise ValueError(f"{section}.figure_class {self.figure_class} is not one of {section}.classes "
                                 f"{self.classes}")
        Intervention(self.intervention, self.b, self.eps, seed=self.seed)  # raises on a bad mode / b

    def intervention_obj(self) -> Intervention:
        return Intervention(self.intervention, self.b, self.eps, seed=self.seed)


def check_classes(classes, num_classes: int) -> list[int]:
    """The validated class list (`None`: all classes)."""
    if classes is None:
        return list(range(num_classes))
    bad = [c for c in classes if not isinstance(c, int) or not 0 <= c < num_classes]
    if bad:
        raise IndexError(f"class index {bad} out of range [0, {num_classes})")
    return list(classes)


def discover_all(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[int], class_names: list[str],
                 n_examples: int, intervention: Intervention, test: str, alpha: float, layers=None,
                 cache_dir: str | Path | None = None, key: str = "", max_batch: int = 4096, correct_only: bool = True,
                 log=print, desc: str = "graphs", min_effect: float = 0.0, fallback: bool = False,
                 workers: int | None = None, effects: str = "exact", ig_steps: int = 8, screen_margin: float = 4.0,
                 screen_sample: float = 0.1) -> dict:
    """Graphs of `classes` on the examples (x, y) (the discovery split), one class at a time, or fanned out over
    Ray workers (`workers`, RAY_ADDRESS: `fanout.run`; the same graphs).

    Each finished graph is written to `cache_dir/<key>/class_<k>.json` and reused on a re-run with the same
    `key` (callers put the model hash and settings in it), so an interrupted run loses at most the classes running.
    Returns {class: (graph, seconds)} (seconds = 0.0 for graphs taken from the cache). Every class's examples
    are checked for NaN/inf before the first graph is discovered; degenerate tests are logged.
    """
    chain = layer_chain(model, layers)  # fail on bad layer names before anything else
    for k in classes:           # ... and on non-finite examples, before any graph file is written
        check_finite(x[y == k], "input values", f"class {k}, input of layer {chain[0]!r}, discovery examples")
    out = {}
    folder = Path(cache_dir) / f"{key}-v{GRAPH_FORMAT}" if cache_dir else None
    bar = progress(total=len(classes) * len(chain), desc=desc, unit="layer")
    todo = []
    for k in classes:
        path = folder / f"class_{k}.json" if folder else None
        if path is not None and path.exists():
            out[k] = (ClassGraph.load(path), 0.0)
            log(f"class {k}: from cache")
            bar.update(len(chain))
        else:
            todo.append(k)

    # --- fan-out (fanout.py): one unit = one class graph, computed here or on a Ray worker; saved here as it comes
    def one(k, bar=None):
        idx = class_examples(model, x, y, k, n_examples, correct_only=correct_only)
        if len(idx) < 2:
            raise ValueError(f"class {k}: only {len(idx)} correctly classified examples in the discovery split")
        t0 = time.perf_counter()
        g = discover_class_graph(model, x[idx], k, layers, intervention, test, alpha, class_name=class_names[k],
                                 max_batch=max_batch, bar=bar, min_effect=min_effect, fallback=fallback,
                                 effects=effects, ig_steps=ig_steps, screen_margin=screen_margin,
                                 screen_sample=screen_sample)
        seconds = time.perf_counter() - t0
        g.examples = idx.tolist()
        return g, seconds

    def finished(i, result):
        k, (g, seconds) = todo[i], result
        if folder is not None:
            g.save(folder / f"class_{k}.json")
        out[k] = result
        if remote:
            bar.update(len(chain))
        log(f"class {k}: {g.n_examples} examples, {seconds:.1f}s, necessary per layer "
            f"{[len(lg.necessary) for lg in g.layers]}")
        warn_degenerate(g, log)

    remote = fanout.uses_ray(workers)
    fanout.run(one if remote else functools.partial(one, bar=bar), todo, workers, done=finished)
    # --- end of fan-out
    bar.close()
    return {k: out[k] for k in classes}


def warn_degenerate(graph: ClassGraph, log=print) -> int:
    """Log the layers of `graph` with degenerate (zero-variance) tests; returns how many parents were affected."""
    counts = {lg.layer: len(lg.degenerate) for lg in graph.layers if lg.degenerate}
    if counts:
        log(f"WARNING class {graph.class_index}: zero-variance (degenerate) tests, labelled irrelevant and flagged "
            f"`degenerate` in the graph file, per layer: {counts}")
    return sum(counts.values())


def sizes_table(graphs: dict) -> list[dict]:
    """Rows (class, layer, parents, necessary, distracting, irrelevant) for a table of graph sizes."""
    rows = []
    for k, (g, _) in graphs.items():
        for layer, s in g.sizes().items():
            rows.append({"class": k, "class_name": g.class_name, "layer": layer, **s})
    return rows
