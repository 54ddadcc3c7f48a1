"""``breastlab agreement STUDIES``: how well the readers of a studies folder agree — a table, ``agreement.csv``
(each pair of readers of each image), ``agreement.json`` and a figure (per-image Dice, reader-by-reader Dice)."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np

from breastlab.evaluation.plots import pyplot, save_figure
from breastlab.metrics import format_ci, format_table
from breastlab.metrics.agreement import study_agreement

FIGURES = {"dice": "mean pairwise Dice", "hd95": "mean pairwise HD95 (px)", "class_kappa": "kappa, class",
           "birads_kappa": "kappa, BI-RADS"}


def study_table(study: dict) -> str:
    rows = [{"measure": label, "value (95% CI)": format_ci(study[key]),
             "method": study["methods"].get(key, "")} for key, label in FIGURES.items()]
    title = (f"{study['images']} images with a reader's label, {study['images_read_twice']} read by two or more; "
             f"readers: {', '.join(study['readers']) or 'none'}")
    return format_table(rows, ["measure", "value (95% CI)", "method"], title)


def lowest_table(per_image: dict[str, dict], k: int = 10) -> str:
    shared = sorted((a["mean_dice"], image) for image, a in per_image.items() if a["mean_dice"] is not None)
    rows = [{"image": image, "readers": " ".join(per_image[image]["readers"]), "mean Dice": round(d, 3)}
            for d, image in shared[:k]]
    return format_table(rows, ["image", "readers", "mean Dice"], f"lowest agreement first ({len(rows)} shown)")


def reader_matrix(per_image: dict[str, dict]) -> tuple[list[str], np.ndarray]:
    """Readers and their mean Dice per pair over the images both read (NaN where they share none)."""
    readers = sorted({r for a in per_image.values() for r in a["readers"]})
    sums, counts = np.zeros((len(readers),) * 2), np.zeros((len(readers),) * 2)
    for agreement in per_image.values():
        for pair in agreement["pairs"]:
            i, j = (readers.index(r) for r in pair["readers"])
            for a, b in ((i, j), (j, i)):
                sums[a, b] += pair["dice"]
                counts[a, b] += 1
    with np.errstate(invalid="ignore"):
        matrix = sums / counts
    np.fill_diagonal(matrix, 1.0)
    return readers, matrix


def plot_agreement(per_image: dict[str, dict], out: str | Path) -> Path:
    plt = pyplot()
    fig, (hist, grid) = plt.subplots(1, 2, figsize=(9, 3.8))
    dices = [a["mean_dice"] for a in per_image.values() if a["mean_dice"] is not None]
    hist.hist(dices, bins=np.linspace(0, 1, 21), color="#4477aa")
    hist.set(xlabel="mean pairwise Dice of an image", ylabel="images", title=f"{len(dices)} images read twice or more")
    readers, matrix = reader_matrix(per_image)
    shown = grid.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    grid.set(xticks=range(len(readers)), yticks=range(len(readers)), title="mean Dice, reader by reader")
    grid.set_xticklabels(readers, rotation=45, ha="right")
    grid.set_yticklabels(readers)
    for i, j in combinations(range(len(readers)), 2):
        for a, b in ((i, j), (j, i)):
            if not np.isnan(matrix[a, b]):
                grid.text(b, a, f"{matrix[a, b]:.2f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(shown, ax=grid)
    return save_figure(fig, out)


def agreement_report(studies: str | Path, out: str | Path | None = None, n_bootstrap: int = 1000) -> dict:
    """Print the study's agreement; with ``out``, write ``agreement.{csv,json,png}`` there."""
    from breastlab.server.datastore.local import BreastLabDatastore
    from breastlab.server.datastore.review import Review, readers_of
    from breastlab.server.datastore.review_export import AGREEMENT, agreement_rows, csv_text

    store = BreastLabDatastore(str(studies))
    review = Review.of(store)
    per_image = {image: review.agreement(image) for image, obj in sorted(store.objects.items())
                 if readers_of(obj.labels)}
    study = study_agreement(per_image, n_bootstrap)
    print(study_table(study))
    print(lowest_table(per_image))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows = [row for image, a in per_image.items() for row in agreement_rows(image, a)]
        (out / "agreement.csv").write_text(csv_text(rows, AGREEMENT), encoding="utf-8")
        (out / "agreement.json").write_text(json.dumps(study, indent=2), encoding="utf-8")
        figure = plot_agreement(per_image, out / "agreement.png")
        print(f"wrote {out / 'agreement.csv'}, {out / 'agreement.json'}, {figure}")
    return study
