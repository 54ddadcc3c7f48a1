"""A synthetic reading study with a known truth: images with one elliptic lesion, and readers who each outline it
with their own bias (a shifted, grown or shrunk ellipse) and give a class and a BI-RADS that sometimes differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from breastlab.formats.png import write_png
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.review import Review

CLASSES = ("benign", "malignant")
BIRADS_BY_CLASS = {"benign": ("2", "3", "4a"), "malignant": ("4b", "4c", "5")}


def ellipse(size: int, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return (((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1).astype(np.uint8)


def reading_study(studies: Path, images: int, readers: int, size: int = 128, seed: int = 0) -> dict[str, dict]:
    """Write a studies folder where ``readers`` readers labelled each of ``images`` images; returns the truth
    ``{image: {"mask", "class"}}``."""
    rng = np.random.default_rng(seed)
    studies.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(images):
        centre, radii = rng.uniform(0.35, 0.65, 2) * size, rng.uniform(0.1, 0.2, 2) * size
        image = f"img{i:03d}"
        truth[image] = {"mask": ellipse(size, centre, radii), "class": str(rng.choice(CLASSES))}
        write_png(np.clip(rng.normal(90, 20, (size, size)) + 60 * truth[image]["mask"], 0, 255).astype(np.uint8),
                  studies / f"{image}.png")
    review = Review.of(BreastLabDatastore(str(studies)))
    uploads = studies.parent / f"{studies.name}-reads"
    uploads.mkdir(exist_ok=True)
    for image, known in truth.items():
        for r in range(readers):
            centre = np.array(np.nonzero(known["mask"])).mean(1) + rng.normal(0, 0.02 * size * (r + 1), 2)
            radii = np.array(np.nonzero(known["mask"])).std(1) * 2 * rng.uniform(0.85, 1.15, 2)
            label = known["class"] if rng.random() > 0.15 * r else str(rng.choice(CLASSES))
            path = write_png(ellipse(size, tuple(centre), tuple(radii)), uploads / f"{image}-{r}.png")
            review.save_read(image, f"reader{r + 1}", str(path),
                             {"class": label, "birads": str(rng.choice(BIRADS_BY_CLASS[label]))}, f"reader{r + 1}")
            path.unlink()
    uploads.rmdir()
    return truth
