"""The HTTP server: a thin Starlette shell over :class:`~cashet.client.Client` or
:class:`~cashet.async_client.AsyncClient` (the ``server`` extra: Starlette + uvicorn).

Safe by default:

* ``POST /submit`` runs only *registered* tasks (``tasks=`` or ``@client.task``) with JSON
  arguments. Client-supplied code (``func_source``, ``func_b64``, ``args_b64``,
  ``kwargs_b64``) is refused with 403 before anything is decoded, unless the app was made
  with ``allow_remote_code=True`` *and* a token (one without the other is a ``ValueError``).
* With ``require_token``, every request — unknown paths and ``/openapi.json`` included —
  needs ``Authorization: Bearer <token>``, checked in constant time by a pure ASGI
  middleware before the body is read (:mod:`cashet.server.guard`); anything else is a 401.
* ``read_only=True`` refuses what would change the store: ``/gc``, and a ``/submit`` that
  is not already cached (403). Cached results are still served.
* Bodies over ``max_body_bytes`` are a 413; every input error is a 4xx JSON
  ``{"error": ..., "field": ...}`` (:mod:`cashet.server.input`); a failed task is a 422
  carrying the last line of its error — never a traceback, a path or an environment value.

Endpoints: ``POST /submit``, ``GET /result/{hash}``, ``GET /commit/{hash}``,
``GET /history/{hash}``, ``GET /diff/{a}/{b}``, ``GET /log``, ``GET /stats``, ``POST /gc``,
``GET /openapi.json`` (:mod:`cashet.server.openapi`).

The sync and async apps share every handler; they differ only in a small backend:
:class:`_SyncBackend` runs ``Client`` calls in worker threads, :class:`_AsyncBackend` awaits
the ``AsyncClient`` (whose provenance methods run its sync twin off the loop).
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import logging
import math
import os
import pickle
import sys
import threading
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

from cashet.client import Client, TaskFunction
from cashet.core.flow import TOUCH_AFTER
from cashet.core.options import make_task_def
from cashet.errors import AmbiguousHashError, BlobError, CommitNotFoundError, StoreError, TaskError
from cashet.hashing import function_identity, hash_call
from cashet.models import Commit, ObjectRef, utcnow
from cashet.protocols import Serializer
from cashet.provenance.query import commit_view, resolve_result
from cashet.serializers import PickleSerializer, SafePickleSerializer
from cashet.server.guard import BodyTooLarge, Guard
from cashet.server.input import (
    MAX_ARG_DEPTH,
    Call,
    HTTPError,
    parse_gc,
    parse_hash,
    parse_json,
    parse_log,
    parse_submit,
)
from cashet.server.openapi import openapi_document
from cashet.stores.sqlite.store import SQLiteStore

if TYPE_CHECKING:
    from cashet.async_client import AsyncClient

__all__ = ["MAX_BODY_BYTES", "SUBMIT_THREADS", "create_app", "create_async_app", "run_app"]

log = logging.getLogger("cashet.server")

R = TypeVar("R")

#: Default largest request body, in bytes (413 beyond).
MAX_BODY_BYTES = 4 * 2**20
#: At most this many tasks run at once in the sync app; reads use other threads, so a
#: server busy computing still answers ``/commit``, ``/log``, ...
SUBMIT_THREADS = 32
#: Results at least this big are decoded off the event loop by the async app.
_BIG_RESULT = 2**20
#: Bodies and results up to this size may be handled on the event loop (sync app, SQLite).
_SMALL = 64 * 2**10


# --- responses and errors -----------------------------------------------------------------------


class _JSON(JSONResponse):
    """Compact JSON with ASCII escapes: any text (lone surrogates too) encodes."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return text.encode("ascii")


def _server_paths() -> list[str]:
    paths = {os.getcwd(), str(Path.home()), sys.prefix, sys.exec_prefix, sys.base_prefix}
    return sorted((p for p in paths if len(p) > 1), key=len, reverse=True)


def _redact(text: str) -> str:
    """Hide the server's own directories (cwd, home, interpreter) in a message."""
    for path in _server_paths():
        text = text.replace(path, "<path>")
    return text


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return _redact(lines[-1])[:1000] if lines else ""


def _error_line(exc: BaseException) -> str:
    """``ValueError: bad input``: the last line of a task's error, redacted."""
    if isinstance(exc, TaskError):
        return _last_line(exc.traceback_text) or _last_line(exc.message)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return _last_line(text)


class _TaskProblem(Exception):
    """A non-cashet exception while running a valid call (its result does not serialize...)."""


def _error_response(exc: Exception) -> Response:
    """The JSON response for an exception that left a handler (never a traceback)."""
    if isinstance(exc, HTTPError):
        return _JSON(exc.body, status_code=exc.status)
    if isinstance(exc, BodyTooLarge):
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

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    return endpoint


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), as JSON."""
    assert isinstance(exc, HTTPException)
    message = "not found" if exc.status_code == 404 else exc.detail
    return _JSON({"error": message}, status_code=exc.status_code, headers=exc.headers)


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Encoded:
    """A result blob in its response form (blobs are immutable: safe to cache)."""

    value: Any
    is_json: bool
    b64: str
    size: int


@dataclass(frozen=True, slots=True)
class _Result:
    """A result read back from the store, ready for a response."""

    commit: Commit | None
    blob_hash: str
    encoded: _Encoded

    def body(self, *, cached: bool | None = None) -> dict[str, Any]:
        out = {
            "commit_hash": None if self.commit is None else self.commit.hash,
            "blob_hash": self.blob_hash,
            "size": self.encoded.size,
            "result": self.encoded.value,
            "result_is_json": self.encoded.is_json,
            "result_b64": self.encoded.b64,
        }
        if cached is not None:
            out["cached"] = cached
        return out


class _NotJSON(Exception):
    pass


_SCALARS = frozenset({str, int, bool, type(None)})
#: Loads builtin containers and scalars only (no NumPy, no classes).
_PLAIN_PICKLE = SafePickleSerializer(allow_numpy=False)


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data (tuples become lists), or raise ``_NotJSON``."""
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
        if not all(type(k) is str for k in value):
            raise _NotJSON
        return {k: _jsonable(v, depth + 1) for k, v in value.items()}
    raise _NotJSON


def _value_loader(serializer: Serializer) -> Callable[[bytes], Any]:
    """How to decode a result for its JSON form.

    Pickles are decoded by the restricted unpickler: JSON data needs only builtins, and a
    store shared with others must not make this server run pickled code. Other
    serializers decode as ``Client.get`` would.
    """
    if isinstance(serializer, PickleSerializer | SafePickleSerializer):
        return _PLAIN_PICKLE.loads
    return serializer.loads


def _encode(data: bytes, loads: Callable[[bytes], Any], blob_hash: str) -> _Encoded:
    """``result`` when the value is JSON data, and always the serializer's bytes in base64."""
    try:
        value, is_json = _jsonable(loads(data)), True
    except (_NotJSON, pickle.UnpicklingError):  # not plain data: base64 only
        value, is_json = None, False
    except Exception as exc:  # bytes this server's serializer cannot load
        log.warning("result %s does not deserialize: %s", blob_hash[:12], type(exc).__name__)
        value, is_json = None, False
    return _Encoded(value, is_json, base64.b64encode(data).decode("ascii"), len(data))


class _Results:
    """Reads and encodes result blobs; remembers the encoding of small ones.

    A blob never changes (its name is its hash, verified on the first read), so a hot
    result is answered without reading or decoding it again.
    """

    MAX_ENTRIES = 2048
    MAX_BYTES = 4096

    def __init__(self, serializer: Serializer) -> None:
        self.loads = _value_loader(serializer)
        self._cache: dict[str, _Encoded] = {}
        self._lock = threading.Lock()

    def cached(self, blob_hash: str) -> _Encoded | None:
        return self._cache.get(blob_hash)

    def encode(self, blob_hash: str, data: bytes) -> _Encoded:
        encoded = _encode(data, self.loads, blob_hash)
        if len(data) <= self.MAX_BYTES:
            with self._lock:
                if len(self._cache) >= self.MAX_ENTRIES:
                    del self._cache[next(iter(self._cache))]
                self._cache[blob_hash] = encoded
        return encoded

    def read(self, client: Client, commit: Commit | None, ref: ObjectRef) -> _Result:
        """The result in ``ref``, read through ``client``'s (sync) store unless cached."""
        encoded = self.cached(ref.hash)
        if encoded is None:
            encoded = self.encode(ref.hash, client.store.get_blob(ref))
        return _Result(commit, ref.hash, encoded)

    def by_hash(self, client: Client, hash: str) -> _Result:
        """``GET /result/{hash}``: a commit hash or prefix, or a full blob hash."""
        ref, commit = resolve_result(client.store, hash)
        return self.read(client, commit, ref)

    def lookup(self, client: Client, call: Call, *, fresh: bool = False) -> _Result | None:
        """The stored result of ``call`` without running it, or ``None``.

        With ``fresh``, also ``None`` unless the hit is small and was recorded within
        ``TOUCH_AFTER``: then a real ``submit`` would not update its access time either.
        """
        options = call.effective_options()
        if not options.cache or options.force:
            return None  # this call runs whatever the cache holds
        args_hash = hash_call(call.func, call.args, call.kwargs)
        task_def = make_task_def(function_identity(call.func), options, args_hash)
        commit = client.store.find_by_fingerprint(task_def.fingerprint)
        if commit is None or commit.result is None:
            return None
        if fresh and (
            commit.result.size > _SMALL
            or commit.last_accessed is None
            or utcnow() - commit.last_accessed > TOUCH_AFTER
        ):
            return None
        return self.read(client, commit, commit.result)


# --- backends: the only difference between the sync and the async app ------------------------


class _SyncBackend:
    """Runs ``Client`` calls in worker threads: one thread hop per request.

    Except the hot reads on the embedded SQLite store (``GET /commit``, a cached
    ``/submit`` with a small body and result), which run on the event loop: its indexed
    reads take less time than the hop and never wait for a writer (WAL mode).
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.results = _Results(client.serializer)
        self.inline_reads = isinstance(client.store, SQLiteStore)
        self._limiter: CapacityLimiter | None = None

    def registered(self) -> Mapping[str, Any]:
        return self.client.tasks

    async def call(self, fn: Callable[[Client], R]) -> R:
        return await anyio.to_thread.run_sync(fn, self.client)

    async def read(self, fn: Callable[[Client], R]) -> R:
        """``call`` for one indexed point read: on the loop when the store allows it."""
        if self.inline_reads:
            return fn(self.client)
        return await self.call(fn)

    def fast_hit(self, call: Call, small: bool) -> _Result | None:
        if self.inline_reads and small:
            return self.results.lookup(self.client, call, fresh=True)
        return None

    async def submit(self, call: Call) -> tuple[_Result, bool]:
        if self._limiter is None:  # made on first use: it needs a running event loop
            self._limiter = CapacityLimiter(SUBMIT_THREADS)
        return await anyio.to_thread.run_sync(self._submit, call, limiter=self._limiter)

    def _submit(self, call: Call) -> tuple[_Result, bool]:
        client = self.client
        # Wrapped again so that the task's own options (name, tags, ...) apply.
        func = TaskFunction(client, call.func, call.base)
        try:
            ref = client.submit(func, *call.args, **call.submit_kwargs(), **call.kwargs)
        except (TaskError, StoreError):
            raise
        except Exception as exc:
            raise _TaskProblem(_error_line(exc)) from exc
        return self.results.read(client, ref.commit, ref.object_ref), ref.cached


class _AsyncBackend:
    """Awaits the ``AsyncClient``."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.results = _Results(client.serializer)

    def registered(self) -> Mapping[str, Any]:
        return self.client.tasks

    async def call(self, fn: Callable[[Client], R]) -> R:
        # How the AsyncClient runs its own provenance methods: its sync twin, off the loop.
        return await self.client._sync(fn)

    async def read(self, fn: Callable[[Client], R]) -> R:
        return await self.call(fn)

    def fast_hit(self, call: Call, small: bool) -> _Result | None:
        return None  # the async store is awaited: no on-loop reads

    async def submit(self, call: Call) -> tuple[_Result, bool]:
        from cashet.async_client import AsyncTaskFunction

        client = self.client
        func: AsyncTaskFunction[Any] = AsyncTaskFunction(client, call.func, call.base)
        try:
            ref = await client.submit(func, *call.args, **call.submit_kwargs(), **call.kwargs)
        except (TaskError, StoreError):
            raise
        except Exception as exc:
            raise _TaskProblem(_error_line(exc)) from exc
        blob_hash = ref.object_ref.hash
        encoded = self.results.cached(blob_hash)
        if encoded is None:
            data = await client.store.get_blob(ref.object_ref)
            if len(data) >= _BIG_RESULT:
                encoded = await anyio.to_thread.run_sync(self.results.encode, blob_hash, data)
            else:
                encoded = self.results.encode(blob_hash, data)
        return _Result(ref.commit, blob_hash, encoded), ref.cached


_Backend = _SyncBackend | _AsyncBackend


# --- handlers, written once ----------------------------------------------------------------------


def _view(commit: Commit, *, full: bool) -> dict[str, Any]:
    view = commit_view(commit, full=full)
    # The stored traceback names the server's files: over HTTP, only its last line.
    view["error"] = _last_line(commit.error) if commit.error else None
    return view


class _Server:
    """Every endpoint, over a backend."""

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

    def lookup(self, name: str) -> Callable[..., Any] | None:
        """``tasks=`` first, then the client's ``@client.task`` registry (read per request)."""
        func = self.tasks.get(name)
        return func if func is not None else self.backend.registered().get(name)

    async def submit(self, request: Request) -> Response:
        raw = await request.body()
        call = parse_submit(
            raw, self.lookup, self.task_names, allow_remote_code=self.allow_remote_code
        )
        hit = self.backend.fast_hit(call, small=len(raw) <= _SMALL)
        if hit is not None:
            return _JSON(hit.body(cached=True))
        if self.read_only:
            results = self.backend.results
            result = await self.backend.call(lambda c: results.lookup(c, call))
            if result is None:
                call.check_signature()  # arguments the task cannot take: 400, as usual
                raise HTTPError(
                    403, "this server is read-only and the call is not cached, so it cannot run"
                )
            return _JSON(result.body(cached=True))
        call.check_signature()
        try:
            result, cached = await self.backend.submit(call)
        except (TaskError, _TaskProblem) as exc:
            raise HTTPError(422, _error_line(exc) or str(exc), task=call.name[:200]) from None
        return _JSON(result.body(cached=cached))

    async def result(self, request: Request) -> Response:
        hash = parse_hash(request.path_params["hash"])
        results = self.backend.results
        result = await self.backend.call(lambda c: results.by_hash(c, hash))
        return _JSON(result.body())

    async def commit(self, request: Request) -> Response:
        hash = parse_hash(request.path_params["hash"])
        commit = await self.backend.read(lambda c: c.show(hash))
        return _JSON(_view(commit, full=True))

    async def history(self, request: Request) -> Response:
        hash = parse_hash(request.path_params["hash"])
        commits = await self.backend.call(lambda c: c.history(hash))
        return _JSON({"commits": [_view(c, full=False) for c in commits]})

    async def diff(self, request: Request) -> Response:
        a = parse_hash(request.path_params["a"], "a")
        b = parse_hash(request.path_params["b"], "b")
        return _JSON(await self.backend.call(lambda c: c.diff(a, b)))

    async def log(self, request: Request) -> Response:
        q = parse_log(request.query_params)
        commits = await self.backend.call(
            lambda c: c.log(func_name=q.func, limit=q.limit, status=q.status, tags=q.tags)
        )
        return _JSON({"commits": [_view(c, full=False) for c in commits]})

    async def stats(self, request: Request) -> Response:
        return _JSON(await self.backend.call(lambda c: c.stats()))

    async def gc(self, request: Request) -> Response:
        if self.read_only:
            raise HTTPError(403, "this server is read-only: gc is disabled")
        q = parse_gc(parse_json(await request.body(), empty_ok=True))
        age = timedelta(days=q.older_than_days)
        evicted = await self.backend.call(
            lambda c: c.gc(older_than=age, max_size_bytes=q.max_size_bytes)
        )
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


# --- factories ----------------------------------------------------------------------------------


def _check_settings(
    require_token: Any, allow_remote_code: Any, read_only: Any, max_body_bytes: Any
) -> None:
    if require_token is not None and (
        not isinstance(require_token, str)
        or not require_token
        or not all("\x21" <= ch <= "\x7e" for ch in require_token)
    ):
        raise ValueError("require_token must be a non-empty string of printable ASCII, no spaces")
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


def _check_tasks(tasks: Any) -> None:
    if tasks is None:
        return
    if not isinstance(tasks, Mapping):
        raise TypeError(f"tasks must map names to callables, not {type(tasks).__name__}")
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
        middleware=[Middleware(Guard, token=require_token, max_body_bytes=max_body_bytes)],
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
            spaces). ``None``: no authentication — then bind to loopback only.
        tasks: callables ``/submit`` may run, by name, besides the client's
            ``@client.task`` registry (a name here wins).
        allow_remote_code: also accept the legacy ``func_source``/``func_b64``/
            ``args_b64``/``kwargs_b64`` payloads, which run arbitrary Python. Needs
            ``require_token``.
        read_only: refuse ``/gc`` and every ``/submit`` that is not already cached (403).
        max_body_bytes: larger request bodies are refused with 413.

    Raises:
        ValueError: ``allow_remote_code`` without a token (or with ``read_only``), or a
            malformed token.
        TypeError: ``client`` is not a ``Client``, or ``tasks`` is malformed.
    """
    if not isinstance(client, Client):
        raise TypeError(
            f"create_app needs a Client, not {type(client).__name__} "
            "(use create_async_app for an AsyncClient)"
        )
    backend = _SyncBackend(client)
    return _build(backend, require_token, tasks, allow_remote_code, read_only, max_body_bytes)


def create_async_app(
    client: AsyncClient,
    *,
    require_token: str | None = None,
    tasks: Mapping[str, Callable[..., Any]] | None = None,
    allow_remote_code: bool = False,
    read_only: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """Build the ASGI app serving an ``AsyncClient``'s cache, as :func:`create_app`.

    ``async def`` tasks are awaited on the server's event loop; plain ones run in threads.

    Raises:
        ValueError, TypeError: as :func:`create_app`.
    """
    from cashet.async_client import AsyncClient

    if not isinstance(client, AsyncClient):
        raise TypeError(
            f"create_async_app needs an AsyncClient, not {type(client).__name__} "
            "(use create_app for a Client)"
        )
    backend = _AsyncBackend(client)
    return _build(backend, require_token, tasks, allow_remote_code, read_only, max_body_bytes)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_app(
    app: Starlette, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any
) -> None:
    """Serve an app made by :func:`create_app` with uvicorn until interrupted.

    Logs a warning when the app has no token and ``host`` is not a loopback address: then
    anyone who can reach the port can run the registered tasks and ``/gc``.
    """
    import uvicorn

    server: _Server = app.state.cashet
    if server.token is None and not _is_loopback(host):
        log.warning(
            "serving on %s without a token: anyone who can reach port %s can run the "
            "registered tasks and gc (use require_token / --require-token)",
            host,
            port,
        )
    if "log_config" not in uvicorn_options:
        # uvicorn's own logging, plus our logger: unexpected errors show with traceback.
        from uvicorn.config import LOGGING_CONFIG

        config = copy.deepcopy(LOGGING_CONFIG)
        config["loggers"]["cashet"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
        uvicorn_options["log_config"] = config
    uvicorn.run(app, host=host, port=port, **uvicorn_options)
