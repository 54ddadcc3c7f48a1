"""MONAI Label's token check, fixed for PyJWT 2 (MONAI Label 0.8.5 omits ``algorithms``, so every token fails).

With ``MONAI_LABEL_AUTH_ENABLE=true`` MONAI Label verifies bearer tokens against the public key of
the Keycloak realm at ``MONAI_LABEL_AUTH_REALM_URI`` and maps realm roles to its four roles. A token must also be
issued to this server's client (``MONAI_LABEL_AUTH_CLIENT_ID`` as its ``azp`` or among its ``aud``: another client
of the same realm is refused) and name its user and roles well; anything else is an invalid token (401).
"""

from __future__ import annotations

import jwt
import requests
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordRequestForm
from monailabel.config import settings
from monailabel.endpoints.user import auth

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
USER = Depends(auth.RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))  # the role a route requires, as its dependency
ANNOTATOR = Depends(auth.RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))
ADMIN = Depends(auth.RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))
REVIEWER_ROLES = [settings.MONAI_LABEL_AUTH_ROLE_REVIEWER, settings.MONAI_LABEL_AUTH_ROLE_ADMIN]
REVIEWER = Depends(auth.RBAC(REVIEWER_ROLES))


def from_token(token: str) -> auth.User:
    """The user a signed, unexpired realm token names, with its roles (``DEFAULT_USER`` when auth is off)."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return auth.DEFAULT_USER
    key = auth.get_public_key(settings.MONAI_LABEL_AUTH_REALM_URI)
    payload = jwt.decode(token, key, algorithms=ALGORITHMS,
                         options={"verify_aud": False, "verify_exp": True, "require": ["exp"]})
    check_audience(payload, settings.MONAI_LABEL_AUTH_CLIENT_ID)
    roles = payload
    for part in settings.MONAI_LABEL_AUTH_TOKEN_ROLES.split("#"):
        roles = roles.get(part) if isinstance(roles, dict) else None
    roles = [] if roles is None else roles
    username = payload.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME)
    if not isinstance(username, str) or not username:
        raise jwt.InvalidTokenError(f"the token names no user ({settings.MONAI_LABEL_AUTH_TOKEN_USERNAME})")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise jwt.InvalidTokenError(f"the token's roles ({settings.MONAI_LABEL_AUTH_TOKEN_ROLES}) are not a list")
    texts = {k: payload.get(getattr(settings, f"MONAI_LABEL_AUTH_TOKEN_{k.upper()}")) for k in ("email", "name")}
    return auth.User(username=username, roles=roles, **{k: v for k, v in texts.items() if isinstance(v, str)})


def check_audience(payload: dict, client_id: str) -> None:
    """Keycloak names the client a token was issued to in ``azp``; ``aud`` lists the clients it is meant for."""
    audience = payload.get("aud", [])
    audience = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if payload.get("azp") != client_id and client_id not in audience:
        raise jwt.InvalidAudienceError(f"the token was not issued to {client_id!r}")


router = APIRouter(prefix="/auth")


@router.post("/token", summary="Fetch new access code/token")
def access_token(form: OAuth2PasswordRequestForm = Depends()) -> dict:
    """MONAI Label's login (a user name and password for a token of ``MONAI_LABEL_AUTH_CLIENT_ID`` from the realm),
    off the event loop, and with the realm's refusal as 401 and an unreachable realm as 502 (MONAI Label: 500)."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return {"access_token": None, "token_type": None}
    data = {"client_id": settings.MONAI_LABEL_AUTH_CLIENT_ID, "username": form.username, "password": form.password,
            "grant_type": "password"}
    try:
        response = requests.post(auth.token_uri(), data=data, timeout=settings.MONAI_LABEL_AUTH_TIMEOUT)
        token = response.json() if response.ok else {}
    except (requests.RequestException, ValueError) as e:
        raise HTTPException(502, f"the authentication realm did not answer: {type(e).__name__}") from None
    if response.status_code in (400, 401, 403):
        raise HTTPException(401, "wrong user name or password", headers={"WWW-Authenticate": "Bearer"})
    if not isinstance(token.get("access_token"), str):
        raise HTTPException(502, f"the authentication realm answered {response.status_code} without a token")
    return token


def install(app: FastAPI) -> None:
    """Make MONAI Label's ``get_current_user`` (used by every route's RBAC check) call ``from_token``, and put the
    login route in front of MONAI Label's; idempotent."""
    auth.from_token = from_token
    app.router.routes[:0] = [r for r in router.routes if r not in app.router.routes]
