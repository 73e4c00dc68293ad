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
# # Sanity checks: does a map depend on the prediction and on the model?
#
# Figure 8 scores the maps for stability (LE) and faithfulness (IROF). An explanation must also depend on what it
# explains (Adebayo et al., "Sanity Checks for Saliency Maps", 2018). Two checks, via Quantus, for the causal maps and
# the baselines, every method normalised by Quantus' default in the same way:
#
# * **Random logit**: SSIM between the map for the true class and the map for a random other class. The causal map of
#   eq. 3 averages the responses of the class graph's nodes; with near-full graphs it comes close to a mean response that
#   is the same for every class. This check exposes that.
# * **Model parameter randomisation, cascading top-down**: Spearman correlation between the map of the trained model and
#   the map after randomising the layers one after the other, from the output down. For the causal method the class
#   graphs are **rediscovered on every randomised model**, and the trained model's graphs are rediscovered the same way
#   (`rediscover_examples` examples per class, any prediction), so the maps differ only by the weights; reusing the
#   trained model's graphs would not test the method. A randomised model whose graph has no node at the map layer gives
#   an empty map, which scores 0 (the map is gone).
#
# Model randomisation runs on the models of `mprt_models`. The causal method's ten class graphs are rediscovered for
# every randomised model: one step per layer with parameters, 5 for LeNet (seconds each), 41 for ResNet18
# (convolutions, batch norms, fc; minutes each on a 2-core CPU, hours in all). For the models of `mprt_full_only`
# (ResNet18 by default) only the trained and the fully randomised model are compared (Quantus' `skip_layers`): one
# rediscovery instead of 41, and the figure shows one point per method instead of a curve.
#
# Lower similarity is better for both. The thresholds are ours: a method passes a check when the bootstrap 95% interval
# of its median similarity lies below 0.5, fails when it lies above 0.9, and is not resolved otherwise. Engine:
# `causal_interp.sanity`.
#
# The scores were computed by the compute stage `compute_sanity_checks` (`notebooks/compute/sanity_checks.py`), which
# wrote them to `results/sanity_checks/`; this notebook applies the thresholds and draws, so editing it re-runs no compute.

# %% tags=["parameters"]
# parameters (papermill replaces these with params.yaml's sanity_checks section)
stage = "sanity_checks"
params = {"seed": 0, "data": {"root": "data"},
          "sanity_checks": {"models": ["train_lenet"], "mprt_models": ["train_lenet"], "classes": [2, 3],
                            "methods": ["Causal", "Saliency"], "examples_per_class": 2, "mprt_examples_per_class": 1,
                            "rediscover_examples": 4, "correct_only": False, "bootstrap": 50}}
out_dir = "reports/sanity_checks"
results_dir = "results"


# %%
import json
from pathlib import Path

import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from causal_interp import config, plotting, reporting, sanity

cfg = config.from_dict(sanity.SanityConfig, params[stage], stage)    # unknown method or model list stops here
# whole tables: a report hides no row, column or text behind "..."
pd.set_option("display.max_rows", None, "display.max_columns", None, "display.max_colwidth", None)
out, figs = reporting.output_dirs(out_dir)
results = Path(results_dir) / stage                  # written by compute_sanity_checks
scores = pd.read_csv(results / "scores.csv")
run = json.loads((results / "run.json").read_text())
for m, r in run.items():
    display(Markdown(f"`{m}`: causal maps from layer `{r['layer']}`; {r['random_logit_examples']} examples for random logit"
                     + (f", {r['mprt_examples_per_class']} per class for model randomisation"
                        if r["mprt_examples_per_class"] else "")))

# %% [markdown]
# ## Random logit: one box per method (lower is better)

# %%
for m in run:
    d = scores[(scores.model == m) & (scores.check == "random_logit")]
    fig, ax = plotting.plt.subplots(figsize=(8, 3.8))
    sns.boxplot(data=d, x="method", y="score", order=cfg.methods, hue="method", palette="tab10", legend=False,
                showfliers=False, ax=ax)
    sns.stripplot(data=d, x="method", y="score", order=cfg.methods, color="k", size=2, alpha=0.5, ax=ax)
    ax.axhline(sanity.PASS_BELOW, ls="--", c="tab:green", lw=1); ax.axhline(sanity.FAIL_ABOVE, ls="--", c="tab:red", lw=1)
    ax.set_ylabel("SSIM, true class vs random class"); ax.set_xlabel(""); plotting.slanted_labels(ax)
    ax.set_title(f"{m}: random logit")
    plotting.save(fig, figs / f"random_logit_{m}.png")

# %% [markdown]
# ## Model randomisation: similarity to the trained model's map as layers are randomised from the output down
# (for the models of `mprt_full_only`: the trained model against the fully randomised one; dashed: the pass line)

# %%
for m in cfg.mprt_models:
    d = scores[(scores.model == m) & (scores.check == "mprt")]
    fig, ax = plotting.plt.subplots(figsize=(8, 3.8))
    if m in cfg.mprt_full_only:       # one step, every layer randomised at once: one box per method
        sns.boxplot(data=d, x="method", y="score", order=cfg.methods, hue="method", hue_order=cfg.methods,
                    palette="tab10", showfliers=False, ax=ax)
        sns.stripplot(data=d, x="method", y="score", order=cfg.methods, color="k", size=2, alpha=0.5, ax=ax)
        ax.set_xlabel(""); plotting.slanted_labels(ax)
        ax.set_title(f"{m}: trained against fully randomised model (every layer at once)", fontsize=10)
    else:
        sns.lineplot(data=d, x="step", y="score", hue="method", hue_order=cfg.methods, estimator="median",
                     errorbar=("pi", 50), marker="o", ax=ax)
        steps = d.drop_duplicates("step").sort_values("step")
        ax.set_xticks(steps.step, [f"{layer}" for layer in steps.layer], rotation=30)
        ax.set_xlabel("randomised down to layer")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
        ax.set_title(f"{m}: cascading model parameter randomisation (median, interquartile band)", fontsize=10)
    ax.set_ylabel("Spearman correlation\nwith the trained map")
    ax.axhline(sanity.PASS_BELOW, ls="--", c="tab:green", lw=1)
    plotting.save(fig, figs / f"mprt_{m}.png")

# %% [markdown]
# ## Verdicts

# %%
table = sanity.summary_rows(scores, cfg.bootstrap, cfg.seed)
table.to_csv(out / "summary_table.csv", index=False)
display(table.pivot_table(index="method", columns=["model", "check"], values="outcome", aggfunc="first", sort=False))
causal = table[table.method == "Causal"]
display(Markdown("\n".join(f"* {sanity.sentence(r)}" for _, r in causal.iterrows())))
reporting.write_summary(out, {f"{r.model}-{r.check}": {"what": f"{r.model}: causal maps, {sanity.CHECKS[r.check]}",
                                                    "ours": r["median"], "verdict": r.outcome} for _, r in causal.iterrows()})
(out / "metrics.json").write_text(json.dumps({"settings": {k: v for k, v in vars(cfg).items() if k != "threads"},
                                              "summary": table.to_dict(orient="records")}, indent=2, default=str))
