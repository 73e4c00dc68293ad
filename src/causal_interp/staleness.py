"""Which stages of dvc.yaml are stale: their recorded run (dvc.lock) differs from the code and params on main.

    python -m causal_interp.staleness          # make status: one line per stale stage, with an estimate of its cost

Main may run ahead of its results (code changes land before the re-run that regenerates them). A stage is stale when
its command, one of its source dependencies (`src/`, `notebooks/`, `benchmarks/`) or its params differ from what
`dvc.lock` recorded, when it has never run in its present form (no `dvc.lock` entry), or when a stage it reads from is
stale. A missing model that `dvc pull` restores is not staleness.
For each changed file the newest commit that still holds the recorded version is named: the stage's results
come from that code, and the file changed after it. The book's index and the README's results block list the same stages (`markdown`), so no number is presented as
coming from today's code when it does not.
"""
from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import config

SOURCES = ("src/", "notebooks/", "benchmarks/", "bin/")


@dataclass
class Stale:
    """One stale stage: why, since which commit, and what its last recorded run cost."""

    name: str
    section: str
    never_run: bool = False
    changed: dict = field(default_factory=dict)       # path, "params.<key>" or "cmd" -> the recorded version's commit
    upstream: list = field(default_factory=list)      # stale stages whose outputs it reads
    last_minutes: float | None = None                 # its last recorded run (papermill's duration), or for training
                                                      # on this CPU the projection of benchmarks/training_precision.py
    last_machine: str | None = None

    def cost(self) -> str:
        if self.last_minutes is None:
            return "no recorded run"
        return f"{'~' if 'projected' in (self.last_machine or '') else 'last run '}{self.last_minutes:.1f} min" + \
            (f" on {self.last_machine}" if self.last_machine else " (machine not recorded; a run that reused .cache/ "
                                                                 "is faster than one from scratch)")

    def reason(self) -> str:
        if self.never_run:
            return "never run in its present form (no dvc.lock entry)"
        parts = [f"{p} changed" + (f" after {' '.join(c.split()[:2])}" if c else "") for p, c in self.changed.items()]
        if self.upstream:
            parts.append("reads stale " + ", ".join(self.upstream))
        return "; ".join(parts)


def _md5(path: Path) -> str | None:
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False).stdout


@functools.lru_cache(maxsize=None)
def recorded_commit(root: Path, path: str, recorded_md5: str | None, limit: int = 200) -> str | None:
    """The newest commit ("short-hash date unix-time") whose `path` is the version dvc.lock recorded: the stage's results come
    from that code, and the file changed after it. None when no commit holds that version (or git cannot tell).
    Committing a further change does not move it, so the marks it writes are stable."""
    if recorded_md5 is None:
        return None
    for line in [c for c in _git(root, "log", f"-{limit}", "--format=%h %cs %ct", "--", path).split("\n") if c.strip()]:
        blob = subprocess.run(["git", "show", f"{line.split()[0]}:{path}"], cwd=root, capture_output=True,
                              check=False).stdout
        if hashlib.md5(blob).hexdigest() == recorded_md5:
            return line
    return None


def _lock(root: Path) -> dict:
    lock = root / "dvc.lock"
    return (config.read_yaml(lock).get("stages") or {}) if lock.is_file() else {}


def _last_run(root: Path, stage) -> tuple[float | None, str | None]:
    """Duration and machine of the stage's last executed notebook (the runner notes the machine in its metadata)."""
    if not stage.notebook:
        return None, None
    folder = "results" if stage.compute else "reports"
    nb = root / folder / stage.section / f"{stage.section}.ipynb"
    if not nb.is_file() and stage.compute:       # split from a stage that computed and drew in one notebook
        nb = root / "reports" / stage.section / f"{stage.section}.ipynb"
    if not nb.is_file():
        return None, None
    meta = json.loads(nb.read_text()).get("metadata", {})
    seconds = (meta.get("papermill") or {}).get("duration")
    machine = (meta.get("causal_interp") or {}).get("machine")
    return (None if seconds is None else seconds / 60), machine


def training_projection(root: Path, section: str) -> tuple[float | None, str | None]:
    """Minutes of training projected for `section` on this CPU by `benchmarks/training_precision.py`, when its committed
    run (reports/benchmarks/training_precision.json) was measured on a CPU of this model, in the precision that
    `bf16: auto` picks here."""
    from .pipeline import machine_name

    bench = root / "reports" / "benchmarks" / "training_precision.json"
    if not bench.is_file():
        return None, None
    data = json.loads(bench.read_text())
    here = machine_name()
    from .training import cpu_native_bf16

    if not here.startswith(data["machine"]["cpu"]) or data["machine"].get("native_bf16") != cpu_native_bf16():
        return None, None              # measured on another CPU (the same model name can hide another generation)
    row = next((r for r in data["sections"] if r["section"] == section), None)
    if row is None:
        return None, None
    params = config.load_params(root / "params.yaml").get(section, {})
    bf16 = params.get("bf16", "auto")
    bf16 = data["machine"].get("native_bf16") if bf16 == "auto" else bool(bf16)
    epoch = row["bf16_epoch_minutes"] if bf16 else row["float32_epoch_minutes"]
    return epoch * params.get("epochs", row["epochs"]), f"{here} (projected by benchmarks/training_precision.py)"


def recorded_training(root: Path, section: str) -> tuple[float | None, str | None]:
    """The training minutes and machine a training stage recorded last (its metrics.json under results/, or under
    reports/ where it ran before the compute and report stages were split): the cost of a training from scratch,
    where the notebook's duration may be that of a run that resumed from its checkpoints."""
    for folder in ("results", "reports"):
        path = root / folder / section / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            if m.get("train_minutes") is not None:
                machine = m.get("machine") or {}
                return m["train_minutes"], f"{machine.get('cpu', 'an unrecorded CPU')} (its recorded training)"
    return None, None


def stale_stages(root: str | Path | None = None) -> list[Stale]:
    """The stale stages of the pipeline at `root`, in dependency order (the `report` stage, which only gathers, aside)."""
    from . import pipeline

    root = Path(root or pipeline.REPO)
    stages = pipeline.dvc_stages(root)
    lock = _lock(root)
    params = config.read_yaml(root / "params.yaml")
    params.pop("profiles", None)
    producers = {o: s.name for s in stages for o in s.outs}
    out: dict[str, Stale] = {}
    for s in stages:
        entry = lock.get(s.name)
        item = Stale(s.name, s.section)
        if entry is None:
            item.never_run = True
        else:
            recorded = {d["path"]: d.get("md5") for d in entry.get("deps", [])}
            if " ".join(str(entry.get("cmd", "")).split()) != " ".join(s.cmd.split()):
                item.changed["cmd"] = None
            for dep in s.deps:
                if dep.startswith(SOURCES) and (dep not in recorded or _md5(root / dep) != recorded[dep]):
                    item.changed[dep] = recorded_commit(root, dep, recorded.get(dep))
            recorded_params = (entry.get("params") or {}).get("params.yaml", {})
            for key in recorded_params:
                if params.get(key) != recorded_params[key]:
                    item.changed[f"params.{key}"] = None
        upstream = sorted({producers[o] for d in s.deps for o in producers
                           if (d == o or d.startswith(o + "/") or o.startswith(d + "/")) and producers[o] in out})
        item.upstream = upstream
        if (item.never_run or item.changed or upstream) and s.name != "report":
            training = s.compute and s.notebook.endswith("train.ipynb")
            estimate = training_projection(root, s.section) if training else (None, None)
            if estimate[0] is None and training:
                estimate = recorded_training(root, s.section)
            item.last_minutes, item.last_machine = estimate if estimate[0] is not None else _last_run(root, s)
            out[s.name] = item
    return list(out.values())


def markdown(stale: list[Stale]) -> str:
    """The stale stages as a short Markdown block for the book's index and the README's results block."""
    if not stale:
        return ""
    lines = [f"**Stale stages: {len(stale)} of the pipeline's results come from older code or params** (main runs "
             "ahead of its results until the next full re-run; `make status` lists them with an estimate of each "
             "re-run). Their numbers below are the last recorded run's, not today's code's:", ""]
    for s in stale:
        if s.never_run:
            why = "not run yet in its present form"
        else:
            files = [Path(p).name if not p.startswith("params.") else p for p in s.changed]
            commits = sorted({c for c in s.changed.values() if c}, key=lambda c: (int(c.split()[2]), c), reverse=True)
            why = (f"changed: {', '.join(f'`{f}`' for f in files)}" + (f" (recorded with {commits[0].split()[0]}, "
                   f"{commits[0].split()[1]})" if commits else "")) if files else ""
            if s.upstream:
                why += ("; " if why else "") + f"reads {len(s.upstream)} stale stage(s)"
        lines.append(f"* `{s.name}`: {why}")
    return "\n".join(lines) + "\n"


def missing_models(root: str | Path | None = None) -> list[tuple[str, str, bool]]:
    """(stage, path, pushed) of every trained model (a `models/` output) absent from the working tree. `pushed`: the
    output goes to the DVC remote (`dvc pull` restores it from the bundled remote once pushed); False for the
    `push: false` outputs (the architecture study's), which `dvc repro` retrains."""
    from dvc.repo import Repo
    from . import pipeline

    root = Path(root or pipeline.REPO)
    with Repo(str(root)) as repo:
        return [(s.name, o.def_path, bool(o.can_push)) for s in repo.index.stages if s.cmd for o in s.outs
                if o.def_path.startswith("models/") and not (root / o.def_path).exists()]


def main(argv=None) -> int:
    stale = stale_stages()
    if not stale:
        print("every stage's recorded run matches the code and params on main")
    else:
        print(f"{len(stale)} stale stage(s): their committed results come from older code or params")
        for s in stale:
            cost = s.cost()
            print(f"  {s.name}: {s.reason()} [{cost}]")
        print("re-run with `dvc repro STAGE` (or `make repro` for all); `dvc status` gives DVC's own view")
    missing = missing_models()
    if missing:
        print(f"{len(missing)} trained model(s) missing here (see docs/sharing-models.md):")
        for stage, path, pushed in missing:
            how = "`dvc pull --allow-missing` restores it if it is in the remote" if pushed else \
                "not in the bundled remote (push: false): `dvc repro` retrains it and re-runs what reads it"
            print(f"  {path} ({stage}): {how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
