"""ACSNet's multi-task loss: soft Dice + BCE segmentation and class CE, combined with learned uncertainty weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss


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
