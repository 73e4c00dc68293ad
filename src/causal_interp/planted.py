"""Data with a planted, known bias for the latent-space explanation method (stage `latent_intervention`, `latent.py`).

The paper (latent-space-explanation-by-intervention.txt, "Dataset statistics control") trains one classifier on a split
where a nuisance attribute goes with the label 70/30 and another on the mirror split, and shows that the concept images
follow the split. CelebA is not available here, so the same design is built from the verified raw MNIST and CIFAR-10 the
kit loads (`data.load_dataset`), with an attribute we paint ourselves and can therefore measure:

* `mnist`: label 1 = digit < 5; attribute A = the digit drawn in red (R = the gray level, G = B = 0), B = in green.
* `cifar10`: label 1 = animal (bird, cat, deer, dog, frog, horse), 0 = vehicle (airplane, automobile, ship, truck);
  attribute A = a tinted background frame (the outer `FRAME` pixels blended half way to magenta, a colour rare in
  CIFAR-10, so the tint is not confounded with the sky and sea behind planes and ships), B = the image as it is.

Splits (`splits`): the same training images in three versions that differ only in the painted attribute:
`a_majority` (positive class `bias` A / 1 - `bias` B, negative class the other way round), `b_majority` (the mirror)
and `control` (50/50 in both classes). Both classes have `per_class` images. The test set (`balanced_test`) is balanced
over label x attribute, `per_cell` images per cell. Every count is exact (`check_exact`), and everything is drawn from
one seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FRAME = 4                                   # CIFAR-10: width in pixels of the tinted background frame (of 32)
TINT = (1.0, 0.0, 1.0)                      # magenta
TINT_ALPHA = 0.5


@dataclass(frozen=True)
class Task:
    dataset: str            # a key of data.DATASETS
    positive: tuple         # the original classes of label 1
    negative: tuple         # the original classes of label 0
    attributes: tuple       # names of attribute A and B
    label_names: tuple      # names of label 0 and 1


TASKS = {
    "mnist": Task("mnist", (0, 1, 2, 3, 4), (5, 6, 7, 8, 9), ("red", "green"), ("digit >= 5", "digit < 5")),
    "cifar10": Task("cifar10", (2, 3, 4, 5, 6, 7), (0, 1, 8, 9), ("tinted", "plain"), ("vehicle", "animal")),
}
SPLITS = ("a_majority", "b_majority", "control")


def share_of_a(split: str, bias: float) -> tuple[float, float]:
    """(share of attribute A in the positive class, in the negative class) of `split`."""
    if split == "a_majority":
        return bias, 1 - bias
    if split == "b_majority":
        return 1 - bias, bias
    if split == "control":
        return 0.5, 0.5
    raise ValueError(f"unknown split {split!r}; known: {SPLITS}")


def check_exact(per_class: int, bias: float, key: str = "per_class") -> None:
    """The stated proportions must be whole numbers of images: `per_class` x `bias` and `per_class` / 2."""
    for share in (bias, 0.5):
        if abs(per_class * share - round(per_class * share)) > 1e-9:
            raise ValueError(f"{key} = {per_class} x {share} is not a whole number of images: the split's "
                             f"proportions would not be exact")


def binary_labels(task: Task, y: torch.Tensor) -> torch.Tensor:
    """The task's label (1 = positive) of original class labels `y`; -1 for classes in neither group."""
    y = np.asarray(y)
    out = np.full(len(y), -1, dtype=np.int64)
    out[np.isin(y, task.positive)] = 1
    out[np.isin(y, task.negative)] = 0
    return torch.from_numpy(out)


def _draw(labels: torch.Tensor, per_label: int, rng: np.random.Generator, what: str) -> dict[int, np.ndarray]:
    picked = {}
    for lab in (1, 0):
        pool = np.flatnonzero(labels.numpy() == lab)
        if len(pool) < per_label:
            raise ValueError(f"{what}: {per_label} images of label {lab} wanted, the data has {len(pool)}")
        picked[lab] = np.sort(rng.choice(pool, per_label, replace=False))
    return picked


def train_splits(task: Task, y_train: torch.Tensor, per_class: int, bias: float, seed: int) -> dict[str, dict]:
    """The three training splits: {split: {"index", "label", "attribute"}} (numpy arrays; attribute 1 = A). The images
    (indices into the training set) are the same in every split; only which of them carry A differs."""
    check_exact(per_class, bias)
    rng = np.random.default_rng(seed)
    labels = binary_labels(task, y_train)
    picked = _draw(labels, per_class, rng, f"{task.dataset} training splits")
    order = {lab: rng.permutation(per_class) for lab in (1, 0)}     # who gets A: a prefix of this order
    out = {}
    for split in SPLITS:
        index, label, attribute = [], [], []
        for lab, share in zip((1, 0), share_of_a(split, bias)):
            a = np.zeros(per_class, dtype=np.int64)
            a[order[lab][:round(per_class * share)]] = 1
            index.append(picked[lab]); label.append(np.full(per_class, lab)); attribute.append(a)
        out[split] = {"index": np.concatenate(index), "label": np.concatenate(label),
                      "attribute": np.concatenate(attribute)}
    return out


def balanced_test(task: Task, y_test: torch.Tensor, per_cell: int, seed: int) -> dict:
    """The test set, balanced over label x attribute: `per_cell` images in each of the four cells."""
    rng = np.random.default_rng(seed + 1)
    picked = _draw(binary_labels(task, y_test), 2 * per_cell, rng, f"{task.dataset} test set")
    index, label, attribute = [], [], []
    for lab in (1, 0):
        a = np.zeros(2 * per_cell, dtype=np.int64)
        a[rng.permutation(2 * per_cell)[:per_cell]] = 1
        index.append(picked[lab]); label.append(np.full(2 * per_cell, lab)); attribute.append(a)
    return {"index": np.concatenate(index), "label": np.concatenate(label), "attribute": np.concatenate(attribute)}


def paint(task: Task, x_uint8: torch.Tensor, attribute) -> torch.Tensor:
    """Images (N, C, H, W) uint8 -> RGB float in [0, 1] with the attribute painted (1 = A, 0 = B)."""
    x = x_uint8.float() / 255.0
    a = torch.as_tensor(np.asarray(attribute), dtype=torch.bool)
    if task.dataset == "mnist":
        gray = x[:, :1]
        zero = torch.zeros_like(gray)
        red, green = torch.cat([gray, zero, zero], 1), torch.cat([zero, gray, zero], 1)
        return torch.where(a.view(-1, 1, 1, 1), red, green)
    out = x.clone()
    tint = torch.tensor(TINT).view(1, 3, 1, 1)
    frame = frame_mask(x.shape[-1])
    tinted = (1 - TINT_ALPHA) * x + TINT_ALPHA * tint
    sel = a.view(-1, 1, 1, 1) & frame.view(1, 1, *frame.shape)
    return torch.where(sel, tinted, out)


def frame_mask(size: int, width: int = FRAME) -> torch.Tensor:
    """(size, size) bool: the outer `width` pixels (the background frame)."""
    m = torch.ones(size, size, dtype=torch.bool)
    m[width:size - width, width:size - width] = False
    return m


def attribute_score(task: Task, images: torch.Tensor) -> torch.Tensor:
    """How much attribute A an RGB image in [0, 1] carries, one number per image, larger = more A:
    * mnist: the red-green balance (sum R - sum G) / (sum R + sum G), +1 all red (A), -1 all green (B);
    * cifar10: the frame's magenta, the mean over the frame of (R + B) / 2 - G; about +0.5 more with the tint (A) than
      without it (B), whose natural value is near 0.
    Applied to the explanatory network's concept images it measures which attribute they show."""
    images = torch.as_tensor(images).float()
    if task.dataset == "mnist":
        r, g = images[:, 0].sum((1, 2)), images[:, 1].sum((1, 2))
        return (r - g) / (r + g).clamp_min(1e-6)
    frame = frame_mask(images.shape[-1])
    magenta = (images[:, 0] + images[:, 2]) / 2 - images[:, 1]
    return magenta[:, frame].mean(1)
