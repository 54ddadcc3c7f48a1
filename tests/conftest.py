"""Shared fixtures: the real data folders and a factory for small crafted dataset folders."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastlab.bundle import BUNDLES_DIR, PROJECT_ROOT, SHARED_DATA, Bundle

import orthanc
from tests.test_mammo import synthetic_breast


@pytest.fixture
def float32(monkeypatch):
    """Bundles whose precision is ``auto`` compute in float32 in this test, whatever the CPU (tests that pin a score
    of the shipped weights; ``auto`` is bfloat16 on CPUs with bfloat16 units)."""
    monkeypatch.setenv("BREASTLAB_PRECISION", "fp32")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<project root>/../shared/data``; tests that need it skip when it is absent."""
    path = SHARED_DATA.resolve()
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found (expected next to the project root)")
    return path


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The six demo ultrasound cases shipped with the project."""
    return PROJECT_ROOT / "samples" / "breast_lesions_usg"


@pytest.fixture(scope="session")
def pacs(tmp_path_factory, samples_dir):
    """A real Orthanc with MG and US instances (``orthanc.populated_pacs``), shared by the PACS tests: each test that
    changes what it holds works on instances of its own. Skipped where Orthanc is not installed."""
    if orthanc.missing():
        pytest.skip(orthanc.missing())
    with orthanc.populated_pacs(tmp_path_factory.mktemp("orthanc"), samples_dir) as pacs:
        yield pacs


@pytest.fixture(scope="session")
def pacs_server(pacs, tmp_path_factory):
    """A real BreastLab server on the shared PACS."""
    server = orthanc.start_server(pacs, lambda: tmp_path_factory.mktemp("pacs_server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def two_samples(samples_dir, tmp_path_factory) -> Path:
    """A dataset folder of two shipped samples (a benign and a malignant lesion, with masks): for the evaluations
    that cost seconds per image."""
    root = tmp_path_factory.mktemp("two_samples")
    cases = ("case002", "case007")
    for folder in ("images", "masks"):
        (root / folder).mkdir()
        for case in cases:
            shutil.copy(samples_dir / folder / f"{case}.png", root / folder)
    rows = [row for row in (samples_dir / "manifest.csv").read_text().splitlines() if row.split(",")[0] in cases]
    (root / "manifest.csv").write_text("\n".join([(samples_dir / "manifest.csv").read_text().splitlines()[0], *rows]))
    return root


def _write_image(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, Image.Image):
        content.save(path, "PNG")
    else:
        Image.fromarray(np.asarray(content, dtype=np.uint8)).save(path, "PNG")


@pytest.fixture
def make_dataset(tmp_path):
    """Factory: ``make_dataset(images, labels=None, splits=None, masks=None, rows=None, manifest=None)``.

    ``images``/``masks`` map case ids to arrays (or PIL images, or raw bytes for broken files);
    ``masks=None`` creates no ``masks/`` folder. The manifest is written from ``rows`` (dicts),
    else from the images with their ``labels``/``splits``; ``manifest`` gives the raw CSV text and
    ``manifest=False`` writes none. Returns the dataset folder.
    """
    counter = iter(range(1_000_000))

    def make(images: dict, labels: dict | None = None, splits: dict | None = None, masks: dict | None = None,
             rows: list[dict] | None = None, manifest: str | bool | None = None) -> Path:
        root = tmp_path / f"dataset{next(counter)}"
        (root / "images").mkdir(parents=True)
        for case, content in images.items():
            _write_image(root / "images" / f"{case}.png", content)
        if masks is not None:
            (root / "masks").mkdir()
            for case, content in masks.items():
                _write_image(root / "masks" / f"{case}.png", content)
        if isinstance(manifest, str):
            (root / "manifest.csv").write_text(manifest, encoding="utf-8")
        elif manifest is None:
            if rows is None:
                rows = [{"case": c} for c in images]
                for row in rows:
                    if labels is not None:
                        row["label"] = labels.get(row["case"], "")
                    if splits is not None:
                        row["split"] = splits.get(row["case"], "")
            fields = list(dict.fromkeys(k for r in rows for k in r)) or ["case"]
            with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        return root

    return make


@pytest.fixture
def lanet_copy(tmp_path) -> Bundle:
    """The LA-Net bundle's configs (no weights) in this test's folder."""
    shutil.copytree(BUNDLES_DIR / "breast_us_lanet" / "configs", tmp_path / "lanet" / "configs")
    return Bundle(tmp_path / "lanet")


MAMMOGRAM_LABELS = ["normal", "benign", "malignant", "normal", "malignant", "benign", "normal", "normal", "malignant",
                    "benign"]


@pytest.fixture(scope="session")
def mammograms(tmp_path_factory):
    """A mini-MIAS-layout folder of 10 synthetic mammograms (5 women, breasts on alternating sides)."""
    root = tmp_path_factory.mktemp("mammograms")
    (root / "images").mkdir()
    rows = []
    for i, label in enumerate(MAMMOGRAM_LABELS):
        side = "left" if i % 2 == 0 else "right"
        image = synthetic_breast(side, h=256, w=192)
        col = 60 if side == "left" else 192 - 60
        lesions = [] if label == "normal" else [{"severity": label[0].upper(), "row": 128, "col": col, "radius": 14}]
        if lesions:
            rr, cc = np.mgrid[:256, :192]
            image[(rr - 128) ** 2 + (cc - col) ** 2 <= 14 ** 2] = 250 if label == "malignant" else 200
        Image.fromarray(image).save(root / "images" / f"m{i:02d}.png")
        rows.append(f"m{i:02d},{label},dev,\"{json.dumps(lesions).replace(chr(34), chr(34) * 2)}\",{i // 2}")
    (root / "manifest.csv").write_text("case,label,split,lesions,pair\n" + "\n".join(rows) + "\n")
    return root
