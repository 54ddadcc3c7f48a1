"""Write dataset folders in the layout ``read_dataset`` reads (exports from the datastore)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from breastlab.data.reader import IMAGE_SUFFIX, Case
from breastlab.formats.png import read_gray_png, write_png


def write_dataset(root: str | Path, cases: list[Case]) -> Path:
    """``images/``, ``masks/`` (lesion = 255) for the cases that have one, and ``manifest.csv``.

    The manifest has ``case``, ``label``, ``split`` and every metadata key of the cases.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for case in cases:
        shutil.copyfile(case.image, root / "images" / f"{case.case}{IMAGE_SUFFIX}")
        if case.mask is not None:
            (root / "masks").mkdir(exist_ok=True)
            mask = read_gray_png(case.mask) > 0
            write_png(mask.astype("uint8") * 255, root / "masks" / f"{case.case}{IMAGE_SUFFIX}")
    extra = sorted({key for case in cases for key in case.meta})
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["case", "label", "split", *extra])
        writer.writeheader()
        for case in cases:
            writer.writerow({"case": case.case, "label": case.label or "", "split": case.split or "", **case.meta})
    return root
