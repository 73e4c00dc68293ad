"""Reading and validating `params.yaml`.

The file has one section per pipeline stage plus shared sections (`seed`, `data`). A `profiles`
section holds named overrides (e.g. `smoke`) that are merged over the defaults; `dvc repro` always
runs the default profile. Every check here runs before any long computation, so bad params stop
with one line naming the problem.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A malformed or inconsistent parameter; the message names the offending key."""


def read_yaml(path: str | Path = "params.yaml") -> dict:
    """params.yaml as a dict (profiles included), with one-line errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return params


def load_params(path: str | Path = "params.yaml", profile: str = "default") -> dict:
    """Load params.yaml and merge the overrides of `profile` (no-op for "default")."""
    params = read_yaml(path)
    profiles = params.pop("profiles", {}) or {}
    if profile != "default":
        if profile not in profiles:
            raise ConfigError(f"unknown profile {profile!r}; params.yaml defines: {sorted(profiles) + ['default']}")
        params = deep_merge(params, profiles[profile])
    return params


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge `override` into a copy of `base`."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def from_dict(cls, values: dict, section: str):
    """Build dataclass `cls` from `values`, rejecting unknown or missing keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"params section {section!r} must be a mapping, got {type(values).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"params section {section!r}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {}
    for name, f in names.items():
        if name in values:
            kwargs[name] = _coerce(values[name], f.type, f"{section}.{name}")
            check_range(kwargs[name], f.metadata.get("range"), f"{section}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"params section {section!r}: missing required key {name!r}")
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        try:
            obj.validate(section)
        except ConfigError:
            raise
        except (ValueError, TypeError, KeyError, IndexError) as e:   # the engine's own checks, as one line
            raise ConfigError(str(e).strip("'\"")) from None
    return obj


def bounded(default, low=None, high=None, *, low_open: bool = False, high_open: bool = False):
    """A dataclass field with an allowed range, checked by `from_dict`: [low, high], ends open when asked."""
    return field(default=default, metadata={"range": (low, high, low_open, high_open)})


def check_range(value, bounds, key: str) -> None:
    """Raise ConfigError when the number `value` (None passes) is outside `bounds` (see `bounded`)."""
    if bounds is None or value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    low, high, low_open, high_open = bounds
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        interval = (f"{'(' if low_open else '['}{'-inf' if low is None else low}, "
                    f"{'inf' if high is None else high}{')' if high_open or high is None else ']'}")
        raise ConfigError(f"{key} must be in {interval}, got {value!r}")


def _coerce(value: Any, annotation: str, key: str):
    ann = str(annotation).replace(" ", "")
    optional = "None" in ann
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} must not be null")
    base = ann.split("|")[0]
    try:
        if base == "int":
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if base == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {base}, got {value!r}") from None
    return value


@dataclass
class DataConfig:
    """Where the raw datasets live and how the official test set is split (discovery / evaluation)."""

    root: str = "data"
    discovery_fraction: float = bounded(0.5, 0, 1, low_open=True, high_open=True)
    split_seed: int = bounded(0, 0)
    verify: bool = True      # check every raw file against its published checksum before reading it
    # ImageNet-style folder for `dataset: imagenet`: {root: DIR with val/<wnid>/ (and train/<wnid>/),
    # classes: null (all) or a list of wnids to load, e.g. the 10 animal classes of the repair study}
    imagenet: dict = field(default_factory=lambda: {"root": None, "classes": None})

    def validate(self, section: str) -> None:
        unknown = set(self.imagenet) - {"root", "classes"}
        if unknown:
            raise ConfigError(f"{section}.imagenet: unknown keys {sorted(unknown)} (known: root, classes)")
        classes = self.imagenet.get("classes")
        if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
            raise ConfigError(f"{section}.imagenet.classes must be null or a list of class folder names (wnids)")


@dataclass
class TrainConfig:
    """One training stage: dataset, architecture and optimisation settings."""

    dataset: str
    model: str
    pretrained: bool = False
    model_args: dict = field(default_factory=dict)   # timm.create_model's own arguments (a ViT's img_size, ...)
    image_size: int = bounded(32, 16, 1024)
    epochs: int = bounded(5, 0, 10_000)
    batch_size: int = bounded(128, 1, 65_536)
    optimizer: str = "adam"
    lr: float = bounded(1e-3, 0, 10, low_open=True)
    weight_decay: float = bounded(0.0, 0, 1)
    momentum: float = bounded(0.9, 0, 1, high_open=True)
    label_smoothing: float = bounded(0.0, 0, 1, high_open=True)
    crop_pad: int = bounded(0, 0, 64)
    hflip: bool = False
    bf16: Any = "auto"    # "auto": bf16 autocast where it is native (AMX / AVX-512 BF16, a GPU), else float32; true/false force it
    train_subset: int | None = bounded(None, 1)
    test_subset: int | None = bounded(None, 1)
    target_accuracy: float = bounded(0.0, 0, 1)
    time_budget_minutes: float | None = bounded(None, 0, low_open=True)
    seed: int = bounded(0, 0)
    threads: int | None = bounded(None, 1, 1024)

    def validate(self, section: str) -> None:
        from .data import DATASETS
        from .models import check_model_name

        if self.dataset not in DATASETS:
            raise ConfigError(f"{section}.dataset: unknown dataset {self.dataset!r}; known: {sorted(DATASETS)}")
        check_model_name(self.model, key=f"{section}.model")
        if self.bf16 not in (True, False, "auto"):
            raise ConfigError(f"{section}.bf16 must be auto, true or false, got {self.bf16!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"{section}.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.epochs < (0 if self.pretrained else 1):
            raise ConfigError(f"{section}.epochs must be >= 1 (0 only with pretrained: true, to use the weights as they are)")
        if self.model == "lenet" and self.image_size != 32:
            raise ConfigError(f"{section}.image_size must be 32 for lenet (its fc1 reads 16 x 5 x 5), got {self.image_size}")
        if self.dataset == "imagenet" and self.pretrained is False and self.epochs == 0:
            raise ConfigError(f"{section}: epochs 0 needs pretrained: true")
        if self.model_args:        # unknown timm arguments stop here, before any data is loaded (a model on "meta")
            import torch

            from .models import build_model
            try:
                with torch.device("meta"):
                    build_model(self.model, 10, 3, False, self.model_args)
            except ConfigError as e:
                raise ConfigError(f"{section}.model_args: {e}") from e


def check_device(value) -> str:
    """params.yaml's `device`: "auto", "cpu", "cuda" or "cuda:N" (checked here without torch; `models.resolve_device`
    turns it into a torch device)."""
    import re

    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def stage_config(params: dict, stage: str, cls=TrainConfig):
    """The validated config of `stage`; the global `seed` fills a stage seed that is not set."""
    if stage not in params:
        raise ConfigError(f"params.yaml has no section {stage!r}")
    if not isinstance(params[stage], dict):
        raise ConfigError(f"params section {stage!r} must be a mapping, got {type(params[stage]).__name__}")
    values = dict(params[stage])
    if "seed" in params and "seed" not in values and "seed" in {f.name for f in dataclasses.fields(cls)}:
        values["seed"] = params["seed"]
    return from_dict(cls, values, stage)


def data_config(params: dict) -> DataConfig:
    return from_dict(DataConfig, params.get("data", {}), "data")
