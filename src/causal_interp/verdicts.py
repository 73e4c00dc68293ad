"""One wording per claim: each verdict states the claim, the protocol, the number, its interval and the criterion.

The notebooks, their `summary/*.json` rows and the README quote `Verdict.sentence()` and `Verdict.outcome`, so one claim
is never worded two ways. Intervals are bootstrap 95% intervals of the median (`evaluation.median_ci`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLAIMS = {
    "le": "the causal maps have the lowest Local Lipschitz Estimate (LE, lower is more stable) by a wide margin",
    "irof": "the causal maps' IROF is the best or on par with the best method (higher is more faithful)",
    "irof_mwp": "the causal maps' IROF is comparable to MWP's (Excitation Backprop, the paper's own comparison; higher is "
                "more faithful)",
    "reliability": "98-100% of the hard-intervention graph's nodes are necessary in every soft-intervention run (fig. 7)",
    "fidelity": "masking the top critical neurons of every layer (20% or less) drops class accuracy drastically (fig. 10)",
    "repair": "masking distracting and irrelevant paths at inference improves accuracy (fig. 11)",
}
CRITERIA = {
    "le": "holds when the causal median is the lowest and its 95% interval lies entirely below every other method's; "
          "otherwise it does not hold",
    "irof": "holds when the causal median is the highest; does not hold when the causal 95% interval lies entirely below "
            "the best other method's; otherwise not resolved (the intervals overlap at this number of examples)",
    "irof_mwp": "holds when the causal median is at least MWP's; does not hold when the causal 95% interval lies entirely "
                "below MWP's; otherwise not resolved (the intervals overlap at this number of examples, or MWP was not "
                "scored)",
    "reliability": "holds when at least 98% of the hard-graph nodes, pooled over classes and layers, are necessary in "
                   "every run",
    "fidelity": "holds when, at the largest share of at most 20%, the class accuracy is below half the unmasked accuracy "
                "and at least 0.1 below both the random and the weight-magnitude rankings",
    "repair": "holds when at some share the class accuracy rises by more than 0.005 while the all-class accuracy falls "
              "by no more than 0.005; when the class accuracy rises but, at the share of its largest rise, the class's "
              "false-positive rate has risen by more than 0.05, the rise is bias towards the class; otherwise it does "
              "not hold",
}
HOLDS, FAILS, UNRESOLVED = "holds", "does not hold", "not resolved"
BIAS = "class accuracy rises as the paper reports; it is bias towards the class, not repair"


@dataclass(frozen=True)
class Verdict:
    claim: str        # key of CLAIMS
    protocol: str     # e.g. "fair protocol", "uniform normalisation", "authors' protocol"
    number: str       # the causal number with its interval, and the best other method's
    outcome: str      # HOLDS, FAILS or UNRESOLVED
    detail: str = ""  # what decided it, in words

    @property
    def holds(self) -> bool:
        return self.outcome == HOLDS

    def sentence(self) -> str:
        """The verdict as one Markdown sentence, the same wherever it is shown."""
        return (f"Claim \"{CLAIMS[self.claim]}\", {self.protocol}: {self.number}. **{self.outcome}**"
                + (f" ({self.detail})" if self.detail else "") + f". Criterion: {CRITERIA[self.claim]}.")


def _fmt(name: str, s: tuple) -> str:
    return f"{name} {s[0]:.3g} [{s[1]:.3g}, {s[2]:.3g}]"


def _scored(summary: dict[str, tuple]) -> tuple[tuple, dict]:
    """(the causal (median, low, high), the other methods with a finite median): a method every example of which
    scored NaN has no place in a ranking."""
    return summary["Causal"], {m: s for m, s in summary.items() if m != "Causal" and np.isfinite(s[0])}


def _not_scored(claim: str, protocol: str, summary: dict) -> Verdict | None:
    causal, others = _scored(summary)
    if not np.isfinite(causal[0]):
        return Verdict(claim, protocol, "the causal maps could not be scored (every example NaN)", UNRESOLVED,
                       "not scored")
    if not others:
        return Verdict(claim, protocol, f"causal median {_fmt('', causal).strip()}, no other method scored", UNRESOLVED,
                       "nothing to compare with")
    return None


def le_verdict(summary: dict[str, tuple], protocol: str) -> Verdict:
    """Paper (fig. 8): lowest LE by a wide margin. `summary`: {method: (median, ci_low, ci_high)}, "Causal" among them.
    Methods whose median is NaN are left out; a NaN causal median is not resolved."""
    missing = _not_scored("le", protocol, summary)
    if missing:
        return missing
    causal, others = _scored(summary)
    best = min(others, key=lambda m: others[m][0])
    rank = 1 + sum(s[0] < causal[0] for s in others.values())
    n = len(others) + 1
    lowest = rank == 1
    clear = all(causal[2] < s[1] for s in others.values())
    below = [m for m, s in others.items() if s[2] < causal[1]]        # methods clearly more stable than the causal maps
    if lowest and clear:
        ratio = f"{others[best][0] / causal[0]:.2g}x higher" if causal[0] > 0 else "higher"
        detail = f"lowest, interval clear of every other method; {_fmt(best, others[best])} is {ratio}"
    elif lowest:
        overlapping = [m for m, s in others.items() if s[1] <= causal[2]]
        detail = f"lowest median, but its interval overlaps {', '.join(overlapping)}'s: no wide margin"
    else:
        detail = (f"rank {rank} of {n}; " + (f"{', '.join(below)} lower with separate intervals" if below else
                                                      f"{best} lower, intervals overlap"))
    return Verdict("le", protocol, f"causal LE median {_fmt('', causal).strip()}, best other {_fmt(best, others[best])}",
                   HOLDS if lowest and clear else FAILS, detail)


def irof_verdict(summary: dict[str, tuple], protocol: str, n: int | None = None) -> Verdict:
    """Paper (fig. 8): IROF of the causal maps best or on par. Three outcomes, see CRITERIA["irof"]. Methods whose
    median is NaN are left out; a NaN causal median is not resolved."""
    missing = _not_scored("irof", protocol, summary)
    if missing:
        return missing
    causal, others = _scored(summary)
    best = max(others, key=lambda m: others[m][0])
    rank = 1 + sum(s[0] > causal[0] for s in others.values())
    if rank == 1:
        outcome, detail = HOLDS, "highest median"
    elif causal[2] < others[best][1]:
        outcome, detail = FAILS, f"rank {rank} of {len(others) + 1}, interval entirely below {best}'s"
    else:
        outcome = UNRESOLVED
        detail = f"rank {rank} of {len(others) + 1}, interval overlaps {best}'s" + (f" with {n} examples" if n else "")
    return Verdict("irof", protocol, f"causal IROF median {_fmt('', causal).strip()}, best other {_fmt(best, others[best])}",
                   outcome, detail)


MWP = "ExcitationBackprop"     # the method the paper compares the causal maps' IROF with (fig. 8: "comparable to MWP")


def irof_mwp_verdict(summary: dict[str, tuple], protocol: str, n: int | None = None) -> Verdict:
    """Paper (fig. 8): the causal maps' IROF "is comparable to MWP", against MWP alone (`irof_verdict` compares with the
    best other method). `summary`: {method: (median, ci_low, ci_high)} with "Causal" and `MWP` among them; see
    CRITERIA["irof_mwp"]. A NaN median, or MWP missing (not scored, or failed on the model), is not resolved."""
    causal, mwp = summary["Causal"], summary.get(MWP)
    if not np.isfinite(causal[0]):
        return Verdict("irof_mwp", protocol, "the causal maps could not be scored (every example NaN)", UNRESOLVED,
                       "not scored")
    if mwp is None or not np.isfinite(mwp[0]):
        return Verdict("irof_mwp", protocol, f"causal IROF median {_fmt('', causal).strip()}, MWP not scored",
                       UNRESOLVED, "nothing to compare with")
    number = f"causal IROF median {_fmt('', causal).strip()}, {_fmt('MWP', mwp)}"
    if causal[0] >= mwp[0]:
        return Verdict("irof_mwp", protocol, number, HOLDS, "median at least MWP's")
    if causal[2] < mwp[1]:
        return Verdict("irof_mwp", protocol, number, FAILS, "interval entirely below MWP's")
    return Verdict("irof_mwp", protocol, number, UNRESOLVED,
                   "median below MWP's, intervals overlap" + (f" with {n} examples" if n else ""))


def reliability_verdict(share_in_every_run: float, protocol: str) -> Verdict:
    """Fig. 7. `share_in_every_run`: the hard-graph nodes necessary in every soft run, pooled over classes and layers."""
    return Verdict("reliability", protocol, f"{share_in_every_run:.1%} of the hard-graph nodes in every run (paper 98-100%)",
                   HOLDS if share_in_every_run >= 0.98 else FAILS)


def fidelity_verdict(unmasked: float, at_share: dict[str, float], share: float, protocol: str) -> Verdict:
    """Fig. 10. `at_share`: mean class accuracy at `share` masked, per ranking ("critical", "random", "magnitude")."""
    critical, others = at_share["critical"], min(at_share["random"], at_share["magnitude"])
    drastic = critical < 0.5 * unmasked and critical < others - 0.1
    return Verdict("fidelity", protocol,
                   f"class accuracy {critical:.3f} with the top {share:.0%} critical neurons masked (unmasked {unmasked:.3f}, "
                   f"random {at_share['random']:.3f}, weight magnitude {at_share['magnitude']:.3f})", HOLDS if drastic else FAILS)


@dataclass
class RepairFacts:
    """What fig. 11's verdict rests on, as positions in the sequence of masked shares: where class accuracy rises
    (by more than 0.5 points), where it rises while all-class accuracy falls by no more than 0.5 points (a repair; a
    rise of the all-class accuracy is no harm), and whether
    the class's false-positive rate rose by more than 5 points at the largest class-accuracy rise (bias)."""

    rises: list
    repaired: list
    biased: bool


def repair_facts(class_accuracy, all_accuracy, false_positive_rate) -> RepairFacts:
    """Fig. 11's facts; each argument a sequence over the masked shares in increasing order, the first unmasked."""
    c, a, f = (list(map(float, v)) for v in (class_accuracy, all_accuracy, false_positive_rate))
    rises = [i for i in range(1, len(c)) if c[i] > c[0] + 0.005]
    return RepairFacts(rises, [i for i in rises if a[i] >= a[0] - 0.005],
                       bool(rises) and f[max(rises, key=lambda i: c[i])] > f[0] + 0.05)


def repair_verdict(class_accuracy, all_accuracy, false_positive_rate, protocol: str) -> Verdict:
    """Fig. 11. Each argument: a sequence over the masked shares in increasing order, the first one unmasked (share 0);
    means over classes of the graph masks."""
    c, a, f = (list(map(float, v)) for v in (class_accuracy, all_accuracy, false_positive_rate))
    facts = repair_facts(c, a, f)
    outcome = HOLDS if facts.repaired else BIAS if facts.biased else FAILS
    return Verdict("repair", protocol,
                   f"every distracting/irrelevant path masked: class accuracy {c[0]:.3f} -> {c[-1]:.3f}, the class's "
                   f"false-positive rate {f[0]:.3f} -> {f[-1]:.3f}, all-class accuracy {a[0]:.3f} -> {a[-1]:.3f}", outcome)


def of_claim(claim: str, numbers: dict, protocol: str) -> Verdict:
    """The verdict on `claim` (a key of CLAIMS) from `numbers`, the arguments of its function by name (as a compute
    stage stores them, e.g. `stability.run`'s rows), under `protocol`."""
    return {"le": le_verdict, "irof": irof_verdict, "irof_mwp": irof_mwp_verdict, "reliability": reliability_verdict,
            "fidelity": fidelity_verdict, "repair": repair_verdict}[claim](**numbers, protocol=protocol)


# The earlier version of the method (stage `per_example`, `causal_interp.per_example`): its claims, criteria and verdicts
CLAIMS.update({
    "correction": "keeping only the G+ parameters of the true class's per-example graph corrects the wrong predictions "
                  "(earlier paper, sec. 3.2: 11 of 11 corrected)",
    "conv1_filters": "the causal filters of the first conv layer are the same for the two digits (earlier paper, fig. 4)",
})
CRITERIA.update({
    "correction": "holds when at least 90% of the pair's errors are corrected and the random control of the same size "
                  "corrects at most half as many; not resolved with fewer than 3 errors; otherwise it does not hold",
    "conv1_filters": "holds when the two digits' sets of filters in G+ of more than the frequency threshold of their "
                     "examples are equal and not empty; not resolved when both are empty; otherwise it does not hold",
})


def correction_verdict(rows: list[dict], pair: tuple[int, int]) -> Verdict:
    """CRITERIA["correction"] on the corrections of one (true, predicted) pair."""
    n = len(rows)
    protocol = f"LeNet, true {pair[0]} predicted as {pair[1]}, {n} test errors, graphs from the true label"
    if n < 3:
        return Verdict("correction", protocol, f"{n} errors", UNRESOLVED, "fewer than 3 errors")
    ours = float(np.mean([r["corrected"] for r in rows]))
    rand = float(np.mean([r["random_corrected"] for r in rows]))
    holds = ours >= 0.9 and rand <= ours / 2
    return Verdict("correction", protocol, f"{ours:.0%} corrected, random control of the same size {rand:.0%}",
                   HOLDS if holds else FAILS,
                   f"true-class probability {np.mean([r['true_prob_before'] for r in rows]):.2f} -> "
                   f"{np.mean([r['true_prob_after'] for r in rows]):.2f}")


def _jaccard(a, b) -> float:
    """|a & b| / |a | b| (1 for two empty sets); `per_example.jaccard`."""
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else 1.0


def filters_verdict(a: list[int], b: list[int], classes: tuple, layer: str, share: float) -> Verdict:
    """CRITERIA["conv1_filters"]: the two classes' causal filters of `layer`, and their Jaccard overlap."""
    protocol = f"LeNet `{layer}`, filters in G+ of more than {share:.0%} of the examples"
    number = f"digit {classes[0]}: {a}, digit {classes[1]}: {b} (Jaccard {_jaccard(a, b):.2f})"
    if not a and not b:
        return Verdict("conv1_filters", protocol, number, UNRESOLVED, "no filter reaches the share")
    return Verdict("conv1_filters", protocol, number, HOLDS if set(a) == set(b) else FAILS)


# The third method of the line of work, latent-space explanation by intervention (stage `latent_intervention`,
# `causal_interp.latent`; ../shared/paper/latent-space-explanation-by-intervention.txt), on tasks with a planted bias
CLAIMS.update({
    "latent_accuracy": "the classifier keeps its accuracy on the DVAE-reconstructed representation (latent-space paper, "
                       "Table 1: 91.8% against 92.1% on smiling)",
    "latent_flips": "flipping the DVAE's latent bits flips the classifier's prediction for nearly every example "
                    "(latent-space paper, Table 1: 92-99% of the examples)",
    "latent_information": "the regulariser raises the cosine similarity between the explanatory and the discriminative "
                          "information (latent-space paper, Table 2: 0.37-0.51 without it, 0.80-0.85 with it)",
    "latent_bias": "the concept images carry the attribute the training split pairs with the positive class, A in one "
                   "split and B in the mirror split, and the intervention moves it (latent-space paper, fig. 4; "
                   "measured here on a painted attribute)",
    "latent_control": "on a training split without the bias the intervention does not move the attribute (a control "
                      "beyond the latent-space paper)",
})
CRITERIA.update({
    "latent_accuracy": "holds when the accuracy on the reconstructed representation, averaged over the training splits "
                       "and seeds, is at most 1 point below the accuracy on the original representation; otherwise it "
                       "does not hold",
    "latent_flips": "holds when the share of test examples whose prediction the intervention (every bit flipped) "
                    "changes, averaged over the training splits and seeds, is at least 92% (the paper's lowest); "
                    "otherwise it does not hold",
    "latent_information": "holds when the 95% interval over the runs (splits x seeds) of the rise of the cosine "
                          "similarity with the regulariser lies above 0; does not hold when the mean rise is 0 or less; "
                          "otherwise not resolved",
    "latent_bias": "the oriented shift is the change of the concept image's attribute score under the intervention, "
                   "signed positive when moving the prediction towards the positive class adds attribute A, in units "
                   "of the painted A - B difference; holds when, over the training seeds, its 95% interval lies above "
                   "0 and its mean is at least 0.05 in the split that pairs the positive class with A, and the mirror "
                   "split's the other way round; does not hold when either mean has the wrong sign or both intervals "
                   "lie within +-0.05 (the attribute does not move perceptibly); otherwise not resolved",
    "latent_control": "holds when the control split's 95% interval of the oriented shift over the training seeds lies "
                      "within +-0.05 (5% of the painted A - B difference); does not hold when it lies entirely beyond "
                      "that margin; otherwise not resolved",
})


def _interval(s: tuple) -> str:
    return f"{s[0]:.3g} [{s[1]:.3g}, {s[2]:.3g}]" if np.isfinite(s[1]) else f"{s[0]:.3g} (no interval)"


def latent_accuracy_verdict(original: float, reconstructed: float, protocol: str) -> Verdict:
    """Table 1: mean accuracies over the training splits and seeds, on the original and the reconstructed h."""
    drop = original - reconstructed
    return Verdict("latent_accuracy", protocol, f"accuracy {reconstructed:.1%} on the reconstructed representation "
                   f"against {original:.1%} on the original ({-drop * 100:+.2g} points)",
                   HOLDS if drop <= 0.01 else FAILS)


def latent_flips_verdict(flipped: float, best_bit: float, protocol: str) -> Verdict:
    """Table 1's "% of change": the mean share of predictions changed by flipping every bit; `best_bit`, the mean share
    changed by the single most effective bit, is reported beside it."""
    return Verdict("latent_flips", protocol, f"{flipped:.1%} of the predictions flipped (the best single bit: "
                   f"{best_bit:.1%})", HOLDS if flipped >= 0.92 else FAILS)


def latent_information_verdict(with_reg: float, without: float, rise: tuple, protocol: str) -> Verdict:
    """Table 2: mean cosine similarity with and without the regulariser; `rise`: (mean, low, high) of the per-run rise."""
    outcome = HOLDS if rise[1] > 0 else FAILS if not rise[0] > 0 else UNRESOLVED
    return Verdict("latent_information", protocol, f"cosine similarity {with_reg:.2f} with the regulariser, "
                   f"{without:.2f} without (rise {_interval(rise)})", outcome)


LATENT_MARGIN = 0.05     # an attribute move below 5% of the painted A - B difference is not a move one can see


def latent_bias_verdict(a_majority: tuple, b_majority: tuple, protocol: str) -> Verdict:
    """The planted bias, measured: (mean, low, high) over the training seeds of the oriented shift in the split pairing
    the positive class with A (`a_majority`) and in its mirror (`b_majority`); see CRITERIA["latent_bias"]."""
    number = f"oriented shift {_interval(a_majority)} in the A-majority split, {_interval(b_majority)} in the mirror split"
    m = LATENT_MARGIN
    if not (np.isfinite(a_majority[0]) and np.isfinite(b_majority[0])):
        return Verdict("latent_bias", protocol, number, UNRESOLVED, "no prediction flipped: nothing to measure")
    if a_majority[1] > 0 and b_majority[2] < 0 and a_majority[0] >= m and b_majority[0] <= -m:
        return Verdict("latent_bias", protocol, number, HOLDS, "each split's interval clear of 0 on its side")
    if not a_majority[0] > 0 or not b_majority[0] < 0:
        return Verdict("latent_bias", protocol, number, FAILS, "a mean on the wrong side of 0")
    if all(-m < s[1] and s[2] < m for s in (a_majority, b_majority)):
        return Verdict("latent_bias", protocol, number, FAILS, f"both intervals within +-{m}: no perceptible move")
    return Verdict("latent_bias", protocol, number, UNRESOLVED, "the signs are right but an interval reaches 0 or a "
                                                                f"mean is below {m}")


def latent_control_verdict(control: tuple, a_majority: tuple, b_majority: tuple, protocol: str) -> Verdict:
    """The unbiased control: (mean, low, high) of its oriented shift over the training seeds (the two biased splits'
    are quoted beside it); see CRITERIA["latent_control"]."""
    number = f"oriented shift {_interval(control)} on the control split (biased splits: {a_majority[0]:.3g}, " \
             f"{b_majority[0]:.3g})"
    m = LATENT_MARGIN
    if not np.isfinite(control[1]):
        return Verdict("latent_control", protocol, number, UNRESOLVED, "no interval (fewer than two seeds with a "
                                                                       "flipped prediction)")
    if -m < control[1] and control[2] < m:
        return Verdict("latent_control", protocol, number, HOLDS, f"interval within +-{m}")
    if control[1] >= m or control[2] <= -m:
        return Verdict("latent_control", protocol, number, FAILS, f"interval beyond +-{m}")
    return Verdict("latent_control", protocol, number, UNRESOLVED, f"the interval reaches beyond +-{m}")
