"""The web viewer in PACS mode, over HTTP: OHIF's build served from its own folder only, BreastLab's read-only
configuration, and a DICOMweb pass-through that reaches the configured PACS's studies and nothing else. Uses the
session's Orthanc and server (conftest.py); changes nothing in the PACS."""

from __future__ import annotations

import pytest
import requests

from orthanc import missing

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=str(missing()))]
PROXY = "/proxy/dicom/dicomweb"


def get(server, path: str, **kwargs) -> requests.Response:
    return requests.get(server.url + path, timeout=60, **kwargs)


def test_ohif_files_load_from_subfolders_and_routes_get_the_app(pacs_server):
    assert get(pacs_server, "/ohif/assets/favicon.ico").headers["content-type"] == "image/x-icon"  # stock: index.html
    for route in ("/ohif/", "/ohif/viewer", "/ohif/segmentation"):
        page = get(pacs_server, route, params={"StudyInstanceUIDs": "1.2.3"})
        assert page.status_code == 200 and "<title>" in page.text and "/ohif/app-config.js" in page.text
    config = get(pacs_server, "/ohif/app-config.js").text
    assert f"wadoRoot: '{PROXY}'" in config and "dicomUploadEnabled: false" in config
    assert "supportsReject: false" in config


@pytest.mark.parametrize("path", ["/ohif/../../../etc/passwd", "/ohif/%2e%2e/%2e%2e/etc/passwd",
                                  "/ohif/..%2f..%2fapp.py", "/ohif/nothing.js", "/ohif/assets/../../ohif.py"])
def test_nothing_outside_the_build_is_served(pacs_server, path):
    response = requests.get(pacs_server.url + path, timeout=30)
    assert response.status_code == 404, response.text[:200]


def test_the_pass_through_answers_qido_and_wado_of_the_pacs(pacs, pacs_server):
    studies = get(pacs_server, f"{PROXY}/studies", params={"limit": 100, "includefield": "00081030"})
    assert studies.status_code == 200 and studies.headers["content-type"].startswith("application/dicom+json")
    study = next(iter(pacs.cases.values()))[0]
    assert study.StudyInstanceUID in {s["0020000D"]["Value"][0] for s in studies.json()}
    metadata = get(pacs_server, f"{PROXY}/studies/{study.StudyInstanceUID}/series/{study.SeriesInstanceUID}/metadata")
    assert metadata.status_code == 200 and pacs.dicomweb not in metadata.text  # its URLs are the pass-through's
    instance = f"studies/{study.StudyInstanceUID}/series/{study.SeriesInstanceUID}/instances/{study.SOPInstanceUID}"
    frame = get(pacs_server, f"{PROXY}/{instance}/frames/1",
                headers={"Accept": "multipart/related; type=application/octet-stream"})
    assert frame.status_code == 200 and len(frame.content) >= study.Rows * study.Columns
    assert not {"set-cookie", "www-authenticate", "authorization"} & {k.lower() for k in frame.headers}


@pytest.mark.parametrize("path", [
    "http://127.0.0.1:1/studies", "//evil.example/studies", "studies/../../tools/find", "studies/%2e%2e/%2e%2e/system",
    "studies%2F..%2F..%2Fsystem", "../instances", "tools/find", "instances", "patients", "studies/1.2/series/x",
    "studies/1.2.3/series/4.5/instances/6.7/bulk/../../../../system", "studies/1.2;x=1"])
def test_escapes_from_the_pass_through_are_refused(pacs_server, path):
    response = requests.get(f"{pacs_server.url}{PROXY}/{path}", timeout=30)
    assert response.status_code in (400, 404), (path, response.status_code, response.text[:200])


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_the_pass_through_is_read_only(pacs_server, method):
    response = getattr(requests, method)(f"{pacs_server.url}{PROXY}/studies", data=b"x", timeout=30)
    assert response.status_code == 405
