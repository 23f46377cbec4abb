"""What the sync and the async Redis store share: the ``redis`` import, the options, the
error translation and resend policy (see :mod:`cashet.stores.redis.store`).

The one module that imports ``redis``: without the ``redis`` extra, importing a Redis store
raises an ``ImportError`` that says what to install."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

try:
    import redis
    import redis.asyncio
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        'the Redis stores need the redis package: pip install "cashet[redis]"'
    ) from exc

from cashet.errors import StoreError
from cashet.stores.config import StoreConfig
from cashet.stores.objects.base import BlobStore, BlobStoreConfig
from cashet.stores.objects.opening import open_blob_store
from cashet.stores.redis.calls import RedisCall
from cashet.stores.redis.ops import Ops, check_options

__all__ = [
    "BACKOFF",
    "DOC_ARGS",
    "AsyncRetry",
    "NoBackoff",
    "NoScriptError",
    "RedisError",
    "RedisStoreBase",
    "ResponseError",
    "Retry",
    "redis",
]

_DOWN = (RedisConnectionError, RedisTimeoutError)
#: Pauses before resending a call that is safe to repeat, after a dropped connection.
BACKOFF = (0.05, 0.25)


class RedisStoreBase:
    """Options and helpers shared by both stores."""

    #: Seconds an unreferenced blob is kept before ``evict`` removes it (as SQLiteStore).
    orphan_grace: float = 3600.0
    _r: Any  # the redis-py client, set by each store

    def __init__(
        self,
        url: str,
        prefix: str,
        max_connections: int | None,
        socket_timeout: float | None,
        socket_connect_timeout: float | None,
        chunk_size: int,
        inline_threshold: int,
        options: Mapping[str, Any] | None,
        blobs: BlobStore | BlobStoreConfig | None = None,
    ) -> None:
        if isinstance(blobs, BlobStoreConfig):
            blobs = open_blob_store(blobs)
        self._ops = Ops(url, prefix, inline_threshold, chunk_size, blobs)
        self._config = StoreConfig(
            "redis",
            url,
            (
                ("prefix", prefix),
                ("max_connections", max_connections),
                ("socket_timeout", socket_timeout),
                ("socket_connect_timeout", socket_connect_timeout),
                ("chunk_size", chunk_size),
                ("inline_threshold", inline_threshold),
                ("options", None if options is None else tuple(sorted(options.items()))),
                *(() if blobs is None else (("blobs", blobs.config),)),
            ),
        )
        self._closed = False
        self._kwargs: dict[str, Any] = {
            **check_options(options),
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "decode_responses": False,
        }
        if max_connections is not None:
            self._kwargs["max_connections"] = max_connections

    @property
    def config(self) -> StoreConfig:
        """What reopens this store in another process (a cluster worker): the URL and the
        options; both drivers reopen as the sync ``RedisStore``. Holds the URL's password:
        never printed (its ``repr`` masks it)."""
        return self._config

    @property
    def url(self) -> str:
        """The Redis URL, password masked."""
        return self._ops.url

    @property
    def blobs(self) -> BlobStore | None:
        """The blob store holding blobs too large to stay in Redis (``blobs=``), or
        ``None``: every blob in Redis."""
        return self._ops.blob_store

    @blobs.setter
    def blobs(self, blobs: BlobStore) -> None:
        # Client(local_cache=...) puts a CachedBlobStore in front of the one given.
        if self._ops.blob_store is None:
            raise ValueError(f"{self!r} keeps its blobs in Redis: there is no blob store")
        self._ops.blob_store = blobs

    @property
    def prefix(self) -> str:
        """The prefix of every key of this store."""
        return self._ops.prefix

    @property
    def redis(self) -> Any:
        """The redis-py client the store talks through (``redis.Redis``, or
        ``redis.asyncio.Redis`` for the async store): for what the store does not offer."""
        return self._r

    #: The published cashet's name for :attr:`redis` (its users' test fixtures reach for it).
    _redis = redis

    def __repr__(self) -> str:
        where = "" if self._ops.blob_store is None else f", blobs={self._ops.blob_store!r}"
        return f"{type(self).__name__}({self._ops.url!r}, prefix={self._ops.prefix!r}{where})"

    def _closed_error(self) -> StoreError:
        return StoreError(f"{self!r} is closed")

    def _down(
        self, call: RedisCall, exc: Exception, tries: int, started: float | None = None
    ) -> float:
        """Seconds to wait before resending ``call``; raise when it is time to give up.

        ``socket_timeout`` bounds the whole call, resends included (``started``: when it was
        first sent, ``time.monotonic()``): a call that timed out has used it up and is not
        sent again (a server that stopped answering fails a call in ``socket_timeout``, not
        three times that), and a dropped connection is retried only while a resend still
        fits in it.
        """
        if isinstance(exc, _DOWN):
            if tries < len(BACKOFF) and not isinstance(exc, RedisTimeoutError):
                bound = self._kwargs.get("socket_timeout")
                if (
                    bound is None
                    or started is None
                    or time.monotonic() - started + BACKOFF[tries] < bound
                ):
                    return BACKOFF[tries]
            raise self._ops.unavailable(call.op, exc) from exc
        raise self._ops.failed(call.op, exc) from exc


DOC_ARGS = """
    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://`` (TLS) or
            ``unix:///path/redis.sock``.
        prefix: prepended to every key, so that several caches can share one Redis.
        max_connections: size limit of the connection pool (default: unbounded).
        socket_timeout: seconds an operation may wait for Redis before
            ``StoreUnavailableError``, resends included (a command that timed out is not
            sent again).
        socket_connect_timeout: seconds to wait for a connection.
        chunk_size: blobs whose stored form is larger are split into keys of this size.
        inline_threshold: blobs stored smaller than this count as ``inline`` in ``stats()``.
        options: further ``redis`` connection options (``ssl_ca_certs``, ``username``...).
        blobs: a blob store (``S3BlobStore``) for the blobs whose stored form is at least
            ``inline_threshold`` bytes: Redis keeps their meta keys and reference counts,
            the blob store their bytes (:mod:`cashet.stores.redis.external`). Default: every
            blob in Redis.
"""
