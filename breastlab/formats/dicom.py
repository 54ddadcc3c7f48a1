"""2D DICOM images (mammography, ultrasound) as the 8-bit grayscale arrays BreastLab's models read.

Display pipeline, in DICOM's order: modality LUT (rescale slope/intercept), VOI LUT or window
(centre/width; the full stored range when the file has neither), MONOCHROME1 inverted so that
bright is dense as in MONOCHROME2, RGB/YBR ultrasound converted to luminance; then scaled to 0–255.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut, convert_color_space
from pydicom.uid import DeflatedExplicitVRLittleEndian

from breastlab.formats.png import MAX_PIXELS, ImageError, check_size

MAX_INFLATED = MAX_PIXELS * 2 + 16 * 2**20  # bytes: the largest accepted image at 16 bits, plus its other elements


@dataclass(frozen=True)
class DicomImage:
    """The display-ready pixels (H, W) uint8 and what the file says about them."""

    pixels: np.ndarray
    modality: str
    spacing_mm: tuple[float, float] | None  # (row, column) pixel spacing
    photometric: str
    bits_stored: int

    def description(self) -> dict:
        """Everything but the pixels, ready for JSON."""
        return {"modality": self.modality, "spacing_mm": list(self.spacing_mm) if self.spacing_mm else None,
                "photometric": self.photometric, "bits_stored": self.bits_stored}


def is_dicom(path: str | Path) -> bool:
    """True for a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def read_dicom_image(path: str | Path, modalities: tuple[str, ...] | None = None) -> DicomImage:
    """Read a single-frame 2D DICOM image; ``ImageError`` for anything BreastLab cannot use."""
    try:
        _check_inflated_size(path)
        ds = pydicom.dcmread(path)
    except ImageError:
        raise
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, zlib.error) as e:
        raise ImageError(f"cannot read DICOM: {e}") from e
    if "PixelData" not in ds:
        raise ImageError("DICOM file has no pixel data")
    modality = str(ds.get("Modality", ""))
    if modalities and modality not in modalities:
        raise ImageError(f"DICOM modality {modality or 'missing'!r} is not one of {', '.join(modalities)}",
                         "unsupported")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise ImageError(f"DICOM file has {ds.NumberOfFrames} frames; one 2D frame is expected", "unsupported")
    check_size((int(ds.get("Columns", 0)), int(ds.get("Rows", 0))), int(ds.get("SamplesPerPixel", 1) or 1))
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or not any(h.is_available() and h.supports_transfer_syntax(syntax)
                                 for h in pydicom.config.pixel_data_handlers):
        name = syntax.name if syntax else "missing"
        raise ImageError(f"no decoder here for transfer syntax {name!r}: send uncompressed DICOM", "unsupported")
    try:
        stored = ds.pixel_array
    except Exception as e:  # decoders raise anything on bad data
        raise ImageError(f"cannot decode DICOM pixel data: {e}") from e
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    return DicomImage(_display(ds, stored, photometric), modality, _spacing(ds), photometric,
                      int(ds.get("BitsStored", 8)))


def _check_inflated_size(path: str | Path) -> None:
    """pydicom inflates a deflated dataset whole before reading a tag, so a small file could take gigabytes:
    measure what it inflates to first, a megabyte at a time, and refuse it beyond ``MAX_INFLATED``."""
    meta = pydicom.filereader.read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    if "FileMetaInformationGroupLength" not in meta:
        raise ImageError("deflated DICOM without a file meta group length", "unsupported")
    with open(path, "rb") as f:
        f.seek(128 + 4 + 12 + meta.FileMetaInformationGroupLength)  # preamble, DICM, the group length element
        pending, inflater, size = f.read(), zlib.decompressobj(-zlib.MAX_WBITS), 0
    while pending and size <= MAX_INFLATED:
        size += len(inflater.decompress(pending, 2**20))
        pending = inflater.unconsumed_tail
    if size > MAX_INFLATED:
        raise ImageError(f"deflated DICOM inflates to more than {MAX_INFLATED // 2**20} MB", "unsupported")


def _display(ds, stored: np.ndarray, photometric: str) -> np.ndarray:
    if stored.ndim == 3:
        rgb = convert_color_space(stored, photometric, "RGB") if photometric.startswith("YBR") else stored
        gray = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return _to_uint8(gray, 0.0, 255.0)
    values = apply_modality_lut(stored, ds)
    if "VOILUTSequence" in ds:
        values = apply_voi_lut(values, ds, prefer_lut=True)
    if "WindowCenter" in ds and "WindowWidth" in ds and "VOILUTSequence" not in ds:
        center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2  # DICOM's linear window
    else:
        low, high = float(np.min(values)), float(np.max(values))
    image = _to_uint8(values, low, high)
    return 255 - image if photometric == "MONOCHROME1" else image


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (np.asarray(values, np.float64) - low) / max(high - low, 1e-9)
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)


def _first(value) -> float:
    return float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)


def _spacing(ds) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            return float(ds[keyword].value[0]), float(ds[keyword].value[1])
    regions = ds.get("SequenceOfUltrasoundRegions")
    if regions and "PhysicalDeltaX" in regions[0]:
        return abs(float(regions[0].PhysicalDeltaY)) * 10, abs(float(regions[0].PhysicalDeltaX)) * 10  # cm → mm
    return None
