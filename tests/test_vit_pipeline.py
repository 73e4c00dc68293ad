"""A vision transformer goes through the pipeline with a params.yaml change only: a new architecture section
(`model: vit_tiny_patch16_224` with timm's own `model_args`), its name in `architectures`, and `arch_graphs` pointed
at it. Training and class-graph discovery run through the same runner and notebooks as `dvc repro` (smoke sizes)."""
import dataclasses
import json

import pytest
import yaml

from causal_interp import pipeline

from .conftest import REPO

VIT = {"model": "vit_tiny_patch16_224", "model_args": {"img_size": 32, "patch_size": 8, "depth": 2},
       "optimizer": "adam", "lr": 0.001, "weight_decay": 0.0, "bf16": False}


@pytest.mark.notebooks
def test_a_vit_class_graph_is_discovered_through_the_pipeline_by_params_alone(fake_root, tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["arch_vit"] = {**params["arch_resnet18"], **VIT}
    params["architectures"] = [*params["architectures"], "arch_vit"]
    params["profiles"]["smoke"]["arch_vit"] = {"epochs": 1, "train_subset": 128, "test_subset": 64}
    chain = ["patch_embed.proj"] + [f"blocks.{b}.{n}" for b in (0, 1) for n in ("attn.proj", "mlp.fc1", "mlp.fc2")] + ["head"]
    params["profiles"]["smoke"]["arch_graphs"].update(models=["arch_vit"], layers={"arch_vit": chain})   # through attention
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    stages = pipeline.dvc_stages(REPO)
    for name in ("compute_train_arch@arch_resnet18", "train_arch@arch_resnet18"):
        s = next(s for s in stages if s.name == name)
        vit = lambda text: text.replace("arch_resnet18", "arch_vit")   # noqa: E731
        stages.append(dataclasses.replace(s, name=vit(s.name), cmd=vit(s.cmd), outs=[vit(o) for o in s.outs],
                                          deps=[vit(d) for d in s.deps]))
    run = dict(profile="smoke", params_file=params_file, reports=tmp_path / "reports", models=tmp_path / "models",
               checkpoints=tmp_path / "ckpt", stages=stages)
    data = {"data": {"root": str(fake_root), "verify": False}}
    pipeline.run_stage("arch_vit", "notebooks/compute/train.ipynb", overrides={**data, "arch_vit": {"threads": 1}},
                       **run)
    assert json.loads((tmp_path / "results" / "arch_vit" / "metrics.json").read_text())["model"] == VIT["model"]

    pipeline.run_stage("arch_graphs", "notebooks/compute/discover_graphs.ipynb", **run,
                       overrides={**data, "arch_graphs": {"threads": 1}})
    graphs = sorted((tmp_path / "results" / "graphs_architectures" / "arch_vit" / "paired").glob("class_*.json"))
    assert graphs, "a class graph of the ViT"
    assert [lg["layer"] for lg in json.loads(graphs[0].read_text())["layers"]] == chain[::-1]
