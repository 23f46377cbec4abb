"""The web UI's routes: each request read, the client called, a page rendered.

The cache is reached only through the server's backend, i.e. the client's public methods
(``log_page``, ``show``, ``diff``, ``why``, ``lineage``, ``stats``, ``savings_by_function``,
``log``, ``result_bytes``, ``rm``, ``gc``), as every endpoint of the server does. Pages are
read-only unless the server is writable *and* has a token: then a commit can be deleted
and the cache collected, by forms carrying a CSRF value. Every response forbids scripts and
styles from anywhere but the server itself (Content-Security-Policy) and inline ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cashet.errors import AmbiguousHashError, CommitNotFoundError
from cashet.models import TaskStatus
from cashet.provenance.query import require_commit
from cashet.server.input import HTTPError, parse_hash
from cashet.server.responses import error_response, redact
from cashet.server.ui.auth import COOKIE, UiAuth
from cashet.server.ui.compare import diff_body, lineage_body, why_body
from cashet.server.ui.html import Safe, commit_url, esc, link, page, short, tag, url
from cashet.server.ui.views import ListQuery, commit_body, list_body, stats_body

if TYPE_CHECKING:
    from cashet.server.backend import Backend

__all__ = ["UI", "html_response", "redirect"]

log = logging.getLogger("cashet.server")

#: Results up to this size are decoded (by the restricted unpickler) to show their value.
PREVIEW_MAX = 64 * 1024
#: The lineage page's graph is cut at this many commits.
LINEAGE_NODES = 60
_ASSETS = {"ui.css": "text/css", "lineage.js": "text/javascript", "favicon.svg": "image/svg+xml"}
_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


def html_response(
    document: str, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """An HTML page with the UI's security headers."""
    return Response(
        document,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={**_HEADERS, **(headers or {})},
    )


def redirect(location: str, headers: dict[str, str] | None = None) -> Response:
    """A 303 to a path of this server."""
    return Response(status_code=303, headers={"location": location, **_HEADERS, **(headers or {})})


class UI:
    """The ``/ui/`` pages over a backend.

    Args:
        backend: the server's backend (the client's public methods).
        token: the server's token (``None``: the UI is open, as the API is).
        read_only: the server refuses writes: no delete or GC buttons.
    """

    def __init__(self, backend: Backend, token: str | None, read_only: bool) -> None:
        self.backend = backend
        self.auth = UiAuth(token)
        #: Delete and GC only on a writable server with a token.
        self.writable = not read_only and token is not None

    def _page(self, request: Request, title: str, body: Any, **kw: Any) -> Response:
        signed_in = self.auth.token is not None and COOKIE in request.cookies
        return html_response(page(title, body, signed_in=signed_in, **kw))

    # --- pages ---------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        p = request.query_params
        status = p.get("status", "").strip().lower()
        if status and status not in {s.value for s in TaskStatus.recorded()}:
            raise HTTPError(400, f"unknown status {status[:40]!r}", field="status")
        try:
            limit = int(p.get("limit", "50"))
        except ValueError:
            raise HTTPError(400, "limit must be a number", field="limit") from None
        if not 1 <= limit <= 200:
            raise HTTPError(400, "limit must be from 1 to 200", field="limit")
        q = ListQuery(
            func=p.get("func", "").strip()[:500],
            tags=p.get("tags", "").strip()[:1000],
            status=status,
            text=p.get("q", "").strip()[:200],
            cursor=p.get("cursor", "").strip()[:100],
            limit=limit,
        )
        result = await self.backend.call(
            "log_page",
            func_name=q.func or None,
            status=q.status or None,
            tags=q.tag_query(),
            text=q.text or None,
            cursor=q.cursor or None,
            limit=q.limit,
        )
        body = list_body(result, q)
        deleted = p.get("deleted", "")
        if deleted:
            notice = tag("p", f"Deleted commit {short(deleted)}.", class_="notice", role="status")
            body = Safe(notice + body)
        return self._page(request, "Commits", body, active="/ui/")

    async def commit(self, request: Request) -> Response:
        h = parse_hash(request.path_params["hash"])
        commit = require_commit(await self.backend.call("show", h), h)
        if commit.hash != h:  # a prefix or a result's hash: the commit's own address
            return redirect(commit_url(commit.hash))
        preview = None
        if commit.result is not None and commit.result.size <= PREVIEW_MAX:
            try:
                served = await self.backend.by_hash(commit.hash)
                preview = (served.encoded.value, served.encoded.is_json)
            except Exception as exc:  # the page still shows the rest
                log.warning("result of %s unreadable: %s", short(commit.hash), type(exc).__name__)
        csrf = self.auth.csrf if self.writable else None
        body = commit_body(commit, preview=preview, csrf=csrf)
        return self._page(request, f"{commit.func_name} · {short(commit.hash)}", body)

    async def result(self, request: Request) -> Response:
        h = parse_hash(request.path_params["hash"])
        data: bytes = await self.backend.call("result_bytes", h)
        # The serializer's bytes, as GET /result/{hash} gives them in base64: the server
        # never unpickles them for this; loading them is the downloader's choice.
        return Response(
            data,
            media_type="application/octet-stream",
            headers={
                **_HEADERS,
                "content-disposition": f'attachment; filename="{short(h)}.result"',
            },
        )

    async def diff(self, request: Request) -> Response:
        a = parse_hash(request.path_params["a"], "a")
        b = parse_hash(request.path_params["b"], "b")
        result = await self.backend.call("diff", a, b)
        ca = require_commit(await self.backend.call("show", result["hash_a"]), a)
        cb = require_commit(await self.backend.call("show", result["hash_b"]), b)
        title = f"Diff {short(ca.hash)} → {short(cb.hash)}"
        return self._page(request, title, diff_body(result, ca, cb))

    async def compare(self, request: Request) -> Response:
        picked = request.query_params.getlist("c")
        if len(picked) != 2:
            raise HTTPError(400, "check exactly two commits to compare", field="c")
        a, b = (parse_hash(h, "c") for h in picked)
        return redirect(f"/ui/diff/{a}/{b}")

    async def why(self, request: Request) -> Response:
        h = parse_hash(request.path_params["hash"])
        explanation = await self.backend.call("why", h)
        title = f"Why {short(explanation.commit.hash)} was computed"
        return self._page(request, title, why_body(explanation))

    async def lineage(self, request: Request) -> Response:
        h = parse_hash(request.path_params["hash"])
        graph = await self.backend.call("lineage", h, 10, LINEAGE_NODES)
        data = graph.to_dict()
        title = f"Lineage of {short(graph.root)}"
        return self._page(request, title, lineage_body(data), scripts=["lineage.js"])

    async def stats(self, request: Request) -> Response:
        counters = await self.backend.call("stats")
        running = await self.backend.call("log", status="running", limit=200)
        usage = await self.backend.call("savings_by_function")
        csrf = self.auth.csrf if self.writable else None
        message = ""
        evicted = request.query_params.get("evicted", "")
        if evicted.isdigit():
            message = f"GC evicted {int(evicted):,} commits."
        body = stats_body(counters, running, usage, csrf=csrf, message=message)
        return self._page(request, "Stats", body, active="/ui/stats")

    # --- writes (a writable server with a token only) -----------------------------------------

    async def _form(self, request: Request) -> dict[str, str]:
        if not self.writable:
            raise HTTPError(403, "this server's UI is read-only (start it writable, with a token)")
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        form = {k: v[0] for k, v in fields.items() if v}
        if not self.auth.csrf_matches(form.get("csrf", "")):
            raise HTTPError(403, "the form is stale or forged (no valid CSRF value)")
        return form

    async def delete(self, request: Request) -> Response:
        h = parse_hash(request.path_params["hash"])
        await self._form(request)
        await self.backend.call("rm", h)
        return redirect(url("/ui/", deleted=h))

    async def gc(self, request: Request) -> Response:
        form = await self._form(request)
        try:
            days = float(form.get("older_than_days", "30"))
        except ValueError:
            raise HTTPError(400, "older_than_days must be a number") from None
        if not 0 <= days <= 36500:
            raise HTTPError(400, "older_than_days must be from 0 to 36500")
        evicted = await self.backend.call("gc", older_than=timedelta(days=days))
        return redirect(url("/ui/stats", evicted=evicted))

    # --- login, assets --------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if self.auth.token is None:
            return redirect("/ui/")
        status, problem = 200, ""
        if request.method == "POST":
            fields = parse_qs((await request.body()).decode("utf-8", "replace"))
            given = (fields.get("token") or [""])[0]
            if given and self.auth.token_matches(given):
                cookie = f"{COOKIE}={self.auth.session}; Path=/ui; HttpOnly; SameSite=Strict" + (
                    "; Secure" if request.url.scheme == "https" else ""
                )
                return redirect("/ui/", headers={"set-cookie": cookie})
            status, problem = 401, "That is not the server's token."
        form = tag(
            "form",
            tag("p", problem, class_="error-text", role="alert") if problem else "",
            tag(
                "label",
                tag("span", "Token"),
                tag(
                    "input",
                    type="password",
                    name="token",
                    autocomplete="current-password",
                    required=True,
                    autofocus=True,
                ),
            ),
            tag("button", "Sign in", type="submit"),
            method="post",
            action="/ui/login",
            class_="login",
        )
        return html_response(page("Sign in", form), status)

    async def logout(self, request: Request) -> Response:
        expired = f"{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
        return redirect("/ui/login", headers={"set-cookie": expired})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        media = _ASSETS.get(name)
        if media is None:
            raise HTTPError(404, "no such asset")
        data = resources.files("cashet.server.ui").joinpath("static", name).read_bytes()
        headers = {**_HEADERS, "cache-control": "public, max-age=86400"}
        return Response(data, media_type=media, headers=headers)

    # --- wiring ---------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """The UI's routes (mounted by :mod:`cashet.server.app`)."""

        def route(path: str, handler: Handler, *methods: str) -> Route:
            return Route(path, _html_errors(handler), methods=list(methods))

        return [
            Route("/ui", lambda request: redirect("/ui/"), methods=["GET"]),
            route("/ui/", self.index, "GET"),
            route("/ui/commit/{hash}", self.commit, "GET"),
            route("/ui/commit/{hash}/delete", self.delete, "POST"),
            route("/ui/result/{hash}", self.result, "GET"),
            route("/ui/diff/{a}/{b}", self.diff, "GET"),
            route("/ui/compare", self.compare, "GET"),
            route("/ui/why/{hash}", self.why, "GET"),
            route("/ui/lineage/{hash}", self.lineage, "GET"),
            route("/ui/stats", self.stats, "GET"),
            route("/ui/gc", self.gc, "POST"),
            route("/ui/login", self.login, "GET", "POST"),
            route("/ui/logout", self.logout, "POST"),
            route("/ui/static/{name}", self.static, "GET"),
        ]


def _html_errors(handler: Handler) -> Handler:
    """Errors as pages: the JSON API's status, a readable message, never a traceback."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            return _error_page(exc)

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    return endpoint


def _error_page(exc: Exception) -> Response:
    if isinstance(exc, HTTPError):
        status, message = exc.status, str(exc.body.get("error", "bad request"))
    elif isinstance(exc, AmbiguousHashError):
        status, message = 409, f"The prefix {exc.prefix!r} names several commits:"
    elif isinstance(exc, CommitNotFoundError):
        status, message = 404, redact(str(exc))
    elif isinstance(exc, ValueError | TypeError):
        status, message = 400, redact(str(exc))[:500]
    else:
        status = error_response(exc).status_code  # logs it as the API would
        message = "The cache could not be read." if status >= 500 else "Request refused."
    body: list[Any] = [tag("p", message, class_="error-text", id="problem")]
    if isinstance(exc, AmbiguousHashError):
        body.append(
            tag("ul", *(tag("li", link(commit_url(c), tag("code", c))) for c in exc.candidates))
        )
    body.append(tag("p", link("/ui/", "Back to the commits")))
    return html_response(page(f"Error {status}", Safe("".join(map(esc, body)))), status)
