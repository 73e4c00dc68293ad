"""Raw data: fetching (offline mirror or torchvision download), checksums, loading and splits.

Layout under the data root (what `data.dvc` pins):
    MNIST/raw/*.gz (+ the idx files torchvision extracts from them)
    cifar10/cifar10.npz          when filled from the offline mirror (see shared/datasets/SOURCES.md)
    cifar-10-batches-py/         when downloaded by torchvision
ImageNet is not fetched: `data.imagenet.root` points at an ImageNet-style folder (`train/<wnid>/*.JPEG`,
`val/<wnid>/*.JPEG`, e.g. the official validation set sorted into class folders); see `load_image_folder`.

Tensors are kept as uint8 (N, C, H, W) at the working resolution; `ImageData.normalize` turns a batch
into the float input of the model. The official test set is split, seeded, into a discovery half
(graphs are found on it) and an evaluation half (explanations are scored on it), as in the paper.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MIRROR_ENV = "CAUSAL_DATA_MIRROR"

MNIST_FILES = {  # torchvision's md5 list
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_EXTRACTED = {  # the idx files torchvision extracts from them (shared/datasets/SOURCES.md)
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
CIFAR_NPZ = ("cifar10/cifar10.npz", "sha256", "f6eba2b7a6f06cae9804d7b8e899ae24d56c09a3256ff5b5ebf1958e624701c4")
CIFAR_BATCHES = {  # torchvision's md5 list of the official python pickles (cifar-10-batches-py/)
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


def published_checksums(name: str) -> dict[str, tuple[str, str]]:
    """{path under the data root: (algorithm, digest)} of every raw and extracted file of dataset `name`.
    CIFAR-10 is either the mirror's npz or torchvision's pickles: whichever is present is checked."""
    if name == "mnist":
        return {**{f"MNIST/raw/{f}": ("md5", d) for f, d in MNIST_FILES.items()},
                **{f"MNIST/raw/{f}": ("md5", d) for f, d in MNIST_EXTRACTED.items()}}
    if name == "cifar10":
        return {CIFAR_NPZ[0]: CIFAR_NPZ[1:], **{f"cifar-10-batches-py/{f}": ("md5", d) for f, d in CIFAR_BATCHES.items()}}
    return {}

DATASETS = {
    "mnist": dict(channels=1, native_size=28, mean=(0.1307,), std=(0.3081,),
                  classes=[str(i) for i in range(10)]),
    "cifar10": dict(channels=3, native_size=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
                    classes=["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]),
    "imagenet": dict(channels=3, native_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     classes=None),   # the class folders of data.imagenet.root, sorted (ImageNet-1k index order)
}
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


class DataError(RuntimeError):
    """Missing, corrupt or conflicting data files."""


def file_hash(path: Path, algo: str = "md5") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_verified: dict = {}   # (path, size, mtime) -> digest, so one process hashes a file once


def _digest(path: Path, algo: str) -> str:
    st = path.stat()
    key = (str(path.resolve()), algo, st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = file_hash(path, algo)
    return _verified[key]


def repair_command(root) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    return f"python -m causal_interp.data fetch --root {root} --repair" + (f" --mirror {mirror}" if mirror else "") + \
        " (or: make data REPAIR=1)"


def verify(root, name: str) -> list[str]:
    """Check every file of dataset `name` present under `root` against its published checksum; returns the
    checked paths. A mismatch raises DataError naming the file and the command that repairs it."""
    root = Path(root)
    checked = []
    for rel, (algo, expected) in published_checksums(name).items():
        path = root / rel
        if not path.is_file():
            continue
        got = _digest(path, algo)
        if got != expected:
            raise DataError(f"{path} is corrupt: {algo} {got}, published {expected}. Nothing was read. "
                            f"Repair it with: {repair_command(root)}")
        checked.append(rel)
    return checked


def _place_verified(src: Path, dst: Path, algo: str, expected: str) -> str:
    """Copy `src` to `dst` after checking its hash; never overwrite a differing existing file."""
    if dst.exists():
        if file_hash(dst, algo) == expected:
            return f"ok (already present): {dst}"
        raise DataError(f"{dst} exists but its {algo} differs from the expected {expected}; "
                        f"move it aside (it is not overwritten) and fetch again")
    if not src.is_file():
        raise DataError(f"mirror file missing: {src}")
    got = file_hash(src, algo)
    if got != expected:
        raise DataError(f"mirror file {src} is corrupt: {algo} {got}, expected {expected}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return f"copied: {src} -> {dst}"


def set_aside_corrupt(root, name: str) -> list[str]:
    """Rename every file of `name` under `root` whose checksum is wrong to `<file>.corrupt` (for `fetch --repair`)."""
    root, moved = Path(root), []
    for rel, (algo, expected) in published_checksums(name).items():
        path = root / rel
        if path.is_file() and _digest(path, algo) != expected:
            os.replace(path, path.with_name(path.name + ".corrupt"))
            moved.append(f"set aside (corrupt): {path} -> {path.name}.corrupt")
    return moved


def fetch(root: str | Path = "data", mirror: str | Path | None = None, datasets=("mnist", "cifar10"),
          repair: bool = False) -> list[str]:
    """Fill `root` with the raw datasets, from `mirror` when given, else by torchvision download.

    Every file, raw and extracted, is checked against its published checksum; existing files are verified, never
    replaced. With `repair`, corrupt files are first renamed to `<file>.corrupt` and fetched again.
    """
    import torchvision

    root = Path(root)
    mirror = Path(mirror) if mirror else None
    if mirror is not None and not mirror.is_dir():
        raise DataError(f"data mirror directory not found: {mirror}")
    log = []
    if repair:
        for name in datasets:
            log += set_aside_corrupt(root, name)
    for name in datasets:
        if name not in DATASETS:
            raise DataError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
        if name == "imagenet":
            raise DataError("ImageNet is not fetched (it needs a licence): point data.imagenet.root at an "
                            "ImageNet-style folder in params.yaml")
        if name == "mnist":
            if mirror is not None:
                for fname, md5 in MNIST_FILES.items():
                    log.append(_place_verified(mirror / "MNIST/raw" / fname, root / "MNIST/raw" / fname, "md5", md5))
            else:
                verify(root, "mnist")               # refuse to touch a corrupt existing file
            # verifies the md5s and extracts the idx files (no network when the .gz files are present)
            for train in (True, False):
                torchvision.datasets.MNIST(root, train=train, download=True)
            log.append(f"mnist ready under {root / 'MNIST'}: {len(verify(root, 'mnist'))} files verified")
        elif name == "cifar10":
            rel, algo, digest = CIFAR_NPZ
            if mirror is not None:
                log.append(_place_verified(mirror / rel, root / rel, algo, digest))
            else:
                torchvision.datasets.CIFAR10(root, train=True, download=True)  # md5-checked by torchvision
                log.append(f"cifar10 downloaded under {root / 'cifar-10-batches-py'}")
            log[-1] += f" ({len(verify(root, 'cifar10'))} files verified)"
    return log


def check_present(root, name: str) -> None:
    """Fail early, with the command to run, when a dataset is missing from `root` (a folder, or a DataConfig), and
    when one of its files differs from its published checksum (`verify`; skipped with a DataConfig whose
    `verify` is false, for your own data in the same layout)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    if name == "imagenet":
        image_folder_classes(root)
        return
    checked = getattr(root, "verify", True)
    root = Path(root if isinstance(root, (str, Path)) else root.root)
    if name == "mnist":
        missing = [f for f in MNIST_FILES if not (root / "MNIST/raw" / f).exists()]
        ok = not missing and (root / "MNIST/raw/t10k-images-idx3-ubyte").exists()
    else:
        ok = (root / CIFAR_NPZ[0]).exists() or (root / "cifar-10-batches-py").is_dir()
    if not ok:
        raise DataError(f"{name} not found under {root}/; run `python -m causal_interp.data fetch "
                        f"--root {root} [--mirror DIR]` (or set {MIRROR_ENV})")
    if checked:
        verify(root, name)


@dataclass
class ImageData:
    """A labelled image dataset held in memory as uint8 tensors (N, C, H, W)."""

    name: str
    classes: list
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple
    std: tuple

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def normalize(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> normalised float32 model input, on the device of `x_uint8`."""
        mean = torch.tensor(self.mean, device=x_uint8.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x_uint8.device).view(1, -1, 1, 1)
        return (x_uint8.float() / 255.0 - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> [0, 1] image (for display)."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)


def _resize_uint8(x: torch.Tensor, size: int, batch: int = 4096) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(x), batch):
        y = F.interpolate(x[i:i + batch].float(), size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1])
        out[i:i + batch] = y.round().clamp(0, 255).to(torch.uint8)
    return out


def _subset(x, y, n, seed):
    if n is None or n >= len(y):
        return x, y
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(len(y))[:n])
    return x[idx], y[idx]


def _imagenet_settings(cfg) -> tuple[Path, list | None]:
    settings = getattr(cfg, "imagenet", None) or {}
    if not settings.get("root"):
        raise DataError("dataset imagenet needs data.imagenet.root: an ImageNet-style folder with "
                        "val/<wnid>/*.JPEG (and train/<wnid>/ to train); nothing is downloaded")
    return Path(settings["root"]), settings.get("classes")


def image_folder_classes(cfg) -> list[str]:
    """The class folders (wnids) of the ImageNet-style folder `cfg.imagenet['root']`, sorted; checks that
    `val/` exists and that every selected class (`cfg.imagenet['classes']`) has a folder."""
    root, selected = _imagenet_settings(cfg)
    if not (root / "val").is_dir():
        raise DataError(f"ImageNet folder {root} has no val/ folder (expected val/<wnid>/*.JPEG)")
    classes = sorted(p.name for p in (root / "val").iterdir() if p.is_dir())
    missing = [c for c in (selected or []) if c not in classes]
    if not classes or missing:
        raise DataError(f"ImageNet folder {root}/val: " + (f"no class folder for {missing}" if classes else "no class folders"))
    return classes


def load_image_folder(cfg, image_size: int) -> tuple[list[str], tuple, tuple]:
    """ImageNet-style folder as uint8 tensors: (classes, (x_train, y_train), (x_val, y_val)).

    Labels are the indices of the sorted class folders of val/ (for the full ImageNet-1k folder: the
    standard class indices, so timm's pretrained 1000-class heads apply unchanged). With
    `data.imagenet.classes` (a list of wnids, e.g. the 10 animal classes of the repair study) only the
    images of those classes are loaded; their labels keep the full index. Images are resized (shorter
    side to image_size * 256/224) and centre-cropped to image_size, as timm evaluates. `train/` may be absent.
    """
    from PIL import Image

    classes = image_folder_classes(cfg)
    root, selected = _imagenet_settings(cfg)
    keep = [c for c in classes if selected is None or c in selected]
    resize = int(round(image_size * 256 / 224))

    def read(split):
        xs, ys = [], []
        for c in keep:
            folder = root / split / c
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
            for f in files:
                img = Image.open(f).convert("RGB")
                w, h = img.size
                scale = resize / min(w, h)
                img = img.resize((max(resize, round(w * scale)), max(resize, round(h * scale))), Image.BILINEAR)
                left, top = (img.size[0] - image_size) // 2, (img.size[1] - image_size) // 2
                img = img.crop((left, top, left + image_size, top + image_size))
                xs.append(torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy()))
                ys.append(classes.index(c))
        if not xs:
            return torch.empty(0, 3, image_size, image_size, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        return torch.stack(xs), torch.tensor(ys, dtype=torch.long)

    val = read("val")
    if not len(val[1]):
        raise DataError(f"no images under {root}/val for classes {keep[:5]}")
    return classes, read("train"), val


def load_dataset(name: str, root="data", image_size: int | None = None,
                 train_subset: int | None = None, test_subset: int | None = None, seed: int = 0,
                 test_only: bool = False) -> ImageData:
    """Load a dataset into memory at `image_size` (default: native size; MNIST is 32 in the paper).

    `root`: the data root folder, or the `data` DataConfig (needed for imagenet: `data.imagenet`).
    `train_subset` / `test_subset` draw seeded random subsets (for the smoke profile and tests);
    `test_only` leaves the training set empty (the stages after training only read the test set).
    For imagenet the "test set" is the validation folder.
    """
    import torchvision

    check_present(root, name)
    info = DATASETS[name]
    if name == "imagenet":
        classes, (x_train, y_train), (x_test, y_test) = load_image_folder(root, image_size or info["native_size"])
        x_train, y_train = _subset(x_train, y_train, 0 if test_only else train_subset, seed)
        x_test, y_test = _subset(x_test, y_test, test_subset, seed + 1)
        return ImageData(name, classes, x_train, y_train, x_test, y_test, info["mean"], info["std"])
    root = Path(root if isinstance(root, (str, Path)) else root.root)
    if name == "mnist":
        tr = torchvision.datasets.MNIST(root, train=True, download=False)
        te = torchvision.datasets.MNIST(root, train=False, download=False)
        x_train, y_train = tr.data.unsqueeze(1), tr.targets.long()
        x_test, y_test = te.data.unsqueeze(1), te.targets.long()
    else:
        npz = root / CIFAR_NPZ[0]
        if npz.exists():
            with np.load(npz) as z:
                x_train, y_train, x_test, y_test = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        else:
            tr = torchvision.datasets.CIFAR10(root, train=True, download=False)
            te = torchvision.datasets.CIFAR10(root, train=False, download=False)
            x_train, y_train, x_test, y_test = tr.data, np.array(tr.targets), te.data, np.array(te.targets)
        x_train = torch.from_numpy(np.ascontiguousarray(x_train.transpose(0, 3, 1, 2)))
        x_test = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2)))
        y_train, y_test = torch.from_numpy(y_train.astype(np.int64)), torch.from_numpy(y_test.astype(np.int64))
    x_train, y_train = _subset(x_train, y_train, 0 if test_only else train_subset, seed)
    x_test, y_test = _subset(x_test, y_test, test_subset, seed + 1)
    size = image_size or info["native_size"]
    return ImageData(name=name, classes=list(info["classes"]),
                     x_train=_resize_uint8(x_train, size), y_train=y_train,
                     x_test=_resize_uint8(x_test, size), y_test=y_test,
                     mean=info["mean"], std=info["std"])


def split_test(n: int, fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of test indices into (discovery, evaluation) halves, each sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(fraction * n))
    return np.sort(perm[:k]), np.sort(perm[k:])


@dataclass
class Halves:
    """The official test set as model input, with its discovery and evaluation halves (index tensors)."""

    data: ImageData
    x: torch.Tensor            # normalised, the whole test set
    y: torch.Tensor
    discovery: torch.Tensor
    evaluation: torch.Tensor


def load_halves(info: dict, cfg) -> Halves:
    """Test set of a trained model (`models.model_info`: dataset, image_size) split as `cfg` (DataConfig) says."""
    ds = load_dataset(info["dataset"], cfg, info["image_size"], test_only=True)
    disc, ev = split_test(len(ds.y_test), cfg.discovery_fraction, cfg.split_seed)
    return Halves(ds, ds.normalize(ds.x_test), ds.y_test, torch.from_numpy(disc), torch.from_numpy(ev))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causal_interp.data",
                                     description="Fill the data root with MNIST and CIFAR-10.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fetch", help="copy from a mirror (verified) or download with torchvision")
    p.add_argument("--root", default="data")
    p.add_argument("--mirror", default=os.environ.get(MIRROR_ENV) or None,
                   help=f"offline mirror directory (default: ${MIRROR_ENV}; unset = download)")
    p.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"])
    p.add_argument("--repair", action="store_true", help="rename corrupt files to <file>.corrupt and fetch them again")
    args = parser.parse_args(argv)
    try:
        for line in fetch(args.root, args.mirror, args.datasets, repair=args.repair):
            print(line)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
