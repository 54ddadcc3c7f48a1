"""Box and click prompts of a promptable (segment-anything) model, as MONAI Label clients send them.

Request keys, in pixels of the original image (x = column, y = row, as for the click model):
``roi`` ``[x0, y0, x1, y1]`` (a stock 3D client's ``[x0, y0, x1, y1, z0, z1]`` is read as its first four values: a
2D image has one slice), ``foreground`` and ``background`` lists of ``[x, y]``. :class:`PromptsToNetworkd` checks
them against the image and maps them onto the network input, the image's longest side resized to ``size`` and the
rest padded at the end (LiteMedSAM's convention): ``box`` (4,), ``points`` (N, 2), ``point_labels`` (N,) with 1 for
lesion and 0 for background.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import MapTransform

from breastlab.transforms.clicks import _finite_number, check_points

PROMPT_KEYS = ("roi", "foreground", "background")


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
        return d
