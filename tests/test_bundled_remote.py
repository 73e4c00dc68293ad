"""The bundled DVC remote, end to end on the smoke profile (issue 28): a model trained by `dvc repro`, pushed to the
remote inside the repository and committed, comes back in another clone with `dvc pull`, with no training left to run.
The README's "Sharing models" shows the same commands."""
import hashlib
import os
import shutil
import subprocess
import sys

import yaml

from causal_interp import config

from .conftest import REPO

GIT = {"GIT_AUTHOR_NAME": "kit", "GIT_AUTHOR_EMAIL": "kit@example.org", "GIT_COMMITTER_NAME": "kit",
       "GIT_COMMITTER_EMAIL": "kit@example.org"}


def run(cwd, *cmd):
    env = dict(os.environ, **GIT, DVC_NO_ANALYTICS="1", VIRTUAL_ENV=sys.prefix)   # bin/kit-python: this Python
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout + done.stderr


def dvc(cwd, *args):
    return run(cwd, sys.executable, "-m", "dvc", *args)


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def kit_copy(dest, fake_root):
    """The kit's pipeline files in a new git repository whose default profile is the smoke one on the fake data."""
    for folder in ("bin", "src", "notebooks"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                                                    ".ipynb_checkpoints"))
    (dest / ".dvc").mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"):
        shutil.copy(REPO / name, dest / name)
    params = config.load_params(REPO / "params.yaml", "smoke")
    params["data"].update(root=str(fake_root), verify=False)
    params["train_lenet"]["threads"] = 1
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(dest, "git", "init", "-q", "-b", "main")
    run(dest, "git", "add", "-A")
    run(dest, "git", "commit", "-q", "-m", "kit")


def test_a_trained_model_comes_back_from_the_bundled_remote_in_another_clone(tmp_path, fake_root):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    kit_copy(a, fake_root)
    assert "bundled" in dvc(a, "remote", "list")
    dvc(a, "repro", "compute_train_lenet")                            # trains the smoke LeNet
    dvc(a, "push", "compute_train_lenet")                             # into a/dvc-store, the bundled remote
    assert list((a / "dvc-store").rglob("*")), "the model is in the bundled remote"
    run(a, "git", "add", "dvc-store", "dvc.lock", "results")
    run(a, "git", "commit", "-q", "-m", "compute_train_lenet from dvc repro; its model in the bundled remote")
    run(tmp_path, "git", "clone", "-q", str(a), str(b))
    assert not (b / "models" / "train_lenet.pt").exists()
    dvc(b, "pull", "--allow-missing")
    assert md5(b / "models" / "train_lenet.pt") == md5(a / "models" / "train_lenet.pt")
    status = dvc(b, "status", "compute_train_lenet")
    assert "up to date" in status, status                              # no training left to run
    dry = dvc(b, "repro", "--dry", "compute_train_lenet")
    assert "didn't change, skipping" in dry and "Running stage" not in dry, dry
