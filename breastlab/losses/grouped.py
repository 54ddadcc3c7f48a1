"""Cross-entropy for labels that name a group of classes, such as mammo_bcd's "benign" (= no cancer: normal or
benign findings) for a normal / benign / malignant classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class GroupedCrossEntropyLoss(torch.nn.Module):
    """Cross-entropy of (B, classes) logits against the class ``groups`` the targets fall into: each group's
    probability is the sum of its classes' softmax probabilities (its logit the log-sum-exp of theirs), so a label
    that only says "one of these classes" trains the split between groups and leaves the split inside a group free.

    ``groups``: class indices per group, covering every class once, e.g. ``[[0, 1], [2]]``: normal or benign vs
    malignant. Targets are class indices; a target is read as its group. ``weight``: one per group.
    """

    def __init__(self, groups: Sequence[Sequence[int]], weight: Sequence[float] | None = None):
        super().__init__()
        members = sorted(i for group in groups for i in group)
        if members != list(range(len(members))):
            raise ValueError(f"groups must hold each class index 0..n-1 once, got {groups}")
        if weight is not None and len(weight) != len(groups):
            raise ValueError(f"{len(weight)} weights for {len(groups)} groups")
        self.groups = [list(group) for group in groups]
        self.register_buffer("group_of", torch.tensor([next(g for g, group in enumerate(groups) if i in group)
                                                       for i in members]), persistent=False)
        self.register_buffer("weight", None if weight is None else torch.tensor(weight, dtype=torch.float32),
                             persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        grouped = torch.stack([logits[:, group].float().logsumexp(1) for group in self.groups], 1)
        return F.cross_entropy(grouped, self.group_of[target.long().reshape(-1)], weight=self.weight)
