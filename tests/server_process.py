"""The test harness: a real MONAI Label server with the BreastLab app in a subprocess (tests, benchmarks, the Slicer
extension's tests)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psutil
import requests

from breastlab.bundle import BUNDLES_DIR, PROJECT_ROOT
from breastlab.server.start import server_command


def bundles_folder(folder: Path, inference: dict[str, dict], names: list[str] | None = None) -> Path:
    """A folder of bundles for the app's ``BREASTLAB_BUNDLES``: links to the project's bundles (``names``, default
    all), where those named in ``inference`` (``{bundle: {key: value}}``) get a copy of their ``configs/`` whose
    ``inference.json`` has these top-level keys set (e.g. a calibrated ``temperature`` and ``birads`` model)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(BUNDLES_DIR.iterdir()):
        if not (source / "configs").is_dir() or (names is not None and source.name not in names):
            continue
        if source.name not in inference:
            (folder / source.name).symlink_to(source, target_is_directory=True)
            continue
        shutil.copytree(source / "configs", folder / source.name / "configs")
        for item in source.iterdir():
            if item.name != "configs":
                (folder / source.name / item.name).symlink_to(item)
        config = folder / source.name / "configs" / "inference.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), **inference[source.name]}, indent=4))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m monailabel.main start_server`` on a free 127.0.0.1 port, with a private app folder.

    ``studies`` is a folder or a DICOMweb URL (a PACS). The app folder is a copy of ``apps/breastlab`` under
    ``workdir``, so the server's ``model/`` and ``logs/`` (fine-tuned weights included) never touch the repository.
    """

    def __init__(self, studies: Path | str, workdir: Path, env: dict | None = None, headers: dict | None = None):
        self.app_dir = workdir / "app"
        shutil.copytree(PROJECT_ROOT / "apps" / "breastlab", self.app_dir,
                        ignore=shutil.ignore_patterns("model", "logs", "__pycache__"))
        self.studies = studies
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        self.env = {**os.environ, **(env or {})}
        self.headers = headers or {}  # e.g. an Authorization header when MONAI Label's auth is on
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180, attempts: int = 3) -> "Server":
        """Start the server and wait until it answers ``/info/`` on its own port. A free port can be taken by another
        program before the server binds it: then it starts again on another port (``attempts`` in all)."""
        for _ in range(attempts):
            if self._launch(timeout):
                return self
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
        raise RuntimeError(f"server found no free port in {attempts} attempts:\n{self.log.read_text()[-3000:]}")

    def _launch(self, timeout: float) -> bool:
        """Whether the server started answers on ``port``; False when the port was taken before it could bind."""
        command = server_command(self.app_dir, self.studies, "127.0.0.1", self.port)
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.app_dir,
                                            env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self.log.read_text():
                    return False
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            if self._listening() and self.alive():
                return True
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"server did not answer /info/ in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def _listening(self) -> bool:
        """Whether this server's process (not another program) listens on the port."""
        try:
            connections = psutil.Process(self.process.pid).net_connections(kind="inet")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in connections)

    def alive(self) -> bool:
        try:
            return requests.get(f"{self.url}/info/", headers=self.headers, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen | None, timeout: float = 20) -> None:
    """Terminate ``process`` if it still runs; kill it when it ignores that for ``timeout`` seconds."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
