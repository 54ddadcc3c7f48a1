"""Where a mammography bundle's maps lie: a contact sheet of the first N no-cancer and N malignant images of a split,
each with its map (scaled to its peak) and the breast outline, titled with p(malignant) and the shares of the map's
mass outside the breast and on its skin line (``breastlab.evaluation.mammograms.map_shares``).

    python scripts/mammo_map_sheet.py breast_mammo_glam --data ../shared/data/mammo_bcd --split val --n 20 \\
        --out bundles/breast_mammo_glam/docs/val_map_sheet.png [--weights W] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse

import numpy as np

from breastlab.bundle import get_bundle
from breastlab.cli import _parse_overrides
from breastlab.data import read_dataset
from breastlab.data.mammo import read_mammogram
from breastlab.evaluation.mammograms import map_shares
from breastlab.evaluation.plots import plot_map_sheet
from breastlab.transforms.mammo import breast_mask, uninvert


def tiles(predictor, cases) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """One tile per case, and its shares printed as it goes."""
    made = []
    for case in cases:
        image = uninvert(read_mammogram(case.image))[0]
        output = predictor(case.image)
        shares = map_shares(image, output["probability"])
        p = output["class_probabilities"]["malignant"]
        title = (f"{case.label[:3]} p={p:.2f} out {shares.get('map_outside_breast', 0):.0%} "
                 f"skin {shares.get('map_on_skin_line', 0):.0%}")
        print(case.case, title)
        made.append((title, image, breast_mask(image), output["probability"]))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split")
    parser.add_argument("--n", type=int, default=20, help="images of each class")
    parser.add_argument("--weights")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", dest="override", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    predictor = get_bundle(args.bundle, **_parse_overrides(args.override)).predictor(args.weights)
    cases = read_dataset(args.data, args.split)
    chosen = [c for c in cases if c.label != "malignant"][: args.n]
    chosen += [c for c in cases if c.label == "malignant"][: args.n]
    print(f"wrote {plot_map_sheet(tiles(predictor, chosen), args.out)}")


if __name__ == "__main__":
    main()
