"""Modulated deformable 2D convolution (DCNv2-style) in pure PyTorch, built on ``torch.nn.functional.grid_sample``.

Every kernel tap ``k = a * kw + b`` of every output pixel ``(i, j)`` samples the input at
``(i * stride - padding + a * dilation + dy, j * stride - padding + b * dilation + dx)`` (pixel coordinates,
pixel centres at integers) by bilinear interpolation with zeros outside the image, multiplies the sample by its
modulation scalar and applies the convolution weight. Offsets are laid out like torchvision's ``deform_conv2d``:
channel ``2k`` is ``dy`` and ``2k + 1`` is ``dx`` of tap ``k``. With zero offsets and unit modulation the result
equals ``torch.nn.functional.conv2d`` exactly (up to floating-point rounding), borders included.

All ``kh * kw`` taps are sampled by one ``grid_sample`` call into a (B, C, kh*kw, Ho, Wo) tensor, which one
``einsum`` contracts with the weight: memory is ``kh * kw`` times the input at the output resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

__all__ = ["deform_conv2d", "ModulatedDeformConv2d"]

IntPair = int | tuple[int, int]


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _base_positions(out: int, kernel: int, stride: int, padding: int, dilation: int,
                    like: torch.Tensor) -> torch.Tensor:
    """Undeformed sampling coordinates along one axis, shape (kernel, out)."""
    taps = torch.arange(kernel, dtype=like.dtype, device=like.device) * dilation
    starts = torch.arange(out, dtype=like.dtype, device=like.device) * stride - padding
    return taps[:, None] + starts[None, :]


def _sampling_grid(offset: torch.Tensor, kernel: tuple[int, int], in_size: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """``grid_sample`` grid (B, kh*kw*Ho, Wo, 2) from the offsets (B, 2*kh*kw, Ho, Wo)."""
    b, _, ho, wo = offset.shape
    kh, kw = kernel
    base_y = _base_positions(ho, kh, stride[0], padding[0], dilation[0], offset)  # (kh, Ho)
    base_x = _base_positions(wo, kw, stride[1], padding[1], dilation[1], offset)  # (kw, Wo)
    base_y = base_y[:, None, :, None].expand(kh, kw, ho, 1).reshape(1, kh * kw, ho, 1)
    base_x = base_x[None, :, None, :].expand(kh, kw, 1, wo).reshape(1, kh * kw, 1, wo)
    offset = offset.view(b, kh * kw, 2, ho, wo)
    y = base_y + offset[:, :, 0]
    x = base_x + offset[:, :, 1]
    # align_corners=False: pixel p of a size-n axis is the normalised coordinate (2p + 1) / n - 1
    gy = (2 * y + 1) / in_size[0] - 1
    gx = (2 * x + 1) / in_size[1] - 1
    return torch.stack((gx, gy), dim=-1).view(b, kh * kw * ho, wo, 2)


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Modulated deformable convolution.

    ``x`` (B, C, H, W); ``offset`` (B, 2*kh*kw, Ho, Wo) as (dy, dx) per tap; ``mask`` (B, kh*kw, Ho, Wo)
    modulation (``None``: 1); ``weight`` (O, C/groups, kh, kw); ``bias`` (O,). Returns (B, O, Ho, Wo).
    """
    return _deform_conv2d(x, offset, mask, weight, bias, _pair(stride), _pair(padding), _pair(dilation), groups)


def _deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor,
                   bias: torch.Tensor | None, stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """:func:`deform_conv2d` with pairs, as TorchScript compiles it."""
    b, c, h, w = x.shape
    o, c_per_group, kh, kw = weight.shape
    if c != c_per_group * groups or o % groups:
        raise ValueError(f"weight {weight.shape} does not fit {c} input channels in {groups} groups")
    ho = _output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _output_size(w, kw, stride[1], padding[1], dilation[1])
    if list(offset.shape) != [b, 2 * kh * kw, ho, wo]:
        raise ValueError(f"offset shape {offset.shape}, expected {[b, 2 * kh * kw, ho, wo]}")
    if mask is not None and list(mask.shape) != [b, kh * kw, ho, wo]:
        raise ValueError(f"mask shape {mask.shape}, expected {[b, kh * kw, ho, wo]}")
    coord_dtype = torch.promote_types(x.dtype, torch.float32)  # coordinates in at least float32, also under AMP
    grid = _sampling_grid(offset.to(coord_dtype), (kh, kw), (h, w), stride, padding, dilation).to(x.dtype)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.view(b, c, kh * kw, ho, wo)
    if mask is not None:
        cols = cols * mask.to(x.dtype).unsqueeze(1)
    cols = cols.view(b, groups, c_per_group, kh * kw, ho, wo)
    kernel = weight.reshape(groups, o // groups, c_per_group, kh * kw)
    out = torch.einsum("bgckhw,gock->bgohw", cols, kernel).reshape(b, o, ho, wo)
    if bias is not None:
        out = out + bias.view(1, o, 1, 1)
    return out


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer: a regular conv (same kernel, stride, padding, dilation) predicts the offsets and masks.

    The predictor outputs ``3 * kh * kw`` channels: ``2 * kh * kw`` offsets (dy, dx per tap) and ``kh * kw``
    modulation logits, squashed by a sigmoid to [0, 1]. It is zero-initialised, so a new layer samples the regular
    grid with modulation ``sigmoid(0) = 0.5``, i.e. it starts as half of a plain convolution (the DCNv2 convention;
    a following batch norm absorbs the factor). The main weight and bias are initialised like ``nn.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair = 3,
        stride: IntPair = 1,
        padding: IntPair = 1,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation, self.groups = _pair(padding), _pair(dilation), groups
        taps = self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.offset_conv = nn.Conv2d(
            in_channels, 3 * taps, self.kernel_size, self.stride, self.padding, self.dilation, bias=True
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def offsets_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted offsets (B, 2*kh*kw, Ho, Wo) and modulation in [0, 1] (B, kh*kw, Ho, Wo)."""
        out = self.offset_conv(x)
        taps = self.kernel_size[0] * self.kernel_size[1]
        return out[:, : 2 * taps], torch.sigmoid(out[:, 2 * taps :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        return _deform_conv2d(
            x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}"
        )
