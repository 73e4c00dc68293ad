"""Interactive view of one class graph (fig. 4), for the HTML book: plotly, one HTML page per graph file.

Why plotly and not pyvis: the graph is layered (one column per layer, input side left), and plotly draws exactly the
positions of the static fig. 4 (`plotting.drawn_nodes`), with hover text per node (id, label, mean effect, z, p) and a
legend entry per layer, so a reader hides or shows a layer's nodes and edges with one click; pyvis lays a graph out by
physics and fetches vis-network from a CDN unless told otherwise. The pages load plotly.js from a file beside them,
so they work offline.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plotting import LABEL_COLORS, drawn_nodes, node_labels

COLORS = {"necessary": "#d62728", "distracting": "#1f77b4", "irrelevant": "#bfbfbf"}
assert set(COLORS) == set(LABEL_COLORS)


def graph_figure(graph, max_nodes: int = 48, max_edges: int = 400):
    """The plotly figure of `graph` (a ClassGraph): per layer a legend group with its nodes and its edges."""
    import plotly.graph_objects as go

    layers = list(reversed(graph.layers))                      # input side first
    rng = np.random.default_rng(0)
    fig = go.Figure()
    pos = []
    names = ["input"] + [lg.layer for lg in layers[:-1]]
    for col, lg in enumerate(layers):
        nodes = drawn_nodes(lg, max_nodes)
        ys = np.linspace(1, 0, len(nodes)) if len(nodes) > 1 else np.array([0.5])
        pos.append(dict(zip(nodes, ys)))
        labels = node_labels(lg)
        hover = [f"{'input channel' if col == 0 else names[col] + ' output'} {j}<br>{labels[j]} for {lg.layer}<br>mean effect {lg.mean_effect[j]:.4g}"
                 f"<br>z {lg.z[j]:.3g}, p {lg.p[j]:.3g}" for j in nodes]
        group = f"{names[col]} -> {lg.layer}"
        fig.add_trace(go.Scatter(x=[col] * len(nodes), y=ys, mode="markers", name=f"{group} ({len(lg.necessary)} necessary"
                                 f"{', ' + str(len(nodes)) + ' of ' + str(lg.n_parents) + ' drawn' if len(nodes) < lg.n_parents else ''})",
                                 legendgroup=group, marker=dict(color=[COLORS[labels[j]] for j in nodes], size=8),
                                 hovertext=hover, hoverinfo="text"))
    pos.append({0: 0.5})
    for col, lg in enumerate(layers):
        top = col == len(layers) - 1
        edges = [(j, 0 if top else t) for j in lg.necessary if j in pos[col] for t in (lg.targets[:1] if top else lg.targets)
                 if top or t in pos[col + 1]]
        if len(edges) > max_edges:
            edges = [edges[i] for i in rng.choice(len(edges), max_edges, replace=False)]
        x, y = [], []
        for j, t in edges:
            x += [col, col + 1, None]
            y += [pos[col][j], pos[col + 1][t], None]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color="rgba(214,39,40,0.25)", width=1),
                                 legendgroup=f"{names[col]} -> {lg.layer}", showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[len(layers)], y=[0.5], mode="markers+text", text=[f"class {graph.class_name}"],
                             textposition="middle right", marker=dict(color="black", size=12), name="class logit"))
    fig.update_layout(title=f"{graph.model + ': ' if graph.model else ''}causal graph of class {graph.class_name} ({graph.test} test): red necessary, blue "
                            f"distracting, grey irrelevant; click a legend entry to hide a layer",
                      xaxis=dict(tickvals=list(range(len(layers) + 1)), ticktext=names + [layers[-1].layer if layers else ""],
                                 title="outputs of layer"), yaxis=dict(visible=False), template="plotly_white",
                      height=650, legend=dict(font=dict(size=10)))
    return fig


def write_pages(graph_files: dict[str, Path], out: Path) -> dict[str, str]:
    """One HTML page per graph file ({name: json path}) under `out`, with plotly.js written once beside them; the
    same graph files give the same bytes (the plot's element id is the page's name, not plotly's random one).
    Returns {name: page file name}."""
    from plotly.offline import get_plotlyjs

    from .discovery import ClassGraph

    out.mkdir(parents=True, exist_ok=True)
    (out / "plotly.min.js").write_text(get_plotlyjs())
    pages = {}
    for name, path in graph_files.items():
        page = f"{name}.html"
        graph_figure(ClassGraph.load(path)).write_html(out / page, include_plotlyjs="plotly.min.js", full_html=True,
                                                       div_id=f"graph-{name}")
        pages[name] = page
    return pages
