"""Plotting helpers whose choices a reader relies on (which nodes a figure shows)."""
import numpy as np


def test_fig3_shows_every_label_when_one_label_has_the_largest_effects():
    from causal_interp.plotting import balanced_selection

    mean = np.array([5.0, 4.0, 3.0, 2.0, 1.0, -0.1, -0.2, 0.01, 0.02])    # distracting nodes have the largest |effect|
    labels = np.array(["distracting"] * 5 + ["necessary"] * 2 + ["irrelevant"] * 2, dtype=object)
    chosen = balanced_selection(mean, labels, 6)
    assert sorted(chosen.tolist()) == [0, 1, 5, 6, 7, 8]
    assert sorted(balanced_selection(mean, labels, 7).tolist()) == [0, 1, 2, 5, 6, 7, 8]
    assert len(balanced_selection(mean, labels, 20)) == 9
