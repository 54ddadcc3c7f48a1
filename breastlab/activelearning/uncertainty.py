"""Uncertainty scores for active learning: test-time-augmentation disagreement of a lesion map, predictive entropy."""

from __future__ import annotations

import torch
from monai.inferers import SimpleInferer
from monai.transforms.utils import get_largest_connected_component_mask

from breastlab.networks.outputs import named_outputs

FLIPS = ((), (-1,), (-2,), (-2, -1))  # identity, left-right, up-down, both


@torch.no_grad()
def tta_probabilities(network: torch.nn.Module, image: torch.Tensor, inferer=SimpleInferer()) -> torch.Tensor:
    """Sigmoid maps of ``image`` (1, C, H, W) under the four flips, each flipped back: (4, K, H, W), the network run
    by ``inferer`` (a bundle's: its precision). A multi-task network (a dict, or packed) gives its ``seg`` logits."""
    batch = torch.cat([image.flip(dims) if dims else image for dims in FLIPS])
    logits = named_outputs(network, inferer(batch, network))
    logits = logits["seg"] if isinstance(logits, dict) else logits
    return torch.stack([z.flip(dims) if dims else z for z, dims in zip(logits, FLIPS)]).sigmoid()


def lesion_uncertainty(network: torch.nn.Module, image: torch.Tensor, inferer=SimpleInferer()) -> float:
    """How much the four flipped lesion masks (channel 0, > 0.5) disagree, in [0, 1] (0: they agree, or no lesion).

    1 - IoU of the flipped masks, so the score is relative to the predicted lesion (a pixel average of the map's
    variance grows with the lesion's size), times the share of the masks' union in its largest connected region: a
    map broken into many regions follows texture, as a barely trained model does on normal images.
    """
    masks = tta_probabilities(network, image, inferer)[:, 0] > 0.5
    union = masks.any(0)
    if not union.any():
        return 0.0
    disagreement = 1 - masks.all(0).sum().item() / union.sum().item()
    largest = get_largest_connected_component_mask(union, connectivity=2)
    return disagreement * largest.sum().item() / union.sum().item()


def predictive_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of class probabilities along the last axis (ln K for a uniform prediction)."""
    p = probabilities.clamp_min(1e-12)
    return -(p * p.log()).sum(-1)
