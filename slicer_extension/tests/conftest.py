"""A real BreastLab server on the shipped samples, plus two unlabelled images, shared by the client tests."""

from __future__ import annotations

import pytest
import requests
from BreastLabLib.client import BreastLabClient

from breastlab.server.datastore.studies import import_dataset

from tests.server_process import Server

UNLABELLED = {"unlabelled_a": "case003", "unlabelled_b": "case007"}


@pytest.fixture(scope="session")
def unlabelled() -> dict[str, str]:
    """Image ids uploaded without a label, and the sample case each one copies."""
    return UNLABELLED


@pytest.fixture(scope="session")
def server(tmp_path_factory, samples):
    workdir = tmp_path_factory.mktemp("slicer_client_server")
    import_dataset(samples, workdir / "studies")
    srv = Server(workdir / "studies", workdir).start()
    for image_id, case in UNLABELLED.items():
        data = (samples / "images" / f"{case}.png").read_bytes()
        response = requests.put(f"{srv.url}/datastore/image", params={"image": image_id},
                                files={"file": ("upload.png", data, "image/png")}, timeout=30)
        response.raise_for_status()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server) -> BreastLabClient:
    return BreastLabClient(server.url)
