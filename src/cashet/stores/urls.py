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

Any of them may name its blob store (issue 16) with a last query parameter ``blobs=``, whose
value is the rest of the URL (its own ``?...&...`` included):
``sqlite:///srv/meta?blobs=s3://bucket/team/cache?endpoint=http://127.0.0.1:9000&allow_http=1``.
Without it, ``$CASHET_BLOBS`` names the blob store of a store the client opens itself (a URL
or its directory, never a store object). Blob store URLs: :func:`open_blob_url`.

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
    url, options = with_blobs(url, options)
    if _scheme(url) in _POSTGRES:
        return _postgres(url, asynchronous, **options)
    path = sqlite_path(url)
    if path is not None:
        return _sqlite(path, asynchronous, **options)
    return _redis(url, asynchronous, **options)


def client_store(
    store: Any, store_dir: str | os.PathLike[str] | None, default_dir: Path, readonly: bool,
    *, asynchronous: bool, mode: str = "normal",
    local_cache: str | os.PathLike[str] | None = None,
) -> Any:  # fmt: skip
    """The store a client is given: a store object as it is; a URL string opened; else the
    SQLite store in ``store_dir``, or the URL in ``$CASHET_STORE``, or ``default_dir``;
    with ``local_cache``, its object store's blobs cached in that directory.

    In ``mode`` ``"off"`` or ``"readonly"`` a SQLite store is opened read-only, and one
    that does not exist is an empty stand-in (nothing is created)."""
    opened = _client_store(store, store_dir, default_dir, readonly, asynchronous, mode)
    if local_cache is not None:
        _cache_locally(opened, local_cache)
    return opened


def _cache_locally(store: Any, directory: str | os.PathLike[str]) -> None:
    """Put a local cache in ``directory`` in front of ``store``'s object store (nothing to
    do when its blobs are local files already).

    Raises:
        ValueError: the store keeps no blobs in a blob store (``blobs=``).
    """
    from cashet.stores.objects.cached import CachedBlobStore
    from cashet.stores.objects.files import FileBlobStore

    if not isinstance(getattr(type(store), "blobs", None), property):
        raise ValueError(
            f"local_cache: {type(store).__name__} keeps no blobs in a blob store to cache"
            " (use SQLiteStore(path, blobs=S3BlobStore(...)))"
        )
    blobs = store.blobs
    if not isinstance(blobs, FileBlobStore | CachedBlobStore):
        store.blobs = CachedBlobStore(blobs, FileBlobStore(directory))


def _client_store(
    store: Any, store_dir: str | os.PathLike[str] | None, default_dir: Path, readonly: bool,
    asynchronous: bool, mode: str,
) -> Any:  # fmt: skip
    unwritten = mode in ("off", "readonly")
    readonly = readonly or unwritten
    if store is None and store_dir is None and os.environ.get("CASHET_STORE"):
        store = os.environ["CASHET_STORE"]
    if store is not None and not isinstance(store, str):
        return store
    store, blobs = with_blobs(store or "", {})
    if store:
        if _scheme(store) in _POSTGRES:  # made read-only by the client's mode, as Redis
            return _postgres(store, asynchronous, **blobs)
        path = sqlite_path(store)
        if path is None:  # Redis: made read-only by the client's mode, not by the store
            return _redis(store, asynchronous, **blobs)
        if unwritten and not path.exists():
            return _empty(path, asynchronous)
        return _sqlite(path, asynchronous, readonly=readonly, **blobs)
    path = Path(store_dir) if store_dir is not None else default_dir
    if unwritten and not path.exists():
        return _empty(path, asynchronous)
    # a path, never parsed as a URL
    return _sqlite(path, asynchronous, readonly=readonly, **blobs)


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


# blob stores (issue 16)

BLOB_SCHEMES = ("s3", "file")
_S3_PARAMS = ("endpoint", "region", "allow_http")


def with_blobs(url: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``url`` without its ``blobs=`` parameter, and ``options`` with the blob store it (or
    else ``$CASHET_BLOBS``) names as ``blobs``; as given when neither names one.

    Raises:
        ValueError: the blob store URL is not one (see :func:`open_blob_url`).
    """
    url, named = split_blobs(url)
    named = named or os.environ.get("CASHET_BLOBS") or None
    if named is None or "blobs" in options:
        return url, options
    return url, {**options, "blobs": open_blob_url(named)}


def split_blobs(url: str) -> tuple[str, str | None]:
    """``url`` without its last query parameter ``blobs=``, and that parameter's value (the
    rest of ``url``); ``(url, None)`` when it has none."""
    base, sep, query = url.partition("?")
    at = f"&{query}".find("&blobs=") if sep else -1
    if at < 0:
        return url, None
    kept = query[: max(at - 1, 0)]
    return (f"{base}?{kept}" if kept else base), query[at + len("blobs=") :]


def open_blob_url(url: str) -> Any:
    """The blob store ``url`` names.

    * ``s3://bucket/prefix`` with optional ``?endpoint=URL&region=NAME&allow_http=1``:
      an ``S3BlobStore``; credentials never in the URL: from the AWS environment
      (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ...);
    * ``file:///abs/dir`` or a directory: a ``FileBlobStore``.

    Raises:
        ValueError: another scheme, an unknown parameter, or credentials in the URL.
    """
    from urllib.parse import unquote, urlsplit

    if "://" not in url and "%3A" in url.upper():
        url = unquote(url)  # percent-encoded as a whole
    scheme = _scheme(url)
    if scheme in ("", "file"):
        from cashet.stores.objects.files import FileBlobStore

        rest = url[len("file://") :] if scheme else url
        if not rest:
            raise ValueError("a file: blob store URL needs a directory: file:///path/objects")
        return FileBlobStore(os.path.expanduser(rest))
    if scheme != "s3":
        raise ValueError(
            f"unknown blob store URL scheme {scheme!r}: use"
            f" {', '.join(s + '://' for s in BLOB_SCHEMES)} or a directory"
        )
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError(
            "an s3:// blob store URL takes no credentials: set AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY in the environment"
        )
    if not parts.netloc:
        raise ValueError("an s3:// blob store URL needs a bucket: s3://bucket/prefix")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(params) - set(_S3_PARAMS))
    if unknown:
        raise ValueError(
            f"unknown s3:// blob store parameter(s) {', '.join(unknown)}: use"
            f" {', '.join(_S3_PARAMS)} (credentials come from the AWS environment)"
        )
    from cashet.stores.objects.s3 import S3BlobStore

    return S3BlobStore(
        parts.netloc,
        prefix=parts.path.strip("/"),
        endpoint=params.get("endpoint") or None,
        region=params.get("region") or None,
        allow_http=params.get("allow_http", "").lower() in ("1", "true", "yes"),
    )
