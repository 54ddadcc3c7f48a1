"""Active learning over HTTP on a real server: scoring jobs, then the strategies' hand-outs (slow: starts a server)."""

from __future__ import annotations

import pytest
import requests

from helpers import MODEL, SAMPLES, sample_server, upload

pytestmark = pytest.mark.slow
STRATEGIES = {"random", "uncertainty", "diverse", "hybrid", "second_read", "review"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sample_server(tmp_path_factory.mktemp("al_server")) as srv:
        for name in ("unlabelled_a", "unlabelled_b"):
            source = "case005" if name.endswith("a") else "case008"
            assert upload(srv, name, (SAMPLES / "images" / f"{source}.png").read_bytes()).status_code == 200
        yield srv


def score(server, method: str, **params) -> requests.Response:
    return requests.post(f"{server.url}/scoring/{method}", params={"run_sync": True}, json=params, timeout=300)


def test_info_lists_every_strategy_and_scoring_method(server):
    info = requests.get(f"{server.url}/info/", timeout=10).json()
    assert set(info["strategies"]) == STRATEGIES and {"uncertainty", "diversity"} <= set(info["scoring"])


def test_uncertainty_scoring_and_next_sample(server):
    response = score(server, "uncertainty", model=MODEL)
    assert response.status_code == 200, response.text
    assert response.json()["scored"] == 2

    sample = requests.post(f"{server.url}/activelearning/uncertainty", json={"top_k": 2}, timeout=30).json()
    scores = [t["score"] for t in sample["top"]]
    assert {t["id"] for t in sample["top"]} == {"unlabelled_a", "unlabelled_b"} and scores == sorted(scores)[::-1]
    assert sample["id"] == sample["top"][0]["id"] and sample["scored_with"]["model"] == MODEL
    assert sample["scored_with"]["measure"] == "flip_disagreement"
    assert "path" not in sample  # clients fetch the image by id; no server paths

    bad = requests.post(f"{server.url}/activelearning/uncertainty", json={"top_k": 0}, timeout=30)
    assert bad.status_code == 400 and "top_k" in bad.json()["detail"]
    assert requests.post(f"{server.url}/activelearning/nope", json={}, timeout=30).status_code == 404
    assert requests.post(f"{server.url}/scoring/nope", json={}, timeout=30).status_code == 404
    assert requests.post(f"{server.url}/scoring/uncertainty", json={"model": "nope"}, timeout=30).status_code == 404


def test_diversity_scoring_is_incremental_and_orders_diverse_and_hybrid(server):
    images = requests.get(f"{server.url}/datastore/", params={"output": "stats"}, timeout=10).json()["total"]
    first = score(server, "diversity", budget=2)
    assert first.status_code == 200, first.text
    assert first.json()["embedded"] == images and first.json()["encoded"] == images
    assert score(server, "diversity", budget=2).json()["encoded"] == 0  # nothing new or changed
    assert upload(server, "unlabelled_c", (SAMPLES / "images" / "case007.png").read_bytes()).status_code == 200
    try:
        third = score(server, "diversity", budget=2).json()
        assert (third["embedded"], third["encoded"], third["diverse"]) == (images + 1, 1, third["hybrid"])
        assert third["diverse"] == 3  # the images without a final label: a, b, c
        diverse = requests.post(f"{server.url}/activelearning/diverse", json={"top_k": 100}, timeout=30).json()
        top = {t["id"] for t in diverse["top"]}  # what the uncertainty test handed out is skipped for a while
        assert "unlabelled_c" in top and top <= {"unlabelled_a", "unlabelled_b", "unlabelled_c"}
        assert diverse["scored_with"]["budget"] == 2
        assert diverse["scored_with"]["uncertainty"] is None

        assert score(server, "uncertainty", model=MODEL).status_code == 200  # hybrid now uses the model's doubt
        hybrid = requests.post(f"{server.url}/activelearning/hybrid", json={"top_k": 100}, timeout=30).json()
        assert hybrid["scored_with"]["uncertainty"]["model"] == MODEL
        assert {t["id"] for t in hybrid["top"]} | {diverse["id"], hybrid["id"]} == {t["id"] for t in diverse["top"]}
    finally:
        requests.delete(f"{server.url}/datastore/image", params={"id": "unlabelled_c"}, timeout=10)
    bad = score(server, "diversity", budget=0)
    assert bad.status_code == 400 and "budget" in bad.json()["detail"]
    queued = requests.post(f"{server.url}/scoring/diversity", json={"budget": "many"}, timeout=30)  # not run_sync
    assert queued.status_code == 400 and "budget" in queued.json()["detail"]
