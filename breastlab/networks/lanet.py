"""LA-Net: joint classification and coarse lesion localization with lesion-aware attention (Fan et al., MedIA 2023).

Reimplemented from the method description. A backbone with four stages (:mod:`breastlab.networks.backbones`:
MONAI's ResNet from scratch, or EfficientNet-Lite from ImageNet, as the paper starts from ImageNet) gets one
:class:`LesionAwareAttention` block after each stage: a channel gate, then a spatial gate whose
pre-sigmoid map is the stage's 1-channel lesion map. The four stage maps are brought to one grid (``map_stride``:
image/32 as layer4 by default, or a finer stage's grid: finer maps average-pooled, coarser ones upsampled
bilinearly) and fused by a 1x1 conv 4→1 + batch norm into the lesion map M (returned as logits; the sigmoid is
applied where the classifier needs it). That batch norm's bias starts at the logit of ``map_prior``, the expected
lesion fraction of the grid (0.5: bias 0), as detection heads start at their prior (Lin et al. 2017): the batch
norm holds M's batch mean at its bias, which the optimiser moves by at most the learning rate per step.
The classifier sees ``f4 * (1 + sigmoid(M))``, M average-pooled to f4's grid, → global average pool → FC.

With ``lesion_attention=False`` the same class is the classification-only baseline (plain backbone → GAP → FC),
used for the 0 %-masks setting and for Grad-CAM (target layer ``backbone.layer4`` for a ResNet).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from breastlab.networks.backbones import staged_encoder
from breastlab.networks.outputs import OutputLayout, pack_outputs

__all__ = ["ChannelGate", "SpatialGate", "LesionAwareAttention", "LANet", "modulate"]

MAP_STRIDES = (4, 8, 16, 32)  # strides of the backbone's four stages


class ChannelGate(nn.Module):
    """CBAM-style channel gate: shared MLP C→C/r→C over global average and max pooling, summed, sigmoid.

    ``forward`` returns the gate, shape (B, C, 1, 1), values in [0, 1].
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + mx)


class SpatialGate(nn.Module):
    """Spatial gate: [max over channels, mean over channels] → conv 7x7 → BN → ReLU → conv 3x3 → 1 channel.

    ``logits`` returns the pre-sigmoid map (B, 1, H, W); ``forward`` returns the gate ``sigmoid(logits)``.
    """

    def __init__(self, hidden: int = 8, kernel_size: int = 7):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2, hidden, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return self.body(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


class LesionAwareAttention(nn.Module):
    """One stage: channel gate, then spatial gate. Returns (refined features, the stage's map as logits)."""

    def __init__(self, channels: int, reduction: int = 16, spatial_hidden: int = 8):
        super().__init__()
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialGate(spatial_hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * self.channel(x)
        stage_map = self.spatial.logits(x)
        return x * torch.sigmoid(stage_map), stage_map


def modulate(features: torch.Tensor, lesion_logits: torch.Tensor) -> torch.Tensor:
    """``f * (1 + sigmoid(M))``: the lesion map amplifies features in the lesion, never suppresses them."""
    return features * (1 + torch.sigmoid(lesion_logits))


class LANet(nn.Module):
    """LA-Net classifier with a coarse lesion map; input sides must be divisible by 32.

    ``forward`` returns ``{"cls": (B, num_classes) logits, "lesion_map": (B, 1, H/s, W/s) logits of M with
    s = ``map_stride`` (4, 8, 16 or 32), "stage_maps": [four (B, 1, H/4 .. H/32, ...) logits]}``; with
    ``lesion_attention=False`` only ``"cls"``. The stride changes no parameter: weights load either way.
    ``packed=True`` returns ``cls`` and ``lesion_map`` as one tensor (:mod:`breastlab.networks.outputs`,
    ``output_layout``), TorchScript-compatible.
    """

    __constants__ = ["lesion_attention", "packed"]  # TorchScript compiles only the branches they select

    def __init__(self, backbone: str = "resnet18", in_channels: int = 1, num_classes: int = 2,
                 lesion_attention: bool = True, reduction: int = 16, dropout: float = 0.0, map_stride: int = 32,
                 packed: bool = False, pretrained: bool = True, map_prior: float = 0.5):
        super().__init__()
        if map_stride not in MAP_STRIDES:
            raise ValueError(f"map_stride must be one of {MAP_STRIDES} (the stages' strides), got {map_stride}")
        self.lesion_attention, self.map_stage = lesion_attention, MAP_STRIDES.index(map_stride)
        self.packed = packed
        maps = {"lesion_map": 1} if lesion_attention else {}
        self.output_layout = OutputLayout(maps, {"cls": (num_classes,)})
        self.backbone = staged_encoder(backbone, in_channels, pretrained)
        channels = list(self.backbone.channels[1:])
        if lesion_attention:
            self.attention = nn.ModuleList(LesionAwareAttention(c, reduction) for c in channels)
            self.fuse = nn.Sequential(nn.Conv2d(len(channels), 1, 1, bias=False), nn.BatchNorm2d(1))
            nn.init.constant_(self.fuse[1].bias, math.log(map_prior / (1 - map_prior)))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels[-1], num_classes)

    def _classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)))

    def forward(self, x: torch.Tensor):
        if not self.lesion_attention:
            cls = self._classify(self.backbone(x)[-1])
            return cls if self.packed else {"cls": cls}
        b = self.backbone
        x = b.stem(x)
        x, map1 = self.attention[0](b.stage(0, x))
        x, map2 = self.attention[1](b.stage(1, x))
        x, map3 = self.attention[2](b.stage(2, x))
        x, map4 = self.attention[3](b.stage(3, x))
        stage_maps = [map1, map2, map3, map4]
        grid = stage_maps[self.map_stage].shape[-2:]
        lesion_map = self.fuse(torch.cat([_to_grid(m, grid) for m in stage_maps], dim=1))
        cls = self._classify(modulate(x, F.adaptive_avg_pool2d(lesion_map, x.shape[-2:])))
        if self.packed:
            return pack_outputs([lesion_map], [cls])
        return {"cls": cls, "lesion_map": lesion_map, "stage_maps": stage_maps}


def _to_grid(stage_map: torch.Tensor, grid: list[int]) -> torch.Tensor:
    """A stage map on ``grid``: average-pooled when finer, upsampled bilinearly when coarser."""
    if stage_map.shape[-1] >= grid[-1]:
        return F.adaptive_avg_pool2d(stage_map, grid)
    return F.interpolate(stage_map, size=grid, mode="bilinear", align_corners=False)
