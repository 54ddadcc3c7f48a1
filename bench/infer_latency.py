"""Per-image CPU latency of each bundle, float32 against bfloat16: raw network forward, bundle pipeline, /infer.

Ultrasound bundles run on the sample case002 (761x572), mammography bundles on a synthetic 1024x1024
mammogram. Interactive (deepedit) bundles are timed with one foreground click: the click round trip. Raw forward
and pipeline run in this process with ``precision`` fp32 and bf16 (each with the bundle's ``channels_last``; the bf16
pipeline also with the other memory format);
/infer is timed on two servers, one forced to float32 (``BREASTLAB_PRECISION=fp32``) and one as served (the
bundle's inference ``precision``), each with its peak RSS. Bundles without weights are skipped, or with
``--untrained`` timed with random weights (not served, so no HTTP columns). Run by hand (not in CI):
``python bench/infer_latency.py [--repeats 20] [--bundles NAME ...]``. Prints one table, all numbers measured in
this run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import requests
import torch

from breastlab.bundle import find_bundles, get_bundle
from breastlab.engines import autocast_dtype
from breastlab.formats.png import write_png
from breastlab.metrics import format_table

from common import SAMPLES, peak_rss_mb, sample_server, synthetic_mammogram, timed

CLICK = {"foreground": [[380, 300]]}  # inside case002's lesion
MAMMOGRAM = "mammogram1024"


def median_seconds(fn, repeats: int) -> float:
    fn()
    return statistics.median(timed(fn) for _ in range(repeats))


def timing_image(bundle, folder: Path) -> tuple[Path, str]:
    """(path, datastore id) of the image a bundle is timed on."""
    if bundle.metadata["breastlab"].get("modality") != "MG":
        return SAMPLES / "images" / "case002.png", "case002"
    path = folder / f"{MAMMOGRAM}.png"
    if not path.is_file():
        write_png(synthetic_mammogram(), path)
    return path, MAMMOGRAM


def in_process(bundle, precision: str, weights: Path, image: Path, repeats: int, **overrides) -> tuple[float, float]:
    """Seconds of the raw forward (through the bundle's inferer) and of the whole bundle pipeline."""
    predictor = get_bundle(bundle.name, precision=precision, **overrides).predictor(weights)
    x = predictor.network_input(image)
    with torch.no_grad():
        raw = median_seconds(lambda: predictor.inferer(x, predictor.network), repeats)
    return raw, median_seconds(lambda: predictor(image), repeats)


def bench_in_process(bundle, repeats: int, folder: Path) -> dict:
    image, image_id = timing_image(bundle, folder)
    weights = bundle.model_path
    if not weights.is_file():
        weights = folder / f"{bundle.name}_untrained.pt"
        torch.save(bundle.network().state_dict(), weights)
    (raw32, pipe32), (raw16, pipe16) = (in_process(bundle, p, weights, image, repeats) for p in ("fp32", "bf16"))
    flipped = in_process(bundle, "bf16", weights, image, repeats, channels_last=not bundle.inference["channels_last"])
    served = "bf16" if autocast_dtype(bundle.inference["precision"], "cpu") else "fp32"
    pipe, raw = (pipe16, raw16) if served == "bf16" else (pipe32, raw32)
    return {"bundle": bundle.name, "image": image_id, "served precision": served,
            "raw fp32 (ms)": raw32 * 1e3, "raw bf16 (ms)": raw16 * 1e3, "raw bf16 speed-up": raw32 / raw16,
            "pipeline fp32 (ms)": pipe32 * 1e3, "pipeline bf16 (ms)": pipe16 * 1e3,
            "pipeline bf16 speed-up": pipe32 / pipe16, "pipeline / raw (served)": pipe / raw,
            "channels_last": bundle.inference["channels_last"],
            "bf16 pipeline, other memory format (ms)": flipped[1] * 1e3}


def bench_http(bundles, repeats: int, folder: Path, env: dict) -> tuple[dict[str, float], float]:
    """Median /infer seconds per bundle on one server started with ``env``, and the server's peak RSS (MiB)."""
    seconds = {}
    with sample_server(env) as server:
        for bundle in bundles:
            image, image_id = timing_image(bundle, folder)
            if image_id == MAMMOGRAM:
                requests.put(f"{server.url}/datastore/image", params={"image": MAMMOGRAM},
                             files={"file": (image.name, image.read_bytes(), "image/png")}, timeout=60)
            url = f"{server.url}/infer/{bundle.name}"
            clicks = {"params": json.dumps(CLICK)} if bundle.task == "deepedit" else None  # a click round trip
            seconds[bundle.name] = median_seconds(lambda: requests.post(
                url, params={"image": image_id, "output": "image"}, data=clicks, timeout=60).raise_for_status(),
                repeats)
        return seconds, peak_rss_mb(server.process.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--untrained", action="store_true", help="also time bundles without weights")
    parser.add_argument("--bundles", nargs="+", metavar="NAME", help="only these bundles (default: all)")
    args = parser.parse_args()
    bundles = [b for b in find_bundles() if (args.untrained or b.model_path.is_file())
               and (not args.bundles or b.name in args.bundles)]
    with tempfile.TemporaryDirectory() as folder:
        rows = {b.name: bench_in_process(b, args.repeats, Path(folder)) for b in bundles}
        served = [b for b in bundles if b.model_path.is_file()]
        for label, env in (("fp32", {"BREASTLAB_PRECISION": "fp32"}), ("served", {})):
            seconds, rss = bench_http(served, args.repeats, Path(folder), env)
            for name, value in seconds.items():
                rows[name].update({f"HTTP {label} (ms)": value * 1e3, f"server RSS {label} (MB)": rss})
    for row in rows.values():
        if "HTTP served (ms)" in row:
            pipeline = row["pipeline bf16 (ms)" if row["served precision"] == "bf16" else "pipeline fp32 (ms)"]
            row["HTTP / pipeline (served)"] = row["HTTP served (ms)"] / pipeline
    rows = list(rows.values())
    columns = list(dict.fromkeys(k for row in rows for k in row))
    print(format_table(rows, columns, f"Per-image latency on {torch.get_num_threads()} CPU threads "
                                      f"(median of {args.repeats})"))


if __name__ == "__main__":
    main()
