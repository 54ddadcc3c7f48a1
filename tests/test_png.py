"""breastlab.formats.png: strict grayscale PNG reading, safe ids and atomic writes."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from breastlab.formats import png
from breastlab.formats.png import ImageError, check_id, read_gray_png, write_png, write_text_atomic

RNG = np.random.default_rng(0)
ARRAY = RNG.integers(0, 256, (40, 64), dtype=np.uint8)  # 40 tall, 64 wide


def save(path, image: Image.Image, fmt: str = "PNG"):
    image.save(path, fmt)
    return path


def test_reads_8bit_gray(tmp_path):
    out = read_gray_png(save(tmp_path / "a.png", Image.fromarray(ARRAY)))
    assert out.dtype == np.uint8 and out.shape == (40, 64)
    np.testing.assert_array_equal(out, ARRAY)


def test_reads_mode_1_as_0_255(tmp_path):
    bits = ARRAY > 127
    out = read_gray_png(save(tmp_path / "a.png", Image.fromarray(bits)))
    assert Image.open(tmp_path / "a.png").mode == "1"
    assert out.dtype == np.uint8 and out.shape == (40, 64)
    np.testing.assert_array_equal(out, bits.astype(np.uint8) * 255)


@pytest.mark.parametrize("image", [
    Image.fromarray(ARRAY.astype(np.uint16) * 257),  # 16-bit grayscale
    Image.fromarray(ARRAY).convert("RGBA"),
    Image.fromarray(ARRAY).convert("P"),
    Image.fromarray(ARRAY).convert("RGB"),
], ids=["16bit", "RGBA", "P", "RGB"])
def test_rejects_other_modes(tmp_path, image):
    path = save(tmp_path / "a.png", image)
    with pytest.raises(ImageError, match="mode") as e:
        read_gray_png(path)
    assert e.value.kind == "unsupported"


def test_16bit_png_is_really_16bit(tmp_path):
    with Image.open(save(tmp_path / "a.png", Image.fromarray(ARRAY.astype(np.uint16) * 257))) as im:
        assert im.mode == "I;16"


def test_rejects_jpeg_named_png(tmp_path):
    path = save(tmp_path / "a.png", Image.fromarray(ARRAY), "JPEG")
    with pytest.raises(ImageError, match="JPEG") as e:
        read_gray_png(path)
    assert e.value.kind == "unsupported"


def test_rejects_too_small(tmp_path):
    with pytest.raises(ImageError, match="8x8") as e:
        read_gray_png(save(tmp_path / "a.png", Image.fromarray(ARRAY[:8, :8])))
    assert e.value.kind == "unsupported"


def test_accepts_min_side(tmp_path):
    assert read_gray_png(save(tmp_path / "a.png", Image.fromarray(ARRAY[:16, :16]))).shape == (16, 16)


def test_rejects_too_large(tmp_path, monkeypatch):
    monkeypatch.setattr(png, "MAX_SIDE", 63)
    with pytest.raises(ImageError, match="64x40") as e:
        read_gray_png(save(tmp_path / "a.png", Image.fromarray(ARRAY)))
    assert e.value.kind == "unsupported"
    monkeypatch.setattr(png, "MAX_SIDE", 64)
    assert read_gray_png(tmp_path / "a.png").shape == (40, 64)


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(ARRAY).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("content", [
    png_bytes()[: len(png_bytes()) // 2],
    RNG.integers(0, 256, 500, dtype=np.uint8).tobytes(),
    b"",
], ids=["truncated", "random", "empty"])
def test_rejects_corrupt(tmp_path, content):
    path = tmp_path / "a.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="cannot decode") as e:
        read_gray_png(path)
    assert e.value.kind == "corrupt"


@pytest.mark.parametrize("name", ["case001", "busi_benign_001.v2", "A-1", "x" * 128])
def test_check_id_accepts(name):
    assert check_id(name) == name


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "", ".hidden", "a..b", "x" * 200, "nul\x00byte",
                                  "space name", "a\\b", "-dash", None])
def test_check_id_rejects(name):
    with pytest.raises(ValueError, match="invalid label tag"):
        check_id(name, "label tag")


def test_check_id_rejects_trailing_newline():
    with pytest.raises(ValueError):
        check_id("abc\n")


def test_write_png_round_trip(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    assert write_png(ARRAY, path) == path
    np.testing.assert_array_equal(read_gray_png(path), ARRAY)
    assert os.listdir(tmp_path) == ["out.png"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_text_atomic_round_trip(tmp_path):
    path = tmp_path / "out.json"
    write_text_atomic(path, "first")
    write_text_atomic(path, "zweite Fassung é")
    assert path.read_text(encoding="utf-8") == "zweite Fassung é"
    assert os.listdir(tmp_path) == ["out.json"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old")

    def explode(f):
        f.write(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        png.write_atomic(path, explode)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_interrupted_write_of_new_file_leaves_nothing(tmp_path):
    def interrupt(f):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        png.write_atomic(tmp_path / "new.txt", interrupt)
    assert os.listdir(tmp_path) == []
