"""Path interventions on weights and their treatment effects (eq. 2), batched.

Intervening on parent node j of layer l towards targets T of layer l+1 replaces w_{j->t} by
beta * w_{j->t} for every t in T (the paper), or by a constant u (the authors' code, `mode="constant"`).
The effect on the class logit is TE_j(x) = y_k(x | do(w_{j->T})) - y_k(x).

How it is computed fast, and exactly:
* the network is traced once with torch.fx; one forward pass over the examples X caches every
  activation, so nothing upstream of the intervened layer is ever recomputed;
* the intervened layer is linear in its weights: its output under the intervention is
  z + f(a_j, dW_{.,j}) with dW = beta*W - W, so the changed outputs of *all* parents come from one
  grouped convolution (or one einsum for linear layers) on the cached input a;
* only the part of the graph downstream of the layer runs, on a (parents x examples) batch in chunks.
`naive_effects` is the reference the authors' code follows (deep-copied weights, one intervention and
one example at a time); the tests hold the two to 1e-4.

Nodes: the parents of a Conv2d are its input channels; the parents of a Linear layer are its input
features, or, when the input is a flattened conv map (in_features = C*h*w), its C channels, each the
block of h*w features of that channel, or, for a Linear applied channels-last to a (N, h, w, C) map
(ConvNeXt's MLP), its C input channels. In a grouped or depthwise conv, parent j has edges only to the
outputs of its own group; parents without an edge to the targets have no effect and are not run.
"""
from __future__ import annotations

import copy
import functools
import operator
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .models import evaluating

MODES = ("hard", "soft", "constant")


def device_of(model: nn.Module) -> torch.device:
    """Where `model` computes (its first parameter's device; the CPU for a model without any). The engine moves its
    inputs there and returns its results on the CPU, so the same code runs on a GPU and, bit for bit as before, on a CPU."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


class NonFiniteError(ValueError):
    """NaN or inf in the inputs, logits or treatment effects: the engine stops rather than test them (every z
    would be NaN, nothing significant, and an empty graph would look like a finding)."""


def check_finite(values: torch.Tensor, what: str, where: str, example_dim: int = 0, labels=None) -> None:
    """Raise `NonFiniteError` naming `where` (class, layer) and how many examples (slices along `example_dim`)
    hold a NaN or inf in `values`; `labels` (one per example) adds the classes of the affected examples."""
    flat = values.detach().movedim(example_dim, 0).flatten(1) if values.dim() > 1 else values.detach()[:, None]
    bad = (~torch.isfinite(flat).all(1)).cpu()
    if bad.any():
        classes = "" if labels is None else f" (classes {sorted(set(torch.as_tensor(labels)[bad].tolist()))})"
        raise NonFiniteError(f"{where}: {int(bad.sum())} of {len(bad)} examples{classes} have non-finite {what} "
                             f"(NaN or inf); nothing was tested or written")


@dataclass
class Intervention:
    """How the edge weights w_{j->T} are replaced.

    hard: beta = 0; soft: beta ~ U(b - eps, b + eps), one draw per edge; constant: w = u
    (the authors' public code). `seed` makes soft draws reproducible.
    """

    mode: str = "hard"
    b: float = 0.0
    eps: float = 0.01
    u: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"intervention mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "soft" and not (0.0 <= self.b - self.eps and self.b + self.eps <= 1.0):
            raise ValueError(f"soft intervention needs 0 <= b - eps and b + eps <= 1, got b={self.b}, eps={self.eps}")

    def beta(self, shape, generator: torch.Generator | None = None) -> torch.Tensor:
        """The beta of every edge (hard: zeros; soft: uniform draws)."""
        if self.mode == "hard":
            return torch.zeros(shape)
        if self.mode == "soft":
            g = generator or torch.Generator().manual_seed(self.seed)
            return self.b - self.eps + 2 * self.eps * torch.rand(shape, generator=g)
        raise ValueError("a constant intervention has no beta")

    def new_weights(self, w: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor:
        """Replacement for the weight slices `w` (edges on dim 0 and 1) given per-edge `beta`."""
        if self.mode == "constant":
            return torch.full_like(w, self.u)
        return beta.view(*beta.shape, *([1] * (w.dim() - 2))).to(device=w.device, dtype=w.dtype) * w


def _timm_convs() -> dict:
    """timm's convolutions with their own forward that are still linear in one weight: {class: kind}.

    standardised / scaled: StdConv2d, ScaledStdConv2d (BiT, NFNet) convolve with the standardised (and scaled) weight,
    and their `...Same` variants pad dynamically when `same_pad`; same: Conv2dSame (TF ports) pads dynamically
    ("same") and convolves with the stored weight; linear: timm's Linear (F.linear on the stored weight)."""
    try:
        from timm.layers import Conv2dSame, Linear, ScaledStdConv2d, ScaledStdConv2dSame, StdConv2d, StdConv2dSame
    except ImportError:      # pragma: no cover - timm is a dependency
        return {}
    return {StdConv2d: "standardised", StdConv2dSame: "standardised", ScaledStdConv2d: "scaled",
            ScaledStdConv2dSame: "scaled", Conv2dSame: "same", Linear: "linear"}


def is_standardised(module: nn.Module) -> bool:
    """True for a weight-standardised conv: its effective weight is not its stored weight."""
    return _timm_convs().get(type(module)) in ("standardised", "scaled")


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The weight the layer applies: `module.weight`, or for a weight-standardised timm conv (StdConv2d,
    ScaledStdConv2d, their Same variants) the standardised (and scaled) weight, computed as its forward does.
    An intervention on such a layer replaces entries of this effective weight: an edge is what the layer applies."""
    kind = _timm_convs().get(type(module))
    if kind not in ("standardised", "scaled"):
        return module.weight
    gain = (module.gain * module.scale).view(-1) if kind == "scaled" else None
    w = module.weight
    return F.batch_norm(w.reshape(1, module.out_channels, -1), None, None, weight=gain, training=True, momentum=0.0,
                        eps=module.eps).reshape_as(w)


def conv_input(module: nn.Conv2d, a: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(`a` as the conv reads it, F.conv2d's stride/padding/dilation): timm's dynamic "same" padding (Conv2dSame,
    Std...Same with `same_pad`) is applied to `a` here and the conv then pads nothing."""
    kind = _timm_convs().get(type(module))
    if kind == "same" or (kind is not None and getattr(module, "same_pad", False)):
        from timm.layers import pad_same
        return (pad_same(a, module.kernel_size, module.stride, module.dilation),
                dict(stride=module.stride, padding=(0, 0), dilation=module.dilation))
    return a, dict(stride=module.stride, padding=module.padding, dilation=module.dilation)


def apply_layer(module: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer's output on `x` with `weight` as its effective weight (the brute-force reference and masking use
    it for the weight-standardised convs, whose stored weight cannot simply be edited)."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, module.bias)
    x, conv = conv_input(module, x)
    return F.conv2d(x, weight, module.bias, groups=module.groups, **conv)


def check_layer(module: nn.Module, name: str = "") -> None:
    """Raise, naming the layer and the reason, if interventions cannot be computed exactly on `module`.

    Interventions assume the layer's output is linear in one weight: an nn.Conv2d (groups allowed, zero padding)
    or nn.Linear, a subclass that keeps their forward, or one of timm's convs of `_timm_convs` (linear in their
    effective weight, see `effective_weight`; dynamic "same" padding). Other subclasses with their own forward
    are refused.
    """
    label = f"layer {name!r}" if name else "layer"
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"{label} is a {type(module).__name__}; only Conv2d or Linear layers can be intervened on")
    base = nn.Conv2d if isinstance(module, nn.Conv2d) else nn.Linear
    if type(module).forward is not base.forward and type(module) not in _timm_convs():
        raise NotImplementedError(f"{label} is a {type(module).__name__}, a {base.__name__} with its own forward "
                                  f"(not known to be linear in one weight); interventions cannot be computed exactly. "
                                  f"Give a layer chain without it in params (discover_graphs.layers)")
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        raise NotImplementedError(f"{label}: conv padding_mode {module.padding_mode!r} is not supported (only zeros)")


def layer_parents(module: nn.Module, source_shape: tuple, channels_last: bool = False,
                  name: str = "") -> tuple[int, int]:
    """(number of parent nodes, features per parent) of a Conv2d/Linear.

    `source_shape` (no batch) is the shape of the layer's input before any flatten: (C, h, w) for a
    linear layer fed by a flattened conv map, whose parents are then the C channels of h*w features each.
    `channels_last`: a linear layer applied to the last axis of a (N, ..., C) map (ConvNeXt's MLP): its
    parents are its C input channels, as for a 1x1 conv. Grouped/depthwise convs: parent j feeds only the
    outputs of its group (see `edge_pairs`).
    """
    check_layer(module, name)
    if isinstance(module, nn.Conv2d):
        return module.in_channels, 1
    if not channels_last and len(source_shape) > 1 and module.in_features % source_shape[0] == 0:
        return source_shape[0], module.in_features // source_shape[0]
    return module.in_features, 1


def edge_pairs(module: nn.Module, targets: torch.Tensor, parents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(exists, columns): which edges j -> t exist, (|targets|, |parents|) bool, and the column of each parent
    in the weight viewed by `_edge_slices`. Dense layers: every edge, column j. A grouped conv with G groups:
    parent j feeds output t only when both are in the same group, through weight[t, j mod in/G]."""
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        cin, cout = module.in_channels // module.groups, module.out_channels // module.groups
        return (targets[:, None] // cout) == (parents[None, :] // cin), parents % cin
    return torch.ones(len(targets), len(parents), dtype=torch.bool), parents


def edge_weights(module: nn.Module, n_parents: int, targets: torch.Tensor, parents: torch.Tensor,
                 weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of the edges j -> t as (|targets|, |parents|, ...) (zeros where there is no edge), and `exists`.

    `weight` replaces the layer's effective weight (same shape)."""
    exists, cols = edge_pairs(module, targets, parents)
    w = _edge_slices((effective_weight(module) if weight is None else weight).detach(), n_parents)[targets][:, cols]
    return w * exists.view(*exists.shape, *([1] * (w.dim() - 2))).to(device=w.device, dtype=w.dtype), exists


def _is_flatten(node: torch.fx.Node, modules: dict) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.Flatten)
    if node.op == "call_function":
        return node.target in (torch.flatten,)
    return node.op == "call_method" and node.target in ("flatten", "view", "reshape")


def _out_nodes(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def _indices(values, bound: int, what: str) -> torch.Tensor:
    """Validated index tensor: every value an int in [0, bound)."""
    t = torch.as_tensor(list(values), dtype=torch.long)
    bad = t[(t < 0) | (t >= bound)]
    if len(bad):
        raise IndexError(f"{what} {bad.tolist()[:5]} out of range [0, {bound})")
    return t


def _edge_slices(w: torch.Tensor, n_parents: int) -> torch.Tensor:
    """Weights viewed as (out, parents, ...): a conv's (out, in/groups, kh, kw), or a linear layer's (out, P, group)."""
    return w if w.dim() == 4 else w.view(w.shape[0], n_parents, -1)


class _LayerTracer(torch.fx.Tracer):
    """Keeps every Conv2d/Linear, subclasses included, as one call_module node (so `check_layer` sees them)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.Linear)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """torch.fx trace of `model` in eval mode, Conv2d/Linear layers as leaves; the model's own mode is restored.

    The graph module shares the model's submodules. Modules traced *through* (not leaves, e.g. timm's
    BatchNormAct2d) have their `if self.training` branches frozen into the trace, so tracing always happens in
    eval mode: the engine never uses batch statistics nor updates running buffers, whatever mode the model is in."""
    with evaluating(model):
        try:
            graph = _LayerTracer().trace(model)
        except Exception as e:  # noqa: BLE001 - torch.fx's reasons are many; the model is refused with its words
            raise TypeError(f"torch.fx cannot trace {type(model).__name__} ({type(e).__name__}: {e}); the engine "
                            f"needs a traceable forward pass (no item assignment, no data-dependent control flow)") from e
        return _out_of_place(torch.fx.GraphModule(model, graph))


_INPLACE_OPERATORS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                      operator.itruediv: operator.truediv, operator.ifloordiv: operator.floordiv,
                      operator.ipow: operator.pow, operator.iand: operator.and_, operator.ior: operator.or_}


_VIEW_METHODS = {"view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "transpose", "permute", "t",
                 "squeeze", "unsqueeze", "expand", "expand_as", "narrow", "select", "chunk", "split", "unbind",
                 "movedim", "swapaxes", "diagonal", "as_strided", "__getitem__"}
_VIEW_FUNCTIONS = {torch.flatten, torch.reshape, torch.transpose, torch.permute, torch.squeeze, torch.unsqueeze,
                   torch.narrow, torch.select, torch.chunk, torch.split, torch.unbind, torch.movedim, operator.getitem}


def _alias_kind(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str | None:
    """"same" if `node`'s value is its first argument itself (Identity, Dropout), "view" if it may share the first
    argument's memory (view, reshape, indexing, ...), else None."""
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        if isinstance(module, (nn.Identity, nn.Dropout)):
            return "same"
        return "view" if isinstance(module, (nn.Flatten, nn.Unflatten)) else None
    if node.op == "call_method" and node.target in _VIEW_METHODS:
        return "view"
    if node.op == "call_function" and node.target in _VIEW_FUNCTIONS:
        return "view"
    return None


def _alias_component(gm: torch.fx.GraphModule, node: torch.fx.Node) -> tuple[set, bool]:
    """(every node whose value may share memory with `node`'s, whether a view is among the links)."""
    seen, todo, view = {node}, [node], False
    while todo:
        n = todo.pop()
        links = []
        if _alias_kind(gm, n) and n.args and isinstance(n.args[0], torch.fx.Node):
            links.append((n.args[0], _alias_kind(gm, n)))
        links += [(u, _alias_kind(gm, u)) for u in n.users if _alias_kind(gm, u) and u.args and u.args[0] is n]
        for other, kind in links:
            view = view or kind == "view"
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen, view


def _out_of_place(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """`gm` made functional: every in-place operation (`nn.ReLU(inplace=True)` and the like, `F.relu(x, inplace=True)`,
    `torch.relu_(x)`, `x += y`, `x.add_(y)`) becomes its out-of-place twin, and every later use of the
    mutated tensor, or of a tensor that is the same object (Identity, Dropout), reads the new value instead. Values
    are unchanged; what changes is that no cached activation is overwritten later in the forward pass (a conv whose
    output an in-place activation overwrites would otherwise be cached as the activation). Where the mutated tensor
    is a view of, or is viewed by, a tensor used after the operation, the partial overwrite cannot be emulated and
    the model is refused (`InPlaceError`), before anything runs. The model's own modules are untouched: an in-place
    module is replaced by an out-of-place copy in the graph module."""
    nodes = list(gm.graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    for i, node in enumerate(nodes):
        mutated = node.args[0] if node.args and isinstance(node.args[0], torch.fx.Node) else None
        if node.op == "call_module" and getattr(gm.get_submodule(node.target), "inplace", False) is True:
            twin = copy.copy(gm.get_submodule(node.target))
            twin.inplace = False
            name = f"_out_of_place_{i}"
            gm.add_submodule(name, twin)
            node.target = name
        elif node.op == "call_function" and node.target in _INPLACE_OPERATORS:
            node.target = _INPLACE_OPERATORS[node.target]
        elif node.op == "call_function" and node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
        elif (node.op == "call_function" and _inplace_name(node.target)
              and getattr(torch, node.target.__name__, None) is node.target):
            node.target = getattr(torch, node.target.__name__[:-1])           # torch.relu_ -> torch.relu
        elif node.op == "call_method" and _inplace_name(node.target):
            node.target = node.target[:-1]                                    # x.add_(y) -> x.add(y)
        else:
            continue
        if mutated is None:
            continue
        aliases, view = _alias_component(gm, mutated)
        later = {a: [u for u in a.users if position[u] > i] for a in aliases}
        if view:
            # a partial overwrite: only the mutated node itself may be read later
            others = [u for a, us in later.items() if a is not mutated for u in us]
            if others:
                raise InPlaceError(f"the forward pass changes part of a tensor in place through a view "
                                   f"({node.format_node()}) and reads the viewed tensor afterwards "
                                   f"({others[0].format_node()}); the engine cannot replay it, so it refuses the model")
            later = {mutated: later[mutated]}
        for a, users in later.items():
            for u in users:
                u.replace_input_with(a, node)
    gm.recompile()
    return gm


def _inplace_name(target) -> bool:
    """`relu_`, `add_`: a torch function or tensor method whose out-of-place twin (`relu`, `add`) exists."""
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    if not name.endswith("_") or name.endswith("__"):
        return False
    twin = getattr(torch.Tensor if isinstance(target, str) else torch, name[:-1], None)
    return callable(twin)                    # not requires_grad_ (its twin is an attribute)


class TracedModel:
    """A model traced once with torch.fx, with all activations of a batch cached by `cache`.

    The model always runs in eval mode here, and leaves every call in the mode it came in (`evaluating`). It computes
    where the model is (`device`, its first parameter's): `cache` moves the examples there, and the activations and
    logits stay there; what the engine returns (effects) is on the CPU."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.gm = trace(self.model)
        self.modules = dict(self.gm.named_modules())
        self.nodes = {n.target: n for n in self.gm.graph.nodes if n.op == "call_module"}
        # nodes whose value carries the batch dimension (they depend on the input)
        self.batched: set = set()
        for n in self.gm.graph.nodes:
            if n.op == "placeholder" or any(a in self.batched for a in n.all_input_nodes):
                self.batched.add(n)
        self.env: dict = {}

    @property
    def device(self) -> torch.device:
        return device_of(self.model)

    @staticmethod
    def full_precision() -> None:
        """On a GPU, matmuls and convs in full float32, not TF32 (about 1e-3 relative): an effect is a difference of
        logits, and the engine must match its naive reference to 1e-4 there. A no-op on the CPU."""
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def bytes_per_example(self, after: str | None = None) -> int:
        """Bytes that one cached example takes in `env`: all of them, or only the values computed after `after` (what
        `run_from(after, ...)` computes again, per sample). `cache` must have run."""
        nodes, seen = [], after is None
        start = None if after is None else self.node(after)
        for node in self.gm.graph.nodes:
            if seen and node in self.batched:
                nodes.append(node)
            seen = seen or node is start
        return sum(v.numel() * v.element_size() for v in map(self.env.get, nodes)
                   if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == self.n) // max(self.n, 1)

    def parents(self, layer: str) -> tuple[int, int]:
        """(number of parents, features per parent) of `layer`; `cache` must have run."""
        src = self.node(layer).args[0]
        channels_last = self.env[src].dim() > 2 and isinstance(self.modules[layer], nn.Linear)
        while _is_flatten(src, self.modules) and isinstance(src.args[0], torch.fx.Node):
            src = src.args[0]
        return layer_parents(self.modules[layer], tuple(self.env[src].shape[1:]), channels_last, layer)

    def node(self, layer: str) -> torch.fx.Node:
        if layer not in self.nodes:
            raise KeyError(f"layer {layer!r} is not called in the model's forward")
        return self.nodes[layer]

    @torch.no_grad()
    def cache(self, x: torch.Tensor, where: str = "forward pass") -> torch.Tensor:
        """Forward `x` once, keeping every node's value; returns the logits.

        Non-finite inputs or logits raise `NonFiniteError`, naming `where` (e.g. the class) and the layer: the
        first layer reading the input, or the first layer whose output is non-finite."""
        layers = [n for n in self.gm.graph.nodes if n.op == "call_module"]
        first = f"input of layer {layers[0].target!r}" if layers else "input"
        check_finite(x, "input values", f"{where}, {first}")
        x = x.to(self.device)
        if x.device.type == "cuda":
            self.full_precision()
        interp = _VersionRecorder(self.gm, garbage_collect_values=False)
        with evaluating(self.model):
            out = interp.run(x)
        interp.check_unchanged()
        if not torch.isfinite(out).all():
            culprit = next((n.target for n in layers if isinstance(interp.env.get(n), torch.Tensor)
                            and not torch.isfinite(interp.env[n]).all()), "the output")
            check_finite(out, "logits", f"{where}, first non-finite output at layer {culprit!r}")
        self.env = interp.env
        self.n = len(x)
        self.logits = out
        self.num_classes = out.shape[1]
        return out

    @torch.no_grad()
    def run_from(self, layer: str, z: torch.Tensor, reps: int) -> torch.Tensor:
        """Logits when the output of `layer` is replaced by `z` (reps*N samples, rep-major).

        Values that do not depend on the layer come from the cache (repeated `reps` times where they meet
        a dependent value, e.g. a residual skip); only descendants of the layer are computed.
        """
        with evaluating(self.model):
            return self._run_from(self.node(layer), z, reps)

    def _run_from(self, start: torch.fx.Node, z: torch.Tensor, reps: int) -> torch.Tensor:
        values = {start: z}

        def load(a):
            if not isinstance(a, torch.fx.Node):
                return a
            if a in values:
                return values[a]
            v = self.env[a]
            if a not in self.batched or a.op == "placeholder" and not _tensors_only(v):   # e.g. attn_mask=None
                return v
            if _tensors_only(v) and _batch_first(v, self.n):   # a cached batch meets a changed one: repeated
                return _repeat(v, reps)
            shape = self._repeated_shape(a, values, reps)
            if shape is not None:                # `B, N, C = x.shape` upstream of the layer: the shape at reps * N
                values[a] = shape
                return shape
            # another value read upstream (a size, a tensor without the batch axis): recomputed at the reps * N
            # batch, never reused from the cache, so no reshape sees the old batch size
            values[a] = self._compute(a, load)
            return values[a]

        seen = False
        try:
            for node in self.gm.graph.nodes:
                if node is start:
                    seen = True
                    continue
                if not seen or node.op == "placeholder":
                    continue
                if node.op == "output":
                    return load(node.args[0]) if node.args[0] in values else _repeat(self.env[node.args[0]], reps)
                if node in values or not any(a in values for a in node.all_input_nodes):
                    continue
                values[node] = self._compute(node, load)
            raise RuntimeError("the traced graph has no output")
        finally:
            # `load` refers to itself, so `values` sits in a reference cycle: emptied here, the chunk's activations
            # are freed now, not at the next cyclic garbage collection (which let a ResNet18 graph reach 16 GB)
            values.clear()

    def _repeated_shape(self, node: torch.fx.Node, values: dict, reps: int):
        """`x.shape` / `x.size()` of a cached batch-first tensor `x`, at the batch of `reps` interventions, without
        repeating `x` (None for any other node)."""
        is_shape = (node.op == "call_function" and node.target is getattr and node.args[1] == "shape"
                    or node.op == "call_method" and node.target == "size" and len(node.args) == 1 and not node.kwargs)
        src = node.args[0] if is_shape else None
        if not isinstance(src, torch.fx.Node) or src in values:
            return None
        v = self.env[src]
        if not isinstance(v, torch.Tensor) or src not in self.batched or not _batch_first(v, self.n):
            return None
        return torch.Size((v.shape[0] * reps, *v.shape[1:]))

    def _compute(self, node: torch.fx.Node, load):
        args = torch.fx.node.map_aggregate(node.args, load)
        kwargs = torch.fx.node.map_aggregate(node.kwargs, load)
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        raise RuntimeError(f"unexpected node {node.op}")   # get_attr cannot depend on the layer


class InPlaceError(NotImplementedError):
    """The forward pass changes a tensor in place after it was computed, in a way `_out_of_place` does not undo
    (`x[:, 0] = y`, an in-place op on a view): the cached activation would not be the one the model computed."""


class _VersionRecorder(torch.fx.Interpreter):
    """An Interpreter that notes each tensor's version counter when it is computed, so that `check_unchanged` can
    tell whether a later operation changed it in place."""

    def run(self, *args, **kwargs):
        self.versions = {}
        return super().run(*args, **kwargs)

    def run_node(self, n):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.versions[n] = out._version
        return out

    def check_unchanged(self) -> None:
        changed = [n for n, v in self.versions.items() if self.env[n]._version != v]
        if changed:
            raise InPlaceError(f"the forward pass changes {len(changed)} tensor(s) in place after computing them "
                               f"(first: {changed[0].format_node()}); the engine's cached activations would not be "
                               f"the model's, so it refuses the model")


def _tensors_only(v) -> bool:
    """True for a tensor, or a tuple/list of them (a value that repeating along the batch axis reproduces)."""
    if isinstance(v, torch.Tensor):
        return True
    return isinstance(v, (tuple, list)) and len(v) > 0 and all(_tensors_only(e) for e in v)


def _batch_first(v, n: int) -> bool:
    """True if every tensor in `v` has the batch axis first (`n` examples): a value to repeat along it."""
    if isinstance(v, torch.Tensor):
        return v.dim() > 0 and v.shape[0] == n
    return all(_batch_first(e, n) for e in v)


def _repeat(v, reps: int):
    if isinstance(v, torch.Tensor):
        return v.repeat(reps, *([1] * (v.dim() - 1)))
    items = [_repeat(e, reps) for e in v]
    return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)       # namedtuples too


def parent_contributions(module: nn.Module, a: torch.Tensor, w: torch.Tensor, parents: torch.Tensor,
                         n_parents: int) -> torch.Tensor:
    """f(a_j, w_{.,j}) for each parent j: the layer's output (without bias) computed from parent j alone
    through the edge weights `w` ((|T|, len(parents), ...) from `edge_weights`, zeros where no edge).

    Returns (len(parents), N, |T|, h, w) for a conv, (len(parents), N, |T|) for a linear layer, and
    (len(parents), N, ..., |T|) for a linear layer applied channels-last."""
    k, rows = len(parents), w.shape[0]
    n = a.shape[0]
    if isinstance(module, nn.Conv2d):
        a, conv = conv_input(module, a)
        if module.groups == 1:   # every edge exists: one grouped conv, k groups of |T| filters
            y = F.conv2d(a[:, parents], w.transpose(0, 1).reshape(k * rows, 1, *w.shape[2:]), None, groups=k, **conv)
            return y.view(n, k, rows, *y.shape[2:]).transpose(0, 1)
        t_idx, j_idx = torch.nonzero(w.flatten(2).abs().sum(2) > 0, as_tuple=True)   # existing, non-zero edges only
        out = a.new_zeros(k, n, rows, *_conv_out_shape(module, a.shape[2:], conv["padding"]))
        if len(t_idx):
            y = F.conv2d(a[:, parents.to(j_idx.device)[j_idx]], w[t_idx, j_idx][:, None], None, groups=len(t_idx),
                         **conv)
            out[j_idx, :, t_idx] = y.transpose(0, 1)
        return out
    if a.dim() > 2:   # channels-last linear: parent j is input channel j at every position
        return torch.einsum("n...k,tk->kn...t", a[..., parents], w[..., 0])
    ag = a.view(n, n_parents, -1)[:, parents]                       # (N, k, g)
    return torch.einsum("nkg,tkg->knt", ag, w)                      # (k, N, rows)


def _conv_out_shape(module: nn.Conv2d, size, padding) -> tuple[int, int]:
    return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in
                 zip(size, padding, module.dilation, module.kernel_size, module.stride))


def output_changes(traced: TracedModel, layer: str, targets: list[int], parents: torch.Tensor,
                   intervention: Intervention, betas: torch.Tensor | None) -> torch.Tensor:
    """The change of `layer`'s output at `targets` when the edges from each parent j of `parents` to the targets are
    intervened on, alone: f(a_j, w'_{T,j} - w_{T,j}) (`parent_contributions`), (k, N, |T|, ...) for a conv,
    (k, N, |T|) or (k, N, ..., |T|) for a linear layer. `betas` (|T|, n_parents): the per-edge draws (None: constant)."""
    module = traced.modules[layer]
    n_parents, _ = traced.parents(layer)
    w, exists = edge_weights(module, n_parents, targets, parents)             # (|T|, k, ...)
    dw = intervention.new_weights(w, None if betas is None else betas[:, parents]) - w
    dw = dw * exists.view(*exists.shape, *([1] * (w.dim() - 2))).to(device=w.device, dtype=w.dtype)
    return parent_contributions(module, traced.env[traced.node(layer).args[0]], dw, parents, n_parents)


GPU_MEMORY_FRACTION = 0.5   # of the GPU memory free when a pass is planned: room for the allocator and cuDNN workspaces


def memory_budget(device: torch.device | str) -> int | None:
    """Bytes one pass of the engine may fill on `device`: on a GPU, `GPU_MEMORY_FRACTION` of the memory free to this
    process now (within `torch.cuda.set_per_process_memory_fraction`, counting torch's cached blocks as free); None
    on the CPU, where `max_batch` alone bounds a pass (and the CPU results do not depend on memory)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    free += torch.cuda.memory_reserved(device) - allocated          # torch's cached blocks are ours to reuse
    cap = torch.cuda.get_per_process_memory_fraction(device) * total - allocated   # set_per_process_memory_fraction
    return int(max(0, min(free, cap)) * GPU_MEMORY_FRACTION)


def samples_per_pass(traced: TracedModel, layer: str, max_batch: int) -> int:
    """How many samples one `run_from(layer, ...)` pass takes: `max_batch`, or fewer where the values it computes
    again would not fit in `memory_budget` (a ResNet50 at 224 px on a GPU, say)."""
    budget = memory_budget(traced.device)
    if budget is None:
        return max_batch
    return max(1, min(max_batch, budget // max(1, 2 * traced.bytes_per_example(layer))))   # 2x: input and output


def examples_per_cache(traced: TracedModel, n: int) -> int:
    """How many of `n` examples `cache` may hold at once so that their activations and one pass over them fit in
    `memory_budget` (all `n` on the CPU). `traced` must hold a cache of a few of the same examples (for their size)."""
    budget = memory_budget(traced.device)
    if budget is None:
        return n
    return max(1, min(n, budget // max(1, 3 * traced.bytes_per_example())))


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e)


@torch.no_grad()
def treatment_effects(traced: TracedModel, layer: str, class_index: int, targets, intervention: Intervention,
                      parents=None, max_batch: int = 4096, betas: torch.Tensor | None = None) -> torch.Tensor:
    """TE_j(x) for every parent j of `layer` (eq. 2): (len(parents), N) changes of logit `class_index`.

    `traced.cache(X)` must have been called. `targets`: output nodes of `layer` whose edges from j are
    intervened (for the classifier layer: [class_index]). `betas` (len(targets), n_parents) overrides the
    per-edge soft draws (used to compare with the naive reference). A parent with no edge to any target
    (a depthwise conv's channel outside the targets) has TE = 0 exactly and is not run.

    Parents are intervened in batches of at most `max_batch` samples (parents x examples) per forward pass, fewer on a
    GPU where they would not fit its free memory (`samples_per_pass`), and half as many again after an out-of-memory
    error: how the work is split never changes what is computed for a parent.
    """
    node = traced.node(layer)
    module = traced.modules[layer]
    _indices([class_index], traced.num_classes, "class index")
    n_parents, _ = traced.parents(layer)
    targets = _indices(targets, _out_nodes(module), f"target of {layer}")
    parents = torch.arange(n_parents) if parents is None else _indices(parents, n_parents, f"parent of {layer}")
    a, z, base = traced.env[node.args[0]], traced.env[node], traced.logits[:, class_index]
    if betas is None and intervention.mode != "constant":
        betas = intervention.beta((len(targets), n_parents))
    n = a.shape[0]
    effects = torch.zeros(len(parents), n, dtype=base.dtype)
    active = torch.nonzero(edge_pairs(module, targets, parents)[0].any(0)).flatten()
    chunk, i = max(1, samples_per_pass(traced, layer, max_batch) // n), 0
    while i < len(active):
        pos = active[i:i + chunk]
        js = parents[pos]
        delta = output_changes(traced, layer, targets, js, intervention, betas)   # (k, N, |T|, ...) / (k, N, ..., |T|)
        zk = z.unsqueeze(0).repeat(len(js), *([1] * z.dim()))
        if isinstance(module, nn.Linear):
            zk[..., targets] += delta
        else:
            zk[:, :, targets] += delta
        try:
            logits = traced.run_from(layer, zk.reshape(len(js) * n, *z.shape[1:]), len(js))
        except (torch.OutOfMemoryError, RuntimeError) as e:     # the plan was too large after all: halve, try again
            if not _out_of_memory(e) or len(pos) == 1:
                raise
            del zk, delta
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            chunk = len(pos) // 2
            continue
        effects[pos] = (logits[:, class_index].view(len(js), n) - base).cpu()      # results live on the CPU
        i += len(pos)
    check_finite(effects, "treatment effects", f"class {class_index}, layer {layer!r}", example_dim=1)
    return effects


@torch.no_grad()
def naive_effects(model: nn.Module, layer: str, class_index: int, x: torch.Tensor, targets,
                  intervention: Intervention, n_parents: int, parents=None,
                  betas: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: one deep-copied model per intervention, one example per forward pass (the authors' way).

    `n_parents`: how the layer's input is split into parent nodes (see `layer_parents`)."""
    with evaluating(model):
        return _naive_effects(model, layer, class_index, x, targets, intervention, n_parents, parents, betas)


def _naive_effects(model, layer, class_index, x, targets, intervention, n_parents, parents, betas):
    targets = list(targets)
    parents = range(n_parents) if parents is None else list(parents)
    if betas is None and intervention.mode != "constant":
        betas = intervention.beta((len(targets), n_parents))
    base = torch.stack([model(x[i:i + 1])[0, class_index] for i in range(len(x))])
    out = torch.zeros(len(parents), len(x), dtype=base.dtype)
    for pi, j in enumerate(parents):
        m2 = copy.deepcopy(model)
        module = dict(m2.named_modules())[layer]
        standardised = is_standardised(module)
        w_all = effective_weight(module).detach().clone() if standardised else module.weight.data
        w = _edge_slices(w_all, n_parents)
        groups = getattr(module, "groups", 1)
        cin, cout = n_parents // groups, _out_nodes(module) // groups
        for ti, t in enumerate(targets):
            if t // cout != j // cin:   # grouped conv: no edge between groups
                continue
            b = None if betas is None else betas[ti:ti + 1, j:j + 1]
            w[t, j % cin] = intervention.new_weights(w[t:t + 1, j % cin:j % cin + 1], b)[0, 0]
        if standardised:      # the layer applies the edited effective weight, as it is, in its own conv
            module.forward = functools.partial(apply_layer, module, weight=w_all)
        for i in range(len(x)):
            out[pi, i] = m2(x[i:i + 1])[0, class_index] - base[i]
    return out


__all__ = ["device_of", "Intervention", "TracedModel", "treatment_effects", "memory_budget", "samples_per_pass",
           "examples_per_cache", "output_changes", "naive_effects", "parent_contributions",
           "layer_parents", "check_layer", "edge_pairs", "edge_weights", "NonFiniteError", "check_finite",
           "effective_weight", "is_standardised", "apply_layer", "conv_input", "InPlaceError"]
