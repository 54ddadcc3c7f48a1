"""Box and click prompts of a promptable (segment-anything) model, as MONAI Label clients send them.

Request keys, in pixels of the original image (x = column, y = row, as for the click model):
``roi`` ``[x0, y0, x1, y1]`` (a stock 3D client's ``[x0, y0, x1, y1, z0, z1]`` is read as its first four values: a
2D image has one slice), ``foreground`` and ``background`` lists of ``[x, y]``. :class:`PromptsToNetworkd` checks
them against the image and maps them onto the network input, the image's longest side resized to ``size`` and the
rest padded at the end (LiteMedSAM's convention): ``box`` (4,), ``points`` (N, 2), ``point_labels`` (N,) with 1 for
lesion and 0 for background. A ``mask`` (rows x columns, the image's size: an earlier mask the clicks refine)
becomes ``previous_mask`` (1, size, size), the decoder's dense prompt. :class:`HonourClicksd` makes the final mask
agree with every click.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import MapTransform, Resize, SpatialPad

from breastlab.transforms.clicks import _finite_number, check_points

PROMPT_KEYS = ("roi", "foreground", "background")
MASK_PROMPT_LOGIT = 10.0  # a previous mask enters the decoder as logits of this size, + inside, - outside


def mask_prompt(mask: torch.Tensor) -> torch.Tensor:
    """A binary mask (B, 1, H, W) in the network's frame as the decoder's previous-mask input: every previous mask
    (the model's last answer, or one a client sends) enters as a binary mask, so training and serving agree."""
    return torch.where(mask.bool(), MASK_PROMPT_LOGIT, -MASK_PROMPT_LOGIT).float()


def check_roi(roi, width: int, height: int) -> tuple[float, float, float, float] | None:
    """``roi`` (``None``, 4 or 6 numbers) as ``(x0, y0, x1, y1)`` inside a ``width`` x ``height`` image with
    ``x0 < x1`` and ``y0 < y1``; ``ValueError`` saying what is wrong otherwise."""
    if roi is None:
        return None
    if isinstance(roi, np.ndarray):
        roi = roi.tolist()
    if not (isinstance(roi, (list, tuple)) and len(roi) in (4, 6) and all(_finite_number(v) for v in roi)):
        raise ValueError(f"roi: expected [x0, y0, x1, y1] (or a 3D client's [x0, y0, x1, y1, z0, z1]), got {roi!r}")
    x0, y0, x1, y1 = roi[:4]  # compared as given: an int of any size is outside the image, not an OverflowError
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"roi {list(roi[:4])} is not a box inside the {width} x {height} image "
                         f"(0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height})")
    return float(x0), float(y0), float(x1), float(y1)


def has_prompt(data: dict) -> bool:
    return any(data.get(key) for key in PROMPT_KEYS)


class PromptsToNetworkd(MapTransform):
    """Checks the prompts of ``data`` against the image at ``keys`` (``[channel, x, y]`` as ``PILReader`` gives
    it; place this right after loading) and writes them in the network's input pixels."""

    def __init__(self, keys="image", size: int = 256):
        super().__init__(keys)
        self.size = size

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        key = self.first_key(d)
        width, height = d[key].shape[1:3]
        scale = self.size / max(width, height)
        roi = check_roi(d.get("roi"), width, height)
        if roi is not None:
            d["box"] = torch.tensor(roi, dtype=torch.float32) * scale
        clicks = [(p, label) for name, label in (("foreground", 1), ("background", 0))
                  for p in check_points(d.get(name), width, height, name)]
        if clicks:
            d["points"] = torch.tensor([p for p, _ in clicks], dtype=torch.float32) * scale
            d["point_labels"] = torch.tensor([label for _, label in clicks])
        d.pop("previous_mask", None)  # only ever made here, from a checked mask
        if d.get("mask") is not None:
            d["previous_mask"] = mask_prompt(self.to_network(check_mask(d["mask"], width, height))[None])[0]
        return d

    def to_network(self, mask: np.ndarray) -> torch.Tensor:
        """A (rows, columns) mask in the network's frame (1, size, size), as the training labels are made: longest
        side resized (nearest), padded at the end."""
        mask = torch.as_tensor(mask, dtype=torch.float32)[None]
        resized = Resize(self.size, size_mode="longest", mode="nearest")(mask)
        return torch.as_tensor(SpatialPad(self.size, method="end")(resized)) > 0.5


def check_mask(mask, width: int, height: int) -> np.ndarray:
    """A client's mask as a boolean (rows, columns) array of the image's size (nonzero = lesion); ``ValueError``
    otherwise."""
    mask = np.asarray(mask) if isinstance(mask, (np.ndarray, torch.Tensor)) else None
    if mask is None or mask.shape != (height, width):
        raise ValueError(f"mask: expected a {width} x {height} mask (the image's size), got "
                         f"{'no array' if mask is None else 'shape ' + str(tuple(mask.shape))}")
    return mask > 0


class HonourClicksd(MapTransform):
    """Every click is honoured in the final mask at ``keys`` (``[channel, x, y]``, the image's size, after
    ``Invertd``): a lesion click's pixel ends inside the mask and a background click's outside. A click the
    network's mask contradicts gets a disc of ``radius`` pixels (its own pixel always), later clicks last."""

    def __init__(self, keys="pred", radius: int = 3):
        super().__init__(keys)
        self.radius = radius

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        clicks = [(p, value) for name, value in (("foreground", 1), ("background", 0)) for p in d.get(name) or []]
        for key in self.key_iterator(d):
            mask = d[key]
            width, height = mask.shape[-2:]
            for (px, py), value in clicks:
                px, py = round(px), round(py)
                if mask[0, px, py] != value:
                    x0, y0 = max(px - self.radius, 0), max(py - self.radius, 0)
                    x, y = np.ogrid[x0:min(px + self.radius + 1, width), y0:min(py + self.radius + 1, height)]
                    window = mask[0, x0:x0 + x.shape[0], y0:y0 + y.shape[1]]
                    window[torch.as_tensor((x - px) ** 2 + (y - py) ** 2 <= self.radius ** 2)] = value
            for (px, py), value in clicks:
                mask[0, round(px), round(py)] = value
        return d
