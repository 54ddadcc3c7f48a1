"""A limit on every request body, ``BREASTLAB_MAX_UPLOAD_MB`` megabytes (MiB, default 256): a body declared larger gets
413 before any of it is read, one streamed larger (no Content-Length) gets 413 as soon as it passes the limit. Checked
in front of the whole app, because a multipart upload is spooled to a temp file before any handler runs."""

from __future__ import annotations

import json
import os

ENVIRONMENT = "BREASTLAB_MAX_UPLOAD_MB"
DEFAULT_MB = 256


def max_body_bytes() -> int:
    text = os.environ.get(ENVIRONMENT) or str(DEFAULT_MB)
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not 0 < megabytes < 2**40:
        raise ValueError(f"{ENVIRONMENT} must be a positive number of megabytes, not {text!r}")
    return int(megabytes * 2**20)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: at most ``limit`` body bytes reach ``app``; beyond, the client gets 413 instead of the app's
    answer (the app sees the body end in an error)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self.refuse(send, f"the body is {int(declared)} bytes; at most {self.limit} are accepted "
                                           f"({ENVIRONMENT})")
        state = {"received": 0, "over": False, "started": False}

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["over"] = True
                    raise _TooLarge()
            return message

        async def guarded_send(message):
            if not state["over"]:  # the app's own answer to a body it could not finish is replaced by the 413
                state["started"] = True
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await self.refuse(send, f"the body is over {self.limit} bytes, the most accepted ({ENVIRONMENT})")

    @staticmethod
    async def refuse(send, message: str) -> None:
        body = json.dumps({"detail": message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def install(app) -> None:
    """Put ``BodyLimit`` in front of ``app``'s middleware stack (built when the server started); idempotent."""
    stack = app.middleware_stack or app.build_middleware_stack()
    if not isinstance(stack, BodyLimit):
        app.middleware_stack = BodyLimit(stack, max_body_bytes())
