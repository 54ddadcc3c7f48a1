"""Hypothesis strategies for malformed uploads and parameters (PNG, DICOM, JSON, ids)."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
from hypothesis import strategies as st
from pydicom.uid import JPEG2000Lossless

from helpers import dicom_bytes, png_bytes

VALID_PNG = png_bytes(np.random.default_rng(0).integers(0, 256, (64, 80), dtype=np.uint8))
IHDR_DATA = slice(16, 29)  # width, height, bit depth, colour type, compression, filter, interlace


def with_ihdr(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """``VALID_PNG`` with its header rewritten (and its CRC fixed, so only the values are wrong)."""
    fields = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + fields))
    return VALID_PNG[:IHDR_DATA.start] + fields + crc + VALID_PNG[IHDR_DATA.stop + 4:]


def flip_byte(position: int, value: int) -> bytes:
    data = bytearray(VALID_PNG)
    data[position] ^= value or 1
    return bytes(data)


ODD_FILES = [
    png_bytes(np.full((64, 64), 1000, np.uint16)),
    png_bytes(np.zeros((64, 64, 4), np.uint8)),
    png_bytes(np.zeros((64, 64, 3), np.uint8)),
    png_bytes(np.zeros((64, 64), np.uint8), "P"),
    png_bytes(np.zeros((64, 64), np.uint8), "LA"),
    png_bytes(np.zeros((64, 64), bool)),
    png_bytes(np.zeros((8, 8), np.uint8)),
    png_bytes(np.zeros((16, 9000), np.uint8)),
    dicom_bytes(np.zeros((64, 64), np.uint16)),
    dicom_bytes(np.zeros((64, 64), np.uint8), Modality="US"),
    dicom_bytes(None),
    dicom_bytes(np.zeros((64, 64), np.uint16), syntax=JPEG2000Lossless),
]

files = st.one_of(
    st.binary(max_size=1024),
    st.integers(0, len(VALID_PNG) - 1).map(lambda n: VALID_PNG[:n]),
    st.builds(flip_byte, st.integers(0, len(VALID_PNG) - 1), st.integers(0, 255)),
    st.builds(with_ihdr, st.sampled_from([0, 1, 15, 64, 8193, 100_000, 2**31 - 1]),
              st.sampled_from([0, 16, 64, 65_535, 2**32 - 1]), st.sampled_from([0, 1, 2, 3, 8, 16, 33]),
              st.sampled_from([0, 1, 2, 3, 4, 6, 7])),
    st.sampled_from(ODD_FILES),
    st.sampled_from(ODD_FILES).flatmap(lambda d: st.integers(0, len(d) - 1).map(lambda n: d[:n])),
)

printable_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)  # requests sends UTF-8 only
hostile_values = st.one_of(  # JSON text that parses, but not to what a float or UTF-8 holds, or nests deep
    st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", '"\\ud800"', '"x\\udfff"', '["\\udc00"]']),
    st.integers(101, 4400).map(lambda digits: "1" + "0" * digits),  # past a float, and past Python's 4,300 digits
    st.integers(1, 12).map(lambda depth: "[" * depth + "1" + "]" * depth),
)
hostile_json = st.one_of(
    st.builds(lambda key, value: "{" + json.dumps(key) + ": " + value + "}",
              st.sampled_from(["k", "\ud800", "roi", "foreground", "max_epochs", "probabilities", "box", "points",
                               "point_labels"]), hostile_values),
    st.integers(1, 12).map(lambda depth: '{"k": ' * depth + "1" + "}" * depth),
    st.integers(4000, 4200).map(lambda count: json.dumps({f"k{i}": i for i in range(count)})),  # about 4,096 values
)
params = st.one_of(
    st.just("{}"),
    printable_text,
    st.sampled_from(["[]", "1", '"x"', "null", '{"a":', '{"a": 1}', "{" * 500, '{"label_info": [1, 2]}']),
    hostile_json,
)
ids = st.one_of(st.just("fuzz_target"), st.sampled_from(["..", "../x", "/etc/passwd", "a\x00b", "x" * 300]),
                printable_text)
endpoints = st.sampled_from(["upload", "label", "infer", "image_info"])
