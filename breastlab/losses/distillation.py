"""T2KD's segmentation losses: class-balanced BCE + soft Dice, and soft distillation from a teacher's maps.

Segmentation logits have shape (B, 1, H, W): one sigmoid channel, lesion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss


class WeightBalanceLoss(torch.nn.Module):
    """Per-image class-balanced BCE plus soft Dice, so that a small lesion weighs as much as its background.

    In an image with ``N`` pixels of which ``N_f`` are lesion, lesion pixels get weight ``N / (2 N_f)``
    and background pixels ``N / (2 (N - N_f))``: each side contributes half of the image's BCE.
    Weights are capped at ``max_weight``; an image without lesion (normal) keeps weight 1 everywhere.
    """

    def __init__(self, dice_weight: float = 1.0, max_weight: float = 50.0):
        super().__init__()
        self.dice_weight = dice_weight
        self.max_weight = max_weight
        self.dice = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)

    def pixel_weights(self, target: torch.Tensor) -> torch.Tensor:
        pixels = target[0].numel()
        lesion = target.flatten(1).sum(1).view(-1, 1, 1, 1)
        has_lesion = lesion > 0
        w_lesion = pixels / (2 * lesion.clamp(min=1))
        w_background = torch.where(has_lesion, pixels / (2 * (pixels - lesion).clamp(min=1)), torch.ones_like(lesion))
        weights = torch.where(target > 0.5, w_lesion, w_background)
        return weights.clamp(max=self.max_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, target, weight=self.pixel_weights(target))
        return bce + self.dice_weight * self.dice(logits, target)


class SoftDistillationLoss(torch.nn.Module):
    """Pixel-wise KL(teacher || student) of temperature-softened sigmoid maps, times ``T^2``.

    ``mask`` (B,) selects the images that have a teacher; the result is the mean over their pixels
    (0 when no image has one).
    """

    def __init__(self, temperature: float = 2.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        t = self.temperature
        log_s1, log_s0 = F.logsigmoid(student_logits / t), F.logsigmoid(-student_logits / t)
        p_t = torch.sigmoid(teacher_logits / t)
        log_t1, log_t0 = F.logsigmoid(teacher_logits / t), F.logsigmoid(-teacher_logits / t)
        kl = p_t * (log_t1 - log_s1) + (1 - p_t) * (log_t0 - log_s0)
        per_image = kl.flatten(1).mean(1)
        if mask is not None:
            if not mask.any():
                return student_logits.sum() * 0
            per_image = per_image[mask]
        return per_image.mean() * t * t
