"""Glue that lets MONAI's ``SupervisedTrainer``/``SupervisedEvaluator`` run multi-task networks.

Those engines call ``loss_function(network(image), targets)`` with ``targets`` from ``prepare_batch``.
:class:`TargetsBatch` makes ``targets`` a dict of several batch entries (mask, class index, whether the
mask may be used), and :class:`KeywordLoss` feeds a loss with named inputs from the network's output
dict and those targets, so multi-task bundles keep MONAI's engines, handlers and configs.
"""

from __future__ import annotations

import torch


class TargetsBatch:
    """``prepare_batch``: ``(batch["image"], {name: batch[key] for name, key in targets.items()})`` on ``device``."""

    def __init__(self, targets: dict[str, str]):
        self.targets = dict(targets)

    def __call__(self, batchdata: dict, device=None, non_blocking: bool = False, **kwargs):
        def to_device(value):
            return torch.as_tensor(value).to(device=device, non_blocking=non_blocking)

        return to_device(batchdata["image"]), {name: to_device(batchdata[key]) for name, key in self.targets.items()}


class KeywordLoss(torch.nn.Module):
    """``loss(**{argument: source})`` where each source names an entry of the network's output dict or of the
    targets (``"output"`` is the whole output dict). The wrapped loss's parameters (e.g. learned task
    weights) are this module's parameters; its ``terms`` (if any) stay readable here."""

    def __init__(self, loss: torch.nn.Module, arguments: dict[str, str]):
        super().__init__()
        self.loss = loss
        self.arguments = dict(arguments)
        self.last: dict[str, torch.Tensor] = {}

    @property
    def terms(self) -> dict:
        """The wrapped loss's last terms, else ``{"loss": last value}``: what a ``StatsHandler`` logs."""
        return getattr(self.loss, "terms", None) or self.last

    def forward(self, output: dict, targets: dict) -> torch.Tensor:
        sources = {**targets, **output, "output": output}
        missing = sorted(set(self.arguments.values()) - set(sources))
        if missing:
            raise KeyError(f"{type(self.loss).__name__}: no {missing} in the output {sorted(output)} "
                           f"or the targets {sorted(targets)}")
        loss = self.loss(**{argument: sources[name] for argument, name in self.arguments.items()})
        self.last = {"loss": loss.detach()}
        return loss


def parameter_groups(network: torch.nn.Module, learning_rate: float, scales: dict[str, float]) -> list[dict]:
    """Optimizer parameter groups: the parameters whose name starts with a key of ``scales`` learn at
    ``learning_rate`` times its value (0 freezes them), the rest at ``learning_rate``. A DDP-wrapped network
    is seen through its module."""
    named = list(getattr(network, "module", network).named_parameters())
    groups = [{"params": [p for n, p in named if n.startswith(prefix)], "lr": learning_rate * scale}
              for prefix, scale in scales.items()]
    rest = [p for n, p in named if not any(n.startswith(prefix) for prefix in scales)]
    return [g for g in groups if g["lr"] > 0] + [{"params": rest, "lr": learning_rate}]
