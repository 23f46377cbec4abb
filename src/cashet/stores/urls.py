"""Stores named by URL: ``Client(store="redis://...")``, ``CASHET_STORE``, ``cashet --store``.

* ``sqlite:///abs/path`` (as ``file:`` URLs: three slashes, then an absolute path),
  ``sqlite:relative/path`` or ``sqlite://./relative/path``, or a plain directory path: the
  embedded SQLite store in that directory;
* ``redis://[:password@]host:port/db``, ``rediss://...`` (TLS), ``unix:///path/redis.sock``:
  the Redis store; ``?prefix=team:`` sets its key prefix (the other query parameters are
  redis-py's);
* ``postgresql://[user[:password]@]host[:port]/dbname`` (or ``postgres://``): the
  PostgreSQL store; ``?schema=team`` names the PostgreSQL schema of its tables (the other
  query parameters are libpq's).

An unknown scheme is a ``ValueError`` that names it and the known ones. A URL's password
never appears in an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["SCHEMES", "open_async_store", "open_store", "sqlite_path"]

SCHEMES = ("sqlite", "redis", "rediss", "unix", "postgresql", "postgres")
_REDIS = ("redis", "rediss", "unix")
_POSTGRES = ("postgresql", "postgres")


def _scheme(url: str) -> str:
    head, sep, _ = url.partition(":")
    if not sep or "/" in head or "\\" in head or len(head) < 2:
        return ""  # a path (C:\\ on Windows has a one-letter "scheme")
    return head.lower()


def sqlite_path(url: str) -> Path | None:
    """The directory a ``sqlite:`` URL (or a plain path) names; ``None`` for other schemes.

    Raises:
        ValueError: an unknown scheme, or a ``sqlite:`` URL without a path.
    """
    scheme = _scheme(url)
    if not scheme:
        return Path(url)
    if scheme not in SCHEMES:
        raise ValueError(
            f"unknown store URL scheme {scheme!r}: use {', '.join(s + ':' for s in SCHEMES)}"
            " or a directory path"
        )
    if scheme != "sqlite":
        return None
    rest = url[len("sqlite:") :]
    if rest.startswith("//"):
        rest = rest[2:]  # sqlite:///abs -> /abs; sqlite://./rel -> ./rel
    if not rest:
        raise ValueError("a sqlite: store URL needs a directory: sqlite:///path/to/.cashet")
    return Path(os.path.expanduser(rest))


def _redis_args(url: str) -> tuple[str, dict[str, Any]]:
    """The URL for redis-py (our ``prefix`` parameter taken out of its query) and ours."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    kwargs: dict[str, Any] = {}
    kept = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "prefix":
            kwargs["prefix"] = value
        else:
            kept.append((key, value))
    return (f"{base}?{urlencode(kept)}" if kept else base), kwargs


def open_store(url: str, **options: Any) -> Any:
    """Open the (sync) store ``url`` names; ``options`` go to its constructor."""
    return _open_url(url, False, **options)


def open_async_store(url: str, **options: Any) -> Any:
    """Open the async store ``url`` names (``AsyncSQLiteStore`` or ``AsyncRedisStore``)."""
    return _open_url(url, True, **options)


def _open_url(url: str, asynchronous: bool, **options: Any) -> Any:
    if _scheme(url) in _POSTGRES:
        return _postgres(url, asynchronous, **options)
    path = sqlite_path(url)
    if path is not None:
        return _sqlite(path, asynchronous, **options)
    return _redis(url, asynchronous, **options)


def client_store(
    store: Any, store_dir: str | os.PathLike[str] | None, default_dir: Path, readonly: bool,
    *, asynchronous: bool, mode: str = "normal",
) -> Any:  # fmt: skip
    """The store a client is given: a store object as it is; a URL string opened; else the
    SQLite store in ``store_dir``, or the URL in ``$CASHET_STORE``, or ``default_dir``.

    In ``mode`` ``"off"`` or ``"readonly"`` a SQLite store is opened read-only, and one
    that does not exist is an empty stand-in (nothing is created)."""
    unwritten = mode in ("off", "readonly")
    readonly = readonly or unwritten
    if store is None and store_dir is None and os.environ.get("CASHET_STORE"):
        store = os.environ["CASHET_STORE"]
    if isinstance(store, str):
        if _scheme(store) in _POSTGRES:  # made read-only by the client's mode, as Redis
            return _postgres(store, asynchronous)
        path = sqlite_path(store)
        if path is None:  # Redis: made read-only by the client's mode, not by the store
            return _redis(store, asynchronous)
        if unwritten and not path.exists():
            return _empty(path, asynchronous)
        return _sqlite(path, asynchronous, readonly=readonly)
    if store is not None:
        return store
    path = Path(store_dir) if store_dir is not None else default_dir
    if unwritten and not path.exists():
        return _empty(path, asynchronous)
    return _sqlite(path, asynchronous, readonly=readonly)  # a path, never parsed as a URL


def _empty(path: Path, asynchronous: bool) -> Any:
    from cashet.stores.modes import AsyncEmptyStore, EmptyStore

    return (AsyncEmptyStore if asynchronous else EmptyStore)(path.as_posix())


def _redis(url: str, asynchronous: bool, **options: Any) -> Any:
    target, kwargs = _redis_args(url)
    if asynchronous:
        from cashet.stores.redis.async_store import AsyncRedisStore

        return AsyncRedisStore(target, **{**kwargs, **options})
    from cashet.stores.redis.store import RedisStore

    return RedisStore(target, **{**kwargs, **options})


def _sqlite(path: Path, asynchronous: bool, **options: Any) -> Any:
    if asynchronous:
        from cashet.stores.sqlite.async_store import AsyncSQLiteStore

        return AsyncSQLiteStore(path, **options)
    from cashet.stores.sqlite.store import SQLiteStore

    return SQLiteStore(path, **options)


def _postgres_args(url: str) -> tuple[str, dict[str, Any]]:
    """The DSN for libpq (our ``schema`` parameter taken out of its query) and ours."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    kwargs: dict[str, Any] = {}
    kept = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "schema":
            kwargs["schema"] = value
        else:
            kept.append((key, value))
    return (f"{base}?{urlencode(kept)}" if kept else base), kwargs


def _postgres(url: str, asynchronous: bool, **options: Any) -> Any:
    """The PostgreSQL store ``url`` names (``cashet[postgres]``)."""
    target, kwargs = _postgres_args(url)
    try:
        if asynchronous:
            from cashet.stores.postgres.async_store import AsyncPostgresStore

            return AsyncPostgresStore(target, **{**kwargs, **options})
        from cashet.stores.postgres.store import PostgresStore
    except ImportError as exc:
        raise ImportError(
            f"a postgresql: store needs psycopg and psycopg-pool: pip install"
            f" 'cashet[postgres]' ({exc})"
        ) from None
    return PostgresStore(target, **{**kwargs, **options})
