"""The HTTP server's outermost layer, pure ASGI: Bearer-token auth and the body-size limit.

Runs before routing and before a single body byte is read, so an unauthenticated client
gets a 401 on every path (unknown ones and ``/openapi.json`` included) and cannot make the
server buffer a large body. Under ``/ui/`` the web UI's session cookie counts as the token
too, its login form and assets need none, and a browser without it is sent to the login
form (:mod:`cashet.server.ui.auth`). Headers are handled as raw bytes: no header content (non-ASCII,
control bytes, a wrong scheme, duplicates) can raise, so each of those is a 401, never a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cashet.server.ui.auth import UiAuth, is_public

__all__ = ["BodyTooLarge", "Guard", "bearer_credentials", "send_json"]


class BodyTooLarge(Exception):
    """Raised by the guarded ``receive`` once a body outgrows the limit (a 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


async def send_json(
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Send a complete JSON response on a raw ASGI ``send``."""
    data = json.dumps(body, ensure_ascii=True).encode("ascii")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode("ascii")),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def bearer_credentials(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The credentials of the single ``Authorization: Bearer <token>`` header, else ``None``.

    The scheme is case-insensitive and may be followed by several spaces (RFC 6750). Two
    ``Authorization`` headers are ambiguous and refused.
    """
    found: bytes | None = None
    for name, value in headers:
        if name.lower() == b"authorization":
            if found is not None:
                return None
            found = value
    if found is None:
        return None
    scheme, _, credentials = found.strip(b" \t").partition(b" ")
    credentials = credentials.strip(b" \t")
    if scheme.lower() != b"bearer" or not credentials:
        return None
    return credentials


_UNAUTHORIZED = {"error": "unauthorized", "detail": "missing or invalid bearer token"}


def too_large(limit: int) -> dict[str, str]:
    """The 413 body: the published wording ("exceeds") with the limit."""
    return {"error": f"request body too large: it exceeds the limit of {limit} bytes"}


_UNAUTHORIZED_HEADERS = ((b"www-authenticate", b'Bearer realm="cashet"'),)


def _is_ui(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class Guard:
    """ASGI middleware: refuse unauthenticated requests and oversized bodies up front.

    Args:
        app: the wrapped app.
        token: the Bearer token every HTTP request must carry (``None``: no auth).
        max_body_bytes: larger bodies are refused with 413 — at once when
            ``Content-Length`` says so, else when the streamed body passes the limit.
    """

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Digests of equal length: the comparison takes the same time whatever was sent.
        self._digest = None if token is None else hashlib.sha256(token.encode()).digest()
        self.ui = UiAuth(token)

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the request's headers carry the token (always, without a token)."""
        if self._digest is None:
            return True
        given = bearer_credentials(headers)
        candidate = hashlib.sha256(given or b"").digest()
        return hmac.compare_digest(candidate, self._digest) and given is not None

    def _ui_allows(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> bool:
        """The web UI's own ways in: its login form and assets, or its session cookie."""
        path: str = scope["path"]
        if not _is_ui(path):
            return False
        return is_public(path) or self.ui.has_session(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # none are served; close before any handshake
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if not self.authorized(headers) and not self._ui_allows(scope, headers):
            if _is_ui(scope["path"]) and scope["method"] in ("GET", "HEAD"):
                # A browser asking for a page: the login form, then back here.
                await _redirect(send, "/ui/login")
                return
            await send_json(send, 401, _UNAUTHORIZED, _UNAUTHORIZED_HEADERS)
            return
        lengths = [v for k, v in headers if k.lower() == b"content-length"]
        if lengths:
            text = lengths[0].strip()
            if len(lengths) > 1 or not text.isdigit() or len(text) > 18:
                await send_json(send, 400, {"error": "invalid Content-Length header"})
                return
            if int(text) > self.max_body_bytes:
                await send_json(send, 413, too_large(self.max_body_bytes))
                return

        limit = self.max_body_bytes
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Handlers turn it into a 413 themselves; this is for any that do not.
            if not started:
                await send_json(send, 413, too_large(self.max_body_bytes))
