"""End2end foundation: lesion circles, breast side/crop, woman-grouped folds, patch sampling (the networks:
test_end2end_networks.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from breastlab.data import read_dataset
from breastlab.data.mammo import (
    Circle,
    background_centres,
    crop_circles,
    extract_patch,
    flip_circles,
    lesion_circles,
    lesion_mask,
    pair_folds,
    patch_centres,
    patch_items,
    prepare_case,
    resize_circles,
    resize_image,
    sample_patches,
)
from breastlab.data.reader import Case
from breastlab.formats.png import read_gray_png
from breastlab.transforms.mammo import breast_bbox, breast_mask, breast_side, flip_columns, orient_breast


def make_case(name: str = "c1", lesions=None, label: str | None = None, pair: str | None = None) -> Case:
    meta = {"lesions": lesions if isinstance(lesions, str) else json.dumps(lesions or [])}
    if pair is not None:
        meta["pair"] = pair
    return Case(name, Path(f"/nonexistent/{name}.png"), label=label, meta=meta)


def synthetic_breast(side: str = "left", h: int = 240, w: int = 200, marker: bool = True) -> np.ndarray:
    """A half-disc of textured tissue against the chest wall at column 12 (mirrored for ``right``), a 1-pixel
    film-edge line and a bright label in the opposite corner, tied to the breast by a 1-pixel wire."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:h, :w]
    breast = ((rows - h / 2) ** 2 + (cols - 12) ** 2 <= (0.42 * h) ** 2) & (cols >= 12)
    image = np.where(breast, 120 + rng.integers(0, 60, (h, w)), rng.integers(0, 6, (h, w))).astype(np.uint8)
    image[:, 2] = 255
    if marker:
        image[8:30, w - 30: w - 10] = 255
        image[30: h // 2, w - 20] = image[h // 2, 100: w - 20] = 255
    return image if side == "left" else flip_columns(image)


# lesion circles and masks

def test_lesion_circles_parse_and_skip_entries_without_centre():
    lesions = [{"abnormality": "CIRC", "severity": "B", "col": 535, "row": 599, "radius": 197},
               {"abnormality": "CALC", "severity": "M"},
               {"abnormality": "CALC", "severity": "M", "col": None, "row": None, "radius": None},
               {"abnormality": "SPIC", "severity": "M", "col": 10, "row": 20},
               {"abnormality": "SPIC", "severity": "M", "col": 10.5, "row": 20, "radius": 7}]
    assert lesion_circles(make_case(lesions=lesions)) == [Circle(599, 535, 197, "B"), Circle(20, 10.5, 7, "M")]
    assert lesion_circles(make_case(lesions="")) == []
    assert lesion_circles(Case("c", Path("x.png"))) == []
    with pytest.raises(ValueError, match="c1.*lesions"):
        lesion_circles(make_case(lesions="[{"))


def test_lesion_mask_fills_discs():
    mask = lesion_mask([Circle(10, 12, 3), Circle(25, 25, 0.5)], (30, 30))
    assert mask.sum() == 29 + 1  # lattice points within radius 3, and the centre alone
    assert mask[10, 15] and mask[13, 12] and mask[12, 14] and not mask[10, 16] and not mask[12, 15]
    assert mask[25, 25] and not mask[25, 26]
    assert not lesion_mask([], (5, 6)).any() and lesion_mask([], (5, 6)).shape == (5, 6)


# breast side, orientation, crop

def test_breast_side_and_orientation():
    left, right = synthetic_breast("left"), synthetic_breast("right")
    assert breast_side(left) == "left" and breast_side(right) == "right"
    oriented, flipped = orient_breast(right)
    assert flipped and np.array_equal(oriented, left)
    same, flipped = orient_breast(left)
    assert not flipped and same is left


def test_flip_round_trips_masks_and_circles():
    circles = [Circle(40, 30, 9, "B"), Circle(100.5, 150, 20, "M")]
    shape = (160, 200)
    mask = lesion_mask(circles, shape)
    flipped = flip_circles(circles, shape[1])
    assert np.array_equal(lesion_mask(flipped, shape), flip_columns(mask))
    assert flip_circles(flipped, shape[1]) == circles
    assert np.array_equal(flip_columns(flip_columns(mask)), mask)


def test_breast_bbox_drops_marker_and_film_edge():
    image = synthetic_breast("left")
    r0, r1, c0, c1 = breast_bbox(image, margin=0)
    breast = (image > 100) & (image < 255)  # tissue without the label, wire and film edge
    rows, cols = np.flatnonzero(breast.any(1)), np.flatnonzero(breast.any(0))
    assert c1 < image.shape[1] - 30  # the label's columns are left out
    assert abs(r0 - rows[0]) <= 2 and abs(r1 - rows[-1] - 1) <= 2 and abs(c0 - cols[0]) <= 2
    assert abs(c1 - cols[-1] - 1) <= 2
    assert not breast_mask(image)[:, :4].any() and not breast_mask(image)[8:30, -30:-10].any()
    g0, g1, h0, h1 = breast_bbox(image, margin=5)
    assert (g0, g1, h0, h1) == (max(r0 - 5, 0), min(r1 + 5, image.shape[0]), max(c0 - 5, 0), c1 + 5)
    assert breast_bbox(np.zeros((40, 50), np.uint8)) == (0, 40, 0, 50)


# folds

def _cohort(seed: int = 0) -> list[Case]:
    """40 women, two images each: 10 with a malignant image, 15 with a benign one, 15 normal; one single image."""
    rng = np.random.default_rng(seed)
    labels = ["malignant"] * 10 + ["benign"] * 15 + ["normal"] * 15
    cases = []
    for woman, label in enumerate(rng.permutation(labels)):
        sides = [label, "normal"] if rng.random() < 0.5 else ["normal", label]
        cases += [make_case(f"w{woman}_{i}", label=lab, pair=str(woman)) for i, lab in enumerate(sides)]
    return cases + [make_case("single", label="benign")]


def test_pair_folds_keep_women_together_and_are_stratified():
    cases = _cohort()
    folds = pair_folds(cases, k=5, seed=3)
    assert len(folds) == len(cases) and set(folds) == set(range(5))
    by_pair: dict[str, set[int]] = {}
    for case, fold in zip(cases, folds):
        by_pair.setdefault(case.meta.get("pair", case.case), set()).add(fold)
    assert all(len(f) == 1 for f in by_pair.values())
    for label in ("malignant", "benign", "normal"):
        counts = Counter(f for c, f in zip(cases, folds) if c.label == label)
        assert max(counts.values()) - min(counts[f] for f in range(5)) <= 1, (label, counts)


def test_pair_folds_are_deterministic_per_seed():
    cases = _cohort()
    assert pair_folds(cases, seed=1) == pair_folds(cases, seed=1)
    assert pair_folds(cases, seed=1) != pair_folds(cases, seed=2)
    assert pair_folds(cases, k=3, seed=0) != pair_folds(cases, k=5, seed=0)


# patches

def _patch_scene():
    image = synthetic_breast("left", h=240, w=200, marker=False).astype(np.float32) / 255
    circles = [Circle(90, 40, 10, "B"), Circle(160, 60, 6, "M")]
    return image, circles


def test_patch_classes_and_lesion_centres():
    image, circles = _patch_scene()
    centres = patch_centres(image, circles, 32, 7, 25, np.random.default_rng(0))
    assert [cls for _, _, cls in centres] == [1] * 7 + [2] * 7 + [0] * 25
    for (r, q, _), circle in zip(centres[:14], [circles[0]] * 7 + [circles[1]] * 7):
        assert np.hypot(r - circle.row, q - circle.col) <= circle.radius + 0.71
    patches = sample_patches(image, circles, 32, 7, 25, np.random.default_rng(0))
    assert [cls for _, cls in patches] == [cls for _, _, cls in centres]
    for (patch, _), (r, q, _) in zip(patches, centres):
        assert patch.shape == (32, 32) and np.array_equal(patch, extract_patch(image, r, q, 32))
    with pytest.raises(ValueError, match="severity"):
        patch_centres(image, [Circle(90, 40, 10, "")], 32, 1, 0, np.random.default_rng(0))


def test_background_patches_stay_away_from_lesions():
    image, circles = _patch_scene()
    p = 32
    lesions = lesion_mask(circles, image.shape)
    tissue = breast_mask(image)
    centres = patch_centres(image, circles, p, 0, 60, np.random.default_rng(1))
    assert len(centres) == 60 and len(set(centres)) == 60
    for r, q, cls in centres:
        assert cls == 0 and tissue[r, q]
        assert not extract_patch(lesions, r, q, p).any()
        assert all(np.hypot(r - c.row, q - c.col) - c.radius >= p / 2 - 1 for c in circles)
    allowed = background_centres(image, circles, p)
    assert allowed.sum() < tissue.sum()
    few = patch_centres(image, [Circle(120, 60, 500, "B")], p, 0, 10, np.random.default_rng(0))
    assert few == []  # no tissue is far enough from a huge lesion


def test_outside_patches_come_from_off_the_breast():
    image, circles = _patch_scene()
    tissue = breast_mask(image)
    centres = patch_centres(image, circles, 32, 0, 5, np.random.default_rng(2), n_outside=8)
    on, off = centres[:5], centres[5:]
    assert len(off) == 8 and all(cls == 0 for _, _, cls in centres)
    assert all(tissue[r, q] for r, q, _ in on) and not any(tissue[r, q] for r, q, _ in off)
    assert not background_centres(image, circles, 32, on_breast=False)[tissue].any()


def test_extract_patch_pads_at_borders():
    image = np.arange(1, 101, dtype=np.float32).reshape(10, 10)
    patch = extract_patch(image, 0, 9, 6)
    assert patch.shape == (6, 6)
    assert np.array_equal(patch[3:, :4], image[:3, 6:])
    assert not patch[:3].any() and not patch[:, 4:].any()
    assert np.array_equal(extract_patch(image, 5, 5, 4), image[3:7, 3:7])


def test_resize_moves_circles_with_the_image():
    circles = [Circle(41, 60, 12, "B")]
    mask = lesion_mask(circles, (120, 100)).astype(np.float32)
    small = resize_image(mask, 0.5)
    assert small.shape == (60, 50)
    moved = resize_circles(circles, mask.shape, small.shape)[0]
    rows, cols = np.mgrid[: small.shape[0], : small.shape[1]]
    centroid = (rows * small).sum() / small.sum(), (cols * small).sum() / small.sum()
    assert abs(centroid[0] - moved.row) < 0.1 and abs(centroid[1] - moved.col) < 0.1
    assert moved.radius == 6
    assert crop_circles(circles, (10, 100, 20, 90)) == [Circle(31, 40, 12, "B")]


# real mini-MIAS cases

@pytest.fixture(scope="module")
def mias(shared_data) -> list[Case]:
    return read_dataset(shared_data / "mias", "dev")


def test_mias_sides_of_a_pair_are_opposite(mias):
    cases = {c.case: c for c in mias}
    assert [breast_side(read_gray_png(cases[n].image)) for n in ("mdb001", "mdb002")] == ["right", "left"]
    # breasts filling the film: the whole halves would say the opposite
    assert [breast_side(read_gray_png(cases[n].image)) for n in ("mdb151", "mdb152")] == ["right", "left"]


def test_mias_folds(mias):
    folds = pair_folds(mias, k=5, seed=0)
    pairs: dict[str, set[int]] = {}
    for case, fold in zip(mias, folds):
        pairs.setdefault(case.meta["pair"], set()).add(fold)
    assert all(len(f) == 1 for f in pairs.values())
    for label in ("malignant", "benign", "normal"):
        counts = Counter(f for c, f in zip(mias, folds) if c.label == label)
        assert max(counts.values()) - min(counts[f] for f in range(5)) <= 2


def test_mias_patch_items(mias):
    cases = {c.case: c for c in mias}
    chosen = [cases[n] for n in ("mdb001", "mdb003", "mdb023", "mdb233")]  # benign, normal, malignant, no location
    items = patch_items(chosen, scale=0.5, patch_size=48, n_per_lesion=5, n_background=7, seed=0)
    by_case = {n: [i["label"] for i in items if i["case"] == n] for n in ("mdb001", "mdb003", "mdb023", "mdb233")}
    assert by_case == {"mdb001": [1] * 5 + [0] * 7, "mdb003": [0] * 7, "mdb023": [2] * 5 + [0] * 7, "mdb233": []}
    for item in items:
        assert item["image"].shape == (1, 48, 48) and item["image"].dtype == np.float32
        assert 0 <= item["image"].min() and item["image"].max() <= 1
    again = patch_items([cases["mdb023"]], scale=0.5, patch_size=48, n_per_lesion=5, n_background=7, seed=0)
    first = [i for i in items if i["case"] == "mdb023"]
    assert len(again) == len(first) and all(np.array_equal(a["image"], b["image"]) for a, b in zip(again, first))
    other = patch_items([cases["mdb023"]], scale=0.5, patch_size=48, n_per_lesion=5, n_background=7, seed=1)
    assert not np.array_equal(other[0]["image"], again[0]["image"])


def test_mias_circles_follow_orientation_crop_and_scale(mias):
    case = next(c for c in mias if c.case == "mdb023")  # a right breast: flipped
    image, circles = prepare_case(case, scale=0.5)
    raw, flipped = orient_breast(read_gray_png(case.image))
    assert flipped
    r0, r1, c0, c1 = breast_bbox(raw)
    mask = flip_columns(lesion_mask(lesion_circles(case), raw.shape))[r0:r1, c0:c1].astype(np.float32)
    small = resize_image(mask, 0.5)
    assert small.shape == image.shape
    rows, cols = np.mgrid[: small.shape[0], : small.shape[1]]
    centroid = (rows * small).sum() / small.sum(), (cols * small).sum() / small.sum()
    assert abs(centroid[0] - circles[0].row) < 0.5 and abs(centroid[1] - circles[0].col) < 0.5
    assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
