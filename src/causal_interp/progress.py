"""Live progress of long loops, on the terminal that runs the stage, kept out of the executed notebooks.

`python -m causal_interp.pipeline` (what `dvc repro` and `make` call) sets `CAUSAL_PROGRESS` to a file that it
relays to its own stderr while the notebook runs (`pipeline.relay`). Inside the notebook kernel, `progress(...)` draws a
tqdm bar into that file: the stage, the unit (epoch, class, layer, run, method), done/total, rate and ETA. Without
the variable (a notebook opened in JupyterLab, the unit tests) the bars are disabled and nothing is printed.

Like the runner, this module is no stage's DVC dependency: a bar draws on the terminal and never changes what a stage
writes, so a progress-bar fix re-runs nothing (tests/test_notebook_sources.py exempts both).
"""
from __future__ import annotations

import os

ENV = "CAUSAL_PROGRESS"          # file the bars are written to
STAGE_ENV = "CAUSAL_STAGE"       # stage name shown in front of every bar
INTERVAL_ENV = "CAUSAL_PROGRESS_INTERVAL"   # seconds between redraws (long when the terminal is a log file)

_stream = None


def _target():
    global _stream
    path = os.environ.get(ENV)
    if not path:
        return None
    if _stream is None or _stream.name != path:
        _stream = open(path, "a", buffering=1, encoding="utf-8")
    return _stream


def progress(iterable=None, total: int | None = None, desc: str = "", unit: str = "it", leave: bool = True,
             initial: int = 0):
    """A tqdm bar over `iterable` (or a manual one, `update(n)`), shown only on the stage's terminal."""
    from tqdm import tqdm

    stream = _target()
    stage = os.environ.get(STAGE_ENV, "")
    return tqdm(iterable, total=total, desc=f"{stage}: {desc}" if stage else desc, unit=f" {unit}", file=stream,
                disable=stream is None, leave=leave, initial=initial, dynamic_ncols=False, ncols=100, ascii=True,
                mininterval=float(os.environ.get(INTERVAL_ENV, 1.0)), smoothing=0.1)
