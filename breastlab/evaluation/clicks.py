"""Click simulation on a dataset: the Dice after each simulated click and the number of clicks to reach a Dice (NoC).

Masks are PIL's ``(rows, columns)``; clicks are ``[x, y]`` (x = column, y = row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import decollate_batch

from breastlab.bundle import Predictor, prediction_outputs
from breastlab.data import read_dataset
from breastlab.formats.png import read_gray_png
from breastlab.transforms.clicks import next_click


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks (nonzero = lesion); 1.0 when both are empty."""
    mask, truth = np.asarray(mask) > 0, np.asarray(truth) > 0
    total = mask.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (mask & truth).sum() / total)


def simulate_clicks(predict: Callable, image, truth: np.ndarray, max_clicks: int = 20) -> list[float]:
    """Dice after each of ``max_clicks`` simulated clicks, each at the centre of the largest error region of the
    previous mask (:func:`next_click`; the first, on an empty mask, at the centre of the largest lesion).
    ``predict(image, foreground, background) -> mask``: (rows, columns) masks like ``truth``, clicks as lists of
    ``[x, y]`` (x = column, y = row). Once no error is left the Dice stays where it is (1.0)."""
    truth = np.asarray(truth) > 0
    mask = np.zeros_like(truth)
    clicks: dict[bool, list] = {True: [], False: []}
    dices: list[float] = []
    while len(dices) < max_clicks and (click := next_click(truth & ~mask, mask & ~truth)) is not None:
        (row, column), foreground = click
        clicks[foreground].append([column, row])
        mask = np.asarray(predict(image, list(clicks[True]), list(clicks[False]))) > 0
        if mask.shape != truth.shape:
            raise ValueError(f"predict returned a {mask.shape} mask for a {truth.shape} truth")
        dices.append(dice(mask, truth))
    return dices + [dice(mask, truth)] * (max_clicks - len(dices))


def clicks_to_reach(dices: Sequence[float], target: float, limit: int = 20) -> int:
    """NoC: the number of clicks after which the Dice first reaches ``target`` (``limit`` when it never does)."""
    return next((k for k, d in enumerate(dices[:limit], start=1) if d >= target), limit)


@torch.no_grad()
def predict_with_clicks(predictor: Predictor, image_path: str | Path, foreground: Sequence = (),
                        background: Sequence = ()) -> dict:
    """``predictor(image_path)`` with clicks (``[x, y]`` lists): ``mask`` and ``probability`` at the image size."""
    data = predictor.pre({"image": str(image_path), "foreground": list(foreground), "background": list(background)})
    output = predictor.inferer(data["image"][None].to(predictor.device), predictor.network)
    data["pred"] = decollate_batch(output, detach=True)[0]
    return prediction_outputs(predictor.post(data), predictor.bundle.classes)


def evaluate_clicks(predictor: Predictor, data_dir: str | Path, split: str | None = None,
                    max_clicks: int = 20) -> dict:
    """Click simulation at the original image size on every case of ``data_dir`` with a lesion in its mask:
    per case the automatic Dice, the Dice after each click and NoC@85/90; their means under ``summary``."""

    def predict(image, foreground, background):
        return predict_with_clicks(predictor, image, foreground, background)["mask"]

    rows = []
    for case in read_dataset(data_dir, split):
        truth = read_gray_png(case.mask) > 0 if case.mask else None
        if truth is not None and truth.any():
            dices = simulate_clicks(predict, case.image, truth, max_clicks)
            automatic = dice(predict(case.image, [], []), truth)
            rows.append({"case": case.case, "label": case.label, "automatic_dice": automatic, "dices": dices,
                         "noc85": clicks_to_reach(dices, 0.85, max_clicks),
                         "noc90": clicks_to_reach(dices, 0.90, max_clicks)})
    return {"summary": _mean_rows(rows, max_clicks), "cases": rows}


def _mean_rows(rows: list[dict], max_clicks: int) -> dict:
    if not rows:
        return {"n": 0}
    mean = {key: float(np.mean([r[key] for r in rows])) for key in ("automatic_dice", "noc85", "noc90")}
    return {"n": len(rows), **mean, "dice_after_clicks": np.mean([r["dices"] for r in rows], axis=0).tolist()}
