"""HTML for the web UI, built in Python with everything escaped.

Every value a page shows is user data (sources, arguments, tags, errors), so no text goes
into a page unescaped: :func:`esc` escapes anything that is not already :class:`Safe`,
and :func:`tag` and :func:`join` build markup from escaped parts only. A page is
:func:`page` around its body; every asset is the package's own (``static/``), named with a
version so a new release is never served an old cached file.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from cashet._humanize import format_size
from cashet._version import __version__

__all__ = [
    "Safe",
    "esc",
    "fmt_bytes",
    "fmt_seconds",
    "fmt_time",
    "join",
    "link",
    "page",
    "short",
    "status_badge",
    "table",
    "tag",
    "url",
]


class Safe(str):
    """Markup already escaped (or written here as a literal): :func:`esc` leaves it alone."""

    __slots__ = ()


def esc(value: Any) -> Safe:
    """``value`` as HTML text: escaped, quotes included, unless already :class:`Safe`."""
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Safe:
    """Escaped parts, joined."""
    return Safe(esc(sep).join(esc(p) for p in parts))


def tag(element: str, /, *children: Any, **attrs: Any) -> Safe:
    """``<name attrs>children</name>``; ``class_`` is ``class``; ``None``/``False`` drop an
    attribute, ``True`` writes it bare. Attribute names are the caller's literals."""
    parts = [element]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        key = key.rstrip("_").replace("_", "-")
        parts.append(key if value is True else f'{key}="{esc(value)}"')
    opening = "<" + " ".join(parts) + ">"
    if element in ("input", "br", "meta", "link", "img"):
        return Safe(opening)
    return Safe(f"{opening}{join(children)}</{element}>")


def url(path: str, **query: Any) -> str:
    """``path`` with the query parameters that are set (``None`` and ``""`` left out)."""
    items = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
    return f"{path}?{urlencode(items)}" if items else path


def link(href: str, *children: Any, **attrs: Any) -> Safe:
    """An ``<a>`` (``href`` is escaped like any attribute)."""
    return tag("a", *children, href=href, **attrs)


def commit_url(hash: str) -> str:
    """The page of a commit (hashes are hex: quoted anyway)."""
    return f"/ui/commit/{quote(hash, safe='')}"


def short(hash: str | None) -> str:
    """The 12-digit form of a hash."""
    return (hash or "")[:12]


def fmt_time(value: datetime | None) -> str:
    """``2026-01-02 03:04:05`` in UTC, or ``—``."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_seconds(value: float | None) -> str:
    """A duration for people: ``12 ms``, ``3.4 s``, ``2 min 5 s``, ``—``."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.001 else f"{value * 1e6:.0f} µs"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def fmt_bytes(value: int | None) -> str:
    """A size for people, or ``—``."""
    return "—" if value is None else format_size(value)


def status_badge(status: str) -> Safe:
    """The status of a commit, coloured by the stylesheet."""
    return tag("span", status, class_=f"badge badge-{status}")


def table(
    headers: Iterable[Any], rows: Iterable[Iterable[Any]], class_: str = "grid", **attrs: Any
) -> Safe:
    """A table of escaped cells (a cell that is :class:`Safe` markup stays markup)."""
    head = tag("thead", tag("tr", *(tag("th", h) for h in headers)))
    body = tag("tbody", *(tag("tr", *(tag("td", cell) for cell in row)) for row in rows))
    return tag("table", head, body, class_=class_, **attrs)


def definition_list(items: Mapping[str, Any]) -> Safe:
    """``<dl>`` of label → value."""
    return tag("dl", *(Safe(tag("dt", k) + tag("dd", v)) for k, v in items.items()), class_="facts")


_NAV = (("/ui/", "Commits"), ("/ui/stats", "Stats"))


def page(
    title: str,
    body: Any,
    *,
    active: str = "",
    scripts: Iterable[str] = (),
    signed_in: bool = False,
) -> str:
    """A whole HTML document: the header, ``body`` and the package's own assets only."""
    nav = [link(href, label, class_="active" if href == active else None) for href, label in _NAV]
    if signed_in:
        nav.append(
            tag(
                "form",
                tag("button", "Sign out", type="submit", class_="linkish"),
                method="post",
                action="/ui/logout",
                class_="inline",
            )
        )
    head = tag(
        "head",
        tag("meta", charset="utf-8"),
        tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
        tag("title", f"{title} · cashet"),
        tag("link", rel="icon", href=asset("favicon.svg"), type="image/svg+xml"),
        tag("link", rel="stylesheet", href=asset("ui.css")),
        *(tag("script", src=asset(name), defer=True) for name in scripts),
    )
    header = tag(
        "header",
        link("/ui/", tag("strong", "cashet"), class_="brand"),
        tag("nav", *nav),
    )
    main = tag("main", tag("h1", title), body)
    footer = tag("footer", f"cashet {__version__} · read from the cache, never from the network")
    return "<!doctype html>\n" + tag("html", head, tag("body", header, main, footer), lang="en")


def asset(name: str) -> str:
    """The URL of a packaged asset (versioned: caches never serve an old one)."""
    return f"/ui/static/{quote(name)}?v={quote(__version__)}"
