"""The pipeline as a user drives it: params validation, the stage list `make smoke` runs, `dvc repro` itself,
a killed stage that keeps its report, and data that never drifts silently."""
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from causal_interp import config, data, pipeline, training
from causal_interp.models import LeNet, save_model

from .conftest import REPO

STAGES = pipeline.dvc_stages(REPO)
BIN = Path(sys.prefix) / "bin"


def test_stage_listing_is_dvc_yaml_expanded_in_dependency_order():
    """What `make smoke` runs: every dvc.yaml stage, foreach items included, each after the stages it needs."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    names = [s.name for s in STAGES]
    expected = {n for n, v in spec.items() if "foreach" not in v}
    expected |= {f"{n}@{item}" for n, v in spec.items() if "foreach" in v for item in params[v["foreach"].strip("${}")]}
    assert set(names) == expected and len(names) == len(expected)
    produced = {}
    for i, s in enumerate(STAGES):
        for out in s.outs:
            produced[out] = i
    for i, s in enumerate(STAGES):
        for dep in s.deps:
            assert produced.get(dep, -1) < i, f"{s.name} runs before the stage producing {dep}"
    for s in STAGES:
        if s.notebook:
            assert s.cmd.split()[:4] == ["bin/kit-python", "-m", "causal_interp.pipeline", s.section]
            assert s.section in params
    assert names.index("train_arch@arch_resnet18") < names.index("arch_graphs")


def bad(tmp_path, edit):
    """params.yaml with one edit, written to tmp_path."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["discover_graphs"].update(classes=[0, 1], figure_class=3),
     r"discover_graphs.figure_class 3 is not one of discover_graphs.classes \[0, 1\]"),
    (lambda p: p["finetune_cifar10"].update(label_smoothing=2), r"finetune_cifar10.label_smoothing must be in \[0, 1\)"),
    (lambda p: p["finetune_cifar10"].update(weight_decay=-1), r"finetune_cifar10.weight_decay must be in \[0, 1\]"),
    (lambda p: p["finetune_cifar10"].update(crop_pad=-2), r"finetune_cifar10.crop_pad must be in \[0, 64\]"),
    (lambda p: p["finetune_cifar10"].update(image_size=8), r"finetune_cifar10.image_size must be in \[16, 1024\]"),
    (lambda p: p["train_lenet"].update(image_size=28), "image_size must be 32 for lenet"),
    (lambda p: p["discover_graphs"].update(max_batch=0), r"discover_graphs.max_batch must be in \[1, inf\)"),
    (lambda p: p["reliability"]["models"]["train_lenet"].update(runs=0), r"reliability.models.train_lenet.runs must be"),
    (lambda p: p["evaluate_explanations"]["baselines"].update(rise_masks=0), r"baselines.rise_masks must be in \[1,"),
    (lambda p: p.update(sede=p.pop("seed")), r"params.yaml: unknown section 'sede'; did you mean 'seed'\?"),
    (lambda p: p["profiles"]["smoke"].update(train_lenat={"epochs": 1}),
     r"profiles.smoke: unknown section 'train_lenat'; did you mean 'train_lenet'\?"),
    (lambda p: p.update(seed="zero"), "seed must be int, got 'zero'"),
    (lambda p: p.update(seed=-1), r"seed must be in \[0, inf\), got -1"),
    (lambda p: p["data"].update(discovery_fraction=1.5), r"data.discovery_fraction must be in \(0, 1\)"),
])
def test_every_bad_value_is_one_clear_line(tmp_path, edit, message):
    with pytest.raises(config.ConfigError, match=message):
        pipeline.validate_params(bad(tmp_path, edit), stages=STAGES)


def test_repository_params_are_valid_in_every_profile():
    for profile in ["default", *yaml.safe_load((REPO / "params.yaml").read_text())["profiles"]]:
        pipeline.validate_params(REPO / "params.yaml", profile, stages=STAGES)


def run_cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "causal_interp.pipeline", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env=env)


def test_a_bad_value_stops_the_stage_before_any_work_with_one_line(tmp_path):
    """No timing here (a loaded CI machine took 23 s to import torch): what shows the check came first is that no
    kernel started, so no executed notebook, progress file or report folder exists."""
    params = bad(tmp_path, lambda p: p["train_lenet"].update(model="lenet9"))
    r = run_cli("train_lenet", "notebooks/train.ipynb", "--params", str(params), "--root", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1] == "error: train_lenet: train_lenet.model: unknown model 'lenet9'; use 'lenet' or a timm name"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*")), "nothing ran"


def main(capsys, *argv):
    """`python -m causal_interp.pipeline ARGV` in this process: (exit code, the last line it printed to stderr)."""
    code = pipeline.main(list(argv))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines[-1] if lines else ""


def test_figure_class_out_of_range_for_the_trained_model_stops_before_discovery(tmp_path, capsys):
    params = bad(tmp_path, lambda p: p["discover_graphs"].update(figure_class=12, models=["train_lenet"]))
    save_model(LeNet(), tmp_path / "out" / "models" / "train_lenet.pt", "lenet", 10, 1,
               extra={"dataset": "mnist", "image_size": 32})
    code, last = main(capsys, "discover_graphs", "notebooks/discover_graphs.ipynb", "--params", str(params),
                      "--root", str(tmp_path / "out"))
    assert code == 2 and last == ("error: discover_graphs: discover_graphs.figure_class: class index [12] "
                                  "out of range [0, 10) for train_lenet")


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["discover_graphs"].update(figure_class=12),
     "discover_graphs.figure_class: class index [12] out of range [0, 10) for train_lenet"),
    (lambda p: p["arch_graphs"].update(classes=[2, 10], figure_class=2),
     "arch_graphs.classes: class index [10] out of range [0, 10) for arch_resnet18"),
    (lambda p: p["reliability"]["models"]["finetune_cifar10"].update(classes=[11]),
     "reliability.models.finetune_cifar10.classes: class index [11] out of range [0, 10) for finetune_cifar10"),
    (lambda p: p["per_example"].update(pairs=[[3, 8], [10, 3]]),
     "per_example.pairs: class index [10] out of range [0, 10) for train_lenet"),
    (lambda p: p["authors_protocol"].update(class_index=10),
     "authors_protocol.class_index: class index [10] out of range [0, 10) for train_lenet"),
    (lambda p: p["lenet_verdicts"].update(le_class=12),
     "lenet_verdicts.le_class: class index [12] out of range [0, 10) for lenet_verdicts.train"),
])
def test_check_refuses_a_class_beyond_the_datasets_classes_before_any_model_is_trained(tmp_path, capsys, edit, message):
    """The dataset's classes are known from params.yaml (the training section's `dataset`), so `--check` needs no
    trained model to refuse a class index beyond them; the default params pass."""
    assert main(capsys, "--check", "--root", str(tmp_path / "empty")) == (0, "")
    code, last = main(capsys, "--check", "--params", str(bad(tmp_path, edit)), "--root", str(tmp_path / "empty"))
    assert code == 2 and last == f"error: pipeline: {message}"
    assert not (tmp_path / "empty").exists(), "no model was needed"


def test_the_executed_notebook_records_the_runs_paths_relative_to_the_checkout(tmp_path):
    import nbformat

    root = tmp_path / "checkout"
    nb = nbformat.v4.new_notebook(metadata={"papermill": {
        "input_path": f"{root}/notebooks/x.ipynb", "output_path": f"{root}/reports/.staging/x/reports/x/x.ipynb",
        "parameters": {"params": {"data": {"root": f"{root}/data"}}, "models_dir": f"{root}/models",
                       "elsewhere": "/scratch/models", "here": str(root)}}})
    nb.cells = [nbformat.v4.new_code_cell(f'out_dir = "{root}/reports/x"\nparams = {{"data": {{"root": "{root}/data"}}}}\n'
                                          f'here = "{root}"', metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell(f'print("{root}/kept")', outputs=[
                    nbformat.v4.new_output("stream", name="stdout",
                                           text=f"resumed from {root}/.cache/checkpoints/x.pt after epoch 2\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": f"'{root}/reports/.staging/x/results/x'"},
                                           execution_count=1)])]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, str(path))
    pipeline.relative_paths(path, root)
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].source == 'out_dir = "reports/x"\nparams = {"data": {"root": "data"}}\nhere = "."'
    assert nb.cells[1].source == f'print("{root}/kept")', "of the sources, only the injected parameters are rewritten"
    assert nb.cells[1].outputs[0]["text"] == "resumed from .cache/checkpoints/x.pt after epoch 2\n"
    assert nb.cells[1].outputs[1]["data"]["text/plain"] == "'results/x'", "the staging folder is where it was published"
    meta = nb.metadata["papermill"]
    assert meta["input_path"] == "notebooks/x.ipynb" and meta["output_path"] == "reports/x/x.ipynb"
    assert meta["parameters"] == {"params": {"data": {"root": "data"}}, "models_dir": "models",
                                  "elsewhere": "/scratch/models", "here": "."}


def test_pretrained_without_network_is_one_line(tmp_path, monkeypatch, capsys):
    params = bad(tmp_path, lambda p: p["finetune_cifar10"].update(pretrained=True))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for cache in ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME"):      # an empty cache, whatever this machine has
        monkeypatch.setenv(cache, str(tmp_path / cache))
    code, last = main(capsys, "finetune_cifar10", "notebooks/train.ipynb", "--params", str(params),
                      "--root", str(tmp_path / "o"))
    assert code == 2 and (not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*")))
    assert last.startswith("error: finetune_cifar10: finetune_cifar10.pretrained: the ImageNet weights of 'resnet18' "
                           "are not in the local cache and HF_HUB_OFFLINE is set")


def test_bf16_is_flagged_only_on_a_cpu_that_emulates_it(tmp_path):
    def cpuinfo(flags):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
        return tmp_path / "cpuinfo"

    assert training.cpu_native_bf16(cpuinfo("")) is False
    assert training.cpu_native_bf16(cpuinfo("avx512f avx512_bf16")) is True
    assert training.cpu_native_bf16(cpuinfo("amx_tile amx_bf16")) is True
    assert training.cpu_native_bf16(tmp_path / "absent") is None
    assert training.use_bf16("auto", native=True) and not training.use_bf16("auto", native=False)
    assert training.use_bf16(True, native=False) and not training.use_bf16(False, native=True)   # true/false force it
    params = config.load_params(REPO / "params.yaml")
    assert pipeline.precision_warning(params, native_bf16=False) is None, "bf16: auto picks float32 there by itself"
    params["finetune_cifar10"]["bf16"] = True
    line = pipeline.precision_warning(params, native_bf16=False)
    assert line.startswith("warning: bf16: true in finetune_cifar10 on a CPU without native bf16")
    assert "set bf16: auto (or false)" in line and "\n" not in line
    assert pipeline.precision_warning(params, native_bf16=True) is None
    assert pipeline.precision_warning(params, native_bf16=None) is None
    smoke = config.load_params(REPO / "params.yaml", "smoke")
    assert pipeline.precision_warning(smoke, native_bf16=False) is None, "smoke-size training is too short to matter"


def test_a_training_stage_and_the_check_warn_once_about_emulated_bf16(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "_native_bf16", lambda: False)
    forced = bad(tmp_path, lambda p: p["finetune_cifar10"].update(bf16=True))
    assert pipeline.main(["--check", "--params", str(forced)]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: bf16")]
    assert len(warned) == 1 and "finetune_cifar10" in warned[0]
    params = bad(tmp_path, lambda p: p["finetune_cifar10"].update(pretrained=True, bf16=True))   # stops before training
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for cache in ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME"):
        monkeypatch.setenv(cache, str(tmp_path / cache))
    assert pipeline.main(["finetune_cifar10", "notebooks/compute/train.ipynb", "--params", str(params),
                          "--root", str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert [line.split(" on a CPU")[0] for line in err if line.startswith("warning:")] == \
        ["warning: bf16: true in finetune_cifar10"]
    assert err[-1].startswith("error: finetune_cifar10: finetune_cifar10.pretrained:")


def test_smoke_profile_cannot_write_into_the_committed_reports_or_models(tmp_path, capsys):
    code, last = main(capsys, "train_lenet", "notebooks/train.ipynb", "--profile", "smoke")
    assert code == 2 and "would overwrite the committed reports/, results/ or models/" in last
    code, last = main(capsys, "train_lenet", "notebooks/train.ipynb", "--profile", "smoke", "--reports", str(tmp_path))
    assert code == 2 and "would overwrite the committed reports/, results/ or models/" in last


def test_smoke_variables_count_only_under_run_all(monkeypatch, capsys):
    """A CAUSAL_PROFILE left exported in a shell must not turn `dvc repro` into a smoke run."""
    monkeypatch.setenv(pipeline.PROFILE_ENV, "smoke")
    assert pipeline.main(["--check"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "params.yaml (default profile): ok" and "warning: ignoring ['CAUSAL_PROFILE']" in err
    monkeypatch.setenv(pipeline.RUN_ALL_ENV, "1")
    assert pipeline.main(["--check"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "params.yaml (smoke profile): ok" and not err


def test_run_all_runs_every_stage_command_with_the_smoke_environment(monkeypatch, tmp_path):
    """`make smoke`: every dvc.yaml command, in order, from the repository, with the profile, root and data root."""
    calls = []
    monkeypatch.setattr(pipeline, "dvc_stages", lambda: STAGES)
    monkeypatch.setattr(pipeline.subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)) or
                        subprocess.CompletedProcess(cmd, 0))
    pipeline.run_all("smoke", tmp_path / "smoke", tmp_path / "data")
    assert [c for c, _ in calls] == [s.cmd for s in STAGES]
    for _, kw in calls:
        assert kw["cwd"] == pipeline.REPO and kw["shell"] is True
        env = kw["env"]
        assert env[pipeline.PROFILE_ENV] == "smoke" and env[pipeline.RUN_ALL_ENV] == "1"
        assert env[pipeline.ROOT_ENV] == str((tmp_path / "smoke").resolve())
        assert env[pipeline.DATA_ROOT_ENV] == str((tmp_path / "data").resolve())
    monkeypatch.setattr(pipeline.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(SystemExit, match=f"error: stage {STAGES[0].name} failed"):
        pipeline.run_all("smoke", tmp_path / "smoke")


def test_publish_is_whole_or_recovered(tmp_path):
    """A publish replaces every output; an output left only as `.<name>.old` (SIGKILL during a publish) is put back
    by the next run before anything else."""
    reports, models, staging = tmp_path / "reports", tmp_path / "models", tmp_path / "reports" / ".staging" / "s"
    for folder, text in ((reports / "s", "old"), (reports / "graphs", "old graphs")):
        folder.mkdir(parents=True)
        (folder / "f.txt").write_text(text)
    (staging / "reports" / "s").mkdir(parents=True)
    (staging / "reports" / "s" / "f.txt").write_text("new")
    (staging / "models").mkdir()
    (staging / "models" / "m.pt").write_text("model")
    pipeline.publish(staging, reports, models)
    assert (reports / "s" / "f.txt").read_text() == "new" and (models / "m.pt").read_text() == "model"
    assert (reports / "graphs" / "f.txt").read_text() == "old graphs" and not staging.exists()
    os.replace(reports / "graphs", reports / ".graphs.old")            # killed between the two renames
    staging.mkdir(parents=True)
    pipeline.recover(staging, reports, models)
    assert (reports / "graphs" / "f.txt").read_text() == "old graphs" and not staging.exists()


def test_bad_numbers_include_nan(tmp_path):
    with pytest.raises(config.ConfigError, match="data.discovery_fraction must be a finite number, got nan"):
        pipeline.validate_params(bad(tmp_path, lambda p: p["data"].update(discovery_fraction=float("nan"))),
                                 stages=STAGES)


def test_unknown_stage_and_profile(tmp_path, capsys):
    code, last = main(capsys, "train_resnet", "notebooks/train.ipynb", "--root", str(tmp_path))
    assert code == 2 and "has no section 'train_resnet'" in last
    code, last = main(capsys, "train_lenet", "notebooks/train.ipynb", "--profile", "huge", "--root", str(tmp_path))
    assert code == 2 and "unknown profile 'huge'" in last


def test_missing_data_stops_with_fetch_hint(tmp_path, capsys):
    code, last = main(capsys, "train_lenet", "notebooks/compute/train.ipynb", "--data-root", str(tmp_path / "empty"),
                      "--root", str(tmp_path / "out"), "--quiet")
    assert code == 1 and last.startswith("error: train_lenet: DataError: mnist not found")
    assert (tmp_path / "out" / "results" / "train_lenet" / "train_lenet.failed.ipynb").exists()
    assert not (tmp_path / "out" / "results" / "train_lenet" / "train_lenet.ipynb").exists()


def test_a_report_without_its_results_names_the_compute_stage_to_run(tmp_path, capsys):
    code, last = main(capsys, "train_lenet", "notebooks/train.ipynb", "--root", str(tmp_path / "out"), "--quiet")
    assert code == 2 and "run `dvc repro compute_train_lenet` first" in last
    assert not (tmp_path / "out" / "reports" / "train_lenet").exists(), "nothing ran"


# ---- data that never drifts silently

@pytest.fixture
def pinned_fake_root(fake_root, tmp_path, monkeypatch):
    """A copy of the fake data whose checksums stand in for the published ones."""
    root = tmp_path / "data"
    shutil.copytree(fake_root, root)
    digests = {}
    for name in ("mnist", "cifar10"):
        for rel, (algo, _) in data.published_checksums(name).items():
            if (root / rel).exists():
                digests[rel] = data.file_hash(root / rel, algo)
    monkeypatch.setattr(data, "MNIST_FILES", {k.split("/")[-1]: v for k, v in digests.items() if k.endswith(".gz")})
    monkeypatch.setattr(data, "MNIST_EXTRACTED", {k.split("/")[-1]: v for k, v in digests.items()
                                                  if k.startswith("MNIST") and not k.endswith(".gz")})
    monkeypatch.setattr(data, "CIFAR_NPZ", ("cifar10/cifar10.npz", "sha256", digests["cifar10/cifar10.npz"]))
    return root


@pytest.mark.parametrize("rel", ["MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte.gz",
                                 "cifar10/cifar10.npz"])
def test_a_corrupt_raw_or_extracted_file_stops_with_its_path_and_the_repair(pinned_fake_root, rel):
    root = pinned_fake_root
    name = "mnist" if rel.startswith("MNIST") else "cifar10"
    data.check_present(root, name)                                   # intact: passes
    path = root / rel
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match=rf"{path} is corrupt: .* Repair it with: python -m causal_interp.data "
                                             rf"fetch --root {root} --repair"):
        data.load_dataset(name, root)
    moved = data.set_aside_corrupt(root, name)
    assert moved == [f"set aside (corrupt): {path} -> {path.name}.corrupt"] and not path.exists()


def test_data_is_recorded_without_a_cache_copy_and_is_no_stage_dependency():
    """data.dvc records data/ without a DVC cache copy and is no stage's dependency, so `dvc repro` (which
    reproduces dvc.yaml and what it depends on) never rewrites it."""
    pin = yaml.safe_load((REPO / "data.dvc").read_text())
    assert pin["outs"][0]["cache"] is False and pin["outs"][0]["path"] == "data"
    assert not [(s.name, d) for s in STAGES for d in s.deps if d == "data" or d.startswith("data/")]
    assert all("src/causal_interp/data.py" in s.deps for s in STAGES if s.notebook), "the checksums are a dependency"


# ---- dvc repro itself, and a killed stage

def project_copy(tmp_path, fake_root):
    """The repository's tracked files in a fresh git repo, with the smoke profile as its params.yaml and the fake
    data as its data root; its .venv points at this interpreter's environment."""
    dst = tmp_path / "kit"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if f.startswith(("reports/", "results/", "dvc-store/")) or not (REPO / f).exists():
            continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dst / f)
    params = config.load_params(REPO / "params.yaml", "smoke")
    params["data"].update(root=str(fake_root), verify=False)
    (dst / "params.yaml").write_text(yaml.safe_dump(params))
    (dst / ".venv").symlink_to(sys.prefix)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return dst


def dvc(dst, *args, **kwargs):
    """`.venv/bin/dvc ...` typed in the copy without activating anything: PATH has no venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix))
    return subprocess.Popen([str(BIN / "dvc"), *args], cwd=dst, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs)


def snapshot(folder):
    return {p.relative_to(folder): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.notebooks
def test_dvc_repro_runs_a_stage_and_a_killed_rerun_keeps_its_report(tmp_path, fake_root):
    dst = project_copy(tmp_path, fake_root)
    first = dvc(dst, "repro", "train_lenet")
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    report, results = dst / "reports" / "train_lenet", dst / "results" / "train_lenet"
    assert (report / "train_lenet.ipynb").exists() and (dst / "models" / "train_lenet.pt").exists()
    assert (results / "train_lenet.ipynb").exists(), "the compute stage ran first"
    assert "== train_lenet: done" in out and "TCP without encryption" not in out and "TqdmWarning" not in out
    before, computed = snapshot(report), snapshot(results)
    model = hashlib.md5((dst / "models" / "train_lenet.pt").read_bytes()).hexdigest()

    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["train_lenet"]["epochs"] = 3                                 # a change: the stage must run again
    (dst / "params.yaml").write_text(yaml.safe_dump(params))
    second = dvc(dst, "repro", "train_lenet")
    staged = dst / "reports" / ".staging" / "compute_train_lenet" / "results" / "train_lenet"
    deadline = time.time() + 120                                        # halfway: its metrics are written, not published
    while not (staged / "metrics.json").exists() and time.time() < deadline and second.poll() is None:
        time.sleep(0.05)
    assert second.poll() is None, "the run ended before it could be killed"
    os.killpg(second.pid, signal.SIGKILL)                               # no chance to clean up
    second.wait(timeout=30)
    assert snapshot(report) == before and snapshot(results) == computed, "the killed run changed the last good run"
    assert hashlib.md5((dst / "models" / "train_lenet.pt").read_bytes()).hexdigest() == model

    third = dvc(dst, "repro", "train_lenet")
    out, _ = third.communicate(timeout=300)
    assert third.returncode == 0, out
    assert snapshot(report) != before and not list((dst / "reports" / ".staging").glob("*train_lenet"))
    assert '"epochs": 3' in (report / "metrics.json").read_text()
    status = subprocess.run([str(BIN / "dvc"), "status", "train_lenet"], cwd=dst, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    assert (dst / "data.dvc").read_text() == (REPO / "data.dvc").read_text(), "dvc repro never re-pins data.dvc"
    shutil.rmtree(dst)   # ~0.3 GB of checkpoints and DVC cache


def test_a_signal_to_the_runner_alone_interrupts_its_kernel():
    """`kill PID` of the runner (not of its process group) must stop the running cell too, not wait for its end.
    The child stands in for a kernel running a cell, which has Python's SIGINT handler installed even when it was
    started with SIGINT ignored (a shell's `&`), and says when it is ready."""
    child = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                              "try:\n    print('ready', flush=True)\n    time.sleep(60)\n"
                              "except KeyboardInterrupt:\n    raise SystemExit(7)"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    pipeline.KERNELS.add(child.pid)
    try:
        with pytest.raises(KeyboardInterrupt):
            pipeline._interrupt(signal.SIGTERM, None)
        assert child.wait(timeout=10) == 7            # it got SIGINT (KeyboardInterrupt), not a kill
    finally:
        pipeline.KERNELS.discard(child.pid)
        child.kill()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_progress_redraws_one_line_on_a_terminal_and_a_line_per_redraw_in_a_log(tmp_path, tty):
    stream = _Terminal() if tty else io.StringIO()
    log = tmp_path / "progress.log"
    with pipeline.relay(log, stream, poll=0.01) as is_tty:
        with open(log, "a", encoding="utf-8") as f:          # as tqdm writes: a carriage return before every redraw
            f.write("\rtrain:  10%\rtrain:  50%\rtrain: 100%\n\rgraphs:   0%")
    assert is_tty is tty
    assert stream.getvalue() == ("\rtrain:  10%\rtrain:  50%\rtrain: 100%\n\rgraphs:   0%" if tty else
                                 "train:  10%\ntrain:  50%\ntrain: 100%\ngraphs:   0%")
    assert not log.exists()


def test_progress_written_just_before_the_stage_ends_is_not_lost(tmp_path):
    """The relay reads once more after its block ends (without that, up to a third of such runs lost their last
    bars)."""
    for _ in range(100):
        stream = io.StringIO()
        with pipeline.relay(tmp_path / "progress.log", stream, poll=0.001):
            (tmp_path / "progress.log").write_text("\rdone: 100%\n")
        assert stream.getvalue() == "done: 100%\n"
