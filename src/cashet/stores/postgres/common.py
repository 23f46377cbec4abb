"""What the sync and async PostgreSQL stores share: options, naming, errors, migrations.

The DSN may hold a password: it is kept for connecting and for :attr:`config` (what a
cluster worker reopens the store from) and appears nowhere else: ``repr``, every error and
every log line show it masked (:func:`cashet._humanize.mask_url`), and a driver's error
text is masked the same way before it is quoted.
"""

from __future__ import annotations

import re
import threading
import weakref
from typing import Any

from cashet import _process
from cashet._humanize import mask_url
from cashet.errors import StoreError, StoreUnavailableError
from cashet.stores.config import StoreConfig
from cashet.stores.postgres.blob_table import BlobBackend, BlobTable, ExternalBlobs
from cashet.stores.postgres.calls import Flow, Q
from cashet.stores.postgres.doctor_ops import DoctorOps
from cashet.stores.postgres.schema import SCHEMA_VERSION, Sql

__all__ = ["DOC_ARGS", "PgStoreBase", "migrate"]

DOC_ARGS = """
    Args:
        dsn: a libpq connection string or ``postgresql://`` URL.
        schema: the PostgreSQL schema holding the store's tables (created, and migrated
            forward, on first use); stores with different schemas share nothing.
        blobs: where the bytes of larger blobs go: a blob store (``S3BlobStore``,
            ``FileBlobStore``; default: the ``blob_data`` table of the same schema).
        inline_threshold: blobs whose encoded form is smaller than this many bytes are
            kept in their index row, read with the commit on a hit.
        max_connections: the size of the connection pool (per process).
        connect_timeout: seconds to wait for a connection before ``StoreUnavailableError``.

    Raises:
        StoreUnavailableError: the database cannot be reached (the DSN is named, its
            password masked).
        StoreError: the schema was written by a newer cashet, or cannot be created.
    """

#: Every store of this process, so that a forked child can drop its parent's pools.
_stores: weakref.WeakSet[PgStoreBase] = weakref.WeakSet()
#: What a forked child inherited (pools, held connections): kept, never used, never closed
#: or collected (their sockets are the parent's; collecting them could disturb it).
_inherited: list[Any] = []


@_process.after_fork_in_child
def _forget_pools_in_child() -> None:
    for store in list(_stores):
        _inherited.append((store.__dict__.get("_pool"), store.__dict__.get("_local")))
        store._pool = None
        store._local = threading.local()


_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


def migrate(sql: Sql) -> Flow[None]:
    """Create the store's schema or bring it forward (run as one transaction)."""
    yield Q(sql.migrate_lock, (sql.schema,), "one")
    yield Q(sql.create_schema, None, "count")
    found = yield Q(sql.has_meta, (f"{sql.quoted}.meta",), "one")
    version = 0
    if found is not None and found[0] is not None:
        row = yield Q(sql.version, None, "one")
        version = 0 if row is None else int(row[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the PostgreSQL schema {sql.schema!r} was written by a newer cashet (schema"
            f" version {version}; this one knows {SCHEMA_VERSION}): upgrade cashet"
        )
    for step in sql.migrations[version:]:
        for statement in step:
            yield Q(statement, None, "count")
    if version < SCHEMA_VERSION:
        yield Q(sql.set_version, (str(SCHEMA_VERSION),), "count")


def current_version(sql: Sql) -> Flow[int]:
    """The schema's version (0: not created yet); no lock, no write."""
    found = yield Q(sql.has_meta, (f"{sql.quoted}.meta",), "one")
    if found is None or found[0] is None:
        return 0
    row = yield Q(sql.version, None, "one")
    return 0 if row is None else int(row[0])


class PgStoreBase:
    """The state both PostgreSQL stores keep (not a store by itself)."""

    orphan_grace: float = 3600.0
    #: Point reads are network round trips: an event loop must not make them inline.
    nonblocking_reads = False

    def __init__(
        self,
        dsn: str,
        schema: str,
        blobs: BlobBackend | None,
        inline_threshold: int,
        max_connections: int,
        connect_timeout: float,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"{schema!r} is not a plain PostgreSQL schema name")
        self._dsn = dsn
        self._schema = schema
        self._sql = Sql(schema)
        self._blobs = self._backend(blobs)
        self._inline_threshold = inline_threshold
        self._max_connections = max(2, max_connections)
        self._connect_timeout = connect_timeout
        self._closed = False
        self._ops = DoctorOps(self._sql, self._blobs, inline_threshold, repr(self))
        self._ops.host = _process.hostname()
        self._pool: Any = None
        self._local = threading.local()
        _stores.add(self)

    def _backend(self, blobs: Any) -> BlobBackend:
        """The blob backend for ``blobs=``: the ``blob_data`` table when ``None``; a blob
        store (or its ``BlobStoreConfig``, as a worker gets it) behind :class:`ExternalBlobs`;
        a backend as it is."""
        if blobs is None:
            return BlobTable(self._sql)
        from cashet.stores.objects.base import BlobStoreConfig

        if isinstance(blobs, BlobStoreConfig):
            from cashet.stores.objects.opening import open_blob_store

            blobs = open_blob_store(blobs)
        if isinstance(blobs, BlobTable | ExternalBlobs):
            return blobs
        return ExternalBlobs(blobs)

    @property
    def blobs(self) -> Any:
        """The blob store holding the larger blobs (``blobs=``), or ``None`` when they are
        kept in the ``blob_data`` table."""
        return self._blobs.store if isinstance(self._blobs, ExternalBlobs) else None

    @blobs.setter
    def blobs(self, blobs: Any) -> None:
        if not isinstance(self._blobs, ExternalBlobs):
            raise ValueError(f"{self!r} keeps its blobs in PostgreSQL: there is no blob store")
        self._blobs.store = blobs

    def __repr__(self) -> str:
        where = "" if self.blobs is None else f", blobs={self.blobs!r}"
        return f"{type(self).__name__}({mask_url(self._dsn)!r}, schema={self._schema!r}{where})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its configuration: unpickling reconnects (a worker process)."""
        return (_reopen, (type(self), self._dsn, self._options()))

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "schema": self._schema,
            "inline_threshold": self._inline_threshold,
            "max_connections": self._max_connections,
            "connect_timeout": self._connect_timeout,
        }
        if self.blobs is not None:
            options["blobs"] = self.blobs.config  # a worker opens its own
        return options

    @property
    def config(self) -> StoreConfig:
        """What reopens this store in another process (a cluster worker): the DSN (with
        its password: never print a config, print the store) and the options."""
        return StoreConfig("postgres", self._dsn, tuple(self._options().items()))

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding the store's tables."""
        return self._schema

    @property
    def dsn(self) -> str:
        """The connection string, its password masked (for messages)."""
        return mask_url(self._dsn)

    def _masked(self, text: str) -> str:
        text = mask_url(text)
        password = re.search(r"//[^/@:]*:([^/@]*)@", self._dsn) or re.search(
            r"(?i)password=([^\s&]*)", self._dsn
        )
        if password and password.group(1):
            text = text.replace(password.group(1), "***")
        return text

    def _closed_error(self) -> StoreError:
        return StoreError(f"{self!r} is closed")

    def _error(self, exc: BaseException, what: str) -> StoreError:
        """A driver's error as ours, naming the store (password masked) and the operation."""
        import psycopg
        import psycopg_pool

        reason = self._masked(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        kind = type(exc).__name__
        message = f"{self!r}: could not {what}: {kind}: {reason}"
        if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout | OSError):
            return StoreUnavailableError(message)
        return StoreError(message)


def _reopen(cls: type, dsn: str, options: dict[str, Any]) -> Any:
    return cls(dsn, **options)
