"""Every stage of dvc.yaml runs end to end through papermill with the smoke profile on tiny fake data."""
import json
import subprocess
import sys

import pytest
import yaml

from causal_interp import pipeline

from .conftest import REPO



def expanded_stages() -> dict:
    """dvc.yaml's stages with `foreach` stages expanded over their params.yaml list (`name@item`)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = {}
    for name, spec in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        if "foreach" in spec:
            items = params[spec["foreach"].strip("${}")]
            text = yaml.safe_dump(spec["do"])
            for item in items:
                stages[item] = yaml.safe_load(text.replace("${item}", item))
        else:
            stages[name] = spec
    return {name: spec for name, spec in stages.items() if spec["cmd"].startswith("python -m causal_interp.pipeline")}


STAGES = expanded_stages()


def stage_notebook(stage):
    cmd = STAGES[stage]["cmd"].split()
    assert cmd[:4] == ["python", "-m", "causal_interp.pipeline", stage], cmd
    return cmd[4]


@pytest.fixture(scope="module")
def smoke_run(fake_root, tmp_path_factory):
    """Every stage, in dvc.yaml order (which is dependency order), into one scratch tree; errors kept per stage."""
    root = tmp_path_factory.mktemp("smoke")
    results = {}
    for stage in STAGES:
        try:
            results[stage] = pipeline.run_stage(stage, stage_notebook(stage), profile="smoke", reports=root / "reports",
                                                models=root / "models", overrides={"data": {"root": str(fake_root)}},
                                                log_output=False, checkpoints=root / "ckpt")
        except Exception as e:  # reported by the stage's own test
            results[stage] = e
    return root, results


@pytest.mark.notebooks
@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_runs_with_smoke_profile(stage, smoke_run):
    tmp_path, results = smoke_run
    executed = results[stage]
    if isinstance(executed, Exception):
        raise executed
    assert executed.exists() and not (executed.parent / f"{stage}.failed.ipynb").exists()
    # every declared output of the stage (relative to reports/ and models/) was written
    for entry in STAGES[stage].get("outs", []) + STAGES[stage].get("metrics", []) + STAGES[stage].get("plots", []):
        path = next(iter(entry)) if isinstance(entry, dict) else entry
        top, rest = path.split("/", 1)
        assert (tmp_path / top / rest).exists(), path
    for entry in STAGES[stage].get("metrics", []):
        path = next(iter(entry)) if isinstance(entry, dict) else entry
        json.loads((tmp_path / path).read_text())


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "causal_interp.pipeline", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_bad_model_name_stops_with_one_line(tmp_path, fake_root):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train_lenet"]["model"] = "lenet9"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    r = run_cli("train_lenet", "notebooks/train.ipynb", "--params", str(tmp_path / "p.yaml"), "--quiet",
                "--reports", str(tmp_path / "r"), "--models", str(tmp_path / "m"), "--data-root", str(fake_root),
                "--checkpoints", str(tmp_path / "c"))
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: train_lenet: ConfigError: train_lenet.model: unknown model 'lenet9'; use 'lenet' or a timm name"]
    assert not (tmp_path / "r" / "train_lenet" / "train_lenet.ipynb").exists()
    assert (tmp_path / "r" / "train_lenet" / "train_lenet.failed.ipynb").exists()


def test_missing_data_stops_with_fetch_hint(tmp_path):
    r = run_cli("train_lenet", "notebooks/train.ipynb", "--quiet", "--data-root", str(tmp_path / "empty"),
                "--reports", str(tmp_path / "r"), "--models", str(tmp_path / "m"), "--checkpoints", str(tmp_path / "c"))
    assert r.returncode != 0
    assert any(line.startswith("error: train_lenet: DataError: mnist not found") for line in r.stderr.splitlines())


def test_unknown_stage_and_profile(tmp_path):
    r = run_cli("train_resnet", "notebooks/train.ipynb", "--reports", str(tmp_path))
    assert r.returncode == 2 and "has no section 'train_resnet'" in r.stderr
    r = run_cli("train_lenet", "notebooks/train.ipynb", "--profile", "huge", "--reports", str(tmp_path))
    assert r.returncode == 2 and "unknown profile 'huge'" in r.stderr
