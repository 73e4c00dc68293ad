"""Plotting helpers whose choices a reader relies on (which nodes a figure shows)."""
import numpy as np

from causal_interp import plotting


def test_fig3_shows_every_label_when_one_label_has_the_largest_effects():
    from causal_interp.plotting import balanced_selection

    mean = np.array([5.0, 4.0, 3.0, 2.0, 1.0, -0.1, -0.2, 0.01, 0.02])    # distracting nodes have the largest |effect|
    labels = np.array(["distracting"] * 5 + ["necessary"] * 2 + ["irrelevant"] * 2, dtype=object)
    chosen = balanced_selection(mean, labels, 6)
    assert sorted(chosen.tolist()) == [0, 1, 5, 6, 7, 8]
    assert sorted(balanced_selection(mean, labels, 7).tolist()) == [0, 1, 2, 5, 6, 7, 8]
    assert len(balanced_selection(mean, labels, 20)) == 9


def test_fig4_draws_necessary_nodes_first_by_effect_and_keeps_every_label():
    from causal_interp.discovery import LayerGraph
    from causal_interp.plotting import drawn_nodes, graph_drawing

    lg = LayerGraph("fc", 10, [0], necessary=[1, 2, 3, 4], distracting=[5, 6], irrelevant=[0, 7, 8, 9],
                    mean_effect=[0.0, -0.1, -0.5, -0.3, -0.2, 0.4, 0.1, 0.01, 0.02, 0.03], z=[0.0] * 10, p=[1.0] * 10)
    assert drawn_nodes(lg, 6) == [2, 3, 4, 1, 5, 9]
    assert drawn_nodes(lg, 100) == [2, 3, 4, 1, 5, 6, 9, 8, 7, 0]

    class Graph:
        layers, class_name, class_index = [lg], "three", 3
    fig = graph_drawing(Graph(), max_nodes=6)
    assert "10 nodes, 6 drawn" in fig.axes[0].get_xticklabels()[0].get_text()


def test_graph_responses_draws_the_strongest_nodes_with_edges_and_one_scale():
    from matplotlib.patches import ConnectionPatch

    class Layer:
        def __init__(self, targets):
            self.targets = targets

    class Graph:
        def layer(self, name):
            return Layer([10, 11, 12, 13] if name == "conv1" else [20, 21, 22])

    r1 = np.zeros((1, 4, 5, 5)); r1[0, 2] = 3.0; r1[0, 0] = -1.0          # node 12 strongest, then 10
    r2 = np.zeros((1, 3, 4, 4)); r2[0, 1] = 0.5
    fig = plotting.graph_responses(Graph(), {"conv1": r1, "conv2": r2, "none": np.zeros((1, 0, 2, 2))}, max_nodes=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.endswith("node 12") for t in titles) and any(t.endswith("node 10") for t in titles)
    assert not any("none" in t for t in titles)                           # a layer without graph nodes is left out
    edges = [a for a in fig.artists if isinstance(a, ConnectionPatch)]
    assert len(edges) == 2 * 2                                             # every drawn pair of consecutive layers
    clims = {ax.get_title().split()[-1]: ax.images[0].get_clim() for ax in fig.axes if ax.images}
    assert clims["12"] == clims["10"] == (-3.0, 3.0)                       # one symmetric scale per layer
    assert clims["21"] == (-0.5, 0.5)
    plotting.plt.close(fig)


def test_map_overlays_states_the_scaling_under_the_title_and_keeps_it_inside_the_figure(tmp_path):
    r = np.random.default_rng(0)
    fig = plotting.map_overlays(r.random((3, 3, 8, 8)), r.random((3, 8, 8)), ["a", "b", "c"], ncols=3,
                                title="maps, class cat")
    assert fig.get_suptitle() == ("maps, class cat\n"
                                        "map value: each map scaled from its minimum (0) to its maximum (1)")
    bar = fig.axes[-1]
    assert bar.get_title() == "map\nvalue" and bar.get_ylabel() == ""   # no long label along a one-row bar
    fig.canvas.draw()
    inside = fig.bbox
    for text in (fig._suptitle, bar.title):   # (no public getter for the Text itself)
        box = text.get_window_extent()
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and box.y1 <= inside.y1
    plotting.save(fig, tmp_path / "maps.png", show=False)
