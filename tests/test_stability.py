"""The seed x graph-protocol study of the LeNet verdicts: aggregation, criteria on hand-made tables, params checks."""
import pandas as pd
import pytest

from causal_interp import config, stability, verdicts


def test_a_verdict_that_differs_between_seeds_is_reported_as_flipping():
    rows = pd.DataFrame([{"seed": s, "protocol": p, "figure": 7, "outcome": o}
                         for s, p, o in [(0, "kit", "holds"), (1, "kit", "holds"),
                                         (0, "authors", "holds"), (1, "authors", "does not hold")]])
    table = stability.stability(rows).set_index("protocol")
    assert table.loc["kit", "verdict across seeds"] == "holds (every seed)"
    assert table.loc["authors", "verdict across seeds"] == "flips with the seed: seed 0 holds; seed 1 does not hold"


def test_fidelity_and_repair_verdicts_read_the_tables_as_their_stages_do():
    fid = pd.DataFrame([{"class": c, "share": s, "ranking": h, "accuracy": a} for c in (0, 1)
                        for s, h, a in [(0.0, "critical", 0.9), (0.0, "random", 0.9), (0.0, "magnitude", 0.9),
                                        (0.1, "critical", 0.2), (0.1, "random", 0.85), (0.1, "magnitude", 0.8),
                                        (0.5, "critical", 0.0), (0.5, "random", 0.1), (0.5, "magnitude", 0.1)]])
    v = verdicts.of_claim("fidelity", stability.fidelity_numbers(fid), "p")
    assert v.holds and "top 10% critical" in v.number          # the largest share <= 20%, not 50%
    rep = pd.DataFrame([{"class": 0, "share": s, "mask": m, "class_accuracy": c, "all_accuracy": a,
                         "false_positive_rate": f, "precision": 0.5}
                        for s, m, c, a, f in [(0.0, "graph", 0.8, 0.9, 0.01), (1.0, "graph", 0.95, 0.6, 0.3),
                                              (0.0, "random", 0.8, 0.9, 0.01), (1.0, "random", 0.99, 0.99, 0.0)]])
    assert verdicts.of_claim("repair", stability.repair_numbers(rep), "p").outcome == verdicts.BIAS    # random rows do not count


@pytest.mark.parametrize("edit, message", [
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"fidelity_shares": [0.0, 0.5]}, r"needs a share in \(0, 0.2\]"),
    ({"repair_shares": [0.5, 1.0]}, "starting at 0"),
    ({"train": {"dataset": "mnist", "model": "no_such_net"}}, "no_such_net"),
    ({"le": {"le_samples": 0}}, "le_samples"),
])
def test_bad_params_stop_before_any_training(edit, message):
    values = {"train": {"dataset": "mnist", "model": "lenet"}, **edit}
    with pytest.raises((ValueError, config.ConfigError), match=message):
        config.from_dict(stability.StabilityConfig, values, "lenet_verdicts")
