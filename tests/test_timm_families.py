"""The "any timm model" table: the committed script runs, and docs/architectures-and-imagenet.md (the README's
"Other architectures and ImageNet" until issue 32 moved it there) shows the table it wrote."""
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("timm_families", REPO / "benchmarks" / "timm_families.py")
timm_families = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timm_families)


def test_the_script_compares_a_vit_and_a_tf_port_with_the_brute_force(tmp_path):
    assert timm_families.main(["--out", str(tmp_path), "--models", "vit_tiny_patch16_224",
                               "tf_mobilenetv3_small_100"]) == 0
    rows = {r["model"]: r for r in json.loads((tmp_path / "timm_families.json").read_text())["rows"]}
    assert [r["status"] for r in rows.values()] == ["supported", "supported"]
    assert all(r["max_relative_difference"] < 1e-9 and r["largest_effect"] > 0 for r in rows.values())
    assert rows["tf_mobilenetv3_small_100"]["special"] == ["Conv2dSame"]
    assert rows["vit_tiny_patch16_224"]["special"] == ["attention"]


def test_the_architectures_page_shows_the_committed_table():
    rows = json.loads((REPO / "reports" / "benchmarks" / "timm_families.json").read_text())["rows"]
    page = (REPO / "docs" / "architectures-and-imagenet.md").read_text()
    block = page.split(timm_families.BEGIN)[1].split(timm_families.END)[0]
    assert block.strip() == timm_families.table(rows).strip()
    assert len(rows) == len(timm_families.MODELS)
    refused = {r["model"] for r in rows if r["status"] != "supported"}
    assert refused == {"densenet121"}, refused          # a concatenation ends the chain; every other model runs
    assert all(r["max_relative_difference"] < 1e-4 for r in rows if r["status"] == "supported")
