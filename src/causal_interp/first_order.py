"""First-order estimates of the treatment effects (eq. 2): every edge of a layer from a few backward passes.

Intervening on the edges j -> T of layer l replaces its output z by z + dz_j, where dz_j = f(a_j, w'_{T,j} - w_{T,j})
(`interventions.output_changes`). The class logit y then changes by TE_j = y(z + dz_j) - y(z), which the exact engine
computes with one forward pass of the rest of the network per parent. To first order, TE_j ~ <dy/dz, dz_j>: one backward
pass gives dy/dz, and then every parent's estimate is a dot product. For a weight slice this is the weight x gradient
(Taylor) score of Molchanov et al. (2019); for soft interventions (beta w) it scales with (1 - beta).

* `taylor`: the gradient at z (attribution patching).
* `taylor_ig`: the gradient averaged over `steps` points of the path along which every edge of the layer to T moves
  together, z + alpha sum_j dz_j, alpha in (0, 1) (as EAP-IG, Hanna et al. 2024, interpolates all inputs at once):
  where a ReLU saturates between z and z + dz_j, the gradient at z alone misses it.
* `screened` (`screen`): `taylor_ig` for every edge, then the exact effect of every edge that the estimate does not call
  clearly irrelevant (|z| >= z_{1-alpha} / margin), and of a random sample of the rest, which measures how often the
  screen dropped an edge that the exact test keeps (the false-negative rate, with its 95% interval).

The exact engine (`interventions.treatment_effects`) is the default everywhere and is not changed by this module.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import binomtest, norm
from torch import nn

from .interventions import (Intervention, TracedModel, _indices, _out_nodes, check_finite, edge_pairs, output_changes,
                            samples_per_pass)
from .models import evaluating

EFFECTS = ("exact", "taylor", "taylor_ig", "screened")


def class_gradient(traced: TracedModel, layer: str, class_index: int, z: torch.Tensor) -> torch.Tensor:
    """d y_class / d z for every example, where z replaces the output of `layer` (`traced.cache` must have run: the
    values that do not depend on the layer come from it). Examples do not mix in eval mode, so the gradient of the
    sum over the batch is each example's own."""
    leaf = z.detach().requires_grad_(True)
    with torch.enable_grad(), evaluating(traced.model):
        y = traced._run_from(traced.node(layer), leaf.clone(), 1)[:, class_index].sum()  # clone: in-place ops are fine
        return torch.autograd.grad(y, leaf)[0].detach()


def _at_targets(module: nn.Module, g: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return g[..., targets] if isinstance(module, nn.Linear) else g[:, targets]


def _place(module: nn.Module, z: torch.Tensor, targets: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    out = z.clone()
    if isinstance(module, nn.Linear):
        out[..., targets] += delta
    else:
        out[:, targets] += delta
    return out


@torch.no_grad()
def estimated_effects(traced: TracedModel, layer: str, class_index: int, targets, intervention: Intervention,
                      steps: int = 1, parents=None, betas: torch.Tensor | None = None,
                      max_batch: int = 4096) -> torch.Tensor:
    """First-order TE_j(x) for every parent j of `layer`, (len(parents), N) on the CPU, as `treatment_effects` returns
    the exact ones (same arguments, same draws for the same `intervention`). `steps` = 1: `taylor`, the gradient at the
    cached output; `steps` > 1: `taylor_ig`, the gradient averaged at the midpoints of `steps` equal parts of the path
    along which all the layer's edges to `targets` move together."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    node, module = traced.node(layer), traced.modules[layer]
    _indices([class_index], traced.num_classes, "class index")
    n_parents, _ = traced.parents(layer)
    targets = _indices(targets, _out_nodes(module), f"target of {layer}")
    parents = torch.arange(n_parents) if parents is None else _indices(parents, n_parents, f"parent of {layer}")
    if betas is None and intervention.mode != "constant":
        betas = intervention.beta((len(targets), n_parents))
    z = traced.env[node]
    n = z.shape[0]
    active = torch.nonzero(edge_pairs(module, targets, parents)[0].any(0)).flatten()
    chunk = max(1, samples_per_pass(traced, layer, max_batch) // n)
    tdev = targets.to(z.device)

    def changes():                      # (positions, dz of those parents), a chunk at a time
        for i in range(0, len(active), chunk):
            pos = active[i:i + chunk]
            yield pos, output_changes(traced, layer, targets, parents[pos], intervention, betas)

    if steps == 1:
        grad = _at_targets(module, class_gradient(traced, layer, class_index, z), tdev)
    else:                               # the path of all edges together: z + alpha * (sum of every parent's dz)
        all_edges = torch.zeros_like(_at_targets(module, z, tdev))
        every = torch.nonzero(edge_pairs(module, targets, torch.arange(n_parents))[0].any(0)).flatten()
        for i in range(0, len(every), chunk):
            all_edges += output_changes(traced, layer, targets, every[i:i + chunk], intervention, betas).sum(0)
        grad = sum(_at_targets(module, class_gradient(traced, layer, class_index,
                                                      _place(module, z, tdev, (k + 0.5) / steps * all_edges)), tdev)
                   for k in range(steps)) / steps
    effects = torch.zeros(len(parents), n)
    g = grad.double().unsqueeze(0)
    for pos, delta in changes():
        effects[pos] = (delta.double() * g).flatten(2).sum(2).float().cpu()
    check_finite(effects, "estimated treatment effects", f"class {class_index}, layer {layer!r}", example_dim=1)
    return effects


def screen(estimate: torch.Tensor, base: torch.Tensor, exact, test: str, alpha: float, min_effect: float = 0.0,
           margin: float = 4.0, sample: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Screen, then confirm. `estimate`: (P, N) first-order effects; `exact(parents)`: the exact effects of those
    parents, (len(parents), N). Every parent whose estimate is not clearly irrelevant (|z| >= z_{1-alpha} / `margin`,
    or a degenerate test) is confirmed exactly, and so is a random `sample` share (at least one) of the rest.

    Returns the effects (exact where confirmed, the estimate elsewhere) and what the screen did: how many parents were
    confirmed, screened out and sampled, how many of the sampled the exact test does not call irrelevant (`missed`),
    and that false-negative rate with its 95% Clopper-Pearson interval."""
    from .discovery import significance

    if margin < 1:
        raise ValueError(f"margin must be >= 1 (1: confirm only what the estimate calls significant), got {margin}")
    if not 0 <= sample <= 1:
        raise ValueError(f"sample must be a share in [0, 1], got {sample}")
    z, _, _, degenerate = significance(estimate, base, test, alpha, min_effect)
    clear = (np.abs(z) < norm.ppf(1 - alpha) / margin) & ~degenerate
    rest = np.flatnonzero(clear)
    n_sample = min(len(rest), max(1, math.ceil(sample * len(rest)))) if len(rest) and sample > 0 else 0
    sampled = np.sort(np.random.default_rng(seed).choice(rest, n_sample, replace=False)) if n_sample else rest[:0]
    confirm = np.union1d(np.flatnonzero(~clear), sampled)
    effects = estimate.clone()
    if len(confirm):
        effects[torch.from_numpy(confirm)] = exact(torch.from_numpy(confirm)).to(effects.dtype)
    missed = 0
    if n_sample:
        labels = significance(effects[torch.from_numpy(sampled)], base, test, alpha, min_effect)[2]
        missed = int((labels != "irrelevant").sum())
    ci = binomtest(missed, n_sample).proportion_ci(0.95) if n_sample else None
    return effects, {"confirmed": int((~clear).sum()), "screened_out": int(clear.sum()), "sampled": int(n_sample),
                     "missed": missed, "false_negative_rate": missed / n_sample if n_sample else None,
                     "false_negative_ci": [ci.low, ci.high] if ci is not None else None, "margin": margin}


__all__ = ["EFFECTS", "class_gradient", "estimated_effects", "screen"]
