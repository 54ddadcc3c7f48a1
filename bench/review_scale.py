"""Agreement and consensus of a synthetic reading study (goal: 100 images, 3 readers in <= 10 s).

Builds the study (``tests/synthetic_readers.py``), then in this process: the study's agreement (each image's pairwise
Dice and HD95, kappas, 1,000 bootstrap resamples) and STAPLE's consensus of every image; the first run in a fresh
process, then again on a new ``Review`` (nothing cached).
Run by hand: ``python bench/review_scale.py [--images 100] [--readers 3] [--size 256]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from breastlab.metrics import format_table
from breastlab.metrics.consensus import consensus
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.review import Review

from common import timed
from tests.synthetic_readers import reading_study


def measure(studies: Path, run: str) -> dict:
    review = Review(BreastLabDatastore(str(studies)))
    images = sorted(review.store.objects)
    agreement = timed(review.study)
    proposals = timed(lambda: [consensus(review.reads(image)) for image in images])
    return {"run": run, "agreement (s)": agreement, "consensus (s)": proposals, "total (s)": agreement + proposals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reading_study(Path(tmp) / "studies", args.images, args.readers, args.size)
        rows = [measure(Path(tmp) / "studies", run) for run in ("first in the process", "again")]
    title = (f"Review scale: {args.images} images x {args.readers} readers, {args.size}x{args.size} px "
             "(goal: total <= 10 s)")
    print(format_table(rows, ["run", "agreement (s)", "consensus (s)", "total (s)"], title))


if __name__ == "__main__":
    main()
