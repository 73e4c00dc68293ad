"""What a stage notebook writes besides its figures: its report folders and its headline rows for `dvc metrics show`.

Kept apart from the runner (`pipeline`), so that the stages depend on this small module and not on how they are run.
"""
from __future__ import annotations

import json
from pathlib import Path

# Where a run writes, for stages that are scripts (the benchmark): set by `pipeline.run_all` (make smoke) only
PROFILE_ENV, ROOT_ENV, DATA_ROOT_ENV = "CAUSAL_PROFILE", "CAUSAL_ROOT", "CAUSAL_DATA_ROOT"
RUN_ALL_ENV = "CAUSAL_RUN_ALL"   # the three variables above count only under it

def output_dirs(out_dir: str | Path) -> tuple[Path, Path]:
    """The stage's report folder and its `figures/` subfolder, created (called in every notebook's setup cell)."""
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return out, out / "figures"


SUMMARY_KEYS = ("what", "ours", "paper", "verdict")


def write_summary(out_dir: str | Path, rows: dict[str, dict]) -> Path:
    """The stage's headline numbers for `dvc metrics show`: one small JSON per row under `<out_dir>/summary/`, all
    with the same keys (what was measured, our number, the paper's number if it gives one, the verdict), so DVC
    prints one short line per row instead of one column per key of the full `metrics.json`."""
    folder = Path(out_dir) / "summary"
    folder.mkdir(parents=True, exist_ok=True)
    for name, row in rows.items():
        unknown = set(row) - set(SUMMARY_KEYS)
        if unknown:
            raise ValueError(f"summary row {name!r}: unknown keys {sorted(unknown)}; use {SUMMARY_KEYS}")
        value = {k: row.get(k) for k in SUMMARY_KEYS}
        value["ours"] = None if value["ours"] is None else float(f"{float(value['ours']):.4g}")   # 4 significant digits
        (folder / f"{name}.json").write_text(json.dumps(value, indent=1) + "\n")
    return folder
