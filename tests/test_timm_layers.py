"""Layers beyond plain convs: vision transformers (attention, channels-last MLPs, shapes read upstream of an
intervention), timm's weight-standardised convs (by their effective weights) and dynamic "same" padding, each
against the brute force; and a layer the engine cannot run is named before any discovery."""
import copy

import pytest
import timm
import torch
from timm.layers import Conv2dSame, ScaledStdConv2d, StdConv2d, StdConv2dSame
from torch import nn

from causal_interp.discovery import LayerRunError, discover_class_graph, layer_chain
from causal_interp.interventions import (Intervention, TracedModel, effective_weight, naive_effects,
                                         treatment_effects)
from causal_interp.masking import LayerMask, masked

HARD, SOFT = Intervention("hard"), Intervention("soft", b=0.3, seed=3)


def tiny_vit(**kw):
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, embed_dim=16,
                             depth=2, num_heads=2, num_classes=4, **kw).eval()


def compare(model, x, layer, targets, iv, class_index=1):
    traced = TracedModel(model)
    traced.cache(x)
    n = traced.parents(layer)[0]
    betas = None if iv.mode == "constant" else iv.beta((len(targets), n))
    fast = treatment_effects(traced, layer, class_index, targets, iv, betas=betas, max_batch=8)   # chunks of parents
    slow = naive_effects(model, layer, class_index, x, targets, iv, n, betas=betas)
    assert fast.abs().max() > 1e-6, "the comparison is not vacuous"
    return float((fast - slow).abs().max() / slow.abs().max())


@pytest.mark.parametrize("layer,targets", [("blocks.0.attn.qkv", [1, 20, 40]), ("blocks.0.attn.proj", [0, 3]),
                                           ("blocks.1.mlp.fc1", [2, 5]), ("blocks.1.mlp.fc2", [0, 7]),
                                           ("patch_embed.proj", [1, 2]), ("head", [1])])
@pytest.mark.parametrize("iv", [HARD, SOFT], ids=["hard", "soft"])
def test_vision_transformer_layers_match_the_brute_force(layer, targets, iv):
    assert compare(tiny_vit(), torch.randn(3, 3, 16, 16), layer, targets, iv) < 1e-4


class MinusOneAttention(nn.Module):
    """Self-attention written with the batch size read from its input and `-1` reshapes: reusing the cached batch
    size on a batch of several interventions would be silently wrong, not a crash."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b = x.shape[0]
        qkv = self.qkv(x).reshape(b, -1, 3, self.heads, x.shape[-1] // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, -1, x.shape[-1]))


class MinusOneViT(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.embed, self.norm = nn.Conv2d(1, dim, 4, stride=4), nn.LayerNorm(dim)
        self.attn, self.fc1, self.fc2, self.head = MinusOneAttention(dim), nn.Linear(dim, 16), nn.Linear(16, dim), nn.Linear(dim, 3)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = x + self.attn(self.norm(x))
        x = x + self.fc2(torch.relu(self.fc1(x)))
        return self.head(x.mean(1))


@pytest.mark.parametrize("layer,targets", [("attn.qkv", [0, 9, 17]), ("attn.proj", [1, 2]), ("fc1", [3])])
def test_attention_written_with_minus_one_reshapes_is_exact(layer, targets):
    torch.manual_seed(1)
    assert compare(MinusOneViT().eval(), torch.randn(4, 1, 12, 12), layer, targets, HARD) < 1e-4


def test_vit_chain_runs_along_the_residual_stream_and_discovers_a_graph():
    model = tiny_vit()
    chain = layer_chain(model)
    assert chain == ["patch_embed.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.mlp.fc1",
                     "blocks.1.mlp.fc2", "head"]
    g = discover_class_graph(model, torch.randn(6, 3, 16, 16), 2, test="paired")
    assert [lg.layer for lg in g.layers] == chain[::-1] and g.layers[0].n_parents == 16
    chain = ["blocks.0.attn.qkv", "blocks.0.attn.proj", "head"]      # attention layers, given explicitly: refused
    with pytest.raises(ValueError, match="not connected channel by channel"):   # 3C outputs are not C parents
        discover_class_graph(model, torch.randn(6, 3, 16, 16), 2, layers=chain, test="paired")


class PlainNet(nn.Module):
    def __init__(self, conv1, conv2):
        super().__init__()
        self.conv1, self.conv2, self.fc = conv1, conv2, nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean((2, 3)))


def as_plain_conv(module):
    """A plain nn.Conv2d applying `module`'s effective weight with its padding: the independent brute force."""
    plain = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                      module.padding, module.dilation, module.groups, bias=module.bias is not None)
    plain.weight.data = effective_weight(module).detach().clone()
    if module.bias is not None:
        plain.bias.data = module.bias.detach().clone()
    return plain


@pytest.mark.parametrize("conv", [StdConv2d, ScaledStdConv2d])
def test_weight_standardised_convs_are_exact_on_their_effective_weights(conv):
    torch.manual_seed(2)
    model = PlainNet(conv(2, 5, 3, padding=1), conv(5, 6, 3, padding=1)).eval()
    plain = PlainNet(as_plain_conv(model.conv1), as_plain_conv(model.conv2)).eval()
    plain.fc = model.fc
    x = torch.randn(4, 2, 8, 8)
    assert torch.allclose(model(x), plain(x), atol=1e-5)
    for layer, targets in [("conv2", [1, 4]), ("conv1", [0, 2, 3])]:
        for iv in (HARD, SOFT):
            traced = TracedModel(model)
            traced.cache(x)
            betas = iv.beta((len(targets), traced.parents(layer)[0]))
            fast = treatment_effects(traced, layer, 0, targets, iv, betas=betas)
            brute = naive_effects(plain, layer, 0, x, targets, iv, traced.parents(layer)[0], betas=betas)
            assert torch.allclose(fast, brute, atol=1e-4) and fast.abs().max() > 1e-4
            assert torch.allclose(naive_effects(model, layer, 0, x, targets, iv, traced.parents(layer)[0], betas=betas),
                                  brute, atol=1e-4)
    # masking zeroes the effective weight's entries, not the stored ones (which would re-standardise the filter)
    mask = [LayerMask("conv2", [0, 3], [1, 2])]
    with masked(model, mask, {"conv2": 5}):
        out = model(x)
    with masked(plain, mask, {"conv2": 5}):
        assert torch.allclose(out, plain(x), atol=1e-5)
    assert torch.allclose(model(x), plain(x), atol=1e-5) and "forward" not in vars(model.conv2)   # restored


@pytest.mark.parametrize("make", [lambda: Conv2dSame(5, 6, 3, stride=2),
                                  lambda: StdConv2dSame(5, 6, 4, stride=2, padding="SAME")],
                         ids=["Conv2dSame", "StdConv2dSame"])
def test_dynamic_same_padding_is_exact(make):
    torch.manual_seed(3)
    model = PlainNet(nn.Conv2d(2, 5, 3, padding=1), make()).eval()
    reference = copy.deepcopy(model)
    x = torch.randn(3, 2, 9, 9)                      # odd size: asymmetric "same" padding
    for iv in (HARD, SOFT):
        assert compare(model, x, "conv2", [0, 5], iv, class_index=0) < 1e-4
        assert compare(model, x, "conv1", [1, 2], iv, class_index=0) < 1e-4
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


class PerExampleBuffer(nn.Module):
    """A model whose head adds a buffer with one row per example of the batch it was built for: the engine cannot
    run it on a batch of interventions."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(2, 4, 3), nn.Linear(4, 3)
        self.register_buffer("offset", torch.zeros(2, 4))

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)) + self.offset)


def test_a_layer_the_engine_cannot_run_is_named_before_any_discovery():
    with pytest.raises(LayerRunError, match="layer 'conv': the engine cannot run an intervention on it"):
        discover_class_graph(PerExampleBuffer().eval(), torch.randn(2, 2, 6, 6), 0, test="paired")


def test_masks_on_a_standardised_conv_accumulate_nest_and_are_restored():
    torch.manual_seed(5)
    model = PlainNet(StdConv2d(2, 5, 3, padding=1), StdConv2d(5, 6, 3, padding=1)).eval()
    plain = PlainNet(as_plain_conv(model.conv1), as_plain_conv(model.conv2)).eval()
    plain.fc = model.fc
    x = torch.randn(3, 2, 8, 8)
    first, second = LayerMask("conv2", [0], [1]), LayerMask("conv2", [3], None)
    with masked(model, [first, second], {"conv2": 5}), masked(plain, [first, second], {"conv2": 5}):
        assert torch.allclose(model(x), plain(x), atol=1e-5)            # both masks, not the last one only
    with masked(model, [first], {"conv2": 5}), masked(plain, [first], {"conv2": 5}):
        with masked(model, [second], {"conv2": 5}), masked(plain, [second], {"conv2": 5}):
            assert torch.allclose(model(x), plain(x), atol=1e-5)        # the inner block keeps the outer mask
        assert torch.allclose(model(x), plain(x), atol=1e-5)            # and gives it back on exit
    assert torch.allclose(model(x), plain(x), atol=1e-5) and "forward" not in vars(model.conv2)
    with pytest.raises(KeyError):
        with masked(model, [first, LayerMask("nope", [0])], {"conv2": 5}):
            pass
    assert "forward" not in vars(model.conv2)                          # restored after an error too


class MixesTheBatch(nn.Module):
    """Centres every activation on the batch mean: a batch of several interventions is not several batches."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 3, 3), nn.Conv2d(3, 3, 3), nn.Linear(3, 2)

    def forward(self, x):
        y = self.c2(torch.relu(self.c1(x)))
        return self.fc((y - y.mean(0)).mean((2, 3)))


def test_a_model_that_mixes_the_batch_is_refused_before_any_discovery():
    torch.manual_seed(6)
    with pytest.raises(LayerRunError, match="effects differ when interventions share a batch"):
        discover_class_graph(MixesTheBatch().eval(), torch.randn(4, 1, 7, 7), 0, test="paired")


class Noisy(nn.Module):
    """A forward pass with fresh noise: torch.fx replays it, but not to the model's own logits."""

    def __init__(self):
        super().__init__()
        self.c1, self.fc = nn.Conv2d(1, 3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.fc((self.c1(x) + torch.randn_like(self.c1(x))).mean((2, 3)))


def test_a_forward_pass_the_trace_does_not_replay_is_refused():
    with pytest.raises(LayerRunError, match="logits differ from the model's own"):
        discover_class_graph(Noisy().eval(), torch.randn(4, 1, 7, 7), 0, test="paired")


def test_a_vit_is_a_params_change_model_args_reach_timm_and_the_saved_model(tmp_path):
    from causal_interp import config, models

    cfg = config.from_dict(config.TrainConfig, {"dataset": "cifar10", "model": "vit_tiny_patch16_224",
                                                "model_args": {"img_size": 32, "patch_size": 8}}, "arch_vit")
    model = models.build_model(cfg.model, 10, 3, model_args=cfg.model_args)
    assert model.patch_embed.proj.kernel_size == (8, 8) and model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    models.save_model(model, tmp_path / "vit.pt", cfg.model, 10, 3, model_args=cfg.model_args)
    again = models.load_model(tmp_path / "vit.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(config.ConfigError, match="arch_vit.model_args: timm model 'resnet18' does not take"):
        config.from_dict(config.TrainConfig, {"dataset": "cifar10", "model": "resnet18",
                                              "model_args": {"patch_size": 8}}, "arch_vit")
