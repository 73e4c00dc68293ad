import hashlib
import shutil

import numpy as np
import pytest
import torch

from causal_interp import data
from causal_interp.data import DataError

from .conftest import SHARED_DATASETS, make_fake_root


def test_load_fake_mnist_resized_to_32(fake_root):
    ds = data.load_dataset("mnist", fake_root, image_size=32)
    assert ds.x_train.shape == (120, 1, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (80, 1, 32, 32)
    assert ds.y_train.dtype == torch.int64 and set(ds.y_train.tolist()) == set(range(10))
    assert ds.classes == [str(i) for i in range(10)]


def test_load_fake_cifar_layout_and_subsets(fake_root):
    ds = data.load_dataset("cifar10", fake_root, train_subset=30, test_subset=20, seed=1)
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    again = data.load_dataset("cifar10", fake_root, train_subset=30, test_subset=20, seed=1)
    assert torch.equal(ds.x_train, again.x_train)  # seeded subsets are reproducible
    full = data.load_dataset("cifar10", fake_root)
    raw = np.load(fake_root / "cifar10" / "cifar10.npz")
    assert torch.equal(full.x_train[5], torch.from_numpy(raw["x_train"][5]).permute(2, 0, 1))  # HWC -> CHW


def test_normalize_roundtrip(fake_root):
    ds = data.load_dataset("cifar10", fake_root, test_subset=4)
    x = ds.normalize(ds.x_test)
    assert x.dtype == torch.float32
    assert torch.allclose(ds.denormalize(x), ds.x_test.float() / 255, atol=1e-6)


def test_split_is_seeded_disjoint_and_complete():
    d, e = data.split_test(1000, 0.5, seed=3)
    assert len(d) == len(e) == 500
    assert not set(d) & set(e) and set(d) | set(e) == set(range(1000))
    d2, _ = data.split_test(1000, 0.5, seed=3)
    d3, _ = data.split_test(1000, 0.5, seed=4)
    assert np.array_equal(d, d2) and not np.array_equal(d, d3)
    d, e = data.split_test(10, 0.3)
    assert len(d) == 3 and len(e) == 7


def test_missing_data_fails_with_fetch_hint(tmp_path):
    with pytest.raises(DataError, match=r"mnist not found under .*causal_interp.data fetch"):
        data.load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        data.check_present(tmp_path, "imagenet21k")


def test_fetch_rejects_missing_mirror_dir(tmp_path):
    with pytest.raises(DataError, match="mirror directory not found"):
        data.fetch(tmp_path / "root", tmp_path / "nope")


def test_fetch_rejects_corrupt_mirror_file(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "cifar10").mkdir(parents=True)
    (mirror / "cifar10" / "cifar10.npz").write_bytes(b"not the dataset")
    with pytest.raises(DataError, match="is corrupt"):
        data.fetch(tmp_path / "root", mirror, datasets=["cifar10"])
    assert not (tmp_path / "root" / "cifar10" / "cifar10.npz").exists()


def test_fetch_reports_missing_mirror_file(tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DataError, match="mirror file missing"):
        data.fetch(tmp_path / "root", tmp_path / "mirror", datasets=["cifar10"])


def test_place_verified_never_overwrites_a_differing_file(tmp_path):
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(b"good")
    digest = hashlib.md5(b"good").hexdigest()
    dst.write_bytes(b"users own data")
    with pytest.raises(DataError, match="move it aside"):
        data._place_verified(src, dst, "md5", digest)
    assert dst.read_bytes() == b"users own data"
    dst.unlink()
    assert data._place_verified(src, dst, "md5", digest).startswith("copied")
    assert data._place_verified(src, dst, "md5", digest).startswith("ok (already present)")


@pytest.mark.skipif(not (SHARED_DATASETS / "MNIST").is_dir(), reason="offline mirror not beside the repository")
def test_fetch_mnist_from_real_mirror(tmp_path):
    log = data.fetch(tmp_path, SHARED_DATASETS, datasets=["mnist"])
    assert sum(line.startswith("copied") for line in log) == 4
    ds = data.load_dataset("mnist", tmp_path, image_size=32)
    assert ds.x_train.shape == (60000, 1, 32, 32) and ds.x_test.shape == (10000, 1, 32, 32)
    assert torch.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # second fetch verifies and keeps the files
    assert all(not line.startswith("copied") for line in data.fetch(tmp_path, SHARED_DATASETS, datasets=["mnist"]))


def test_load_halves_reads_only_the_test_set_and_splits_it(fake_root):
    from causal_interp.config import DataConfig

    h = data.load_halves({"dataset": "cifar10", "image_size": 40}, DataConfig(root=str(fake_root), discovery_fraction=0.25))
    assert len(h.data.x_train) == 0 and h.x.shape == (80, 3, 40, 40) and h.x.dtype == torch.float32
    assert len(h.discovery) == 20 and len(h.evaluation) == 60
    assert sorted(h.discovery.tolist() + h.evaluation.tolist()) == list(range(80))
    d, _ = data.split_test(80, 0.25, 0)
    assert h.discovery.tolist() == d.tolist()
