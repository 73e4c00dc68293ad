"""The engine on a CUDA GPU: the same graph as on the CPU, the same as its naive reference, the same from run to run,
and every step of a stage computing there (tests/test_device.py's placement check, for real).

Marked `cuda` and skipped where torch sees no GPU (here, and in CI). `benchmarks/gpu_check.sh` runs them on a lent GPU
machine: `pytest -q -m cuda tests/test_cuda.py`. On a GPU every comparison is within 1e-4: where one is not, look first
at TF32 (`torch.backends.cudnn.allow_tf32` is on by default in torch and rounds convolutions to 10 mantissa bits).
"""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from causal_interp import baselines, config, discovery, evaluation, masking, models, training
from causal_interp.data import ImageData
from causal_interp.interventions import Intervention, TracedModel, naive_effects, treatment_effects

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")]

TOL = 1e-4


def small_net(seed: int = 0) -> nn.Module:
    """A small random conv net with a residual block and BatchNorm (random statistics): conv1 -> bn -> relu ->
    [conv2 -> relu -> conv3] + skip -> relu -> pool -> fc (4 classes)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 4 * 4, 4)

        def forward(self, x):
            h = torch.relu(self.bn(self.conv1(x)))
            h = torch.relu(h + self.conv3(torch.relu(self.conv2(h))))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 4), 1))

    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 1.5)
        net.bn.weight.uniform_(0.5, 1.5)
    return net.eval()


def examples(n: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(seed))


def graph_on(device: str, intervention: Intervention | None = None, test: str = "paired") -> discovery.ClassGraph:
    """The class-1 graph of the small net, computed with the model on `device` (the inputs stay on the CPU: the engine
    moves them to the model's device)."""
    net = small_net().to(device)
    return discovery.discover_class_graph(net, examples(), 1, intervention=intervention, test=test)


def close(a, b, what: str) -> None:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    assert a.shape == b.shape and diff <= TOL, \
        f"{what}: max |difference| {diff:.3g} > {TOL} (TF32 convolutions: {torch.backends.cudnn.allow_tf32})"


@pytest.fixture(autouse=True)
def deterministic_cuda():
    """The pipeline's CUDA settings (`models.deterministic`), switched back off after each test."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    models.deterministic(torch.device("cuda"))
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.mark.parametrize("iv", [Intervention("hard"), Intervention("soft", b=0.1, eps=0.05)], ids=["hard", "soft"])
def test_the_class_graph_on_cuda_matches_the_cpu(iv):
    cpu, gpu = graph_on("cpu", iv), graph_on("cuda", iv)
    assert [lg.layer for lg in gpu.layers] == [lg.layer for lg in cpu.layers] == ["fc", "conv3", "conv2", "conv1"]
    assert any(lg.necessary for lg in cpu.layers[1:])          # the graph reaches below the top layer
    for c, g in zip(cpu.layers, gpu.layers):
        assert g.targets == c.targets, c.layer
        close(g.mean_effect, c.mean_effect, f"mean effects at {c.layer}")
        assert (g.necessary, g.distracting, g.irrelevant) == (c.necessary, c.distracting, c.irrelevant), c.layer


@pytest.mark.parametrize("layer", ["fc", "conv3", "conv2"])
def test_the_engine_on_cuda_matches_the_naive_reference_on_the_cpu(layer):
    net, x = small_net(), examples(8)
    traced = TracedModel(copy.deepcopy(net).to("cuda"))
    traced.cache(x)
    n_parents = traced.parents(layer)[0]
    targets = list(range(min(3, _outputs(traced.modules[layer]))))
    fast = treatment_effects(traced, layer, 1, targets, Intervention())
    slow = naive_effects(net, layer, 1, x, targets, Intervention(), n_parents)
    assert fast.device.type == "cpu"                            # the engine hands its results back on the CPU
    close(fast, slow, f"treatment effects at {layer}")


def _outputs(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def test_two_cuda_runs_are_identical():
    iv = Intervention("soft", b=0.1, eps=0.05)
    first, second = graph_on("cuda", iv), graph_on("cuda", iv)
    assert torch.are_deterministic_algorithms_enabled()
    for a, b in zip(first.layers, second.layers):
        assert (a.mean_effect, a.z, a.p) == (b.mean_effect, b.z, b.p), a.layer      # bit for bit
        assert (a.necessary, a.distracting, a.irrelevant) == (b.necessary, b.distracting, b.irrelevant)


def tiny_data(n: int = 64) -> ImageData:
    """MNIST-sized look-alikes: a bright bar per class on noise."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (n, 1, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 10
    for i, c in enumerate(y):
        x[i, 0, 4 + 2 * int(c):8 + 2 * int(c), 4:12] = 250
    return ImageData("tiny", [str(c) for c in range(10)], x, y, x.clone(), y.clone(), (0.5,), (0.25,))


def test_every_step_of_a_stage_computes_on_the_gpu():
    """Training, prediction, example picking, discovery, masking, a causal map, a baseline and the Quantus metrics,
    each given a model on the GPU and CPU inputs as a stage has them: every Conv2d/Linear runs on a GPU input with a
    GPU weight (a tensor left on the CPU would stop with a device error), and the results come back to the CPU."""
    device = torch.device("cuda")
    data = tiny_data()
    torch.manual_seed(0)
    model = models.LeNet(1, 10).to(device)
    seen = []

    def hook(module, inputs):
        seen.append((type(module).__name__, inputs[0].device.type, module.weight.device.type))

    for m in model.modules():       # hooks travel with the copies the baselines make
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_pre_hook(hook)
    cfg = config.TrainConfig(dataset="mnist", model="lenet", epochs=1, batch_size=32, bf16=False, threads=1)
    training.train(model, data, cfg, device=device, log=lambda *a: None)
    logits = training.predict(model, data, data.x_test)
    x = data.normalize(data.x_test)
    idx = discovery.class_examples(model, x, data.y_test, 3, 8, correct_only=False)
    discovery.class_examples(model, x, data.y_test, 3, 8, correct_only=True)
    graph = discovery.discover_class_graph(model, x[idx], 3, test="paired")
    with masking.masked(model, masking.fidelity_masks(graph, 0.5, "critical"),
                        {lg.layer: lg.n_parents for lg in graph.layers}):
        masking.accuracy(model, x, data.y_test)
    xs, ys = x[idx[:4]].numpy(), np.full(4, 3)
    causal = evaluation.CausalExplainer(model, {3: graph}, "conv2")
    saliency = baselines.explainer("Saliency", model)
    assert causal(inputs=xs, targets=ys).shape == saliency(inputs=xs, targets=ys).shape == (4, 1, 32, 32)
    ecfg = evaluation.EvaluationConfig(models=["tiny"], le_samples=2)
    scores = evaluation.evaluate_method("Saliency", saliency, ecfg, model, xs, ys)
    assert len(scores["LE"]) == len(scores["IROF"]) == 4
    assert logits.device.type == "cpu" and all(p.device.type == "cuda" for p in model.parameters())
    assert seen and all(inp == w == "cuda" for _, inp, w in seen), sorted(set(seen))


def test_resnet50_at_224_px_fits_a_24_gb_card_by_splitting_the_work():
    """max_batch as a memory budget: a ResNet50 class graph at 224 x 224 px, 64 examples, max_batch 4096 (4096 samples
    of 224-px activations would need far more than 24 GB), with this process held to 24 GB of the GPU."""
    import timm

    total = torch.cuda.get_device_properties(0).total_memory
    before = torch.cuda.get_per_process_memory_fraction(0)
    torch.cuda.set_per_process_memory_fraction(min(1.0, 24e9 / total), 0)
    try:
        torch.manual_seed(0)
        net = timm.create_model("resnet50", num_classes=10).eval().cuda()
        x = torch.randn(64, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        layers = ["layer4.2.conv2", "layer4.2.conv3", "fc"]
        graph = discovery.discover_class_graph(net, x, 3, layers, test="paired", max_batch=4096)
        assert [lg.layer for lg in graph.layers] == layers[::-1]
        assert torch.cuda.max_memory_allocated(0) <= 24e9
    finally:
        torch.cuda.set_per_process_memory_fraction(before, 0)
