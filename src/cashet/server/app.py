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
``GET /openapi.json`` (:mod:`cashet.server.openapi`), and the web UI's pages under ``/ui/``
(:mod:`cashet.server.ui`).

The sync and async apps share every handler; they differ only in a small backend
(:mod:`cashet.server.backend`). The server never imports a client: it is handed one and
calls its public methods. Results are encoded by :mod:`cashet.server.results`, errors
mapped by :mod:`cashet.server.responses`.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cashet.errors import CashetError, TaskError
from cashet.models import Commit
from cashet.provenance.query import require_commit
from cashet.provenance.views import commit_view
from cashet.server.backend import SMALL, AsyncBackend, Backend, SyncBackend, is_async_client
from cashet.server.guard import Guard
from cashet.server.input import HTTPError, parse_gc, parse_hash, parse_json, parse_log, parse_submit
from cashet.server.openapi import openapi_document
from cashet.server.responses import (
    JSONBody,
    TaskProblem,
    error_line,
    error_response,
    http_exception,
    last_line,
)
from cashet.server.ui.routes import UI

if TYPE_CHECKING:
    from cashet.async_client import AsyncClient
    from cashet.client import Client

__all__ = ["MAX_BODY_BYTES", "create_app", "create_async_app", "is_loopback", "run_app"]

log = logging.getLogger("cashet.server")

#: Default largest request body, in bytes (413 beyond).
MAX_BODY_BYTES = 4 * 2**20


Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            return error_response(exc)

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    return endpoint


# --- handlers, written once ----------------------------------------------------------------------


def _view(commit: Commit, *, full: bool) -> dict[str, Any]:
    view = commit_view(commit, full=full)
    # The stored traceback names the server's files: over HTTP, only its last line.
    view["error"] = last_line(commit.error) if commit.error else None
    return view


class _Server:
    """Every endpoint, over a backend."""

    def __init__(
        self,
        backend: Backend,
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

    def find_task(self, name: str) -> Callable[..., Any] | None:
        """``tasks=`` first, then the client's ``@client.task`` registry (read per request)."""
        func = self.tasks.get(name)
        return func if func is not None else self.backend.registered().get(name)

    async def submit(self, request: Request) -> Response:
        raw = await request.body()
        sub = parse_submit(
            raw, self.find_task, self.task_names, allow_remote_code=self.allow_remote_code
        )
        hit = self.backend.fast_hit(sub, small=len(raw) <= SMALL)
        if hit is not None:
            return JSONBody(hit.body(cached=True))
        if self.read_only:
            result = await self.backend.cached(sub)
            if result is None:
                sub.check_signature()  # arguments the task cannot take: 400, as usual
                raise HTTPError(
                    403, "this server is read-only and the call is not cached, so it cannot run"
                )
            return JSONBody(result.body(cached=True))
        sub.check_signature()
        try:
            result, cached = await self.backend.submit(sub)
        except (TaskError, TaskProblem) as exc:
            # The published answer's shape: a fixed error, the failure's last line as detail
            # (never a traceback: no file paths); `cashet show` has the rest.
            detail = error_line(exc) or str(exc)
            raise HTTPError(422, "task failed", detail=detail, task=sub.name[:200]) from None
        return JSONBody(result.body(cached=cached))

    async def result(self, request: Request) -> Response:
        hash = parse_hash(request.path_params["hash"])
        result = await self.backend.by_hash(hash)
        return JSONBody(result.body())

    async def commit(self, request: Request) -> Response:
        hash = parse_hash(request.path_params["hash"])
        commit = require_commit(await self.backend.read("show", hash), hash)
        return JSONBody(_view(commit, full=True))

    async def history(self, request: Request) -> Response:
        hash = parse_hash(request.path_params["hash"])
        commits = await self.backend.call("history", hash)
        return JSONBody({"commits": [_view(c, full=False) for c in commits]})

    async def diff(self, request: Request) -> Response:
        a = parse_hash(request.path_params["a"], "a")
        b = parse_hash(request.path_params["b"], "b")
        return JSONBody(await self.backend.call("diff", a, b))

    async def log(self, request: Request) -> Response:
        q = parse_log(request.query_params)
        commits = await self.backend.call(
            "log", func_name=q.func, limit=q.limit, status=q.status, tags=q.tags
        )
        return JSONBody([_view(c, full=False) for c in commits])  # a list, as published

    async def stats(self, request: Request) -> Response:
        return JSONBody(await self.backend.call("stats"))

    async def gc(self, request: Request) -> Response:
        if self.read_only:
            raise HTTPError(403, "this server is read-only: gc is disabled")
        q = parse_gc(parse_json(await request.body(), empty_ok=True))
        age = timedelta(days=q.older_than_days)
        evicted = await self.backend.call("gc", older_than=age, max_size_bytes=q.max_size_bytes)
        return JSONBody({"evicted": evicted, "deleted": evicted})  # deleted: published name

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
            *UI(self.backend, self.token, self.read_only).routes(),
        ]


# --- factories ----------------------------------------------------------------------------------


def _check_settings(
    require_token: Any, allow_remote_code: Any, read_only: Any, max_body_bytes: Any
) -> None:
    if allow_remote_code is True and not require_token:
        raise ValueError(
            "allow_remote_code=True requires require_token (a non-empty token): remote code "
            "runs arbitrary Python, so it is only served to clients holding the token"
        )
    if require_token is not None and (
        not isinstance(require_token, str)
        or not require_token
        or not all("\x21" <= ch <= "\x7e" for ch in require_token)
    ):
        raise ValueError("require_token must be a non-empty string of printable ASCII, no spaces")
    if not isinstance(allow_remote_code, bool) or not isinstance(read_only, bool):
        raise TypeError("allow_remote_code and read_only must be True or False")
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
    backend: Backend,
    require_token: str | None,
    tasks: Mapping[str, Callable[..., Any]] | None,
    allow_remote_code: bool,
    read_only: bool,
    max_body_bytes: int,
    max_content_length: int | None,
) -> Starlette:
    if max_content_length is not None:  # the published cashet's name wins
        max_body_bytes = max_content_length
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
        exception_handlers={HTTPException: http_exception},
    )
    app.state.cashet = server
    app.state.client = backend.client  # the client served (the published app's attribute)
    return app


def create_app(
    client: Client,
    *,
    require_token: str | None = None,
    tasks: Mapping[str, Callable[..., Any]] | None = None,
    allow_remote_code: bool = False,
    read_only: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_content_length: int | None = None,
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
        max_content_length: the published cashet's name for ``max_body_bytes`` (wins).

    Raises:
        ValueError: ``allow_remote_code`` without a token (or with ``read_only``), or a
            malformed token.
        TypeError: ``client`` is not a ``Client``, or ``tasks`` is malformed.
    """
    if not callable(getattr(client, "submit", None)) or is_async_client(client):
        raise TypeError(
            f"create_app needs a Client, not {type(client).__name__} "
            "(use create_async_app for an AsyncClient)"
        )
    backend = SyncBackend(client)
    return _build(
        backend,
        require_token,
        tasks,
        allow_remote_code,
        read_only,
        max_body_bytes,
        max_content_length,
    )


def create_async_app(
    client: AsyncClient,
    *,
    require_token: str | None = None,
    tasks: Mapping[str, Callable[..., Any]] | None = None,
    allow_remote_code: bool = False,
    read_only: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_content_length: int | None = None,
) -> Starlette:
    """Build the ASGI app serving an ``AsyncClient``'s cache, as :func:`create_app`.

    ``async def`` tasks are awaited on the server's event loop; plain ones run in threads.

    Raises:
        ValueError, TypeError: as :func:`create_app`.
    """
    if not is_async_client(client):
        raise TypeError(
            f"create_async_app needs an AsyncClient, not {type(client).__name__} "
            "(use create_app for a Client)"
        )
    backend = AsyncBackend(client)
    return _build(
        backend,
        require_token,
        tasks,
        allow_remote_code,
        read_only,
        max_body_bytes,
        max_content_length,
    )


def check_port(host: str, port: int) -> None:
    """Fail clearly when ``host:port`` is in use (another server listens there).

    Raises:
        CashetError: the port is busy; the message names the address and the way out.
    """
    import errno
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            sock.bind(address)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return  # another trouble (an address not of this machine): uvicorn reports it
        raise CashetError(
            f"cannot serve on {host}:{port}: {exc.strerror or 'address in use'} (another"
            " server is listening there? choose a port with --port)"
        ) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.0.0.1``, ``::1``...)."""
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

    Raises ``CashetError`` when the address cannot be bound (a busy port). Logs a warning
    when the app has no token and ``host`` is not a loopback address: then
    anyone who can reach the port can run the registered tasks and ``/gc``.
    """
    import uvicorn

    server: _Server = app.state.cashet
    check_port(host, port)
    if server.token is None and not is_loopback(host):
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
