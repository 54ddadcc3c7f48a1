"""DICOM reading: windowing, MONOCHROME1, 12/16-bit, RGB ultrasound, spacing, and clear rejections."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from breastlab.formats.dicom import is_dicom, read_dicom_image
from breastlab.formats.png import ImageError

from helpers import deflated_dicom_bomb, dicom_bytes, png_bytes

RAMP12 = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (32, 1))  # 12-bit values left to right


def write(tmp_path, data: bytes, name: str = "image.dcm"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_12_bit_mammogram_without_window_uses_the_full_range(tmp_path):
    image = read_dicom_image(write(tmp_path, dicom_bytes(RAMP12, bits_stored=12, PixelSpacing=[0.07, 0.05])))
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (32, 64)
    assert image.pixels[0, 0] == 0 and image.pixels[0, -1] == 255
    assert np.all(np.diff(image.pixels[0].astype(int)) >= 0)
    assert (image.modality, image.bits_stored, image.spacing_mm) == ("MG", 12, (0.07, 0.05))


def test_window_centre_and_width_follow_dicoms_linear_formula(tmp_path):
    pixels = np.array([[0, 1000, 1500, 2000, 2047, 3000, 4095] * 3] * 16, np.uint16)
    image = read_dicom_image(write(tmp_path, dicom_bytes(pixels, bits_stored=12, WindowCenter=2000, WindowWidth=1000)))
    row = image.pixels[0, :7].tolist()
    assert row[0] == row[1] == 0 and row[5] == row[6] == 255  # outside the window
    assert row[3] == pytest.approx(128, abs=1) and row[2] < row[3] < row[4]


def test_rescale_slope_and_intercept_apply_before_the_window(tmp_path):
    pixels = np.full((16, 16), 100, np.uint16)
    pixels[:, 8:] = 300
    data = dicom_bytes(pixels, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=300, WindowWidth=201)
    image = read_dicom_image(write(tmp_path, data))  # stored 100 -> 100, 300 -> 500
    assert image.pixels[0, 0] == 0 and image.pixels[0, -1] == 255


def test_monochrome1_is_inverted(tmp_path):
    normal = read_dicom_image(write(tmp_path, dicom_bytes(RAMP12, bits_stored=12), "m2.dcm")).pixels
    inverted = read_dicom_image(write(tmp_path, dicom_bytes(RAMP12, photometric="MONOCHROME1", bits_stored=12),
                                      "m1.dcm")).pixels
    np.testing.assert_array_equal(inverted, 255 - normal)


def test_rgb_ultrasound_becomes_luminance_and_keeps_region_spacing(tmp_path):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 1] = 200  # green
    region = Dataset()
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.01, 0.02  # cm per pixel
    data = dicom_bytes(rgb, Modality="US", SequenceOfUltrasoundRegions=Sequence([region]))
    image = read_dicom_image(write(tmp_path, data))
    assert image.pixels.shape == (32, 48) and np.all(image.pixels == round(200 * 0.587))
    assert image.spacing_mm == pytest.approx((0.2, 0.1))


def test_is_dicom(tmp_path):
    assert is_dicom(write(tmp_path, dicom_bytes(RAMP12)))
    assert not is_dicom(write(tmp_path, png_bytes(np.zeros((16, 16), np.uint8)), "x.png"))
    assert not is_dicom(write(tmp_path, b"", "empty"))


@pytest.mark.parametrize("data, kind, words", [
    (dicom_bytes(None), "corrupt", "no pixel data"),
    (dicom_bytes(RAMP12, syntax=JPEGLSLossless), "unsupported", "no decoder"),
    (dicom_bytes(RAMP12, syntax=JPEG2000Lossless), "corrupt", "cannot decode"),
    (dicom_bytes(RAMP12, Modality="CT"), "unsupported", "modality 'CT'"),
    (dicom_bytes(np.zeros((8, 8), np.uint16)), "unsupported", "size"),
    (dicom_bytes(RAMP12)[:400], "corrupt", "no pixel data"),
    (dicom_bytes(RAMP12)[:-100], "corrupt", "cannot decode"),
    (b"not dicom at all", "corrupt", "cannot read DICOM"),
], ids=["no-pixels", "no-decoder", "bad-j2k", "wrong-modality", "too-small", "truncated-header",
                                   "truncated-pixels", "garbage"])
def test_unusable_files_raise_image_errors(tmp_path, data, kind, words):
    with pytest.raises(ImageError) as error:
        read_dicom_image(write(tmp_path, data), modalities=("MG", "US"))
    assert error.value.kind == kind and words in str(error.value)


def test_deflated_dicom_reads_like_the_uncompressed_one(tmp_path):
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    deflated = read_dicom_image(write(tmp_path, dicom_bytes(RAMP12, DeflatedExplicitVRLittleEndian, bits_stored=12)))
    assert np.array_equal(deflated.pixels, read_dicom_image(write(tmp_path, dicom_bytes(RAMP12, bits_stored=12),
                                                                  "plain.dcm")).pixels)


def test_small_deflated_dicom_declaring_a_huge_image_is_refused_without_inflating_it(tmp_path):
    import tracemalloc

    path = write(tmp_path, deflated_dicom_bomb(8192, 8192))  # inflates to 400 MB
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="inflates to more than") as refused:
            read_dicom_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.kind == "unsupported" and peak < 20_000_000
