"""Responses and error mapping: every exception that leaves a handler becomes a JSON body.

Never a traceback, a path or an environment value: a task's error is cut to its last line
and the server's own directories are redacted (``tests/test_server.py`` proves it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from cashet.errors import AmbiguousHashError, BlobError, CommitNotFoundError, StoreError, TaskError
from cashet.server.guard import BodyTooLarge, too_large
from cashet.server.input import HTTPError

__all__ = [
    "JSONBody",
    "TaskProblem",
    "error_line",
    "error_response",
    "http_exception",
    "last_line",
    "redact",
]

log = logging.getLogger("cashet.server")


class JSONBody(JSONResponse):
    """Compact JSON with ASCII escapes: any text (lone surrogates too) encodes."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return text.encode("ascii")


def _server_paths() -> list[str]:
    paths = {os.getcwd(), str(Path.home()), sys.prefix, sys.exec_prefix, sys.base_prefix}
    return sorted((p for p in paths if len(p) > 1), key=len, reverse=True)


def redact(text: str) -> str:
    """Hide the server's own directories (cwd, home, interpreter) in a message."""
    for path in _server_paths():
        text = text.replace(path, "<path>")
    return text


def last_line(text: str | None) -> str:
    """The last non-blank line of ``text``, redacted and cut to 1000 characters."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return redact(lines[-1])[:1000] if lines else ""


def error_line(exc: BaseException) -> str:
    """``ValueError: bad input``: the last line of a task's error, redacted."""
    if isinstance(exc, TaskError):
        return last_line(exc.traceback_text) or last_line(exc.message)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return last_line(text)


class TaskProblem(Exception):
    """A non-cashet exception while running a valid call (its result does not serialize...)."""


def error_response(exc: Exception) -> Response:
    """The JSON response for an exception that left a handler (never a traceback)."""
    if isinstance(exc, HTTPError):
        return JSONBody(exc.body, status_code=exc.status)
    if isinstance(exc, BodyTooLarge):
        return JSONBody(too_large(exc.limit), status_code=413)
    if isinstance(exc, ClientDisconnect):
        return JSONBody({"error": "client disconnected"}, status_code=400)
    if isinstance(exc, AmbiguousHashError):
        return JSONBody(
            {"error": f"Ambiguous prefix {exc.prefix!r}", "candidates": exc.candidates},
            status_code=409,
        )
    if isinstance(exc, CommitNotFoundError):
        return JSONBody({"error": redact(str(exc))}, status_code=404)
    if isinstance(exc, BlobError):
        log.error("unreadable blob %s: %s", exc.blob_hash[:12], exc)
        return JSONBody({"error": "the stored result is missing or corrupted"}, status_code=500)
    if isinstance(exc, StoreError):
        log.error("store error: %s", exc)
        return JSONBody({"error": "the store is unavailable"}, status_code=503)
    log.exception("unexpected error in the cashet server")
    return JSONBody({"error": "Internal server error"}, status_code=500)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), as JSON."""
    assert isinstance(exc, HTTPException)
    message = "not found" if exc.status_code == 404 else exc.detail
    return JSONBody({"error": message}, status_code=exc.status_code, headers=exc.headers)
