"""Fit the server's mammogram-or-ultrasound check (``breastlab/data/modality.py``) on the shared sets' train splits
and measure it on their val splits and on mini-MIAS (never fitted on): how often an image of a model's own kind
would be refused wrongly, how often it only warns, and how often an image of the other kind is refused.

    python scripts/modality_check.py [--data ../shared/data] [--write]

``--write`` stores the parameters in ``breastlab/data/modality_check.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from breastlab.bundle import SHARED_DATA
from breastlab.data import read_dataset
from breastlab.data.modality import PARAMETERS, SURE, fit, image_features, mammogram_probability
from breastlab.formats.jpeg import read_gray_image
from breastlab.progress import progress

TRAIN = {"busi": "train", "busbra": "train", "mammo_bcd": "train"}
MEASURE = {"busi": "val", "busbra": "val", "mammo_bcd": "val", "mias": None}
MODALITY = {"busi": "US", "busbra": "US", "mammo_bcd": "MG", "mias": "MG"}


def features_of(data: Path, name: str, split: str | None) -> np.ndarray:
    cases = read_dataset(data / name, split)
    return np.stack([image_features(read_gray_image(c.image)) for c in progress(cases, f"features {name}")])


def rates(p_own: np.ndarray) -> dict:
    """Of images sent to a model of their own kind: refused wrongly, warned (unsure), accepted."""
    return {"n": len(p_own), "refused_wrongly": float(np.mean(p_own <= 1 - SURE)),
            "warned": float(np.mean((p_own > 1 - SURE) & (p_own < 0.5))), "accepted": float(np.mean(p_own >= 0.5)),
            "other_kind_refused": float(np.mean(1 - p_own <= 1 - SURE))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    train = {name: features_of(args.data, name, split) for name, split in TRAIN.items()}
    features = np.concatenate(list(train.values()))
    labels = np.concatenate([np.full(len(f), MODALITY[n] == "MG") for n, f in train.items()])
    parameters = fit(features, labels)
    table = {}
    for name, split in MEASURE.items():
        p_mammogram = mammogram_probability(features_of(args.data, name, split), parameters)
        table[f"{name} {split or 'all'}"] = rates(p_mammogram if MODALITY[name] == "MG" else 1 - p_mammogram)
    header = "sent to the other kind: refused"
    print(f"{'set':<16}{'n':>6}{'refused wrongly':>17}{'warned':>9}{'accepted':>10}{header:>33}")
    for name, row in table.items():
        print(f"{name:<16}{row['n']:>6}{row['refused_wrongly']:>17.3f}{row['warned']:>9.3f}{row['accepted']:>10.3f}"
              f"{row['other_kind_refused']:>33.3f}")
    if args.write:
        PARAMETERS.write_text(json.dumps({**parameters, "val": table}, indent=1) + "\n")
        print(f"wrote {PARAMETERS}")


if __name__ == "__main__":
    main()
