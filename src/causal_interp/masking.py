"""Masking parents of a layer at inference (fidelity and repair, figs. 10-11).

A mask zeroes, inside a `with masked(...)` block, the weights from chosen parent nodes of a layer (a whole
filter slice for conv layers, a block of features for a linear layer fed by a flattened conv map), either to
every output of the layer or only to given targets. The original weights are restored bit for bit on exit,
also when the block raises. Nothing is retrained.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .discovery import ClassGraph
from .interventions import TracedModel, _edge_slices


@dataclass
class LayerMask:
    """Parents of `layer` whose weights are zeroed (to `targets` only, or to every output when None)."""

    layer: str
    parents: list[int]
    targets: list[int] | None = None


@contextlib.contextmanager
def masked(model: nn.Module, masks: list[LayerMask], n_parents: dict[str, int]):
    """Zero the masked weights of `model` for the duration of the block; `n_parents` maps layer -> parents."""
    modules = dict(model.named_modules())
    saved = []
    try:
        for m in masks:
            if m.layer not in modules:
                raise KeyError(f"unknown layer {m.layer!r}")
            w = modules[m.layer].weight
            saved.append((w, w.detach().clone()))
            if not m.parents:
                continue
            view = _edge_slices(w.data, n_parents[m.layer])
            parents = torch.as_tensor(m.parents, dtype=torch.long)
            if m.targets is None:
                view[:, parents] = 0
            else:
                targets = torch.as_tensor(m.targets, dtype=torch.long)
                view[targets[:, None], parents[None, :]] = 0
        yield model
    finally:
        for w, original in reversed(saved):
            w.data.copy_(original)


def layer_parent_counts(model: nn.Module, example: torch.Tensor, layers: list[str]) -> dict[str, int]:
    """Number of parent nodes of each layer (needs one example to see the flatten shapes)."""
    traced = TracedModel(model)
    traced.cache(example[:1])
    return {name: traced.parents(name)[0] for name in layers}


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
    w = _edge_slices(dict(model.named_modules())[layer].weight.detach(), n_parents)
    norms = w.abs().transpose(0, 1).reshape(n_parents, -1).sum(1)
    return torch.argsort(norms, descending=True, stable=True).tolist()


def random_order(n_parents: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).permutation(n_parents).tolist()


def fidelity_masks(graph: ClassGraph, share: float, how: str, model: nn.Module | None = None,
                   n_parents: dict | None = None, seed: int = 0) -> list[LayerMask]:
    """Masks of the top `share` of every layer's parents (all outgoing weights), ranked by the graph's
    effects (`how="critical"`), at random (`"random"`) or by weight magnitude (`"magnitude"`)."""
    masks = []
    for i, lg in enumerate(graph.layers):
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


def repair_masks(graph: ClassGraph, share: float, how: str = "graph", seed: int = 0) -> list[LayerMask]:
    """Masks of a `share` of every layer's distracting and irrelevant parents (edges to the layer's graph
    targets only), distracting ones first by decreasing effect (`how="graph"`); or the same number of
    parents drawn at random among all parents (`how="random"`)."""
    masks = []
    for i, lg in enumerate(graph.layers):
        if not lg.targets:
            continue
        pool = sorted(lg.distracting, key=lambda j: -lg.mean_effect[j]) + \
            sorted(lg.irrelevant, key=lambda j: -abs(lg.mean_effect[j]))
        count = math.ceil(share * len(pool) - 1e-9)
        if how == "graph":
            chosen = pool[:count]
        elif how == "random":
            chosen = random_order(lg.n_parents, seed * 7919 + i)[:count]
        else:
            raise ValueError(f"unknown repair mask {how!r}; use graph or random")
        masks.append(LayerMask(lg.layer, chosen, list(lg.targets)))
    return masks


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Share of `x` predicted as `y`."""
    if len(x) == 0:
        return float("nan")
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)
