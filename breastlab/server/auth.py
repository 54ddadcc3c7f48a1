"""MONAI Label's token check, fixed for PyJWT 2 (MONAI Label 0.8.5 omits ``algorithms``, so every token fails).

With ``MONAI_LABEL_AUTH_ENABLE=true`` MONAI Label verifies bearer tokens against the public key of
the Keycloak realm at ``MONAI_LABEL_AUTH_REALM_URI`` and maps realm roles to its four roles.
"""

from __future__ import annotations

import jwt
from fastapi import Depends
from monailabel.config import settings
from monailabel.endpoints.user import auth

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
USER = Depends(auth.RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))  # the role a route requires, as its dependency
ANNOTATOR = Depends(auth.RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))
ADMIN = Depends(auth.RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))


def from_token(token: str) -> auth.User:
    """The user a signed, unexpired realm token names, with its roles (``DEFAULT_USER`` when auth is off)."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return auth.DEFAULT_USER
    key = auth.get_public_key(settings.MONAI_LABEL_AUTH_REALM_URI)
    payload = jwt.decode(token, key, algorithms=ALGORITHMS, options={"verify_aud": False, "verify_exp": True})
    roles = payload
    for part in settings.MONAI_LABEL_AUTH_TOKEN_ROLES.split("#"):
        roles = roles.get(part) if isinstance(roles, dict) else None
    return auth.User(
        username=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME),
        email=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
        name=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
        roles=roles or [],
    )


def install() -> None:
    """Make MONAI Label's ``get_current_user`` (used by every route's RBAC check) call ``from_token``."""
    auth.from_token = from_token
