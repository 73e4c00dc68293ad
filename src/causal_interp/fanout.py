"""Fan-out of independent units: in this process (the default), or over Ray.

A unit is a piece of work whose result does not depend on the others: one model x class graph
(`discovery.discover_all`), one soft-intervention run (`reliability.soft_sweep`), one method's explanation scores
(`evaluation.evaluate_methods`). `run(fn, units, workers)` returns `[fn(u) for u in units]`, in unit order, and calls
`done(i, result)` in this process as each unit finishes, so the caller keeps writing its resumable state under `.cache/`
itself: when a worker dies halfway, a re-run computes only the missing units.

* In this process when `workers` is None and RAY_ADDRESS is not set: a plain loop; Ray is not even imported.
* Over Ray when `workers` is an int (a local Ray of that many workers is started, unless one is running) or RAY_ADDRESS
  names a cluster (then `workers` defaults to one per GPU of the cluster, else one per CPU). The workers are long-lived
  actors, kept between runs: each imports torch once (Ray would give every GPU task a fresh worker, which imports it
  again) and fetches a run's `fn` once, with the model and the examples it closes over; then one unit at a time. The
  cluster's CPUs, and its GPUs (`num_gpus` per actor), are shared among them. Ray's usage statistics are switched off
  (RAY_USAGE_STATS_ENABLED=0) before Ray starts.

The results are those of the in-process run: every unit seeds its own draws (tests/test_fanout.py compares graph files
byte for byte). So, like the runner and the progress bars, this module is no stage's DVC dependency: where a unit runs
never changes what a stage writes. On a cluster, every node needs the kit installed (environment.yml).
"""
from __future__ import annotations

import os


def uses_ray(workers: int | None = None) -> bool:
    """Whether `run` fans out over Ray: `workers` is given, or RAY_ADDRESS points at a cluster."""
    return workers is not None or bool(os.environ.get("RAY_ADDRESS"))


def run(fn, units, workers: int | None = None, done=None, num_gpus: float | None = None) -> list:
    """`[fn(u) for u in units]`, in this process or on Ray workers (`uses_ray`); `done(i, result)` is called here as
    unit `i` finishes (in unit order in this process, in the order they finish on Ray). On Ray, `fn` must pickle (what
    it closes over travels to the workers) and a unit's error is raised here once the units already running have
    finished (their results reach `done`). `num_gpus`: GPUs per worker (default: the cluster's GPUs shared evenly, at
    most one each; none on a machine without GPU)."""
    units = list(units)
    if not units or not uses_ray(workers):
        results = []
        for i, unit in enumerate(units):
            results.append(fn(unit))
            if done is not None:
                done(i, results[-1])
        return results
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    ray = _ray(workers)
    actors = _actors(ray, workers, num_gpus)[:len(units)]
    shared = [ray.put(fn)]                 # serialised once; in a list, so that a worker fetches it once, not per unit
    results, pending, todo, error, clean = [None] * len(units), {}, list(range(len(units)))[::-1], None, False

    def submit(actor):                     # the next unit, to a worker that is free
        i = todo.pop()
        pending[actor.call.remote(shared, units[i])] = (i, actor)

    try:
        for actor in actors:               # one unit each to begin with
            submit(actor)
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            i, actor = pending.pop(ref)
            try:
                results[i] = ray.get(ref)
            except Exception as e:         # noqa: BLE001 - raised below, once the running units are in
                error = error or e
                continue
            if done is not None:
                done(i, results[i])
            if todo and error is None:
                submit(actor)
        clean = error is None
    finally:
        if not clean:                      # a unit failed, a worker died, Ctrl-C: fresh workers next time
            _kill_actors(ray)
    if error is not None:
        raise error
    return results


class _Worker:
    """A long-lived Ray actor: imports torch once, keeps the `fn` of the current run, runs one unit at a time."""

    def __init__(self):
        self.key, self.fn = None, None

    def call(self, shared, unit):
        import ray

        if shared[0].hex() != self.key:
            self.key, self.fn = shared[0].hex(), ray.get(shared[0])
        return self.fn(unit)


_POOL: dict = {}   # (workers, num_gpus) -> the actors, kept between runs of this process


def _actors(ray, workers: int | None, num_gpus: float | None) -> list:
    """The pool's actors: `workers` of them (default: one per GPU of the cluster, else one per CPU), sharing the
    cluster's CPUs and GPUs (`num_gpus` each: default the GPUs shared evenly, at most one each)."""
    if (workers, num_gpus) not in _POOL:
        _kill_actors(ray)
        total = ray.cluster_resources()
        n = workers or int(total.get("GPU", 0)) or int(total.get("CPU", 1))
        cpus = total.get("CPU", 1) / n
        gpus = min(1.0, total.get("GPU", 0) / n) if num_gpus is None else num_gpus
        worker = ray.remote(_Worker).options(num_cpus=int(cpus) if cpus >= 1 else cpus, num_gpus=gpus)
        _POOL[(workers, num_gpus)] = [worker.remote() for _ in range(n)]
    return _POOL[(workers, num_gpus)]


def _kill_actors(ray) -> None:
    for actors in _POOL.values():
        for actor in actors:
            ray.kill(actor)
    _POOL.clear()


def _ray(workers: int | None):
    """The `ray` module, connected: to RAY_ADDRESS's cluster, or to a local Ray of `workers` CPUs (at least the
    machine's), started here unless one is running. Usage statistics off."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"     # before Ray starts: no usage statistics leave the machine
    import ray

    if not ray.is_initialized():
        _POOL.clear()                                # actors of an earlier Ray, gone with it
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(num_cpus=max(workers or 1, os.cpu_count() or 1), include_dashboard=False)
    return ray
