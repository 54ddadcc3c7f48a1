"""Mammogram datasets: lesion circles, woman-grouped folds, and the lesion/background patches of the end-to-end
classifier's patch stage (Shen et al. 2019). Arrays are (H, W), indexed ``[row, column]``."""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from breastlab.data.reader import Case, read_dataset
from breastlab.formats.dicom import is_dicom, read_dicom_image
from breastlab.formats.jpeg import read_gray_image
from breastlab.transforms.mammo import TISSUE_THRESHOLD, breast_bbox, breast_mask, orient_breast, uninvert

PATCH_CLASSES = ("background", "benign", "malignant")
SEVERITY_CLASS = {"B": 1, "M": 2}  # MIAS severity → patch class


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
    """An (H, W) uint8 mammogram from a grayscale PNG or JPEG or a DICOM file (display pipeline of ``dicomio``)."""
    return read_dicom_image(path).pixels if is_dicom(path) else read_gray_image(path)


def prepare_case(case: Case, scale: float = 1.0) -> tuple[np.ndarray, list[Circle]]:
    """A case's image the right way round (:func:`uninvert`), oriented (breast on the left), cropped to the breast,
    resized by ``scale`` and scaled to [0, 1], with its lesion circles moved along."""
    image, flipped = orient_breast(uninvert(read_mammogram(case.image))[0])
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
