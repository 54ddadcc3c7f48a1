"""JPEG reading: grayscale and gray-as-RGB JPEGs read as one 8-bit plane, colour and broken files refused."""

import io

import numpy as np
import pytest
from monai.transforms import LoadImaged
from PIL import Image

from breastlab.formats import png
from breastlab.formats.jpeg import GrayPILReader, read_gray_image, read_gray_jpeg
from breastlab.formats.png import ImageError


def gradient(h: int = 48, w: int = 64) -> np.ndarray:
    return np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))


def save_jpeg(path, array: np.ndarray, mode: str | None = None):
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path, "JPEG", quality=95)
    return path


def test_gray_and_gray_stored_as_rgb_read_alike(tmp_path):
    gray = read_gray_jpeg(save_jpeg(tmp_path / "gray.jpg", gradient()))
    as_rgb = read_gray_jpeg(save_jpeg(tmp_path / "rgb.jpg", gradient(), "RGB"))
    assert gray.dtype == np.uint8 and gray.shape == (48, 64)
    assert np.abs(gray.astype(int) - gradient()).mean() < 2
    assert np.abs(as_rgb.astype(int) - gray).max() <= 2


def test_colour_jpeg_is_refused(tmp_path):
    colour = np.zeros((48, 64, 3), np.uint8)
    colour[..., 0] = 200
    with pytest.raises(ImageError, match="colour JPEG") as e:
        read_gray_jpeg(save_jpeg(tmp_path / "red.jpg", colour))
    assert e.value.kind == "unsupported"


def test_size_is_checked_before_decoding(tmp_path, monkeypatch):
    path = save_jpeg(tmp_path / "big.jpg", gradient(), "RGB")
    monkeypatch.setattr(png, "MAX_PIXELS", 48 * 64 * 3 - 1)  # the three samples per pixel count
    with pytest.raises(ImageError, match="million values"):
        read_gray_jpeg(path)
    with pytest.raises(ImageError, match="size"):
        read_gray_jpeg(save_jpeg(tmp_path / "tiny.jpg", gradient(8, 8)))


@pytest.mark.parametrize("content", [b"\xff\xd8\xff\xe0" + b"\0" * 64, b"not an image at all"])
def test_broken_files_are_corrupt(tmp_path, content):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError) as e:
        read_gray_jpeg(path)
    assert e.value.kind in ("corrupt", "unsupported") and "JPEG" in str(e.value)


def test_png_or_jpeg_told_apart_by_content_not_name(tmp_path):
    jpeg_named_png = save_jpeg(tmp_path / "looks.png", gradient())
    assert read_gray_image(jpeg_named_png).shape == (48, 64)
    buffer = io.BytesIO()
    Image.fromarray(gradient()).save(buffer, "PNG")
    (tmp_path / "real.png").write_bytes(buffer.getvalue())
    assert np.array_equal(read_gray_image(tmp_path / "real.png"), gradient())


def test_monai_reader_gives_one_channel_for_rgb_jpeg(tmp_path):
    path = save_jpeg(tmp_path / "rgb.jpg", gradient(), "RGB")
    image = LoadImaged("image", image_only=True, ensure_channel_first=True, reader=GrayPILReader())(
        {"image": str(path)})["image"]
    assert tuple(image.shape) == (1, 64, 48)  # [channel, x, y] as PILReader gives
    assert np.abs(np.asarray(image[0]).T - read_gray_jpeg(path)).max() == 0
