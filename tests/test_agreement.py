"""Metric agreement: ranks follow each metric's direction, rank correlations per property, and a property claim is
made only where every metric of the property ranks the causal maps first."""
import numpy as np
import pandas as pd
import torch
from torch import nn

from causal_interp import agreement, baselines


def medians(values, spread=0.01):
    return pd.DataFrame([{"model": "m", "metric": met, "method": meth, "median": v, "ci_low": v - spread,
                          "ci_high": v + spread} for met, d in values.items() for meth, v in d.items()])


def test_ranks_follow_the_direction_of_each_metric_and_verdicts_need_every_metric():
    ranked = agreement.ranks(medians({
        "LE": {"Causal": 0.1, "A": 0.5, "B": 0.9}, "MaxSensitivity": {"Causal": 0.2, "A": 0.3, "B": 0.4},
        "AvgSensitivity": {"Causal": 0.1, "A": 0.2, "B": np.nan},
        "IROF": {"Causal": 50.0, "A": 60.0, "B": 40.0}, "PixelFlipping": {"Causal": 0.1, "A": 0.3, "B": 0.5},
        "RegionPerturbation": {"Causal": 0.2, "A": 0.1, "B": 0.0}, "Selectivity": {"Causal": 1.0, "A": 3.0, "B": 2.0}}))
    r = ranked.set_index(["metric", "method"])["rank"]
    assert r["IROF", "A"] == 1 and r["PixelFlipping", "Causal"] == 1 and r["RegionPerturbation", "Causal"] == 1
    assert pd.isna(r["AvgSensitivity", "B"])
    v = agreement.property_verdicts(ranked).set_index("property")
    assert v.loc["robustness", "outcome"] == "holds" and v.loc["robustness", "metrics_ranking_causal_first"] == 3
    assert v.loc["faithfulness", "outcome"] == "does not hold" and v.loc["faithfulness", "clearly_beaten_in"] == "IROF"
    assert v.loc["faithfulness", "causal_ranks"] == "IROF 2 of 3, PixelFlipping 1 of 3, RegionPerturbation 1 of 3, Selectivity 1 of 3"
    corr = agreement.rank_correlations(ranked).set_index(["metric_a", "metric_b"]).spearman
    assert corr["LE", "MaxSensitivity"] == 1.0 and corr["PixelFlipping", "RegionPerturbation"] == 1.0
    assert corr["IROF", "PixelFlipping"] == 0.5     # ranks (A, B, Causal): IROF 1, 3, 2 against 2, 3, 1


def test_every_metric_scores_every_method_on_grey_and_rgb_inputs():
    for channels in (1, 3):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)).eval()
        x = torch.rand(4, channels, 16, 16).numpy()
        with torch.no_grad():
            y = model(torch.as_tensor(x)).argmax(1).numpy()
        cfg = agreement.AgreementConfig(samples=2, flip_steps=4, region_steps=4)
        rows = pd.DataFrame(agreement.scores({m: baselines.explainer(m, model) for m in ("Saliency", "InputXGradient")},
                                             model, x, y, cfg))
        assert set(rows.metric) == {n for p in agreement.PROPERTIES.values() for n in p}
        assert len(rows) == 2 * 7 * 4 and rows.score.notna().all()
        sel = rows[rows.metric == "Selectivity"].score
        assert (sel >= 0).all() and (sel <= 16).all(), "area under a probability curve over 16 patches of 4x4"


def test_a_property_claim_needs_intervals_clear_of_every_other_method():
    values = {"LE": {"Causal": 0.1, "A": 0.5}, "MaxSensitivity": {"Causal": 0.2, "A": 0.3},
              "AvgSensitivity": {"Causal": 0.1, "A": 0.2}, "IROF": {"Causal": 50.0, "A": 49.995},
              "PixelFlipping": {"Causal": 0.1, "A": 0.3}, "RegionPerturbation": {"Causal": 0.2, "A": 0.1},
              "Selectivity": {"Causal": 1.0, "A": 2.0}}
    v = agreement.property_verdicts(agreement.ranks(medians(values, spread=0.01))).set_index("property")
    assert v.loc["robustness", "outcome"] == "holds" and v.loc["faithfulness", "outcome"] == "not resolved"
    wide = agreement.property_verdicts(agreement.ranks(medians(values, spread=0.2))).set_index("property")
    assert wide.loc["robustness", "outcome"] == "not resolved", "first by the median, but the intervals overlap"
