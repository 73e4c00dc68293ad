"""Does "any timm model" hold? The engine against the brute force on about 20 timm architectures.

    python benchmarks/timm_families.py [--out reports/benchmarks] [--readme docs/architectures-and-imagenet.md] [--models a b ...]

For every model (random weights, a small input, float64):
1. `layer_chain` and the connection check of `discover_class_graph`, then `check_chain_runs` (one intervention per
   layer of the chain on two examples, parents run together and alone): a model the engine cannot handle is
   refused here, before any discovery, with the reason;
2. two layers of the chain (its middle and the one below the classifier): soft-intervention effects of the first 4
   parents on 3 targets, engine against the brute force (`naive_effects`: a deep-copied model per intervention, one
   example per forward pass), the largest difference relative to the largest effect.
Writes timm_families.json and timm_families.md to --out; with --readme, replaces the table between the
`<!-- timm-families:begin -->` and `<!-- timm-families:end -->` markers of that file. A model that crashes after its
chain was accepted is a failure of the kit (exit status 1).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from causal_interp import discovery  # noqa: E402
from causal_interp.interventions import (Intervention, TracedModel, _out_nodes, _timm_convs, naive_effects,  # noqa: E402
                                         treatment_effects)

# (timm name, family, input size, extra kwargs for a small input)
MODELS = [
    ("resnet18", "ResNet", 32, {}),
    ("resnet50", "ResNet", 32, {}),
    ("resnetv2_50", "ResNetV2", 32, {}),
    ("resnetv2_50x1_bit", "ResNetV2 / BiT (StdConv2d)", 32, {}),
    ("nf_resnet50", "NF-ResNet (ScaledStdConv2d)", 32, {}),
    ("efficientnet_b0", "EfficientNet", 32, {}),
    ("tf_efficientnet_b0", "EfficientNet, TF port (Conv2dSame)", 33, {}),
    ("mobilenetv2_100", "MobileNetV2", 32, {}),
    ("mobilenetv3_small_100", "MobileNetV3", 32, {}),
    ("tf_mobilenetv3_small_100", "MobileNetV3, TF port (Conv2dSame)", 33, {}),
    ("regnetx_002", "RegNetX", 32, {}),
    ("regnety_002", "RegNetY (squeeze-excitation)", 32, {}),
    ("repvgg_a0", "RepVGG (train-time branches)", 32, {}),
    ("convnext_atto", "ConvNeXt", 32, {}),
    ("densenet121", "DenseNet (concatenation)", 32, {}),
    ("ghostnet_100", "GhostNet (concatenation)", 32, {}),
    ("vit_tiny_patch16_224", "ViT", 32, {"img_size": 32, "patch_size": 8}),
    ("deit_tiny_patch16_224", "DeiT", 32, {"img_size": 32, "patch_size": 8}),
    ("swin_tiny_patch4_window7_224", "Swin", 64, {"img_size": 64, "window_size": 2}),
    ("mixer_s16_224", "MLP-Mixer", 64, {"img_size": 64}),
]
BEGIN, END = "<!-- timm-families:begin -->", "<!-- timm-families:end -->"


def special_layers(model: torch.nn.Module) -> list[str]:
    """Kinds of layer the kit handles specially that the model holds (named in the table)."""
    kinds = {type(m).__name__ for m in model.modules() if _timm_convs().get(type(m), "linear") != "linear"}
    if any("Attention" in type(m).__name__ for m in model.modules()):
        kinds.add("attention")
    return sorted(kinds)


def one_model(name: str, size: int, kwargs: dict) -> dict:
    """The row of one model: supported (with its largest relative difference) or refused (with the reason)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).double().eval()
    with torch.no_grad():          # zero-initialised heads (MLP-Mixer) and last norms of residual branches (ResNet's
        for p in model.parameters():   # zero_init_last) would make many effects exactly zero
            if not p.any():
                p.normal_(0, 0.1)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    row = {"model": name, "input": size, "special": special_layers(model)}
    t0 = time.perf_counter()
    try:
        chain = discovery.layer_chain(model)
        traced = TracedModel(model)
        traced.cache(x)
        for lower, upper in zip(chain, chain[1:]):
            if traced.parents(upper)[0] != _out_nodes(traced.modules[lower]):
                raise ValueError(f"layers {lower!r} -> {upper!r} are not connected channel by channel")
        discovery.check_chain_runs(traced, chain, 0, x)
    except (NotImplementedError, TypeError, ValueError, KeyError) as e:
        return {**row, "status": "refused", "reason": str(e).split("; give")[0], "seconds": time.perf_counter() - t0}
    row.update(status="supported", chain=len(chain), first=chain[0])
    worst, compared, largest = 0.0, [], 0.0
    traced.cache(x)
    for i in sorted({len(chain) // 2, max(0, len(chain) - 2)}):
        layer = chain[i]
        n = traced.parents(layer)[0]
        parents, targets = list(range(min(4, n))), list(range(min(3, _out_nodes(traced.modules[layer]))))
        iv = Intervention("soft", b=0.3, seed=i)
        betas = iv.beta((len(targets), n)).double()
        fast = treatment_effects(traced, layer, 0, targets, iv, parents=parents, betas=betas)
        slow = naive_effects(model, layer, 0, x, targets, iv, n, parents=parents, betas=betas)
        scale = float(slow.abs().max())
        largest = max(largest, scale)
        worst = max(worst, float((fast - slow).abs().max()) / scale if scale > 0 else float((fast - slow).abs().max()))
        compared.append(layer)
    if largest == 0:
        raise RuntimeError("every compared effect is zero: the comparison says nothing")
    return {**row, "layers_compared": compared, "max_relative_difference": worst, "largest_effect": largest,
            "seconds": time.perf_counter() - t0}


def table(rows: list[dict]) -> str:
    lines = ["| model | family | input | layers the kit handles specially | verdict | engine vs brute force: largest "
             "difference relative to the largest effect; largest effect (layers compared) |", "|---|---|---|---|---|---|"]
    families = {m: f for m, f, _, _ in MODELS}
    for r in rows:
        verdict = (f"supported: default chain of {r['chain']} layers from `{r['first']}`" if r["status"] == "supported"
                   else f"refused before any discovery: {r['reason']}" if r["status"] == "refused"
                   else f"**crashed**: {r['reason']}")
        diff = f"{r['max_relative_difference']:.1e}; {r['largest_effect']:.1e} ({', '.join(f'`{c}`' for c in r['layers_compared'])})" \
            if r["status"] == "supported" else "-"
        lines.append(f"| `{r['model']}` | {families.get(r['model'], '')} | {r['input']} px | "
                     f"{', '.join(r['special']) or '-'} | {verdict} | {diff} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks")
    ap.add_argument("--readme", type=Path, default=None)
    ap.add_argument("--models", nargs="*", default=None, help="a subset of the listed timm names")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    chosen = [m for m in MODELS if args.models is None or m[0] in args.models]
    rows = []
    for i, (name, _, size, kwargs) in enumerate(chosen, 1):
        try:
            row = one_model(name, size, kwargs)
        except Exception as e:  # noqa: BLE001 - a crash after the chain was accepted is recorded, then fails the run
            row = {"model": name, "input": size, "special": [], "status": "crashed",
                   "reason": f"{type(e).__name__}: {str(e)[:200]}"}
        rows.append(row)
        print(f"[{i}/{len(chosen)}] {name}: {row['status']}"
              + (f", max relative difference {row['max_relative_difference']:.1e}" if row["status"] == "supported"
                 else f" ({row['reason'][:120]})"), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "timm_families.json").write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))
    md = table(rows)
    (args.out / "timm_families.md").write_text(md)
    if args.readme:
        text = args.readme.read_text()
        head, rest = text.split(BEGIN)
        _, tail = rest.split(END)
        args.readme.write_text(f"{head}{BEGIN}\n{md}{END}{tail}")
    return 1 if any(r["status"] == "crashed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
