"""A promptable bundle (default breast_us_medsam) over HTTP: the first touch of an image (its embedding, then one
decoder pass), box and box + click round trips with the embedding cached, and the server's memory growth with
``--images`` embeddings cached; on a server forced to float32 (``BREASTLAB_PRECISION=fp32``) and one as served.

Images are the six samples, each shifted sideways by a different amount so that every upload is a new image. Run
by hand (not in CI): ``python bench/prompt_latency.py [--images 50] [--repeats 10]``. Prints one table, all numbers
measured in this run.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from breastlab.metrics import format_table

from common import SAMPLES, sample_server, timed

CASES = ["case001", "case002", "case003", "case005", "case007", "case008"]
COLUMNS = ["server", "first_touch_ms", "first_touch_p90_ms", "box_ms", "box_click_ms", "rss_before_mb",
           "rss_after_mb", "rss_growth_mb", "images"]


def lesion_box(case: str, shift: int = 0) -> list[int]:
    rows, cols = np.nonzero(np.asarray(Image.open(SAMPLES / "masks" / f"{case}.png")) > 0)
    return [int(cols.min()) + shift, int(rows.min()), int(cols.max()) + shift, int(rows.max())]


def shifted_png(case: str, shift: int) -> bytes:
    image = np.asarray(Image.open(SAMPLES / "images" / f"{case}.png").convert("L"))
    buffer = io.BytesIO()
    Image.fromarray(np.roll(image, shift, axis=1)).save(buffer, "PNG")
    return buffer.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def infer(server, model: str, image: str, **prompts) -> float:
    def call():
        response = requests.post(f"{server.url}/infer/{model}", params={"image": image, "output": "json"},
                                 data={"params": json.dumps(prompts)}, timeout=300)
        response.raise_for_status()
    return timed(call)


def bench_server(label: str, env: dict, model: str, images: int, repeats: int) -> dict:
    with sample_server({**env, "BREASTLAB_PREFETCH": "0"}) as server:
        infer(server, model, "case002", roi=lesion_box("case002"))  # loads the network
        pid = server.process.pid
        before = rss_mb(pid)
        first = []
        for i in range(images):
            case, shift = CASES[i % len(CASES)], 1 + i // len(CASES)
            image_id = f"shifted{i:03d}"
            requests.put(f"{server.url}/datastore/image", params={"image": image_id}, timeout=60,
                         files={"file": ("x.png", shifted_png(case, shift), "image/png")}).raise_for_status()
            first.append(infer(server, model, image_id, roi=lesion_box(case, shift)))
        after = rss_mb(pid)
        box = lesion_box("case002")
        click = [[(box[0] + box[2]) // 2, (box[1] + box[3]) // 2]]
        box_ms = statistics.median(infer(server, model, "case002", roi=box) for _ in range(repeats))
        box_click_ms = statistics.median(infer(server, model, "case002", roi=box, foreground=click)
                                         for _ in range(repeats))
    return {"server": label, "first_touch_ms": 1000 * statistics.median(first),
            "first_touch_p90_ms": 1000 * statistics.quantiles(first, n=10)[-1] if len(first) > 1 else 1000 * first[0],
            "box_ms": 1000 * box_ms, "box_click_ms": 1000 * box_click_ms, "rss_before_mb": before,
            "rss_after_mb": after, "rss_growth_mb": after - before, "images": images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="breast_us_medsam")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = [bench_server("float32", {"BREASTLAB_PRECISION": "fp32"}, args.model, args.images, args.repeats),
            bench_server("as served", {}, args.model, args.images, args.repeats)]
    print(format_table(rows, COLUMNS, f"{args.model}: prompt round trips over HTTP (2 threads)"))


if __name__ == "__main__":
    main()
