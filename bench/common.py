"""Helpers shared by the bench scripts: a server on the samples, percentiles, peak RSS."""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from breastlab.bundle import PROJECT_ROOT
from breastlab.server.process import Server
from breastlab.studies import import_dataset

SAMPLES = PROJECT_ROOT / "samples" / "breast_lesions_usg"


@contextmanager
def sample_server(env: dict | None = None):
    """A real BreastLab server on the six samples, stopped on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        import_dataset(SAMPLES, Path(tmp) / "studies")
        server = Server(Path(tmp) / "studies", Path(tmp), env=env).start()
        try:
            yield server
        finally:
            server.stop()


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process (Linux ``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
