"""Click simulation on a dataset: the Dice after each simulated click and the number of clicks to reach a Dice (NoC);
for promptable (box) models also the Dice from a jittered box around the lesion, then after each click added to it.

Masks are PIL's ``(rows, columns)``; clicks are ``[x, y]`` (x = column, y = row); boxes ``[x0, y0, x1, y1]``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import decollate_batch

from breastlab.bundle import Predictor, prediction_outputs
from breastlab.data import read_dataset
from breastlab.engines.prompting import PromptedPredictor
from breastlab.formats.png import read_gray_png
from breastlab.progress import progress
from breastlab.transforms.clicks import next_click


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks (nonzero = lesion); 1.0 when both are empty."""
    mask, truth = np.asarray(mask) > 0, np.asarray(truth) > 0
    total = mask.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (mask & truth).sum() / total)


def simulate_clicks(predict: Callable, image, truth: np.ndarray, max_clicks: int = 20,
                    start: np.ndarray | None = None) -> list[float]:
    """Dice after each of ``max_clicks`` simulated clicks, each at the centre of the largest error region of the
    previous mask (:func:`next_click`; the first, on an empty ``start`` mask, at the centre of the largest lesion).
    ``predict(image, foreground, background) -> mask``: (rows, columns) masks like ``truth``, clicks as lists of
    ``[x, y]`` (x = column, y = row). Once no error is left the Dice stays where it is (1.0)."""
    truth = np.asarray(truth) > 0
    mask = np.zeros_like(truth) if start is None else np.asarray(start) > 0
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


def jittered_box(truth: np.ndarray, rng: np.random.Generator, jitter: float = 0.05) -> list[float]:
    """The lesion's box ``[x0, y0, x1, y1]`` with each side moved by a uniform draw of up to ``jitter`` of the box's
    width (x sides) or height (y sides), kept inside the image."""
    rows, cols = np.nonzero(truth)
    x0, x1, y0, y1 = cols.min(), cols.max(), rows.min(), rows.max()
    dx, dy = rng.uniform(-jitter, jitter, 2) * (x1 - x0 + 1), rng.uniform(-jitter, jitter, 2) * (y1 - y0 + 1)
    height, width = truth.shape
    box = [np.clip(x0 + dx[0], 0, width - 2), np.clip(y0 + dy[0], 0, height - 2), np.clip(x1 + dx[1], 0, width - 1),
           np.clip(y1 + dy[1], 0, height - 1)]
    box[2], box[3] = max(box[2], box[0] + 1), max(box[3], box[1] + 1)
    return [float(v) for v in box]


def evaluate_clicks(predictor: Predictor, data_dir: str | Path, split: str | None = None, max_clicks: int = 20,
                    box_clicks: int = 2, seed: int = 0) -> dict:
    """Click simulation at the original image size on every case of ``data_dir`` with a lesion in its mask: per case
    the Dice after each click and NoC@85/90, and the automatic Dice (no clicks) of a model that has an automatic
    mode, or for a promptable model the Dice from a jittered box (``box_dice``, seeded per case) and after each of
    ``box_clicks`` clicks added to it (``box_click_dice``); their means under ``summary``."""
    promptable = bool(predictor.bundle.prompts)
    prompted = PromptedPredictor(predictor) if promptable else None

    def predict(image, foreground, background, roi=None):
        if prompted is not None:
            return prompted(image, foreground, background, roi)["mask"]
        return predict_with_clicks(predictor, image, foreground, background)["mask"]

    rows = []
    for case in progress(read_dataset(data_dir, split), f"evaluate {predictor.bundle.name} clicks"):
        truth = read_gray_png(case.mask) > 0 if case.mask else None
        if truth is None or not truth.any():
            continue
        dices = simulate_clicks(predict, case.image, truth, max_clicks)
        row = {"case": case.case, "label": case.label, "dices": dices,
               "noc85": clicks_to_reach(dices, 0.85, max_clicks), "noc90": clicks_to_reach(dices, 0.90, max_clicks)}
        if promptable:
            box = jittered_box(truth, np.random.default_rng([seed, zlib.crc32(case.case.encode())]))
            box_mask = predict(case.image, [], [], box)
            row.update(box=box, box_dice=dice(box_mask, truth), box_click_dice=simulate_clicks(
                lambda image, fg, bg: predict(image, fg, bg, box), case.image, truth, box_clicks, start=box_mask))
        else:
            row["automatic_dice"] = dice(predict(case.image, [], []), truth)
        rows.append(row)
    return {"summary": _mean_rows(rows), "cases": rows}


def _mean_rows(rows: list[dict]) -> dict:
    if not rows:
        return {"n": 0}
    keys = [k for k in ("automatic_dice", "box_dice", "noc85", "noc90") if k in rows[0]]
    summary = {"n": len(rows), **{key: float(np.mean([r[key] for r in rows])) for key in keys}}
    for key, name in (("dices", "dice_after_clicks"), ("box_click_dice", "box_click_dice")):
        if key in rows[0]:
            summary[name] = np.mean([r[key] for r in rows], axis=0).tolist()
    return summary
