"""TinyViT image encoder as LiteMedSAM uses it (Wu et al. ECCV 2022, with SAM's neck).

A 256 x 256 image becomes a 256-channel 64 x 64 embedding: a 1x1 convolutional stem (no downsampling), one stage of
MBConv blocks at full resolution, then three stages of windowed self-attention blocks (attention with a learned
bias per relative offset, a depthwise 3x3 "local" convolution and an MLP), each stage entered through a patch
merging convolution (stride 2, 2, then 1), and SAM's neck (1x1 and 3x3 convolutions with channel LayerNorm).
Module names follow the published checkpoint so that it loads strictly.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Sequential):
    """Convolution without bias followed by batch norm (``c``, ``bn``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise 3x3, 1x1 projection, GELU after the residual sum."""

    def __init__(self, dim: int, expansion: int = 4):
        super().__init__()
        hidden = dim * expansion
        self.conv1, self.conv2 = ConvBN(dim, hidden), ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(x + self.conv3(y))


class PatchMerging(nn.Module):
    """1x1 convolution, depthwise 3x3 of ``stride``, 1x1 convolution: (B, C, H, W) -> (B, C', H/s, W/s)."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention over the tokens of one window, with a learned bias per (|dy|, |dx|) offset."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm = nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(heads, window * window))
        points = list(itertools.product(range(window), range(window)))
        index = [[abs(p[0] - q[0]) * window + abs(p[1] - q[1]) for q in points] for p in points]
        self.register_buffer("bias_index", torch.tensor(index), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, self.heads, 3, self.head_dim).permute(3, 0, 2, 1, 4).unbind(0)
        bias = self.attention_biases[:, self.bias_index].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class TinyViTBlock(nn.Module):
    """Windowed attention (residual), depthwise 3x3 local convolution, MLP (residual), on a (B, C, H, W) map."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: int = 4):
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, heads, window)
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)
        self.mlp = nn.Sequential()
        self.mlp.add_module("norm", nn.LayerNorm(dim))
        self.mlp.add_module("fc1", nn.Linear(dim, dim * mlp_ratio))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(dim * mlp_ratio, dim))

    def windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.window
        padded = F.pad(x, (0, (s - w % s) % s, 0, (s - h % s) % s))
        ph, pw = padded.shape[2:]
        windows = padded.view(b, c, ph // s, s, pw // s, s).permute(0, 2, 4, 3, 5, 1).reshape(-1, s * s, c)
        out = self.attn(windows).view(b, ph // s, pw // s, s, s, c).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, c, ph, pw)[:, :, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_conv(x + self.windowed_attention(x))
        tokens = x.flatten(2).transpose(1, 2)
        return (tokens + self.mlp(tokens)).transpose(1, 2).reshape(x.shape)


class Stage(nn.Module):
    """``blocks`` then an optional ``downsample`` (the next stage's patch merging)."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None):
        super().__init__()
        self.blocks, self.downsample = nn.ModuleList(blocks), downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """LiteMedSAM's image encoder: (B, 3, 256, 256) in [0, 1] -> (B, 256, 64, 64)."""

    def __init__(self, dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), heads=(2, 4, 5, 10), windows=(7, 7, 14, 7),
                 strides=(2, 2, 1), out_dim: int = 256):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.seq = nn.Sequential(ConvBN(3, dims[0] // 2), nn.GELU(), ConvBN(dims[0] // 2, dims[0]))
        stages = [Stage([MBConv(dims[0]) for _ in range(depths[0])], PatchMerging(dims[0], dims[1], strides[0]))]
        for i in range(1, len(dims)):
            merge = PatchMerging(dims[i], dims[i + 1], strides[i]) if i + 1 < len(dims) else None
            stages.append(Stage([TinyViTBlock(dims[i], heads[i], windows[i]) for _ in range(depths[i])], merge))
        self.layers = nn.ModuleList(stages)
        self.neck = nn.Sequential(nn.Conv2d(dims[-1], out_dim, 1, bias=False), LayerNorm2d(out_dim),
                                  nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False), LayerNorm2d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.seq(x)
        for stage in self.layers:
            x = stage(x)
        return self.neck(x)
