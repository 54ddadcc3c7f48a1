"""BreastLab losses that MONAI does not provide (referenced from bundle configs with ``_target_``).

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


class UncertaintyWeightedLoss(torch.nn.Module):
    """Learned uncertainty weighting of task losses: ``Σᵢ 0.5 / σᵢ² · Lᵢ + log(1 + σᵢ²)``.

    The parameter ``log_var`` holds ``sᵢ = log σᵢ²`` (one per task, initialised to ``2 log init_sigma``, so σ = 1 by
    default); the regulariser ``log(1 + σ²)`` is computed as ``softplus(s)``. The σ are learned only if the optimiser
    gets this module's parameters too (e.g. ``list(net.parameters()) + list(loss.parameters())``); save its
    ``state_dict`` with the network's to resume. ``tasks`` is a count or the task names.
    """

    def __init__(self, tasks: int | list[str] | tuple[str, ...] = 2, init_sigma: float = 1.0):
        super().__init__()
        self.tasks = [str(i) for i in range(tasks)] if isinstance(tasks, int) else list(tasks)
        init = 2 * torch.log(torch.tensor(float(init_sigma)))
        self.log_var = torch.nn.Parameter(init.repeat(len(self.tasks)))

    def sigmas(self) -> dict[str, torch.Tensor]:
        """Current σ per task (detached)."""
        return dict(zip(self.tasks, torch.exp(0.5 * self.log_var.detach())))

    def forward(self, losses: list[torch.Tensor] | tuple[torch.Tensor, ...] | dict[str, torch.Tensor]) -> torch.Tensor:
        """``losses``: one scalar per task, in ``tasks`` order or as a dict keyed by task name."""
        if isinstance(losses, dict):
            losses = [losses[t] for t in self.tasks]
        if len(losses) != len(self.tasks):
            raise ValueError(f"expected {len(self.tasks)} task losses, got {len(losses)}")
        stacked = torch.stack([torch.as_tensor(loss).to(self.log_var) for loss in losses])
        return (0.5 * torch.exp(-self.log_var) * stacked + F.softplus(self.log_var)).sum()


class MultiTaskSegClsLoss(torch.nn.Module):
    """ACSNet loss: segmentation ``soft Dice + bce_weight · BCE`` and classification CE, uncertainty-weighted.

    ``forward(output, mask, label)`` takes the network's ``{"seg": (B, 1, H, W) logits, "cls": (B, K) logits}``,
    the mask (B, 1, H, W) (lesion where ``> 0.5``) and the class index (B,) and returns the total. The last terms
    (``total``, ``seg``, ``dice``, ``bce``, ``cls``, ``sigma_seg``, ``sigma_cls``; detached) are in ``self.terms``.
    The σ live in ``self.uncertainty`` (see :class:`UncertaintyWeightedLoss`): optimise this module's parameters.
    With ``batch_dice`` the soft Dice pools the whole batch, so that images without lesion (normal class, empty mask)
    do not each add a near-constant 1 with almost no gradient; ``False`` gives MONAI's per-image mean.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        class_weight: list[float] | None = None,
        init_sigma: float = 1.0,
        batch_dice: bool = True,
    ):
        super().__init__()
        self.bce_weight = bce_weight
        self.dice = DiceLoss(sigmoid=True, batch=batch_dice, smooth_nr=1e-5, smooth_dr=1e-5)
        self.uncertainty = UncertaintyWeightedLoss(("seg", "cls"), init_sigma)
        self.register_buffer("class_weight", None if class_weight is None else torch.tensor(class_weight))
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, output: dict[str, torch.Tensor], mask: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        seg_logits, cls_logits = output["seg"], output["cls"]
        target = (mask > 0.5).to(seg_logits.dtype)
        dice = self.dice(seg_logits, target)
        bce = F.binary_cross_entropy_with_logits(seg_logits, target)
        seg = dice + self.bce_weight * bce
        weight = None if self.class_weight is None else self.class_weight.to(cls_logits)
        cls = F.cross_entropy(cls_logits, label.reshape(-1).long(), weight=weight)
        total = self.uncertainty({"seg": seg, "cls": cls})
        terms = {"total": total, "seg": seg, "dice": dice, "bce": bce, "cls": cls}
        self.terms = {name: value.detach() for name, value in terms.items()}
        self.terms.update({f"sigma_{task}": sigma for task, sigma in self.uncertainty.sigmas().items()})
        return total


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
