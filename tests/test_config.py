import pytest
import yaml

from causal_interp import config
from causal_interp.config import ConfigError

from .conftest import REPO


def test_repository_params_are_valid_for_every_profile():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for profile in ["default", *raw.get("profiles", {})]:
        params = config.load_params(REPO / "params.yaml", profile)
        config.data_config(params)
        for stage in ("train_lenet", "finetune_cifar10"):
            config.stage_config(params, stage)


def test_profile_overrides_are_merged_deeply():
    default = config.load_params(REPO / "params.yaml")
    smoke = config.load_params(REPO / "params.yaml", "smoke")
    assert smoke["train_lenet"]["epochs"] == 1 != default["train_lenet"]["epochs"]
    assert smoke["train_lenet"]["model"] == default["train_lenet"]["model"]  # untouched key kept
    assert "profiles" not in smoke


def test_unknown_profile_is_rejected(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("seed: 0\nprofiles: {smoke: {}}\n")
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        config.load_params(p, "fast")


def test_missing_params_file():
    with pytest.raises(ConfigError, match="params file not found"):
        config.load_params("/nonexistent/params.yaml")


@pytest.mark.parametrize("section, message", [
    ({"dataset": "mnist", "model": "lenet9"}, "unknown model 'lenet9'"),
    ({"dataset": "svhn", "model": "lenet"}, "unknown dataset 'svhn'"),
    ({"dataset": "mnist", "model": "lenet", "epochs": "ten"}, "epochs must be int"),
    ({"dataset": "mnist", "model": "lenet", "epochs": 0}, "epochs must be >= 1"),
    ({"dataset": "mnist", "model": "lenet", "lr": -1}, r"s.lr must be in \(0, 10\], got -1.0"),
    ({"dataset": "mnist", "model": "lenet", "optimizer": "rmsprop"}, "optimizer must be"),
    ({"dataset": "mnist", "model": "lenet", "epoch": 3}, r"unknown key\(s\) \['epoch'\]"),
    ({"model": "lenet"}, "missing required key 'dataset'"),
    ("lenet", "must be a mapping"),
])
def test_bad_stage_params_name_the_problem(section, message):
    with pytest.raises(ConfigError, match=message):
        config.stage_config({"seed": 0, "s": section}, "s")


def test_global_seed_fills_stage_seed():
    cfg = config.stage_config({"seed": 7, "s": {"dataset": "mnist", "model": "lenet"}}, "s")
    assert cfg.seed == 7
    cfg = config.stage_config({"seed": 7, "s": {"dataset": "mnist", "model": "lenet", "seed": 3}}, "s")
    assert cfg.seed == 3


def test_timm_names_are_accepted():
    cfg = config.stage_config({"s": {"dataset": "cifar10", "model": "mobilenetv2_100"}}, "s")
    assert cfg.model == "mobilenetv2_100"


def test_data_fraction_bounds():
    with pytest.raises(ConfigError, match="discovery_fraction"):
        config.data_config({"data": {"discovery_fraction": 1.0}})
