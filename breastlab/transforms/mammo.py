"""Mammogram transforms: inverted displays undone, the breast found, oriented, cropped and masked, and results put back
on the original image.

The functions take (H, W) arrays indexed ``[row, column]``. The MONAI dictionary transforms take channel-first
arrays and default to ``layout="xy"``: MONAI's ``PILReader`` yields ``[channel, x, y]`` (x = column), transposed
with respect to PIL; pass ``layout="yx"`` for ``[channel, row, column]`` arrays.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Flip, MapTransform, SpatialCrop
from scipy import ndimage

TISSUE_THRESHOLD = 0.1  # fraction of the image maximum above which a pixel may be breast
MASK_SIDE = 256  # breast masks are computed on a grid about this size


def is_inverted(image: np.ndarray, frame: float = 0.02) -> bool:
    """Whether a mammogram is shown inverted (breast dark on a bright background, about one in six of mammo_bcd):
    the image's border ``frame`` (a fraction of each side; mostly air, with the chest wall on one side) has a median
    in the upper half of the image's range, and more pixels lie near its maximum than near its minimum."""
    values = np.asarray(image, dtype=np.float32)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return False
    t = max(int(round(frame * min(values.shape))), 1)
    border = np.concatenate([values[:t].ravel(), values[-t:].ravel(), values[:, :t].ravel(), values[:, -t:].ravel()])
    near = 0.1 * (hi - lo)
    return bool(np.median(border) > (lo + hi) / 2 and (values >= hi - near).mean() > (values <= lo + near).mean())


def uninvert(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The mammogram with a bright breast on a dark background, its range kept; returns (image, was inverted)."""
    if not is_inverted(image):
        return image, False
    return invert_range(image), True


def invert_range(values):
    """``min + max - values`` of an array or tensor, in its own dtype (no uint8 overflow)."""
    lo, hi = float(values.min()), float(values.max())
    if torch.is_tensor(values):
        return (lo + hi - values.double()).to(values.dtype)
    return (lo + hi - np.asarray(values, dtype=np.float64)).astype(values.dtype)


def breast_mask(image: np.ndarray, threshold: float = TISSUE_THRESHOLD) -> np.ndarray:
    """The breast: largest bright connected component after a small opening (drops labels, markers, film
    edges), holes filled; computed on a grid of about ``MASK_SIDE`` pixels and returned at full size."""
    small, step = _breast_mask_small(image, threshold)
    full = np.repeat(np.repeat(small, step, axis=0), step, axis=1)
    return full[: image.shape[0], : image.shape[1]]


def breast_bbox(image: np.ndarray, threshold: float = TISSUE_THRESHOLD, margin: int = 8) -> tuple[int, int, int, int]:
    """Crop box ``(r0, r1, c0, c1)`` (end exclusive) of :func:`breast_mask` grown by ``margin`` pixels; the whole
    image when nothing is above the threshold."""
    small, step = _breast_mask_small(image, threshold)
    h, w = image.shape
    if not small.any():
        return 0, h, 0, w
    rows, cols = np.flatnonzero(small.any(axis=1)), np.flatnonzero(small.any(axis=0))
    return (max(rows[0] * step - margin, 0), min((rows[-1] + 1) * step + margin, h),
            max(cols[0] * step - margin, 0), min((cols[-1] + 1) * step + margin, w))


def _breast_mask_small(image: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    step = max(min(image.shape) // MASK_SIDE, 1)
    small = np.asarray(image[::step, ::step], dtype=np.float32)
    bright = ndimage.binary_opening(small > threshold * small.max(), np.ones((3, 3), bool))
    labels, n = ndimage.label(bright)
    if n == 0:
        return bright, step
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == sizes.argmax()), step


def breast_side(image: np.ndarray, threshold: float = TISSUE_THRESHOLD) -> str:
    """``'left'`` or ``'right'``: the half of the image holding more breast intensity in the upper quarter of the
    breast's rows, where the chest wall (and an MLO view's pectoral muscle) dominates. Whole halves are misled by
    breasts that fill the film (mini-MIAS mdb151/152)."""
    small, step = _breast_mask_small(image, threshold)
    tissue = np.where(small, image[::step, ::step], 0).astype(np.float64)
    rows = np.flatnonzero(small.any(axis=1))
    if rows.size:
        tissue = tissue[rows[0]: rows[0] + max((rows[-1] + 1 - rows[0]) // 4, 1)]
    half = max(tissue.shape[1] // 2, 1)
    return "left" if tissue[:, :half].sum() >= tissue[:, -half:].sum() else "right"


def orient_breast(image: np.ndarray, threshold: float = TISSUE_THRESHOLD) -> tuple[np.ndarray, bool]:
    """Flip horizontally when needed so that the breast (chest wall) is on the left; returns (image, flipped)."""
    flipped = breast_side(image, threshold) == "right"
    return (flip_columns(image) if flipped else image), flipped


def flip_columns(array: np.ndarray) -> np.ndarray:
    """Mirror an (..., H, W) array left–right, as :func:`orient_breast` does to the image."""
    return np.ascontiguousarray(array[..., ::-1])




def _plane(image, layout: str) -> np.ndarray:
    """The first channel of a channel-first array/tensor as an (H, W) ``[row, column]`` numpy array."""
    plane = image[0].detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image[0])
    return plane.T if layout == "xy" else plane


def _column_axis(layout: str) -> int:
    if layout not in ("xy", "yx"):
        raise ValueError(f"layout must be 'xy' ([C, x, y], MONAI's PILReader) or 'yx' ([C, row, col]), got {layout!r}")
    return 0 if layout == "xy" else 1


class UninvertMammogramd(MapTransform):
    """Turn ``keys`` the right way round (breast bright, background dark) when ``image_key`` (default: the first key)
    :func:`is_inverted`; ``data[inverted_key]`` records whether it was. Intensities only: nothing to undo on maps."""

    def __init__(self, keys, image_key: str | None = None, inverted_key: str = "inverted",
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.inverted_key = image_key or self.keys[0], inverted_key

    def __call__(self, data):
        d = dict(data)
        inverted = is_inverted(_plane(d[self.image_key], "yx"))
        if inverted:
            for key in self.key_iterator(d):
                d[key] = invert_range(d[key])
        d[self.inverted_key] = inverted
        return d


class OrientBreastd(MapTransform):
    """Flip ``keys`` left–right when the breast of ``image_key`` (default: the first key) is on the right, so
    that the chest wall is on the left; ``data[flipped_key]`` records whether it flipped."""

    def __init__(self, keys, image_key: str | None = None, layout: str = "xy", flipped_key: str = "flipped",
                 threshold: float = TISSUE_THRESHOLD, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key or self.keys[0]
        self.flip = Flip(spatial_axis=_column_axis(layout))
        self.layout, self.flipped_key, self.threshold = layout, flipped_key, threshold

    def __call__(self, data):
        d = dict(data)
        flipped = breast_side(_plane(d[self.image_key], self.layout), self.threshold) == "right"
        if flipped:
            for key in self.key_iterator(d):
                d[key] = self.flip(d[key])
        d[self.flipped_key] = flipped
        return d


class CropBreastd(MapTransform):
    """Crop ``keys`` to :func:`breast_bbox` of ``image_key`` (default: the first key);
    ``data[box_key]`` records the box as ``(r0, r1, c0, c1)`` in rows/columns of the uncropped image."""

    def __init__(self, keys, margin: int = 8, image_key: str | None = None, layout: str = "xy",
                 box_key: str = "breast_box", threshold: float = TISSUE_THRESHOLD, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key or self.keys[0]
        self.column_axis = _column_axis(layout)
        self.margin, self.layout, self.box_key, self.threshold = margin, layout, box_key, threshold

    def __call__(self, data):
        d = dict(data)
        r0, r1, c0, c1 = breast_bbox(_plane(d[self.image_key], self.layout), self.threshold, self.margin)
        start, end = ((c0, r0), (c1, r1)) if self.column_axis == 0 else ((r0, c0), (r1, c1))
        crop = SpatialCrop(roi_start=start, roi_end=end)
        for key in self.key_iterator(d):
            d[key] = crop(d[key])
        d[self.box_key] = np.array([r0, r1, c0, c1], dtype=np.int64)
        return d


class MaskBreastd(MapTransform):
    """Zero ``keys`` outside :func:`breast_mask` of ``image_key`` (default: the first key): film labels, markers
    and film edges are gone, so a model trained on image labels only cannot learn them instead of the breast."""

    def __init__(self, keys, image_key: str | None = None, layout: str = "xy", threshold: float = TISSUE_THRESHOLD,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        _column_axis(layout)  # refuses an unknown layout
        self.image_key, self.layout, self.threshold = image_key or self.keys[0], layout, threshold

    def __call__(self, data):
        d = dict(data)
        mask = breast_mask(_plane(d[self.image_key], self.layout), self.threshold)
        mask = mask.T if self.layout == "xy" else mask
        for key in self.key_iterator(d):
            value = d[key]
            d[key] = value * (torch.as_tensor(mask, dtype=value.dtype, device=value.device)
                              if torch.is_tensor(value) else mask)
        return d


class RestoreBreastd(MapTransform):
    """Undo :class:`CropBreastd` and :class:`OrientBreastd` (and any resize after them) on maps such as a heat
    map: resize ``keys`` to the breast box, place them in an image of ``image_key``'s original size (zeros
    outside) and flip them back if the image was flipped."""

    def __init__(self, keys, image_key: str = "image", layout: str = "xy", box_key: str = "breast_box",
                 flipped_key: str = "flipped", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.column_axis = _column_axis(layout)
        self.image_key, self.box_key, self.flipped_key = image_key, box_key, flipped_key

    def __call__(self, data):
        d = dict(data)
        r0, r1, c0, c1 = (int(v) for v in d[self.box_key])
        size = [int(n) for n in d[self.image_key].meta["spatial_shape"]]
        box = [slice(c0, c1), slice(r0, r1)] if self.column_axis == 0 else [slice(r0, r1), slice(c0, c1)]
        for key in self.key_iterator(d):
            values = torch.as_tensor(d[key], dtype=torch.float32)
            crop = F.interpolate(values[None], size=[b.stop - b.start for b in box], mode="bilinear",
                                 align_corners=False)[0]
            restored = torch.zeros((values.shape[0], *size), dtype=torch.float32)
            restored[(slice(None), *box)] = crop
            d[key] = restored.flip(1 + self.column_axis) if d[self.flipped_key] else restored
        return d


class RestoreWindowsd(MapTransform):
    """Square windows found on the prepared image (e.g. GLAM's patches) as boxes on the original mammogram:
    ``data[corners_key]`` (n, 2) top-left corners of ``size``-pixel windows in the network input (its two spatial
    axes in ``layout`` order), back through the resize, :class:`CropBreastd` and :class:`OrientBreastd`, to
    ``data[output_key]``: ``{"box": [x_min, y_min, x_max, y_max], "score", "probabilities"}`` (pixels, max
    exclusive, MONAI's ``xyxy``), one per window, scored by the largest of its ``classes`` probabilities in
    ``data[scores_key]`` (n, classes) and ranked by it. With ``allow_missing_keys``, data without corners pass."""

    def __init__(self, classes, size: int, corners_key: str = "corners", scores_key: str = "patch_prob",
                 output_key: str = "regions", image_key: str = "image", layout: str = "xy",
                 box_key: str = "breast_box", flipped_key: str = "flipped", allow_missing_keys: bool = False):
        super().__init__(corners_key, allow_missing_keys)
        self.column_axis = _column_axis(layout)
        self.classes, self.size, self.scores_key, self.output_key = list(classes), size, scores_key, output_key
        self.image_key, self.box_key, self.flipped_key = image_key, box_key, flipped_key

    def __call__(self, data):
        d = dict(data)
        if self.first_key(d) == ():  # no windows (e.g. GLAM's global stage), allowed to be missing
            return d
        image = d[self.image_key]
        columns_axis, rows_axis = self.column_axis, 1 - self.column_axis
        rows, columns = image.shape[1 + rows_axis], image.shape[1 + columns_axis]
        width = int(image.meta["spatial_shape"][columns_axis])
        r0, r1, c0, c1 = (int(v) for v in d[self.box_key])
        regions = []
        corners, all_scores = (torch.as_tensor(d[key]).tolist() for key in (self.keys[0], self.scores_key))
        for corner, scores in zip(corners, all_scores):
            top, left = corner[rows_axis], corner[columns_axis]
            y0, y1 = (r0 + v * (r1 - r0) / rows for v in (top, top + self.size))
            x0, x1 = (c0 + v * (c1 - c0) / columns for v in (left, left + self.size))
            if d[self.flipped_key]:
                x0, x1 = width - x1, width - x0
            regions.append({"box": [round(x0), round(y0), round(x1), round(y1)], "score": round(max(scores), 4),
                            "probabilities": {c: round(p, 4) for c, p in zip(self.classes, scores)}})
        d[self.output_key] = sorted(regions, key=lambda region: -region["score"])
        return d
