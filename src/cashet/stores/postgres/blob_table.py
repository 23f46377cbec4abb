"""Where a PostgreSQL store keeps the bytes of its larger blobs.

The store keeps the *index* of its blobs itself (the ``blobs`` table: hash, sizes, the
number of commits that reference each, and a small blob's bytes inline); the encoded bytes
of every larger blob go to a blob backend with five operations: put-if-absent, get, delete,
exists, iterate. :class:`BlobTable`, the default, keeps them in the ``blob_data`` table of
the same schema. Each operation is a :data:`~cashet.stores.postgres.calls.Flow`, so both
drivers run it; a backend that is not PostgreSQL (an object store) returns at once without
yielding a statement.
"""

from __future__ import annotations

from typing import Protocol

from cashet.stores.postgres.calls import Flow, Q
from cashet.stores.postgres.schema import Sql

__all__ = ["BlobBackend", "BlobTable"]


class BlobBackend(Protocol):
    """The bytes of large blobs (framed and compressed as ``stores/blobs`` encodes them)."""

    def put_if_absent(self, hash: str, encoded: bytes) -> Flow[None]: ...
    def get(self, hash: str) -> Flow[bytes | None]: ...
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

    def get(self, hash: str) -> Flow[bytes | None]:
        row = yield Q(self._sql.data_get, (hash,), "one", binary=True)
        return None if row is None else bytes(row[0])

    def delete(self, hash: str) -> Flow[None]:
        yield Q(self._sql.data_delete, (hash,), "count")

    def exists(self, hash: str) -> Flow[bool]:
        row = yield Q(self._sql.data_has, (hash,), "one")
        return row is not None

    def iterate(self, after: str, limit: int) -> Flow[list[str]]:
        rows = yield Q(self._sql.data_iter, (after, limit))
        return [r[0] for r in rows]
