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
# # Repair: masking distracting and irrelevant paths (figure 11)
#
# The paper masks a growing share of the weights that its graphs find **distracting** (removing them raises the class logit)
# or **irrelevant**, at inference only, and reports that accuracy improves. Here, for every class graph, that share of each layer's
# distracting-then-irrelevant parents has its edges to the layer's graph targets zeroed (`graph`, what the paper masks); the
# literal reading, the same share of the **irrelevant** parents only (`irrelevant`); and as many randomly chosen parents as
# `graph` (`random`). Measured on the **evaluation half**: the class accuracy (what the paper plots) and, on a sample of all
# classes, the all-class accuracy and the class's **false-positive rate** and **precision**, which tell a repair from a bias
# towards the class: predicting the class for everything also raises its accuracy.
#
# The earlier version of the method also corrected single wrong predictions with per-example graphs; that experiment is
# stage `per_example`.
#
# Input channels (the parents of the first layer) are never masked, in either experiment.
#
# The masked accuracies come from the compute stage `compute_<stage>` (`compute_repair`, `compute_arch_repair`;
# `notebooks/compute/repair.py`), which wrote them to `results/<stage>/`; this notebook only reads, draws and judges
# them, so editing it re-runs no compute.

# %% tags=["parameters"]
# parameters (papermill replaces these with params.yaml's repair section)
stage = "repair"
params = {"seed": 0, "data": {"root": "data"}, "repair": {"models": ["train_lenet"], "classes": [3]}}
out_dir = "reports/repair"
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
df, run = masking.read_sweep("repair", Path(results_dir) / stage, out)   # written by compute_<stage>
setups, seconds = run["models"], run["seconds"]
print(cfg)
print(f"{len(df)} masked evaluations in {seconds:.0f} s")

# %% [markdown]
# ## Figure 11: accuracy against the share of masked distracting/irrelevant paths

# %%
names = {"class_accuracy": "class accuracy", "all_accuracy": "all-class accuracy",
         "false_positive_rate": "class false-positive rate", "precision": "class precision"}
d = df.rename(columns=names).melt(id_vars=["model", "share", "mask", "class"], value_vars=list(names.values()),
                                  var_name="measured", value_name="value")
g = sns.relplot(data=d, x="share", y="value", hue="mask", row="model", row_order=list(setups), col="measured",
                col_order=list(names.values()), kind="line", errorbar=None, marker="o", height=2.6, aspect=1.15,
                facet_kws={"sharey": False})
for ax in g.axes.flat:
    plotting.percent_axis(ax)
g.set_titles("{row_name}: {col_name}")
g.set_axis_labels("share of the class's distracting/irrelevant parents masked", "")
g.figure.suptitle("Figure 11: masking distracting and irrelevant paths (mean over classes)", y=1.02)
plotting.save(g.figure, figs / "fig11_repair.png")
display(df.groupby(["model", "mask", "share"])[list(names)].mean().round(4))

# %% [markdown]
# ## Verdict

# %%
metrics = {"settings": run["settings"], "seconds": seconds, "models": {}}
lines, headline = [], {}
for m in setups:
    d = df[df.model == m].groupby(["mask", "share"])[["class_accuracy", "all_accuracy"]].mean()
    g0, gmax = d.loc["graph"].iloc[0], d.loc["graph"].max()
    best_share = float(d.loc["graph"].class_accuracy.idxmax())
    metrics["models"][m] = {"mean": {f"{how}_{col}": {str(s): float(v) for s, v in d.loc[how][col].items()}
                                     for how in d.index.levels[0] for col in ("class_accuracy", "all_accuracy")}}
    gr = d.loc["graph"]
    bias = df[(df.model == m) & (df["mask"] == "graph")].groupby("share")[["false_positive_rate", "precision"]].mean()
    lit = df[(df.model == m) & (df["mask"] == "irrelevant")].groupby("share")[["class_accuracy", "all_accuracy", "false_positive_rate"]].mean()
    facts = verdicts.repair_facts(gr.class_accuracy, gr.all_accuracy, bias.false_positive_rate)   # what the verdict uses
    class_up, repaired, biased = bool(facts.rises), [float(gr.index[i]) for i in facts.repaired], facts.biased
    metrics["models"][m].update({"class_accuracy_improves": class_up, "repair_without_harm_shares": repaired,
                                 "false_positive_rate": {str(s): float(v) for s, v in bias.false_positive_rate.items()},
                                 "precision": {str(s): float(v) for s, v in bias.precision.items()},
                                 "irrelevant_only": lit.round(4).to_dict(orient="index"), "bias_towards_the_class": biased})
    v = verdicts.repair_verdict(gr.class_accuracy, gr.all_accuracy, bias.false_positive_rate,
                                f"{m}, graphs of the {cfg.graph_test} test, evaluation half")
    verdict = v.outcome
    metrics["models"][m]["verdict"] = verdict
    headline[f"{m}-class"] = {"what": f"{m}: class accuracy, every distracting/irrelevant path masked (unmasked "
                                     f"{g0.class_accuracy:.3f})", "ours": gr.class_accuracy.iloc[-1], "verdict": verdict}
    headline[f"{m}-all-classes"] = {"what": f"{m}: all-class accuracy, same masks (unmasked {g0.all_accuracy:.3f})",
                                   "ours": gr.all_accuracy.iloc[-1], "verdict": verdict}
    headline[f"{m}-false-positive-rate"] = {"what": f"{m}: the class's false-positive rate, same masks (unmasked "
                                                    f"{bias.false_positive_rate.iloc[0]:.3f})",
                                            "ours": bias.false_positive_rate.iloc[-1], "verdict": verdict}
    lines.append(f"* **{m}**: {v.sentence()} The class's precision {bias.precision.iloc[0]:.3f} -> {bias.precision.iloc[-1]:.3f}. "
                 f"Irrelevant paths only (the literal "
                 f"reading): class accuracy {lit.class_accuracy.iloc[-1]:.3f}, false-positive rate {lit.false_positive_rate.iloc[-1]:.3f}, "
                 f"all-class accuracy {lit.all_accuracy.iloc[-1]:.3f}.")
    lines.append(f"  Details: unmasked class accuracy {g0.class_accuracy:.4f} (all classes {g0.all_accuracy:.4f}). The best share "
                 f"({best_share:.0%}) gives {gmax.class_accuracy:.4f}; masking everything distracting/irrelevant gives "
                 f"{gr.class_accuracy.iloc[-1]:.4f} on the class but **{gr.all_accuracy.iloc[-1]:.4f} on all classes**; "
                 f"random masks give {d.loc['random'].class_accuracy.iloc[-1]:.4f} / {d.loc['random'].all_accuracy.iloc[-1]:.4f}. "
                 f"Class accuracy {'rises' if class_up else 'does not rise'}; a repair that lowers all-class accuracy by no more than 0.5 points "
                 f"{'exists at shares ' + str([f'{x:.0%}' for x in repaired]) if repaired else 'exists at NO share'}.")
(out / "metrics.json").write_text(json.dumps(metrics, indent=2))
reporting.write_summary(out, headline)
display(Markdown("\n".join(lines)))
