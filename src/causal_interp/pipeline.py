"""Run a pipeline stage: execute its notebook with papermill, parameters taken from params.yaml.

    python -m causal_interp.pipeline STAGE NOTEBOOK [--profile smoke] [--reports DIR] [--models DIR] [--data-root DIR]

`dvc.yaml` calls this for every stage with the default profile. The notebook receives, as injected
papermill parameters, `stage`, `params` (the stage's section plus the shared `seed` and `data`
sections), `out_dir` (`<reports>/<stage>`), `models_dir` and `checkpoint_dir`; it validates them in
its first cell, before any long computation. The executed copy is written under a temporary name and
renamed to `<reports>/<stage>/<stage>.ipynb` only on success, so a failed run never replaces a good
report (the failed copy is kept as `<stage>.failed.ipynb`). Errors print as one line.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import config

REPO = Path(__file__).resolve().parents[2]
SHARED_SECTIONS = ("seed", "data")


def output_dirs(out_dir: str | Path) -> tuple[Path, Path]:
    """The stage's report folder and its `figures/` subfolder, created (called in every notebook's setup cell)."""
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    return out, out / "figures"


def stage_parameters(stage: str, params: dict, reports: Path, models: Path, checkpoints: Path) -> dict:
    if stage not in params:
        raise config.ConfigError(f"params.yaml has no section {stage!r} (stages: "
                                 f"{sorted(k for k in params if k not in SHARED_SECTIONS)})")
    data = dict(params.get("data", {}))
    root = Path(data.get("root", "data"))
    data["root"] = str(root if root.is_absolute() else REPO / root)
    imagenet = dict(data.get("imagenet") or {})
    if imagenet.get("root") and not Path(imagenet["root"]).is_absolute():
        imagenet["root"] = str(REPO / imagenet["root"])
        data["imagenet"] = imagenet
    return {
        "stage": stage,
        "params": {"seed": params.get("seed", 0), "data": data, stage: params[stage]},
        "out_dir": str(reports / stage),
        "models_dir": str(models),
        "checkpoint_dir": str(checkpoints),
    }


def run_stage(stage: str, notebook: str | Path, profile: str = "default",
              params_file: str | Path = REPO / "params.yaml", reports: str | Path = REPO / "reports",
              models: str | Path = REPO / "models", overrides: dict | None = None,
              log_output: bool = True, checkpoints: str | Path = REPO / ".cache" / "checkpoints") -> Path:
    """Execute `notebook` for `stage`; returns the path of the executed notebook.

    `checkpoints` holds the resumable state of long stages (not a DVC output, so it survives a failed run).
    """
    import papermill

    notebook = Path(notebook)
    if not notebook.is_absolute():
        notebook = REPO / notebook
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook not found: {notebook}")
    params = config.deep_merge(config.load_params(params_file, profile), overrides or {})
    reports, models = Path(reports).resolve(), Path(models).resolve()
    parameters = stage_parameters(stage, params, reports, models, Path(checkpoints).resolve())
    out_dir = reports / stage
    out_dir.mkdir(parents=True, exist_ok=True)
    running, final = out_dir / f"{stage}.running.ipynb", out_dir / f"{stage}.ipynb"
    try:
        papermill.execute_notebook(str(notebook), str(running), parameters=parameters, cwd=str(REPO),
                                   kernel_name="python3", log_output=log_output, progress_bar=False)
    except BaseException:
        if running.exists():
            os.replace(running, out_dir / f"{stage}.failed.ipynb")
        raise
    os.replace(running, final)
    failed = out_dir / f"{stage}.failed.ipynb"
    if failed.exists():
        failed.unlink()
    return final


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causal_interp.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage")
    parser.add_argument("notebook")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--reports", default=str(REPO / "reports"))
    parser.add_argument("--models", default=str(REPO / "models"))
    parser.add_argument("--data-root", default=None, help="override params data.root")
    parser.add_argument("--checkpoints", default=str(REPO / ".cache" / "checkpoints"),
                        help="where long stages keep resumable state")
    parser.add_argument("--quiet", action="store_true", help="do not stream the notebook's output")
    args = parser.parse_args(argv)
    overrides = {"data": {"root": str(Path(args.data_root).resolve())}} if args.data_root else None
    try:
        import papermill

        run_stage(args.stage, args.notebook, args.profile, args.params, args.reports, args.models, overrides,
                  log_output=not args.quiet, checkpoints=args.checkpoints)
    except config.ConfigError as e:
        print(f"error: {args.stage}: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {args.stage}: {e}", file=sys.stderr)
        return 2
    except papermill.PapermillExecutionError as e:
        print(f"error: {args.stage}: {e.ename}: {e.evalue}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
