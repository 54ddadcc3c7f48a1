"""Choosing a lesion-presence gate on val: the grid of thresholds tried, and the rule that picks one."""

from __future__ import annotations

PEAKS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]  # least highest lesion probability in the image
FRACTIONS = [0.0, 0.001, 0.003, 0.01, 0.02]  # least share of the image the mask covers


def choose_gate(rows: list[dict], tolerance: float) -> dict:
    """Of grid rows with ``min_peak``, ``min_fraction``, ``dice_all`` (lesion images) and ``normal_fp_area``: the one
    with the least false-positive area on normal images among those that keep the lesion Dice within ``tolerance``
    of no gate (a gate that erases real lesions is not a win)."""
    base = next(r for r in rows if r["min_peak"] <= 0.5 and r["min_fraction"] == 0.0)
    kept = [r for r in rows if r["dice_all"] >= base["dice_all"] - tolerance]
    return min(kept, key=lambda r: (r["normal_fp_area"], -r["dice_all"]))
