"""Run the pipeline's stages: each executes its notebook with papermill, parameters taken from params.yaml.

    python -m causal_interp.pipeline STAGE NOTEBOOK [--profile smoke] [--root DIR] [--data-root DIR] [--quiet]
    python -m causal_interp.pipeline --all [--profile smoke] [--root DIR]     # every dvc.yaml stage, in order
    python -m causal_interp.pipeline --check [--profile smoke]                # validate params.yaml and stop
    python -m causal_interp.pipeline --train-archs [--workers N]              # the architectures' training, over Ray

`dvc.yaml` calls the first form for every notebook stage, with the default profile, through `bin/kit-python`
(the kit's interpreter). Before the notebook starts, the whole params.yaml is validated (every section, every
key and value, the profile's sections), so a bad value stops with one `error:` line within seconds.

The notebook receives, as injected papermill parameters, `stage`, `params` (the stage's section plus the
shared `seed` and `data` sections), `out_dir`, `reports_dir`, `results_dir`, `models_dir`, `models_out` and
`checkpoint_dir`. Compute stages run a notebook of `notebooks/compute/`: it writes models and data (`results/<stage>/`,
`results/graphs/`, ...) and draws nothing; report stages run a notebook of `notebooks/`, read the compute stages'
`results_dir`/`models_dir` and write what a reader reads (`reports/<stage>/`: the executed notebook, figures, verdicts,
summary rows). So a figure or a verdict changes by re-running report stages only (minutes), never a training or a
discovery. Every stage writes into a staging folder (`out_dir` = `<reports>/.staging/<name>/{reports,results}/<stage>`,
models into `models_out`). Only when the notebook
has run to the end are the staged folders moved over the previous ones (`reports/<stage>/`, `reports/graphs/`,
`models/<stage>.pt`, ...), so a failed, interrupted or killed stage leaves the last good report in place; the
notebook of a failed run is kept as `reports/<stage>/<stage>.failed.ipynb`. DVC is told not to delete the
outputs before a run (`persist: true` in dvc.yaml). Resumable state (checkpoints, graphs, scores) lives in
`.cache/`, so re-running loses nothing already computed.

Progress of long loops is relayed to the terminal (see `progress`); the executed notebook gets none of it.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from . import config
from .reporting import DATA_ROOT_ENV, PROFILE_ENV, ROOT_ENV, RUN_ALL_ENV



def project_root(start: Path | None = None) -> Path:
    """The kit checkout a command runs in: the nearest folder at or above the working directory holding dvc.yaml
    and params.yaml (as git and dvc find theirs), else the checkout this package was installed from."""
    for folder in [(start or Path.cwd()).resolve(), *(start or Path.cwd()).resolve().parents]:
        if (folder / "dvc.yaml").is_file() and (folder / "params.yaml").is_file():
            return folder
    return Path(__file__).resolve().parents[2]


REPO = project_root()
SHARED_SECTIONS = ("seed", "data")
# params.yaml sections that are not a stage's. `device` is no stage's DVC parameter: where a stage computes does not
# decide what it means (each stage records the device it used), so moving to a GPU re-runs nothing by itself
TOP_LEVEL = ("seed", "data", "device", "architectures", "profiles")


def notebook_configs() -> dict:
    """The params dataclass each notebook validates its stage's section with."""
    from .agreement import AgreementConfig
    from .discovery import DiscoveryConfig
    from .evaluation import EvaluationConfig
    from .latent import LatentConfig
    from .masking import MaskingConfig
    from .per_example import PerExampleConfig
    from .protocols import ProtocolConfig
    from .reliability import ReliabilityConfig
    from .sanity import SanityConfig
    from .stability import StabilityConfig

    return {"train": config.TrainConfig, "discover_graphs": DiscoveryConfig, "reliability": ReliabilityConfig,
            "fidelity": MaskingConfig, "repair": MaskingConfig, "evaluate_explanations": EvaluationConfig,
            "authors_protocol": ProtocolConfig, "lenet_verdicts": StabilityConfig, "sanity_checks": SanityConfig,
            "metric_agreement": AgreementConfig, "per_example": PerExampleConfig,
            "latent_intervention": LatentConfig}


@dataclass
class Stage:
    """One stage of dvc.yaml (a `foreach` stage expanded: `train_arch@arch_resnet18`)."""

    name: str
    cmd: str
    deps: list
    outs: list
    notebook: str | None      # the notebook it executes (a `notebooks/*.ipynb` dependency), if any

    @property
    def section(self) -> str:
        """Its params.yaml section: the STAGE its command runs (`pipeline STAGE NOTEBOOK`), else the stage name or
        the foreach item. A compute stage (`compute_discover_graphs`) and the report stage that draws its results
        (`discover_graphs`) share one section."""
        words = self.cmd.split()
        if "causal_interp.pipeline" in words and len(words) > words.index("causal_interp.pipeline") + 1:
            return words[words.index("causal_interp.pipeline") + 1]
        return self.name.split("@", 1)[-1]

    @property
    def compute(self) -> bool:
        """Whether it is a compute stage: it runs a notebook of `notebooks/compute/`, which writes models and data
        (`results/`) and draws nothing."""
        return is_compute(self.notebook) if self.notebook else False


def is_compute(notebook: str | Path) -> bool:
    """A notebook of `notebooks/compute/`: it writes into `results/`, not `reports/`."""
    return Path(notebook).parent.name == "compute"


def dvc_stages(root: str | Path = REPO) -> list[Stage]:
    """dvc.yaml's stages as DVC itself reads them (foreach expanded), dependencies first, ties in file order."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = [s for s in repo.index.stages if s.cmd]
        order = {s: i for i, s in enumerate(stages)}
        graph = repo.index.graph.subgraph(stages)
        ordered = list(nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda s: order[s]))
        out = []
        for s in ordered:
            deps = [d.def_path for d in s.deps]
            nbs = [d for d in deps if d.startswith("notebooks/") and d.endswith(".ipynb")]
            out.append(Stage(s.name, s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd), deps,
                             [o.def_path for o in s.outs], nbs[0] if nbs else None))
    return out


def validate_params(params_file: str | Path = REPO / "params.yaml", profile: str = "default",
                    stages: list[Stage] | None = None) -> dict:
    """Load params.yaml with `profile` merged and check all of it: unknown top-level keys and profile sections,
    and every stage's section against its notebook's dataclass (every key, type and range). Returns the params."""
    raw = config.read_yaml(params_file)
    stages = dvc_stages() if stages is None else stages
    sections = {s.section for s in stages}
    known = set(TOP_LEVEL) | sections

    def check_keys(keys, where):
        for key in keys:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                raise config.ConfigError(f"{where}unknown section {key!r}" + (f"; did you mean {close[0]!r}?" if close
                                         else f"; known: {sorted(known)}"))

    check_keys(raw, "params.yaml: ")
    for name, overrides in (raw.get("profiles") or {}).items():
        if not isinstance(overrides, dict):
            raise config.ConfigError(f"profiles.{name} must be a mapping of sections")
        check_keys(overrides, f"profiles.{name}: ")
    params = config.load_params(params_file, profile)
    config.check_range(config._coerce(params.get("seed", 0), "int", "seed"), (0, None, False, False), "seed")
    config.data_config(params)
    config.check_device(params.get("device", "auto"))
    classes = notebook_configs()
    for s in stages:
        nb = Path(s.notebook).stem if s.notebook else None
        if nb in classes and s.section in params:
            config.stage_config(params, s.section, classes[nb])
        elif nb in classes:
            raise config.ConfigError(f"params.yaml has no section {s.section!r} (stage {s.name} runs {s.notebook})")
    check_class_indices(params)
    return params


def dataset_classes(train: dict) -> int | None:
    """The number of classes of the dataset a training section (`train_lenet`, `arch_*`, ...) names, from
    `data.DATASETS`; None where it is not known before training (an ImageNet folder, no dataset named)."""
    from .data import DATASETS

    dataset = train.get("dataset") if isinstance(train, dict) else None
    names = DATASETS.get(dataset, {}).get("classes") if isinstance(dataset, str) else None
    return len(names) if names else None


def class_indices(values: dict) -> dict[str, list]:
    """The class indices a stage's section names, by key: `classes`, `figure_class`, `class_index`, `le_class`, the
    classes of `pairs` and of a `models` mapping's entries (`reliability.models.<m>.classes`)."""
    found = {}
    for key in ("classes", "figure_class", "class_index", "le_class", "pairs"):
        v = values.get(key)
        flat = [c for item in (v if isinstance(v, list) else [v]) for c in (item if isinstance(item, list) else [item])]
        found[key] = [c for c in flat if isinstance(c, int) and not isinstance(c, bool)]
    if isinstance(values.get("models"), dict):
        for m, sweep in values["models"].items():
            if isinstance(sweep, dict) and isinstance(sweep.get("classes"), list):
                found[f"models.{m}.classes"] = [c for c in sweep["classes"] if isinstance(c, int)]
    return {k: v for k, v in found.items() if v}


def check_class_indices(params: dict) -> None:
    """Every class index of a stage's section against the number of classes of the dataset its models are trained on
    (read from their training sections: `discover_graphs.figure_class: 12` stops here for MNIST and CIFAR-10, before
    any model is trained; `check_against_models` checks against the trained models themselves)."""
    from .discovery import check_classes

    for section, values in params.items():
        if section in TOP_LEVEL or not isinstance(values, dict):
            continue
        models = values.get("models")
        names = list(models) if isinstance(models, (list, dict)) else []
        if isinstance(values.get("model"), str) and isinstance(params.get(values["model"]), dict):
            names.append(values["model"])              # per_example, authors_protocol: a training stage's model
        counts = {m: dataset_classes(params.get(m)) for m in names if isinstance(m, str)}
        if isinstance(values.get("train"), dict):     # lenet_verdicts trains its own models
            counts[f"{section}.train"] = dataset_classes(values["train"])
        indices = class_indices(values)
        for m, k in counts.items():
            for key, wanted in indices.items():
                if k is None or (key.startswith("models.") and key.split(".")[1] != m):
                    continue
                try:
                    check_classes(wanted, k)
                except IndexError as e:
                    raise config.ConfigError(f"{section}.{key}: {e} for {m}") from None


def check_against_models(section: str, values: dict, models: Path) -> None:
    """Class indices of a stage's section (`classes`, `figure_class`) against the
    number of classes of the trained models it names, read from the model files that exist already."""
    from .discovery import check_classes
    from .models import model_info

    names = values.get("models") or []
    names = list(names) if isinstance(names, (list, dict)) else []
    for m in names:
        path = Path(models) / f"{m}.pt"
        if not path.is_file():
            continue                      # not trained yet: the notebook checks once it is
        k = model_info(path)["num_classes"]
        wanted = {"classes": values.get("classes") or [], "figure_class": [values.get("figure_class", 0)]}
        for key, indices in wanted.items():
            try:
                check_classes([c for c in indices if isinstance(c, int)], k)
            except IndexError as e:
                raise config.ConfigError(f"{section}.{key}: {e} for {m}") from None


def _native_bf16() -> bool | None:
    from .training import cpu_native_bf16

    return cpu_native_bf16()


def precision_warning(sections: dict, native_bf16: bool | None) -> str | None:
    """One warning line naming the full-size training sections (of `sections`: name -> values) that force `bf16: true`, on a
    CPU without native bf16; None when there are none. Smoke-size runs (`train_subset` set) are too short to matter."""
    if native_bf16 is not False:
        return None
    slow = [name for name, values in sections.items()     # `bf16: auto` (the default) picks float32 here by itself
            if isinstance(values, dict) and values.get("bf16") is True and not values.get("train_subset")]
    if not slow:
        return None
    return (f"warning: bf16: true in {', '.join(slow)} on a CPU without native bf16 (no "
            f"amx_bf16 or avx512_bf16 in /proc/cpuinfo): torch emulates bf16 here and training runs several "
            f"times slower than in float32 (reports/benchmarks/training_precision.json); set bf16: auto (or false) there for "
            f"speed (the trained models then differ from the committed run's, as they do on any other CPU)")


def stage_parameters(stage: str, params: dict, reports: Path, models: Path, checkpoints: Path,
                     staging: Path, results: Path | None = None, compute: bool = False) -> dict:
    """The papermill parameters of `stage` (see the module docstring); paths are absolute. A compute notebook's
    `out_dir` is under the staged `results/`, a report notebook's under the staged `reports/`."""
    if stage not in params:
        raise config.ConfigError(f"params.yaml has no section {stage!r} (sections: "
                                 f"{sorted(k for k in params if k not in TOP_LEVEL)})")
    data = dict(params.get("data", {}))
    root = Path(data.get("root", "data"))
    data["root"] = str(root if root.is_absolute() else REPO / root)
    imagenet = dict(data.get("imagenet") or {})
    if imagenet.get("root") and not Path(imagenet["root"]).is_absolute():
        imagenet["root"] = str(REPO / imagenet["root"])
        data["imagenet"] = imagenet
    return {
        "stage": stage,
        "params": {"seed": params.get("seed", 0), "data": data, "device": params.get("device", "auto"),
                   stage: params[stage]},
        "out_dir": str(staging / ("results" if compute else "reports") / stage),
        "reports_dir": str(reports),
        "results_dir": str(results if results is not None else reports.parent / "results"),
        "models_dir": str(models),
        "models_out": str(staging / "models"),
        "checkpoint_dir": str(checkpoints),
    }


def _replace(src: Path, dst: Path) -> None:
    """Put `src` (file or folder) in place of `dst`, the old one removed only once the new one is there."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = dst.with_name(f".{dst.name}.old")
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def publish(staging: Path, reports: Path, models: Path, results: Path | None = None) -> list[Path]:
    """Move a finished stage's staged outputs over the previous ones: each folder under staging/reports (staging/results)
    replaces the same folder of `reports` (`results`) whole (as DVC would: nothing stale survives), each staged model
    its file. Ctrl-C and `kill` wait until it is done (a publish takes milliseconds), so it is never left half way."""
    results = results if results is not None else reports.parent / "results"
    moves = [(src, root / src.name) for sub, root in (("reports", reports), ("results", results), ("models", models))
             if (staging / sub).is_dir() for src in sorted((staging / sub).iterdir())]
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        for src, dst in moves:
            _replace(src, dst)
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return [dst for _, dst in moves]


def recover(staging: Path, reports: Path, models: Path, results: Path | None = None) -> None:
    """After a run killed with SIGKILL (which nothing can block): an output left only as `.<name>.old` by an
    unfinished publish is put back, and the unpublished staging folder is dropped."""
    results = results if results is not None else reports.parent / "results"
    for folder in (reports, results, models):
        for old in folder.glob(".*.old") if folder.is_dir() else []:
            dst = old.with_name(old.name[1:-4])
            if not dst.exists():
                os.replace(old, dst)
    shutil.rmtree(staging, ignore_errors=True)


def _kernel_manager(socket_dir: Path, log: Path):
    """Jupyter kernels over IPC sockets in `socket_dir` instead of TCP ports: nothing listens on the network and
    ipykernel has no reason to warn. (Left to itself, IPC would put its sockets in the working directory.) The
    kernel process's own stderr (its log, not the cells' output, which goes into the notebook) is written to `log`:
    shown when the kernel dies, not on the terminal at every interrupt."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(socket_dir / "kernel")

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            self._stderr = open(log, "ab")
            kw["stderr"] = self._stderr
            await super()._async_launch_kernel(kernel_cmd, **kw)
            process = getattr(self.provisioner, "process", None)
            if process is not None:
                KERNELS.add(process.pid)

    return IPCKernelManager


KERNELS: set[int] = set()   # pids of the kernels this runner started: a signal to the runner interrupts them too


@contextlib.contextmanager
def relay(path: str | Path, stream=None, poll: float = 0.3):
    """Copy what the kernel's progress bars (`progress.progress`) append to `path` onto `stream` (default: stderr)
    until the block ends; yields whether `stream` is a terminal. On a terminal tqdm's carriage returns redraw one line
    (the file is read with `newline=""`: Python's universal newlines would turn each one into a new line); elsewhere
    (a CI log) each redraw becomes a line."""
    stream = stream or sys.stderr
    path = Path(path)
    path.write_text("")
    tty = stream.isatty() if hasattr(stream, "isatty") else False
    stop = threading.Event()

    def pump():
        last = "\n"
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            while True:
                done = stop.is_set()     # read once more after the block ends: nothing written before it is lost
                chunk = f.read()
                if chunk and not tty:    # one line per redraw, no blank lines
                    chunk = re.sub(r"\n+", "\n", (last + chunk).replace("\r", "\n"))[1:]
                if chunk:
                    stream.write(chunk)
                    stream.flush()
                    last = chunk[-1]
                elif done:
                    return
                else:
                    time.sleep(poll)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield tty
    finally:
        stop.set()
        thread.join(timeout=5)
        with contextlib.suppress(OSError):
            path.unlink()


def notebook_cells(path: str | Path) -> list[tuple[str, str, tuple]]:
    """(cell type, source, tags) of every cell of a notebook or of its jupytext percent-format source."""
    import jupytext

    nb = jupytext.read(str(path))
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def check_paired(notebook: Path) -> None:
    """The executed notebook must say what its jupytext source (`notebooks/<name>.py`, the file to edit) says; a stage
    refuses to run a notebook that has drifted from its source."""
    source = notebook.with_suffix(".py")
    if source.is_file() and notebook_cells(source) != notebook_cells(notebook):
        raise config.ConfigError(f"{notebook.name} differs from its source {source.name}; after editing either one run "
                                 f"`jupytext --sync {source}` (or `make notebooks`)")


def run_stage(stage: str, notebook: str | Path, profile: str = "default",
              params_file: str | Path = REPO / "params.yaml", reports: str | Path = REPO / "reports",
              models: str | Path = REPO / "models", overrides: dict | None = None, show_progress: bool = False,
              checkpoints: str | Path = REPO / ".cache" / "checkpoints", stages: list[Stage] | None = None,
              results: str | Path | None = None) -> Path:
    """Validate params, execute `notebook` for `stage` into a staging folder and publish its outputs on success;
    returns the executed notebook. `checkpoints` holds the resumable state of long stages. A compute notebook
    (`notebooks/compute/`) writes into `results` (default: `results/` beside `reports`), a report notebook into
    `reports`."""
    import papermill

    notebook = Path(notebook)
    if not notebook.is_absolute():
        notebook = REPO / notebook
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook not found: {notebook}")
    check_paired(notebook)
    reports, models = Path(reports).resolve(), Path(models).resolve()
    results = Path(results).resolve() if results is not None else reports.parent / "results"
    committed = [(REPO / f).resolve() for f in ("reports", "models", "results")]
    if profile != "default" and any(p in committed for p in (reports, models, results)):
        raise config.ConfigError(f"profile {profile!r} would overwrite the committed reports/, results/ or models/; "
                                 f"give --root DIR")
    compute = is_compute(notebook)
    params = config.deep_merge(validate_params(params_file, profile, stages), overrides or {})
    if overrides:
        config.data_config(params)
    if isinstance(params.get(stage), dict):
        check_against_models(stage, params[stage], models)
    warning = precision_warning({stage: params.get(stage)}, _native_bf16())
    if warning:
        print(warning, file=sys.stderr, flush=True)
    staging = reports / ".staging" / (f"compute_{stage}" if compute else stage)
    parameters = stage_parameters(stage, params, reports, models, Path(checkpoints).resolve(), staging, results,
                                  compute)
    section = params[stage]
    if isinstance(section, dict) and section.get("pretrained"):     # offline: one line now, not hub retries later
        from .models import check_pretrained_available

        check_pretrained_available(section.get("model", ""), key=f"{stage}.pretrained")
    if not compute and (notebook.parent / "compute" / notebook.name).is_file() and not (results / stage).is_dir():
        name = next((s.name for s in stages or dvc_stages() if s.compute and s.section == stage), f"compute_{stage}")
        raise FileNotFoundError(f"{results / stage} not found: the report of {stage} draws what its compute stage wrote; "
                                f"run `dvc repro {name}` first (or `python -m causal_interp.pipeline {stage} "
                                f"notebooks/compute/{notebook.name}`)")
    declared = papermill.inspect_notebook(str(notebook))
    parameters = {k: v for k, v in parameters.items() if k in declared}
    staging.parent.mkdir(parents=True, exist_ok=True)
    lock = open(staging.parent / f"{stage}.lock", "w")
    try:                                                # one run of a stage at a time per reports folder
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise config.ConfigError(f"stage {stage} is already running into {reports} (another dvc repro or pipeline "
                                 f"run); wait for it to finish") from None
    try:
        return _execute(stage, notebook, parameters, staging, reports, models, show_progress, results, compute)
    finally:
        lock.close()


def _execute(stage, notebook, parameters, staging, reports, models, show_progress, results, compute) -> Path:
    import papermill

    from . import progress

    recover(staging, reports, models, results)          # left over by a killed run: never published
    sub, root = ("results", results) if compute else ("reports", reports)
    out_dir = staging / sub / stage
    out_dir.mkdir(parents=True, exist_ok=True)
    (staging / "models").mkdir(parents=True, exist_ok=True)
    executed = out_dir / f"{stage}.ipynb"
    log = staging / "progress.log"
    relayed = relay(log) if show_progress else contextlib.nullcontext(False)
    sockets = Path(tempfile.mkdtemp(prefix="causal-kernel-"))   # short path: a socket's name is at most 107 bytes
    kernel_log = sockets / "kernel.log"
    try:
        with relayed as tty:
            env = {progress.STAGE_ENV: stage, progress.ENV: str(log), progress.INTERVAL_ENV: "1" if tty else "30"}
            with mock.patch.dict(os.environ, env if show_progress else {}):    # the kernel inherits them
                papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, cwd=str(REPO),
                                           kernel_name="python3", log_output=False, progress_bar=False,
                                           kernel_manager_class=_kernel_manager(sockets, kernel_log))
    except BaseException as e:
        if not isinstance(e, KeyboardInterrupt) and "Kernel died" in str(e) and kernel_log.is_file():
            tail = kernel_log.read_text(errors="replace").strip().splitlines()[-15:]
            print("\n".join(["the kernel's own log (last lines):", *tail]), file=sys.stderr)
        failed = root / stage / f"{stage}.failed.ipynb"
        if executed.exists():
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(executed, failed)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    log.unlink(missing_ok=True)
    drop_default_parameters(executed)
    note_machine(executed)
    relative_paths(executed)
    publish(staging, reports, models, results)
    return root / stage / f"{stage}.ipynb"


def machine_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """This machine in a few words (CPU model and cores, and whether it computes bf16 natively), for the record of a
    run; the GPU is named by the stages that use one."""
    import platform

    text = Path(cpuinfo).read_text() if Path(cpuinfo).is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    native = any(f in text for f in ("amx_bf16", "avx512_bf16"))
    return f"{model}, {os.cpu_count()} cores" + (", native bf16" if native else "")


def note_machine(executed: Path) -> None:
    """Record in the executed notebook's metadata where it ran (`make status` estimates a re-run from it)."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    nb.metadata["causal_interp"] = {"machine": machine_name()}
    nbformat.write(nb, str(executed))


def relative_paths(executed: Path, root: Path = REPO) -> None:
    """The run's paths under `root` (the checkout) as paths relative to it, in the executed notebook's injected
    parameters, in papermill's metadata and in what the cells printed: the kernel ran in `root`, so they name the same
    files, and a committed notebook shows no machine's absolute paths. The staging folder is dropped from them
    (`reports/.staging/<stage>/results/x` reads `results/x`, where the outputs are published). Only the record is
    rewritten; the run used the absolute paths."""
    import nbformat

    prefix = str(root).rstrip("/")
    staged = re.compile(r"(?:[^\s\"']*/)?\.staging/[^/\s\"']+/")      # reports/.staging/<stage>/: where it was published from

    def text(v: str) -> str:
        return staged.sub("", v.replace(f'"{prefix}"', '"."').replace(prefix + "/", ""))

    def rel(v):
        if isinstance(v, str):
            return "." if v == prefix else text(v)
        if isinstance(v, dict):
            return {k: rel(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rel(x) for x in v]
        return v

    nb = nbformat.read(str(executed), as_version=4)
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = text(cell.source)
        for out in cell.get("outputs", []):               # printed paths ("resumed from ..."), warnings
            if out.get("output_type") == "stream":
                out["text"] = text(out["text"])
            for mime in ("text/plain", "text/markdown"):
                if mime in out.get("data", {}):
                    out["data"][mime] = text(out["data"][mime]) if isinstance(out["data"][mime], str) else \
                        [text(t) for t in out["data"][mime]]
    meta = nb.metadata.get("papermill")
    if meta:
        for key in ("input_path", "output_path", "parameters"):
            if key in meta:
                meta[key] = rel(meta[key])
    nbformat.write(nb, str(executed))


def drop_default_parameters(executed: Path) -> None:
    """Remove the notebook's own `parameters` cell from its executed copy: its defaults (small values for running it
    by hand) would read like the run's values. The run's parameters stay, in papermill's `injected-parameters` cell."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    cells = [c for c in nb.cells if "parameters" not in c.get("metadata", {}).get("tags", [])]
    if len(cells) < len(nb.cells):
        nb.cells = cells
        nbformat.write(nb, str(executed))


def run_all(profile: str = "default", root: str | Path | None = None, data_root: str | Path | None = None) -> None:
    """Run every stage of dvc.yaml in dependency order by its own command, as `dvc repro` would, but into `root`
    (reports/, models/, .cache/ under it) and with `profile`: what `make smoke` does. Stops at the first failure."""
    stages = dvc_stages()
    env = dict(os.environ, **{PROFILE_ENV: profile, RUN_ALL_ENV: "1"})
    if root is not None:
        env[ROOT_ENV] = str(Path(root).resolve())
    if data_root is not None:
        env[DATA_ROOT_ENV] = str(Path(data_root).resolve())
    for i, s in enumerate(stages, 1):
        print(f"[{i}/{len(stages)}] {s.name}: {s.cmd}", file=sys.stderr, flush=True)
        if subprocess.run(s.cmd, shell=True, cwd=REPO, env=env, check=False).returncode:
            raise SystemExit(f"error: stage {s.name} failed (command: {s.cmd})")


def train_architectures(workers: int | None = None, record: bool = True) -> list[str]:
    """The architecture study's training stages (`compute_train_arch@*`, independent of each other), each by its own
    command, fanned out over Ray (`workers`, RAY_ADDRESS: `fanout.run`, one GPU per worker where there are GPUs) or one
    after the other; then, with `record`, `dvc commit` records them in dvc.lock, as `dvc repro` would have (each ran its
    stage's own command on its own dependencies). The workers must see this checkout (one machine, or a shared
    filesystem): each writes its model and results here. Returns the stages trained; stops at the first failure."""
    from . import fanout

    stages = [s for s in dvc_stages() if s.name.startswith("compute_train_arch@")]
    env = dict(os.environ)

    def train(stage: Stage) -> int:
        print(f"== {stage.name}: {stage.cmd}", file=sys.stderr, flush=True)
        return subprocess.run(stage.cmd, shell=True, cwd=REPO, env=env, check=False).returncode

    codes = fanout.run(train, stages, workers)
    failed = [s.name for s, code in zip(stages, codes) if code]
    if failed:
        raise SystemExit(f"error: {', '.join(failed)} failed; the others are trained (re-run to resume)")
    if record:
        subprocess.run(["dvc", "commit", "--force", *[s.name for s in stages]], cwd=REPO, check=True)
    return [s.name for s in stages]


def _interrupt(signum, frame):
    """SIGINT or SIGTERM to the runner alone (`kill`, a job scheduler): the running cell is interrupted too, as Ctrl-C
    in a terminal does by signalling the whole process group, so the stage stops now rather than at the cell's end."""
    for pid in list(KERNELS):
        try:
            os.kill(pid, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            KERNELS.discard(pid)
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causal_interp.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", nargs="?")
    parser.add_argument("notebook", nargs="?")
    parser.add_argument("--all", action="store_true", help="run every stage of dvc.yaml, in order")
    parser.add_argument("--check", action="store_true", help="validate params.yaml (with --profile) and stop")
    parser.add_argument("--train-archs", action="store_true",
                        help="train the architecture study's models (compute_train_arch@*), over Ray with --workers, "
                             "and record them in dvc.lock")
    parser.add_argument("--workers", type=int, default=None, help="Ray workers for --train-archs (fanout.py)")
    from_run_all = os.environ.get(RUN_ALL_ENV) == "1"
    inherited = {k: os.environ[k] for k in (PROFILE_ENV, ROOT_ENV, DATA_ROOT_ENV) if k in os.environ}
    if inherited and not from_run_all:
        print(f"warning: ignoring {sorted(inherited)} (they apply only under `make smoke` / --all); "
              f"use --profile / --root / --data-root", file=sys.stderr)
    env = inherited if from_run_all else {}
    parser.add_argument("--profile", default=env.get(PROFILE_ENV, "default"))
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--root", default=env.get(ROOT_ENV),
                        help="write reports/, models/ and .cache/ under DIR instead of the repository")
    parser.add_argument("--reports", default=None)
    parser.add_argument("--models", default=None)
    parser.add_argument("--results", default=None, help="where compute stages write (default: results/ under the root)")
    parser.add_argument("--checkpoints", default=None, help="where long stages keep resumable state")
    parser.add_argument("--data-root", default=env.get(DATA_ROOT_ENV), help="override params data.root")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, errors only")
    parser.add_argument("--device", default=None, help="override params.yaml's device: auto, cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    base = Path(args.root).resolve() if args.root else REPO
    reports = Path(args.reports or base / "reports")
    models = Path(args.models or base / "models")
    results = Path(args.results or base / "results")
    checkpoints = Path(args.checkpoints or base / ".cache" / "checkpoints")
    overrides = {"data": {"root": str(Path(args.data_root).resolve())}} if args.data_root else {}
    if args.device:
        overrides["device"] = config.check_device(args.device)
    overrides = overrides or None
    previous = signal.signal(signal.SIGTERM, _interrupt)   # `kill` cleans up like Ctrl-C: the staged run is dropped
    previous_int = signal.signal(signal.SIGINT, _interrupt)
    label = args.stage or "pipeline"
    try:
        if args.all:
            run_all(args.profile, base if args.root else None, args.data_root)
            return 0
        if args.train_archs:
            train_architectures(args.workers)
            return 0
        if args.check:
            params = validate_params(args.params, args.profile)
            for name, values in params.items():     # class indices against the models trained so far
                if isinstance(values, dict) and name not in TOP_LEVEL:
                    check_against_models(name, values, models)
            warning = precision_warning(params, _native_bf16())
            if warning:
                print(warning, file=sys.stderr)
            print(f"params.yaml ({args.profile} profile): ok")
            return 0
        if not (args.stage and args.notebook):
            parser.error("give STAGE and NOTEBOOK, or --all, or --check")
        t0 = time.perf_counter()
        if not args.quiet:
            print(f"== {args.stage}: {args.notebook}, {args.profile} profile -> {(results if is_compute(args.notebook) else reports) / args.stage}",
                  file=sys.stderr, flush=True)
        final = run_stage(args.stage, args.notebook, args.profile, args.params, reports, models, overrides,
                          show_progress=not args.quiet, checkpoints=checkpoints, results=results)
        if not args.quiet:
            print(f"== {args.stage}: done in {(time.perf_counter() - t0) / 60:.1f} min; {'results' if is_compute(args.notebook) else 'report'} {final}",
                  file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print(f"error: {label}: interrupted; the previous report is kept, re-run to resume", file=sys.stderr)
        return 130
    except Exception as e:
        import papermill

        if isinstance(e, papermill.PapermillExecutionError):
            print(f"error: {label}: {e.ename}: {e.evalue}", file=sys.stderr)
            return 1
        from .data import DataError

        if isinstance(e, (config.ConfigError, FileNotFoundError, DataError)):
            print(f"error: {label}: {e}", file=sys.stderr)
            return 2
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
