"""One reader for every dataset folder of the BreastLab layout.

A dataset folder holds ``images/<case>.png`` (or ``.jpg``/``.jpeg``), optionally ``masks/<case>.png`` for some or all
cases (0 = background, anything else = lesion) and ``manifest.csv`` with at least a ``case``
column; ``label`` (normal|benign|malignant) and ``split`` are optional. Extra columns are kept as
metadata.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

from breastlab.formats.png import check_id

CLASS_NAMES = ("normal", "benign", "malignant")
NO_CANCER = "no_cancer"  # a class for every label but malignant (normal or benign findings), as mammo_bcd labels
BIRADS = ("0", "1", "2", "3", "4", "4a", "4b", "4c", "5", "6")  # ACR BI-RADS assessment categories
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # masks are PNG: lossless
MASK_SUFFIX = ".png"


class DatasetError(ValueError):
    """A dataset folder does not follow the layout; the message names the file or column."""


@dataclass(frozen=True)
class Case:
    """One image of a dataset folder."""

    case: str
    image: Path
    mask: Path | None = None
    label: str | None = None
    split: str | None = None
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def class_index(self) -> int | None:
        return CLASS_NAMES.index(self.label) if self.label else None


def read_dataset(root: str | Path, split: str | None = None) -> list[Case]:
    """Read ``root/manifest.csv``; keep the rows of ``split`` (all rows when ``None``)."""
    root = Path(root)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest.csv not found (expected images/, masks/, manifest.csv)")
    numbered = list(enumerate(_read_manifest(manifest), start=2))  # line 1 is the header
    if split is not None:
        splits = sorted({row.get("split") or "" for _, row in numbered})
        numbered = [(line, row) for line, row in numbered if row.get("split") == split]
        if not numbered:
            raise DatasetError(f"{manifest}: no rows with split={split!r} (column 'split' holds {splits})")
    masks_dir = root / "masks"
    return [_case_from_row(root, masks_dir if masks_dir.is_dir() else None, row, manifest, line)
            for line, row in numbered]


UNKNOWN_CLASS = -1  # the ``class`` of a case without a label: every item has the key, so batches collate


def to_monai_dicts(cases: list[Case], with_masks: bool = True) -> list[dict]:
    """MONAI dictionaries: ``image``, ``label`` (mask path), ``class`` (index, ``UNKNOWN_CLASS`` without a
    label) and ``case``."""
    items = []
    for c in cases:
        item = {"image": str(c.image), "case": c.case}
        if with_masks:
            if c.mask is None:
                raise DatasetError(f"{c.image}: case {c.case!r} has no mask in masks/")
            item["label"] = str(c.mask)
        item["class"] = UNKNOWN_CLASS if c.label is None else c.class_index
        items.append(item)
    return items


def dataset_dicts(root: str | Path | list, split: str | None = None, with_masks: bool = True,
                  classes: list[str] | None = None, mask_fraction: float | None = None, seed: int = 0,
                  only: dict | None = None, without: dict | None = None) -> list[dict]:
    """``case_dicts`` of one dataset folder or of a list of them (each read with its own ``split``): the entry point
    bundle configs use. ``only`` / ``without`` (manifest column -> value prefix, e.g. ``{"device": "GE Logiq 5"}``)
    keep only the matching cases / leave them out: a scanner held out of training and validated on alone."""
    roots = root if isinstance(root, (list, tuple)) else [root]
    cases = select_cases([c for r in roots for c in read_dataset(r, split)], only, without)
    if classes is not None and not any(c.label in classes for c in cases):
        raise DatasetError(f"{', '.join(map(str, roots))}: no cases of classes {list(classes)} in split {split!r}")
    return case_dicts(cases, with_masks, classes, mask_fraction, seed)


def select_cases(cases: list[Case], only: dict | None = None, without: dict | None = None) -> list[Case]:
    """The cases whose manifest columns start with ``only``'s values (all when None), less those matching
    ``without``."""
    def matches(case: Case, rules: dict) -> bool:
        return any(str(case.meta.get(column, "")).startswith(value) for column, value in rules.items())
    return [c for c in cases if (not only or matches(c, only)) and not (without and matches(c, without))]


def column_rule(text: str) -> dict:
    """``COLUMN=PREFIX`` (e.g. ``device=GE Logiq 5``) as ``{column: prefix}`` for ``select_cases``."""
    column, sep, prefix = text.partition("=")
    if not sep or not column.strip() or not prefix:
        raise DatasetError(f"{text!r}: expected COLUMN=PREFIX, e.g. 'device=GE Logiq 5'")
    return {column.strip(): prefix}


def case_dicts(cases: list[Case], with_masks: bool = True, classes: list[str] | None = None,
               mask_fraction: float | None = None, seed: int = 0) -> list[dict]:
    """``to_monai_dicts(cases)`` for training.

    ``classes``: only the cases labelled one of them, each with ``target``, its index in ``classes``
    (``no_cancer`` takes normal and benign cases, see ``class_index``).
    ``mask_fraction``: every item gets ``has_mask``, true for that fraction of the cases of each class
    (a seeded draw, the same for every run): semi-supervised trainers use only those masks.
    """
    if classes is not None:
        unknown = sorted(set(classes) - {*CLASS_NAMES, NO_CANCER})
        if unknown:
            raise DatasetError(f"unknown classes {unknown}, expected some of {(*CLASS_NAMES, NO_CANCER)}")
        cases = [c for c in cases if class_index(c.label, classes) is not None]
    items = to_monai_dicts(cases, with_masks)
    if classes is not None:
        for case, item in zip(cases, items):
            item["target"] = class_index(case.label, classes)
    if mask_fraction is not None:
        annotated = _stratified_fraction(cases, mask_fraction, seed)
        for case, item in zip(cases, items):
            item["has_mask"] = case.case in annotated
    return items


def class_index(label: str | None, classes: list[str]) -> int | None:
    """Where ``label`` (normal, benign or malignant) falls in ``classes``: its own name, else ``no_cancer`` for
    normal and benign; None when ``classes`` has neither."""
    if label in classes:
        return list(classes).index(label)
    if label in ("normal", "benign") and NO_CANCER in classes:
        return list(classes).index(NO_CANCER)
    return None


def _stratified_fraction(cases: list[Case], fraction: float, seed: int) -> set[str]:
    """Case ids of a seeded ``fraction`` (rounded) of the cases of each label."""
    if not 0.0 <= fraction <= 1.0:
        raise DatasetError(f"mask_fraction must be within [0, 1], got {fraction}")
    rng = random.Random(seed)
    chosen = set()
    for label in sorted({c.label or "" for c in cases}):
        ids = sorted(c.case for c in cases if (c.label or "") == label)
        chosen.update(rng.sample(ids, round(fraction * len(ids))))
    return chosen


def _read_manifest(manifest: Path) -> list[dict]:
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "case" not in reader.fieldnames:
            raise DatasetError(f"{manifest}: missing column 'case' (columns: {reader.fieldnames})")
        return list(reader)


def _case_from_row(root: Path, masks_dir: Path | None, row: dict, manifest: Path, line: int) -> Case:
    name = (row.get("case") or "").strip()
    try:
        check_id(name, "case id")
    except ValueError as e:
        raise DatasetError(f"{manifest}:{line}: column 'case': {e}") from e
    image = next((root / "images" / f"{name}{suffix}" for suffix in IMAGE_SUFFIXES
                  if (root / "images" / f"{name}{suffix}").is_file()), None)
    if image is None:
        raise DatasetError(f"{manifest}:{line}: image file {root / 'images' / name}{{{','.join(IMAGE_SUFFIXES)}}} "
                           "not found")
    mask = masks_dir / f"{name}{MASK_SUFFIX}" if masks_dir is not None else None
    if mask is not None and not mask.is_file():
        mask = None  # an image without a mask (yet); to_monai_dicts names it if a mask is required
    label = (row.get("label") or "").strip().lower() or None
    if label is not None and label not in CLASS_NAMES:
        raise DatasetError(f"{manifest}:{line}: column 'label' holds {label!r}, expected one of {CLASS_NAMES}")
    meta = {k: v for k, v in row.items() if k not in ("case", "label", "split")}
    return Case(name, image, mask, label, (row.get("split") or "").strip() or None, meta)
