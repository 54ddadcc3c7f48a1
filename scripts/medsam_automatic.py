"""Compare the ways ``breast_us_medsam`` can make its automatic mask (no prompt) on val, on cached embeddings, and
choose its lesion-presence gate on the normal images: the unprompted decoder, the cascade (its most confident
region's box decoded as a drawn box), each with test-time flips. Masks are scored at the image size, as
``breastlab evaluate`` scores them, per dataset and per scanner.

    python scripts/medsam_automatic.py --weights W --data ../shared/data/busi ../shared/data/busbra [--split val]
        [--hold-out 'device=GE Logiq 5'] [--flip] [--out runs/medsam_automatic.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from breastlab.bundle import get_bundle, prediction_outputs
from breastlab.data import column_rule, read_dataset, select_cases
from breastlab.engines.prompt_training import EmbedImaged
from breastlab.engines.promptable import Automatic
from breastlab.evaluation.evaluate import case_truth, score_cases, summarize
from breastlab.evaluation.gate_choice import FRACTIONS, PEAKS, choose_gate
from breastlab.metrics import format_table
from breastlab.progress import progress

MODEL = "breast_us_medsam"
COLUMNS = ["variant", "group", "n", "dice_mean", "n_missed", "mean_fp_fraction", "fp_rate"]
GATE_COLUMNS = ["min_peak", "min_fraction", "dice_all", "missed", "normal_fp_area", "normals_clean"]


def variants(flip: bool) -> dict[str, Automatic]:
    found = {"decoder": Automatic(), "cascade": Automatic(refine=True)}
    if flip:
        found.update({"decoder+flip": Automatic(flip=True), "cascade+flip": Automatic(flip=True, refine=True)})
    return found


def read_cases(folders: list[str], split: str | None, hold_out: str | None) -> list:
    cases = [c for folder in folders for c in read_dataset(folder, None if hold_out else split)]
    return select_cases(cases, column_rule(hold_out)) if hold_out else cases


def predict(bundle, weights: str, cases: list, folder: str, flip: bool) -> tuple[dict, dict]:
    """Per variant, the outputs at the image size of every case; per case, the unprompted mask's peak probability
    and share of the network input (what the gate reads)."""
    predictor = bundle.predictor(weights)
    network, inferer = predictor.network, predictor.inferer
    embed = EmbedImaged("image", str(bundle.root), folder)
    flipped = EmbedImaged("image", str(bundle.root), folder, flip=True) if flip else None
    outputs, evidence = {name: {} for name in variants(flip)}, {}
    for case in progress(cases, "decode"):
        embedding = embed.embedding(str(case.image))[None]
        mirror = flipped.embedding(str(case.image))[None] if flipped else None
        data = predictor.pre({"image": str(case.image)})
        unprompted = {}  # one unprompted pass per flip setting, shared by the decoder and the cascade
        for name, automatic in variants(flip).items():
            if automatic.flip not in unprompted:
                unprompted[automatic.flip] = automatic.unprompted(network, inferer, embedding, mirror)
            probability = torch.sigmoid(unprompted[automatic.flip])
            evidence[(name, case.image)] = (float(probability.max()), float((probability > 0.5).float().mean()))
            logits, _ = automatic.refined(network, inferer, embedding, mirror, unprompted[automatic.flip])
            outputs[name][case.image] = prediction_outputs(predictor.post({**data, "pred": logits[0]}), [])
    return outputs, evidence


def gated_rows(cases, outputs: dict, evidence: dict, name: str) -> list[dict]:
    """Every gate of the grid, scored on lesion Dice and false-positive area (the two it trades) at the image size."""
    truths = {c.image: case_truth(c, outputs[c.image]["mask"].shape) for c in cases}

    def gate(min_peak: float, min_fraction: float) -> dict:
        dices, false_positive = [], []
        for case in cases:
            peak, fraction = evidence[(name, case.image)]
            mask = (outputs[case.image]["mask"] > 0) & (peak >= min_peak and fraction >= min_fraction)
            truth = truths[case.image]
            if truth.any():
                dices.append(2 * (mask & truth).sum() / (mask.sum() + truth.sum()))
            else:
                false_positive.append(mask.mean())
        return {"min_peak": min_peak, "min_fraction": min_fraction, "dice_all": float(np.mean(dices)),
                "missed": int(np.sum(np.array(dices) == 0)), "normal_fp_area": float(np.mean(false_positive)),
                "normals_clean": float(np.mean(np.array(false_positive) == 0))}
    return [gate(p, f) for p in PEAKS for f in FRACTIONS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--hold-out", help="COLUMN=PREFIX: every case of that scanner, whatever its split")
    parser.add_argument("--folder", default="runs/medsam_embeddings", help="the embedding cache")
    parser.add_argument("--flip", action="store_true", help="also the test-time flip variants")
    parser.add_argument("--gate-data", default="busi", help="the dataset whose normals choose the gate")
    parser.add_argument("--dice-tolerance", type=float, default=0.005)
    parser.add_argument("--out", help="JSON with every table")
    args = parser.parse_args()
    bundle = get_bundle(MODEL)
    cases = read_cases(args.data, args.split, args.hold_out)
    outputs, evidence = predict(bundle, args.weights, cases, args.folder, args.flip)
    report, table = {}, []
    for name in outputs:
        rows = score_cases(lambda image, name=name: outputs[name][image], cases)
        groups = {"all": rows, **{Path(f).name: [r for r, c in zip(rows, cases) if c.image.parent.parent == Path(f)]
                                  for f in args.data}}
        report[name] = {group: summarize(part)["segmentation"] for group, part in groups.items() if part}
        for group, seg in report[name].items():
            for key in ("overall", "normal", *sorted(k for k in seg if k.startswith("device"))):
                if key in seg:
                    table.append({"variant": name, "group": f"{group} {key}", **seg[key]})
    print(format_table(table, COLUMNS, f"Automatic mask of {MODEL} ({args.weights})"), end="\n\n")
    gate_cases = [c for c in cases if c.image.parent.parent.name == args.gate_data]
    if any(c.label == "normal" for c in gate_cases):
        for name in outputs:
            rows = gated_rows(gate_cases, outputs[name], evidence, name)
            report[name]["gate"] = {"rows": rows, "chosen": choose_gate(rows, args.dice_tolerance)}
            print(format_table(rows, GATE_COLUMNS, f"Gate of {name} on {args.gate_data}"))
            print(f"chosen: {report[name]['gate']['chosen']}", end="\n\n")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
