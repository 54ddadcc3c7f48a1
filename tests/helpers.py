"""HTTP helpers shared by the tests that call a real BreastLab server."""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import requests
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

from breastlab import __version__
from breastlab.bundle import PROJECT_ROOT, file_sha256, get_bundle
from breastlab.server.datastore.studies import import_dataset

from tests.server_process import Server

MODEL = "breast_us_t2kd"
FLOAT32 = {"BREASTLAB_PRECISION": "fp32"}  # a server's environment where a test pins a score of the shipped weights
SAMPLES = PROJECT_ROOT / "samples" / "breast_lesions_usg"


@contextmanager
def sample_server(workdir: Path, env: dict | None = None) -> Iterator[Server]:
    """A real server (``env`` added to its environment) on the six shipped samples imported into
    ``workdir/studies``; stopped on exit."""
    import_dataset(SAMPLES, workdir / "studies")
    server = Server(workdir / "studies", workdir, env=env).start()
    try:
        yield server
    finally:
        server.stop()


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    """PNG bytes of ``array`` (mode from its dtype and shape, or converted to ``mode``)."""
    image = Image.fromarray(array)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(server, image_id: str, data: bytes, name: str = "upload.png") -> requests.Response:
    return requests.put(f"{server.url}/datastore/image", params={"image": image_id},
                        files={"file": (name, data, "image/png")}, timeout=30)


def save_label(server, image_id: str, data: bytes, tag: str = "final") -> requests.Response:
    return requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": tag},
                        files={"label": ("label.png", data, "image/png")}, timeout=30)


def infer(server, image_id: str, model: str = MODEL, output: str = "json", **params) -> requests.Response:
    """POST /infer/``model`` on a datastore image; ``params`` (e.g. ``foreground=[[x, y]]``) go in the form."""
    return requests.post(f"{server.url}/infer/{model}", params={"image": image_id, "output": output},
                         data={"params": json.dumps(params)} if params else None, timeout=120)


def model_entry(name: str, weights: Path | None = None) -> dict:
    """The ``model`` entry of bundle ``name``'s results: its metadata version, the SHA-256 of ``weights`` (default:
    its shipped ``models/model.pt``) and BreastLab's version."""
    bundle = get_bundle(name)
    digest = bundle.weights_sha256 if weights is None else file_sha256(weights)
    return {"bundle": name, "version": bundle.metadata["version"], "weights_sha256": digest, "breastlab": __version__}


def dicom_bytes(pixels: np.ndarray | None, syntax=ExplicitVRLittleEndian, photometric: str | None = None,
                bits_stored: int | None = None, **attributes) -> bytes:
    """A single-frame DICOM file of ``pixels`` ((rows, cols) gray or (rows, cols, 3) RGB; ``None``: no pixel
    data) with any further ``attributes`` (Modality, WindowCenter, PixelSpacing, ...)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # digital mammography, for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    shape = (64, 64) if pixels is None else pixels.shape
    ds.Rows, ds.Columns = shape[:2]
    rgb = len(shape) == 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3, "RGB") if rgb else (1, "MONOCHROME2")
    if rgb:
        ds.PlanarConfiguration = 0
    bits = 8 if pixels is None or pixels.dtype == np.uint8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits_stored or bits, \
        (bits_stored or bits) - 1, 0
    if photometric:
        ds.PhotometricInterpretation = photometric
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if pixels is not None:
        data = np.ascontiguousarray(pixels).tobytes()
        native = syntax in (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
        ds.PixelData = data if native else encapsulate([data])
    ds.is_little_endian, ds.is_implicit_VR = True, False
    buffer = io.BytesIO()
    ds.save_as(buffer, write_like_original=False)
    return buffer.getvalue()


def deflated_dicom_bomb(rows: int, cols: int, samples: int = 3, bits: int = 16) -> bytes:
    """A small deflated DICOM whose pixel data inflates to rows x cols x samples x bits/8 zero bytes, made a
    megabyte at a time (the test itself never holds the inflated data)."""
    rgb = {"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB", "PlanarConfiguration": 0} if samples == 3 else {}
    head = dicom_bytes(None, syntax=DeflatedExplicitVRLittleEndian, Rows=rows, Columns=cols, BitsAllocated=bits,
                       BitsStored=bits, HighBit=bits - 1, Modality="US", **rgb)
    meta_end = 132 + 12 + int.from_bytes(head[140:144], "little")  # after the file meta group length's value
    size = rows * cols * samples * bits // 8
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = [deflater.compress(zlib.decompress(head[meta_end:], -zlib.MAX_WBITS)),
            deflater.compress(b"\xe0\x7f\x10\x00OW\x00\x00" + size.to_bytes(4, "little"))]
    zeros = bytes(2**20)
    body += [deflater.compress(zeros[:min(2**20, size - start)]) for start in range(0, size, 2**20)]
    return head[:meta_end] + b"".join(body) + deflater.flush()
