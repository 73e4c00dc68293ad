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
# # Training the classifiers of the study
#
# This notebook reports the training stages of the pipeline:
#
# * **`train_lenet`**: the paper's LeNet (conv1(6,5x5) → pool → conv2(16,5x5) → pool → fc1(120) → fc2(84) → fc3(10), ReLU) on MNIST resized to 32×32.
# * **`finetune_cifar10`**: timm `resnet18` with a new 10-class head on CIFAR-10.
# * **`arch_*`**: the architecture study's models (figs. 9-11): four CNNs (ResNet18, ResNetV2-50, MobileNetV2, ConvNeXt-tiny) and a vision transformer (ViT-tiny).
#
# The model was trained by the stage's compute stage (`compute_<stage>`, `notebooks/compute/train.py`), which wrote it to
# `models/` and its numbers to `results/<stage>/`; this notebook only reads and draws them, so a change here re-runs no
# training. All logic lives in `causal_interp`. The values below come from `params.yaml` (injected by papermill from
# `python -m causal_interp.pipeline <stage>`).

# %% tags=["parameters"]
# parameters (papermill replaces these with the stage's params.yaml section)
stage = "train_lenet"
params = {"seed": 0, "data": {"root": "data"},
          "train_lenet": {"dataset": "mnist", "model": "lenet", "epochs": 1, "train_subset": 512, "test_subset": 256}}
out_dir = "reports/train_lenet"
results_dir = "results"


# %%
import json
from pathlib import Path

from IPython.display import Markdown, display

from causal_interp import config, data, plotting, reporting

cfg = config.stage_config(params, stage)          # validates: unknown dataset/model or bad values stop here
data_cfg = config.data_config(params)
results = Path(results_dir) / stage
metrics = json.loads((results / "metrics.json").read_text())     # written by compute_<stage>
history = json.loads((results / "history.json").read_text())
confusion = json.loads((results / "confusion_matrix.json").read_text())
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
print(cfg)

# %% [markdown]
# ## Data
# The full official training set trains the model; the full official test set measures accuracy here (later stages split it into a discovery half and an evaluation half).

# %%
ds = data.load_dataset(cfg.dataset, data_cfg, cfg.image_size, cfg.train_subset, cfg.test_subset, seed=cfg.seed)
print(f"{ds.name}: train {tuple(ds.x_train.shape)}, test {tuple(ds.x_test.shape)}, classes {ds.classes}")
first = [int((ds.y_train == c).nonzero()[0]) for c in range(ds.num_classes) if (ds.y_train == c).any()]
fig = plotting.image_grid(ds.x_train[first].float() / 255, [ds.classes[int(ds.y_train[i])] for i in first],
                          title=f"{ds.name} at {cfg.image_size}x{cfg.image_size}")
plotting.save(fig, out / "examples.png");

# %% [markdown]
# ## Training and evaluation
# Checkpoints were written after every epoch under `.cache/checkpoints/`, so an interrupted training resumes from the
# last finished epoch. The final accuracy is measured in float32 (the precision every later stage uses) on the whole
# official test set.

# %%
train_minutes = metrics["train_minutes"]
print(f"{cfg.model}: {metrics['parameters']:,} parameters, pretrained={cfg.pretrained}; "
      f"training: {train_minutes:.1f} min of compute in {metrics['precision']} (bf16: {metrics['bf16']})")
metrics["verdict"] = (f"target {cfg.target_accuracy:.1%} {'met' if metrics['meets_target'] else 'NOT met'}"
                      if cfg.target_accuracy else None)
(out / "metrics.json").write_text(json.dumps(metrics, indent=2))
reporting.write_summary(out, {stage: {"what": f"{cfg.model} test accuracy on {cfg.dataset}",
                                     "ours": metrics["test_accuracy"], "verdict": metrics["verdict"]}})
print(json.dumps({k: v for k, v in metrics.items() if k != "per_class_accuracy"}, indent=1))

# %%
title = f"{cfg.model} on {cfg.dataset}"
plotting.save(plotting.learning_curves(history, title), out / "learning_curves.png")
plotting.save(plotting.per_class_accuracy(metrics["per_class_accuracy"], title), out / "per_class_accuracy.png")
plotting.save(plotting.confusion_matrix(confusion["matrix"], confusion["classes"], title), out / "confusion_matrix.png");

# %% [markdown]
# ## Verdict and deviations from the paper

# %%
verdict = (f"**Test accuracy {metrics['test_accuracy']:.2%}**"
           + (f" (target {cfg.target_accuracy:.1%}: {'met' if metrics['meets_target'] else 'NOT met'})" if cfg.target_accuracy else "")
           + f" after {cfg.epochs} epochs, "
           f"{train_minutes:.1f} min of training in {metrics['precision']} on {metrics['machine']['torch_threads']} "
           f"threads of {metrics['machine']['cuda'] or metrics['machine']['cpu']}"
           + (f" (budget {cfg.time_budget_minutes:.0f} min: {'within' if metrics['within_time_budget'] else 'EXCEEDED'})."
              if cfg.time_budget_minutes else "."))
notes = []
if cfg.model == "lenet":
    notes.append("Architecture and 32×32 resizing follow the authors' code; the optimiser settings are ours "
                 "(the paper does not give them).")
else:
    paper = (f"The paper's architecture study (figs. 9-11) uses **ImageNet-pretrained** models on ImageNet. "
             if stage.startswith("arch_") else f"The paper fine-tunes an **ImageNet-pretrained** {cfg.model} on CIFAR-10. ")
    notes.append(paper + ("Here the timm ImageNet weights were loaded (`pretrained: true`)." if cfg.pretrained else
                          "ImageNet weights cannot be downloaded on this offline machine, so this model is "
                          "**trained from scratch** (`pretrained: false`) for a short epoch budget; set `pretrained: true` "
                          "(and `dataset: imagenet`) online to follow the paper."))
    if cfg.model_args.get("patch_size"):     # a vision transformer: tokens, not a downsampled map
        tokens = cfg.image_size // cfg.model_args["patch_size"]
        notes.append(f"The architecture is timm's `{cfg.model}` built with `model_args` {cfg.model_args}: "
                     f"{cfg.model_args.get('depth', 12)} transformer blocks on {tokens}×{tokens} tokens of "
                     f"{cfg.model_args['patch_size']}×{cfg.model_args['patch_size']} px at {cfg.image_size}×{cfg.image_size}, "
                     f"so every block keeps the {tokens}×{tokens} token grid; the paper's four CNNs have no vision transformer.")
    else:
        notes.append(f"The architecture is timm's unmodified `{cfg.model}` (its ImageNet stem and stride-32 downsampling). "
                     f"Images are used at {cfg.image_size}×{cfg.image_size}, so the last stage keeps a "
                     f"{max(1, cfg.image_size // 32)}×{max(1, cfg.image_size // 32)} spatial map; the paper does not say which resolution it used for CIFAR-10.")
if cfg.dataset == "cifar10":
    notes.append("The CIFAR-10 pixels come from the offline mirror when fetched from it: 6,102 images are byte-exact "
                 "and the rest were decoded from JPEG copies (PSNR ≈ 30 dB against the originals; see "
                 "`shared/datasets/SOURCES.md`), so accuracies are not exactly comparable to the official data.")
display(Markdown(verdict + "\n\n" + "\n".join(f"* {n}" for n in notes)))
