"""DICOM reading: windowing, MONOCHROME1, 12/16-bit, RGB ultrasound, spacing, and clear rejections (of crafted
attributes and deflate bombs too); SEG and SR writing: who made the result (an annotator, or which model)."""

from __future__ import annotations

import functools
import io
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless

from breastlab.formats.dicom import MAX_INFLATED, is_dicom, read_dicom_image
from breastlab.formats.png import ImageError

from helpers import deflated_dicom_bomb, dicom_bytes, png_bytes

RAMP12 = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (32, 1))  # 12-bit values left to right
RGB = np.full((32, 48, 3), 90, np.uint8)


def with_text(data: bytes, **texts: str) -> bytes:
    """The DICOM file ``data`` with the elements named in ``texts`` holding that raw text, whatever their VR says."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, text in texts.items():
        tag, raw = Tag(keyword), text.encode() + b" " * (len(text) % 2)
        ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=False)
    return buffer.getvalue()


def item(**attributes) -> Sequence:
    """A one-item sequence; ``LUTData`` given as bytes (written as OW)."""
    ds = Dataset()
    for keyword, value in attributes.items():
        if keyword == "LUTData":
            ds.add_new(0x00283006, "OW", value)
        else:
            setattr(ds, keyword, value)
    return Sequence([ds])


def lying_group_length(data: bytes) -> bytes:
    """``data`` whose file-meta group length (0002,0000) claims 0xFFFFFF00 bytes."""
    return data[:140] + (0xFFFFFF00).to_bytes(4, "little") + data[144:]


@functools.cache
def padded_deflated_dicom(padding: int) -> bytes:
    """A valid deflated 64 x 64 MG image with a private element of ``padding`` zero bytes before its pixel data (a
    small image, so that only the inflated size can refuse it), made a megabyte at a time."""
    head = dicom_bytes(None, syntax=DeflatedExplicitVRLittleEndian)
    meta_end = 144 + int.from_bytes(head[140:144], "little")
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = [deflater.compress(zlib.decompress(head[meta_end:], -zlib.MAX_WBITS) + b"\x29\x00\x00\x10OB\x00\x00"
                              + padding.to_bytes(4, "little"))]
    body += [deflater.compress(bytes(min(2**20, padding - start))) for start in range(0, padding, 2**20)]
    body.append(deflater.compress(b"\xe0\x7f\x10\x00OB\x00\x00" + (64 * 64).to_bytes(4, "little") + bytes(64 * 64)))
    return head[:meta_end] + b"".join(body) + deflater.flush()


@functools.cache
def bomb() -> bytes:
    return deflated_dicom_bomb(8192, 8192)  # 400 MB inflated


@pytest.fixture
def inflated(monkeypatch) -> list[int]:
    """The bytes every zlib inflater in the process gives (pydicom's ``zlib.decompress`` too), in a one-item list;
    capped just past ``MAX_INFLATED`` plus a megabyte, so that a reader without a budget cannot take the memory."""
    total, cap, decompressobj = [0], MAX_INFLATED + 2**20 + 1, zlib.decompressobj

    class Counting:
        def __init__(self, *args):
            self.inner = decompressobj(*args)

        def decompress(self, data, max_length=0):
            room = max(cap - total[0], 1)
            out = self.inner.decompress(data, min(max_length or room, room))
            total[0] += len(out)
            return out

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(zlib, "decompressobj", Counting)
    monkeypatch.setattr(zlib, "decompress", lambda data, wbits=15, bufsize=0: Counting(wbits).decompress(data))
    return total


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


@pytest.mark.parametrize("make", [bomb, lambda: lying_group_length(bomb()),
                                  lambda: lying_group_length(padded_deflated_dicom(MAX_INFLATED + 2**20))],
                         ids=["huge-image", "huge-image-lying-group-length", "small-image-huge-element-lying"])
def test_deflated_dicom_is_refused_once_what_it_really_inflates_passes_the_budget(tmp_path, inflated, make):
    path = write(tmp_path, make())
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ImageError, match="inflates to more than") as refused:
        read_dicom_image(path)
    assert refused.value.kind == "unsupported" and inflated[0] <= MAX_INFLATED + 2**20


def test_deflated_dicom_reads_whatever_its_group_length_claims(tmp_path, inflated):
    image = read_dicom_image(write(tmp_path, lying_group_length(padded_deflated_dicom(2**20))))
    assert image.pixels.shape == (64, 64) and 2**20 < inflated[0] < 2 * 2**20


def test_truncated_deflated_dicom_is_corrupt(tmp_path):
    data = dicom_bytes(RAMP12, DeflatedExplicitVRLittleEndian)
    with pytest.raises(ImageError, match="cannot read DICOM") as error:
        read_dicom_image(write(tmp_path, data[:-200]))
    assert error.value.kind == "corrupt"


REGION_WITHOUT_DELTA_Y = item(PhysicalDeltaX=0.01)
BAD_ATTRIBUTES = {  # id: (file, kind, words the message holds)
    "window-centre-text": (with_text(dicom_bytes(RAMP12, WindowWidth=100), WindowCenter="abc"), "corrupt",
                           "WindowCenter"),
    "window-width-text": (with_text(dicom_bytes(RAMP12, WindowCenter=100), WindowWidth="x"), "corrupt", "WindowWidth"),
    "window-not-finite": (with_text(dicom_bytes(RAMP12), WindowCenter="nan", WindowWidth="inf"), "corrupt",
                          "WindowCenter"),
    "rescale-slope-text": (with_text(dicom_bytes(RAMP12, RescaleIntercept=0), RescaleSlope="abc"), "corrupt",
                           "RescaleSlope"),
    "rescale-intercept-text": (with_text(dicom_bytes(RAMP12), RescaleIntercept="zz"), "corrupt", "RescaleIntercept"),
    "rescale-overflow": (dicom_bytes(RAMP12, RescaleSlope="1e308", RescaleIntercept=0), "corrupt", "RescaleSlope"),
    "pixel-spacing-text": (with_text(dicom_bytes(RAMP12), PixelSpacing="abc"), "corrupt", "PixelSpacing"),
    "pixel-spacing-one-value": (dicom_bytes(RAMP12, PixelSpacing=[0.1]), "corrupt", "PixelSpacing"),
    "frames-text": (with_text(dicom_bytes(RAMP12), NumberOfFrames="two"), "corrupt", "NumberOfFrames"),
    "ybr-partial-420": (dicom_bytes(RGB, photometric="YBR_PARTIAL_420"), "unsupported", "PhotometricInterpretation"),
    "ybr-ict": (dicom_bytes(RGB, photometric="YBR_ICT"), "unsupported", "PhotometricInterpretation"),
    "palette-colour": (dicom_bytes(RAMP12, photometric="PALETTE COLOR"), "unsupported", "PhotometricInterpretation"),
    "two-samples": (dicom_bytes(np.zeros((32, 48, 2), np.uint8), SamplesPerPixel=2), "unsupported", "SamplesPerPixel"),
    "voi-lut-short": (dicom_bytes(RAMP12, VOILUTSequence=item(LUTDescriptor=[4096, 0, 16],
                                                             LUTData=np.arange(3, dtype=np.uint16).tobytes())),
                      "corrupt", "VOILUTSequence"),
    "modality-lut-short": (dicom_bytes(RAMP12, ModalityLUTSequence=item(LUTDescriptor=[10, 0, 16],
                                                                       LUTData=bytes(2))), "corrupt",
                           "ModalityLUTSequence"),
    "us-region-without-delta-y": (dicom_bytes(RGB, Modality="US", SequenceOfUltrasoundRegions=REGION_WITHOUT_DELTA_Y),
                                  "corrupt", "PhysicalDeltaY"),
}


@pytest.mark.parametrize("data, kind, words", BAD_ATTRIBUTES.values(), ids=BAD_ATTRIBUTES.keys())
def test_bad_attributes_are_image_errors_naming_the_attribute(tmp_path, data, kind, words):
    with pytest.raises(ImageError) as error:
        read_dicom_image(write(tmp_path, data), modalities=("MG", "US"))
    assert error.value.kind == kind and words in str(error.value)


def test_window_is_used_when_the_voi_lut_sequence_has_no_lut(tmp_path):
    pixels = np.array([[0, 1500, 2000, 2500, 4095] * 4] * 16, np.uint16)
    windowed = read_dicom_image(write(tmp_path, dicom_bytes(pixels, WindowCenter=2000, WindowWidth=1000,
                                                            VOILUTSequence=item(LUTExplanation="none"))))
    assert windowed.pixels[0, :5].tolist()[::2] == [0, 128, 255]


def test_a_voi_lut_maps_the_values(tmp_path):
    lut = np.linspace(0, 65535, 4096).astype(np.uint16)[::-1].copy()  # an inverting LUT over the 12-bit range
    data = dicom_bytes(RAMP12, bits_stored=12, VOILUTSequence=item(LUTDescriptor=[4096, 0, 16], LUTData=lut.tobytes()))
    image = read_dicom_image(write(tmp_path, data))
    assert image.pixels[0, 0] == 255 and image.pixels[0, -1] == 0

