"""GLAM's weakly-supervised loss: image-level BCE of each prediction plus a sparsity prior on the saliency."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class GLAMLoss(torch.nn.Module):
    """GLAM's weakly-supervised loss on a :class:`~breastlab.networks.glam.GLAM` output dict and (B, classes) 0/1
    image labels: the BCE of every image prediction present (``global_prob``; with the local module also
    ``local_prob`` and the fused ``cls``) plus ``sparsity`` x the mean global saliency (most of a mammogram is
    not lesion). ``terms`` keeps the last value of each part and ``total``."""

    def __init__(self, sparsity: float = 1e-3):
        super().__init__()
        self.sparsity = sparsity
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, output: dict, target: torch.Tensor) -> torch.Tensor:
        target = target.float()
        terms = {"global": F.binary_cross_entropy(output["global_prob"], target),
                 "sparsity": self.sparsity * output["saliency"].mean()}
        if "local_prob" in output:
            terms["local"] = F.binary_cross_entropy(output["local_prob"], target)
            terms["fused"] = F.binary_cross_entropy(output["cls"], target)
        total = sum(terms.values())
        self.terms = {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}
        return total
