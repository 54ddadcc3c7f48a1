"""GLAM: global-local activation maps for weakly-supervised lesion localization on mammograms (Liu et al.,
MIDL 2021), reimplemented from the method description with the residual blocks of the end-to-end classifier and
random initialisation.

:class:`GlobalModule` sees the whole (downsampled) image and gives one sigmoid saliency map per class at three
scales, each top-k pooled into image probabilities. :func:`select_patches` greedily takes the most salient
windows. :class:`LocalModule` looks at those windows at full resolution and gives fine saliency, pooled per patch
and aggregated over patches by gated attention. :class:`GLAM` fuses the two maps at full resolution; its image
prediction is the top-k pooled fused map. Classes are independent (sigmoid): benign, malignant; normal is
neither. :class:`TrunkAutoencoder` pretrains the global trunk without labels (restoring corrupted images).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from breastlab.networks.end2end import make_trunk, trunk_state_dict
from breastlab.networks.outputs import OutputLayout, pack_outputs

__all__ = ["top_k_pool", "breast_support", "select_patches", "crop_patches", "GlobalModule", "LocalModule", "GLAM",
           "TrunkAutoencoder"]


def top_k_pool(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, C, H, W) maps → (B, C): the mean of each map's top ``fraction`` of values (at least one)."""
    flat = maps.flatten(2)
    k = max(1, int(round(fraction * flat.shape[-1])))
    return flat.topk(k, dim=-1).values.mean(-1)


class GlobalOutput(NamedTuple):
    maps: list[torch.Tensor]  # (B, classes, h_s, w_s) sigmoid maps, finest first
    saliency: torch.Tensor  # their mean at the finest scale
    prob: torch.Tensor  # (B, classes) mean over scales of the top-k pooled maps


class GlobalModule(nn.Module):
    """Residual trunk (total stride ``2 ** len(channels)``), or with ``backbone`` an ImageNet-initialised
    EfficientNet-Lite (stride 32, :class:`~breastlab.networks.end2end.PretrainedTrunk`), with a 1x1 saliency head
    on each of its last ``scales`` levels; ``forward`` gives a :class:`GlobalOutput`."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128, 256), num_classes: int = 2,
                 scales: int = 3, top_k: float = 0.02, backbone: str | None = None, pretrained: bool = True):
        super().__init__()
        self.trunk = make_trunk(in_channels, channels, backbone, pretrained)
        levels = list(self.trunk.encoder.out_channels) if backbone else list(channels)
        if not 1 <= scales <= len(levels):
            raise ValueError(f"scales must be 1..{len(levels)}, got {scales}")
        self.heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in levels[-scales:])
        self.scales, self.top_k = scales, top_k

    def forward(self, x: torch.Tensor, support: Optional[torch.Tensor] = None) -> GlobalOutput:
        """``support`` (B, 1, H, W) in [0, 1]: where saliency may be, each map multiplied by its share of a cell."""
        features = self.trunk.levels(x)
        first = len(features) - self.scales
        maps: list[torch.Tensor] = []
        for i, head in enumerate(self.heads):
            m = head(features[first + i]).float().sigmoid()  # probabilities in float32 under autocast
            if support is not None:
                m = m * F.interpolate(support, size=m.shape[-2:], mode="area")
            maps.append(m)
        size = maps[0].shape[-2:]
        resized = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        prob = torch.stack([top_k_pool(m, self.top_k) for m in maps]).mean(0)
        return GlobalOutput(maps, torch.stack(resized).mean(0), prob)


def breast_support(x: torch.Tensor, margin: int) -> torch.Tensor:
    """(B, C, H, W) image whose background is 0 (``MaskBreastd``) → (B, 1, H, W): 1 on the breast eroded by
    ``margin`` pixels (the skin line and the film's edges left out), else 0."""
    inside = (x.amax(1, keepdim=True) > 0).float()
    if margin > 0:  # a square's erosion, as one along rows then one along columns
        inside = -F.max_pool2d(-inside, (2 * margin + 1, 1), stride=1, padding=(margin, 0))
        inside = -F.max_pool2d(-inside, (1, 2 * margin + 1), stride=1, padding=(0, margin))
    return inside


def select_patches(saliency: torch.Tensor, image_size: list[int], patch_size: int, n: int) -> torch.Tensor:
    """Greedy patch selection: (B, n, 2) top-left ``(row, col)`` corners, in pixels of an image of
    ``image_size`` (rows, cols), of ``n`` windows of ``patch_size`` pixels. Each is centred on the highest
    value of ``saliency`` (B, C, h, w; the maximum over classes) left after the windows already taken are
    suppressed, and shifted to lie inside the image."""
    rows, cols = int(image_size[0]), int(image_size[1])
    if patch_size > min(rows, cols):
        raise ValueError(f"patch_size {patch_size} is larger than the {rows} x {cols} image")
    score = saliency.detach().amax(1).clone()  # (B, h, w)
    h, w = score.shape[-2], score.shape[-1]
    scale_r, scale_c = rows / h, cols / w
    corners = torch.zeros(score.shape[0], n, 2, dtype=torch.long)
    for b in range(score.shape[0]):
        for i in range(n):
            cell = int(score[b].flatten().argmax())
            r, c = (cell // w + 0.5) * scale_r, (cell % w + 0.5) * scale_c
            top = min(max(int(round(r - patch_size / 2)), 0), rows - patch_size)
            left = min(max(int(round(c - patch_size / 2)), 0), cols - patch_size)
            corners[b, i, 0], corners[b, i, 1] = top, left
            r0, c0 = int(top / scale_r), int(left / scale_c)
            r1, c1 = int(-(-(top + patch_size) // scale_r)), int(-(-(left + patch_size) // scale_c))
            score[b, r0:r1, c0:c1] = -float("inf")
    return corners


def crop_patches(image: torch.Tensor, corners: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) image, (B, n, 2) corners → (B * n, C, patch_size, patch_size) patches, image-major."""
    patches: list[torch.Tensor] = []
    for b in range(image.shape[0]):
        for i in range(corners.shape[1]):
            r, c = int(corners[b, i, 0]), int(corners[b, i, 1])
            patches.append(image[b, :, r:r + patch_size, c:c + patch_size])
    return torch.stack(patches)


class LocalModule(nn.Module):
    """A lighter residual trunk on full-resolution patches (stride ``2 ** len(channels)``) with a 1x1 saliency
    head. ``forward(patches, n)`` with (B * n, C, p, p) patches gives ``{"maps": (B * n, classes, p/s, p/s)
    sigmoid maps, "patch_prob": (B, n, classes) top-k pooled per patch, "attention": (B, n) gated attention
    weights, "prob": (B, classes) the attention-weighted patch probabilities}``."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64), num_classes: int = 2,
                 top_k: float = 0.05, attention_dim: int = 64):
        super().__init__()
        self.trunk = make_trunk(in_channels, channels)
        self.head = nn.Conv2d(channels[-1], num_classes, 1)
        self.attention_v = nn.Sequential(nn.Linear(channels[-1], attention_dim), nn.Tanh())
        self.attention_u = nn.Sequential(nn.Linear(channels[-1], attention_dim), nn.Sigmoid())
        self.attention_w = nn.Linear(attention_dim, 1)
        self.top_k = top_k

    def forward(self, patches: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
        features = self.trunk(patches)
        maps = self.head(features).float().sigmoid()
        patch_prob = top_k_pool(maps, self.top_k).view(-1, n, maps.shape[1])
        pooled = features.mean(dim=(2, 3))
        scores = self.attention_w(self.attention_v(pooled) * self.attention_u(pooled)).view(-1, n)
        attention = scores.softmax(-1)
        prob = (attention.unsqueeze(-1) * patch_prob).sum(1)
        return {"maps": maps, "patch_prob": patch_prob, "attention": attention, "prob": prob}


class GLAM(nn.Module):
    """Global module on the image average-pooled by ``global_scale``, ``n_patches`` greedy patches of ``patch_size``
    pixels for the local module at full resolution, and the two maps fused at full resolution.

    ``forward(x)`` on a (B, C, H, W) image gives a flat dict (batch first, so MONAI can decollate it):
    ``global_prob`` and ``saliency`` of the global module; ``local_prob``, ``corners`` (B, n, 2), ``patch_prob``
    (B, n, classes) and ``attention`` (B, n) of the patches;
    ``fused``: (B, classes, H, W), the global saliency upsampled, inside each patch the mean of the global and the
    local map (the higher value where patches overlap); ``cls``: (B, classes) the prediction, the top-k pooled
    fused map; ``heatmap``: (B, 1, H, W) its maximum over classes. ``stage="global"`` runs the global module only
    (its prediction and upsampled saliency as ``cls`` and ``heatmap``); ``stage="local"`` freezes the global module
    (no gradients, batch-norm statistics kept) while the local module learns. ``global_trunk_weights`` (a path,
    state dict or module with ``trunk.*`` weights, e.g. a :class:`TrunkAutoencoder`) initialises the global trunk;
    ``global_backbone`` (``"efficientnet-lite0"``, ...) makes it ImageNet-initialised instead (``pretrained``).
    ``skin_margin`` > 0: saliency only on the breast (input > 0) eroded by that many pixels, in the global maps
    (and so the patches chosen) and the fused map; the skin line and the film's edges cannot carry it.
    ``packed=True`` returns what the bundle serves, ``heatmap``, ``cls``, ``corners`` and ``patch_prob``, as one
    tensor (:mod:`breastlab.networks.outputs`, ``output_layout``), TorchScript-compatible."""

    __constants__ = ["stage", "packed"]

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 global_channels: Sequence[int] = (16, 32, 64, 128, 256), local_channels: Sequence[int] = (16, 32, 64),
                 global_scale: int = 2, patch_size: int = 128, n_patches: int = 4, top_k: float = 0.02,
                 local_top_k: float = 0.05, stage: str = "joint",
                 global_trunk_weights: str | Path | Mapping | nn.Module | None = None, packed: bool = False,
                 global_backbone: str | None = None, pretrained: bool = True, skin_margin: int = 0):
        super().__init__()
        if stage not in ("global", "local", "joint"):
            raise ValueError(f"stage must be 'global', 'local' or 'joint', got {stage!r}")
        self.global_module = GlobalModule(in_channels, global_channels, num_classes, top_k=top_k,
                                          backbone=global_backbone, pretrained=pretrained)
        self.local_module = LocalModule(in_channels, local_channels, num_classes, top_k=local_top_k)
        if global_trunk_weights is not None:
            self.global_module.trunk.load_state_dict(trunk_state_dict(global_trunk_weights))
        self.global_scale, self.patch_size, self.n_patches, self.top_k = global_scale, patch_size, n_patches, top_k
        self.stage, self.packed, self.skin_margin = stage, packed, skin_margin
        self.global_module.requires_grad_(stage != "local")
        windows = {} if stage == "global" else {"corners": (n_patches, 2), "patch_prob": (n_patches, num_classes)}
        self.output_layout = OutputLayout({"heatmap": 1}, {"cls": (num_classes,), **windows})

    def train(self, mode: bool = True) -> GLAM:
        super().train(mode)
        if self.stage == "local":
            self.global_module.eval()
        return self

    def forward(self, x: torch.Tensor):
        small = F.avg_pool2d(x, self.global_scale) if self.global_scale > 1 else x
        support: Optional[torch.Tensor] = None
        if self.skin_margin > 0:
            support = breast_support(x, self.skin_margin)
        found = self.global_module(small, support)
        if self.stage == "global":
            coarse = F.interpolate(found.saliency, size=x.shape[-2:], mode="bilinear", align_corners=False)
            heatmap = coarse.amax(1, keepdim=True)
            if self.packed:
                return pack_outputs([heatmap], [found.prob])
            return {"global_prob": found.prob, "saliency": found.saliency, "cls": found.prob, "heatmap": heatmap}
        corners = select_patches(found.saliency, x.shape[-2:], self.patch_size, self.n_patches).to(x.device)
        local = self.local_module(crop_patches(x, corners, self.patch_size), self.n_patches)
        fused = self.fuse(found.saliency, local["maps"], corners, x.shape[-2:])
        if support is not None:
            fused = fused * support
        cls, heatmap = top_k_pool(fused, self.top_k), fused.amax(1, keepdim=True)
        if self.packed:
            return pack_outputs([heatmap], [cls, corners, local["patch_prob"]])
        return {"global_prob": found.prob, "saliency": found.saliency, "local_prob": local["prob"],
                "patch_prob": local["patch_prob"], "corners": corners, "attention": local["attention"],
                "fused": fused, "cls": cls, "heatmap": heatmap}

    def fuse(self, saliency: torch.Tensor, local_maps: torch.Tensor, corners: torch.Tensor,
             size: list[int]) -> torch.Tensor:
        coarse = F.interpolate(saliency, size=size, mode="bilinear", align_corners=False)
        p = self.patch_size
        fine = F.interpolate(local_maps, size=[p, p], mode="bilinear", align_corners=False)
        rows, cols = coarse.shape[-2], coarse.shape[-1]
        fused: list[torch.Tensor] = []
        for b in range(coarse.shape[0]):
            placed: list[torch.Tensor] = []
            covered = torch.zeros_like(coarse[b], dtype=torch.bool)
            for i in range(corners.shape[1]):
                r, c = int(corners[b, i, 0]), int(corners[b, i, 1])
                mean = (coarse[b, :, r:r + p, c:c + p] + fine[b * self.n_patches + i]) / 2
                placed.append(F.pad(mean, [c, cols - c - p, r, rows - r - p]))  # zeros outside the patch
                covered[:, r:r + p, c:c + p] = True
            fused.append(torch.where(covered, torch.stack(placed).amax(0), coarse[b]))
        return torch.stack(fused)


class TrunkAutoencoder(nn.Module):
    """Self-supervised pretraining of the global module's trunk: ``trunk`` (as :class:`GlobalModule`'s) → a linear
    decoder (1x1 conv to ``stride ** 2`` values per location, pixel shuffle) reconstructing the image, cropped to
    its size, from the features at stride ``2 ** len(channels)``. Trained to restore images corrupted by coarse
    dropout and shuffling; the linear decoder leaves the work to the trunk, whose ``trunk.*`` weights then start
    :class:`GLAM`."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128, 256)):
        super().__init__()
        self.trunk = make_trunk(in_channels, channels)
        stride = 2 ** len(channels)
        self.decoder = nn.Sequential(nn.Conv2d(channels[-1], in_channels * stride ** 2, 1), nn.PixelShuffle(stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.trunk(x))[..., :x.shape[-2], :x.shape[-1]]  # sizes not divisible by the stride
