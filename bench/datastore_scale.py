"""Active-learning next-sample and datastore latencies with 1k, 10k and 100k images in the local datastore.

Synthetic 16x16 PNGs, a tenth of them with a final label, with score indexes for the ``uncertainty``, ``diverse``
and ``hybrid`` strategies (top-1 next sample timed over HTTP). The diversity job's order (k-means, typicality) is
timed in-process on synthetic 320-d features of the same count. MONAI Label's ``Random`` strategy is timed
in-process on the same datastore for comparison (it reads every image's info). Run by hand:
``python bench/datastore_scale.py [--sizes 1000 10000 100000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from monailabel.tasks.activelearning.random import Random
from tqdm import tqdm

from breastlab.activelearning.diversity import selection_order
from breastlab.formats.png import write_png
from breastlab.metrics import format_table
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.score_index import ScoreIndex
from breastlab.server.tasks.scoring import UncertaintyScoring

from common import Server, peak_rss_mb, percentile, timed

ORDERED = ("diverse", "hybrid")  # strategies that hand out the first of an order the diversity job wrote


def make_studies(root: Path, count: int) -> None:
    """``count`` identical tiny PNG images; every tenth one gets a final label; random scores in every index."""
    (root / "labels" / "final").mkdir(parents=True)
    data = write_png(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8), root / "img.png")
    data = data.read_bytes()
    (root / "img.png").unlink()
    for i in tqdm(range(count), desc=f"write {count} images", unit="image", leave=False, disable=None):
        (root / f"img{i:06d}.png").write_bytes(data)
        if i % 10 == 0:
            write_png(np.zeros((16, 16), np.uint8), root / "labels" / "final" / f"img{i:06d}.png")
    for seed, method in enumerate((UncertaintyScoring.name, *ORDERED)):
        scores = np.random.default_rng(seed + 1).random(count)
        ScoreIndex.of(root, method).save({f"img{i:06d}": float(s) for i, s in enumerate(scores)})


def order_seconds(count: int, budget: int = 20) -> float:
    """The diversity job's ``selection_order`` on ``count`` unit 320-d features in 50 groups, a tenth labelled."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 320))[rng.integers(0, 50, count)] + rng.normal(0, 0.5, (count, 320))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return timed(lambda: selection_order(features.astype(np.float32), np.arange(count) % 10 == 0, budget))


def latencies(fn, repeats: int) -> list[float]:
    fn()
    return [timed(fn) for _ in range(repeats)]


def bench_size(count: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        studies = Path(tmp) / "studies"
        make_studies(studies, count)
        start = time.perf_counter()
        server = Server(studies, Path(tmp), env={}).start(timeout=1800)
        startup = time.perf_counter() - start
        try:
            url = server.url
            sample = latencies(lambda: requests.post(f"{url}/activelearning/random", json={}, timeout=600)
                               .raise_for_status(), repeats)
            uncertain = latencies(lambda: requests.post(f"{url}/activelearning/uncertainty", json={"top_k": 10},
                                                        timeout=600).raise_for_status(), repeats)
            ordered = {m: latencies(lambda m=m: requests.post(f"{url}/activelearning/{m}", json={}, timeout=600)
                                    .raise_for_status(), repeats) for m in ORDERED}
            info = latencies(lambda: requests.get(f"{url}/info/", timeout=600).raise_for_status(), repeats)
            stats = latencies(lambda: requests.get(f"{url}/datastore/", params={"output": "stats"}, timeout=600)
                              .raise_for_status(), repeats)
            listing = latencies(lambda: requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=600)
                                .raise_for_status(), 3)
            label = (studies / "labels" / "final" / "img000000.png").read_bytes()
            saves = latencies(lambda: requests.put(f"{url}/datastore/label", params={"image": "img000001"},
                                                   files={"label": ("l.png", label)}, timeout=600)
                              .raise_for_status(), 5)
            rss = peak_rss_mb(server.process.pid)
        finally:
            server.stop()
        store = BreastLabDatastore(str(studies))
        stock = timed(lambda: Random()({"strategy": "random"}, store))
    ms = 1e3
    return {"images": count, "server start (s)": startup,
            "next sample p50 (ms)": percentile(sample, 50) * ms, "next sample p99 (ms)": percentile(sample, 99) * ms,
            "uncertainty top-10 p50 (ms)": percentile(uncertain, 50) * ms,
            "uncertainty top-10 p99 (ms)": percentile(uncertain, 99) * ms,
            **{f"{m} p99 (ms)": percentile(ordered[m], 99) * ms for m in ORDERED},
            "diversity order job (s)": order_seconds(count), "MONAI Label Random (ms)": stock * ms,
            "/info/ p50 (ms)": percentile(info, 50) * ms,
            "stats p50 (ms)": percentile(stats, 50) * ms, "list all (ms)": min(listing) * ms,
            "label save p50 (ms)": percentile(saves, 50) * ms, "server peak RSS (MB)": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rows = [bench_size(n, args.repeats) for n in args.sizes]
    title = "Datastore scale (goal: next sample <= 50 ms at 100k images, every strategy)"
    print(format_table(rows, list(rows[0]), title))


if __name__ == "__main__":
    main()
