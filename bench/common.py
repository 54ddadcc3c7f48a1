"""Helpers shared by the bench scripts: a server on the samples, percentiles, RSS, PNG bytes."""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from breastlab.bundle import PROJECT_ROOT
from breastlab.formats.png import write_png
from breastlab.server.datastore.studies import import_dataset

sys.path.insert(0, str(PROJECT_ROOT))  # the servers are the tests' harness, tests/server_process.py
from tests.server_process import Server  # noqa: E402

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


def rss_mb(pid: int) -> float:
    """Resident memory of a process now (Linux ``VmRSS``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of a 2D uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def synthetic_mammogram_folder(root: Path, n: int = 10, side: int = 512) -> Path:
    """A mini-MIAS-layout dataset folder of ``n`` synthetic mammograms (two per woman, breasts mirrored in turn,
    every other one with a located lesion) for timing the mammography bundles' training."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        image = synthetic_mammogram(side)
        image = image[:, ::-1] if i % 2 else image
        label = ("normal", "benign", "normal", "malignant")[i % 4]
        lesions = "[]" if label == "normal" else f'"[{{""severity"": ""{label[0].upper()}"", ""row"": {side // 2}, ' \
            f'""col"": {side // 4 if i % 2 == 0 else side - side // 4}, ""radius"": {side // 20}}}]"'
        write_png(np.ascontiguousarray(image), root / "images" / f"m{i:02d}.png")
        rows.append(f"m{i:02d},{label},dev,{lesions},{i // 2}")
    (root / "manifest.csv").write_text("case,label,split,lesions,pair\n" + "\n".join(rows) + "\n")
    return root


def synthetic_mammogram(side: int = 1024) -> np.ndarray:
    """A ``side``² 8-bit image shaped like a mammogram (textured half-disc against the left edge) for timing
    mammography bundles: the project may not ship real mammograms."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:side, :side]
    breast = (rows - side / 2) ** 2 + cols ** 2 <= (0.45 * side) ** 2
    return np.where(breast, 110 + rng.integers(0, 90, (side, side)), rng.integers(0, 6, (side, side))).astype(np.uint8)
