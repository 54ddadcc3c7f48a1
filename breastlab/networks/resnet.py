"""MONAI's ResNet feature extractor made TorchScript-compatible (the same modules, parameters and outputs)."""

from __future__ import annotations

import torch
from monai.networks.nets.resnet import ResNetFeatures
from torch import nn


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


def resnet_features(name: str = "resnet18", in_channels: int = 1) -> ResNetFeatures:
    """A 2D ``ResNetFeatures(name)`` (random initialisation) whose "A" shortcuts are :class:`ZeroPadShortcut`."""
    features = ResNetFeatures(name, pretrained=False, spatial_dims=2, in_channels=in_channels)
    for block in features.modules():
        shortcut = getattr(block, "downsample", None)
        if shortcut is not None and not isinstance(shortcut, nn.Module):
            block.downsample = ZeroPadShortcut(shortcut.keywords["planes"], shortcut.keywords["stride"])
    return features
