"""Issue 41: stock routes, weights over HTTP, races, temp files and body limits, against a real server (slow)."""

from __future__ import annotations

import http.client
import io
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch
from fastapi import HTTPException

from breastlab.bundle import get_bundle
from breastlab.server.datastore import export
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.studies import import_dataset
from breastlab.server.http import errors, stock_routes

from helpers import MODEL, SAMPLES, infer, sample_server, upload
from tests.server_process import Server

pytestmark = pytest.mark.slow
LIMIT_MB = 16
PRIVATE_TEMP = Path(".breastlab") / "tmp"


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("routes_server_tmp")


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_tmp):
    env = {"TMPDIR": str(server_tmp), "BREASTLAB_MAX_UPLOAD_MB": str(LIMIT_MB)}
    with sample_server(tmp_path_factory.mktemp("routes"), env) as srv:
        for n, image in enumerate(sorted((SAMPLES / "images").glob("*.png"))[:4]):  # work for a scoring job
            assert upload(srv, f"unlabelled{n}", image.read_bytes()).ok
        yield srv


def weights_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def put_model(server, data: bytes) -> requests.Response:
    return requests.put(f"{server.url}/model/{MODEL}", files={"file": ("m.pt", data, "a/b")}, timeout=120)


def test_an_export_leaves_out_an_image_deleted_while_it_is_written(tmp_path, monkeypatch):
    """Row 9: the export read each id from the live index (KeyError, 500)."""
    import_dataset(SAMPLES, tmp_path / "studies")
    store = BreastLabDatastore(str(tmp_path / "studies"))
    as_case = export.as_case

    def delete_meanwhile(*args):
        if store.objects.get("case008"):
            store.remove_image("case008")  # after the export listed the ids, before it reads case008's entry
        return as_case(*args)

    monkeypatch.setattr(export, "as_case", delete_meanwhile)
    archive = Path(store.get_dataset_archive())
    try:
        names = zipfile.ZipFile(archive).namelist()
    finally:
        archive.unlink()
    assert "images/case007.png" in names and "images/case008.png" not in names


def test_a_label_saved_while_its_image_is_deleted_gets_404(tmp_path, monkeypatch):
    """Row 14: the size check opened the deleted image (FileNotFoundError, 500)."""
    import_dataset(SAMPLES, tmp_path / "studies")
    store = BreastLabDatastore(str(tmp_path / "studies"))
    read_upload = errors.read_upload

    def delete_meanwhile(*args, **kwargs):
        store.remove_image("case002")  # after the image was found, before its size is read
        return read_upload(*args, **kwargs)

    monkeypatch.setattr(errors, "read_upload", delete_meanwhile)
    with pytest.raises(HTTPException) as raised:
        store.save_label("case002", str(SAMPLES / "masks" / "case002.png"), "final", {})
    assert raised.value.status_code == 404


def test_weights_swapped_under_running_inferences_never_fail_one(server):
    """Row 10: the upload's check re-parsed the config an inference was using; a delete pulled its file."""
    shipped = get_bundle(MODEL).model_path.read_bytes()
    statuses: list[int] = []
    deadline = time.monotonic() + 20
    stop = threading.Event()

    def infer_until_stopped():
        while not stop.is_set() and time.monotonic() < deadline:
            statuses.append(infer(server, "case002").status_code)

    with ThreadPoolExecutor(3) as pool:
        clients = [pool.submit(infer_until_stopped) for _ in range(3)]
        swaps = []
        while time.monotonic() < deadline - 5 and len(swaps) < 24:
            swaps.append(put_model(server, shipped).status_code)
            swaps.append(requests.delete(f"{server.url}/model/{MODEL}", timeout=60).status_code)
        stop.set()
        for client in clients:
            client.result()
    assert set(swaps) == {200} and statuses and set(statuses) == {200}, (swaps, statuses)


def test_deletes_racing_a_put_of_the_same_weights_get_200_or_404(server):
    """Row 11: the upload read back a file a delete had removed (FileNotFoundError, 500)."""
    shipped = get_bundle(MODEL).model_path.read_bytes()
    with ThreadPoolExecutor(2) as pool:
        for _ in range(4):
            put = pool.submit(put_model, server, shipped)
            deletes = [pool.submit(requests.delete, f"{server.url}/model/{MODEL}", timeout=60) for _ in range(2)]
            while not put.done():  # deletes all through the upload's check, swap and answer
                deletes += [pool.submit(requests.delete, f"{server.url}/model/{MODEL}", timeout=60)]
                deletes[-1].result()
            codes = {put.result().status_code, *(d.result().status_code for d in deletes)}
            assert codes <= {200, 404}, codes


def test_weights_that_are_not_finite_are_refused_and_extra_tensors_are_not_stored(server):
    """Rows 11, 19: NaN weights broke every inference; a checkpoint's other contents were stored too."""
    state = torch.load(get_bundle(MODEL).model_path, weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    for bad in (float("nan"), float("inf")):
        response = put_model(server, weights_bytes({**state, name: torch.full_like(state[name], bad)}))
        assert response.status_code == 422 and name in response.json()["detail"], response.text
    assert infer(server, "case002").json()["weights"]["file"] != f"{MODEL}.pt"
    padded = weights_bytes({"model": state, "pad": torch.zeros(2**20)})  # 4 MB more than the network holds
    assert put_model(server, padded).status_code == 200
    stored = server.app_dir / "model" / f"{MODEL}.pt"
    assert stored.stat().st_size < len(padded) - 2**21
    assert all(torch.equal(v, state[k]) for k, v in torch.load(stored, weights_only=True).items())
    assert infer(server, "case002").status_code == 200
    assert requests.delete(f"{server.url}/model/{MODEL}", timeout=60).status_code == 200


def task_count(server, kind: str) -> int:
    response = requests.get(f"{server.url}/{kind}/", params={"all": True}, timeout=30)
    return len(response.json()) if response.status_code == 200 else 0  # 404: none yet


@pytest.mark.parametrize("path", ["/scoring/", "/train/", "/scoring/?run_sync=true", "/train/?run_sync=true"])
def test_stock_routes_that_run_every_method_or_trainer_answer_404(server, path):
    """Row 12: these queued every method or trainer past the cap and checks (run_sync: on the event loop)."""
    kind = path.split("/")[1]
    before = task_count(server, kind)
    response = requests.post(server.url + path, json={"max_epochs": 0}, timeout=300)
    assert response.status_code == 404, response.text
    assert task_count(server, kind) == before


@pytest.mark.parametrize("run_sync", [False, True])
def test_scoring_params_cannot_set_the_method(server, run_sync):
    """Row 13: MONAI Label merges params into the request, replacing the path's method."""
    response = requests.post(f"{server.url}/scoring/uncertainty", params={"run_sync": run_sync}, timeout=60,
                             json={"method": "diversity", "model": MODEL})
    assert response.status_code == 422 and "method" in response.json()["detail"], response.text


def test_in_process_jobs_take_turns():
    """Row 13: run_sync scoring had no lock."""
    with stock_routes.in_process():
        with pytest.raises(HTTPException) as raised, stock_routes.in_process():
            pass
    assert raised.value.status_code == 409
    with stock_routes.in_process():  # released
        pass


def test_run_sync_scorings_at_once_take_turns_and_show_no_server_path(server):
    """Rows 13, 18: four run_sync scorings ran at once; the result named the index by its server path."""
    with ThreadPoolExecutor(3) as pool:
        calls = [pool.submit(requests.post, f"{server.url}/scoring/uncertainty", params={"run_sync": True},
                             json={"model": MODEL}, timeout=300) for _ in range(3)]
        responses = [call.result() for call in calls]
    codes = sorted(r.status_code for r in responses)
    assert codes[0] == 200 and set(codes) <= {200, 409} and 409 in codes, [r.text for r in responses]
    result = next(r for r in responses if r.status_code == 200)
    assert result.json()["scored"] == 4 and result.json()["index"] == ".breastlab/scores/uncertainty.json"
    assert str(Path(server.studies).resolve()) not in result.text


@pytest.mark.parametrize("path", ["/ohif/%2e%2e", "/ohif/%2e", "/ohif/", "/ohif/index.html"])
def test_the_ohif_viewer_is_not_offered_without_a_pacs(server, path):
    """Row 15: the stock route handed a directory to FileResponse (500). The viewer reads a PACS (test_viewer.py)."""
    response = requests.get(server.url + path, timeout=30)
    assert response.status_code == 404 and "reads a PACS" in response.json()["detail"]


def test_errors_carry_no_server_path(server):
    """Row 18: upload errors and the missing-log 404 named server paths."""
    root = str(Path(server.studies).resolve())
    for data in (b"garbage", b"\x89PNG\r\n\x1a\n" + bytes(100)):
        response = upload(server, "garbage", data)
        assert response.status_code == 400 and root not in response.text and "/tmp" not in response.text
    log = server.app_dir / "logs" / "app.log"
    log.rename(log.with_name("app.log.moved"))
    try:
        response = requests.get(f"{server.url}/logs/", timeout=30)
    finally:
        log.with_name("app.log.moved").rename(log)
    assert response.status_code == 404 and str(server.app_dir.parent) not in response.text


def test_a_body_over_the_limit_gets_413_and_never_reaches_the_disk(server, server_tmp):
    """Row 19: a body of any size was spooled to disk before a handler ran."""
    private = Path(server.studies) / ".breastlab"
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("PUT", f"/model/{MODEL}")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(1_500_000_000))
    connection.endheaders(b"--x\r\n")
    declared = connection.getresponse()
    assert declared.status == 413 and "at most" in declared.read().decode()
    connection.close()

    def chunks():  # no Content-Length: counted as it arrives
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        for _ in range(LIMIT_MB + 4):
            yield bytes(2**20)

    try:
        streamed = requests.put(f"{server.url}/datastore/image", params={"image": "big"}, data=chunks(),
                                headers={"Content-Type": "multipart/form-data; boundary=x"}, timeout=60)
        assert streamed.status_code == 413
    except requests.ConnectionError:  # the server may close the connection while the client still sends
        pass
    assert not list(server_tmp.iterdir()) and not list((private / "uploads").glob("*"))
    assert not [p for p in (private / "tmp").rglob("*") if p.is_file()]
    assert requests.get(f"{server.url}/datastore/image/info", params={"image": "big"}, timeout=30).status_code == 404


def test_no_temp_file_outlives_a_kill_and_restart(tmp_path):
    """Row 16: exports' temp files stayed in the system temp folder after a kill; no start-up removed them."""
    studies, system_tmp = tmp_path / "studies", tmp_path / "system_tmp"
    system_tmp.mkdir()
    import_dataset(SAMPLES, studies)
    first = Server(studies, tmp_path / "first", env={"TMPDIR": str(system_tmp)}).start()
    try:
        exports = [requests.get(f"{first.url}/datastore/dataset", stream=True, timeout=60) for _ in range(2)]
        assert all(export.status_code == 200 for export in exports)
        assert requests.get(f"{first.url}/info/", timeout=30).status_code == 200
        assert requests.post(f"{first.url}/scoring/uncertainty", params={"run_sync": True}, json={"model": MODEL},
                             timeout=300).status_code == 200
        stale = studies / PRIVATE_TEMP / "tmpkilled"  # what a kill during an export leaves: its folder and zip
        (stale / "dataset" / "images").mkdir(parents=True)
        (stale / "dataset" / "images" / "case001.png").write_bytes(b"x")
        (studies / PRIVATE_TEMP / "tmpkilled.zip").write_bytes(b"PK")
        first.process.kill()  # kill -9: no clean-up runs
        first.process.wait()
        for export in exports:
            export.close()
    finally:
        first.stop()
    second = Server(studies, tmp_path / "second", env={"TMPDIR": str(system_tmp)}).start()
    try:
        assert infer(second, "case002").status_code == 200
        assert not list((studies / PRIVATE_TEMP).iterdir()) and not list(system_tmp.iterdir())
    finally:
        second.stop()
