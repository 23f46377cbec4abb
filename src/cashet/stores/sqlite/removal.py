"""Deleting commits and collecting garbage in a SQLite store.

A mixin of :class:`~cashet.stores.sqlite.store.SQLiteStore`: ``delete_commit``,
``delete_by_tags`` and ``evict``. Work is done in short ``BEGIN IMMEDIATE`` transactions of
at most ``_BATCH`` rows, so writers are never held long; a blob is freed (row, and file
unlinked inside the transaction) when its last commit goes.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cashet.protocols import TagQuery
from cashet.stores.base import unique_prefix
from cashet.stores.hits import HitRecorder
from cashet.stores.objects.base import BlobStore
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.connection import Database
from cashet.stores.sqlite.schema import to_epoch

__all__ = ["RemovalMixin"]


class RemovalMixin:
    """The removal methods of ``SQLiteStore`` (its ``_db``, ``_blobs`` and settings)."""

    _db: Database
    _blobs: BlobStore
    orphan_grace: float
    _BATCH: int
    _STALE_LEASE_SECONDS: float
    _hits: HitRecorder

    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        """Remove old, expired and (over a size limit) least recently used commits.

        In order: commits last used (or created, if never used) before ``older_than``;
        expired commits; blobs unreferenced for longer than ``orphan_grace``; then, with
        ``max_size_bytes``, least recently used commits until the stored bytes fit. Blobs
        are freed when their last commit goes. Live leases are never touched.

        Returns:
            The number of commits removed.
        """
        self._hits.flush()  # access times decide what goes
        now = time.time()

        def delete_commit(conn: sqlite3.Connection, row: Any) -> bool:
            return self._delete(conn, row[0])

        removed = self._in_batches(sql.LEAST_USED, to_epoch(older_than), delete_commit)
        removed += self._in_batches(sql.EXPIRED, now, delete_commit)
        self._in_batches(sql.ORPHANS, now - self.orphan_grace, self._drop_blob_row)
        if max_size_bytes is not None:
            removed += self._shrink(max_size_bytes)
        with self._db.transact() as conn:
            conn.execute(sql.STALE_CLAIMS, (now - self._STALE_LEASE_SECONDS,))
        return removed

    def _in_batches(
        self, query: str, bound: float, delete: Callable[[sqlite3.Connection, Any], bool | None]
    ) -> int:
        """Apply ``delete`` to the rows ``query`` finds, one short transaction per batch.

        Returns:
            How many calls of ``delete`` returned true.
        """
        done = 0
        while True:
            with self._db.transact() as conn:
                rows = conn.execute(query, (bound, self._BATCH)).fetchall()
                for row in rows:
                    done += bool(delete(conn, row))
            if len(rows) < self._BATCH:
                return done

    def _shrink(self, max_size_bytes: int) -> int:
        removed = 0
        while True:
            with self._db.transact() as conn:
                # Young unreferenced blobs (their commits may be on the way) cannot be freed
                # by removing commits; counting them would remove every commit in vain.
                limit = max_size_bytes + conn.execute(sql.ORPHAN_BYTES).fetchone()[0]
                batch = conn.execute(sql.LEAST_USED, (math.inf, self._BATCH)).fetchall()
                for (h,) in batch:
                    if conn.execute(sql.STORED_BYTES).fetchone()[0] <= limit:
                        return removed
                    removed += self._delete(conn, h)
            if len(batch) < self._BATCH:
                return removed

    def delete_commit(self, hash: str) -> bool:
        """Delete one commit and its tags; free its blob if nothing else references it.

        ``hash`` may be a unique prefix (as the published stores took it).

        Returns:
            Whether the commit existed.

        Raises:
            AmbiguousHashError: a prefix matches several commits.
        """
        if len(hash) < 64:
            found = unique_prefix(hash, self.resolve_prefix(hash, 21))  # type: ignore[attr-defined]
            if found is None:
                return False
            hash = found
        with self._db.transact() as conn:
            return self._delete(conn, hash)

    def delete_by_tags(self, tags: TagQuery) -> int:
        """Delete every commit matching ``tags`` (as in ``list_commits``).

        Returns:
            The number of commits deleted.

        Raises:
            ValueError: ``tags`` is empty (that would delete everything).
        """
        if not tags:
            raise ValueError("refusing to delete everything: no tags given")
        with self._db.transact() as conn:
            query, params = sql.select_commits(
                "c.hash", None, None, tags, sql.choose_driver(conn, None, None, tags)
            )
            hashes = [row[0] for row in conn.execute(query, params).fetchall()]
            return sum(self._delete(conn, h) for h in hashes)

    def _delete(self, conn: sqlite3.Connection, hash: str) -> bool:
        row = conn.execute(sql.RESULT_OF, (hash,)).fetchone()
        if row is None:
            return False
        conn.execute(sql.DELETE_COMMIT, (hash,))  # triggers: counters, tags, refcount
        if row[0] is not None:
            blob = conn.execute(sql.BLOB_INFO, (row[0],)).fetchone()
            if blob is not None and blob[2] <= 0:
                self._drop_blob(conn, row[0], blob[1])
        return True

    def _drop_blob_row(self, conn: sqlite3.Connection, row: Any) -> None:
        self._drop_blob(conn, row[0], row[1])

    def _drop_blob(self, conn: sqlite3.Connection, hash: str, is_file: bool) -> None:
        conn.execute(sql.DELETE_BLOB, (hash,))
        if is_file:
            # Unlinked inside the transaction, so that a concurrent put_blob of the same
            # bytes, which checks the file under the same lock, sees it gone. Should the
            # commit then fail, the row outlives its file: get_blob says BlobMissingError
            # and put_blob of the bytes repairs it.
            self._blobs.delete(hash)
