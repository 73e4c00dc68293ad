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
# # Compute: train a classifier (`compute_train_lenet`, `compute_finetune_cifar10`, `compute_train_arch@*`)
# Writes the model (`models/<stage>.pt`) and its numbers (`results/<stage>/`); `notebooks/train.py` draws them.

# %% tags=["parameters"]
stage = "train_lenet"
params = {"seed": 0, "data": {"root": "data"}, "device": "auto",
          "train_lenet": {"dataset": "mnist", "model": "lenet", "epochs": 1, "train_subset": 512, "test_subset": 256}}
out_dir = "results/train_lenet"
models_out = "models"
checkpoint_dir = ".cache/checkpoints"

# %%
import json, time
from pathlib import Path

import torch

from causal_interp import config, data, models, training

cfg = config.stage_config(params, stage)          # validates: unknown dataset/model or bad values stop here
data_cfg = config.data_config(params)
data.check_present(data_cfg, cfg.dataset)  # missing data stops here, with the command to fetch it
out = Path(out_dir); out.mkdir(parents=True, exist_ok=True)
device = models.resolve_device(params.get("device", "auto"))   # auto: the GPU when there is one
models.deterministic(device)
training.set_threads(cfg.threads)
print(cfg, device)

# %%
ds = data.load_dataset(cfg.dataset, data_cfg, cfg.image_size, cfg.train_subset, cfg.test_subset, seed=cfg.seed)
print(f"{ds.name}: train {tuple(ds.x_train.shape)}, test {tuple(ds.x_test.shape)}, classes {ds.classes}")
torch.manual_seed(cfg.seed)
model = models.build_model(cfg.model, ds.num_classes, in_chans=ds.input_shape[0], pretrained=cfg.pretrained,
                           model_args=cfg.model_args)
n_params = sum(p.numel() for p in model.parameters())
print(f"{cfg.model}: {n_params:,} parameters, pretrained={cfg.pretrained}")
ckpt = Path(checkpoint_dir) / f"{stage}-{training.config_hash(cfg, {'n_train': len(ds.y_train), 'root': str(data_cfg.root)})}.pt"
t0 = time.perf_counter()
result = training.train(model, ds, cfg, checkpoint=ckpt, device=device)
history = result["history"]
wall_minutes = (time.perf_counter() - t0) / 60
train_minutes = sum(r["epoch_seconds"] + r["eval_seconds"] for r in history) / 60  # over all sessions, if resumed
print(f"training: {train_minutes:.1f} min of compute ({wall_minutes:.1f} min in this session), {result['precision']}")

# %%
logits = training.predict(model, ds, ds.x_test)     # float32, the precision every later stage uses
m = training.classification_metrics(logits, ds.y_test, ds.classes)
metrics = {
    "stage": stage, "dataset": cfg.dataset, "model": cfg.model, "pretrained": cfg.pretrained,
    "image_size": cfg.image_size, "epochs": cfg.epochs, "n_train": len(ds.y_train), "n_test": len(ds.y_test),
    "parameters": n_params, "test_accuracy": m["accuracy"], "target_accuracy": cfg.target_accuracy,
    "meets_target": m["accuracy"] >= cfg.target_accuracy, "train_minutes": train_minutes,
    "time_budget_minutes": cfg.time_budget_minutes,
    "within_time_budget": None if cfg.time_budget_minutes is None else train_minutes <= cfg.time_budget_minutes,
    "bf16": cfg.bf16, "precision": result["precision"], "device": str(device),
    "machine": training.machine(), "per_class_accuracy": m["per_class_accuracy"],
}
(out / "metrics.json").write_text(json.dumps(metrics, indent=2))
(out / "history.json").write_text(json.dumps(history, indent=2))
(out / "confusion_matrix.json").write_text(json.dumps({"classes": ds.classes, "matrix": m["confusion_matrix"]}))
models.save_model(model, Path(models_out) / f"{stage}.pt", cfg.model, ds.num_classes, ds.input_shape[0],
                  model_args=cfg.model_args,
                  extra={"image_size": cfg.image_size, "dataset": cfg.dataset, "test_accuracy": m["accuracy"]})
print(json.dumps({k: v for k, v in metrics.items() if k != "per_class_accuracy"}, indent=1))
