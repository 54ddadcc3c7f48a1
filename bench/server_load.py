"""``/info/`` latency while clients run inference in a loop: BreastLab's routes vs MONAI Label's stock ones.

MONAI Label's handlers are ``async`` and run inference on the event loop, so every other request
waits; BreastLab's run in the thread pool. Run by hand: ``python bench/server_load.py [--clients 4]``.
"""

from __future__ import annotations

import argparse
import threading
import time

import requests

from breastlab.metrics import format_table

from common import percentile, sample_server, timed

MODEL = "breast_us_t2kd"


def infer_loop(url: str, stop: threading.Event, done: list) -> None:
    while not stop.is_set():
        requests.post(f"{url}/infer/{MODEL}", params={"image": "case002", "output": "json"}, timeout=300)
        done.append(time.perf_counter())


def info_latencies(url: str, seconds: float, interval: float = 0.05) -> list[float]:
    latencies, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        latencies.append(timed(lambda: requests.get(f"{url}/info/", timeout=300).raise_for_status()))
        time.sleep(interval)
    return latencies


def measure(routes: str, clients: int, seconds: float) -> list[dict]:
    env = {"BREASTLAB_STOCK_ROUTES": "1"} if routes == "MONAI Label stock" else {}
    rows = []
    with sample_server(env) as server:
        for n in (0, clients):
            stop, done = threading.Event(), []
            threads = [threading.Thread(target=infer_loop, args=(server.url, stop, done)) for _ in range(n)]
            for t in threads:
                t.start()
            time.sleep(2 if n else 0)
            started = time.perf_counter()
            latencies = info_latencies(server.url, seconds)
            rate = sum(1 for t in done if t >= started) / (time.perf_counter() - started)
            stop.set()
            for t in threads:
                t.join()
            rows.append({"routes": routes, "inference clients": n, "/info/ requests": len(latencies),
                         "p50 (ms)": percentile(latencies, 50) * 1e3, "p99 (ms)": percentile(latencies, 99) * 1e3,
                         "max (ms)": max(latencies) * 1e3, "inferences/s": rate})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    rows = [row for routes in ("BreastLab", "MONAI Label stock") for row in measure(routes, args.clients, args.seconds)]
    print(format_table(rows, list(rows[0]), f"/info/ latency while {args.clients} clients run /infer in a loop "
                                            f"({args.seconds:.0f} s per row; goal p99 <= 100 ms)"))


if __name__ == "__main__":
    main()
