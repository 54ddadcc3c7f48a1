"""A real Orthanc PACS (Debian's ``orthanc`` + ``orthanc-dicomweb``) on a free 127.0.0.1 port, for tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import requests

from breastlab.server.process import free_port, stop_process

BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"  # Debian's path, also when /usr/sbin is not on PATH
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def missing() -> str | None:
    """Why Orthanc cannot run here (binary or DICOMweb plugin absent), or ``None``."""
    if not Path(BINARY).is_file():
        return "Orthanc not installed (apt-get install orthanc orthanc-dicomweb)"
    if not DICOMWEB_PLUGIN.is_file():
        return f"{DICOMWEB_PLUGIN} not found (apt-get install orthanc-dicomweb)"
    return None


def config(workdir: Path, port: int) -> dict:
    """Orthanc's configuration: private storage, HTTP on ``port`` for local clients only, DICOMweb on."""
    return {
        "Name": "BreastLabTest",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # Orthanc 1.10 cannot bind one address: refuse non-local clients
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,  # DICOMweb only: no DIMSE port
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }


class Orthanc:
    """``Orthanc config.json`` in ``workdir`` (config, storage, log), started and stopped by the caller."""

    def __init__(self, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.config_path = workdir / "orthanc.json"
        self.config_path.write_text(json.dumps(config(workdir, self.port), indent=2))
        self.log = workdir / "orthanc.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Orthanc":
        with self.log.open("w") as log:
            self.process = subprocess.Popen([BINARY, str(self.config_path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/plugins", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"Orthanc did not answer in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.process)

    def instances(self) -> list[str]:
        """Orthanc's ids of every stored instance (its REST API, not DICOMweb)."""
        return requests.get(f"{self.url}/instances", timeout=10).json()
