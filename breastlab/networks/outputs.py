"""Multi-output networks as one tensor, the form MONAI's bundle tools (``verify_net_in_out``, ``ckpt_export``) and
TorchScript clients expect: the network's maps along channels, then one channel whose first values hold its vectors
(class logits, window corners, ...) flattened in order. Built with ``packed=True``; :class:`OutputLayout` turns the
tensor back into the named outputs (the bundles' postprocessing, :func:`named_outputs`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import prod

import torch
import torch.nn.functional as F


def pack_outputs(maps: list[torch.Tensor], vectors: list[torch.Tensor]) -> torch.Tensor:
    """(B, C₁ + … + 1, H, W) float32: the (B, Cᵢ, H, W) ``maps`` and a last channel holding the ``vectors``
    (each (B, ...)) flattened in order into its first values, zeros after."""
    batch, (rows, columns) = maps[0].shape[0], maps[0].shape[-2:]
    flat = torch.cat([v.reshape(batch, -1).float() for v in vectors], dim=1)
    if flat.shape[1] > rows * columns:
        raise ValueError(f"{flat.shape[1]} vector values do not fit a {rows} x {columns} map")
    tail = F.pad(flat, [0, rows * columns - flat.shape[1]]).view(batch, 1, rows, columns)
    return torch.cat([m.float() for m in maps] + [tail], dim=1)


class OutputLayout:
    """Names and shapes of a packed output: ``maps`` {name: channels} in channel order, ``vectors`` {name: shape
    without the batch}. Without maps the tensor is the one vector itself (e.g. a classifier's (B, K) logits)."""

    def __init__(self, maps: Mapping[str, int], vectors: Mapping[str, Sequence[int]]):
        self.maps = dict(maps)
        self.vectors = {name: tuple(shape) for name, shape in vectors.items()}
        if not self.maps and len(self.vectors) != 1:
            raise ValueError("a layout without maps holds exactly one vector")

    def unpack(self, packed: torch.Tensor) -> dict[str, torch.Tensor]:
        """The named outputs of a batch (B, C, H, W) as the unpacked network gives them."""
        if not self.maps:
            return {next(iter(self.vectors)): packed}
        outputs, start = {}, 0
        for name, channels in self.maps.items():
            outputs[name], start = packed[:, start:start + channels], start + channels
        flat, start = packed[:, start].flatten(1), 0
        for name, shape in self.vectors.items():
            size = prod(shape)
            outputs[name], start = flat[:, start:start + size].reshape(-1, *shape), start + size
        return outputs

    def channel_count(self) -> int:
        return sum(self.maps.values()) + 1 if self.maps else prod(next(iter(self.vectors.values())))


def named_outputs(network: torch.nn.Module, output) -> dict[str, torch.Tensor] | torch.Tensor:
    """``network``'s output by name when it has several (a dict, or a packed tensor unpacked by the network's
    ``output_layout``); a single-output network's tensor as it is."""
    if isinstance(output, torch.Tensor) and getattr(network, "packed", False):
        return network.output_layout.unpack(output)
    return output
