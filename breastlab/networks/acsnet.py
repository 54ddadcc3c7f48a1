"""ACSNet: multi-task breast-ultrasound lesion segmentation and classification (He et al., 2024).

Reimplemented from the method description. An encoder (``backbone``: MONAI's ResNet-18 from scratch, or
EfficientNet-Lite from ImageNet, :mod:`breastlab.networks.backbones`) gives features at 1/2, 1/4, 1/8, 1/16 and
1/32 of the input. A :class:`DeformableSpatialAttention` module refines the 1/16 and 1/8
encoder features (16² and 32² for a 256² input) before they are used as skips. A U-shaped decoder upsamples from
1/32, concatenating at every scale the skip scaled by a :class:`GateUnit`, and ends with a full-resolution stage and
a 1x1 segmentation head. The :class:`MultiScaleClassifier` pools encoder stages 3 and 4 and the first decoder stage
to the 1/32 grid, concatenates them, applies CBAM-style channel attention, then global average pooling and a
fully connected layer.

``use_dsa=False`` / ``use_gates=False`` remove the DSA modules / gate units (plain skips) for ablations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from breastlab.networks.backbones import staged_encoder
from breastlab.networks.deformable import ModulatedDeformConv2d
from breastlab.networks.outputs import OutputLayout, pack_outputs

__all__ = [
    "conv_bn_relu",
    "GateUnit",
    "DeformableSpatialAttention",
    "ChannelAttention",
    "MultiScaleClassifier",
    "ACSNet",
]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Conv (no bias) → batch norm → ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _resize(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    if list(x.shape[-2:]) == list(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class GateUnit(nn.Module):
    """Skip-connection gate: one scalar in [0, 1] per image scales the skip features.

    The skip and the (resized) decoder features are projected by 1x1 convs to ``hidden`` channels and summed;
    ReLU → conv 3x3 → sigmoid gives a two-channel map. The gate is the mean of the global average of channel 0
    and the global maximum of channel 1.
    """

    def __init__(self, skip_channels: int, decoder_channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(skip_channels // 4, 16)
        self.skip_proj = nn.Sequential(nn.Conv2d(skip_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden))
        self.decoder_proj = nn.Sequential(nn.Conv2d(decoder_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden))
        self.to_map = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(hidden, 2, 3, padding=1), nn.Sigmoid())

    def gate(self, skip: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        """Gate values, shape (B, 1, 1, 1), in [0, 1]."""
        maps = self.to_map(self.skip_proj(skip) + self.decoder_proj(_resize(decoder, skip.shape[-2:])))
        avg = maps[:, 0].mean(dim=(-2, -1))
        peak = maps[:, 1].amax(dim=(-2, -1))
        return (0.5 * (avg + peak)).view(-1, 1, 1, 1)

    def forward(self, skip: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        return skip * self.gate(skip, decoder)


class NoGate(nn.Module):
    """The skip as it is: :class:`GateUnit`'s place in the no-gates ablation."""

    def forward(self, skip: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        return skip


class DeformableSpatialAttention(nn.Module):
    """DSA: modulated deformable 3x3 conv → BN → ReLU, spatial attention, fusion with the input.

    The attention map is ``sigmoid(conv7x7([mean_c(d), max_c(d)]))`` of the deformable features ``d``; the output is
    ``conv1x1-BN-ReLU([x, d * attention])``, with as many channels as the input.
    """

    def __init__(self, channels: int, attention_kernel: int = 7):
        super().__init__()
        self.deform = ModulatedDeformConv2d(channels, channels, 3, padding=1, bias=False)
        self.deform_norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.attention = nn.Conv2d(2, 1, attention_kernel, padding=attention_kernel // 2)
        self.fuse = conv_bn_relu(2 * channels, channels, 1)

    def attention_map(self, d: torch.Tensor) -> torch.Tensor:
        """Spatial attention (B, 1, H, W) in [0, 1] from the channel mean and max of ``d``."""
        pooled = torch.cat([d.mean(dim=1, keepdim=True), d.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.attention(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.deform_norm(self.deform(x))
        return self.fuse(torch.cat([x, d * self.attention_map(d)], dim=1))


class ChannelAttention(nn.Module):
    """CBAM-style channel attention: shared MLP C→C/r→C over global average and max pooling, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, C, 1, 1) in [0, 1]."""
        return torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))


class MultiScaleClassifier(nn.Module):
    """Features of several scales → average-pooled to the coarsest grid → concatenated → channel attention →
    global average pooling → dropout → FC."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, reduction: int = 16, dropout: float = 0.2):
        super().__init__()
        channels = sum(in_channels)
        self.attention = ChannelAttention(channels, reduction)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        for f in features:
            if f.shape[-2] * f.shape[-1] < size[0] * size[1]:
                size = f.shape[-2:]
        x = torch.cat([F.adaptive_avg_pool2d(f, size) for f in features], dim=1)
        x = x * self.attention(x)
        return self.fc(self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class DecoderBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip, two conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.convs = nn.Sequential(
            conv_bn_relu(in_channels + skip_channels, out_channels), conv_bn_relu(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([_resize(x, skip.shape[-2:]), skip], dim=1))


class ACSNet(nn.Module):
    """Encoder, DSA at 1/16 and 1/8, gated skips, U-shaped decoder, multi-scale attention classifier.

    ``forward(x)`` with ``x`` (B, in_channels, H, W), H and W divisible by 32, returns
    ``{"seg": (B, seg_channels, H, W) logits, "cls": (B, num_classes) logits}``; with ``packed=True`` both as one
    tensor (:mod:`breastlab.networks.outputs`, ``output_layout``), TorchScript-compatible.
    """

    __constants__ = ["packed"]

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        seg_channels: int = 1,
        use_dsa: bool = True,
        use_gates: bool = True,
        backbone: str = "resnet18",
        pretrained: bool = True,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        dropout: float = 0.2,
        packed: bool = False,
    ):
        super().__init__()
        if len(decoder_channels) != 5:
            raise ValueError("decoder_channels needs 5 entries (1/16, 1/8, 1/4, 1/2, 1/1)")
        self.use_dsa, self.use_gates, self.packed = use_dsa, use_gates, packed
        self.output_layout = OutputLayout({"seg": seg_channels}, {"cls": (num_classes,)})
        self.encoder = staged_encoder(backbone, in_channels, pretrained)
        encoder_channels = self.encoder.channels
        skip_channels = encoder_channels[3::-1]  # stage 3, 2, 1, stem
        self.dsa = nn.ModuleList(DeformableSpatialAttention(c) if use_dsa else nn.Identity() for c in skip_channels[:2])
        inputs = (encoder_channels[4], *decoder_channels[:3])
        self.gates = nn.ModuleList(GateUnit(s, d) if use_gates else NoGate() for s, d in zip(skip_channels, inputs))
        self.decoder = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(inputs, skip_channels, decoder_channels[:4])
        )
        self.final = conv_bn_relu(decoder_channels[3], decoder_channels[4])
        self.seg_head = nn.Conv2d(decoder_channels[4], seg_channels, 1)
        self.classifier = MultiScaleClassifier(
            (encoder_channels[3], encoder_channels[4], decoder_channels[0]), num_classes, dropout=dropout
        )

    def _skips(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Skips from deep to shallow (stages 3 and 2 through the DSA modules; stage 1, stem)."""
        return [self.dsa[0](features[3]), self.dsa[1](features[2]), features[1], features[0]]

    def forward(self, x: torch.Tensor):
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"ACSNet needs H and W divisible by 32, got {x.shape[-2:]}")
        features = self.encoder(x)
        d = features[4]
        stages: list[torch.Tensor] = []
        skips = self._skips(features)
        for i, (block, gate) in enumerate(zip(self.decoder, self.gates)):
            d = block(d, gate(skips[i], d))
            stages.append(d)
        seg = self.seg_head(self.final(_resize(d, x.shape[-2:])))
        cls = self.classifier([features[3], features[4], stages[0]])
        return pack_outputs([seg], [cls]) if self.packed else {"seg": seg, "cls": cls}
