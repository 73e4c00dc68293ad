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
# # Do the LeNet verdicts hold for other training seeds and under the authors' graphs?
#
# The LeNet verdicts of figs. 7 (reliability), 8 (LE), 10 (fidelity) and 11 (repair) come from one trained LeNet and
# from graphs of one significance test. Here LeNet is retrained with several seeds (the `train_lenet` settings), and for
# each seed the class graphs are discovered three times on the discovery half:
#
# * **kit**: the paired test on per-example effects, the pipeline's default;
# * **floor**: the paired test with an effect-size floor of 0.15 times the class logit's spread: a parent counts only if
#   its mean effect is that large, besides the test. Of the floors the `authors_protocol` stage compares, it gives the
#   LeNet digit-3 graph closest in size to the authors' committed one (and to the paper's 8 relevant conv2 nodes);
# * **authors**: their two-sample test with their fallback (every parent whose mean relative effect is below −0.001 when
#   none passes the test), as in `src/explainnn/explain.py` of OlaAhmad/ienn.
#
# Each verdict is computed by the same function and criterion as in its own stage (`causal_interp.verdicts`), at the
# reduced sizes of params.yaml's `lenet_verdicts` section (fig. 7: 200 soft runs per class instead of 1000). Fig. 8 uses
# the fair protocol of the `authors_protocol` stage (raw pixels, one convention for every method) on the evaluation 3s,
# with the authors' causal map of each graph. A verdict that is not the same for every seed is reported as flipping.
#
# The models were trained and the numbers computed by the compute stage `compute_lenet_verdicts`
# (`notebooks/compute/lenet_verdicts.py`, engine `causal_interp.stability`), which wrote them to
# `results/lenet_verdicts/`; this notebook applies the verdicts and draws, so editing it re-runs no compute.

# %% tags=["parameters"]
# parameters (papermill replaces these with params.yaml's lenet_verdicts section)
stage = "lenet_verdicts"
params = {"seed": 0, "data": {"root": "data"},
          "lenet_verdicts": {"train": {"dataset": "mnist", "model": "lenet", "epochs": 1, "train_subset": 256, "test_subset": 128},
                             "seeds": [0, 1], "classes": [2, 3], "examples_per_class": 4, "correct_only": False}}
out_dir = "reports/lenet_verdicts"
results_dir = "results"


# %%
import json
from pathlib import Path

import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from causal_interp import config, plotting, reporting, stability, verdicts

cfg = config.from_dict(stability.StabilityConfig, params[stage], stage)   # bad values stop here
out, figs = reporting.output_dirs(out_dir)
numbers = json.loads((Path(results_dir) / stage / "numbers.json").read_text())    # written by compute_lenet_verdicts
display(Markdown(f"Seeds {cfg.seeds}; graph protocols {list(stability.GRAPH_PROTOCOLS)}; "
                 f"{'every class' if cfg.classes is None else f'classes {cfg.classes}'}, {cfg.examples_per_class} discovery "
                 f"examples per class; fig. 7 with {cfg.reliability_runs} soft runs per class."))

# %% [markdown]
# ## Every seed × graph protocol × figure
# The compute stage kept the models under `models/lenet_verdicts/lenet_seed<seed>.pt` and cached graphs and soft runs
# under `.cache/lenet_verdicts/`, so an interrupted run resumes. Each figure's verdict is applied here to its numbers,
# with the criterion of the figure's own stage.

# %%
found = [verdicts.of_claim(stability.FIGURES[r["figure"]], r["numbers"], stability.verdict_protocol(r, cfg)) for r in numbers]
rows = pd.DataFrame([{**{k: r[k] for k in ("seed", "protocol", "figure", "test_accuracy", "graph_sizes")},
                      "outcome": v.outcome, "sentence": v.sentence()} for r, v in zip(numbers, found)])
rows.drop(columns=["sentence", "graph_sizes"]).to_csv(out / "outcomes.csv", index=False)
table = stability.stability(rows)
table.to_csv(out / "stability.csv", index=False)
accuracy = rows.groupby("seed").test_accuracy.first()
display(Markdown("**Test accuracy per seed:** " + ", ".join(f"seed {s} {a:.2%}" for s, a in accuracy.items())))
display(table)

# %% [markdown]
# ## The outcomes at a glance
# One cell per seed and graph protocol (columns) and figure (rows).

# %%
grid = rows.assign(column=lambda d: d.protocol + ", seed " + d.seed.astype(str)).pivot(index="figure", columns="column",
                                                                                      values="outcome")
colours = {"holds": "#b7e1b5", "not resolved": "#fde8a6", "does not hold": "#f4b6b0"}   # anything else: bias, orange
codes = {o: i for i, o in enumerate(dict.fromkeys(list(colours) + sorted(set(rows.outcome))))}
palette = [colours.get(o, "#f9cf9f") for o in codes]
fig, ax = plotting.plt.subplots(figsize=(1.7 * grid.shape[1] + 2, 0.7 * grid.shape[0] + 1.5))
sns.heatmap(grid.replace(codes).astype(float), annot=grid.map(lambda o: o.replace("; ", ";\n")), fmt="", cbar=False,
            cmap=palette, vmin=-0.5, vmax=len(codes) - 0.5, linewidths=1, ax=ax, annot_kws={"fontsize": 7})
ax.set_ylabel("figure of the paper"); ax.set_xlabel("graph protocol, training seed")
ax.set_title("LeNet verdicts per training seed and graph protocol")
plotting.save(fig, figs / "verdicts_by_seed.png");

# %% [markdown]
# ## Verdicts
# Every sentence states the claim, the seed and graph protocol, the number and the criterion.

# %%
display(Markdown("\n".join(f"* {s}" for s in rows.sentence)))
summary = {f"fig{r.figure}-{r.protocol}": {"what": f"LeNet fig. {r.figure}, {r.protocol} graphs, seeds {cfg.seeds}",
                                           "ours": float((rows[(rows.figure == r.figure) & (rows.protocol == r.protocol)].outcome
                                                          == "holds").mean()),
                                           "verdict": r["verdict across seeds"]} for _, r in table.iterrows()}
(out / "metrics.json").write_text(json.dumps({"settings": {k: v for k, v in vars(cfg).items() if k != "threads"},
                                              "test_accuracy": accuracy.to_dict(), "stability": table.to_dict(orient="records"),
                                              "rows": rows.to_dict(orient="records")}, indent=2, default=str))
reporting.write_summary(out, summary);
