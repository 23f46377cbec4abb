"""Where a PostgreSQL store keeps the bytes of its larger blobs.

The store keeps the *index* of its blobs itself (the ``blobs`` table: hash, sizes, the
number of commits that reference each, and a small blob's bytes inline); the encoded bytes
of every larger blob go to a blob backend with five operations: put-if-absent, get, delete,
exists, iterate. :class:`BlobTable`, the default, keeps them in the ``blob_data`` table of
the same schema; :class:`ExternalBlobs` puts a blob store of :mod:`cashet.stores.objects`
(``S3BlobStore``, ``FileBlobStore``: ``PostgresStore(dsn, blobs=...)``) behind the same
interface. Each operation is a :data:`~cashet.stores.postgres.calls.Flow`, so both drivers
run it; an external one calls its blob store directly, yielding no statement.
"""

from __future__ import annotations

from typing import Any, Protocol

from cashet.errors import BlobMissingError
from cashet.stores.postgres.calls import Flow, Q
from cashet.stores.postgres.schema import Sql

__all__ = ["BlobBackend", "BlobTable", "ExternalBlobs"]


class BlobBackend(Protocol):
    """The bytes of large blobs (framed and compressed as ``stores/blobs`` encodes them)."""

    def put_if_absent(self, hash: str, encoded: bytes) -> Flow[None]: ...
    def get(self, hash: str) -> Flow[tuple[bytes, bool] | None]:
        """``(bytes, verified)``: the stored form to decode and verify (``False``), or the
        blob's bytes verified already (``True``); ``None`` when it is not there. A copy
        found corrupt may raise ``BlobCorruptedError``."""
        ...

    def delete(self, hash: str) -> Flow[None]: ...
    def exists(self, hash: str) -> Flow[bool]: ...
    def iterate(self, after: str, limit: int) -> Flow[list[str]]: ...


class BlobTable:
    """The default blob backend: the ``blob_data`` table beside the metadata."""

    def __init__(self, sql: Sql) -> None:
        self._sql = sql

    def __repr__(self) -> str:
        return f"BlobTable({self._sql.schema!r})"

    def put_if_absent(self, hash: str, encoded: bytes) -> Flow[None]:
        # A row that is there is overwritten: it may be the damaged copy being repaired.
        yield Q(self._sql.data_put, (hash, encoded), "count")

    def get(self, hash: str) -> Flow[tuple[bytes, bool] | None]:
        row = yield Q(self._sql.data_get, (hash,), "one", binary=True)
        return None if row is None else (bytes(row[0]), False)

    def delete(self, hash: str) -> Flow[None]:
        yield Q(self._sql.data_delete, (hash,), "count")

    def exists(self, hash: str) -> Flow[bool]:
        row = yield Q(self._sql.data_has, (hash,), "one")
        return row is not None

    def iterate(self, after: str, limit: int) -> Flow[list[str]]:
        rows = yield Q(self._sql.data_iter, (after, limit))
        return [r[0] for r in rows]


class ExternalBlobs:
    """A blob store (``S3BlobStore``, ``FileBlobStore``, a ``CachedBlobStore``) as the
    backend of a PostgreSQL store: the metadata in PostgreSQL, the bytes there."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __repr__(self) -> str:
        return repr(self.store)

    def put_if_absent(self, hash: str, encoded: bytes) -> Flow[None]:
        self.store.put_encoded(hash, encoded)
        return
        yield  # a flow  # pragma: no cover

    def get(self, hash: str) -> Flow[tuple[bytes, bool] | None]:
        try:
            data = self.store.get(hash)  # verified (a corrupt copy raises, and is dropped)
        except BlobMissingError:
            return None
        return data, True
        yield  # a flow  # pragma: no cover

    def delete(self, hash: str) -> Flow[None]:
        self.store.delete(hash)
        return
        yield  # a flow  # pragma: no cover

    def exists(self, hash: str) -> Flow[bool]:
        return bool(self.store.exists(hash))
        yield  # a flow  # pragma: no cover

    def iterate(self, after: str, limit: int) -> Flow[list[str]]:
        return sorted(h for h, _ in self.store.iter_blobs() if h > after)[:limit]
        yield  # a flow  # pragma: no cover
