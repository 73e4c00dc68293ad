"""max_batch as a memory budget: how the engine splits its work where memory is short (a GPU), and that the split never
changes what is computed. The budget is forced on the CPU here; tests/test_cuda.py runs it on a GPU."""
import dataclasses

import pytest
import torch

from causal_interp import interventions
from causal_interp.discovery import discover_class_graph
from causal_interp.interventions import Intervention, TracedModel, treatment_effects
from tests.test_interventions import TinyResidual


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyResidual().eval()


@pytest.fixture
def x():
    return torch.randn(10, 2, 8, 8, generator=torch.Generator().manual_seed(1))


def budget(monkeypatch, nbytes):
    monkeypatch.setattr(interventions, "memory_budget", lambda device: nbytes)


def test_the_cpu_has_no_budget_so_max_batch_alone_bounds_a_pass(net, x):
    traced = TracedModel(net)
    traced.cache(x)
    assert interventions.memory_budget("cpu") is None
    assert interventions.samples_per_pass(traced, "a1", 64) == 64
    assert interventions.examples_per_cache(traced, len(x)) == len(x)


def test_bytes_per_example_counts_what_a_pass_computes_again(net, x):
    traced = TracedModel(net)
    traced.cache(x)
    whole, after_stem, after_fc = (traced.bytes_per_example(), traced.bytes_per_example("stem"),
                                   traced.bytes_per_example("fc"))
    assert whole > after_stem > after_fc >= 0
    assert whole >= 2 * 8 * 8 * 4          # at least the input itself, float32


def test_a_small_budget_splits_the_parents_and_changes_nothing(net, x, monkeypatch):
    traced = TracedModel(net)
    traced.cache(x)
    iv = Intervention("soft", b=0.3, eps=0.2, seed=4)
    free = treatment_effects(traced, "a2", 1, [0, 1, 2, 3], iv)
    per_sample = traced.bytes_per_example("a2")
    budget(monkeypatch, 2 * per_sample * len(x) * 2)          # two parents x 10 examples per pass
    assert interventions.samples_per_pass(traced, "a2", 4096) == 2 * len(x)
    calls = []
    run = traced.run_from
    monkeypatch.setattr(traced, "run_from", lambda *a: calls.append(a[2]) or run(*a))
    split = treatment_effects(traced, "a2", 1, [0, 1, 2, 3], iv)
    assert max(calls) == 2 and len(calls) == 2                # 4 parents, 2 per pass
    torch.testing.assert_close(split, free, rtol=0, atol=1e-6)


def test_out_of_memory_halves_the_pass_and_tries_again(net, x, monkeypatch):
    traced = TracedModel(net)
    traced.cache(x)
    free = treatment_effects(traced, "a1", 2, [0, 1, 2, 3], Intervention())
    run, calls = traced.run_from, []

    def small_gpu(layer, z, reps):
        calls.append(reps)
        if reps > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return run(layer, z, reps)

    monkeypatch.setattr(traced, "run_from", small_gpu)
    split = treatment_effects(traced, "a1", 2, [0, 1, 2, 3], Intervention())
    assert calls[:3] == [4, 2, 1] and calls[3:] == [1, 1, 1]
    torch.testing.assert_close(split, free, rtol=0, atol=1e-6)


def test_other_errors_and_a_single_parent_out_of_memory_are_raised(net, x, monkeypatch):
    traced = TracedModel(net)
    traced.cache(x)
    monkeypatch.setattr(traced, "run_from", lambda *a: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        treatment_effects(traced, "a1", 0, [0], Intervention())
    monkeypatch.setattr(traced, "run_from", lambda *a: (_ for _ in ()).throw(torch.OutOfMemoryError("out of memory")))
    with pytest.raises(torch.OutOfMemoryError):
        treatment_effects(traced, "a1", 0, [0], Intervention(), parents=[1])


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_discovery_splits_the_examples_where_they_do_not_fit_and_finds_the_same_graph(net, x, monkeypatch, mode):
    iv = Intervention(mode, b=0.3, eps=0.2, seed=2)
    layers = ["stem", "a1", "a2", "c1", "c2", "fc"]
    whole = discover_class_graph(net, x, 1, layers, iv, test="paired")
    probe = TracedModel(net)
    probe.cache(x[:2])
    budget(monkeypatch, 3 * probe.bytes_per_example() * 3)     # three examples per cache: spans of 3, 3, 3, 1
    assert interventions.examples_per_cache(probe, len(x)) == 3
    caches = []
    cache = TracedModel.cache
    monkeypatch.setattr(TracedModel, "cache", lambda self, xs, where="": caches.append(len(xs)) or cache(self, xs, where))
    split = discover_class_graph(net, x, 1, layers, iv, test="paired")
    assert [3, 3, 3, 1] == caches[-4:]
    for a, b in zip(whole.layers, split.layers):
        assert (a.necessary, a.distracting, a.irrelevant) == (b.necessary, b.distracting, b.irrelevant)
        torch.testing.assert_close(torch.tensor(a.mean_effect), torch.tensor(b.mean_effect), rtol=0, atol=1e-6)
    assert dataclasses.asdict(whole)["n_examples"] == dataclasses.asdict(split)["n_examples"] == len(x)
