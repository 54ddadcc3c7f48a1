"""Reliability of the real server: fuzzed input, concurrent saves, SIGKILL mid-save, path tricks (slow)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from PIL import Image

from breastlab.formats.png import TEMP_MARK, read_gray_png, write_png
from breastlab.server.datastore.index import read_index

from fuzz_inputs import VALID_PNG, endpoints, files, ids, params
from helpers import MODEL, png_bytes, save_label, upload
from tests.server_process import Server

pytestmark = pytest.mark.slow
FUZZ_EXAMPLES = 1000


def studies_with_images(root, count: int, shape=(64, 80), prefix: str = "img") -> list[str]:
    """A studies folder of ``count`` random images (picked up by the server's reconciliation)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = [f"{prefix}{i:03d}" for i in range(count)]
    for name in names:
        write_png(rng.integers(0, 256, shape, dtype=np.uint8), root / f"{name}.png")
    return names


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reliability")
    studies_with_images(workdir / "studies", 16, prefix="conc")
    upload_target = workdir / "studies" / "fuzz_target.png"
    upload_target.write_bytes(VALID_PNG)
    srv = Server(workdir / "studies", workdir).start()
    yield srv
    srv.stop()


def send(server, endpoint: str, image_id: str, data: bytes, form: str) -> requests.Response:
    url, files_field = {"upload": ("/datastore/image", "file"), "label": ("/datastore/label", "label"),
                        "infer": (f"/infer/{MODEL}", "file"), "image_info": ("/datastore/image/info", None)}[endpoint]
    field = "info" if endpoint == "image_info" else "params"
    uploads = {files_field: ("fuzz.png", data, "application/octet-stream")} if files_field else None
    method = requests.post if endpoint == "infer" else requests.put
    query = {"output": "json"} if endpoint == "infer" else {"image": image_id}
    return method(server.url + url, params=query, data={field: form}, files=uploads, timeout=60)


def test_fuzzed_uploads_and_parameters_never_get_a_5xx(server):
    statuses: Counter = Counter()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(endpoint=endpoints, image_id=ids, data=files, form=params)
    def check(endpoint, image_id, data, form):
        response = send(server, endpoint, image_id, data, form)
        statuses[response.status_code] += 1
        assert response.status_code < 500, f"{endpoint} {image_id!r} {form!r}: {response.text[:500]}"

    check()
    print(f"fuzz statuses: {dict(statuses)}")
    assert sum(statuses.values()) >= FUZZ_EXAMPLES, statuses
    assert statuses[400] and statuses[415], statuses  # both kinds of rejection were exercised
    assert server.alive()
    listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30)
    assert "fuzz_target" in json.loads(listing.text)["objects"]  # every entry a fuzzed write left can be listed


def test_bad_json_parameters_get_400(server):
    for endpoint in ("upload", "label", "infer", "image_info"):
        response = send(server, endpoint, "fuzz_target", VALID_PNG, '{"a":')
        assert response.status_code == 400 and "not valid JSON" in response.json()["detail"], response.text
        response = send(server, endpoint, "fuzz_target", VALID_PNG, "[1, 2]")
        assert response.status_code == 400 and "JSON object" in response.json()["detail"], response.text


def stored_label(server, image_id: str) -> np.ndarray:
    response = requests.get(f"{server.url}/datastore/label", params={"label": image_id, "tag": "final"}, timeout=10)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_16_concurrent_label_saves_and_info_updates_lose_nothing(server):
    names = [f"conc{i:03d}" for i in range(16)]
    masks = {name: np.random.default_rng(i).integers(0, 2, (64, 80), dtype=np.uint8) for i, name in enumerate(names)}

    def label_and_classify(name: str) -> tuple[int, int]:
        saved = save_label(server, name, png_bytes(masks[name] * 255))
        info = requests.put(f"{server.url}/datastore/image/info", params={"image": name},
                            data={"info": json.dumps({"reviewer": name})}, timeout=30)
        return saved.status_code, info.status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(label_and_classify, names)) == {(200, 200)}

    listing = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=10).json()["objects"]
    on_disk = read_index(server.studies / "datastore_v2.json", "", "").model_dump()["objects"]  # snapshot + journal
    for name in names:
        for index in (listing, on_disk):
            assert "final" in index[name]["labels"] and index[name]["image"]["info"]["reviewer"] == name
        np.testing.assert_array_equal(stored_label(server, name), masks[name])


def test_16_concurrent_saves_of_one_image_keep_exactly_one_whole_label(server):
    masks = [np.triu(np.ones((64, 80), np.uint8), k) for k in range(-8, 8)]
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda m: save_label(server, "conc000", png_bytes(m * 255)).status_code, masks))
    assert statuses == [200] * 16
    stored = stored_label(server, "conc000")
    assert any(np.array_equal(stored, m) for m in masks)


@pytest.mark.parametrize("image_id", ["..", "../escape", "/etc/passwd", "a/b", "a\\b", "a\x00b", ".hidden",
                                      "x" * 300, " ", "%2e%2e%2f"])
def test_path_tricks_in_ids_are_rejected(server, image_id):
    image = png_bytes(np.zeros((64, 80), np.uint8))
    assert upload(server, image_id, image).status_code == 400
    assert save_label(server, image_id, image).status_code in (400, 404)
    assert requests.get(f"{server.url}/datastore/image", params={"image": image_id}, timeout=10).status_code == 404
    inferred = requests.post(f"{server.url}/infer/{MODEL}", params={"image": image_id}, timeout=30)
    assert inferred.status_code == 404, inferred.text


@pytest.mark.parametrize("tag", ["../../escape", "..", "/tmp/x", "a/b", "a\x00b"])
def test_path_tricks_in_label_tags_are_rejected(server, tag):
    response = save_label(server, "conc001", png_bytes(np.zeros((64, 80), np.uint8)), tag=tag)
    assert response.status_code == 400 and "invalid label tag" in response.json()["detail"]
    downloaded = requests.get(f"{server.url}/datastore/label", params={"label": "conc001", "tag": tag}, timeout=10)
    assert downloaded.status_code == 404


def test_path_tricks_in_uploaded_file_names_are_ignored(server):
    for name in ("../../../evil.png", "/etc/evil.png", "evil\x00.png", "x." + "y" * 300):
        files = {"file": (name, VALID_PNG, "image/png")}
        response = requests.put(f"{server.url}/datastore/image", params={"image": "named_upload"}, files=files,
                                timeout=10)
        assert response.status_code == 200, response.text
    assert not list(server.studies.parent.rglob("evil*"))


def test_a_server_killed_mid_save_restarts_consistent_and_keeps_acknowledged_labels(tmp_path):
    """Label saves and image info updates in turn, a kill -9 meanwhile: every acknowledged write is back after a
    restart, each label whole."""
    names = studies_with_images(tmp_path / "studies", 8, shape=(512, 512))
    srv = Server(tmp_path / "studies", tmp_path / "run1").start()
    acknowledged: dict[str, int] = {}
    info_acknowledged: dict[str, int] = {}
    sent: dict[str, list[int]] = {name: [] for name in names}
    killed = threading.Event()

    def mask(seq: int) -> np.ndarray:
        return np.random.default_rng(seq).integers(0, 2, (512, 512), dtype=np.uint8)

    def keep_saving(name: str) -> None:
        for seq in range(names.index(name) * 10**6, 10**9):  # each image's masks are its own
            sent[name].append(seq)
            try:
                if save_label(srv, name, png_bytes(mask(seq) * 255)).status_code == 200:
                    acknowledged[name] = seq
                info = {"class": ("benign", "malignant")[seq % 2], "reviewer": f"r{seq}"}
                if requests.put(f"{srv.url}/datastore/image/info", params={"image": name}, timeout=30,
                                data={"info": json.dumps(info)}).status_code == 200:
                    info_acknowledged[name] = seq
            except requests.RequestException:
                return
            if killed.is_set():
                return

    threads = [threading.Thread(target=keep_saving, args=(n,)) for n in names]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 300
    while len(acknowledged) < len(names) or sum(map(len, sent.values())) < 40:  # every image saved once, then kill
        assert time.monotonic() < deadline and srv.process.poll() is None, f"{len(acknowledged)} images saved"
        time.sleep(0.05)
    srv.process.kill()
    srv.process.wait()
    killed.set()
    for t in threads:
        t.join(timeout=60)

    restarted = Server(tmp_path / "studies", tmp_path / "run2").start()
    try:
        index = requests.get(f"{restarted.url}/datastore/", params={"output": "all"}, timeout=10).json()["objects"]
        for name in names:
            assert "final" in index[name]["labels"], f"acknowledged label of {name} lost"
            stored = stored_label(restarted, name)
            candidates = [seq for seq in sent[name] if seq >= acknowledged[name]]
            assert any(np.array_equal(stored, mask(seq)) for seq in candidates), f"{name}: label is not a whole save"
            if name in info_acknowledged:
                reviewer = int(index[name]["image"]["info"]["reviewer"][1:])
                assert reviewer in sent[name] and reviewer >= info_acknowledged[name], f"{name}: image info lost"
        label_files = sorted(p.stem for p in (tmp_path / "studies" / "labels" / "final").glob("*.png"))
        assert label_files == sorted(n for n, o in index.items() if "final" in o["labels"])
        for path in (tmp_path / "studies" / "labels" / "final").glob("*.png"):
            read_gray_png(path)
        assert not list((tmp_path / "studies").rglob(f"*{TEMP_MARK}*"))
    finally:
        restarted.stop()
