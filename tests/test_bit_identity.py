"""On the CPU the device-aware engine computes bit for bit what the code before it computed (issue 29): a trained
model, a class graph, a soft-intervention run, a masking row and a metric, each by the package as it was at BEFORE
(taken from git) and as it is now, on the same machine in the same process."""
import dataclasses
import importlib
import subprocess
import sys
import tarfile
import io

import numpy as np
import pytest
import torch

from causal_interp import config, discovery, evaluation, masking, models, reliability, training
from causal_interp.baselines import explainer

from .conftest import REPO
from .test_device import tiny_data

BEFORE = "bc1f69a"      # the last commit before the device setting reached training and the engine


@pytest.fixture(scope="module")
def before(tmp_path_factory):
    """The package as it was at BEFORE, importable as `causal_interp_before`."""
    archive = subprocess.run(["git", "archive", BEFORE, "src/causal_interp"], cwd=REPO, capture_output=True)
    if archive.returncode:
        pytest.skip(f"commit {BEFORE} is not in this clone (shallow?): {archive.stderr.decode()[:200]}")
    root = tmp_path_factory.mktemp("before")
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(root, filter="data")
    (root / "src" / "causal_interp").rename(root / "causal_interp_before")
    sys.path.insert(0, str(root))
    try:
        yield {m: importlib.import_module(f"causal_interp_before.{m}")
               for m in ("config", "discovery", "evaluation", "masking", "models", "reliability", "training",
                         "baselines", "interventions")}
    finally:
        sys.path.remove(str(root))


def trained(train_module, config_module):
    torch.manual_seed(0)
    model = models.LeNet(1, 10)
    cfg = config_module.TrainConfig(dataset="mnist", model="lenet", epochs=2, batch_size=16, bf16=False, threads=1)
    train_module.train(model, tiny_data(), cfg, log=lambda *a: None)
    return model


def graph_dict(g):
    d = g.to_dict()
    for lg in d["layers"]:
        lg.pop("seconds")
    return d


def test_the_cpu_computes_what_it_computed_before(before):
    data = tiny_data()
    old_model, new_model = trained(before["training"], before["config"]), trained(training, config)
    assert all(torch.equal(a, b) for a, b in zip(old_model.state_dict().values(), new_model.state_dict().values()))
    x = data.normalize(data.x_test)
    idx = discovery.class_examples(new_model, x, data.y_test, 3, 8, correct_only=False)

    old_graph = before["discovery"].discover_class_graph(old_model, x[idx], 3, test="paired")
    new_graph = discovery.discover_class_graph(new_model, x[idx], 3, test="paired")
    assert graph_dict(old_graph) == graph_dict(new_graph) and new_graph.layers[0].necessary, "a graph with nodes"

    b = [0.1, 0.4]
    old_runs = before["reliability"].soft_sweep(old_model, x[idx], old_graph, b, 0.05, log=lambda *a: None)
    new_runs = reliability.soft_sweep(new_model, x[idx], new_graph, b, 0.05, log=lambda *a: None)
    assert old_runs == new_runs

    n_parents = {lg.layer: lg.n_parents for lg in new_graph.layers}
    rows = []
    for m, mask in ((before["masking"], old_model), (masking, new_model)):
        masks = m.fidelity_masks(new_graph if m is masking else old_graph, 0.5, "critical")
        with m.masked(mask, masks, n_parents):
            rows.append((m.accuracy(mask, x, data.y_test), m.class_bias(mask, x, data.y_test, 3)))
    np.testing.assert_equal(rows[0], rows[1])          # NaN where a class is never predicted, in both

    cfg_old = before["evaluation"].EvaluationConfig(models=["m"], le_samples=2, bootstrap=10)
    cfg_new = evaluation.EvaluationConfig(models=["m"], le_samples=2, bootstrap=10)
    xs, ys = x[idx].numpy(), np.full(len(idx), 3)
    old_le = before["evaluation"].score("LE", cfg_old, old_model, xs, ys,
                                        before["evaluation"].CausalExplainer(old_model, {3: old_graph}, "conv2"))
    new_le = evaluation.score("LE", cfg_new, new_model, xs, ys, evaluation.CausalExplainer(new_model, {3: new_graph}, "conv2"))
    np.testing.assert_array_equal(old_le, new_le)
    old_sal = before["baselines"].explainer("Saliency", old_model)(inputs=xs, targets=ys)
    np.testing.assert_array_equal(old_sal, explainer("Saliency", new_model)(inputs=xs, targets=ys))
