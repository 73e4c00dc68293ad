"""Does a vision transformer train to a meaningful accuracy within the architecture study's CPU budget?

    python benchmarks/vit_training.py [--epochs 3] [--depth 12] [--patch 4] [--probe] [--out reports/benchmarks]

Trains timm's `vit_tiny_patch16_224` from scratch on CIFAR-10 at 32x32 (`model_args`: img_size 32, the given patch size
and depth) with the kit's own training loop and the architecture study's recipe for ConvNeXt (Adam, label smoothing,
crop and flip augmentation), then scores the official test set. With --probe it only times 20 training batches and
projects the minutes per epoch. Writes vit_training.json to --out (the probe: vit_probe.json); the data root is
params.yaml's `data.root` (default data/).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from causal_interp import config, data, models, training  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--probe", action="store_true", help="time 20 batches and project an epoch, no training")
    p.add_argument("--out", default=str(REPO / "reports" / "benchmarks"))
    args = p.parse_args(argv)
    model_args = {"img_size": 32, "patch_size": args.patch, "depth": args.depth}
    cfg = config.from_dict(config.TrainConfig, {
        "dataset": "cifar10", "model": "vit_tiny_patch16_224", "model_args": model_args, "image_size": 32,
        "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "adam", "lr": 0.001, "weight_decay": 0.0,
        "label_smoothing": 0.1, "crop_pad": 4, "hflip": True, "bf16": True}, "vit")
    ds = data.load_dataset("cifar10", config.data_config(config.load_params(REPO / "params.yaml")), 32)
    torch.manual_seed(0)
    model = models.build_model(cfg.model, ds.num_classes, in_chans=3, model_args=model_args)
    n_params = sum(q.numel() for q in model.parameters())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = {"model": cfg.model, "model_args": model_args, "parameters": n_params, "tokens": (32 // args.patch) ** 2,
            "batch_size": args.batch_size, "threads": torch.get_num_threads(), "machine": training.machine()}
    if args.probe:
        steps = 20
        t0 = time.perf_counter()
        training.train(model, _subset(ds, steps * args.batch_size), dataclasses.replace(cfg, epochs=1),
                       log=lambda *a: None)
        seconds = time.perf_counter() - t0
        epoch_minutes = seconds / steps * ((len(ds.y_train) + args.batch_size - 1) // args.batch_size) / 60
        result = {**base, "probe_batches": steps, "seconds_per_batch": seconds / steps, "epoch_minutes": epoch_minutes}
        (out / "vit_probe.json").write_text(json.dumps(result, indent=2))
    else:
        t0 = time.perf_counter()
        history = training.train(model, ds, cfg)["history"]
        minutes = (time.perf_counter() - t0) / 60
        m = training.classification_metrics(training.predict(model, ds, ds.x_test), ds.y_test, ds.classes)
        result = {**base, "epochs": args.epochs, "train_minutes": minutes, "test_accuracy": m["accuracy"],
                  "history": history}
        (out / "vit_training.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("history", "machine")}, indent=1))
    return 0


def _subset(ds, n: int):
    """The first `n` training images of `ds` (the probe trains on them only)."""
    return dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])


if __name__ == "__main__":
    sys.exit(main())
