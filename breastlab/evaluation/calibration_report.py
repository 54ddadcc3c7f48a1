"""The calibration side of a classifier's evaluation: reliability bins per binary task, and where the manifest
holds BI-RADS and the bundle suggests it, the agreement of its suggestion and the malignancy in each category."""

from __future__ import annotations

import numpy as np

from breastlab.metrics import format_table, malignancy_by_category, reliability_bins, weighted_kappa
from breastlab.metrics.birads import ACR_MALIGNANCY

MALIGNANCY_COLUMNS = ["category", "n", "malignant", "rate", "acr_range", "verdict"]


def reliability(tasks: dict[str, list[tuple[bool, float]]]) -> dict[str, list[dict]]:
    """``reliability_bins`` of each binary task's (is positive, score) pairs."""
    return {name: reliability_bins(*map(np.array, zip(*pairs))) for name, pairs in tasks.items() if pairs}


def birads_summary(rows: list[dict]) -> dict | None:
    """For rows with the bundle's ``birads_probabilities`` and ``suggested_birads`` (its most probable category):
    ``n`` and the quadratic-weighted kappa of the suggestion against the manifest's ``birads``, on the cases whose
    category the model knows; the malignancy in each suggested category on every labelled case. ``None`` without
    such rows or without any manifest BI-RADS."""
    served = [r for r in rows if "suggested_birads" in r and r.get("label") and not r.get("label_conflict")]
    if not any(r.get("birads") for r in served):
        return None
    categories = list(served[0]["birads_probabilities"])
    known = [r for r in served if r.get("birads") in categories]
    kappa = weighted_kappa([r["birads"] for r in known], [r["suggested_birads"] for r in known], categories)
    return {"categories": categories, "n": len(known), "weighted_kappa": kappa if known else None,
            "malignancy_by_category": malignancy_by_category([r["suggested_birads"] for r in served],
                                                             [r["label"] == "malignant" for r in served], categories)}


def malignancy_table(rows: list[dict], title: str) -> str:
    """``malignancy_by_category`` rows as a table with each category's ACR range and the verdict."""
    verdicts = {True: "within", False: "outside", None: None}
    return format_table([{**row, "acr_range": _acr_range(row["category"]), "verdict": verdicts[row["acr_range"]]}
                         for row in rows], MALIGNANCY_COLUMNS, title)


def print_birads(summary: dict) -> None:
    """Print a ``birads_summary``."""
    kappa = [{"categories": "/".join(summary["categories"]), "n": summary["n"],
              "weighted_kappa": summary["weighted_kappa"]}]
    print(format_table(kappa, ["categories", "n", "weighted_kappa"], "BI-RADS suggestion vs the manifest's "
                                                                     "(quadratic-weighted kappa)"), end="\n\n")
    print(malignancy_table(summary["malignancy_by_category"], "Malignancy per suggested BI-RADS category"),
          end="\n\n")


def _acr_range(category: str) -> str | None:
    if category not in ACR_MALIGNANCY:
        return None
    low, high = ACR_MALIGNANCY[category]
    return f"{100 * low:g}-{100 * high:g} %"
