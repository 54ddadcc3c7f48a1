"""Hostile JSON from an outside attack on a running server (issue 41, rows 1-5), each reproduced against a real server
or, for what no request can reach, the datastore itself (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests
from fastapi import HTTPException

from breastlab.formats.png import write_png
from breastlab.server.datastore import index
from breastlab.server.datastore.local import BreastLabDatastore
from breastlab.server.datastore.studies import import_dataset

from helpers import MODEL, SAMPLES, png_bytes, sample_server
from tests.server_process import Server

pytestmark = pytest.mark.slow
MEDSAM = "breast_us_medsam"
LONE_SURROGATE = json.dumps({"note": "\ud800"})  # '{"note": "\\ud800"}': ASCII text that parses to a lone surrogate
OVER_4300_DIGITS = "1" + "0" * 4300
TEN_TO_400 = "1" + "0" * 400


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sample_server(tmp_path_factory.mktemp("attacks_json")) as srv:
        yield srv


def nested(depth: int):
    """A value nested ``depth`` levels deep, counted as the server counts (``{"x": 1}`` is 2 deep)."""
    return 1 if depth == 1 else {"x": nested(depth - 1)}


def many_keys(count: int, prefix: str) -> str:
    return json.dumps({f"{prefix}{i}": i for i in range(count)})


def image_info(server, image: str) -> dict:
    return requests.get(f"{server.url}/datastore/image/info", params={"image": image}, timeout=30).json()


def put_info(server, image: str, text: str) -> requests.Response:
    return requests.put(f"{server.url}/datastore/image/info", params={"image": image}, data={"info": text}, timeout=30)


def put_label(server, image: str, params: str, tag: str = "final") -> requests.Response:
    info = image_info(server, image)
    mask = png_bytes(np.zeros((info["height"], info["width"]), np.uint8))
    return requests.put(f"{server.url}/datastore/label", params={"image": image, "tag": tag}, data={"params": params},
                        files={"label": ("l.png", mask, "image/png")}, timeout=30)


def listing(server) -> dict:
    response = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30)
    assert response.status_code == 200
    return json.loads(response.text)["objects"]  # the whole stream parses: no entry cut it off


def test_info_over_the_bounds_once_merged_gets_422_and_nothing_is_stored(server):
    response = put_info(server, "case005", many_keys(4095, "w"))  # 4,096 values as sent, more once merged
    assert response.status_code == 422 and "image info of 'case005'" in response.json()["detail"], response.text
    assert put_info(server, "case005", many_keys(1500, "a")).status_code == 200
    assert put_info(server, "case005", many_keys(1500, "b")).status_code == 200
    assert put_info(server, "case005", many_keys(1500, "c")).status_code == 422  # each PUT alone is fine
    info = image_info(server, "case005")
    assert "a1499" in info and "b1499" in info and "c0" not in info and "w0" not in info
    label = put_label(server, "case005", many_keys(4095, "p"), tag="wide")  # the server adds ts and name
    assert label.status_code == 422 and "label 'wide'" in label.json()["detail"], label.text
    assert "wide" not in listing(server)["case005"]["labels"]
    assert not (Path(server.studies) / "labels" / "wide" / "case005.png").exists()


def test_info_accepted_before_a_restart_is_all_there_after_it(tmp_path):
    studies = tmp_path / "studies"
    import_dataset(SAMPLES, studies)
    info = {"class": "malignant", "birads": "4c", "deep": nested(7)}  # the info nests 8 deep, the most accepted
    first = Server(studies, tmp_path / "run1").start()
    try:
        assert put_info(first, "case002", json.dumps(info)).status_code == 200
        assert put_label(first, "case002", json.dumps({"sent": nested(5)})).status_code == 200  # 6 deep
        response = requests.put(f"{first.url}/datastore/label/info", params={"label": "case002", "tag": "final"},
                                data={"info": json.dumps({"more": nested(6)})}, timeout=30)  # 7 deep
        assert response.status_code == 200, response.text
    finally:
        first.stop()
    restarted = Server(studies, tmp_path / "run2").start()
    try:
        kept = image_info(restarted, "case002")
        assert (kept["class"], kept["birads"], kept["deep"]) == ("malignant", "4c", nested(7))
        label = listing(restarted)["case002"]["labels"]["final"]["info"]
        assert label["sent"] == nested(5) and label["more"] == nested(6)
        assert "left out" not in restarted.log.read_text() and not index.quarantine_of(studies / "datastore_v2.json"
                                                                                        ).exists()
    finally:
        restarted.stop()


def hostile_requests(server, text: str) -> dict[str, requests.Response]:
    """``text`` sent as each kind of JSON a client sends: image and label info, upload, label and inference params,
    JSON bodies."""
    post_json = {"data": text, "headers": {"Content-Type": "application/json"}, "timeout": 30}
    return {
        "image info": put_info(server, "case003", text),
        "label info": requests.put(f"{server.url}/datastore/label/info", params={"label": "case001", "tag": "final"},
                                   data={"info": text}, timeout=30),
        "upload params": requests.put(f"{server.url}/datastore/image", params={"image": "hostile"},
                                      data={"params": text}, timeout=30,
                                      files={"file": ("x.png", png_bytes(np.zeros((32, 32), np.uint8)), "image/png")}),
        "label params": put_label(server, "case003", text, tag="hostile"),
        "infer params": requests.post(f"{server.url}/infer/{MODEL}", params={"image": "case003", "output": "json"},
                                      data={"params": text}, timeout=60),
        "activelearning body": requests.post(f"{server.url}/activelearning/random", **post_json),
        "train body": requests.post(f"{server.url}/train/{MODEL}", **post_json),
    }


@pytest.mark.parametrize("text, message", [
    (LONE_SURROGATE, "lone surrogate"),
    ('{"key\\udc00": 1}', "lone surrogate"),
    ('{"n": ' + OVER_4300_DIGITS + "}", "at most 100 digits"),
    ('{"deep": [[' + OVER_4300_DIGITS + "]]}", "at most 100 digits"),
    ('{"n": 1e400}', "finite"),
    ('{"n": -Infinity}', "finite"),
])
def test_surrogates_and_numbers_that_are_no_float_get_400_everywhere(server, text, message):
    before = listing(server)
    for route, response in hostile_requests(server, text).items():
        assert response.status_code == 400 and message in response.json()["detail"], (route, response.text)
    assert listing(server) == before and "hostile" not in before
    assert put_info(server, "case003", '{"reviewer": "after"}').status_code == 200


@pytest.mark.parametrize("path, params", [
    (f"/infer/{MEDSAM}", {"roi": [TEN_TO_400, 0, 10, 10]}),
    (f"/infer/{MEDSAM}", {"foreground": [[TEN_TO_400, 1]]}),
    (f"/train/{MODEL}", {"max_epochs": TEN_TO_400}),
    (f"/train/{MODEL}", {"learning_rate": "1e400"}),
    ("/datastore/image/info", {"probabilities": {"benign": TEN_TO_400}}),
    ("/datastore/image/info", {"probabilities": {"benign": "1e400"}}),
])
def test_numbers_too_large_for_a_float_get_400_not_an_overflow(server, path, params):
    text = json.dumps(params).replace(f'"{TEN_TO_400}"', TEN_TO_400).replace('"1e400"', "1e400")
    if path.startswith("/train"):
        response = requests.post(server.url + path, data=text, headers={"Content-Type": "application/json"},
                                 timeout=30)
    elif path.startswith("/infer"):
        response = requests.post(server.url + path, params={"image": "case002", "output": "json"},
                                 data={"params": text}, timeout=60)
    else:
        response = requests.put(server.url + path, params={"image": "case002"}, data={"info": text}, timeout=30)
    assert response.status_code == 400 and "numbers must be finite" in response.json()["detail"], response.text


@pytest.mark.parametrize("params", [{"box": [10, 10, 50, 50]}, {"points": [[20, 20]]}, {"point_labels": [1]},
                                    {"roi": [10, 10, 50, 50], "box": [0, 0, 1, 1]}])
def test_prompt_keys_the_server_computes_cannot_be_sent(server, params):
    response = requests.post(f"{server.url}/infer/{MEDSAM}", params={"image": "case002", "output": "json"},
                             data={"params": json.dumps(params)}, timeout=60)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"params may not set {next(k for k in params if k != 'roi')}" in detail and "roi [x0, y0, x1, y1]" in detail


def test_an_entry_the_index_cannot_read_back_is_refused_before_anything_is_stored(tmp_path, monkeypatch):
    monkeypatch.setattr(index, "COMPACT_AFTER", 2)  # the journal is folded into the snapshot at every other write
    write_png(np.zeros((32, 40), np.uint8), tmp_path / "a.png")
    store = BreastLabDatastore(str(tmp_path))
    for info in ({"note": "\ud800"}, {"n": 10**400}, {"deep": nested(8)}):  # what no route lets through
        with pytest.raises(HTTPException) as refused:
            store.update_image_info("a", info)
        assert refused.value.status_code == 422 and "not stored" in refused.value.detail
        assert set(info).isdisjoint(store.get_image_info("a"))
    for n in range(3):
        store.update_image_info("a", {"class": "benign", "n": n})
    assert json.loads("".join(store.listing()))["objects"]["a"]["image"]["info"]["n"] == 2
    assert index.read_index(tmp_path / "datastore_v2.json", "", "").objects["a"].image.info["n"] == 2
    assert BreastLabDatastore(str(tmp_path)).get_image_info("a")["class"] == "benign"
