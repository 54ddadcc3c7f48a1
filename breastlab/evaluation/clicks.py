"""Click simulation on a dataset: the Dice after each simulated click, the number of clicks to reach a Dice (NoC), the
share of lesions that never reach it and the largest fall of the mean Dice from one click to the next; for promptable
(box) models also the Dice from a jittered box around the lesion, then after each click added to it.

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
from breastlab.engines.promptable import PromptedPredictor
from breastlab.formats.png import read_gray_png
from breastlab.metrics import format_table
from breastlab.metrics.segmentation import dice
from breastlab.progress import progress
from breastlab.transforms.clicks import next_click


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
                    box_clicks: int = 10, seed: int = 0) -> dict:
    """Click simulation at the original image size on every case of ``data_dir`` with a lesion in its mask, one
    image at a time (:func:`click_case`; a promptable model's box seeded per case); per-case rows and their
    :func:`_mean_rows` ``summary``."""
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
        box = jittered_box(truth, np.random.default_rng([seed, zlib.crc32(case.case.encode())])) if promptable else None
        rows.append({"case": case.case, "label": case.label,
                     **click_case(predict, case.image, truth, box, max_clicks, box_clicks)})
    return {"summary": _mean_rows(rows), "cases": rows}


def click_case(predict: Callable, image, truth: np.ndarray, box: list[float] | None = None, max_clicks: int = 20,
               box_clicks: int = 10) -> dict:
    """One image's scores from ``predict(image, foreground, background, roi) -> mask``: the Dice after each of
    ``max_clicks`` clicks alone (``dices``, every call with ``roi=None``) and NoC@85/90; then with a ``box`` the
    Dice from the box alone (``box_dice``) and after each of ``box_clicks`` clicks added to it (``box_click_dice``,
    every call with that same ``roi``), or without one the automatic Dice (no prompt)."""
    dices = simulate_clicks(lambda im, fg, bg: predict(im, fg, bg, None), image, truth, max_clicks)
    row = {"dices": dices, "noc85": clicks_to_reach(dices, 0.85, max_clicks),
           "noc90": clicks_to_reach(dices, 0.90, max_clicks)}
    if box is None:
        row["automatic_dice"] = dice(predict(image, [], [], None), truth)
        return row
    box_mask = predict(image, [], [], box)
    return {**row, "box": box, "box_dice": dice(box_mask, truth), "box_click_dice": simulate_clicks(
        lambda im, fg, bg: predict(im, fg, bg, box), image, truth, box_clicks, start=box_mask)}


def largest_drop(curve: Sequence[float], first: int = 1) -> dict | None:
    """The largest fall of ``curve`` (``curve[0]`` after ``first`` clicks) from one click to the next:
    ``{"click": k, "drop": Dice after k - 1 clicks minus Dice after k}``; ``None`` when it never falls."""
    falls = -np.diff(np.asarray(curve, float))
    if not falls.size or falls.max() <= 0:
        return None
    return {"click": first + int(falls.argmax()) + 1, "drop": float(falls.max())}


def _mean_rows(rows: list[dict]) -> dict:
    """Means over :func:`click_case` rows: ``automatic_dice`` or ``box_dice``; ``dice_after_clicks`` (per click),
    ``noc85`` / ``noc90``, ``fail85`` / ``fail90`` (the share of lesions that never reach 0.85 / 0.90 within the
    clicks) and ``largest_drop`` of the mean Dice per click; for boxes ``box_click_dice`` and ``box_largest_drop``
    (click 1: the first after the box)."""
    if not rows:
        return {"n": 0}
    keys = [k for k in ("automatic_dice", "box_dice", "noc85", "noc90") if k in rows[0]]
    summary = {"n": len(rows), **{key: float(np.mean([r[key] for r in rows])) for key in keys}}
    curve = np.mean([r["dices"] for r in rows], axis=0)
    summary.update(dice_after_clicks=curve.tolist(), largest_drop=largest_drop(curve), **{
        f"fail{round(100 * t)}": float(np.mean([max(r["dices"]) < t for r in rows])) for t in (0.85, 0.90)})
    if "box_click_dice" in rows[0]:
        box = np.mean([r["box_click_dice"] for r in rows], axis=0)
        summary.update(box_click_dice=box.tolist(),
                       box_largest_drop=largest_drop([summary["box_dice"], *box], first=0))
    return summary


def click_tables(summaries: dict[str, dict]) -> str:
    """``evaluate_clicks`` summaries ({model: summary}) as text tables: clicks alone, then box + clicks where a
    summary has a box."""
    def drop(summary: dict, key: str) -> str | None:
        if key not in summary:
            return None
        return "none" if summary[key] is None else f"{summary[key]['drop']:.3f} at click {summary[key]['click']}"

    alone, boxed = [], []
    for model, s in summaries.items():
        dices = s.get("dice_after_clicks", [])
        alone.append({"model": model, "n": s["n"], "automatic": s.get("automatic_dice"),
                      **{f"@{k}": dices[k - 1] for k in (1, 2, 3, 5, 10, 20) if len(dices) >= k},
                      "NoC@85": s.get("noc85"), "NoC@90": s.get("noc90"), "fail85": s.get("fail85"),
                      "fail90": s.get("fail90"), "largest drop": drop(s, "largest_drop")})
        if "box_dice" in s:
            box = s["box_click_dice"]
            boxed.append({"model": model, "n": s["n"], "box": s["box_dice"],
                          **{f"box+{k}": box[k - 1] for k in (1, 2, 5, 10) if len(box) >= k},
                          "largest drop": drop(s, "box_largest_drop")})
    n = max((len(s.get("dice_after_clicks", [])) for s in summaries.values()), default=0) or 20
    tables = [format_table(alone, ["model", "n", "automatic", "@1", "@2", "@3", "@5", "@10", "@20", "NoC@85",
                                   "NoC@90", "fail85", "fail90", "largest drop"],
                           f"Clicks alone (lesion images): mean Dice after @k clicks; NoC@85/90: clicks to reach Dice "
                           f"0.85/0.90 ({n} if never); fail85/90: share never reaching it in {n} clicks")]
    if boxed:
        tables.append(format_table(boxed, ["model", "n", "box", "box+1", "box+2", "box+5", "box+10",
                                           "largest drop"], "Jittered box, then clicks added to it: mean Dice"))
    return "\n\n".join(tables)
