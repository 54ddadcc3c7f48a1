"""A real Orthanc PACS (Debian's ``orthanc`` + ``orthanc-dicomweb``) on a free port, for tests, and plausible MG and US
instances to store in it.

Everything it writes (configuration, storage, index, temporary files, log) stays in the folder it is given. The
port is one the kernel just handed out; as another program may take it before Orthanc binds it, a start that
finds it taken is retried on a new one, and a start only counts when the server answering on the port is this
one (its ``Name`` is unique), so a test never talks to another Orthanc.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.uid import generate_uid

from helpers import dicom_bytes
from tests.server_process import Server, stop_process
from tests.test_mammo import synthetic_breast

BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"  # Debian's path, also when /usr/sbin is not on PATH
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
US_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
PORT_TAKEN = "port of the HTTP server is privileged or already in use"  # Orthanc 1.10's message when bind fails


def missing() -> str | None:
    """Why Orthanc cannot run here (binary or DICOMweb plugin absent), or ``None``."""
    if not Path(BINARY).is_file():
        return "Orthanc not installed (apt-get install orthanc orthanc-dicomweb)"
    if not DICOMWEB_PLUGIN.is_file():
        return f"{DICOMWEB_PLUGIN} not found (apt-get install orthanc-dicomweb)"
    return None


def free_port() -> int:
    """A port free on every address (Orthanc 1.10 listens on all of them, not only 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def config(workdir: Path, port: int, name: str = "BreastLabTest") -> dict:
    """Orthanc's configuration: private storage and temporary folder, HTTP on ``port`` for local clients only,
    DICOMweb on."""
    return {
        "Name": name,
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "TemporaryDirectory": str(workdir / "tmp"),  # not the machine's temp folder
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # Orthanc 1.10 cannot bind one address: refuse non-local clients
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,  # DICOMweb only: no DIMSE port
        "SaveJobs": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }


class Orthanc:
    """``Orthanc config.json`` in ``workdir`` (config, storage, log), started and stopped by the caller; also a
    context manager (``with Orthanc(path).start() as orthanc:``) that stops it on exit."""

    def __init__(self, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tmp").mkdir(exist_ok=True)
        self.workdir = workdir
        self.name = f"BreastLabTest-{uuid.uuid4().hex[:12]}"
        self.config_path = workdir / "orthanc.json"
        self.log = workdir / "orthanc.log"
        self.process: subprocess.Popen | None = None
        self._use_port(free_port())

    def _use_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.config_path.write_text(json.dumps(config(self.workdir, port, self.name), indent=2))

    def start(self, timeout: float = 60, attempts: int = 5) -> "Orthanc":
        """Start Orthanc and wait (up to ``timeout`` s) until it answers with its DICOMweb plugin loaded; on a new
        port when the one chosen was taken meanwhile (at most ``attempts`` ports)."""
        deadline = time.monotonic() + timeout
        for attempt in range(attempts):
            if attempt:
                self._use_port(free_port())
            with self.log.open("w") as log:
                self.process = subprocess.Popen([BINARY, str(self.config_path)], stdout=log,
                                                stderr=subprocess.STDOUT)
            if self._wait_ready(deadline):
                return self
            if PORT_TAKEN not in self.log.read_text():
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        raise RuntimeError(f"Orthanc found its port taken {attempts} times:\n{self.log.read_text()[-3000:]}")

    def _wait_ready(self, deadline: float) -> bool:
        """True once this Orthanc answers with the DICOMweb plugin; False if it exited; TimeoutError at the
        deadline (after stopping it)."""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                system = requests.get(f"{self.url}/system", timeout=2)
                if system.ok and system.json().get("Name") == self.name:  # ours, not whatever took the port
                    if "dicom-web" in requests.get(f"{self.url}/plugins", timeout=2).json():
                        return True
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)  # poll interval, bounded by the deadline
        self.stop()
        raise TimeoutError(f"Orthanc did not answer before the deadline:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> "Orthanc":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def instances(self) -> list[str]:
        """Orthanc's ids of every stored instance (its REST API, not DICOMweb), sorted."""
        response = requests.get(f"{self.url}/instances", timeout=10)
        response.raise_for_status()
        return sorted(response.json())


def instance(pixels: np.ndarray, modality: str, **attributes) -> bytes:
    """A plausible single-frame MG or US instance of an 8-bit image: MG stored as 12-bit MONOCHROME2."""
    study = dict(PatientName="Test^Case", PatientID=f"P{generate_uid()[-8:]}", PatientBirthDate="", PatientSex="F",
                 StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(), StudyDate="20240101",
                 StudyTime="120000", StudyID="1", AccessionNumber="", ReferringPhysicianName="", SeriesNumber=1,
                 InstanceNumber=1, Modality=modality, **attributes)
    if modality != "MG":
        data = dicom_bytes(pixels, PixelSpacing=[0.1, 0.1], FrameOfReferenceUID=generate_uid(), **study)
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = US_STORAGE
        buffer = io.BytesIO()
        ds.save_as(buffer, write_like_original=False)
        return buffer.getvalue()
    stored = pixels.astype(np.uint16) * 16 + pixels // 16  # 0..255 -> 0..4095
    return dicom_bytes(stored, bits_stored=12, WindowCenter=2048, WindowWidth=4096, PixelSpacing=[0.2, 0.2],
                       ImagerPixelSpacing=[0.2, 0.2], **study)


def mammogram(side: str, rows: int, cols: int, lesion: tuple | None) -> np.ndarray:
    """A synthetic 8-bit mammogram (``tests/test_mammo.synthetic_breast``), with a bright disc (row, col, radius)."""
    image = synthetic_breast(side, h=rows, w=cols)
    if lesion:
        row, col, radius = lesion
        rr, cc = np.mgrid[:rows, :cols]
        image[(rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2] = 230
    return image


# a PACS for the tests: synthetic mammograms (side, rows, columns, lesion disc or None) and shipped ultrasound
# samples, benign and malignant, spanning 0..255 (an instance without a window is shown stretched from its lowest to
# its highest value)
MAMMOGRAMS = {"mg_seg": ("left", 320, 256, (160, 80, 18)), "mg_unlabelled": ("right", 288, 224, None),
              "mg_other_tool": ("left", 288, 384, (150, 90, 24))}
US_CASES = ("case002", "case005")


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


@contextmanager
def populated_pacs(folder: Path, samples_dir: Path) -> Iterator[Orthanc]:
    """Orthanc holding 3 MG + 2 US cases (``cases``: id -> (dataset, pixels)), a CT (filtered out by BreastLab) and an
    MG without pixel data (skipped), with a DICOMweb ``client``."""
    with Orthanc(folder).start() as orthanc:
        client = DICOMwebClient(orthanc.dicomweb)
        images = {**{case: (mammogram(*spec), "MG") for case, spec in MAMMOGRAMS.items()},
                  **{case: (read_png(samples_dir / "images" / f"{case}.png"), "US") for case in US_CASES}}
        assert all((pixels.min(), pixels.max()) == (0, 255) for pixels, _ in images.values())
        cases = {}
        for case, (pixels, modality) in images.items():
            side = {"ImageLaterality": MAMMOGRAMS[case][0][0].upper()} if modality == "MG" else {}
            ds = pydicom.dcmread(io.BytesIO(instance(pixels, modality, **side)))
            cases[case] = (ds, pixels)
            client.store_instances([ds])
        ct = pydicom.dcmread(io.BytesIO(instance(np.zeros((64, 64), np.uint8), "CT")))
        client.store_instances([ct])
        no_pixels = pydicom.dcmread(io.BytesIO(instance(np.zeros((64, 64), np.uint8), "MG")))
        del no_pixels.PixelData
        client.store_instances([no_pixels])
        orthanc.cases, orthanc.client = cases, client
        orthanc.ct, orthanc.no_pixels = ct.SOPInstanceUID, no_pixels.SOPInstanceUID
        yield orthanc


def start_server(pacs: Orthanc, workdirs: Callable[[], Path], attempts: int = 3) -> Server:
    """A BreastLab server on the PACS, in a new ``workdirs()`` folder. Its port is chosen free but only bound later:
    when another program took it meanwhile, the server exits (then a new port is tried) or another server answers
    there (it does not serve this PACS: a new port too)."""
    for _ in range(attempts):
        workdir = workdirs()
        env = {"BREASTLAB_DICOMWEB_CACHE": str(workdir / "cache"), "BREASTLAB_DICOMWEB_REFRESH_S": "0",
               "BREASTLAB_DICOMWEB_MODALITIES": "MG,US"}
        srv = Server(pacs.dicomweb, workdir, env=env)
        try:
            srv.start()
        except RuntimeError:
            if "already in use" not in srv.log.read_text():
                raise
            continue
        try:
            info = requests.get(f"{srv.url}/info/", timeout=30).json()
        except (requests.RequestException, ValueError):
            info = {}
        if info.get("datastore", {}).get("pacs", {}).get("url") == pacs.dicomweb and srv.process.poll() is None:
            srv.cache = workdir / "cache"
            return srv
        srv.stop()
    raise RuntimeError(f"no free port for the BreastLab server in {attempts} tries")


def eventually(condition, timeout: float = 30.0):
    """``condition()`` once it is truthy, polled until ``timeout`` s have passed (then its last, falsy, value): the
    server refreshes from the PACS on each listing, but serves its cache when a refresh is busy or fails."""
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.2)  # poll interval, bounded by the deadline
    return value


def results_for(pacs, modality: str, image_uid: str) -> list[pydicom.Dataset]:
    """The instances of ``modality`` in Orthanc that reference ``image_uid`` (QIDO-RS, then WADO-RS)."""
    found = []
    for hit in pacs.client.search_for_instances(search_filters={"Modality": modality}):
        ds = pydicom.Dataset.from_json(hit)
        full = pacs.client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        if image_uid in json.dumps(full.to_json_dict(None, None)):
            found.append(full)
    return found
