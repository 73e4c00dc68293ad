"""Latent-space explanation by intervention (paper: `latent-space-explanation-by-intervention.txt`; stage
`latent_intervention`) on data with a planted bias (`planted.py`).

The method, as the paper's "Method" section describes it (its formulas were lost in the text extraction; where this
module has to choose, the docstring says so):

* the classifier: six conv layers and two fully connected ones ("Experimental setup"); h, the representation explained,
  is the output of the first FC layer, c the rest of the network (`Classifier.represent`, `Classifier.head`);
* a discrete VAE on h ("Discrete concepts in a hidden layer", eq. 1): boolean latents z by the Gumbel-softmax
  reparametrisation, encoder and decoder of four linear layers each (the decoder the encoder's layers in reverse), MSE
  reconstruction and the ELBO's KL term; the prior here is a uniform Bernoulli(1/2) per bit (`DVAE`);
* the explanatory network g from the reconstructed representation h^ = decode(z) to an image, trained after the DVAE,
  with the DVAE fixed, by binary cross-entropy (eq. 2, `Explainer`);
* the regulariser of "Maximizing explanatory and discriminative shared information" (eqs. 3-6): the functional Fisher
  information I(f) = E_mu[|grad f|^2 / f] of a non-negative f over a Gaussian measure, per coordinate of the layer
  (eqs. 4-5, `information`), for g at h^ and for c at h; g's loss adds lambda / similarity (eq. 6). Choices: f is each
  network's likelihood of its own target (c: the probability of its predicted class; g: exp(-mean BCE) of the input
  image), mu_i = N(h_i, sigma^2) with sigma = `fisher_sigma` x the spread of h, the expectation by sampling the layer
  at once, and the similarity is the cosine (the paper: "dot product", "proportional to the cosine similarity"), so
  that g cannot raise it by scale alone;
* the intervention: the latent bits flipped (z -> 1 - z), decoded and passed to c (Table 1's "% of change"); the
  best single bit is reported beside it.

`run_unit` trains one classifier and its DVAE and explanatory networks (with and without the regulariser) and measures
Table 1, Table 2 and, beyond the paper, the planted attribute in the concept images before and after the intervention.
The functions at the end summarise those measurements; judging them is `verdicts.py`'s.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import planted
from .config import ConfigError, bounded

EXPLAINERS = ("regularised", "unregularised")


@dataclass
class LatentConfig:
    """params.yaml section `latent_intervention`."""

    tasks: list = field(default_factory=lambda: ["mnist", "cifar10"])     # keys of planted.TASKS
    bias: float = bounded(0.7, 0.5, 1, low_open=True, high_open=True)    # share of A in the positive class (a_majority)
    train_per_class: int = bounded(3000, 2, 1_000_000)    # training images per label, in every split
    test_per_cell: int = bounded(250, 1, 100_000)         # test images per label x attribute cell
    data_seed: int = bounded(0, 0)                        # draws the images and who carries the attribute
    seeds: list = field(default_factory=lambda: [0, 1, 2])   # training seeds (every network of a run)
    channels: list = field(default_factory=lambda: [8, 8, 16, 16, 32, 32])   # the six conv layers
    hidden: int = bounded(64, 2, 4096)                    # width of the first FC layer: h
    dropout: float = bounded(0.1, 0, 1, high_open=True)
    classifier_epochs: int = bounded(5, 1, 10_000)
    classifier_batch: int = bounded(32, 1, 65_536)        # small batches: a plain deep ReLU net starts slowly
    bits: int = bounded(16, 1, 4096)                      # boolean latents of the DVAE
    dvae_widths: list = field(default_factory=lambda: [128, 64, 32])   # the encoder's hidden widths (4 linear layers)
    dvae_epochs: int = bounded(30, 1, 100_000)
    temperature: float = bounded(1.0, 0, 100, low_open=True)   # Gumbel-softmax temperature
    kl_weight: float = bounded(1.0, 0, 1e6)
    explainer_epochs: int = bounded(2, 1, 10_000)
    explainer_data: str = "control"   # images g learns to draw: control (balanced attribute) or own (the split's)
    reg_weight: float = bounded(0.005, 0, 1e6, low_open=True)    # lambda of eq. 6
    fisher_sigma: float = bounded(0.1, 0, 100, low_open=True)  # sigma of mu_i, in units of h's spread
    fisher_samples: int = bounded(2, 1, 10_000)           # Gaussian samples per example while training g
    fisher_eval_samples: int = bounded(8, 1, 10_000)      # ... when measuring Table 2
    batch_size: int = bounded(128, 1, 65_536)             # the DVAE's and the explanatory network's
    lr: float = bounded(1e-3, 0, 10, low_open=True)
    grid_examples: int = bounded(8, 1, 10_000)            # test examples drawn in the figures (first seed)
    bootstrap: int = bounded(2000, 1, 1_000_000)          # resamples of the intervals over examples
    threads: int | None = bounded(None, 1, 1024)

    def validate(self, section: str) -> None:
        if not self.tasks or len(set(self.tasks)) != len(self.tasks) or set(self.tasks) - set(planted.TASKS):
            raise ConfigError(f"{section}.tasks must be distinct names of {sorted(planted.TASKS)}, got {self.tasks}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            raise ConfigError(f"{section}.seeds must be a non-empty list of distinct integers >= 0, got {self.seeds}")
        for name, n in (("channels", 6), ("dvae_widths", 3)):
            v = getattr(self, name)
            if len(v) != n or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in v):
                raise ConfigError(f"{section}.{name} must be {n} positive integers, got {v}")
        if self.explainer_data not in ("control", "own"):
            raise ConfigError(f"{section}.explainer_data must be control or own, got {self.explainer_data!r}")
        try:
            planted.check_exact(self.train_per_class, self.bias, f"{section}.train_per_class")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.grid_examples > 4 * self.test_per_cell:
            raise ConfigError(f"{section}.grid_examples ({self.grid_examples}) exceeds the test set "
                              f"(4 x test_per_cell = {4 * self.test_per_cell})")


def mlp(sizes: list, dropout: float) -> nn.Sequential:
    """Linear layers through `sizes`, ReLU and dropout between them (the paper: "ReLU ... and Dropout")."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    """Six 3x3 conv layers (a 2x2 max-pool after every second one), then two FC layers ("Experimental setup")."""

    def __init__(self, channels, hidden: int, size: int, in_chans: int = 3, classes: int = 2, dropout: float = 0.1):
        super().__init__()
        layers, c_in = [], in_chans
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()] + ([nn.MaxPool2d(2)] if i % 2 else [])
            c_in = c
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.fc1 = nn.Linear(c_in * (size // 8) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, classes)
        self.drop = nn.Dropout(dropout)
        for m in self.modules():                 # He initialisation: a plain deep ReLU stack then starts learning at once
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """h: the output of the first FC layer (after its ReLU), for images in [0, 1]."""
        return F.relu(self.fc1(self.drop(self.features(x - 0.5))))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """c: the rest of the classifier, h -> logits."""
        return self.fc2(self.drop(h))

    def forward(self, x):
        return self.head(self.represent(x))


class DVAE(nn.Module):
    """Discrete VAE on h (eq. 1): boolean latents, encoder and decoder of four linear layers each."""

    def __init__(self, dim: int, bits: int, widths=(128, 64, 32), dropout: float = 0.1):
        super().__init__()
        sizes = [dim, *widths, bits]
        self.encoder = mlp(sizes, dropout)          # logits of q(z_j = 1 | h)
        self.decoder = mlp(sizes[::-1], dropout)    # the encoder's layers transposed

    def bits(self, h: torch.Tensor) -> torch.Tensor:
        """The most likely boolean code of h (0./1.): the code that is decoded and intervened on."""
        return (self.encoder(h) > 0).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def loss(self, h: torch.Tensor, temperature: float, kl_weight: float) -> tuple[torch.Tensor, float, float]:
        """Negative ELBO: MSE reconstruction of h (summed over its units) + KL(q(z|h) || Bernoulli(1/2)), with z drawn
        by the Gumbel-softmax over {1, 0} per bit (straight-through, so the decoder always reads booleans)."""
        logits = self.encoder(h)
        z = F.gumbel_softmax(torch.stack([logits, torch.zeros_like(logits)], -1), tau=temperature, hard=True)[..., 0]
        mse = (self.decode(z) - h).pow(2).sum(1)
        q = torch.sigmoid(logits)
        kl = (q * (F.logsigmoid(logits) + math.log(2)) + (1 - q) * (F.logsigmoid(-logits) + math.log(2))).sum(1)
        return (mse + kl_weight * kl).mean(), float(mse.detach().mean()), float(kl.detach().mean())


class Explainer(nn.Module):
    """g: a representation (h^) -> an image in [0, 1] (eq. 2): two FC layers, then two transposed convolutions."""

    def __init__(self, dim: int, size: int, chans: int = 3, dropout: float = 0.1, width: int = 256):
        super().__init__()
        self.side = size // 4
        self.fc = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Dropout(dropout),
                                nn.Linear(width, 64 * self.side ** 2), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, chans, 4, 2, 1))

    def logits(self, h):
        return self.up(self.fc(h).view(-1, 64, self.side, self.side))

    def forward(self, h):
        return torch.sigmoid(self.logits(h))


def flip(z: torch.Tensor, bits=None) -> torch.Tensor:
    """The intervention on a boolean code: `bits` (indices; None = every bit) set to their complement."""
    out = z.clone()
    idx = slice(None) if bits is None else list(np.atleast_1d(bits))
    out[:, idx] = 1 - out[:, idx]
    return out


def information(f, u: torch.Tensor, noise: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Eqs. 3-5: per-coordinate functional Fisher information of the non-negative f around each row of u,
    I_i = E_{v ~ N(u, sigma^2)} [(df/dv_i)^2 / f(v)], averaged over the perturbations `noise` (S, B, d) (sigma is in
    them). `f(v, S)` maps the S x B perturbed rows (sample-major) to S x B values. Returns (B, d). With
    `create_graph`, the result is differentiable in f's parameters (the regulariser trains g through it)."""
    samples, _, d = noise.shape
    v = (u.detach().unsqueeze(0) + noise).reshape(-1, d).requires_grad_(True)
    fv = f(v, samples)
    (grad,) = torch.autograd.grad(fv.sum(), v, create_graph=create_graph)
    return (grad.pow(2) / fv.clamp_min(1e-12).unsqueeze(1)).reshape(samples, -1, d).mean(0)


def class_likelihood(clf: Classifier, pred: torch.Tensor):
    """f for c: the probability of the class c predicts on the original h."""
    return lambda v, s: F.softmax(clf.head(v), 1).gather(1, pred.repeat(s)[:, None]).squeeze(1)


def image_likelihood(g: Explainer, x: torch.Tensor):
    """f for g: exp(-mean binary cross-entropy) of the input image, the geometric mean of its pixels' likelihoods."""
    def f(v, s):
        target = x.repeat(s, 1, 1, 1)
        return torch.exp(-F.binary_cross_entropy_with_logits(g.logits(v), target, reduction="none").mean((1, 2, 3)))
    return f


def shared_information(g, clf, h, h_rec, x, pred, sigma, samples, create_graph=False) -> torch.Tensor:
    """Per example, the cosine similarity between g's information at h^ and c's at h (Table 2), the same Gaussian
    perturbations for both."""
    noise = sigma * torch.randn(samples, *h.shape, device=h.device)
    info_g = information(image_likelihood(g, x), h_rec, noise, create_graph)
    info_c = information(class_likelihood(clf, pred), h, noise).detach()
    return F.cosine_similarity(info_g, info_c, dim=1, eps=1e-12)


def _batches(n: int, size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    return [perm[i:i + size] for i in range(0, n, size)]


@torch.no_grad()
def _apply(fn, x: torch.Tensor, size: int = 1024) -> torch.Tensor:
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


def train_classifier(clf, x, y, cfg: LatentConfig, gen) -> float:
    opt = torch.optim.Adam(clf.parameters(), lr=cfg.lr)
    clf.train()
    for _ in range(cfg.classifier_epochs):
        for idx in _batches(len(y), cfg.classifier_batch, gen):
            opt.zero_grad()
            F.cross_entropy(clf(x[idx]), y[idx]).backward()
            opt.step()
    clf.eval()
    return float((_apply(clf, x).argmax(1) == y).float().mean())


def train_dvae(dvae: DVAE, h: torch.Tensor, cfg: LatentConfig, gen, epochs: int | None = None) -> dict:
    opt = torch.optim.Adam(dvae.parameters(), lr=cfg.lr)
    dvae.train()
    for _ in range(epochs or cfg.dvae_epochs):
        for idx in _batches(len(h), cfg.batch_size, gen):
            opt.zero_grad()
            loss, mse, kl = dvae.loss(h[idx], cfg.temperature, cfg.kl_weight)
            loss.backward()
            opt.step()
    dvae.eval()
    with torch.no_grad():
        _, mse, kl = dvae.loss(h, cfg.temperature, cfg.kl_weight)
    spread = float(h.var(0).sum())                      # a dead representation (all zero) has no relative error
    return {"dvae_mse": mse, "dvae_relative_mse": mse / spread if spread > 1e-8 else float("nan"), "dvae_kl": kl}


def train_explainer(g, clf, h, h_rec, x, cfg: LatentConfig, reg_weight: float, sigma: float, gen) -> None:
    """Eq. 6: BCE(g(h^), x) + lambda / cos(I(g), I(c)); lambda = 0 trains g by reconstruction alone. The DVAE and the
    classifier stay fixed (h, h^ are given)."""
    pred = _apply(clf.head, h).argmax(1)
    opt = torch.optim.Adam(g.parameters(), lr=cfg.lr)
    g.train()
    for _ in range(cfg.explainer_epochs):
        for idx in _batches(len(x), cfg.batch_size, gen):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(g.logits(h_rec[idx]), x[idx])
            if reg_weight > 0:
                cos = shared_information(g, clf, h[idx], h_rec[idx], x[idx], pred[idx], sigma, cfg.fisher_samples,
                                         create_graph=True)
                loss = loss + reg_weight / cos.mean().clamp_min(1e-3)
            loss.backward()
            opt.step()
    g.eval()


def grid_order(label: np.ndarray, attribute: np.ndarray, k: int) -> np.ndarray:
    """k test indices for the figures, the four label x attribute cells in turn (positive A, positive B, negative A,
    negative B, then again)."""
    cells = [np.flatnonzero((label == lab) & (attribute == a)) for lab in (1, 0) for a in (1, 0)]
    order = [c[i] for i in range(max(map(len, cells))) for c in cells if i < len(c)]
    return np.asarray(order[:k])


def run_unit(task_name: str, x_train, y_train, x_explain, x_test, y_test, a_test, seed: int, cfg: LatentConfig,
             device: torch.device) -> dict:
    """One classifier (trained on one split with one seed), its DVAE and its two explanatory networks; returns
    {"metrics": Table 1 and 2 numbers, "examples": a per-test-example DataFrame (predictions before and after the
    intervention, attribute of the concept images before (m0) and after (m1) it, per explanatory network),
    "grid": concept images of the `grid_examples` first in `grid_order`}. Tensors: images in [0, 1] (N, 3, H, W)."""
    task = planted.TASKS[task_name]
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train, x_explain, x_test = (t.to(device) for t in (x_train, y_train, x_explain, x_test))
    y_test_d = torch.as_tensor(y_test, device=device)
    size = x_train.shape[-1]

    clf = Classifier(cfg.channels, cfg.hidden, size, dropout=cfg.dropout).to(device)
    train_acc = train_classifier(clf, x_train, y_train, cfg, gen)
    for p in clf.parameters():
        p.requires_grad_(False)
    h_train, h_test = _apply(clf.represent, x_train), _apply(clf.represent, x_test)

    dvae = DVAE(cfg.hidden, cfg.bits, cfg.dvae_widths, cfg.dropout).to(device)
    fit = train_dvae(dvae, h_train, cfg, gen)
    for p in dvae.parameters():
        p.requires_grad_(False)
    predict = lambda h: _apply(clf.head, h).argmax(1)                         # noqa: E731
    z = _apply(dvae.bits, h_test)
    h_rec, h_int = _apply(dvae.decode, z), _apply(dvae.decode, flip(z))
    pred_h, pred_rec, pred_int = predict(h_test), predict(h_rec), predict(h_int)
    per_bit = [float((predict(_apply(dvae.decode, flip(z, j))) != pred_rec).float().mean()) for j in range(cfg.bits)]
    metrics = {"train_accuracy": train_acc, **fit,
               "acc_original": float((pred_h == y_test_d).float().mean()),
               "acc_reconstructed": float((pred_rec == y_test_d).float().mean()),
               "agreement": float((pred_rec == pred_h).float().mean()),
               "flipped": float((pred_int != pred_rec).float().mean()),
               "best_bit_flipped": max(per_bit), "best_bit": int(np.argmax(per_bit)),
               "distinct_codes": int(torch.unique(z, dim=0).shape[0])}

    h_exp = _apply(clf.represent, x_explain)
    h_exp_rec = _apply(dvae.decode, _apply(dvae.bits, h_exp))
    sigma = cfg.fisher_sigma * float(h_train.std())
    pred_test = pred_h
    frames, grid = [], {}
    order = grid_order(np.asarray(y_test), np.asarray(a_test), cfg.grid_examples)
    for name, weight in zip(EXPLAINERS, (cfg.reg_weight, 0.0)):
        torch.manual_seed(seed)                   # both explanatory networks start from the same weights
        g = Explainer(cfg.hidden, size, dropout=cfg.dropout).to(device)
        train_explainer(g, clf, h_exp, h_exp_rec, x_explain, cfg, weight, sigma, gen)
        for p in g.parameters():
            p.requires_grad_(False)
        concept, intervened = _apply(g, h_rec), _apply(g, h_int)
        cos = torch.cat([shared_information(g, clf, h_test[i:i + 256], h_rec[i:i + 256], x_test[i:i + 256],
                                            pred_test[i:i + 256], sigma, cfg.fisher_eval_samples)
                         for i in range(0, len(h_test), 256)]).detach()
        bce = float(F.binary_cross_entropy(concept, x_test))
        metrics[f"cos_{name}"] = float(cos.mean())
        metrics[f"bce_{name}"] = bce
        frames.append(pd.DataFrame({
            "explainer": name, "example": np.arange(len(y_test)), "label": np.asarray(y_test),
            "attribute": np.asarray(a_test), "pred_original": pred_h.cpu().numpy(),
            "pred_reconstructed": pred_rec.cpu().numpy(), "pred_intervened": pred_int.cpu().numpy(),
            "m0": planted.attribute_score(task, concept.cpu()).numpy(),
            "m1": planted.attribute_score(task, intervened.cpu()).numpy(), "cos": cos.cpu().numpy()}))
        grid[name] = {"concept": concept[order].cpu().numpy(), "intervened": intervened[order].cpu().numpy()}
    metrics["seconds"] = time.perf_counter() - t0
    return {"metrics": metrics, "examples": pd.concat(frames, ignore_index=True), "grid": grid, "order": order}


# ---- summaries (the report's numbers; judging them is verdicts.py's)

def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean over `values` (e.g. one per training seed); NaN bounds for
    fewer than two values."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    mean = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def bootstrap_mean(values, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean over `values` (e.g. test examples)."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return float("nan"), float("nan"), float("nan")
    means = v[np.random.default_rng(seed).integers(0, len(v), (resamples, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)


def oriented_shift(examples: pd.DataFrame, scale: float = 1.0) -> pd.Series:
    """Per example whose prediction the intervention flips: the change of the concept image's attribute score, signed
    so that it is positive when moving the prediction towards the positive class adds attribute A (m1 - m0 for a flip
    to positive, m0 - m1 for a flip to negative), in units of `scale` (the A - B difference of the painted test
    images). The split that pairs the positive class with A should give positive values, its mirror negative ones,
    the control zero."""
    flipped = examples[examples.pred_intervened != examples.pred_reconstructed]
    sign = np.where(flipped.pred_intervened == 1, 1.0, -1.0)
    return (flipped.m1 - flipped.m0) * sign / scale


def concept_gap(examples: pd.DataFrame, scale: float = 1.0) -> float:
    """Mean attribute score of the concept images predicted positive minus that of those predicted negative (before the
    intervention), in units of `scale`: which attribute the concept images of each class carry."""
    pos = examples.pred_reconstructed == 1
    if pos.all() or not pos.any():
        return float("nan")
    return float((examples.m0[pos].mean() - examples.m0[~pos].mean()) / scale)


def bias_rows(examples: pd.DataFrame, scales: dict, resamples: int = 2000) -> pd.DataFrame:
    """Per task, split, explanatory network and seed: the mean oriented shift with its bootstrap interval over the
    flipped examples, how many flipped, and the concept gap. `examples` carries `task`, `split`, `seed` columns."""
    rows = []
    for (task, split, name, seed), d in examples.groupby(["task", "split", "explainer", "seed"], sort=False):
        shift = oriented_shift(d, scales[task])
        mean, lo, hi = bootstrap_mean(shift.to_numpy(), resamples, seed)
        rows.append({"task": task, "split": split, "explainer": name, "seed": seed, "flipped_examples": len(shift),
                     "shift": mean, "shift_low": lo, "shift_high": hi, "gap": concept_gap(d, scales[task])})
    return pd.DataFrame(rows)


def across_seeds(rows: pd.DataFrame, column: str, by=("task", "split", "explainer")) -> pd.DataFrame:
    """`column`'s mean over seeds with its t interval, per group of `by`."""
    out = []
    for key, d in rows.groupby(list(by), sort=False):
        mean, lo, hi = t_interval(d[column].dropna())
        out.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "seeds": int(d[column].notna().sum()),
                    column: mean, f"{column}_low": lo, f"{column}_high": hi})
    return pd.DataFrame(out)
