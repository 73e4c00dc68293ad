"""Training and evaluation of the classifiers the study explains.

Batches come from in-memory uint8 tensors (no DataLoader workers: on a 2-core CPU per-image PIL
transforms would cost more than the network). Augmentation (random crop with reflect padding,
horizontal flip) is done per batch with tensor ops. Training checkpoints after every epoch and
resumes from the last finished epoch when re-run with the same settings, so an interrupted stage
loses at most one epoch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data import ImageData
from .progress import progress


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)


def machine() -> dict:
    """Where a result was computed: CPU model, cores, torch version and threads (results repeat bit for bit on
    one machine; another CPU can round differently, and a trained model then differs in its last bits)."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def augment(x: torch.Tensor, pad: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random crop (reflect padding `pad`) and horizontal flip of a uint8 batch (N, C, H, W)."""
    n, c, h, w = x.shape
    if pad > 0:
        xp = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
        x = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if hflip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")     # /proc/cpuinfo flags of CPUs that compute in bf16 natively


def cpu_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU computes bf16 natively (AMX or AVX-512 BF16); None where /proc/cpuinfo cannot tell (not Linux).
    Without it, torch emulates bf16 and autocast training runs several times slower than float32
    (`benchmarks/training_precision.py` measures both)."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in Path(cpuinfo).read_text().splitlines()
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        return None
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def use_bf16(setting, native: bool | None = None, device: torch.device | str = "cpu") -> bool:
    """Whether training autocasts to bf16: `true`/`false` force it; `"auto"` uses it where it is native: on a GPU that
    supports it, or on a CPU with AMX or AVX-512 BF16 (`native`, read from /proc/cpuinfo when not given), and float32
    elsewhere. The precision used is recorded in every training stage's results."""
    if setting == "auto":
        if torch.device(device).type == "cuda":
            return torch.cuda.is_bf16_supported()
        return bool(cpu_native_bf16() if native is None else native)
    return bool(setting)


def _autocast(enabled: bool, device: torch.device | str = "cpu"):
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def model_device(model: nn.Module) -> torch.device:
    """Where `model` computes: the device of its first parameter (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def predict(model: nn.Module, data: ImageData, x_uint8: torch.Tensor, batch_size: int = 512,
            bf16: bool = False) -> torch.Tensor:
    """Logits (float32, on the CPU) of `model` on uint8 images, in eval mode, computed where the model is."""
    model.eval()
    device = model_device(model)
    out = []
    for i in range(0, len(x_uint8), batch_size):
        xb = data.normalize(x_uint8[i:i + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
        with _autocast(bf16, device):
            out.append(model(xb).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def config_hash(cfg: TrainConfig, extra: dict | None = None) -> str:
    values = dataclasses.asdict(cfg)
    if not values.get("model_args"):        # the hash of a config without model_args is what it was before them
        values.pop("model_args", None)
    blob = json.dumps({"cfg": values, **(extra or {})}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def train(model: nn.Module, data: ImageData, cfg: TrainConfig, checkpoint: str | Path | None = None,
          log=print, device: torch.device | str = "cpu") -> dict:
    """Train `model` in place with `cfg` on `device` (it stays there); returns the per-epoch history and the precision.
    Shuffling and augmentation draw from a seeded CPU generator whatever the device, so the batches are the same.

    Optimiser: Adam, or SGD (Nesterov momentum) with a one-cycle schedule; cross-entropy with optional
    label smoothing; optional bf16 autocast. With `checkpoint`, state is saved after each epoch and a
    run with the same `checkpoint` path resumes after the last saved epoch.
    """
    set_threads(cfg.threads)
    device = torch.device(device)
    bf16 = use_bf16(cfg.bf16, device=device)
    model.to(device=device, memory_format=torch.channels_last)
    n = len(data.y_train)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    if cfg.epochs == 0:   # pretrained weights used as they are
        return {"history": [], "precision": "float32"}
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = None
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                              weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                    steps_per_epoch=steps_per_epoch, pct_start=0.25)
    history: list[dict] = []
    start_epoch = 0
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        history, start_epoch = state["history"], state["epoch"] + 1
        log(f"resumed from {checkpoint} after epoch {start_epoch}")

    bar = progress(total=cfg.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc="training",
                   unit="batch")
    for epoch in range(start_epoch, cfg.epochs):
        bar.set_postfix_str(f"epoch {epoch + 1}/{cfg.epochs}", refresh=False)
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb = augment(data.x_train[idx], cfg.crop_pad, cfg.hflip, gen).to(device)
            xb = data.normalize(xb).contiguous(memory_format=torch.channels_last)
            yb = data.y_train[idx].to(device)
            with _autocast(bf16, device):
                logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            bar.update(1)
        train_time = time.perf_counter() - t0
        test_logits = predict(model, data, data.x_test, bf16=bf16)
        test_loss = F.cross_entropy(test_logits, data.y_test).item()     # predict returns CPU logits
        test_acc = (test_logits.argmax(1) == data.y_test).float().mean().item()
        row = dict(epoch=epoch + 1, train_loss=loss_sum / n, train_acc=correct / n, test_loss=test_loss,
                   test_acc=test_acc, epoch_seconds=train_time, eval_seconds=time.perf_counter() - t0 - train_time)
        history.append(row)
        log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
            f"test loss {test_loss:.4f} acc {test_acc:.4f} | {train_time:.0f}s")
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            tmp = checkpoint.with_suffix(".part")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict() if sched is not None else None,
                        "history": history, "epoch": epoch}, tmp)
            tmp.replace(checkpoint)
    bar.close()
    model.eval()
    return {"history": history, "precision": "bf16" if bf16 else "float32"}


def classification_metrics(logits: torch.Tensor, y: torch.Tensor, classes: list) -> dict:
    """Accuracy, per-class accuracy and confusion matrix (rows: true class, columns: predicted)."""
    k = len(classes)
    pred = logits.argmax(1)
    cm = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k).numpy()
    per_class = (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist()
    return {"accuracy": float((pred == y).float().mean()),
            "per_class_accuracy": dict(zip(classes, per_class)),
            "confusion_matrix": cm.tolist()}
