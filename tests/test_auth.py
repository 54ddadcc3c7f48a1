"""MONAI Label's authentication still guards every BreastLab route (slow: real server, local realm).

A tiny HTTP server plays the Keycloak realm (it publishes the public key MONAI Label fetches), and
the tests sign their own JWTs with the matching private key.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
import numpy as np
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from breastlab.bundle import PROJECT_ROOT

from helpers import MODEL, png_bytes
from tests.server_process import Server

sys.path.insert(0, str(PROJECT_ROOT / "slicer_extension" / "BreastLab"))  # as Slicer puts the module folder there
from BreastLabLib.client import BreastLabClient, ServerError  # noqa: E402

pytestmark = pytest.mark.slow
ROLES = {"user": ["monailabel-user"], "annotator": ["monailabel-user", "monailabel-annotator"],
         "reviewer": ["monailabel-user", "monailabel-annotator", "monailabel-reviewer"],
         "admin": ["monailabel-user", "monailabel-annotator", "monailabel-admin"]}
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


PASSWORDS = {"annotator": "secret-a", "user": "secret-u"}  # the realm's users (a user's role is its name)


def realm_server(public_key: bytes) -> ThreadingHTTPServer:
    """The realm: its public key and OpenID configuration on every GET; its token endpoint gives a token issued to
    ``CLIENT`` for a user of ``PASSWORDS`` (Keycloak's password grant), else 401."""

    class Realm(BaseHTTPRequestHandler):
        def do_GET(self):
            base = f"http://127.0.0.1:{self.server.server_address[1]}/realms/breastlab"
            self.answer(200, {"realm": "breastlab", "public_key": base64.b64encode(public_key).decode(),
                              "token_endpoint": f"{base}/protocol/openid-connect/token"})

        def do_POST(self):
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            user, password = form.get("username", [""])[0], form.get("password", [""])[0]
            if form.get("client_id") != [CLIENT] or PASSWORDS.get(user) != password:
                return self.answer(401, {"error": "invalid_grant"})
            token = bearer(user)["Authorization"].split()[1]
            self.answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 600})

        def answer(self, status: int, content: dict):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(content).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Realm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


CLIENT = "monailabel-app"  # MONAI Label's default MONAI_LABEL_AUTH_CLIENT_ID


def bearer(role: str, key=KEY, expires_in: float = 600, **claims) -> dict:
    """A realm-signed token issued to ``CLIENT`` for ``role``; ``claims`` replace (``None``: remove) its claims."""
    claims = {"preferred_username": role, "realm_access": {"roles": ROLES[role]}, "exp": int(time.time() + expires_in),
              "azp": CLIENT, "aud": "account", **claims}
    claims = {k: v for k, v in claims.items() if v is not None}
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm='RS256')}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    public = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    realm = realm_server(public)
    workdir = tmp_path_factory.mktemp("auth")
    studies = workdir / "studies"
    studies.mkdir()
    (studies / "img.png").write_bytes(png_bytes(np.zeros((64, 80), np.uint8)))
    env = {"MONAI_LABEL_AUTH_ENABLE": "true",
           "MONAI_LABEL_AUTH_REALM_URI": f"http://127.0.0.1:{realm.server_address[1]}/realms/breastlab"}
    srv = Server(studies, workdir, env=env, headers=bearer("admin", expires_in=3600)).start()
    yield srv
    srv.stop()
    realm.shutdown()


def calls(url: str) -> dict:
    label = {"label": ("l.png", png_bytes(np.zeros((64, 80), np.uint8)))}
    return {
        "info": lambda h: requests.get(f"{url}/info/", headers=h, timeout=30),
        "infer": lambda h: requests.post(f"{url}/infer/{MODEL}", params={"image": "img"}, headers=h, timeout=60),
        "next sample": lambda h: requests.post(f"{url}/activelearning/random", json={}, headers=h, timeout=30),
        "save label": lambda h: requests.put(f"{url}/datastore/label", params={"image": "img"}, files=label,
                                             headers=h, timeout=30),
        "remove label": lambda h: requests.delete(f"{url}/datastore/label", params={"id": "img", "tag": "final"},
                                                  headers=h, timeout=30),
        "viewer": lambda h: requests.get(f"{url}/ohif/", headers=h, timeout=30),
        "pass-through": lambda h: requests.get(f"{url}/proxy/dicom/dicomweb/studies", headers=h, timeout=30),
    }


@pytest.mark.parametrize("call", ["info", "infer", "next sample", "save label", "remove label", "viewer",
                                  "pass-through"])
def test_requests_without_a_valid_token_get_401(server, call):
    request = calls(server.url)[call]
    assert request({}).status_code == 401
    assert request(bearer("admin", expires_in=-60)).status_code == 401
    assert request(bearer("admin", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
                   ).status_code == 401


@pytest.mark.parametrize("claims", [
    {"azp": "another-client"},  # issued to another client of the realm
    {"azp": None, "aud": ["account", "another-client"]},
    {"preferred_username": None}, {"preferred_username": 7}, {"realm_access": {"roles": "monailabel-admin"}},
    {"realm_access": {"roles": [["monailabel-admin"]]}}, {"exp": None}])
def test_tokens_for_another_client_or_with_malformed_claims_get_401(server, claims):
    assert calls(server.url)["info"](bearer("admin", **claims)).status_code == 401


def test_a_token_meant_for_this_client_by_its_audience_is_accepted(server):
    assert calls(server.url)["info"](bearer("user", azp="slicer", aud=["account", CLIENT])).status_code == 200


def test_roles_decide_who_may_do_what(server):
    request = calls(server.url)
    assert request["info"](bearer("user")).status_code == 200
    assert request["infer"](bearer("user")).status_code == 200
    assert request["save label"](bearer("user")).status_code == 403
    assert request["save label"](bearer("annotator")).status_code == 200
    assert request["remove label"](bearer("annotator")).status_code == 403
    assert request["remove label"](bearer("admin")).status_code == 200
    assert request["pass-through"](bearer("user")).status_code == 404  # signed in: a folder has no PACS to read


def test_readers_are_the_signed_in_users_and_only_reviewers_review(server):
    url, mask = server.url, png_bytes(np.ones((64, 80), np.uint8))
    image = requests.put(f"{url}/datastore/image", params={"image": "read_twice"}, headers=bearer("annotator"),
                         files={"file": ("i.png", png_bytes(np.zeros((64, 80), np.uint8)))}, timeout=30)
    assert image.status_code == 200, image.text

    def save(headers, **params):
        return requests.put(f"{url}/datastore/label", params={"image": "read_twice", **params}, headers=headers,
                            files={"label": ("l.png", mask)}, timeout=30)

    assert save(bearer("annotator"), reader="someone-else").status_code == 403
    assert save(bearer("annotator", preferred_username="bob")).json()["readers"] == ["bob"]
    readers = save(bearer("annotator", preferred_username="ann@example.org")).json()["readers"]
    assert len(readers) == 2 and readers[0].startswith("ann_example.org-")  # an e-mail made a safe, unique id

    def approve(role, **params):
        return requests.post(f"{url}/datastore/review/approve", headers=bearer(role, preferred_username="rev"),
                             params={"image": "read_twice", "source": "reader:bob", **params}, timeout=30)

    assert approve("annotator").status_code == 403
    assert requests.post(f"{url}/activelearning/review", json={}, headers=bearer("annotator"),
                         timeout=30).status_code == 403
    assert approve("reviewer", reviewer="somebody").status_code == 403
    assert approve("reviewer").json()["status"] == "approved"
    events = requests.get(f"{url}/datastore/review", params={"image": "read_twice"}, headers=bearer("user"),
                          timeout=30).json()["events"]
    assert [(e["event"], e["user"]) for e in events if e["event"] in ("approve", "label")] == [
        ("label", "bob"), ("label", "ann@example.org"), ("approve", "rev")]


def test_login_gives_a_token_for_the_realms_users_and_401_otherwise(server):
    login = lambda user, password: requests.post(f"{server.url}/auth/token", timeout=30,  # noqa: E731
                                                 data={"username": user, "password": password})
    assert login("annotator", "wrong").status_code == 401 and login("nobody", "x").status_code == 401
    token = login("annotator", PASSWORDS["annotator"]).json()["access_token"]
    assert calls(server.url)["save label"]({"Authorization": f"Bearer {token}"}).status_code == 200


def test_the_slicer_module_logs_in_where_the_server_asks_for_it(server):
    client = BreastLabClient(server.url)
    assert client.auth_enabled()
    with pytest.raises(ServerError) as refused:
        client.info()
    assert refused.value.status == 401
    with pytest.raises(ServerError) as wrong:
        client.login("user", "wrong")
    assert wrong.value.status == 401
    client.login("user", PASSWORDS["user"])
    assert MODEL in client.info().models
    with pytest.raises(ServerError) as forbidden:  # a user may look, not annotate
        client.save_label("img", np.zeros((64, 80), np.uint8))
    assert forbidden.value.status == 403
