import hashlib

import numpy as np
import pytest
import torch

from causal_interp import data
from causal_interp.data import DataError

from .conftest import SHARED_DATASETS


def test_load_fake_mnist_resized_to_32(fake_data):
    ds = data.load_dataset("mnist", fake_data, image_size=32)
    assert ds.x_train.shape == (120, 1, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (80, 1, 32, 32)
    assert ds.y_train.dtype == torch.int64 and set(ds.y_train.tolist()) == set(range(10))
    assert ds.classes == [str(i) for i in range(10)]


def test_load_fake_cifar_layout_and_subsets(fake_root, fake_data):
    ds = data.load_dataset("cifar10", fake_data, train_subset=30, test_subset=20, seed=1)
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    again = data.load_dataset("cifar10", fake_data, train_subset=30, test_subset=20, seed=1)
    assert torch.equal(ds.x_train, again.x_train)  # seeded subsets are reproducible
    full = data.load_dataset("cifar10", fake_data)
    raw = np.load(fake_root / "cifar10" / "cifar10.npz")
    assert torch.equal(full.x_train[5], torch.from_numpy(raw["x_train"][5]).permute(2, 0, 1))  # HWC -> CHW


def test_normalize_roundtrip(fake_data):
    ds = data.load_dataset("cifar10", fake_data, test_subset=4)
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

    h = data.load_halves({"dataset": "cifar10", "image_size": 40}, DataConfig(root=str(fake_root), discovery_fraction=0.25, verify=False))
    assert len(h.data.x_train) == 0 and h.x.shape == (80, 3, 40, 40) and h.x.dtype == torch.float32
    assert len(h.discovery) == 20 and len(h.evaluation) == 60
    assert sorted(h.discovery.tolist() + h.evaluation.tolist()) == list(range(80))
    d, _ = data.split_test(80, 0.25, 0)
    assert h.discovery.tolist() == d.tolist()


def make_image_folder(root, classes=("n01440764", "n01443537", "n01484850"), val=4, train=2, seed=0):
    """A tiny ImageNet-style folder: val/<wnid>/*.JPEG (and train/) of random sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("val", val), ("train", train)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = rng.integers(40, 90, size=2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / split / c / f"{c}_{i}.JPEG",
                                                                                      format="PNG")
    (root / "val" / "README.txt").write_text("not a class")
    return root


def test_imagenet_folder_selected_classes_keep_their_index(tmp_path):
    from causal_interp.config import DataConfig

    root = make_image_folder(tmp_path / "imagenet")
    cfg = DataConfig(imagenet={"root": str(root), "classes": ["n01484850", "n01440764"]})
    ds = data.load_dataset("imagenet", cfg, image_size=32)
    assert ds.classes == ["n01440764", "n01443537", "n01484850"] and ds.num_classes == 3
    assert ds.x_test.shape == (8, 3, 32, 32) and ds.x_test.dtype == torch.uint8
    assert sorted(set(ds.y_test.tolist())) == [0, 2] and ds.x_train.shape[0] == 4
    halves = data.load_halves({"dataset": "imagenet", "image_size": 32}, cfg)
    assert len(halves.discovery) == 4 and len(halves.evaluation) == 4 and len(halves.data.x_train) == 0
    assert not set(halves.discovery.tolist()) & set(halves.evaluation.tolist())
    all_classes = data.load_dataset("imagenet", DataConfig(imagenet={"root": str(root), "classes": None}), 24)
    assert all_classes.x_test.shape == (12, 3, 24, 24)


def test_imagenet_folder_errors_are_clear(tmp_path):
    from causal_interp.config import ConfigError, DataConfig, from_dict

    with pytest.raises(DataError, match="needs data.imagenet.root"):
        data.check_present(DataConfig(), "imagenet")
    with pytest.raises(DataError, match="has no val/ folder"):
        data.check_present(DataConfig(imagenet={"root": str(tmp_path), "classes": None}), "imagenet")
    root = make_image_folder(tmp_path / "imagenet", val=1, train=0)
    with pytest.raises(DataError, match=r"no class folder for \['n02085620'\]"):
        data.check_present(DataConfig(imagenet={"root": str(root), "classes": ["n02085620"]}), "imagenet")
    with pytest.raises(ConfigError, match="imagenet: unknown keys"):
        from_dict(DataConfig, {"imagenet": {"root": "x", "clases": []}}, "data")
    with pytest.raises(ConfigError, match="list of class folder names"):
        from_dict(DataConfig, {"imagenet": {"root": "x", "classes": "n01440764"}}, "data")


def test_imagenet_folder_graph_of_a_random_timm_model(tmp_path):
    """The ImageNet option end to end on a fake folder: halves -> random resnet18 -> class graph."""
    from causal_interp import discovery, models
    from causal_interp.config import DataConfig

    root = make_image_folder(tmp_path / "imagenet", val=6, train=0)
    cfg = DataConfig(imagenet={"root": str(root), "classes": None}, discovery_fraction=0.5)
    halves = data.load_halves({"dataset": "imagenet", "image_size": 32}, cfg)
    torch.manual_seed(0)
    model = models.build_model("resnet18", halves.data.num_classes).eval()
    x = halves.x[halves.discovery][:4]
    g = discovery.discover_class_graph(model, x, 2, class_name=halves.data.classes[2])
    assert [lg.layer for lg in g.layers][0] == "fc" and g.class_name == "n01484850" and g.n_examples == 4
    assert g.layers[0].n_parents == 512
