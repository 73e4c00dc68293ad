"""Shared fixtures: tiny datasets written in the real on-disk layouts (no download, no mirror needed)."""
import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def private_tmpdir(tmp_path_factory):
    """Everything the tests and their subprocesses put in the temporary folder (Jupyter kernels' connection files and
    socket folders, a killed stage's leftovers, DVC's and torch's scratch) goes to one folder, removed after the run:
    `make test` leaves /tmp as it found it. pytest's own tmp_path folders stay where pytest keeps them (those of
    failed tests are kept for reading)."""
    tmp_path_factory.getbasetemp()
    with tempfile.TemporaryDirectory(prefix="causal-tests-") as folder, pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", folder)
        mp.setattr(tempfile, "tempdir", folder)
        yield Path(folder)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file (MNIST format) and its .gz twin."""
    magic = 0x0803 if array.ndim == 3 else 0x0801
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(raw)
    with gzip.open(str(path) + ".gz", "wb") as f:
        f.write(raw)


def make_fake_root(root: Path, n_train: int = 120, n_test: int = 80, seed: int = 0) -> Path:
    """MNIST (28x28 gray) and CIFAR-10 (32x32 RGB) look-alikes: class c draws a bright square at a class-specific place."""
    rng = np.random.default_rng(seed)

    def images(n, size, chans):
        y = np.arange(n) % 10
        x = rng.integers(0, 40, size=(n, size, size, chans)).astype(np.uint8)
        for i, c in enumerate(y):
            r, s = 2 + (c // 5) * (size // 2), 2 + (c % 5) * (size // 6)
            x[i, r:r + size // 4, s:s + size // 6] = 230
        return x, y.astype(np.uint8)

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    xtr, ytr = images(n_train, 28, 1)
    xte, yte = images(n_test, 28, 1)
    write_idx(raw / "train-images-idx3-ubyte", xtr[..., 0])
    write_idx(raw / "train-labels-idx1-ubyte", ytr)
    write_idx(raw / "t10k-images-idx3-ubyte", xte[..., 0])
    write_idx(raw / "t10k-labels-idx1-ubyte", yte)
    (root / "cifar10").mkdir()
    xtr, ytr = images(n_train, 32, 3)
    xte, yte = images(n_test, 32, 3)
    np.savez_compressed(root / "cifar10" / "cifar10.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return root


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory) -> Path:
    return make_fake_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def fake_data(fake_root):
    """The fake data root as a DataConfig with checksum verification off (its files are not the published ones)."""
    from causal_interp.config import DataConfig

    return DataConfig(root=str(fake_root), verify=False)
