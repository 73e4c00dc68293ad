"""Figures of the report (seaborn / matplotlib), each saved as PNG by `save`."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")



def percent_axis(ax) -> None:
    """Show the x axis' shares (0-1) as percentages."""
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))


def slanted_labels(ax, rotation: int = 35) -> None:
    """Rotate the x tick labels, anchored at their right end so each label ends under its tick."""
    plt.setp(ax.get_xticklabels(), rotation=rotation, ha="right", rotation_mode="anchor")

def save(fig, path: str | Path, show: bool = True) -> Path:
    """Write `fig` as PNG, show that PNG inline when running in a notebook kernel (so the executed notebook under
    reports/ carries the figure, byte for byte the file DVC tracks), and close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    if show and in_notebook():
        from IPython.display import Image, display
        display(Image(filename=str(path)))
    return path


def in_notebook() -> bool:
    """True inside a Jupyter kernel (papermill's included), False in scripts and tests."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


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


def _empty_figure(text: str):
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


LABEL_COLORS = {"necessary": "tab:red", "distracting": "tab:blue", "irrelevant": "0.75"}


def node_labels(layer_graph) -> np.ndarray:
    """'necessary' / 'distracting' / 'irrelevant' for every parent of a LayerGraph."""
    labels = np.full(layer_graph.n_parents, "irrelevant", dtype=object)
    labels[layer_graph.necessary] = "necessary"
    labels[layer_graph.distracting] = "distracting"
    return labels


def effect_distributions(effects: dict, graph, max_nodes: int = 40, title: str = ""):
    """Fig. 3: per layer, the distribution over X of each node's treatment effect (box per node): the change in the
    class logit when the node's edges to the layer's targets are removed.

    `effects`: layer -> (parents, N) array. A layer with more than `max_nodes` parents shows, of each label
    (necessary, distracting, irrelevant), the nodes of largest |mean effect|, a third of `max_nodes` per label (a
    label with fewer nodes leaves its share to the others), so that every label is seen; the rule is in the panel
    title. Nodes are sorted by mean effect.
    """
    layers = [lg for lg in graph.layers if lg.layer in effects]
    if not layers:
        return _empty_figure(title + " (no layer has targets)")
    fig, axes = plt.subplots(len(layers), 1, figsize=(11, 2.4 * len(layers)), squeeze=False)
    for ax, lg in zip(axes[:, 0], layers):
        te = np.asarray(effects[lg.layer])
        labels = node_labels(lg)
        order = balanced_selection(te.mean(1), labels, max_nodes)
        order = order[np.argsort(te[order].mean(1))]
        df = pd.DataFrame({"node": np.repeat([str(j) for j in order], te.shape[1]),
                           "effect": te[order].ravel(), "label": np.repeat(labels[order], te.shape[1])})
        sns.boxplot(data=df, x="node", y="effect", hue="label", palette=LABEL_COLORS, dodge=False,
                    fliersize=1, linewidth=0.6, ax=ax, hue_order=list(LABEL_COLORS))
        ax.axhline(0, color="k", lw=0.6)
        counts = ", ".join(f"{int((labels == name).sum())} {name}" for name in LABEL_COLORS)
        shown = (f"; shown: the largest |mean effect| of each label, {len(order)} of {lg.n_parents}"
                 if len(order) < lg.n_parents else "")
        ax.set_title(f"{lg.layer}: {lg.n_parents} parents ({counts}) -> {len(lg.targets)} target(s){shown}", fontsize=8)
        ax.set_xlabel("")
        ax.set_ylabel("change in the\nclass logit", fontsize=8)
        ax.tick_params(axis="x", labelsize=6, rotation=90)
        ax.legend(fontsize=7, loc="lower right") if ax is axes[0, 0] else ax.legend_.remove()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def balanced_selection(mean_effect: np.ndarray, labels: np.ndarray, max_nodes: int) -> np.ndarray:
    """Indices of at most `max_nodes` nodes: per label, those of largest |mean effect|, an equal share per label
    (unused shares go to the labels with more nodes)."""
    if len(mean_effect) <= max_nodes:
        return np.arange(len(mean_effect))
    by_label = {name: np.flatnonzero(labels == name) for name in LABEL_COLORS}
    by_label = {name: idx[np.argsort(-np.abs(mean_effect[idx]))] for name, idx in by_label.items() if len(idx)}
    quota = {name: 0 for name in by_label}
    left = max_nodes
    while left > 0 and any(quota[n] < len(by_label[n]) for n in by_label):
        for name in by_label:
            if left > 0 and quota[name] < len(by_label[name]):
                quota[name] += 1
                left -= 1
    return np.concatenate([by_label[name][:quota[name]] for name in by_label])


def drawn_nodes(lg, max_nodes: int) -> list[int]:
    """The parents of LayerGraph `lg` that fig. 4 draws, top to bottom: necessary ones first (largest |mean effect|
    first, up to two thirds of `max_nodes`), then distracting and irrelevant ones (`balanced_selection`)."""
    if lg.n_parents <= max_nodes:                # everything fits: no quota
        labels = node_labels(lg)
        return lg.ranked() + sorted([j for j in range(lg.n_parents) if labels[j] != "necessary"],
                                    key=lambda j: (list(LABEL_COLORS).index(labels[j]), -abs(lg.mean_effect[j])))
    others_count = lg.n_parents - len(lg.necessary)
    necessary = lg.ranked()[:max(1, max_nodes - min(others_count, max_nodes // 3))]   # others keep a third at most
    labels = node_labels(lg)
    others = np.array([j for j in range(lg.n_parents) if labels[j] != "necessary"], dtype=int)
    rest = others[balanced_selection(np.asarray(lg.mean_effect)[others], labels[others], max_nodes - len(necessary))] \
        if len(others) else others
    rest = sorted(rest.tolist(), key=lambda j: (list(LABEL_COLORS).index(labels[j]), -abs(lg.mean_effect[j])))
    return list(necessary) + rest


def graph_drawing(graph, max_nodes: int = 48, max_edges: int = 400, title: str = ""):
    """Figs. 4-5: the graph drawn layer by layer, input side left, the class logit right.

    Column i holds the outputs of the layer named under it (the first: the input channels), i.e. the parents tested
    for the next layer; necessary nodes red (drawn at the top, ids written beside them), distracting blue, irrelevant
    grey. A column with more than `max_nodes` nodes shows a selection (`drawn_nodes`), stated under it. Lines join
    necessary parents to their targets; when a layer has more than `max_edges` edges among the drawn nodes, a seeded
    uniform sample of them is drawn, and the figure says so.
    """
    layers = list(reversed(graph.layers))  # input side first
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(min(2.2 * (len(layers) + 1), 22), 6.5))
    pos = []                                    # per column: {node: y}
    for col, lg in enumerate(layers):
        nodes = drawn_nodes(lg, max_nodes)
        y = np.linspace(1, 0, len(nodes)) if len(nodes) > 1 else np.array([0.5])
        pos.append(dict(zip(nodes, y)))
        labels = node_labels(lg)
        size = max(6, 60 / np.sqrt(len(nodes)))
        for lab, color in LABEL_COLORS.items():
            idx = [i for i, j in enumerate(nodes) if labels[j] == lab]
            ax.scatter(np.full(len(idx), col), y[idx], s=size, c=color, label=lab if col == 0 else None,
                       zorder=3, edgecolors="none")
        shown_necessary = [j for j in nodes if labels[j] == "necessary"]
        if len(shown_necessary) <= 24:
            for j in shown_necessary:
                ax.annotate(str(j), (col, pos[col][j]), xytext=(-4, 0), textcoords="offset points", ha="right",
                            va="center", fontsize=6, color="tab:red")
    pos.append({0: 0.5})                        # the class logit
    ax.scatter([len(layers)], [0.5], s=80, c="k", zorder=3)
    ax.annotate(f"class {graph.class_name or graph.class_index}", (len(layers), 0.5), xytext=(8, 0),
                textcoords="offset points", va="center")
    sampled = []
    for col, lg in enumerate(layers):
        is_top = col == len(layers) - 1
        edges = [(j, 0 if is_top else t) for j in lg.necessary if j in pos[col] for t in (lg.targets[:1] if is_top else lg.targets)
                 if is_top or t in pos[col + 1]]
        if len(edges) > max_edges:
            sampled.append(len(edges))
            edges = [edges[i] for i in rng.choice(len(edges), max_edges, replace=False)]
        segments = [[(col, pos[col][j]), (col + 1, pos[col + 1][t])] for j, t in edges]
        ax.add_collection(LineCollection(segments, colors="tab:red", linewidths=0.3, alpha=0.35, zorder=1))
    names = ["input"] + [lg.layer for lg in layers[:-1]] + [layers[-1].layer if layers else ""]
    ticks = []
    for col, lg in enumerate(layers):
        shown = len(pos[col])
        ticks.append(f"{names[col]}\n({lg.n_parents} nodes" + (f", {shown} drawn)" if shown < lg.n_parents else ")")
                     + f"\n{len(lg.necessary)} necessary")
    ticks.append(f"{names[-1]}\n(class logit)")
    ax.set_xticks(range(len(layers) + 1), ticks, fontsize=7 if len(layers) <= 8 else 6,
                  rotation=0 if len(layers) <= 8 else 90)
    ax.set_xlabel("outputs of layer (the parents tested for the next layer)", fontsize=8)
    ax.set_yticks([])
    ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.0, 1.0))
    note = (f"\nedges: a seeded sample of {max_edges} per layer in {len(sampled)} layer(s) with more "
            f"({sum(sampled)} edges there in all)") if sampled else ""
    ax.set_title((title or f"causal graph of class {graph.class_name or graph.class_index}") + note, fontsize=10)
    ax.grid(False)
    fig.tight_layout()
    return fig


def map_overlays(images, maps, titles=None, peaks=None, ncols: int = 6, title: str = "", cmap: str = "magma",
                 label: str = "map value: each map scaled from its minimum (0) to its maximum (1)"):
    """Images (N, C, H, W) in [0, 1] with maps (N, H, W) overlaid in a perceptual colour map, each map scaled from its
    minimum to its maximum (signs and order kept: peaks of the map are its brightest points), one colour bar saying
    so (`label`, under the title: a colour bar is too short for it in one row); optional peaks (N lists of (row,
    col))."""
    images, maps = np.asarray(images), np.asarray(maps)
    n = len(images)
    if n == 0:
        return _empty_figure(title + " (nothing to show)")
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.8 * ncols, 1.9 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        img = images[i].transpose(1, 2, 0)
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
        low, high = float(maps[i].min()), float(maps[i].max())
        im = ax.imshow((maps[i] - low) / ((high - low) or 1.0), cmap=cmap, alpha=0.55, vmin=0, vmax=1)
        if peaks is not None and len(peaks[i]):
            pk = np.asarray(peaks[i])
            ax.scatter(pk[:, 1], pk[:, 0], marker="x", c="white", s=25, linewidths=1.2)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7)
    fig.suptitle(f"{title}\n{label}" if title else label, fontsize=10)
    fig.tight_layout()
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.7).ax.set_title("map\nvalue", fontsize=8)
    return fig


def graph_responses(graph, responses: dict, example: int = 0, max_nodes: int = 6, title: str = "",
                    cmap: str = "RdBu_r"):
    """Fig. 5 as the paper draws it: the class graph with each node drawn as its causal response (eq. 3) to one
    example. One column per layer (`responses`: layer -> (N, graph nodes of that layer's output, h, w), input side
    first), the `max_nodes` nodes of largest mean |response| per column, every edge between drawn nodes of
    consecutive columns (each necessary parent feeds every node above it), one symmetric colour scale per layer
    with its colour bar below the column (deeper layers respond more weakly)."""
    from matplotlib.patches import ConnectionPatch

    layers = [name for name in responses if responses[name].shape[1]]
    if not layers:
        return _empty_figure(title + " (no graph nodes in these layers)")
    picks = {}
    for name in layers:
        r = np.asarray(responses[name][example])
        picks[name] = np.argsort(-np.abs(r).reshape(len(r), -1).mean(1), kind="stable")[:max_nodes]
    rows = max(len(p) for p in picks.values())
    fig, axes = plt.subplots(rows, len(layers), figsize=(2.6 * len(layers) + 0.6, 1.6 * rows + 1.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    images = {}
    for c, name in enumerate(layers):
        targets = graph.layer(name).targets
        maps = np.asarray(responses[name][example])[picks[name]]
        vmax = float(np.abs(maps).max()) or 1.0
        for r_, j in enumerate(picks[name]):
            ax = axes[r_, c]
            ax.axis("on"); ax.set_xticks([]); ax.set_yticks([])
            images[name] = ax.imshow(maps[r_], cmap=cmap, vmin=-vmax, vmax=vmax)
            ax.set_title(f"node {targets[j] if j < len(targets) else j}", fontsize=7)
        first = picks[name][0]
        axes[0, c].set_title(f"{name}: {responses[name].shape[1]} graph nodes, {len(picks[name])} drawn\n"
                             f"node {targets[first] if first < len(targets) else first}", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    for c, name in enumerate(layers):                   # one colour bar under each column
        box = axes[-1, c].get_position()
        cax = fig.add_axes((box.x0, 0.04, box.width, 0.012))
        fig.colorbar(images[name], cax=cax, orientation="horizontal").set_label(
            f"causal response (eq. 3), {name}", fontsize=7)
    for c in range(1, len(layers)):                     # edges drawn after the layout, in figure coordinates
        for a in range(len(picks[layers[c - 1]])):
            for b in range(len(picks[layers[c]])):
                fig.add_artist(ConnectionPatch(xyA=(1.0, 0.5), coordsA=axes[a, c - 1].transAxes, xyB=(0.0, 0.5),
                                               coordsB=axes[b, c].transAxes, color="0.5", lw=0.5, alpha=0.35))
    return fig
