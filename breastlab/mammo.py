"""Mammogram preparation for the end-to-end classifier (Shen et al. 2019): lesion circles, breast side and crop,
woman-grouped folds, and the lesion/background patches of the patch stage.

Plain functions take (H, W) arrays indexed ``[row, column]``. The MONAI transforms take channel-first arrays and
default to ``layout="xy"``: MONAI's ``PILReader`` yields ``[channel, x, y]`` (x = column), transposed with respect
to PIL; pass ``layout="yx"`` for ``[channel, row, column]`` arrays.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Flip, MapTransform, SpatialCrop
from scipy import ndimage

from breastlab.data.reader import Case, read_dataset
from breastlab.dicomio import is_dicom, read_dicom_image
from breastlab.imageio import read_gray_png

PATCH_CLASSES = ("background", "benign", "malignant")
SEVERITY_CLASS = {"B": 1, "M": 2}  # MIAS severity → patch class
TISSUE_THRESHOLD = 0.1  # fraction of the image maximum above which a pixel may be breast
MASK_SIDE = 256  # breast masks are computed on a grid about this size


class Circle(NamedTuple):
    """A lesion circle in pixels (row from the top); ``severity`` is MIAS's ``B`` or ``M``."""

    row: float
    col: float
    radius: float
    severity: str = ""


def lesion_circles(case: Case) -> list[Circle]:
    """The circles of ``case.meta['lesions']`` (JSON list); entries without a centre or radius are skipped."""
    text = (case.meta.get("lesions") or "").strip()
    try:
        entries = json.loads(text) if text else []
    except json.JSONDecodeError as e:
        raise ValueError(f"case {case.case!r}: column 'lesions' is not JSON: {e}") from e
    return [Circle(float(e["row"]), float(e["col"]), float(e["radius"]), str(e.get("severity") or ""))
            for e in entries if all(e.get(k) is not None for k in ("row", "col", "radius"))]


def lesion_mask(circles: list[Circle], shape: tuple[int, int]) -> np.ndarray:
    """Filled discs: pixels whose centre lies within ``radius`` of a circle's centre."""
    mask = np.zeros(shape, bool)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    for c in circles:
        mask |= (rows - c.row) ** 2 + (cols - c.col) ** 2 <= c.radius**2
    return mask


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


def flip_circles(circles: list[Circle], width: int) -> list[Circle]:
    """The circles after :func:`flip_columns` of an image ``width`` pixels wide."""
    return [c._replace(col=width - 1 - c.col) for c in circles]


def crop_circles(circles: list[Circle], box: tuple[int, int, int, int]) -> list[Circle]:
    """The circles in the coordinates of the crop ``box`` (r0, r1, c0, c1)."""
    return [c._replace(row=c.row - box[0], col=c.col - box[2]) for c in circles]


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Area-resample an (H, W) image by ``scale`` (as MONAI's ``Resize(mode="area")``); float32."""
    size = [max(round(s * scale), 1) for s in image.shape]
    tensor = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="area")[0, 0].numpy()


def resize_circles(circles: list[Circle], old_shape: tuple[int, int], new_shape: tuple[int, int]) -> list[Circle]:
    """The circles after resizing an image from ``old_shape`` to ``new_shape`` (pixel centres map onto centres)."""
    fr, fc = new_shape[0] / old_shape[0], new_shape[1] / old_shape[1]
    return [c._replace(row=(c.row + 0.5) * fr - 0.5, col=(c.col + 0.5) * fc - 0.5, radius=c.radius * (fr + fc) / 2)
            for c in circles]


def pair_folds(cases: list[Case], k: int = 5, seed: int = 0) -> list[int]:
    """Fold index (0..k-1) per case; both images of a woman (``meta['pair']``, else the case alone) share a
    fold, and each label is spread over the folds as evenly as the groups allow. Deterministic for ``seed``."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        groups[str(c.meta.get("pair") or f"case:{c.case}")].append(i)
    totals = Counter(c.label for c in cases)
    rng = np.random.default_rng(seed)
    order = sorted(groups, key=lambda g: (_group_order(cases, groups[g]), rng.random()), reverse=True)
    counts = [Counter() for _ in range(k)]
    folds = [0] * len(cases)
    for g in order:
        members = Counter(cases[i].label for i in groups[g])
        cost = [sum((counts[f][lab] + n) ** 2 / totals[lab] for lab, n in members.items()) + rng.random() * 1e-9
                for f in range(k)]
        fold = int(np.argmin(cost))
        counts[fold].update(members)
        for i in groups[g]:
            folds[i] = fold
    return folds


def fold_split(root: str | Path, fold: int, k: int = 5, seed: int = 0, split: str | None = "dev"
               ) -> tuple[list[Case], list[Case]]:
    """(training cases, held-out cases) of cross-validation ``fold`` of ``k`` over a dataset split, by woman."""
    if not 0 <= fold < k:
        raise ValueError(f"fold must be within [0, {k - 1}], got {fold}")
    cases = read_dataset(root, split)
    folds = pair_folds(cases, k, seed)
    return [c for c, f in zip(cases, folds) if f != fold], [c for c, f in zip(cases, folds) if f == fold]


def _group_order(cases: list[Case], indices: list[int]) -> tuple[int, int]:
    """Sort key of a woman's group: most severe label first, then group size."""
    rank = {"malignant": 2, "benign": 1}
    return max(rank.get(cases[i].label, 0) for i in indices), len(indices)


def extract_patch(image: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    """The ``size`` x ``size`` window whose centre pixel is (row, col) (rows ``row - size//2`` onwards), zero
    padded outside the image."""
    r0, c0 = row - size // 2, col - size // 2
    patch = np.zeros((size, size), dtype=image.dtype)
    h, w = image.shape
    rs, cs = slice(max(r0, 0), min(r0 + size, h)), slice(max(c0, 0), min(c0 + size, w))
    if rs.start < rs.stop and cs.start < cs.stop:
        patch[rs.start - r0: rs.stop - r0, cs.start - c0: cs.stop - c0] = image[rs, cs]
    return patch


def background_centres(image: np.ndarray, circles: list[Circle], patch_size: int,
                       threshold: float = TISSUE_THRESHOLD, on_breast: bool = True) -> np.ndarray:
    """Boolean map of the pixels that may centre a background patch: on the breast (off it, for
    ``on_breast=False``), and the patch window overlaps no lesion disc (so its centre is at least
    ``patch_size/2 - 1`` from every circle's edge)."""
    allowed = breast_mask(image, threshold)
    if not on_breast:
        allowed = ~allowed
    rows, cols = np.ogrid[: image.shape[0], : image.shape[1]]
    lo = patch_size // 2
    hi = patch_size - 1 - lo
    for c in circles:
        dr = np.maximum(np.maximum(rows - lo - c.row, c.row - rows - hi), 0)
        dc = np.maximum(np.maximum(cols - lo - c.col, c.col - cols - hi), 0)
        allowed &= dr**2 + dc**2 > c.radius**2
    return allowed


def patch_centres(image: np.ndarray, circles: list[Circle], patch_size: int, n_per_lesion: int, n_background: int,
                  rng: np.random.Generator, threshold: float = TISSUE_THRESHOLD, n_outside: int = 0
                  ) -> list[tuple[int, int, int]]:
    """(row, col, class) of the patches of :func:`sample_patches`: ``n_per_lesion`` per circle at uniform random
    points of its disc (clipped to the image), then up to ``n_background`` distinct :func:`background_centres` on
    the breast and up to ``n_outside`` off it (air, film labels, the breast's skin line and the image borders,
    which the classifier meets when it is applied to the whole image)."""
    h, w = image.shape
    centres = []
    for c in circles:
        if c.severity not in SEVERITY_CLASS:
            raise ValueError(f"lesion severity {c.severity!r} is not one of {sorted(SEVERITY_CLASS)}")
        radius = c.radius * np.sqrt(rng.random(n_per_lesion))
        angle = rng.random(n_per_lesion) * 2 * np.pi
        rows = np.clip(np.rint(c.row + radius * np.sin(angle)), 0, h - 1).astype(int)
        cols = np.clip(np.rint(c.col + radius * np.cos(angle)), 0, w - 1).astype(int)
        centres += [(int(r), int(q), SEVERITY_CLASS[c.severity]) for r, q in zip(rows, cols)]
    for on_breast, n in ((True, n_background), (False, n_outside)):
        candidates = np.flatnonzero(background_centres(image, circles, patch_size, threshold, on_breast))
        chosen = rng.choice(candidates, size=min(n, candidates.size), replace=False)
        centres += [(*divmod(int(i), w), 0) for i in chosen]
    return centres


def sample_patches(image: np.ndarray, circles: list[Circle], patch_size: int, n_per_lesion: int, n_background: int,
                   rng: np.random.Generator, threshold: float = TISSUE_THRESHOLD, n_outside: int = 0
                   ) -> list[tuple[np.ndarray, int]]:
    """(patch, class) pairs, classes as :data:`PATCH_CLASSES` (lesion class from the circle's severity): lesion
    patches centred inside the circles, background patches overlapping no lesion, on and off the breast
    (:func:`patch_centres`); windows are zero padded at the image borders."""
    centres = patch_centres(image, circles, patch_size, n_per_lesion, n_background, rng, threshold, n_outside)
    return [(extract_patch(image, r, q, patch_size), cls) for r, q, cls in centres]


def read_mammogram(path: str | Path) -> np.ndarray:
    """An (H, W) uint8 mammogram from a grayscale PNG or a DICOM file (display pipeline of ``dicomio``)."""
    return read_dicom_image(path).pixels if is_dicom(path) else read_gray_png(path)


def prepare_case(case: Case, scale: float = 1.0) -> tuple[np.ndarray, list[Circle]]:
    """A case's image oriented (breast on the left), cropped to the breast, resized by ``scale`` and scaled to
    [0, 1], with its lesion circles moved along."""
    image, flipped = orient_breast(read_mammogram(case.image))
    circles = lesion_circles(case)
    if flipped:
        circles = flip_circles(circles, image.shape[1])
    box = breast_bbox(image)
    cropped = image[box[0]: box[1], box[2]: box[3]]
    resized = resize_image(cropped, scale) / 255.0
    return resized, resize_circles(crop_circles(circles, box), cropped.shape, resized.shape)


def patch_items(cases: list[Case], scale: float = 0.5, patch_size: int = 64, n_per_lesion: int = 10,
                n_background: int = 10, seed: int = 0, n_outside: int = 0) -> list[dict]:
    """The patch-stage dataset: ``{"image": (1, p, p) float32 in [0, 1], "label": class, "case": id}`` from
    :func:`sample_patches` on each :func:`prepare_case` image. Each case draws from its own generator
    (seeded by ``seed`` and its id), so a case's patches do not depend on the other cases. Abnormal cases
    without a located lesion are skipped (their background could hold the lesion)."""
    items = []
    for case in cases:
        circles = lesion_circles(case)
        if case.label in ("benign", "malignant") and not circles:
            continue
        image, circles = prepare_case(case, scale)
        rng = np.random.default_rng([seed, zlib.crc32(case.case.encode())])
        for patch, label in sample_patches(image, circles, patch_size, n_per_lesion, n_background, rng,
                                           n_outside=n_outside):
            items.append({"image": patch[None].astype(np.float32), "label": label, "case": case.case})
    return items


def _plane(image, layout: str) -> np.ndarray:
    """The first channel of a channel-first array/tensor as an (H, W) ``[row, column]`` numpy array."""
    plane = image[0].detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image[0])
    return plane.T if layout == "xy" else plane


def _column_axis(layout: str) -> int:
    if layout not in ("xy", "yx"):
        raise ValueError(f"layout must be 'xy' ([C, x, y], MONAI's PILReader) or 'yx' ([C, row, col]), got {layout!r}")
    return 0 if layout == "xy" else 1


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
