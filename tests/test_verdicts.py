"""One wording per claim: the LE and IROF verdicts and their criteria on hand-made medians and intervals."""
import matplotlib.pyplot as plt

from causal_interp import plotting, verdicts


def test_le_holds_only_when_lowest_and_clear_of_every_other_interval():
    clear = {"Causal": (0.1, 0.09, 0.11), "IG": (0.4, 0.35, 0.45), "RISE": (0.3, 0.2, 0.5)}
    v = verdicts.le_verdict(clear, "fair protocol")
    assert v.holds and v.outcome == "holds" and "3x higher" in v.detail
    overlap = {**clear, "RISE": (0.2, 0.105, 0.3)}
    v = verdicts.le_verdict(overlap, "fair protocol")
    assert v.outcome == "does not hold" and "overlaps RISE" in v.detail
    beaten = {**clear, "RISE": (0.0075, 0.0062, 0.0088)}      # clearly lower: not "intervals overlap"
    v = verdicts.le_verdict(beaten, "fair protocol")
    assert v.outcome == "does not hold" and v.detail == "rank 2 of 3; RISE lower with separate intervals"
    s = v.sentence()
    assert s.startswith('Claim "the causal maps have the lowest Local Lipschitz Estimate') and "fair protocol" in s
    assert "causal LE median 0.1 [0.09, 0.11], best other RISE 0.0075 [0.0062, 0.0088]" in s and "Criterion:" in s


def test_irof_has_three_outcomes_and_never_calls_last_place_on_par():
    best = {"Causal": (40, 35, 45), "MWP": (30, 25, 35)}
    assert verdicts.irof_verdict(best, "p").outcome == "holds"
    below = {"Causal": (20, 15, 24), "MWP": (30, 25, 35)}
    assert verdicts.irof_verdict(below, "p").outcome == "does not hold"
    last_but_wide = {"Causal": (20, 5, 40), "MWP": (30, 10, 50), "IG": (25, 10, 45)}
    v = verdicts.irof_verdict(last_but_wide, "p", n=8)
    assert v.outcome == "not resolved" and v.detail == "rank 3 of 3, interval overlaps MWP's with 8 examples"


def test_irof_against_mwp_is_judged_against_mwp_alone():
    """Fig. 8's own comparison ("comparable to MWP"): MWP's interval decides, not the best other method's."""
    mwp = verdicts.MWP
    v = verdicts.irof_mwp_verdict({"Causal": (70, 66, 74), mwp: (65, 60, 70), "Occlusion": (90, 88, 92)}, "p")
    assert v.holds and v.detail == "median at least MWP's" and "MWP 65 [60, 70]" in v.number
    assert verdicts.irof_verdict({"Causal": (70, 66, 74), mwp: (65, 60, 70), "Occlusion": (90, 88, 92)}, "p").outcome \
        == "does not hold", "the best-method verdict on the same numbers"
    v = verdicts.irof_mwp_verdict({"Causal": (76.7, 72.9, 80.1), mwp: (96.4, 93.8, 98.9)}, "p")
    assert v.outcome == "does not hold" and v.detail == "interval entirely below MWP's"
    v = verdicts.irof_mwp_verdict({"Causal": (67.9, 65.1, 70.6), mwp: (72.5, 68.9, 74.5)}, "p", n=30)
    assert v.outcome == "not resolved" and v.detail == "median below MWP's, intervals overlap with 30 examples"
    nan = float("nan")
    for summary in ({"Causal": (70, 66, 74), "Occlusion": (90, 88, 92)}, {"Causal": (70, 66, 74), mwp: (nan, nan, nan)}):
        v = verdicts.irof_mwp_verdict(summary, "p")
        assert v.outcome == "not resolved" and "MWP not scored" in v.number
    assert verdicts.of_claim("irof_mwp", {"summary": {"Causal": (1, 0, 2), mwp: (1, 0, 2)}}, "p").holds
    assert 'Claim "the causal maps\' IROF is comparable to MWP\'s' in v.sentence() and verdicts.CRITERIA["irof_mwp"] in v.sentence()


def test_save_writes_the_png_and_closes_the_figure(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = plotting.save(fig, tmp_path / "a" / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not plt.fignum_exists(fig.number)


def test_reliability_fidelity_and_repair_verdicts_follow_their_stated_criteria():
    assert verdicts.reliability_verdict(0.985, "p").holds and not verdicts.reliability_verdict(0.9, "p").holds
    assert "98.5% of the hard-graph nodes in every run" in verdicts.reliability_verdict(0.985, "p").sentence()
    drastic = verdicts.fidelity_verdict(0.9, {"critical": 0.2, "random": 0.8, "magnitude": 0.7}, 0.2, "p")
    close_to_random = verdicts.fidelity_verdict(0.9, {"critical": 0.2, "random": 0.25, "magnitude": 0.7}, 0.2, "p")
    assert drastic.holds and close_to_random.outcome == "does not hold"
    # shares 0, 0.5, 1: class accuracy rises; all-class accuracy kept at 0.5 -> repair
    assert verdicts.repair_verdict([0.8, 0.9, 0.95], [0.9, 0.9, 0.7], [0.01, 0.02, 0.2], "p").holds
    biased = verdicts.repair_verdict([0.8, 0.9, 0.95], [0.9, 0.8, 0.7], [0.01, 0.05, 0.2], "p")
    assert biased.outcome == verdicts.BIAS and "false-positive rate 0.010 -> 0.200" in biased.sentence()
    assert verdicts.repair_verdict([0.8, 0.7, 0.6], [0.9, 0.8, 0.7], [0.01, 0.05, 0.2], "p").outcome == "does not hold"


def test_the_protocols_page_states_every_claim_and_criterion_verbatim():
    """docs/protocols-and-verdicts.md (the README's "How a verdict is worded" until issue 32 moved it there)."""
    from .conftest import REPO

    page = (REPO / "docs" / "protocols-and-verdicts.md").read_text()
    for key in verdicts.CLAIMS:
        assert f"* **{verdicts.CLAIMS[key]}**: {verdicts.CRITERIA[key]}." in page, key
    assert verdicts.BIAS in page


def test_a_method_without_a_score_is_left_out_and_an_unscored_causal_map_is_not_resolved():
    nan = float("nan")
    v = verdicts.irof_verdict({"Causal": (nan, nan, nan), "MWP": (30, 25, 35)}, "p")
    assert v.outcome == "not resolved" and "could not be scored" in v.number
    v = verdicts.le_verdict({"Causal": (0.1, 0.09, 0.11), "RISE": (nan, nan, nan), "IG": (0.5, 0.4, 0.6)}, "p")
    assert v.holds and "RISE" not in v.number and "rank" not in v.detail
    v = verdicts.irof_verdict({"Causal": (20, 15, 24), "MWP": (nan, nan, nan), "IG": (30, 25, 35)}, "p")
    assert v.outcome == "does not hold" and v.detail == "rank 2 of 2, interval entirely below IG's"
    assert verdicts.le_verdict({"Causal": (0.0, 0.0, 0.0), "IG": (0.5, 0.4, 0.6)}, "p").holds   # no division by zero


def test_repair_bias_is_judged_where_the_class_accuracy_rises_most():
    # the rise is largest at share 0.5, where the false-positive rate is still low: not bias, and no repair either
    v = verdicts.repair_verdict([0.8, 0.95, 0.85], [0.9, 0.8, 0.7], [0.01, 0.02, 0.3], "p")
    assert v.outcome == "does not hold"


def test_repair_allows_any_rise_of_the_all_class_accuracy_and_a_fall_of_at_most_0_005():
    """CRITERIA["repair"] says what the code checks: the all-class accuracy may rise by any amount ("stays within
    0.005" would have refused a rise of more than that)."""
    assert "falls by no more than 0.005" in verdicts.CRITERIA["repair"]
    assert verdicts.repair_verdict([0.8, 0.9], [0.9, 0.95], [0.01, 0.01], "p").holds          # all-class +0.05
    assert verdicts.repair_verdict([0.8, 0.9], [0.9, 0.896], [0.01, 0.01], "p").holds         # -0.004
    assert not verdicts.repair_verdict([0.8, 0.9], [0.9, 0.894], [0.01, 0.01], "p").holds     # -0.006
