"""Write dataset folders in the layout ``read_dataset`` reads (exports from the datastore)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from breastlab.data.reader import MASK_SUFFIX, Case
from breastlab.formats.png import ImageError, read_gray_png, write_png


def write_dataset(root: str | Path, cases: list[Case]) -> Path:
    """``images/``, ``masks/`` (lesion = 255) for the cases that have one, and ``manifest.csv``.

    The manifest has ``case``, ``label``, ``split`` and every metadata key of the cases. A case whose files are
    gone by the time it is written (deleted while a datastore export runs) is left out.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    cases = [case for case in cases if _write_case(root, case)]
    extra = sorted({key for case in cases for key in case.meta})
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["case", "label", "split", *extra])
        writer.writeheader()
        for case in cases:
            writer.writerow({"case": case.case, "label": case.label or "", "split": case.split or "", **case.meta})
    return root


def _write_case(root: Path, case: Case) -> bool:
    """Copy one case's image and mask into ``root``; False (nothing written) when a file has disappeared."""
    try:
        mask = read_gray_png(case.mask) > 0 if case.mask is not None else None
        shutil.copyfile(case.image, root / "images" / f"{case.case}{case.image.suffix}")
    except (FileNotFoundError, ImageError):
        return False
    if mask is not None:
        (root / "masks").mkdir(exist_ok=True)
        write_png(mask.astype("uint8") * 255, root / "masks" / f"{case.case}{MASK_SUFFIX}", durable=False)
    return True
