# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Do metrics of one property agree? Three robustness and four faithfulness metrics
#
# Figure 8 ranks the methods with one metric per property: LE for robustness, IROF for faithfulness. Metrics of the same
# property often disagree (Vandersmissen & Oramas, "On the Coherency of Quantitative Evaluation of Visual Explanations"),
# so here every method is scored by three robustness and four faithfulness metrics, all via Quantus and under one protocol: every map
# normalised |a| / max |a| per example, the same seeded perturbations for every method, evaluation-half examples.
#
# * **robustness** (lower is better): Local Lipschitz Estimate, Max-Sensitivity, Avg-Sensitivity;
# * **faithfulness**: IROF (area over the curve, higher is better), Pixel-Flipping (most relevant first; area under the
#   class-probability curve, lower is better), Region-Perturbation (most relevant first; AOPC, the mean drop of the class
#   probability, higher is better), Selectivity (Montavon et al. 2018; patches removed most relevant first until none is
#   left; area under the class-probability curve, lower is better). IROF replaces a superpixel by the input's mean; the
#   other three set removed pixels to Quantus' "black" baseline, the smallest value of the example's (standardised)
#   input, for every method alike: on MNIST the background.
#
# The methods are fig. 8's but RISE: each of its maps costs 500 forward passes, and the three robustness metrics ask for
# 30 maps of perturbed inputs per example, which would double the stage's time on a 2-core CPU (its fig. 8 scores are in
# the evaluation stage).
#
# A claim about a property ("the causal maps are the most robust / the most faithful") is made only where every metric
# of that property ranks the causal maps first, with a 95% interval clear of every other method's. Engine:
# `causal_interp.agreement`.
#
# The scores were computed by the compute stage `compute_metric_agreement` (`notebooks/compute/metric_agreement.py`),
# which wrote them to `results/metric_agreement/`; this notebook ranks, judges and draws them, so editing it re-runs no
# compute.

# %% tags=["parameters"]
# parameters (papermill replaces these with params.yaml's metric_agreement section)
stage = "metric_agreement"
params = {"seed": 0, "data": {"root": "data"},
          "metric_agreement": {"models": ["train_lenet"], "classes": [2, 3], "examples_per_class": 2,
                               "methods": ["Causal", "Saliency", "IntegratedGradients"], "samples": 2,
                               "correct_only": False, "bootstrap": 50}}
out_dir = "reports/metric_agreement"
results_dir = "results"


# %%
import json
from pathlib import Path

import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from causal_interp import agreement, config, evaluation, plotting, reporting

cfg = config.from_dict(agreement.AgreementConfig, params[stage], stage)    # unknown methods stop here
# whole tables: a report hides no row, column or text behind "..."
pd.set_option("display.max_rows", None, "display.max_columns", None, "display.max_colwidth", None)
out, figs = reporting.output_dirs(out_dir)
results = Path(results_dir) / stage                  # written by compute_metric_agreement
scores = pd.read_csv(results / "scores.csv")
run = json.loads((results / "run.json").read_text())
for m, r in run.items():
    display(Markdown(f"`{m}`: causal maps from layer `{r['layer']}`; {r['examples']} examples" if r["examples"] else
                     f"`{m}`: **not scored**: no evaluation example of a class whose graph has nodes at `{r['layer']}` "
                     f"(classes with a causal map: {r['classes_with_a_map']})"))
scored = [m for m, r in run.items() if r["examples"]]

# %% [markdown]
# ## Scores: medians with their bootstrap 95% intervals, and ranks

# %%
medians = pd.DataFrame([{"model": m, "metric": met, "method": meth,
                         **dict(zip(("median", "ci_low", "ci_high"), evaluation.median_ci(d.score, cfg.bootstrap, cfg.seed)))}
                        for (m, met, meth), d in scores.groupby(["model", "metric", "method"], sort=False)])
ranked = agreement.ranks(medians)
ranked.to_csv(out / "ranks.csv", index=False)

# %% [markdown]
# ## Each method's rank under each metric (1 = best)

# %%
for m in scored:
    wide = ranked[ranked.model == m].pivot(index="method", columns="metric", values="rank")
    wide = wide.reindex(index=cfg.methods, columns=[n for p in agreement.PROPERTIES.values() for n in p])
    fig, ax = plotting.plt.subplots(figsize=(8, 0.45 * len(wide) + 1.6))
    sns.heatmap(wide.astype(float), annot=True, fmt=".0f", cmap="viridis_r", cbar_kws={"label": "rank (1 = best)"}, ax=ax)
    ax.axvline(len(agreement.PROPERTIES["robustness"]), c="w", lw=3)
    ax.set_title(f"{m}: robustness metrics (left) and faithfulness metrics (right)"); ax.set_xlabel(""); ax.set_ylabel("")
    plotting.save(fig, figs / f"ranks_{m}.png")

# %% [markdown]
# ## Do the metrics of one property rank the methods alike? (Spearman correlation of the rankings)

# %%
corr = agreement.rank_correlations(ranked)
corr.to_csv(out / "rank_correlations.csv", index=False)
display(corr.pivot_table(index=["property", "metric_a", "metric_b"], columns="model", values="spearman", sort=False).round(2))

# %% [markdown]
# ## Verdicts

# %%
verdict = agreement.property_verdicts(ranked)
verdict.to_csv(out / "verdicts.csv", index=False)
display(Markdown("\n".join(f"* Claim \"{r.claim}\", `{r.model}`, {run[r.model]['examples']} examples: the causal maps rank "
                           f"{r.causal_ranks}; clearly first in: {r.clearly_first_in}; clearly beaten in: "
                           f"{r.clearly_beaten_in}. **{r.outcome}** (criterion: {agreement.CRITERION})."
                           for r in verdict.itertuples())))
reporting.write_summary(out, {f"{r.model}-{r.property}": {
    "what": f"{r.model}: {r.claim}: how many of the {len(agreement.PROPERTIES[r.property])} {r.property} metrics rank the "
            f"causal maps first (causal ranks: {r.causal_ranks})",
    "ours": float(r.metrics_ranking_causal_first), "verdict": r.outcome} for r in verdict.itertuples()})
(out / "metrics.json").write_text(json.dumps({"settings": {k: v for k, v in vars(cfg).items() if k != "threads"},
                                              "medians": medians.to_dict(orient="records"),
                                              "rank_correlations": corr.to_dict(orient="records"),
                                              "verdicts": verdict.to_dict(orient="records")}, indent=2, default=str))
