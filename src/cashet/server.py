"""The HTTP server: a thin Starlette shell over :class:`~cashet.client.Client` or
:class:`~cashet.async_client.AsyncClient` (the ``server`` extra: Starlette + uvicorn).

Safe by default:

* ``POST /submit`` runs only *registered* tasks (``tasks=`` or ``@client.task``) with JSON
  arguments. Client-supplied code (``func_source``, ``func_b64``, ``args_b64``,
  ``kwargs_b64``) is refused with 403 before anything is decoded, unless the app was made
  with ``allow_remote_code=True`` *and* a token (one without the other is a ``ValueError``).
* With ``require_token``, every request — unknown paths and ``/openapi.json`` included —
  needs ``Authorization: Bearer <token>``, checked in constant time by a pure ASGI
  middleware before the body is read; anything else is a 401 (never a 500).
* ``read_only=True`` refuses what would change the store: ``/gc``, and a ``/submit`` that
  is not already cached (403). Cached results are still served.
* Bodies over ``max_body_bytes`` are a 413; every input error is a 4xx JSON
  ``{"error": ...}``; a failed task is a 422 carrying the last line of its error, never a
  traceback, path or environment value of the server.

The sync and async apps share every handler: they differ only in a small backend adapter
(:class:`_SyncBackend` runs ``Client`` calls in a worker thread, :class:`_AsyncBackend`
awaits the ``AsyncClient``). The OpenAPI document (``GET /openapi.json``) lives in
:mod:`cashet._server_openapi`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import json
import linecache
import logging
import math
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cashet._options import CALL_OPTIONS, DEFAULT_OPTIONS, TaskOptions, call_options
from cashet._provenance import commit_view, resolve_result
from cashet._server_openapi import openapi_document
from cashet.errors import (
    AmbiguousHashError,
    BlobError,
    CashetError,
    CommitNotFoundError,
    StoreError,
    TaskError,
)
from cashet.models import Commit, ObjectRef, TaskStatus

if TYPE_CHECKING:
    from cashet.async_client import AsyncClient
    from cashet.client import Client

__all__ = ["MAX_BODY_BYTES", "create_app", "create_async_app"]

log = logging.getLogger("cashet.server")

R = TypeVar("R")

#: Default largest request body, in bytes (413 beyond).
MAX_BODY_BYTES = 4 * 2**20
#: ``GET /log?limit=`` must lie in 1..MAX_LOG_LIMIT.
MAX_LOG_LIMIT = 1000
DEFAULT_LOG_LIMIT = 50
#: Upper bounds of the ``/submit`` options (a huge TTL would overflow ``datetime``).
MAX_RETRIES = 10
MAX_SECONDS = 1e9
#: JSON arguments nested deeper than this are refused (hashing recurses).
MAX_ARG_DEPTH = 64
#: ``/gc`` ages are at most this many days.
MAX_GC_DAYS = 36500
#: At most this many tasks run at once in the sync app (reads have their own threads).
SUBMIT_THREADS = 32

_HASH = re.compile(r"^[0-9a-fA-F]{1,64}$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")
_REMOTE_FIELDS = ("func_source", "func_b64", "args_b64", "kwargs_b64")
_OPTION_FIELDS = ("cache", "force", "tags", "retries", "timeout", "ttl")
_SUBMIT_FIELDS = frozenset({"task", "args", "kwargs", *_OPTION_FIELDS})
_REMOTE_ONLY_FIELDS = frozenset({*_REMOTE_FIELDS, "func_name"})


# --- errors and responses -------------------------------------------------------------------


class _JSON(JSONResponse):
    """JSON with ASCII escapes: any text (lone surrogates too) encodes, never a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


class _HTTPError(Exception):
    """An error response: status code and JSON body (``{"error": message, **extra}``)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}

    def response(self) -> Response:
        return _JSON(self.body, status_code=self.status)


class _BodyTooLarge(Exception):
    """Raised by the guard's ``receive`` once a body outgrows the limit."""


def _bad(message: str, field: str | None = None) -> _HTTPError:
    return _HTTPError(400, message) if field is None else _HTTPError(400, message, field=field)


def _redact(text: str) -> str:
    """Hide the server's own directories (home, cwd, interpreter prefix) in a message."""
    for path in _server_paths():
        text = text.replace(path, "<path>")
    return text


def _server_paths() -> list[str]:
    paths = {os.getcwd(), str(Path.home()), sys.prefix, sys.exec_prefix, sys.base_prefix}
    return sorted((p for p in paths if p and p != os.sep), key=len, reverse=True)


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return _redact(lines[-1]) if lines else ""


def _task_error_line(exc: BaseException) -> str:
    if isinstance(exc, TaskError):
        return _last_line(exc.traceback_text) or _last_line(exc.message)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return _last_line(text)


def _error_response(exc: Exception) -> Response:
    """Map an exception escaping a handler to a JSON error response (no tracebacks)."""
    if isinstance(exc, _HTTPError):
        return exc.response()
    if isinstance(exc, _BodyTooLarge):
        return _JSON({"error": "request body too large"}, status_code=413)
    if isinstance(exc, ClientDisconnect):
        return _JSON({"error": "client disconnected"}, status_code=400)
    if isinstance(exc, AmbiguousHashError):
        return _JSON(
            {"error": f"hash prefix {exc.prefix!r} is ambiguous", "candidates": exc.candidates},
            status_code=409,
        )
    if isinstance(exc, CommitNotFoundError):
        return _JSON({"error": _redact(str(exc))}, status_code=404)
    if isinstance(exc, BlobError):
        log.error("unreadable blob %s: %s", exc.blob_hash[:12], exc)
        return _JSON({"error": "the stored result is missing or corrupted"}, status_code=500)
    if isinstance(exc, StoreError):
        log.error("store error: %s", exc)
        return _JSON({"error": "the store is unavailable"}, status_code=503)
    log.exception("unexpected error in the cashet server")
    return _JSON({"error": "internal server error"}, status_code=500)


Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            return _error_response(exc)

    endpoint.__name__ = handler.__name__
    return endpoint


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "not found" if exc.status_code == 404 else exc.detail
    return _JSON({"error": message}, status_code=exc.status_code, headers=exc.headers)


# --- the guard: auth and body size, pure ASGI -------------------------------------------------


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = []
) -> None:
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


def _bearer(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The credentials of the one ``Authorization: Bearer ...`` header, else ``None``.

    Works on raw bytes, so no header content (non-ASCII, control bytes) can raise.
    """
    found: bytes | None = None
    for name, value in headers:
        if name.lower() == b"authorization":
            if found is not None:
                return None  # two Authorization headers: ambiguous, refuse
            found = value
    if found is None:
        return None
    scheme, _, credentials = found.strip(b" \t").partition(b" ")
    credentials = credentials.strip(b" \t")
    if scheme.lower() != b"bearer" or not credentials:
        return None
    return credentials


class _Guard:
    """Refuse unauthenticated requests and oversized bodies before the app reads anything."""

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Compare digests: constant time whatever the lengths of the two tokens.
        self._digest = None if token is None else hashlib.sha256(token.encode()).digest()

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self._digest is None:
            return True
        given = _bearer(headers)
        candidate = hashlib.sha256(given or b"").digest()
        return hmac.compare_digest(candidate, self._digest) and given is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if not self._authorized(headers):
            await _send_json(
                send,
                401,
                {"error": "missing or invalid bearer token"},
                [(b"www-authenticate", b'Bearer realm="cashet"')],
            )
            return
        lengths = [v for k, v in headers if k.lower() == b"content-length"]
        if lengths:
            text = lengths[0].strip()
            if len(lengths) > 1 or not text.isdigit() or len(text) > 19:
                await _send_json(send, 400, {"error": "invalid Content-Length header"})
                return
            if int(text) > self.max_body_bytes:
                await _send_json(send, 413, {"error": "request body too large"})
                return

        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _send_json(send, 413, {"error": "request body too large"})


# --- backends: the only difference between the sync and the async app ------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """A validated ``/submit``: the function, its JSON arguments and call-site options."""

    func: Callable[..., Any]
    base: TaskOptions
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]  # keys of _OPTION_FIELDS; None = not given

    def effective_options(self) -> TaskOptions:
        o = self.options
        return call_options(
            self.base, o["cache"], o["force"], o["tags"], o["retries"], o["timeout"], o["ttl"]
        )


@dataclass(frozen=True, slots=True)
class _Result:
    """A result read back from the store, ready for the response."""

    commit: Commit | None
    blob_hash: str
    size: int
    value: Any
    is_json: bool
    b64: str
    cached: bool = False


def _encode_result(
    commit: Commit | None, ref: ObjectRef, data: bytes, loads: Callable[[bytes], Any]
) -> _Result:
    try:
        value, is_json = _jsonable(loads(data), 0), True
    except _NotJSON:
        value, is_json = None, False
    except Exception as exc:  # a value this server's serializer cannot load
        log.warning("result %s does not deserialize: %s", ref.hash[:12], type(exc).__name__)
        value, is_json = None, False
    return _Result(
        commit=commit,
        blob_hash=ref.hash,
        size=len(data),
        value=value,
        is_json=is_json,
        b64=base64.b64encode(data).decode("ascii"),
        cached=commit.from_cache if commit is not None else False,
    )


class _NotJSON(Exception):
    pass


_SCALARS = (str, int, bool, type(None))


def _jsonable(value: Any, depth: int) -> Any:
    """``value`` as plain JSON data (tuples as lists), or raise ``_NotJSON``."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _NotJSON
        return value
    if depth >= MAX_ARG_DEPTH:
        raise _NotJSON
    if kind is list or kind is tuple:
        return [_jsonable(v, depth + 1) for v in value]
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NotJSON
            out[k] = _jsonable(v, depth + 1)
        return out
    raise _NotJSON


def _read_result(client: Client, hash: str) -> _Result:
    ref, commit = resolve_result(client.store, hash)
    data = client.store.get_blob(ref)
    return _encode_result(commit, ref, data, client.serializer.loads)


def _cached_result(client: Client, call: _Call) -> _Result | None:
    """The stored result of ``call`` without running it, or ``None`` (read-only mode)."""
    from cashet._options import make_task_def
    from cashet.hashing import function_identity, hash_args

    options = call.effective_options()
    if not options.cache or options.force:
        return None  # the call would run whatever the cache holds
    task_def = make_task_def(
        function_identity(call.func), options, hash_args(call.args, call.kwargs)
    )
    commit = client.store.find_by_fingerprint(task_def.fingerprint)
    if commit is None or commit.result is None:
        return None
    commit.from_cache = True
    data = client.store.get_blob(commit.result)
    return _encode_result(commit, commit.result, data, client.serializer.loads)


def _submit_options(call: _Call) -> dict[str, Any]:
    return {f"_{k}": v for k, v in call.options.items()}


class _SyncBackend:
    """Runs ``Client`` calls in worker threads (one hop per request)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._submit_limiter: CapacityLimiter | None = None

    def registered(self) -> Mapping[str, Any]:
        return self.client.tasks

    async def call(self, fn: Callable[[Client], R]) -> R:
        return await anyio.to_thread.run_sync(fn, self.client)

    async def submit(self, call: _Call) -> _Result:
        if self._submit_limiter is None:  # made lazily: it needs a running event loop
            self._submit_limiter = CapacityLimiter(SUBMIT_THREADS)
        return await anyio.to_thread.run_sync(self._submit, call, limiter=self._submit_limiter)

    def _submit(self, call: _Call) -> _Result:
        try:
            ref = self.client.submit(call.func, *call.args, **_submit_options(call), **call.kwargs)
        except CashetError:
            raise
        except Exception as exc:  # the result did not serialize, ...: the task's problem
            raise _TaskProblem(exc) from exc
        data = self.client.store.get_blob(ref.object_ref)
        return _encode_result(ref.commit, ref.object_ref, data, self.client.serializer.loads)


class _AsyncBackend:
    """Awaits the ``AsyncClient``; provenance queries run its sync twin off the loop."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    def registered(self) -> Mapping[str, Any]:
        return self.client.tasks

    async def call(self, fn: Callable[[Client], R]) -> R:
        # The AsyncClient's own mechanism for its provenance methods (see its docstring).
        return await self.client._sync(fn)

    async def submit(self, call: _Call) -> _Result:
        try:
            ref = await self.client.submit(
                call.func, *call.args, **_submit_options(call), **call.kwargs
            )
        except CashetError:
            raise
        except Exception as exc:
            raise _TaskProblem(exc) from exc
        data = await self.client.store.get_blob(ref.object_ref)
        loads = self.client.serializer.loads
        if len(data) >= 2**20:
            return await anyio.to_thread.run_sync(
                _encode_result, ref.commit, ref.object_ref, data, loads
            )
        return _encode_result(ref.commit, ref.object_ref, data, loads)


class _TaskProblem(Exception):
    """A non-cashet exception while submitting a valid call: a 422, like a task failure."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(_task_error_line(exc))


_Backend = _SyncBackend | _AsyncBackend


# --- validation ---------------------------------------------------------------------------------


def _parse_hash(value: str, field: str = "hash") -> str:
    if not _HASH.match(value):
        raise _bad(f"{field} must be 1-64 hexadecimal digits, not {value[:80]!r}", field)
    return value.lower()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _json_body(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
    body = await request.body()
    if not body.strip() and empty_ok:
        return {}
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise _bad("the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"the body is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise _bad("the body must be a JSON object")
    return data


def _check_depth(value: Any, field: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_ARG_DEPTH:
            raise _bad(f"{field} is nested deeper than {MAX_ARG_DEPTH} levels", field)
        if isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())


def _opt_bool(body: Mapping[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"{field} must be true, false or null", field)
    return value


def _opt_seconds(body: Mapping[str, Any], field: str) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_SECONDS
    ):
        raise _bad(f"{field} must be a number of seconds in (0, {MAX_SECONDS:g}] or null", field)
    return float(value)


def _parse_options(body: Mapping[str, Any]) -> dict[str, Any]:
    retries = body.get("retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES
    ):
        raise _bad(f"retries must be an integer in 0..{MAX_RETRIES} or null", "retries")
    tags = body.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or not all(k and isinstance(v, str) for k, v in tags.items()):
            raise _bad("tags must be an object of non-empty keys to string values", "tags")
    return {
        "cache": _opt_bool(body, "cache"),
        "force": _opt_bool(body, "force"),
        "tags": tags,
        "retries": retries,
        "timeout": _opt_seconds(body, "timeout"),
        "ttl": _opt_seconds(body, "ttl"),
    }


_SIGNATURES: dict[Any, inspect.Signature | None] = {}


def _check_signature(name: str, func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]):
    sig = _SIGNATURES.get(func, False)
    if sig is False:
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):
            sig = None
        if len(_SIGNATURES) < 4096:
            _SIGNATURES[func] = sig
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise _bad(f"arguments do not match task {name!r}: {exc}", "args") from None


def _unwrap(func: Any) -> tuple[Callable[..., Any], TaskOptions]:
    """A registered task's function and decorator options (plain callables: defaults)."""
    options = getattr(func, "options", None)
    inner = getattr(func, "func", None)
    if isinstance(options, TaskOptions) and callable(inner):
        return inner, options
    return func, DEFAULT_OPTIONS


# --- the app ------------------------------------------------------------------------------------


class _Server:
    """Every handler, written once over a backend."""

    def __init__(
        self,
        backend: _Backend,
        *,
        token: str | None,
        tasks: Mapping[str, Callable[..., Any]] | None,
        allow_remote_code: bool,
        read_only: bool,
        max_body_bytes: int,
    ) -> None:
        self.backend = backend
        self.token = token
        self.tasks = dict(tasks or {})
        self.allow_remote_code = allow_remote_code
        self.read_only = read_only
        self.max_body_bytes = max_body_bytes
        self._openapi: tuple[tuple[str, ...], bytes] | None = None

    def task_names(self) -> list[str]:
        return sorted({*self.backend.registered(), *self.tasks})

    def _task(self, name: str) -> Callable[..., Any] | None:
        func = self.tasks.get(name)
        if func is None:
            func = self.backend.registered().get(name)
        return func

    # --- /submit ----------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        body = await _json_body(request)
        remote = [f for f in _REMOTE_FIELDS if f in body]
        if remote and not self.allow_remote_code:
            raise _HTTPError(
                403,
                f"remote code ({', '.join(remote)}) is disabled on this server; "
                "submit a registered task by name with JSON args",
                field=remote[0],
            )
        allowed = _SUBMIT_FIELDS | (_REMOTE_ONLY_FIELDS if self.allow_remote_code else set())
        unknown = sorted(k for k in body if k not in allowed)
        if unknown:
            raise _bad(f"unknown field {unknown[0]!r}", unknown[0])
        options = _parse_options(body)
        if remote:
            if self.read_only:
                raise _HTTPError(403, "this server is read-only: remote code cannot run")
            call = self._remote_call(body, options)
        else:
            call = self._task_call(body, options)
        if self.read_only:
            result = await self.backend.call(lambda c: _cached_result(c, call))
            if result is None:
                raise _HTTPError(
                    403, "this server is read-only and the call is not cached: it cannot run"
                )
        else:
            try:
                result = await self.backend.submit(call)
            except (TaskError, _TaskProblem) as exc:
                raise _HTTPError(422, _task_error_line(exc), task=_name_of(call.func)) from None
        return _JSON(self._result_body(result))

    def _task_call(self, body: Mapping[str, Any], options: dict[str, Any]) -> _Call:
        name = body.get("task")
        if not isinstance(name, str) or not name:
            raise _bad("task must be the name of a registered task", "task")
        func = self._task(name)
        if func is None:
            raise _HTTPError(
                404, f"unknown task {name[:200]!r}", field="task", tasks=self.task_names()[:200]
            )
        args = body.get("args", [])
        if not isinstance(args, list):
            raise _bad("args must be an array", "args")
        kwargs = body.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise _bad("kwargs must be an object", "kwargs")
        clash = sorted(k for k in kwargs if k in CALL_OPTIONS)
        if clash:
            raise _bad(
                f"kwargs may not contain {clash[0]!r}: give the option as {clash[0][1:]!r}",
                "kwargs",
            )
        _check_depth(args, "args")
        _check_depth(kwargs, "kwargs")
        inner, base = _unwrap(func)
        _check_signature(name, inner, args, kwargs)
        return _Call(inner, base, tuple(args), kwargs, options)

    def _remote_call(self, body: Mapping[str, Any], options: dict[str, Any]) -> _Call:
        """Decode the legacy remote-code payload (token and opt-in already checked)."""
        import dill

        if "task" in body:
            raise _bad("give either task or remote code, not both", "task")
        source, b64 = body.get("func_source"), body.get("func_b64")
        if (source is None) == (b64 is None):
            raise _bad("give exactly one of func_source and func_b64", "func_source")
        if source is not None:
            func = _function_from_source(source, body.get("func_name"))
        else:
            func = _dill_field(dill, body, "func_b64")
            if not callable(func):
                raise _bad("func_b64 does not decode to a callable", "func_b64")
        args: Any = body.get("args", [])
        kwargs: Any = body.get("kwargs", {})
        if "args_b64" in body:
            args = _dill_field(dill, body, "args_b64")
        if "kwargs_b64" in body:
            kwargs = _dill_field(dill, body, "kwargs_b64")
        if not isinstance(args, list | tuple):
            raise _bad("args must be an array (or args_b64 a pickled tuple or list)", "args")
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise _bad("kwargs must be an object (or kwargs_b64 a pickled dict)", "kwargs")
        if any(k in CALL_OPTIONS for k in kwargs):
            raise _bad("kwargs may not contain call options such as '_force'", "kwargs")
        inner, base = _unwrap(func)
        return _Call(inner, base, tuple(args), dict(kwargs), options)

    @staticmethod
    def _result_body(result: _Result) -> dict[str, Any]:
        return {
            "commit_hash": None if result.commit is None else result.commit.hash,
            "blob_hash": result.blob_hash,
            "size": result.size,
            "cached": result.cached,
            "result": result.value,
            "result_is_json": result.is_json,
            "result_b64": result.b64,
        }

    # --- reads -----------------------------------------------------------------------------------

    async def result(self, request: Request) -> Response:
        hash = _parse_hash(request.path_params["hash"])
        result = await self.backend.call(lambda c: _read_result(c, hash))
        body = self._result_body(result)
        del body["cached"]
        return _JSON(body)

    async def commit(self, request: Request) -> Response:
        hash = _parse_hash(request.path_params["hash"])
        commit = await self.backend.call(lambda c: c.show(hash))
        return _JSON(_view(commit, full=True))

    async def history(self, request: Request) -> Response:
        hash = _parse_hash(request.path_params["hash"])
        commits = await self.backend.call(lambda c: c.history(hash))
        return _JSON({"commits": [_view(c, full=False) for c in commits]})

    async def diff(self, request: Request) -> Response:
        a = _parse_hash(request.path_params["a"], "a")
        b = _parse_hash(request.path_params["b"], "b")
        return _JSON(await self.backend.call(lambda c: c.diff(a, b)))

    async def log(self, request: Request) -> Response:
        query = request.query_params
        func = query.get("func") or None
        status = query.get("status")
        if status is not None:
            try:
                status = TaskStatus(status).value
            except ValueError:
                valid = [s.value for s in TaskStatus]
                raise _HTTPError(
                    400, f"status must be one of {', '.join(valid)}", field="status", valid=valid
                ) from None
        raw_limit = query.get("limit")
        limit = DEFAULT_LOG_LIMIT
        if raw_limit is not None:
            if not raw_limit.isascii() or not raw_limit.isdigit() or len(raw_limit) > 6:
                raise _bad(f"limit must be an integer in 1..{MAX_LOG_LIMIT}", "limit")
            limit = int(raw_limit)
            if not 1 <= limit <= MAX_LOG_LIMIT:
                raise _bad(f"limit must be an integer in 1..{MAX_LOG_LIMIT}", "limit")
        tags: dict[str, str | None] = {}
        for text in query.getlist("tag"):
            key, sep, value = text.partition("=")
            if not key:
                raise _bad(f"tag must be KEY=VALUE or KEY, not {text[:80]!r}", "tag")
            tags[key] = value if sep else None
        commits = await self.backend.call(
            lambda c: c.log(func_name=func, limit=limit, status=status, tags=tags or None)
        )
        return _JSON({"commits": [_view(c, full=False) for c in commits]})

    async def stats(self, request: Request) -> Response:
        return _JSON(await self.backend.call(lambda c: c.stats()))

    async def gc(self, request: Request) -> Response:
        if self.read_only:
            raise _HTTPError(403, "this server is read-only: gc is disabled")
        body = await _json_body(request, empty_ok=True)
        unknown = sorted(k for k in body if k not in ("older_than_days", "max_size_bytes"))
        if unknown:
            raise _bad(f"unknown field {unknown[0]!r}", unknown[0])
        days = body.get("older_than_days", 30)
        if (
            isinstance(days, bool)
            or not isinstance(days, int | float)
            or not 0 <= days <= MAX_GC_DAYS
        ):
            raise _bad(f"older_than_days must be a number in 0..{MAX_GC_DAYS}", "older_than_days")
        size = body.get("max_size_bytes")
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**63
        ):
            raise _bad("max_size_bytes must be a non-negative integer or null", "max_size_bytes")
        age = timedelta(days=days)
        evicted = await self.backend.call(lambda c: c.gc(older_than=age, max_size_bytes=size))
        return _JSON({"evicted": evicted})

    async def openapi(self, request: Request) -> Response:
        names = tuple(self.task_names())
        if self._openapi is None or self._openapi[0] != names:
            doc = openapi_document(
                tasks=names,
                token=self.token is not None,
                read_only=self.read_only,
                remote_code=self.allow_remote_code,
                max_body_bytes=self.max_body_bytes,
            )
            self._openapi = (names, json.dumps(doc).encode())
        return Response(self._openapi[1], media_type="application/json")

    def routes(self) -> list[Route]:
        def route(path: str, handler: Handler, method: str) -> Route:
            return Route(path, _endpoint(handler), methods=[method])

        return [
            route("/submit", self.submit, "POST"),
            route("/result/{hash}", self.result, "GET"),
            route("/commit/{hash}", self.commit, "GET"),
            route("/history/{hash}", self.history, "GET"),
            route("/diff/{a}/{b}", self.diff, "GET"),
            route("/log", self.log, "GET"),
            route("/stats", self.stats, "GET"),
            route("/gc", self.gc, "POST"),
            route("/openapi.json", self.openapi, "GET"),
        ]


def _name_of(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", "task"))


def _view(commit: Commit, *, full: bool) -> dict[str, Any]:
    view = commit_view(commit, full=full)
    # The stored traceback names the server's files: over HTTP, only its last line.
    view["error"] = _last_line(commit.error) if commit.error else None
    return view


def _dill_field(dill: Any, body: Mapping[str, Any], field: str) -> Any:
    text = body[field]
    if not isinstance(text, str):
        raise _bad(f"{field} must be a base64 string", field)
    try:
        return dill.loads(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise _bad(f"{field} is not valid base64", field) from None
    except Exception as exc:
        raise _bad(f"{field} does not decode: {type(exc).__name__}", field) from None


def _function_from_source(source: Any, name: Any) -> Callable[..., Any]:
    """Define the functions of ``source`` and return ``name`` (default: the last one)."""
    if not isinstance(source, str) or not source.strip():
        raise _bad("func_source must be Python source text", "func_source")
    if name is not None and (not isinstance(name, str) or not name):
        raise _bad("func_name must be a non-empty string", "func_name")
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    filename = f"<cashet-remote-{digest}>"
    # Registered so inspect.getsource (function identity) sees the source.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "cashet_remote"}
    try:
        exec(compile(source, filename, "exec"), namespace)
    except SyntaxError as exc:
        raise _bad(f"func_source does not compile: {exc.msg} (line {exc.lineno})", "func_source")
    except Exception as exc:
        raise _HTTPError(422, _task_error_line(exc), field="func_source") from None
    if name is not None:
        func = namespace.get(name)
    else:
        defined = [v for k, v in namespace.items() if inspect.isfunction(v) and k != "__builtins__"]
        func = defined[-1] if defined else None
    if not callable(func):
        raise _bad("func_source defines no such function", "func_name")
    return func  # type: ignore[no-any-return]


def _check_settings(
    require_token: str | None, allow_remote_code: bool, read_only: bool, max_body_bytes: int
) -> None:
    if require_token is not None:
        if not isinstance(require_token, str) or not _TOKEN.match(require_token):
            raise ValueError(
                "require_token must be a non-empty string of printable ASCII without spaces"
            )
    if not isinstance(allow_remote_code, bool) or not isinstance(read_only, bool):
        raise TypeError("allow_remote_code and read_only must be True or False")
    if allow_remote_code and not require_token:
        raise ValueError(
            "allow_remote_code=True needs require_token: remote code runs arbitrary Python, "
            "so it is only served to clients holding the token"
        )
    if allow_remote_code and read_only:
        raise ValueError("allow_remote_code and read_only contradict each other")
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise ValueError(f"max_body_bytes must be a positive integer, not {max_body_bytes!r}")


def _check_tasks(tasks: Mapping[str, Callable[..., Any]] | None) -> None:
    if tasks is None:
        return
    if not isinstance(tasks, Mapping):
        raise TypeError(
            f"tasks must be a mapping of names to callables, not {type(tasks).__name__}"
        )
    for name, func in tasks.items():
        if not isinstance(name, str) or not name or not callable(func):
            raise TypeError(f"tasks must map non-empty names to callables; got {name!r}: {func!r}")


def _build(
    backend: _Backend,
    require_token: str | None,
    tasks: Mapping[str, Callable[..., Any]] | None,
    allow_remote_code: bool,
    read_only: bool,
    max_body_bytes: int,
) -> Starlette:
    _check_settings(require_token, allow_remote_code, read_only, max_body_bytes)
    _check_tasks(tasks)
    server = _Server(
        backend,
        token=require_token,
        tasks=tasks,
        allow_remote_code=allow_remote_code,
        read_only=read_only,
        max_body_bytes=max_body_bytes,
    )
    app = Starlette(
        routes=server.routes(),
        middleware=[Middleware(_Guard, token=require_token, max_body_bytes=max_body_bytes)],
        exception_handlers={HTTPException: _http_exception},
    )
    app.state.cashet = server
    return app


def create_app(
    client: Client,
    *,
    require_token: str | None = None,
    tasks: Mapping[str, Callable[..., Any]] | None = None,
    allow_remote_code: bool = False,
    read_only: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """Build the ASGI app serving ``client``'s cache (run it with uvicorn).

    Args:
        client: the sync ``Client``; its calls run in worker threads.
        require_token: the Bearer token every request must carry (printable ASCII, no
            spaces). ``None``: no authentication — bind to loopback only.
        tasks: callables ``/submit`` may run, by name, in addition to the client's
            ``@client.task`` registry (a name here wins).
        allow_remote_code: also accept the legacy ``func_source``/``func_b64``/``args_b64``/
            ``kwargs_b64`` payloads, which run arbitrary Python. Needs ``require_token``.
        read_only: refuse ``/gc`` and any ``/submit`` that is not already cached (403).
        max_body_bytes: larger request bodies are refused with 413.

    Raises:
        ValueError: ``allow_remote_code`` without a token, a malformed token, or
            ``allow_remote_code`` together with ``read_only``.
        TypeError: ``client`` is not a ``Client`` or ``tasks`` is malformed.
    """
    from cashet.client import Client

    if not isinstance(client, Client):
        raise TypeError(
            f"create_app needs a Client, not {type(client).__name__} "
            "(use create_async_app for an AsyncClient)"
        )
    return _build(
        _SyncBackend(client), require_token, tasks, allow_remote_code, read_only, max_body_bytes
    )


def create_async_app(
    client: AsyncClient,
    *,
    require_token: str | None = None,
    tasks: Mapping[str, Callable[..., Any]] | None = None,
    allow_remote_code: bool = False,
    read_only: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """Build the ASGI app serving an ``AsyncClient``'s cache; as :func:`create_app`.

    Tasks are awaited on the event loop (``async def``) or run in a thread by the client.
    """
    from cashet.async_client import AsyncClient

    if not isinstance(client, AsyncClient):
        raise TypeError(
            f"create_async_app needs an AsyncClient, not {type(client).__name__} "
            "(use create_app for a Client)"
        )
    return _build(
        _AsyncBackend(client), require_token, tasks, allow_remote_code, read_only, max_body_bytes
    )
