"""Uncertainty scores for active learning: test-time-augmentation variance and predictive entropy."""

from __future__ import annotations

import torch
from monai.inferers import SimpleInferer

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


def tta_variance(network: torch.nn.Module, image: torch.Tensor, inferer=SimpleInferer()) -> float:
    """Mean over pixels of the variance of the four flipped predictions (0 when they all agree)."""
    return tta_probabilities(network, image, inferer).var(0, unbiased=False).mean().item()


def predictive_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of class probabilities along the last axis (ln K for a uniform prediction)."""
    p = probabilities.clamp_min(1e-12)
    return -(p * p.log()).sum(-1)
