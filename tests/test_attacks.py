"""What an outside attack on a running server found (issue 18), each reproduced against a real server (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from breastlab.bundle import get_bundle
from breastlab.data import Case, write_dataset
from breastlab.formats.png import write_png
from breastlab.server.datastore.studies import import_dataset

from helpers import (
    MODEL,
    SAMPLES,
    deflated_dicom_bomb,
    dicom_bytes,
    infer,
    model_entry,
    png_bytes,
    sample_server,
    upload,
)
from tests.server_process import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tmpdir_of_server(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server_tmp")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tmpdir_of_server):
    with sample_server(tmp_path_factory.mktemp("attacks"), {"TMPDIR": str(tmpdir_of_server)}) as srv:
        yield srv


def infer_with(server, params: dict, **query) -> requests.Response:
    return requests.post(f"{server.url}/infer/{MODEL}", params={"image": "case002", "output": "json", **query},
                         data={"params": json.dumps(params)}, timeout=120)


@pytest.mark.parametrize("params", [{"image": "/etc/passwd"}, {"image": str(SAMPLES / "images" / "case001.png")},
                                    {"model": "breast_us_lanet"}, {"device": "meta"}, {"logging": 5},
                                    {"save_label": True}, {"model_filename": "../../x.pt"}])
def test_params_cannot_redirect_an_inference(server, params):
    response = infer_with(server, params)
    assert response.status_code == 422 and "params may not set" in response.json()["detail"]
    assert "/etc" not in response.text


def test_a_server_file_is_never_an_image(server, tmp_path):
    dicom = tmp_path / "x.dcm"
    dicom.write_bytes(dicom_bytes(np.zeros((32, 32), np.uint16)))
    (tmp_path / "x.dcm.png").write_bytes(b"precious")
    for image in ("/etc/passwd", str(dicom)):
        response = requests.post(f"{server.url}/infer/{MODEL}", params={"image": image, "output": "json"}, timeout=60)
        assert response.status_code == 404 and "not in the datastore" in response.json()["detail"]
    assert (tmp_path / "x.dcm.png").read_bytes() == b"precious"
    assert infer(server, "case002").status_code == 200


@pytest.mark.parametrize("method, path", [("post", f"/infer/wsi_v2/{MODEL}?image=/etc/passwd"),
                                          ("post", f"/batch/infer/{MODEL}"), ("post", "/batch/infer/nosuch"),
                                          ("put", "/session/?uncompress=true"), ("get", "/logs/gpu"),
                                          ("get", "/proxy/dicom/x"), ("post", "/proxy/dicom/stow/studies")])
def test_routes_breastlab_does_not_offer_answer_404(server, method, path):
    response = getattr(requests, method)(server.url + path, timeout=30)
    assert response.status_code == 404 and "not offered" in response.json()["detail"]


def test_deeply_nested_info_and_params_get_400_and_nothing_is_stored(server):
    deep: dict = {}
    for _ in range(250):
        deep = {"x": deep}
    response = requests.put(f"{server.url}/datastore/image/info", params={"image": "case003"},
                            data={"info": json.dumps(deep)}, timeout=30)
    assert response.status_code == 400 and "nests deeper" in response.json()["detail"]
    very_deep = "[" * 5000 + "]" * 5000
    for response in (requests.put(f"{server.url}/datastore/image/info", params={"image": "case003"},
                                  data={"info": '{"a": ' + very_deep + "}"}, timeout=30),
                     infer_with(server, {"foreground": json.loads("[" * 900 + "]" * 900)})):
        assert response.status_code in (400, 422), response.text
    info = requests.get(f"{server.url}/datastore/image/info", params={"image": "case003"}, timeout=30).json()
    assert "x" not in info and "a" not in info


def test_a_server_starts_on_an_index_with_an_entry_it_cannot_take(tmp_path):
    studies = tmp_path / "studies"
    import_dataset(SAMPLES, studies)
    index = json.loads((studies / "datastore_v2.json").read_text())
    deep: dict = {}
    for _ in range(300):
        deep = {"x": deep}
    index["objects"]["case001"]["image"]["info"]["nested"] = deep
    (studies / "datastore_v2.json").write_text(json.dumps(index))
    case003 = {**index["objects"]["case003"], "labels": {"final": {"ext": ".png", "info": {"n": "HUGE"}}}}
    with open(studies / "datastore_v2.json.journal", "a") as journal:  # a number no float holds; a torn line
        journal.write(json.dumps({"id": "case003", "entry": case003}).replace('"HUGE"', "9" * 5000) + '\n{"id": "ca')
    server = Server(studies, tmp_path).start()
    try:
        listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()
        assert len(listing["objects"]) == 6  # case001 and case003 re-indexed from their files, without the bad info
        assert listing["objects"]["case002"]["image"]["info"]["class"] == index["objects"]["case002"]["image"][
            "info"]["class"]
        assert infer(server, "case001").status_code == 200
        quarantine = studies / "datastore_v2.json.quarantine"
        kept = [json.loads(line) for line in quarantine.read_text().splitlines()]
        assert [record["id"] for record in kept] == [None, "case001", "case003"]  # the journal's lines are read first
        assert kept[0]["line"] == '{"id": "ca' and kept[1]["entry"]["image"]["info"]["nested"] == deep
        assert kept[2]["entry"]["labels"]["final"]["info"]["n"] == "9" * 5000  # the refused number, as its text
        assert str(quarantine) in server.log.read_text()
    finally:
        server.stop()


def test_rejected_uploads_exports_and_inferences_leave_no_temp_files(server, tmpdir_of_server):
    before = set(tmpdir_of_server.iterdir())
    big_garbage = b"\x89PNG\r\n\x1a\n" + bytes(2_000_000)
    assert upload(server, "junk", big_garbage).status_code == 400
    assert upload(server, "rgb", png_bytes(np.zeros((32, 32, 3), np.uint8))).status_code == 415
    assert requests.put(f"{server.url}/datastore/label", params={"image": "case002"},
                        files={"label": ("l.png", png_bytes(np.zeros((20, 20), np.uint8)), "image/png")},
                        timeout=30).status_code == 422
    assert requests.put(f"{server.url}/datastore/label", params={"image": "nosuch"},
                        files={"label": ("l.png", b"x", "image/png")}, timeout=30).status_code == 404
    export = requests.get(f"{server.url}/datastore/dataset", timeout=60)
    assert export.status_code == 200 and export.content[:2] == b"PK"
    for output in ("json", "image", "all"):
        assert infer(server, "case002", output=output).status_code == 200
    assert requests.post(f"{server.url}/infer/{MODEL}", params={"output": "json"}, timeout=60,
                         files={"file": ("x.png", b"garbage", "image/png")}).status_code == 400
    assert set(tmpdir_of_server.iterdir()) == before
    assert requests.get(f"{server.url}/datastore/dataset", params={"limit_cases": -1}, timeout=30).status_code == 422


def test_a_dataset_export_leaves_out_cases_deleted_meanwhile(tmp_path):
    write_png(np.zeros((16, 16), np.uint8), tmp_path / "a.png")
    cases = [Case("a", tmp_path / "a.png", None, "normal", "train", {}),
             Case("gone", tmp_path / "gone.png", None, "benign", "train", {})]
    root = write_dataset(tmp_path / "out", cases)
    assert [p.name for p in (root / "images").iterdir()] == ["a.png"]
    assert "gone" not in (root / "manifest.csv").read_text()


def test_model_weights_over_http_are_validated_and_never_replace_the_shipped(server, tmp_path):
    shipped = get_bundle(MODEL).model_path
    shipped_bytes = shipped.read_bytes()
    garbage = requests.put(f"{server.url}/model/{MODEL}", files={"file": ("m.pt", b"not weights", "a/b")}, timeout=60)
    assert garbage.status_code == 422 and "not weights of" in garbage.json()["detail"]
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "other.pt")
    other = requests.put(f"{server.url}/model/{MODEL}", files={"file": ("m.pt", (tmp_path / "other.pt").read_bytes(),
                                                                          "a/b")}, timeout=60)
    assert other.status_code == 422
    assert infer(server, "case002").status_code == 200
    assert requests.delete(f"{server.url}/model/{MODEL}", timeout=30).status_code == 404  # no fine-tuned weights
    assert shipped.read_bytes() == shipped_bytes and not list(shipped.parent.glob("*.deleted"))
    good = requests.put(f"{server.url}/model/{MODEL}", files={"file": ("m.pt", shipped_bytes, "a/b")}, timeout=60)
    assert good.status_code == 200 and good.json()["checksum"].startswith("sha256:")
    served, own = (torch.load(p, weights_only=True) for p in (server.app_dir / "model" / f"{MODEL}.pt", shipped))
    assert served.keys() == own.keys() and all(v.dtype == own[k].dtype and torch.equal(v, own[k])
                                               for k, v in served.items())  # the network's tensors, as uploaded
    answer = infer(server, "case002").json()
    assert answer["weights"]["file"] == f"{MODEL}.pt"
    assert "sha256:" + answer["model"]["weights_sha256"] == good.json()["checksum"]  # of the weights stored
    assert requests.delete(f"{server.url}/model/{MODEL}", timeout=30).status_code == 200
    assert infer(server, "case002").json()["model"] == model_entry(MODEL)  # the shipped weights again
    assert not (server.app_dir / "model" / f"{MODEL}.pt").exists() and shipped.read_bytes() == shipped_bytes
    assert requests.put(f"{server.url}/model/nosuch", files={"file": ("m.pt", b"x", "a/b")}, timeout=30
                        ).status_code == 404


@pytest.mark.parametrize("method, path, kwargs, expected", [
    ("head", "/datastore/image?image=case002&check_sum=md5:abc", {}, 404),
    ("head", "/datastore/image?image=case002&check_sum=nosuch:abc", {}, 422),
    ("head", "/datastore/image?image=case002", {}, 200),
    ("put", "/datastore/updatelabelinfo?label=case002&tag=final", {"data": {"params": "{bad json"}}, 400),
    ("put", "/datastore/", {"files": {"file": ("a" * 300 + ".png", b"x", "image/png")}}, 400),
    ("post", "/activelearning/uncertainty", {"data": '{"top_k": 1e400}',
                                             "headers": {"Content-Type": "application/json"}}, 400),
    ("post", "/scoring/uncertainty", {"json": {"model": [MODEL]}}, 404),
    ("post", f"/infer/{MODEL}?image=case002&output=dicom_seg", {}, 422),
    ("post", f"/infer/{MODEL}?image=case002&session_id=x", {}, 422),
    ("post", "/infer/breast_us_interactive?image=case002&output=json",
     {"data": {"params": json.dumps({"foreground": [[10 ** 30, 1]]})}}, 422),
])
def test_requests_that_got_a_500_get_a_clear_4xx(server, method, path, kwargs, expected):
    response = getattr(requests, method)(server.url + path, timeout=60, **kwargs)
    assert response.status_code == expected, response.text
    assert requests.get(f"{server.url}/info/", timeout=10).status_code == 200


def test_an_image_uploaded_again_under_its_id_loses_its_old_labels_on_disk_too(server):
    assert upload(server, "again", png_bytes(np.zeros((32, 40), np.uint8))).status_code == 200
    label = requests.put(f"{server.url}/datastore/label", params={"image": "again"}, timeout=30,
                         files={"label": ("l.png", png_bytes(np.ones((32, 40), np.uint8)), "image/png")})
    assert label.status_code == 200
    label_file = Path(server.studies) / "labels" / "final" / "again.png"
    assert label_file.is_file()
    assert upload(server, "again", png_bytes(np.zeros((48, 48), np.uint8))).status_code == 200
    listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()
    assert listing["objects"]["again"]["labels"] == {} and not label_file.exists()


def test_a_small_png_declaring_a_huge_image_is_refused_before_decoding(server):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buffer, "PNG", optimize=True)
    assert len(buffer.getvalue()) < 200_000
    response = upload(server, "bomb", buffer.getvalue())
    assert response.status_code == 415 and "million values" in response.json()["detail"]
    response = requests.post(f"{server.url}/infer/{MODEL}", params={"output": "json"}, timeout=60,
                             files={"file": ("x.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 415


def test_a_small_deflated_dicom_declaring_a_huge_image_is_refused_before_inflating(server):
    bomb = deflated_dicom_bomb(8192, 8192)  # 400 MB inflated: took one request to 4 GB of server memory
    response = upload(server, "dicombomb", bomb, "x.dcm")
    assert response.status_code == 415 and "inflates to more than" in response.json()["detail"]


@pytest.mark.parametrize("params", [{"model": "breast_us_lanet"}, {"max_epochs": -1}, {"max_epochs": "abc"},
                                    {"batch_size": 0}, {"learning_rate": "nan"}, {"max_epochs": 2.5}])
def test_bad_training_params_get_422_before_anything_runs(server, params):
    response = requests.post(f"{server.url}/train/{MODEL}", json=params, timeout=30)
    assert response.status_code == 422, response.text
    assert "RUNNING" not in requests.get(f"{server.url}/train/", timeout=30).text


HOSTILE = ["../etc/passwd", "/etc/passwd", "a" * 300, "\x00", "-1", "1e400", "nosuch", "md5:abc", '{"a": ' * 200]


def test_every_route_of_the_openapi_answers_hostile_input_without_a_5xx(server):
    spec = requests.get(f"{server.url}/openapi.json", timeout=30).json()
    failures = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            for value in HOSTILE:
                url = server.url + path.replace("{", "").replace("}", "")
                for name in (p["name"] for p in operation.get("parameters", []) if p["in"] == "path"):
                    url = url.replace(name, requests.utils.quote(value, safe=""))
                form = {"params": value, "info": value}
                files = {"file": ("x.png", b"garbage", "image/png"), "label": ("l.png", b"garbage", "image/png")}
                response = requests.request(method, url, params={n: value for n in names},
                                            data=form if method in ("post", "put") else None,
                                            files=files if method == "put" else None, timeout=120)
                if response.status_code >= 500:
                    failures.append(f"{method.upper()} {path} {value[:20]!r}: {response.status_code}")
    assert not failures, failures
    assert requests.get(f"{server.url}/info/", timeout=10).status_code == 200


def test_json_bodies_are_bounded_and_unknown_image_info_is_404(server):
    huge = "{" + '"k": "' + "x" * 2_000_000 + '"}'
    for path in ("/activelearning/random", "/scoring/uncertainty", f"/train/{MODEL}"):
        response = requests.post(server.url + path, data=huge, headers={"Content-Type": "application/json"},
                                 timeout=30)
        assert response.status_code == 413, (path, response.text[:200])
    assert requests.get(f"{server.url}/datastore/image/info", params={"image": "nosuch"}, timeout=30
                        ).status_code == 404
    for response in (requests.get(f"{server.url}/datastore/image/info", params={"image": "case002"}, timeout=30),
                     requests.post(f"{server.url}/activelearning/random", timeout=30),
                     requests.get(f"{server.url}/datastore/", params={"output": "train"}, timeout=30)):
        assert response.status_code == 200 and str(Path(server.studies).resolve()) not in response.text
    assert {"image": "case002.png", "label": "labels/final/case002.png"} in response.json()
