"""Models: the paper's LeNet and any timm architecture by name.

LeNet (METHOD.md): conv1(6, 5x5) -> pool -> conv2(16, 5x5) -> pool -> fc1(120) -> fc2(84) -> fc3(10), ReLU,
on 32x32 inputs. It is an `nn.Sequential` with named children so its layer chain reads off directly.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from .config import ConfigError


class LeNet(nn.Sequential):
    def __init__(self, in_chans: int = 1, num_classes: int = 10):
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_chans, 6, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(6, 16, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(16 * 5 * 5, 120)), ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(120, 84)), ("relu4", nn.ReLU()),
            ("fc3", nn.Linear(84, num_classes)),
        ]))


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """`model` in eval mode inside the block. On exit every module's train/eval flag and every parameter's
    `requires_grad` are restored as they came in, so the engine hands a model back exactly as it got it
    (its weights and buffers are never written outside `masking.masked`, which restores them itself)."""
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in grads:
            p.requires_grad_(requires_grad)


def check_model_name(name: str, key: str = "model") -> None:
    """Raise ConfigError for a name that is neither 'lenet' nor a timm architecture."""
    import timm

    if name == "lenet" or timm.is_model(name):
        return
    close = timm.list_models(f"*{name.split('_')[0]}*")[:6]
    raise ConfigError(f"{key}: unknown model {name!r}; use 'lenet' or a timm name"
                      + (f" (close: {close})" if close else ""))


def check_pretrained_available(name: str, key: str = "pretrained", timeout: float = 5.0) -> None:
    """Raise ConfigError, in one line and within seconds, when timm's pretrained weights for `name` are neither in
    the local Hugging Face cache nor reachable (offline machine), instead of timm retrying a hub for minutes."""
    import os
    import socket
    from urllib.parse import urlparse

    if name == "lenet":
        raise ConfigError(f"{key}: model 'lenet' has no pretrained weights; set pretrained: false")
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ConfigError(f"{key}: timm has no pretrained weights for {name!r}; set pretrained: false")
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo = cfg.hf_hub_id.split("@")[0]
        if any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("model.safetensors", "pytorch_model.bin")):
            return
        host = "huggingface.co"
    else:
        if cfg.url and (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name).is_file():
            return
        host = urlparse(cfg.url or "").hostname or "huggingface.co"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return                        # behind a proxy a direct connection proves nothing: let timm try
    reason = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") == "1" else None
    if reason is None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            return
        except OSError as e:
            reason = f"{host} cannot be reached ({e.strerror or e})"
    raise ConfigError(f"{key}: the ImageNet weights of {name!r} are not in the local cache and {reason}; "
                      f"set pretrained: false (train from scratch) or run once with network access")


def build_model(name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False,
                model_args: dict | None = None) -> nn.Module:
    """LeNet or `timm.create_model(name, **model_args)` with a fresh `num_classes` head (ImageNet weights if
    `pretrained`); `model_args` are timm's own arguments, e.g. {img_size: 32, patch_size: 4} for a ViT."""
    check_model_name(name)
    if name == "lenet":
        if pretrained:
            raise ConfigError("model 'lenet' has no pretrained weights; set pretrained: false")
        if model_args:
            raise ConfigError(f"model 'lenet' takes no model_args, got {sorted(model_args)}")
        return LeNet(in_chans, num_classes)
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                                 **(model_args or {}))
    except TypeError as e:
        raise ConfigError(f"timm model {name!r} does not take model_args {model_args}: {e}") from e


def save_model(model: nn.Module, path: str | Path, name: str, num_classes: int, in_chans: int,
               extra: dict | None = None, model_args: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    if any(p.device.type != "cpu" for p in model.parameters()):    # a model trained on a GPU is saved from the CPU
        import copy

        model = copy.deepcopy(model).cpu()
    torch.save({"name": name, "num_classes": num_classes, "in_chans": in_chans,
                "state_dict": model.state_dict(), **({"model_args": model_args} if model_args else {}),
                **(extra or {})}, tmp)
    tmp.replace(path)


def resolve_device(value: str = "auto") -> torch.device:
    """params.yaml's `device`: "auto" (the default) is the first CUDA GPU when torch sees one, else the CPU; "cpu",
    "cuda" or "cuda:N" name one. A GPU that is not there stops here, with one line."""
    from .config import ConfigError, check_device

    value = check_device(value)
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(value)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"device: {value!r} but torch sees {torch.cuda.device_count()} CUDA device(s); use auto or cpu")
    return device


def deterministic(device: torch.device) -> None:
    """Make a GPU repeat itself from run to run: deterministic kernels (cuBLAS needs its workspace setting, which must
    be in the environment before the first cuBLAS call). A no-op on the CPU, whose kernels already repeat."""
    if device.type != "cuda":
        return
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a model saved by `save_model` (architecture from its name, no download) in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}; run its training stage first (dvc repro)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(ckpt["name"], ckpt["num_classes"], ckpt["in_chans"], pretrained=False,
                        model_args=ckpt.get("model_args"))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def model_info(path: str | Path) -> dict:
    """What `save_model` stored beside the weights: name, num_classes, in_chans, dataset, image_size, ..."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}; run its training stage first (dvc repro)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {k: v for k, v in ckpt.items() if k != "state_dict"}
