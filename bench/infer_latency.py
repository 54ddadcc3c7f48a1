"""Per-image CPU latency of each bundle: raw network forward, bundle pipeline, and /infer over HTTP.

Interactive (deepedit) bundles are timed with one foreground click: the click round trip. Bundles without
weights are skipped. Run by hand (not in CI): ``python bench/infer_latency.py [--repeats 20]``. Prints one table,
all numbers measured in this run, ratios relative to the raw forward pass.
"""

from __future__ import annotations

import argparse
import json
import statistics

import requests
import torch

from breastlab.bundle import find_bundles
from breastlab.metrics import format_table
from breastlab.server.process import Server

from common import SAMPLES, peak_rss_mb, sample_server, timed

CLICK = {"foreground": [[380, 300]]}  # inside case002's lesion


def median_seconds(fn, repeats: int) -> float:
    fn()
    return statistics.median(timed(fn) for _ in range(repeats))


def bench_bundle(bundle, server: Server, repeats: int) -> dict:
    image = SAMPLES / "images" / "case002.png"
    predictor = bundle.predictor()
    size = predictor.bundle.inference.get_parsed_content("image_size")
    x = torch.rand(1, bundle.input_channels, *size)
    with torch.no_grad():
        raw = median_seconds(lambda: predictor.network(x), repeats)
    pipeline = median_seconds(lambda: predictor(image), repeats)
    url = f"{server.url}/infer/{bundle.name}"
    clicks = {"params": json.dumps(CLICK)} if bundle.task == "deepedit" else None  # a click round trip
    http = median_seconds(lambda: requests.post(url, params={"image": "case002", "output": "image"}, data=clicks,
                                                timeout=60).raise_for_status(), repeats)
    return {"bundle": bundle.name, "raw forward (ms)": raw * 1e3, "bundle pipeline (ms)": pipeline * 1e3,
            "HTTP /infer (ms)": http * 1e3, "pipeline / raw": pipeline / raw, "HTTP / raw": http / raw,
            "HTTP / pipeline": http / pipeline,
            "server peak RSS (MB)": peak_rss_mb(server.process.pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with sample_server() as server:
        rows = [bench_bundle(b, server, args.repeats) for b in find_bundles() if b.model_path.is_file()]
    columns = list(rows[0])
    print(format_table(rows, columns, f"Per-image latency on {torch.get_num_threads()} CPU threads "
                                      f"(case002, 761x572; median of {args.repeats})"))


if __name__ == "__main__":
    main()
