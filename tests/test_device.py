"""The `device` setting: every model and every input of the engine goes where it says, and nothing stays behind.

A CPU-only machine cannot see a tensor left on the CPU when the model is on the CPU too, so the placement test marks
what the code moved to the device (`.to(device)`, a factory given `device=`, and everything computed from those) and
fails on any computation that mixes a moved tensor with an unmoved floating-point one (on a GPU: a device error), or
on a Conv2d/Linear that runs on an unmoved input or weight. The same check runs for real in tests/test_cuda.py on a GPU.
"""
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from causal_interp import config, discovery, evaluation, masking, models, per_example, protocols, stability, training
from causal_interp.baselines import explainer
from causal_interp.data import Halves, ImageData
from causal_interp.interventions import Intervention


class Placement(TorchFunctionMode):
    """Marks tensors moved to `device` and what is computed from them; records mixed computations."""

    CHECKED = {"conv2d", "linear", "add", "sub", "mul", "div", "matmul", "einsum", "__add__", "__sub__", "__mul__",
               "__truediv__", "__iadd__", "__isub__", "__imul__", "__radd__", "__rsub__", "__rmul__", "where", "cat"}

    def __init__(self, device):
        super().__init__()
        self.device, self.ids, self.keep, self.mixed = torch.device(device), set(), [], []
        self.neutral = set()     # made by a factory told `device=`: follows the tensor it was made for

    def mark(self, out):
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.ids.add(id(t))
                self.keep.append(t)                      # ids stay unique while the test runs

    def marked(self, t) -> bool:
        return id(t) in self.ids

    def _targets(self, args, kwargs) -> bool:
        given = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (str, torch.device))]
        return any(torch.device(a) == self.device for a in given)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if name == "to" and self._targets(args, kwargs):
            self.mark(out)
        elif not inputs and kwargs.get("device") is not None or inputs and all(id(t) in self.neutral for t in inputs):
            self.neutral.update(id(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor))
            self.keep.append(out)
        elif any(self.marked(t) for t in inputs) and name not in ("cpu", "numpy", "item", "tolist"):
            if name in self.CHECKED:
                loose = [t for t in inputs if not self.marked(t) and id(t) not in self.neutral and t.dim() > 0
                         and t.is_floating_point()]
                if loose:
                    self.mixed.append(f"{name}: {[tuple(t.shape) for t in loose]}")
            self.mark(out)
        return out


def watch_layers(model, placement, seen):
    """A pre-hook on every Conv2d/Linear: its input and weight must have been moved."""
    def hook(module, inputs):
        seen.append((type(module).__name__, placement.marked(inputs[0]), placement.marked(module.weight)))
    return [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def tiny_data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (n, 1, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 10
    for i, c in enumerate(y):                     # a bright square per class, so that some examples are right
        x[i, 0, 4 + 2 * int(c):8 + 2 * int(c), 4:12] = 250
    return ImageData("tiny", [str(c) for c in range(10)], x, y, x.clone(), y.clone(), (0.5,), (0.25,))


def test_the_device_setting_is_checked_and_auto_means_cpu_here():
    assert models.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert models.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(config.ConfigError, match="device must be auto, cpu, cuda or cuda:N"):
        models.resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(config.ConfigError, match="torch sees 0 CUDA device"):
            models.resolve_device("cuda:0")


def test_every_model_and_input_goes_to_the_device():
    device = torch.device("cpu")
    data = tiny_data()
    torch.manual_seed(0)
    model = models.LeNet(1, 10)
    cfg = config.TrainConfig(dataset="mnist", model="lenet", epochs=1, batch_size=32, bf16=False, threads=1)
    placement, seen = Placement(device), []
    with placement:
        model.to(device)
        hooks = watch_layers(model, placement, seen)
        training.train(model, data, cfg, device=device, log=lambda *a: None)         # training and its test pass
        logits = training.predict(model, data, data.x_test)
        x = data.normalize(data.x_test)                                            # CPU tensors, as a stage has them
        idx = discovery.class_examples(model, x, data.y_test, 3, 8, correct_only=False)
        discovery.class_examples(model, x, data.y_test, 3, 8, correct_only=True)       # runs the model
        graph = discovery.discover_class_graph(model, x[idx], 3, intervention=Intervention(), test="paired")
        masks = masking.fidelity_masks(graph, 0.5, "critical")
        with masking.masked(model, masks, {lg.layer: lg.n_parents for lg in graph.layers}):
            masking.accuracy(model, x, data.y_test)
        causal = evaluation.CausalExplainer(model, {3: graph}, "conv2")
        maps = causal(inputs=x[idx].numpy(), targets=np.full(len(idx), 3))
        saliency = explainer("Saliency", model)(inputs=x[idx].numpy(), targets=np.full(len(idx), 3))
        for h in hooks:
            h.remove()
    assert logits.device.type == "cpu" and maps.shape == saliency.shape == (len(idx), 1, 32, 32)
    assert seen and all(inp and w for _, inp, w in seen), [s for s in seen if not all(s[1:])][:5]
    assert not placement.mixed, placement.mixed[:10]


def test_the_placement_check_catches_an_input_left_behind():
    placement, seen = Placement("cpu"), []
    model = models.LeNet(1, 10)
    with placement:
        model.to("cpu")
        hooks = watch_layers(model, placement, seen)
        model(torch.zeros(2, 1, 32, 32))                  # never moved
        w = model.conv1.weight * torch.ones(6, 1, 5, 5)   # a moved weight times an unmoved tensor
        for h in hooks:
            h.remove()
    assert seen[0] == ("Conv2d", False, True) and w is not None
    assert any(m.startswith("mul") or m.startswith("__mul__") for m in placement.mixed)


def test_per_example_graphs_scores_and_corrections_compute_on_the_device():
    """The earlier paper's per-example graphs (both scores: the kl one combines the logits with the effects, which come
    back on the CPU) and a correction (the model run on the example, masked): the example goes where the model is."""
    device = torch.device("cpu")
    data = tiny_data(16)
    torch.manual_seed(0)
    model = models.LeNet(1, 10).eval()
    x = data.normalize(data.x_test)                                            # CPU tensors, as the stage has them
    placement, seen = Placement(device), []
    with placement:
        model.to(device)
        hooks = watch_layers(model, placement, seen)
        chain = discovery.layer_chain(model)
        traced = per_example.TracedModel(model)
        for effect in per_example.EFFECTS:
            g = per_example.example_graph(model, x[3:4], 3, 3, effect=effect, traced=traced)
            scores = per_example.class_scores(traced, "fc3", 3, [3], effect)
            assert scores.device.type == "cpu" and len(g.layers) == len(chain)
        traced.cache(x[:1])
        n_parents = {l: traced.parents(l)[0] for l in chain}
        row = per_example.correct(model, x[5:6], 5, 5, n_parents, "kl", 2, 0, traced=traced)
        for h in hooks:
            h.remove()
    assert 0 <= row["true_prob_after"] <= 1 and 0 <= row["random_corrected"] <= 1
    assert seen and all(inp and w for _, inp, w in seen), [s for s in seen if not all(s[1:])][:5]
    assert not placement.mixed, placement.mixed[:10]


def test_lenet_verdicts_le_numbers_compute_on_the_device():
    """Fig. 8's numbers of the lenet_verdicts stage (`stability.run` puts every model on the device): the raw-pixel
    model, its examples, the fair-protocol LE of the authors' causal maps and of their baselines."""
    device = torch.device("cpu")
    data = tiny_data(40)
    first = torch.arange(40) % 20 < 10                     # two examples of every class in each half
    halves = Halves(data, data.normalize(data.x_test), data.y_test, torch.nonzero(first).flatten(),
                    torch.nonzero(~first).flatten())
    pcfg = protocols.ProtocolConfig(class_index=3, examples=2, correct_only=False, le_samples=2, ig_steps=2,
                                    shap_samples=2, batch=2, bootstrap=10)
    torch.manual_seed(0)
    model = models.LeNet(1, 10).eval()
    placement, seen = Placement(device), []
    with placement:
        model.to(device)
        hooks = watch_layers(model, placement, seen)
        raw, x01, y = stability.le_examples(model, halves, pcfg)
        xd = halves.x[halves.discovery]
        graph = discovery.discover_class_graph(model, xd[halves.y[halves.discovery] == 3], 3, test="paired")
        others = stability.le_baseline_scores(raw, x01, y, pcfg)
        numbers = stability.le_numbers(raw, graph, x01, y, others, pcfg)
        for h in hooks:
            h.remove()
    assert set(numbers["summary"]) == set(protocols.AUTHORS_METHODS) and len(y) == 2
    assert seen and all(inp and w for _, inp, w in seen), [s for s in seen if not all(s[1:])][:5]
    assert not placement.mixed, placement.mixed[:10]
