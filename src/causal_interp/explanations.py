"""Explanations from a causal graph (eq. 3).

At a child node i of layer l+1 that is in the graph, the causal response is the mean over the
necessary parents J_l (in a grouped conv: those connected to i) of f(w_ji, a_j): the 2-D convolution of the parent's activation a_j by the filter
w_ji (conv layers) or the product w_ji * a_j (linear layers). A layer's saliency map aggregates the
responses of its graph nodes and is resized to the input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .discovery import ClassGraph
from .interventions import TracedModel, edge_weights, parent_contributions


@torch.no_grad()
def causal_responses(traced: TracedModel, graph: ClassGraph, layer: str) -> torch.Tensor:
    """s_i for every child i of `layer` in the graph (eq. 3), on the examples cached in `traced`.

    Returns (N, |children|, H, W) for a conv layer, (N, |children|) for a linear one; zeros when the
    layer has no necessary parent. Children are the layer's graph targets, in `graph.layer(layer).targets` order.
    """
    lg = graph.layer(layer)
    module = traced.modules[layer]
    node = traced.node(layer)
    a, z = traced.env[node.args[0]], traced.env[node]
    n_parents, _ = traced.parents(layer)
    children = torch.as_tensor(lg.targets, dtype=torch.long)
    if not lg.necessary or not len(children):
        return z.new_zeros(z.shape[0], len(children), *z.shape[2:])
    necessary = torch.as_tensor(lg.necessary, dtype=torch.long)
    w, exists = edge_weights(module, n_parents, children, necessary)
    f = parent_contributions(module, a, w, necessary, n_parents)
    if isinstance(module, nn.Conv2d) and module.groups > 1:   # mean over each child's own necessary parents
        count = exists.sum(1).clamp(min=1).to(device=f.device, dtype=f.dtype)
        return f.sum(0) / count.view(1, -1, *([1] * (f.dim() - 3)))
    return f.mean(0)


def saliency_map(responses: torch.Tensor, size: tuple[int, int], reduce: str = "mean") -> torch.Tensor:
    """Aggregate per-node responses (N, nodes, h, w) of one layer into (N, H, W) maps at the input size."""
    if responses.dim() != 4:
        raise ValueError("saliency maps need a conv layer's responses (N, nodes, h, w)")
    agg = responses.mean(1) if reduce == "mean" else responses.abs().mean(1)
    return F.interpolate(agg[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def top_filter_responses(traced: TracedModel, graph: ClassGraph, layer: str) -> torch.Tensor:
    """For each child i of `layer` in the graph, the response to its single strongest parent filter
    (largest |mean effect| among necessary parents): (N, |children|, h, w) (fig. 6)."""
    lg = graph.layer(layer)
    module = traced.modules[layer]
    if not isinstance(module, nn.Conv2d):
        raise ValueError(f"{layer} is not a conv layer")
    node = traced.node(layer)
    a = traced.env[node.args[0]]
    children = torch.as_tensor(lg.targets, dtype=torch.long)
    if not lg.necessary:
        return a.new_zeros(a.shape[0], len(children), *traced.env[node].shape[2:])
    top = torch.as_tensor(lg.ranked()[:1], dtype=torch.long)
    w, _ = edge_weights(module, module.in_channels, children, top)
    return parent_contributions(module, a, w, top, module.in_channels)[0]
