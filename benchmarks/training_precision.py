"""How fast does each training stage train on this CPU, in float32 and with bf16 autocast?

    python benchmarks/training_precision.py [--batches 3] [--sections finetune_cifar10 arch_resnet18 ...]
                                            [--profile paper] [--data-root DIR] [--out reports/benchmarks]

For every training section of params.yaml (`train_lenet`, `finetune_cifar10` and the `architectures`, in --profile),
builds the model as its stage does and times `--batches` training batches of the section's size and resolution on
real data, once in float32 and once with bf16 autocast, after one warm-up batch each (the kit's own training loop;
`history.epoch_seconds` is the loop's time without the test pass). Projects the minutes per epoch and per stage
(the section's epochs, at the precision it sets) for MNIST and CIFAR-10, whose training sets have known sizes.
CPUs with AMX or AVX-512 BF16 compute bf16 natively and gain from autocast; elsewhere torch emulates it and training
is several times slower: `python -m causal_interp.pipeline` warns then. Writes training_precision.json to --out;
the data root is params.yaml's `data.root` (default data/) unless --data-root names another (its files are then not
checked against the published checksums).
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

TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000}


def seconds_per_batch(cfg: config.TrainConfig, ds: data.ImageData, bf16: bool, batches: int) -> float:
    """Training seconds per batch of a fresh model at `cfg`'s settings, after one warm-up batch."""
    torch.manual_seed(cfg.seed)
    model = models.build_model(cfg.model, ds.num_classes, in_chans=ds.x_train.shape[1], model_args=cfg.model_args)
    run = dataclasses.replace(cfg, epochs=1, bf16=bf16)
    quiet = dict(log=lambda *a: None)
    training.train(model, dataclasses.replace(ds, x_train=ds.x_train[:cfg.batch_size],
                                              y_train=ds.y_train[:cfg.batch_size]), run, **quiet)
    history = training.train(model, ds, run, **quiet)["history"]
    return history[0]["epoch_seconds"] / batches


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=3, help="timed training batches per model and precision")
    p.add_argument("--sections", nargs="*", help="training sections of params.yaml (default: every one)")
    p.add_argument("--profile", default="default", help="params.yaml profile (e.g. paper: the architectures at 224 px)")
    p.add_argument("--data-root", help="another data root in the same layout (not checksum-verified)")
    p.add_argument("--out", default=str(REPO / "reports" / "benchmarks"))
    args = p.parse_args(argv)
    params = config.load_params(REPO / "params.yaml", args.profile)
    sections = args.sections or ["train_lenet", "finetune_cifar10", *params.get("architectures", [])]
    data_cfg = config.data_config(params)
    if args.data_root:
        data_cfg = dataclasses.replace(data_cfg, root=args.data_root, verify=False)
    rows = []
    for section in sections:
        cfg = config.stage_config(params, section)
        n = cfg.batch_size * args.batches
        ds = data.load_dataset(cfg.dataset, data_cfg, cfg.image_size, train_subset=n, test_subset=cfg.batch_size,
                               seed=cfg.seed)
        size = TRAIN_SIZE.get(cfg.dataset)                          # None: no projection (e.g. an ImageNet folder)
        steps = -(-size // cfg.batch_size) if size else None        # batches in an epoch of the full training set
        t0 = time.perf_counter()
        row = {"section": section, "model": cfg.model, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
               "epochs": cfg.epochs, "bf16_set": cfg.bf16, "bf16_used": training.use_bf16(cfg.bf16),
               "batches_timed": args.batches}
        for name, bf16 in (("float32", False), ("bf16", True)):
            s = seconds_per_batch(cfg, ds, bf16, args.batches)
            row[f"{name}_seconds_per_batch"] = s
            row[f"{name}_epoch_minutes"] = s * steps / 60 if steps else None
        row["bf16_over_float32"] = row["bf16_seconds_per_batch"] / row["float32_seconds_per_batch"]
        epoch = row[f"{'bf16' if row['bf16_used'] else 'float32'}_epoch_minutes"]
        row["stage_training_minutes"] = epoch * cfg.epochs if steps else None
        rows.append(row)
        print(f"{section:24s} {cfg.model:18s} {cfg.image_size:4d} px  float32 {row['float32_seconds_per_batch']:6.2f} "
              f"s/batch  bf16 {row['bf16_seconds_per_batch']:6.2f} s/batch  (x{row['bf16_over_float32']:.2f}); "
              + (f"{epoch:.1f} min/epoch as set" if steps else "no epoch projection") +
              f"; {time.perf_counter() - t0:.0f} s", flush=True)
    result = {"profile": args.profile, "machine": {**training.machine(), "native_bf16": training.cpu_native_bf16()},
              "note": "epoch and stage minutes are projected from the timed batches (training loop only, no test "
                      "pass); the stage's own time adds its evaluation and reports",
              "sections": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "training_precision.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
