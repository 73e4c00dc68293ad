"""The paper's eight baseline attribution methods (figure 8), taken from captum and torchray.

Every method is a Quantus-style explanation function `fn(model, inputs, targets, **kwargs) -> np.ndarray`
of shape (N, 1, H, W) (channels summed where a method attributes per input channel), float32, the raw
attribution with no normalisation (normalising is the evaluation's job, see `evaluation.py`).

| name | library | settings |
|---|---|---|
| RISE | torchray `rise` | `rise_masks` random masks, 7x7 cells; masks drawn per call from the input (`rise_per_call`) |
| Occlusion | captum `Occlusion` | square window of `occlusion_window` x image side, stride half of it, zero baseline |
| IntegratedGradients | captum | zero baseline, `ig_steps` steps |
| Saliency | captum | absolute gradient (captum default) |
| GradientShap | captum | zero baseline, `shap_samples` samples, fixed seed |
| InputXGradient | captum | gradient x input |
| Deconvolution | captum | DeconvNet rule on ReLUs |
| ExcitationBackprop | torchray `excitation_backprop` | MWP (Zhang et al.); max |.| over channels at the input |
"""
from __future__ import annotations

import copy
import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import bounded
from .interventions import device_of

METHODS = ("RISE", "Occlusion", "IntegratedGradients", "Saliency", "GradientShap", "InputXGradient",
           "Deconvolution", "ExcitationBackprop")


@dataclass
class BaselineConfig:
    """Settings of the baselines (params.yaml `evaluate_explanations.baselines`)."""

    rise_masks: int = bounded(500, 1, 100_000)
    occlusion_window: float = bounded(0.25, 0, 1, low_open=True)    # share of the image side
    ig_steps: int = bounded(32, 1, 10_000)
    shap_samples: int = bounded(16, 1, 10_000)
    batch_size: int = bounded(64, 1, 65_536)   # inputs per call inside a method (memory knob)
    seed: int = bounded(0, 0)
    # RISE's masks: true = a seed derived from each call's input (deterministic, and different for an input and its
    # LE perturbation); false = the same seed on every call, so an input and its perturbation share their masks and
    # the map barely moves: an artefact that once gave RISE a near-zero LE (kept to show it, authors_protocol stage)
    rise_per_call: bool = True


def check_methods(names) -> list[str]:
    unknown = [n for n in names if n not in METHODS and n != "Causal"]
    if unknown:
        raise ValueError(f"unknown explanation method(s) {unknown}; choose from {['Causal', *METHODS]}")
    return list(names)


def _no_inplace_relu(model: nn.Module) -> nn.Module:
    """A copy whose ReLUs are not in-place (captum's module hooks and torchray's patches need that)."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False
    return model


def _attribute(method: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: BaselineConfig) -> torch.Tensor:
    import captum.attr as ca

    if method == "RISE":
        from torchray.attribution.rise import rise

        sal = rise(model, x, seed=rise_seed(x, cfg), num_masks=cfg.rise_masks, batch_size=cfg.batch_size)   # (N, K, H, W)
        return sal[torch.arange(len(y), device=sal.device), y][:, None]
    if method == "ExcitationBackprop":
        from torchray.attribution.excitation_backprop import excitation_backprop

        return excitation_backprop(model, x, y.tolist(), resize=tuple(x.shape[-2:]))
    if method == "Occlusion":
        c, h, w = x.shape[1:]
        win = max(1, int(round(cfg.occlusion_window * h))), max(1, int(round(cfg.occlusion_window * w)))
        stride = (c, max(1, win[0] // 2), max(1, win[1] // 2))
        return ca.Occlusion(model).attribute(x, target=y, sliding_window_shapes=(c, *win), strides=stride,
                                             baselines=0.0, perturbations_per_eval=cfg.batch_size)
    if method == "IntegratedGradients":
        return ca.IntegratedGradients(model).attribute(x, target=y, baselines=torch.zeros_like(x), n_steps=cfg.ig_steps,
                                                       internal_batch_size=cfg.batch_size)
    if method == "Saliency":
        return ca.Saliency(model).attribute(x, target=y)
    if method == "GradientShap":   # draws with numpy and torch: seeded, and the callers' RNG states restored
        state = np.random.get_state()
        np.random.seed(cfg.seed)
        try:
            with torch.random.fork_rng():
                torch.manual_seed(cfg.seed)
                return ca.GradientShap(model).attribute(x, baselines=torch.zeros_like(x), target=y,
                                                        n_samples=cfg.shap_samples)
        finally:
            np.random.set_state(state)
    if method == "InputXGradient":
        return ca.InputXGradient(model).attribute(x, target=y)
    if method == "Deconvolution":
        with warnings.catch_warnings():
            # captum announces on every call that it sets backward hooks on the ReLUs and removes them when the
            # attribution is finished, which it does (in a `finally`): a notice, not a problem, so it is filtered
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations", category=UserWarning)
            return ca.Deconvolution(model).attribute(x, target=y)
    raise ValueError(f"unknown baseline {method!r}; choose from {list(METHODS)}")


def rise_seed(x: torch.Tensor, cfg: BaselineConfig) -> int:
    """RISE's seed for one call: `cfg.seed`, or with `rise_per_call` a hash of the call's input mixed with it."""
    if not cfg.rise_per_call:
        return cfg.seed
    digest = hashlib.sha256(x.detach().cpu().numpy().tobytes()).digest()
    return (int.from_bytes(digest[:4], "little") ^ cfg.seed) % (2 ** 31)


def explainer(method: str, model: nn.Module, cfg: BaselineConfig | None = None):
    """A Quantus explanation function for `method` on `model`: (model, inputs, targets) -> (N, 1, H, W) float32.

    The `model` argument Quantus passes is ignored in favour of a private copy without in-place ReLUs.
    """
    check_methods([method])
    cfg = cfg or BaselineConfig()
    net = _no_inplace_relu(model).to(device_of(model))    # the copy computes where the model is
    for p in net.parameters():
        p.requires_grad_(False)

    def explain(model=None, inputs=None, targets=None, **kwargs) -> np.ndarray:
        device = device_of(net)                      # computed where the model is, returned on the CPU
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(targets), dtype=torch.long).reshape(-1)
        outs = []
        for i in range(0, len(x), cfg.batch_size):
            xb = x[i:i + cfg.batch_size].clone().to(device).requires_grad_(method not in ("RISE", "Occlusion"))
            a = _attribute(method, net, xb, y[i:i + cfg.batch_size].to(device), cfg).detach().cpu()
            outs.append(a.sum(1, keepdim=True) if a.shape[1] != 1 else a)
        return torch.cat(outs).float().numpy()

    explain.__name__ = method
    return explain
