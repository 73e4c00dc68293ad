"""`make status` (causal_interp.staleness): which stages' recorded runs differ from the code, since which commit."""
import hashlib
import os
import subprocess
import sys

import yaml

from causal_interp import staleness

GIT = {"GIT_AUTHOR_NAME": "kit", "GIT_AUTHOR_EMAIL": "kit@example.org", "GIT_COMMITTER_NAME": "kit",
       "GIT_COMMITTER_EMAIL": "kit@example.org"}


def sh(root, *cmd):
    subprocess.run(cmd, cwd=root, env=dict(os.environ, **GIT), check=True, capture_output=True)


def commit(root, message):
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", message)
    return subprocess.run(["git", "log", "-1", "--format=%h"], cwd=root, capture_output=True, text=True).stdout.strip()


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_changed_module_marks_its_stage_and_what_reads_it(tmp_path):
    root = tmp_path
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, sys.executable, "-m", "dvc", "init", "-q")
    src = root / "src" / "causal_interp"
    src.mkdir(parents=True)
    (src / "a.py").write_text("x = 1\n")
    (src / "b.py").write_text("y = 1\n")
    (root / "params.yaml").write_text("seed: 0\ns1: {n: 1}\n")
    stages = {"s1": {"cmd": "echo s1", "deps": ["src/causal_interp/a.py"], "params": ["s1"], "outs": ["results/s1"]},
              "s2": {"cmd": "echo s2", "deps": ["results/s1", "src/causal_interp/b.py"], "outs": ["reports/s2"]},
              "s3": {"cmd": "echo s3", "deps": ["src/causal_interp/b.py"], "outs": ["reports/s3"]}}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    lock = {"schema": "2.0", "stages": {
        "s1": {"cmd": "echo s1", "deps": [{"path": "src/causal_interp/a.py", "hash": "md5", "md5": md5(src / "a.py")}],
               "params": {"params.yaml": {"s1": {"n": 1}}}},
        "s2": {"cmd": "echo s2", "deps": [{"path": "src/causal_interp/b.py", "hash": "md5", "md5": md5(src / "b.py")}]}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    recorded = commit(root, "the recorded run")
    assert [s.name for s in staleness.stale_stages(root)] == ["s3"], "only the stage that never ran"

    (src / "a.py").write_text("x = 2\n")
    commit(root, "a.py changes")
    stale = {s.name: s for s in staleness.stale_stages(root)}
    assert set(stale) == {"s1", "s2", "s3"}
    assert list(stale["s1"].changed) == ["src/causal_interp/a.py"]
    assert stale["s1"].changed["src/causal_interp/a.py"].split()[0] == recorded, "its results come from that commit"
    assert stale["s2"].upstream == ["s1"] and not stale["s2"].changed and stale["s3"].never_run
    text = staleness.markdown(list(stale.values()))
    assert f"* `s1`: changed: `a.py` (recorded with {recorded}," in text and "* `s3`: not run yet" in text
    assert "reads 1 stale stage(s)" in text

    (root / "params.yaml").write_text("seed: 0\ns1: {n: 2}\n")
    assert "params.s1" in {s.name: s for s in staleness.stale_stages(root)}["s1"].changed


def test_missing_models_are_the_model_outputs_absent_from_the_working_tree(tmp_path):
    root = tmp_path
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, sys.executable, "-m", "dvc", "init", "-q")
    stages = {"train_a": {"cmd": "echo a", "outs": ["models/a.pt"]},
              "train_b": {"cmd": "echo b", "outs": [{"models/b.pt": {"push": False}}]},
              "other": {"cmd": "echo c", "deps": ["models/a.pt"], "outs": ["results/c"]}}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (root / "models").mkdir()
    (root / "models" / "a.pt").write_bytes(b"weights")
    assert staleness.missing_models(root) == [("train_b", "models/b.pt", False)], "results/c is no model; a.pt is here"
    (root / "models" / "a.pt").unlink()
    assert staleness.missing_models(root) == [("train_a", "models/a.pt", True), ("train_b", "models/b.pt", False)]
