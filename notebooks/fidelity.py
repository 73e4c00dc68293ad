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
# # Fidelity: masking the critical neurons (figure 10)
#
# If the graph's critical nodes really carry the class, masking them should make the model fail on that class.
# For every class graph (from `discover_graphs`), the parents of every layer are ranked by their mean effect (eq. 2):
# the most negative effect, whose removal hurts the class most, comes first. The top *k*% of every hidden layer's neurons
# (every layer but the first, whose parents are the input channels) are masked
# at inference (all their outgoing weights zeroed, restored afterwards), and the class accuracy is measured on the
# **evaluation half** of the test set. Two baselines mask the same budget: **random** parents (mean of several draws) and the
# parents with the largest outgoing **weight magnitude**. The paper reports a drastic drop below 20%.
#
# The masked accuracies come from the compute stage `compute_<stage>` (`compute_fidelity`, `compute_arch_fidelity`;
# `notebooks/compute/fidelity.py`), which wrote them to `results/<stage>/`; this notebook only reads, draws and judges
# them, so editing it re-runs no compute.

# %% tags=["parameters"]
# parameters (papermill replaces these with params.yaml's fidelity section)
stage = "fidelity"
params = {"seed": 0, "data": {"root": "data"}, "fidelity": {"models": ["train_lenet"], "classes": [3]}}
out_dir = "reports/fidelity"
results_dir = "results"


# %%
import json
from pathlib import Path

import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from causal_interp import config, masking, plotting, reporting, verdicts

cfg = config.from_dict(masking.MaskingConfig, params[stage], stage)
# whole tables: a report hides no row, column or text behind "..."
pd.set_option("display.max_rows", None, "display.max_columns", None, "display.max_colwidth", None)
out, figs = reporting.output_dirs(out_dir)
df, run = masking.read_sweep("fidelity", Path(results_dir) / stage, out)   # written by compute_<stage>
setups, seconds = run["models"], run["seconds"]
print(cfg)
print(f"{len(df)} masked evaluations in {seconds:.0f} s")

# %% [markdown]
# ## Figure 10: class accuracy against the share of masked neurons
# Thick lines: mean over classes (random: also over draws); thin lines: single classes under the critical ranking.

# %%
g = sns.relplot(data=df, x="share", y="accuracy", hue="ranking", hue_order=["critical", "random", "magnitude"],
                col="model", col_order=list(setups), kind="line", errorbar=None, marker="o", lw=2.5,
                height=3.4, aspect=1.1)
for m, ax in g.axes_dict.items():             # thin: each class under the critical ranking
    for c, dc in df[(df.model == m) & (df.ranking == "critical")].groupby("class"):
        ax.plot(dc.share, dc.accuracy, color="tab:blue", alpha=0.25, lw=0.8)
    plotting.percent_axis(ax)
g.set_titles("{col_name}")
g.set_axis_labels("share of every layer's parents masked", "class accuracy (evaluation split)")
g.set(ylim=(-0.02, 1.02))
g.figure.suptitle("Figure 10: class accuracy as the most critical neurons are masked\n"
                  "(thick: mean over classes; thin: each class, critical ranking)", y=1.08)
plotting.save(g.figure, figs / "fig10_fidelity.png")
table = df.groupby(["model", "ranking", "share"]).accuracy.mean().unstack("share").round(3)
display(table)

# %% [markdown]
# ## Verdict

# %%
metrics = {"settings": run["settings"], "seconds": seconds, "models": {}}
lines, headline = [], {}
for m in setups:
    d = df[df.model == m].groupby(["ranking", "share"]).accuracy.mean()
    base, s, at20 = masking.fidelity_at(df[df.model == m])
    per_class = df[(df.model == m) & (df.ranking == "critical")].pivot_table(index="class_name", columns="share", values="accuracy")
    metrics["models"][m] = {"accuracy_unmasked": float(base),
                            "mean_accuracy": {how: {str(s): float(v) for s, v in d[how].items()} for how in d.index.levels[0]},
                            "accuracy_at_largest_share_le_0.2": at20,
                            "per_class_critical": per_class.round(4).to_dict(orient="index")}
    if s is not None:
        v = verdicts.fidelity_verdict(float(base), at20, s, f"{m}, graphs of the {cfg.graph_test} test, evaluation half")
        metrics["models"][m]["verdict"] = v.outcome
        headline[m] = {"what": f"{m}: class accuracy, top {s:.0%} critical neurons masked (unmasked {base:.2f}, random "
                              f"{at20['random']:.2f}, magnitude {at20['magnitude']:.2f})", "ours": at20["critical"],
                      "verdict": v.outcome}
        lines.append(f"* **{m}**: {v.sentence()}")
(out / "metrics.json").write_text(json.dumps(metrics, indent=2))
reporting.write_summary(out, headline)
display(Markdown("\n".join(lines)))
