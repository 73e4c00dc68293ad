"""Figures of the report (seaborn / matplotlib), each saved as PNG by `save`."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def learning_curves(history: list[dict], title: str = ""):
    """Loss and accuracy per epoch, train vs test."""
    df = pd.DataFrame(history)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "acc")):
        long = df.melt(id_vars="epoch", value_vars=[f"train_{metric}", f"test_{metric}"],
                       var_name="split", value_name=metric)
        long["split"] = long["split"].str.replace(f"_{metric}", "")
        sns.lineplot(data=long, x="epoch", y=metric, hue="split", marker="o", ax=ax)
        ax.set_ylabel("accuracy" if metric == "acc" else "cross-entropy")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def per_class_accuracy(per_class: dict, title: str = ""):
    fig, ax = plt.subplots(figsize=(8, 3.2))
    s = pd.Series(per_class)
    sns.barplot(x=s.index, y=s.values, ax=ax, color="tab:blue")
    ax.set_ylim(max(0.0, s.min() - 0.1), 1.0)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45 if max(len(c) for c in s.index) > 2 else 0)
    fig.tight_layout()
    return fig


def confusion_matrix(cm, classes: list, title: str = ""):
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", xticklabels=classes, yticklabels=classes,
                cbar=False, ax=ax, annot_kws={"size": 7})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def image_grid(images, labels: list, ncols: int = 10, title: str = ""):
    """Images given as a float tensor/array (N, C, H, W) in [0, 1]."""
    images = np.asarray(images)
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.35 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, lab in zip(axes.flat, images, labels):
        img = img.transpose(1, 2, 0)
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        ax.set_title(str(lab), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
