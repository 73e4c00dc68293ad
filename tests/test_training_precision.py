"""benchmarks/training_precision.py: both precisions timed per training section, epochs projected to the full set."""
import importlib.util
import json

from .conftest import REPO

spec = importlib.util.spec_from_file_location("training_precision", REPO / "benchmarks" / "training_precision.py")
training_precision = importlib.util.module_from_spec(spec)
spec.loader.exec_module(training_precision)


def test_the_script_times_both_precisions_and_projects_the_stage(fake_root, tmp_path):
    assert training_precision.main(["--sections", "train_lenet", "--batches", "1", "--data-root", str(fake_root),
                                    "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "training_precision.json").read_text())
    assert result["machine"]["native_bf16"] in (True, False, None)
    (row,) = result["sections"]
    assert row["section"] == "train_lenet" and row["model"] == "lenet" and row["bf16_set"] == "auto"
    for precision in ("float32", "bf16"):
        assert row[f"{precision}_seconds_per_batch"] > 0
        assert abs(row[f"{precision}_epoch_minutes"] - row[f"{precision}_seconds_per_batch"] * 469 / 60) < 1e-9
    assert row["bf16_over_float32"] == row["bf16_seconds_per_batch"] / row["float32_seconds_per_batch"]
    used = "bf16" if row["bf16_used"] else "float32"                   # bf16: auto, as this CPU resolves it
    assert row["bf16_used"] == (result["machine"]["native_bf16"] is True)
    assert row["stage_training_minutes"] == row[f"{used}_epoch_minutes"] * row["epochs"]
