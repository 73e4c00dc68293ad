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
# whole tables: a report hides no row, column or text behind "..."
pd.set_option("display.max_rows", None, "display.max_columns", None, "display.max_colwidth", None)
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
#
# A figure whose numbers come out the same on every kind of graph, seed by seed, is shown as one row, not as three rows
# that agree: their agreement would show no robustness to the graph. Fig. 10 is the one to expect: its unmasked, random
# and weight-magnitude numbers do not use the graph, and its critical ranking orders every parent of a layer by its mean
# effect, whichever parents the test kept, so the kind of graph enters only through the targets (the necessary nodes of
# the layer above); once the top 20% are masked the class accuracy reaches the same floor. `stability.csv` and
# `outcomes.csv` keep every row.

# %%
found = [verdicts.of_claim(stability.FIGURES[r["figure"]], r["numbers"], stability.verdict_protocol(r, cfg)) for r in numbers]
rows = pd.DataFrame([{**{k: r[k] for k in ("seed", "protocol", "figure", "test_accuracy", "graph_sizes")},
                      "outcome": v.outcome, "sentence": v.sentence()} for r, v in zip(numbers, found)])
rows.drop(columns=["sentence", "graph_sizes"]).to_csv(out / "outcomes.csv", index=False)
table = stability.stability(rows)
table.to_csv(out / "stability.csv", index=False)
accuracy = rows.groupby("seed").test_accuracy.first()
kinds = list(dict.fromkeys(r["protocol"] for r in numbers))
every = f"{', '.join(kinds[:-1])} and {kinds[-1]}" if len(kinds) > 1 else kinds[0]


def same_on_every_graph(figure) -> bool:
    """The figure's numbers are the same on every kind of graph, for every seed."""
    by_seed = {}
    for r in numbers:
        if r["figure"] == figure:
            by_seed.setdefault(r["seed"], set()).add(json.dumps(r["numbers"], sort_keys=True))
    return len(kinds) > 1 and all(len(v) == 1 for v in by_seed.values())


merged = sorted(f for f in set(rows.figure) if same_on_every_graph(f))
shown = table[~table.figure.isin(merged) | (table.protocol == kinds[0])].reset_index(drop=True)
shown.loc[shown.figure.isin(merged), "protocol"] = f"{every} (the same numbers)"
display(Markdown("**Test accuracy per seed:** " + ", ".join(f"seed {s} {a:.2%}" for s, a in accuracy.items())
                 + (f". Fig. {', '.join(map(str, merged))}: the same numbers on the {every} graphs for every seed, "
                    "shown once." if merged else "")))
display(shown)

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
sentences = [verdicts.of_claim(stability.FIGURES[r["figure"]], r["numbers"],
                               stability.verdict_protocol({**r, "protocol": every}, cfg)).sentence()
             if r["figure"] in merged else s for r, s in zip(numbers, rows.sentence)
             if r["figure"] not in merged or r["protocol"] == kinds[0]]
display(Markdown("\n".join(f"* {s}" for s in sentences)))
le_examples = sorted({r["le_examples"] for r in numbers if r["figure"] == 8})
scope = {7: f"reliability, {cfg.reliability_runs} soft runs per class",
         8: f"the LE claim only, fair protocol on raw pixels with the authors' map, "
            f"{'/'.join(map(str, le_examples))} examples of digit {cfg.le_class}",
         10: "fidelity, the top critical neurons masked", 11: "repair, the class accuracy"}
summary = {}
for _, r in shown.iterrows():
    one = r.figure in merged
    holds = rows[(rows.figure == r.figure) & (rows.protocol == (kinds[0] if one else r.protocol))].outcome == "holds"
    summary[f"fig{r.figure}-{'every-graph' if one else r.protocol}"] = {
        "what": f"LeNet fig. {r.figure} ({scope.get(r.figure, stability.FIGURES[r.figure])}), "
                f"{f'{every} graphs (the same numbers on each)' if one else f'{r.protocol} graphs'}: share of the training "
                f"seeds {cfg.seeds} for which the claim holds",
        "ours": float(holds.mean()), "verdict": r["verdict across seeds"]}
(out / "metrics.json").write_text(json.dumps({"settings": {k: v for k, v in vars(cfg).items() if k != "threads"},
                                              "test_accuracy": accuracy.to_dict(), "stability": table.to_dict(orient="records"),
                                              "rows": rows.to_dict(orient="records")}, indent=2, default=str))
reporting.write_summary(out, summary);
