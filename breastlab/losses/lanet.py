"""LA-Net's losses: the lesion map against masks on its coarse grid; stage 2's classification + pseudo-mask loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mask_to_grid(mask: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Soft target on a coarse grid: the fraction of lesion pixels (``mask > 0.5``) in each cell (area average).

    Soft targets keep small lesions that a ≥0.5 cut would erase at image/32; BCE accepts them as they are.
    """
    return F.adaptive_avg_pool2d((mask > 0.5).float(), tuple(size))


class LesionMapLoss(torch.nn.Module):
    """LA-Net stage 1: BCE between the lesion-map logits M (B, 1, h, w) and the mask on M's grid.

    Only images with ``has_mask`` (B,) count (mean over their pixels; 0 when none has one). ``mask`` is
    (B, 1, H, W) at any resolution, see :func:`mask_to_grid`. The last terms are kept in ``self.terms``.
    """

    def __init__(self):
        super().__init__()
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, lesion_logits: torch.Tensor, mask: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
        has_mask = has_mask.reshape(-1).bool()
        if has_mask.any():
            target = mask_to_grid(mask[has_mask], lesion_logits.shape[-2:]).to(lesion_logits.dtype)
            loss = F.binary_cross_entropy_with_logits(lesion_logits[has_mask], target)
        else:
            loss = lesion_logits.sum() * 0
        self.terms = {"mask": loss.detach(), "total": loss.detach()}
        return loss


class LANetStage2Loss(torch.nn.Module):
    """LA-Net stage 2: ``CE(cls, label) + mean(w * BCE(M, T))`` over all images and grid cells.

    ``T`` is the mask on M's grid (:func:`mask_to_grid`) with ``w = gt_weight`` where ``has_mask``, else the
    pseudo-mask ``1[sigmoid(M) >= threshold]`` with ``w = pseudo_weight``; pseudo-masks carry no gradient and
    come from ``pseudo_logits`` (e.g. a frozen stage-1 model) when given, else from M itself.
    ``label`` holds class indices (B,) or (B, 1). The last terms are kept in ``self.terms``.
    """

    def __init__(self, gt_weight: float = 1.0, pseudo_weight: float = 0.1, threshold: float = 0.8):
        super().__init__()
        self.gt_weight, self.pseudo_weight, self.threshold = gt_weight, pseudo_weight, threshold
        self.terms: dict[str, torch.Tensor] = {}

    def targets(self, lesion_logits: torch.Tensor, mask: torch.Tensor, has_mask: torch.Tensor,
                pseudo_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell targets T (B, 1, h, w) and per-image weights w (B, 1, 1, 1), both without gradient."""
        source = lesion_logits if pseudo_logits is None else pseudo_logits
        pseudo = (torch.sigmoid(source.detach()) >= self.threshold).to(lesion_logits.dtype)
        gt = mask_to_grid(mask, lesion_logits.shape[-2:]).to(lesion_logits.dtype)
        has_mask = has_mask.reshape(-1, 1, 1, 1).bool().to(lesion_logits.device)
        weight = torch.where(has_mask, self.gt_weight, self.pseudo_weight).to(lesion_logits.dtype)
        return torch.where(has_mask, gt, pseudo), weight

    def forward(self, cls_logits: torch.Tensor, lesion_logits: torch.Tensor, label: torch.Tensor,
                mask: torch.Tensor, has_mask: torch.Tensor, pseudo_logits: torch.Tensor | None = None) -> torch.Tensor:
        cls = F.cross_entropy(cls_logits, label.reshape(-1).long())
        target, weight = self.targets(lesion_logits, mask, has_mask, pseudo_logits)
        bce = F.binary_cross_entropy_with_logits(lesion_logits, target, reduction="none")
        mask_term = (weight * bce).mean()
        total = cls + mask_term
        self.terms = {"cls": cls.detach(), "mask": mask_term.detach(), "total": total.detach()}
        return total
