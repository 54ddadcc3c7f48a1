"""2D DICOM images (mammography, ultrasound) as the 8-bit grayscale arrays BreastLab's models read.

Display pipeline, in DICOM's order: modality LUT (rescale slope/intercept), VOI LUT or window
(centre/width; the full stored range when the file has neither), MONOCHROME1 inverted so that
bright is dense as in MONOCHROME2, RGB/YBR ultrasound converted to luminance; then scaled to 0–255.

Files come from outside: every attribute is read through a checked accessor, and each pydicom step runs
in a guard, so that a bad value is an ``ImageError`` naming the attribute, never another exception.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset
from pydicom.filereader import read_dataset, read_file_meta_info, read_preamble
from pydicom.multival import MultiValue
from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut, convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from breastlab.formats.png import MAX_PIXELS, ImageError, check_size

MAX_INFLATED = MAX_PIXELS * 2 + 16 * 2**20  # bytes: the largest accepted image at 16 bits, plus its other elements
SAMPLES = {"MONOCHROME1": 1, "MONOCHROME2": 1, "RGB": 3, "YBR_FULL": 3, "YBR_FULL_422": 3}  # photometric: samples


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
    ds = _dataset(path)
    if "PixelData" not in ds:
        raise ImageError("DICOM file has no pixel data")
    modality = _text(ds, "Modality", "")
    if modalities and modality not in modalities:
        raise ImageError(f"DICOM modality {modality or 'missing'!r} is not one of {', '.join(modalities)}",
                         "unsupported")
    frames = _integer(ds, "NumberOfFrames", 1) or 1
    if frames != 1:
        raise ImageError(f"DICOM file has {frames} frames (NumberOfFrames); one 2D frame is expected", "unsupported")
    photometric, samples = _text(ds, "PhotometricInterpretation", "MONOCHROME2"), _integer(ds, "SamplesPerPixel", 1)
    if photometric not in SAMPLES:
        raise ImageError(f"DICOM PhotometricInterpretation {photometric!r} is not supported: use "
                         f"{', '.join(SAMPLES)}", "unsupported")
    if samples != SAMPLES[photometric]:
        raise ImageError(f"DICOM SamplesPerPixel {samples} does not fit PhotometricInterpretation {photometric!r} "
                         f"({SAMPLES[photometric]} expected)", "unsupported")
    check_size((_integer(ds, "Columns", 0), _integer(ds, "Rows", 0)), samples)
    syntax = UID(_text(ds.file_meta, "TransferSyntaxUID", ""))
    if not syntax or not any(h.is_available() and h.supports_transfer_syntax(syntax)
                             for h in pydicom.config.pixel_data_handlers):
        name = syntax.name if syntax else "missing"
        raise ImageError(f"no decoder here for transfer syntax {name!r}: send uncompressed DICOM", "unsupported")
    spacing, bits = _spacing(ds), _integer(ds, "BitsStored", 8)
    stored = _guarded("PixelData", lambda: ds.pixel_array, "cannot decode DICOM pixel data")
    return DicomImage(_display(ds, stored, photometric), modality, spacing, photometric, bits)


def _dataset(path: str | Path) -> FileDataset:
    """The parsed file. A deflated dataset is inflated here, within ``MAX_INFLATED``, and pydicom reads the
    inflated bytes: pydicom itself would inflate it whole, whatever its size."""
    try:
        meta = read_file_meta_info(path)  # as pydicom.dcmread reads it, so that it decides as dcmread would
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return pydicom.dcmread(path)
        with open(path, "rb") as f:
            preamble = read_preamble(f, False)
            read_dataset(f, False, True, stop_when=lambda tag, vr, length: tag.group != 2)  # to the meta's end
            dataset = read_dataset(BytesIO(_inflate(f)), False, True)
        return FileDataset(str(path), dataset, preamble, meta, False, True)
    except ImageError:
        raise
    except Exception as e:  # pydicom's parser raises anything on crafted bytes
        raise ImageError(f"cannot read DICOM: {e}") from e


def _inflate(f) -> bytes:
    """The rest of ``f`` inflated (raw deflate), read and inflated a megabyte at a time; ``ImageError`` as soon
    as the inflated bytes pass ``MAX_INFLATED`` or when the stream ends early."""
    inflater, chunks, size = zlib.decompressobj(-zlib.MAX_WBITS), [], 0
    while not inflater.eof:
        data = inflater.unconsumed_tail or f.read(2**20)
        chunk = inflater.decompress(data, 2**20)
        if not data and not chunk:
            raise ImageError("cannot read DICOM: its deflated data are truncated")
        size += len(chunk)
        if size > MAX_INFLATED:
            raise ImageError(f"deflated DICOM inflates to more than {MAX_INFLATED // 2**20} MB", "unsupported")
        chunks.append(chunk)
    return b"".join(chunks)


def _display(ds, stored: np.ndarray, photometric: str) -> np.ndarray:
    """The stored values through the display pipeline (module docstring), as (H, W) uint8."""
    if stored.ndim == 3:
        rgb = stored if photometric == "RGB" else _guarded(
            "PhotometricInterpretation", lambda: convert_color_space(stored, photometric, "RGB"))
        gray = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return _to_uint8(gray, 0.0, 255.0)
    if _item(ds, "ModalityLUTSequence"):
        values = _guarded("ModalityLUTSequence", lambda: apply_modality_lut(stored, ds))
    else:
        slope, intercept = _number(ds, "RescaleSlope", 1.0), _number(ds, "RescaleIntercept", 0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            values = stored if (slope, intercept) == (1.0, 0.0) else stored * slope + intercept
        if not np.all(np.isfinite(values)):
            raise ImageError(f"DICOM RescaleSlope {slope!r} and RescaleIntercept {intercept!r} overflow the values")
    window = _number(ds, "WindowCenter", None), _number(ds, "WindowWidth", None)
    lut = _item(ds, "VOILUTSequence")
    if lut and "LUTDescriptor" in lut and "LUTData" in lut:
        values = _guarded("VOILUTSequence", lambda: apply_voi_lut(values, ds, prefer_lut=True))
        low, high = float(np.min(values)), float(np.max(values))
    elif None not in window:
        center, width = window[0], max(window[1], 1.0)
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2  # DICOM's linear window
    else:
        low, high = float(np.min(values)), float(np.max(values))
    image = _to_uint8(values, low, high)
    return 255 - image if photometric == "MONOCHROME1" else image


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (np.asarray(values, np.float64) - low) / max(high - low, 1e-9)
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)


def _spacing(ds) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _numbers(ds, keyword, 2)
        if values:
            return _positive(keyword, values[0]), _positive(keyword, values[1])
    region = _item(ds, "SequenceOfUltrasoundRegions")
    if region is None:
        return None
    dy, dx = _number(region, "PhysicalDeltaY", None), _number(region, "PhysicalDeltaX", None)
    if dx is None and dy is None:
        return None
    if dx is None or dy is None:
        missing = "PhysicalDeltaX" if dx is None else "PhysicalDeltaY"
        raise ImageError(f"DICOM SequenceOfUltrasoundRegions has a region without {missing}")
    return _positive("PhysicalDeltaY", abs(dy) * 10), _positive("PhysicalDeltaX", abs(dx) * 10)  # cm → mm


def _guarded(keyword: str, step, message: str | None = None):
    """``step()``, a pydicom function reading ``keyword``: whatever it raises becomes an ``ImageError``."""
    try:
        return step()
    except Exception as e:  # pydicom's decoders and LUT functions raise anything on crafted values
        raise ImageError(f"{message or f'DICOM {keyword} cannot be applied'}: {e}") from e


def _value(ds, keyword: str):
    """The value of ``keyword`` (``None`` when absent or empty); ``ImageError`` when pydicom cannot read it."""
    try:
        value = ds.get(keyword)
    except Exception as e:  # pydicom converts the raw value here, and raises anything on a crafted one
        raise ImageError(f"DICOM {keyword} cannot be read: {e}") from e
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _item(ds, keyword: str):
    """The first item of the sequence ``keyword`` (``None`` when absent or empty); ``ImageError`` for another value."""
    value = _value(ds, keyword)
    if not isinstance(value, (Sequence, type(None))):
        raise ImageError(f"DICOM {keyword} is not a sequence")
    return value[0] if value else None


def _text(ds, keyword: str, default: str) -> str:
    value = _value(ds, keyword)
    return default if value is None else str(value).strip()


def _numbers(ds, keyword: str, count: int = 1) -> list[float] | None:
    """The first ``count`` values of ``keyword`` as finite numbers (``None`` when absent); ``ImageError`` naming
    it otherwise."""
    value = _value(ds, keyword)
    if value is None:
        return None
    values = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    try:
        numbers = [float(v) for v in values[:count]]
    except (TypeError, ValueError, OverflowError):
        numbers = []
    if len(numbers) < count or not all(math.isfinite(n) for n in numbers):
        expected = "a finite number" if count == 1 else f"{count} finite numbers"
        raise ImageError(f"DICOM {keyword} {str(value)[:64]!r} is not {expected}")
    return numbers


def _number(ds, keyword: str, default: float | None) -> float | None:
    numbers = _numbers(ds, keyword)
    return default if numbers is None else numbers[0]


def _integer(ds, keyword: str, default: int) -> int:
    number = _number(ds, keyword, default)
    if not float(number).is_integer():
        raise ImageError(f"DICOM {keyword} {number!r} is not an integer")
    return int(number)


def _positive(keyword: str, value: float) -> float:
    if value <= 0:
        raise ImageError(f"DICOM {keyword} {value!r} is not a positive spacing")
    return value
