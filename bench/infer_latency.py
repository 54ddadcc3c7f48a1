"""Per-image CPU latency of each bundle: raw network forward, bundle pipeline, and /infer over HTTP.

Ultrasound bundles run on the sample case002 (761x572), mammography bundles on a synthetic 1024x1024
mammogram. Interactive (deepedit) bundles are timed with one foreground click: the click round trip. Bundles
without weights are skipped, or with ``--untrained`` timed with random weights (same compute; not served, so
no HTTP column). Run by hand (not in CI): ``python bench/infer_latency.py [--repeats 20] [--bundles NAME ...]``.
Prints one table, all numbers measured in this run, ratios relative to the raw forward pass.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import requests
import torch

from breastlab.bundle import find_bundles
from breastlab.formats.png import write_png
from breastlab.metrics import format_table
from breastlab.server.process import Server

from common import SAMPLES, peak_rss_mb, sample_server, synthetic_mammogram, timed

CLICK = {"foreground": [[380, 300]]}  # inside case002's lesion


def median_seconds(fn, repeats: int) -> float:
    fn()
    return statistics.median(timed(fn) for _ in range(repeats))


def timing_image(bundle, server: Server, folder: Path) -> tuple[Path, str]:
    """(path, datastore id) of the image a bundle is timed on; a mammogram is uploaded on first use."""
    if bundle.metadata["breastlab"].get("modality") != "MG":
        return SAMPLES / "images" / "case002.png", "case002"
    path = folder / "mammogram1024.png"
    if not path.is_file():
        write_png(synthetic_mammogram(), path)
        requests.put(f"{server.url}/datastore/image", params={"image": path.stem},
                     files={"file": (path.name, path.read_bytes(), "image/png")}, timeout=60).raise_for_status()
    return path, path.stem


def bench_bundle(bundle, server: Server, repeats: int, folder: Path) -> dict:
    image, image_id = timing_image(bundle, server, folder)
    served = bundle.model_path.is_file()
    if not served:
        torch.save(bundle.network().state_dict(), folder / f"{bundle.name}_untrained.pt")
    predictor = bundle.predictor(None if served else folder / f"{bundle.name}_untrained.pt")
    size = predictor.bundle.inference.get_parsed_content("image_size")
    x = torch.rand(1, bundle.input_channels, *size)
    with torch.no_grad():
        raw = median_seconds(lambda: predictor.network(x), repeats)
    pipeline = median_seconds(lambda: predictor(image), repeats)
    row = {"bundle": bundle.name if served else f"{bundle.name} (untrained)", "image": image_id,
           "raw forward (ms)": raw * 1e3, "bundle pipeline (ms)": pipeline * 1e3, "pipeline / raw": pipeline / raw}
    if not served:
        return row
    url = f"{server.url}/infer/{bundle.name}"
    clicks = {"params": json.dumps(CLICK)} if bundle.task == "deepedit" else None  # a click round trip
    http = median_seconds(lambda: requests.post(url, params={"image": image_id, "output": "image"}, data=clicks,
                                                timeout=60).raise_for_status(), repeats)
    return {**row, "HTTP /infer (ms)": http * 1e3, "HTTP / raw": http / raw, "HTTP / pipeline": http / pipeline,
            "server peak RSS (MB)": peak_rss_mb(server.process.pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--untrained", action="store_true", help="also time bundles without weights")
    parser.add_argument("--bundles", nargs="+", metavar="NAME", help="only these bundles (default: all)")
    args = parser.parse_args()
    bundles = [b for b in find_bundles() if (args.untrained or b.model_path.is_file())
               and (not args.bundles or b.name in args.bundles)]
    with sample_server() as server, tempfile.TemporaryDirectory() as folder:
        rows = [bench_bundle(b, server, args.repeats, Path(folder)) for b in bundles]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    print(format_table(rows, columns, f"Per-image latency on {torch.get_num_threads()} CPU threads "
                                      f"(median of {args.repeats})"))


if __name__ == "__main__":
    main()
