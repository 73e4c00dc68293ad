"""benchmarks/device.py on the CPU at tiny sizes: every timing is written, another device kind's entry is kept."""
import importlib.util
import json
import subprocess

import pytest

from .conftest import REPO

spec = importlib.util.spec_from_file_location("device_benchmark", REPO / "benchmarks" / "device.py")
device_benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(device_benchmark)


@pytest.mark.filterwarnings("ignore:The settings for perturbing input:UserWarning")   # IROF on near-flat fake images
def test_the_script_times_each_step_and_keeps_the_other_device(fake_root, tmp_path, monkeypatch):
    gpu = {"device": "cuda:0", "settings": {"model": "random init"}, "class_graph": {"seconds": 2.0},
           "training_epoch": {"epoch_seconds": 4.0}, "fig8": {"Saliency": {"seconds": 0.5}}, "smoke": None}
    (tmp_path / "device.json").write_text(json.dumps({"devices": {"cuda": gpu, "cpu": {"stale": True}}}))
    calls, run = [], subprocess.run

    def pipeline(cmd, **kwargs):          # the smoke profile itself takes minutes: its command is checked, not run
        if "causal_interp.pipeline" not in cmd:
            return run(cmd, **kwargs)
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(device_benchmark.subprocess, "run", pipeline)
    result = device_benchmark.main(["--device", "cpu", "--data-root", str(fake_root), "--random-model",
                                    "--examples", "2", "--batches", "1", "--batch-size", "16", "--fig8-examples", "2",
                                    "--threads", "1", "--smoke", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "device.json").read_text()) == json.loads(json.dumps(result, default=float))
    assert set(result["devices"]) == {"cpu", "cuda"} and result["devices"]["cuda"] == gpu    # kept as it was
    cpu = result["devices"]["cpu"]                                                          # replaced
    assert {"device", "device_name", "machine", "measured", "settings", "model", "data", "class_graph",
            "training_epoch", "fig8", "smoke", "total_seconds"} <= set(cpu)
    assert cpu["device"] == "cpu" and cpu["machine"]["cuda"] is None and cpu["model"].startswith("random init")
    assert cpu["settings"]["model"] == "random init" and cpu["settings"]["data"] == str(fake_root)

    graph = cpu["class_graph"]
    assert graph["seconds"] > 0 and graph["examples"] == 2 and graph["layers"] == len(graph["per_layer_seconds"]) > 10
    assert graph["layers_with_targets"] > 2        # the random ResNet's graph reaches below its top layers

    epoch = cpu["training_epoch"]
    assert epoch["model"] == "resnet18" and epoch["image_size"] == 64 and epoch["batch_size"] == 16
    assert epoch["precision"] in ("bf16", "float32") and epoch["seconds_per_batch"] > 0
    assert epoch["steps_per_epoch"] == 50_000 // 16 and epoch["epoch_seconds"] == \
        epoch["seconds_per_batch"] * epoch["steps_per_epoch"]

    assert set(cpu["fig8"]) == {"Saliency", "Causal"}
    for method, row in cpu["fig8"].items():
        assert "skipped" in row or (row["seconds"] > 0 and row["examples"] == 2 and "LE_median" in row
                                    and "IROF_median" in row), (method, row)
    assert "seconds" in cpu["fig8"]["Saliency"]

    (cmd,) = calls
    assert cmd[1:7] == ["-m", "causal_interp.pipeline", "--all", "--profile", "smoke", "--root"]
    assert cmd[cmd.index("--device") + 1] == "cpu" and cmd[cmd.index("--data-root") + 1] == str(fake_root)
    assert cpu["smoke"]["returncode"] == 0 and cpu["smoke"]["seconds"] >= 0

    comparison = result["comparison"]
    assert comparison["same_settings"] is False
    assert set(comparison["cpu_over_cuda"]) == {"class_graph", "training_epoch", "fig8_Saliency"}
    assert comparison["cpu_over_cuda"]["class_graph"] == graph["seconds"] / 2.0
