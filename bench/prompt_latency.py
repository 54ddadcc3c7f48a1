"""A promptable bundle (default breast_us_medsam) over HTTP, on a server forced to float32
(``BREASTLAB_PRECISION=fp32``) and one as served: the first touch of an image (its embedding, then one decoder pass);
round trips with the embedding cached: a box, box + click (the click refines the server's last answer, its previous
mask), one click refining a mask the client sends (``label=`` upload), an ``undo`` after a click; the server's memory
before and after ``--images`` embeddings are cached (float16), and its growth per image. Then, in this process, on
``--dice-images`` lesions of ``--data`` (``--split``): the lesion's box decoded against each image's float32
embedding and against the same embedding stored as float16, Dice of each against the truth in the network's frame.

Images for HTTP are the six samples, each shifted sideways by a different amount so that every upload is a new
image. Run by hand (not in CI): ``python bench/prompt_latency.py [--images 50] [--repeats 10] [--dice-images 20]
[--data ../shared/data/busi --split val]``; without the data folder the six samples are used. Prints two tables, all
numbers measured in this run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import requests
import torch
from PIL import Image

from breastlab.bundle import PROJECT_ROOT, get_bundle
from breastlab.data import read_dataset
from breastlab.engines.promptable import decode_prompts
from breastlab.metrics import format_table
from breastlab.metrics.segmentation import dice
from breastlab.transforms.prompts import PromptsToNetworkd

from common import SAMPLES, png_bytes, rss_mb, sample_server, timed

CASES = ["case001", "case002", "case003", "case005", "case007", "case008"]
COLUMNS = ["server", "first_touch_ms", "first_touch_p90_ms", "box_ms", "box_click_ms", "mask_click_ms", "undo_ms",
           "rss_before_mb", "rss_after_mb", "rss_growth_mb", "rss_per_image_mb", "images"]
DICE_COLUMNS = ["data", "images", "fp32_dice", "fp16_dice", "mean_abs_diff", "max_abs_diff", "within_0.005"]
DATA = PROJECT_ROOT.parent / "shared" / "data" / "busi"
TOLERANCE = 0.005


def mask_box(mask: np.ndarray, shift: int = 0) -> list[int]:
    """``[x0, y0, x1, y1]`` around a (rows, columns) mask's lesion pixels (max inclusive, at least 1 px wide)."""
    rows, cols = np.nonzero(mask)
    x0, y0 = int(cols.min()), int(rows.min())
    return [x0 + shift, y0, max(int(cols.max()), x0 + 1) + shift, max(int(rows.max()), y0 + 1)]


def sample_mask(case: str) -> np.ndarray:
    return np.asarray(Image.open(SAMPLES / "masks" / f"{case}.png")) > 0


def shifted_png(case: str, shift: int) -> bytes:
    image = np.asarray(Image.open(SAMPLES / "images" / f"{case}.png").convert("L"))
    return png_bytes(np.roll(image, shift, axis=1))


def infer(server, model: str, image: str, label: bytes | None = None, **params) -> float:
    """Seconds of one ``/infer`` round trip (JSON answer); ``label``: a mask (PNG) for the clicks to refine."""
    files = {"label": ("mask.png", label, "image/png")} if label is not None else None

    def call():
        response = requests.post(f"{server.url}/infer/{model}", params={"image": image, "output": "json"},
                                 data={"params": json.dumps(params)}, files=files, timeout=300)
        response.raise_for_status()
    return timed(call)


def round_trips(server, model: str, repeats: int) -> dict:
    """Median milliseconds of each round trip on case002 with its embedding cached."""
    truth = sample_mask("case002")
    box = mask_box(truth)
    click = [[(box[0] + box[2]) // 2, (box[1] + box[3]) // 2]]
    rough = np.zeros(truth.shape, np.uint8)  # the client's mask: the lesion's box filled, a click takes a corner off
    rough[box[1]:box[3] + 1, box[0]:box[2] + 1] = 255
    corner = [[box[0] + 2, box[1] + 2]]
    label = png_bytes(rough)

    def median_ms(fn) -> float:
        return 1000 * statistics.median(fn() for _ in range(repeats))

    def undo_after_click() -> float:
        infer(server, model, "case002", roi=box, foreground=click)  # untimed: the click the undo takes back
        return infer(server, model, "case002", undo=True)

    infer(server, model, "case002", roi=box)  # the embedding again (more images than the cache may have pushed it out)
    times = {"box_ms": median_ms(lambda: infer(server, model, "case002", roi=box))}
    # each click refines the last answer (the previous answer as the decoder's mask prompt): the same box, more clicks
    times["box_click_ms"] = median_ms(lambda: infer(server, model, "case002", roi=box, foreground=click))
    times["mask_click_ms"] = median_ms(lambda: infer(server, model, "case002", label=label, background=corner))
    infer(server, model, "case002", roi=box)  # a box answer for each undo to go back to
    times["undo_ms"] = median_ms(undo_after_click)
    return times


def bench_server(label: str, env: dict, model: str, images: int, repeats: int) -> dict:
    with sample_server({**env, "BREASTLAB_PREFETCH": "0"}) as server:
        infer(server, model, "case002", roi=mask_box(sample_mask("case002")))  # loads the network
        pid = server.process.pid
        before = rss_mb(pid)
        first = []
        for i in range(images):
            case, shift = CASES[i % len(CASES)], 1 + i // len(CASES)
            image_id = f"shifted{i:03d}"
            requests.put(f"{server.url}/datastore/image", params={"image": image_id}, timeout=60,
                         files={"file": ("x.png", shifted_png(case, shift), "image/png")}).raise_for_status()
            first.append(infer(server, model, image_id, roi=mask_box(sample_mask(case), shift)))
        after = rss_mb(pid)
        times = round_trips(server, model, repeats)
    return {"server": label, "first_touch_ms": 1000 * statistics.median(first),
            "first_touch_p90_ms": 1000 * statistics.quantiles(first, n=10)[-1] if len(first) > 1 else 1000 * first[0],
            **times, "rss_before_mb": before, "rss_after_mb": after, "rss_growth_mb": after - before,
            "rss_per_image_mb": (after - before) / max(images, 1), "images": images}


def lesion_cases(folder: Path, split: str | None, n: int) -> tuple[str, list[tuple[Path, np.ndarray]]]:
    """(name, up to ``n`` (image, mask) pairs) of ``folder``'s ``split`` in manifest order, normals and empty masks
    left out; the six samples when ``folder`` is absent."""
    if not (folder / "manifest.csv").is_file():
        folder, split = SAMPLES, None
    pairs = []
    for case in read_dataset(folder, split):
        if len(pairs) == n:
            break
        if case.mask is None or case.label == "normal":
            continue
        mask = np.asarray(Image.open(case.mask).convert("L")) > 0
        if mask.any():
            pairs.append((case.image, mask))
    return f"{folder.name}" + (f" {split}" if split else ""), pairs


@torch.no_grad()
def float16_dice(model: str, folder: Path, split: str | None, n: int) -> dict:
    """Mean box Dice (network frame) with each image's float32 embedding and with it stored as float16."""
    predictor = get_bundle(model).predictor()
    name, pairs = lesion_cases(folder, split, n)
    scores = {"fp32": [], "fp16": []}
    for image, mask in pairs:
        data = predictor.pre({"image": str(image), "roi": mask_box(mask)})
        truth = PromptsToNetworkd(size=data["image"].shape[-1]).to_network(mask)[0].numpy()
        embedding = predictor.network.encode(data["image"][None].to(predictor.device).float())
        for key, stored in (("fp32", embedding), ("fp16", embedding.half().float())):
            logits = decode_prompts(predictor.network, predictor.inferer, stored, data)[0]
            scores[key].append(dice(logits[0, 0].float().cpu().numpy() > 0, truth))
    diffs = np.abs(np.subtract(scores["fp32"], scores["fp16"]))
    return {"data": name, "images": len(pairs), "fp32_dice": float(np.mean(scores["fp32"])),
            "fp16_dice": float(np.mean(scores["fp16"])), "mean_abs_diff": f"{diffs.mean():.5f}",  # finer than 3 places
            "max_abs_diff": f"{diffs.max():.5f}", "within_0.005": bool(diffs.mean() <= TOLERANCE)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="breast_us_medsam")
    parser.add_argument("--images", type=int, default=50, help="new images touched (and embeddings cached)")
    parser.add_argument("--repeats", type=int, default=10, help="round trips of each kind (median)")
    parser.add_argument("--dice-images", type=int, default=20, help="lesions of the float16 Dice check")
    parser.add_argument("--data", type=Path, default=DATA, help="dataset folder of the Dice check")
    parser.add_argument("--split", default="val", help="its split (all rows of the samples)")
    args = parser.parse_args()
    rows = [bench_server("float32", {"BREASTLAB_PRECISION": "fp32"}, args.model, args.images, args.repeats),
            bench_server("as served", {}, args.model, args.images, args.repeats)]
    print(format_table(rows, COLUMNS, f"{args.model}: prompt round trips over HTTP (2 threads)"))
    print("(box_click: the click refines the server's last answer; mask_click: one click on a client's mask sent as "
          "label=; undo: after a click)\n")
    row = float16_dice(args.model, args.data, args.split, args.dice_images)
    print(format_table([row], DICE_COLUMNS, f"{args.model}: float16 embeddings keep box Dice within {TOLERANCE} "
                                            f"(network frame, {torch.get_num_threads()} threads)"))


if __name__ == "__main__":
    main()
