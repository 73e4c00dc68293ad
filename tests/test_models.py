import pytest
import torch

from causal_interp import models
from causal_interp.config import ConfigError


def test_lenet_matches_the_paper_architecture():
    net = models.LeNet()
    assert [n for n, _ in net.named_children()] == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                                   "flatten", "fc1", "relu3", "fc2", "relu4", "fc3"]
    assert (net.conv1.out_channels, net.conv1.kernel_size) == (6, (5, 5))
    assert (net.conv2.out_channels, net.fc1.out_features, net.fc2.out_features) == (16, 120, 84)
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_timm_model_gets_new_head():
    net = models.build_model("resnet18", num_classes=10)
    assert net.get_classifier().out_features == 10
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="unknown model 'resnet19'"):
        models.build_model("resnet19", 10)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        models.build_model("lenet", 10, in_chans=1, pretrained=True)


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = models.build_model("lenet", 10, in_chans=1)
    models.save_model(net, tmp_path / "m.pt", "lenet", 10, 1, extra={"image_size": 32})
    back = models.load_model(tmp_path / "m.pt")
    x = torch.randn(3, 1, 32, 32)
    assert torch.equal(net.eval()(x), back(x))
    with pytest.raises(FileNotFoundError, match="run its training stage"):
        models.load_model(tmp_path / "missing.pt")
