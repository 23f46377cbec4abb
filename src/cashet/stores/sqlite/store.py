"""SQLiteStore: the default embedded store, one directory on the local disk.

Layout::

    <path>/meta.db            commits, tags, blob index, small blobs inline, leases
    <path>/objects/ab/cdef…   blobs whose encoded form is at least ``inline_threshold`` bytes

``meta.db`` runs in WAL mode: readers never wait for the writer (connections and
transactions: :mod:`~cashet.stores.sqlite.connection`; blob files:
:mod:`~cashet.stores.sqlite.files`). Counters, blob reference counts and tag clean-up are kept
by triggers (see :mod:`cashet.stores.sqlite.schema`), so ``stats()`` is O(1) and garbage
collection reads only unreferenced blobs. Every blob is verified against its hash when read.
Every commit returned is a fresh object, the caller's to mutate.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cashet import _process
from cashet.core import leases as _lease
from cashet.errors import BlobCorruptedError, BlobMissingError, StoreError
from cashet.hashing.commits import commit_from_json, commit_to_json
from cashet.models import Commit, Lease, ObjectRef, TaskDef, TaskStatus
from cashet.protocols import BlobParts, Hit, ResultData, TagQuery
from cashet.stores.base import StoreBase, copy_commit
from cashet.stores.blobs import (
    BLOB_RAW,
    blob_hash,
    blob_hash_parts,
    decode_blob,
    encode_blob,
    verify_blob,
    worth_compressing,
)
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.connection import Database
from cashet.stores.sqlite.files import READINTO_MIN, BlobFiles, has_file, unlink

__all__ = ["SQLiteStore"]


def _compressible(parts: BlobParts) -> bool:
    """Probe the largest chunk: compress the blob only if it would shrink."""
    largest = max(parts, key=lambda p: memoryview(p).nbytes)
    return worth_compressing(memoryview(largest).cast("B"))


_HEX = "0123456789abcdef"


def _ts(dt: datetime) -> float:
    """UTC epoch seconds; a naive datetime is taken to be UTC, as everywhere in cashet."""
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _commit(row: Any) -> Commit:
    commit = commit_from_json(row[0])
    commit.last_accessed = None if row[1] is None else _dt(row[1])
    return commit


def _lease_of(row: Any) -> Lease:
    return Lease(owner=row[0], host=row[1], pid=row[2], expires_at=_dt(row[3]), func_name=row[4])


class SQLiteStore(StoreBase):
    """The default store: SQLite metadata and content-addressed blob files in one directory.

    Safe to share between threads and across ``fork``; several processes may use one
    directory at once.

    Args:
        path: the store directory (created if missing).
        inline_threshold: blobs whose encoded form is smaller than this many bytes live in
            ``meta.db``; larger ones are files under ``objects/``.
        busy_timeout: seconds a write waits for another writer before ``StoreError``.

    Raises:
        StoreError: the directory or database cannot be opened, or ``meta.db`` was written
            by a newer cashet whose schema this one does not know.
    """

    #: Seconds an unreferenced blob is kept before ``evict`` removes it: a blob just
    #: written for a commit about to be recorded must not be collected in between.
    orphan_grace: float = 3600.0
    #: Rows handled per write transaction in ``evict``, so writers are never held long.
    _BATCH = 256
    #: ``evict`` drops leases unrenewed for this long: no heartbeat is left to renew them.
    _STALE_LEASE_SECONDS = 3600.0
    _DECODED_MAX = 4096

    def __init__(
        self,
        path: str | os.PathLike[str] = ".cashet",
        *,
        inline_threshold: int = 1024,
        busy_timeout: float = 30.0,
    ) -> None:
        self._path = Path(path)
        self._inline_threshold = inline_threshold
        self._host = _lease.hostname()
        self._files = BlobFiles(os.fspath(self._path / "objects"))
        # Hit-path caches. Decoded commits by hash (commits never change; copies are handed
        # out). The stored bytes of the small results the last find_by_fingerprint calls
        # found, for the get_blob that follows (verified when served; see lookup for the
        # explicit form).
        self._decoded: _process.BoundedCache[str, Commit] = _process.BoundedCache(self._DECODED_MAX)
        self._found_results: _process.BoundedCache[str, bytes] = _process.BoundedCache(
            self._DECODED_MAX
        )
        self._db = Database(os.fspath(self._path / "meta.db"), busy_timeout, repr(self))

    @property
    def path(self) -> Path:
        """The store directory."""
        return self._path

    def __repr__(self) -> str:
        return f"SQLiteStore({os.fspath(self._path)!r})"

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection to ``meta.db`` (for tests and maintenance)."""
        return self._db.conn()

    # blobs

    def put_blob(self, data: bytes) -> ObjectRef:
        """Store ``data`` once by content hash (deduplicated), repairing a damaged copy.

        When the blob is already recorded but its file is missing or of the wrong size (or
        its inline bytes do not match), the stored copy is rewritten from ``data``.

        Returns:
            The blob's hash and its size in bytes.
        """
        h = blob_hash(data)
        ref = ObjectRef(h, len(data))
        row = self._db.one(sql.BLOB_STATE, (h,))
        if (
            row is not None
            and self._intact(h, row[0], row[1], data)
            # An unreferenced row close to collection is refreshed below, so that it
            # survives until the commit that needs it is recorded.
            and (row[2] > 0 or row[3] > time.time() - self.orphan_grace / 2)
        ):
            return ref
        encoded = encode_blob(data)
        inline = len(encoded) < self._inline_threshold
        path = self._files.path(h)
        if not inline and not has_file(path, len(encoded)):
            self._files.write(path, encoded)  # outside the lock: other writers go on
        with self._db.transact() as conn:
            was = conn.execute(sql.BLOB_INFO, (h,)).fetchone()
            conn.execute(
                sql.BLOB_UPSERT,
                (h, len(data), len(encoded), encoded if inline else None, time.time()),
            )
            if inline:
                if was is not None and was[1]:
                    unlink(path)  # the blob moved into meta.db
            elif not has_file(path, len(encoded)):
                # Deletes unlink inside their transaction, so under this lock a file that
                # a concurrent delete removed after our write above is seen missing here.
                self._files.write(path, encoded)
        return ref

    def put_blob_parts(self, parts: BlobParts) -> ObjectRef:
        """Store the concatenation of ``parts`` without joining them in memory.

        Serializers that keep large buffers out of band (``PickleSerializer`` with NumPy
        arrays) hand their chunks here: the blob is hashed and written chunk by chunk.
        Equivalent to ``put_blob(b"".join(parts))``.
        """
        h, size = blob_hash_parts(parts)
        if size < READINTO_MIN or _compressible(parts):
            return self.put_blob(b"".join(parts))
        ref = ObjectRef(h, size)
        stored_size = size + 1
        path = self._files.path(h)
        row = self._db.one(sql.BLOB_STATE, (h,))
        if (
            row is not None
            and row[1] is None
            and has_file(path, row[0])
            and (row[2] > 0 or row[3] > time.time() - self.orphan_grace / 2)
        ):
            return ref
        chunks = [BLOB_RAW, *parts]
        if not has_file(path, stored_size):
            self._files.write(path, chunks)  # outside the lock: other writers go on
        with self._db.transact() as conn:
            conn.execute(sql.BLOB_UPSERT, (h, size, stored_size, None, time.time()))
            if not has_file(path, stored_size):
                self._files.write(path, chunks)  # a concurrent delete removed it
        return ref

    def _intact(self, h: str, stored_size: int, inline: bytes | None, data: bytes) -> bool:
        if inline is not None:
            try:
                return decode_blob(inline, h) == data
            except BlobCorruptedError:
                return False
        return has_file(self._files.path(h), stored_size)

    def get_blob(self, ref: ObjectRef) -> bytes:
        """Return the blob's bytes, verified against its hash.

        Raises:
            BlobMissingError: the blob is not stored, or its file is gone.
            BlobCorruptedError: the stored bytes do not match the hash. A corrupt file is
                removed, so that storing the same bytes again repairs the blob.
        """
        h = ref.hash
        hinted = self._found_results.pop(h, None)
        if hinted is not None:
            with suppress(BlobCorruptedError):
                data = decode_blob(hinted, h)
                verify_blob(data, h)
                return data
        row = self._db.one(sql.BLOB_READ, (h,))
        if row is None:
            raise BlobMissingError(f"blob {h} is not in the store {self._path}", h)
        inline = row[0]
        try:
            if inline is None:
                return self._files.read(h)
            try:
                data = decode_blob(inline, h)
                verify_blob(data, h)
            except BlobCorruptedError as exc:
                raise BlobCorruptedError(f"{exc} (stored inline in {self._db.file})", h) from exc
            return data
        except (BlobMissingError, BlobCorruptedError):
            self._forget_blob(h)
            raise

    def _forget_blob(self, h: str) -> None:
        """Drop the index row of a blob found lost, so lookups stop returning its commits.

        ``put_blob`` of the same bytes re-creates the row (counting the commits that point
        at it), which is how a re-run repairs the cache.
        """
        self._found_results.pop(h, None)
        with suppress(StoreError), self._db.transact() as conn:
            conn.execute(sql.DELETE_BLOB, (h,))

    def has_blob(self, hash: str) -> bool:
        """Return whether the blob is recorded and its file (if any) is present."""
        row = self._db.one(sql.BLOB_INFO, (hash,))
        return row is not None and (not row[1] or has_file(self._files.path(hash), row[0]))

    # commits

    def put_commit(self, commit: Commit) -> None:
        """Record ``commit`` (idempotent by hash) and count a reference to its result blob.

        Raises:
            ValueError: the commit has no hash.
        """
        with self._db.transact() as conn:
            self._insert_commit(conn, commit)

    def _insert_commit(self, conn: sqlite3.Connection, commit: Commit) -> None:
        if not commit.hash:
            raise ValueError("a commit needs its hash (see cashet.hashing.commits.seal_commit)")
        td = commit.task_def
        result = commit.result
        created = _ts(commit.created_at)
        row = (
            commit.hash,
            td.fingerprint,
            td.func_name,
            commit.status.value,
            created,
            None if commit.expires_at is None else _ts(commit.expires_at),
            None if commit.last_accessed is None else _ts(commit.last_accessed),
            int(td.cache),
            None if result is None else result.hash,
            0 if result is None else result.size,
            commit.parent_hash,
            commit.sealed_json or commit_to_json(commit),
        )
        # Triggers count the commit and the blob reference, only if really inserted.
        if conn.execute(sql.INSERT_COMMIT, row).rowcount and commit.tags:
            conn.executemany(
                sql.INSERT_TAG,
                [(commit.hash, k, str(v), created) for k, v in commit.tags.items()],
            )

    def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """Store a result, record its commit and drop the lease: the end of a miss.

        Same effect as ``put_blob`` + ``put_commit(build(ref))`` + ``release_claim``, but a
        small (inline) result takes one transaction instead of three.
        """
        if not isinstance(data, bytes):
            ref = self.put_blob_parts(data)
            encoded = None
        else:
            encoded = encode_blob(data)
            if len(encoded) >= self._inline_threshold:
                ref = self.put_blob(data)
                encoded = None
            else:
                ref = ObjectRef(blob_hash(data), len(data))
        commit = build(ref)
        with self._db.transact() as conn:
            # The commit first: a new blob row then counts it at once (refcount 1), so it
            # never enters the index of unreferenced blobs. An existing row was counted by
            # the commit's insert trigger.
            self._insert_commit(conn, commit)
            if encoded is not None:
                was = conn.execute(sql.BLOB_INFO, (ref.hash,)).fetchone()
                conn.execute(
                    sql.BLOB_UPSERT, (ref.hash, ref.size, len(encoded), encoded, time.time())
                )
                if was is not None and was[1]:
                    unlink(self._files.path(ref.hash))  # the blob moved into meta.db
            if release is not None:
                conn.execute(sql.RELEASE_CLAIM, release)
        return commit

    def get_commit(self, hash: str) -> Commit | None:
        """Return the commit with this full hash, or ``None``."""
        row = self._db.one(sql.GET_COMMIT, (hash,))
        return None if row is None else _commit(row)

    def _find_hit(self, fingerprint: str) -> tuple[Commit, bytes | None] | None:
        """The hit query: the commit (a copy) and its result's stored form if inline."""
        row = self._db.one(sql.FIND_HIT, (fingerprint, time.time()))
        if row is None:
            return None
        h, body, last_accessed, inline = row
        template = self._decoded.get(h)
        if template is None:
            template = commit_from_json(body)
            self._decoded.put(h, template)
        commit = copy_commit(template, None if last_accessed is None else _dt(last_accessed))
        return commit, (inline if commit.result is not None else None)

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest completed, cacheable, unexpired commit of ``fingerprint``.

        A commit whose result blob is known to be lost is skipped, so the next ``submit``
        recomputes (and so repairs) it. This is the hit path: one indexed query; commits
        are immutable, so a decoded one is reused (the caller gets a copy), and a small
        result's stored bytes are kept for the ``get_blob`` that follows.
        """
        found = self._find_hit(fingerprint)
        if found is None:
            return None
        commit, inline = found
        if inline is not None:
            self._found_results.put(commit.result.hash, inline)  # type: ignore[union-attr]
        return commit

    def lookup(self, fingerprint: str) -> Hit | None:
        """Return what ``find_by_fingerprint`` finds, with a small result's verified bytes.

        The same single query; nothing is kept for a later ``get_blob``.
        """
        found = self._find_hit(fingerprint)
        if found is None:
            return None
        commit, inline = found
        data = None
        if inline is not None:
            h = commit.result.hash  # type: ignore[union-attr]
            with suppress(BlobCorruptedError):  # get_blob reports (and forgets) it
                data = decode_blob(inline, h)
                verify_blob(data, h)
        return Hit(commit, data)

    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest commit of ``fingerprint`` whatever its status or expiry."""
        row = self._db.one(sql.LATEST, (fingerprint,))
        return None if row is None else _commit(row)

    def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Describe the live lease on ``fingerprint`` as a running commit, or ``None``.

        Returns:
            ``Commit(hash="", status=RUNNING, created_at=<when the lease was taken>)``
            whose ``task_def`` has the lease's ``func_name`` and the ``func_hash`` and
            ``args_hash`` of the fingerprint; nothing else is set. ``None`` when nobody
            holds a live lease.
        """
        found = self._live_claim(fingerprint)
        if found is None:
            return None
        lease, claimed_at = found
        func_hash, _, args_hash = fingerprint.partition(":")
        return Commit(
            hash="",
            task_def=TaskDef(func_name=lease.func_name, func_hash=func_hash, args_hash=args_hash),
            status=TaskStatus.RUNNING,
            created_at=_dt(claimed_at),
        )

    def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """Return commits newest first, filtered by function, status and tags.

        Args:
            func_name: only this function's commits.
            limit: at most this many; ``None`` for all.
            status: only commits in this state.
            tags: every key must be present; a ``None`` value matches any value.

        Raises:
            ValueError: ``limit`` is negative, or ``status`` is not a status.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        conn = self._db.conn()
        try:
            driver = sql.choose_driver(conn, func_name, status, tags)
            query, params = sql.select_commits(
                "c.body, c.last_accessed", func_name, status, tags, driver, limit
            )
            return [_commit(row) for row in conn.execute(query, params).fetchall()]
        except sqlite3.Error as exc:
            raise self._db.error(exc) from exc

    def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return the commits whose result is this blob, newest first (indexed)."""
        return [_commit(row) for row in self._db.all(sql.FIND_BY_RESULT, (blob_hash, limit))]

    def iter_commits(self) -> Iterator[Commit]:
        """Yield every commit, oldest first, a batch at a time (no long read transaction)."""
        after: tuple[float, int] = (-math.inf, 0)
        while True:
            rows = self._db.all(sql.ITER, (*after, self._BATCH))
            for row in rows:
                yield _commit(row)
            if len(rows) < self._BATCH:
                return
            after = (rows[-1][2], rows[-1][3])

    def get_history(self, hash: str) -> list[Commit]:
        """Return every unexpired commit with the same fingerprint as ``hash``, oldest first.

        An unknown hash gives ``[]``.
        """
        return [_commit(row) for row in self._db.all(sql.HISTORY, (hash, time.time()))]

    def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Return up to ``limit`` full commit hashes starting with ``prefix``, sorted.

        Raises:
            ValueError: ``prefix`` is empty, longer than 64 or not hexadecimal.
        """
        p = prefix.strip().lower()
        if not p or len(p) > 64 or p.strip(_HEX):
            raise ValueError(f"{prefix!r} is not a hash prefix (1-64 hex digits)")
        # Every hash starting with p sorts in [p, p + "g"): "g" follows every hex digit.
        return [row[0] for row in self._db.all(sql.PREFIX, (p, p + "g", limit))]

    def touch(self, hash: str, when: datetime) -> None:
        """Set the commit's ``last_accessed`` to ``when`` (an unknown hash is ignored)."""
        with self._db.transact() as conn:
            conn.execute(sql.TOUCH, (_ts(when), hash))

    # lifecycle

    def stats(self) -> dict[str, int]:
        """Return commit and blob counts and stored sizes (read from counters, O(1)).

        Keys: ``total_commits``, ``completed_commits``, ``stored_objects``, ``disk_bytes``,
        ``blob_objects``, ``blob_bytes``, ``inline_objects``, ``inline_bytes``; sizes are
        the stored (encoded, possibly compressed) bytes.
        """
        total, completed, files, file_bytes, inline, inline_bytes = self._db.one(sql.STATS, ())
        return {
            "total_commits": total,
            "completed_commits": completed,
            "stored_objects": files + inline,
            "disk_bytes": file_bytes + inline_bytes,
            "blob_objects": files,
            "blob_bytes": file_bytes,
            "inline_objects": inline,
            "inline_bytes": inline_bytes,
        }

    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        """Remove old, expired and (over a size limit) least recently used commits.

        In order: commits last used (or created, if never used) before ``older_than``;
        expired commits; blobs unreferenced for longer than ``orphan_grace``; then, with
        ``max_size_bytes``, least recently used commits until the stored bytes fit. Blobs
        are freed when their last commit goes. Live leases are never touched.

        Returns:
            The number of commits removed.
        """
        now = time.time()

        def delete_commit(conn: sqlite3.Connection, row: Any) -> bool:
            return self._delete(conn, row[0])

        removed = self._in_batches(sql.LEAST_USED, _ts(older_than), delete_commit)
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

        Returns:
            Whether the commit existed.
        """
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
            unlink(self._files.path(hash))

    # leases

    def _live_claim(self, fingerprint: str) -> tuple[Lease, float] | None:
        row = self._db.one(sql.GET_CLAIM, (fingerprint,))
        if row is None:
            return None
        lease = _lease_of(row)
        if _lease.lease_is_dead(lease, datetime.now(UTC), self._host):
            return None
        return lease, row[5]

    def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        """Take the lease on ``fingerprint`` unless another owner holds a live one.

        A held lease is dead once expired, or at once when its holder was a process on
        this host that no longer exists; re-claiming one's own lease renews it.

        Returns:
            Whether ``lease`` now holds the fingerprint.
        """
        now = datetime.now(UTC)
        params = (
            fingerprint,
            lease.owner,
            lease.host,
            lease.pid,
            _ts(lease.expires_at),
            lease.func_name,
            now.timestamp(),
        )
        # Fast path, one autocommit statement: nobody holds the fingerprint.
        try:
            if self._db.conn().execute(sql.NEW_CLAIM, params).rowcount == 1:
                return True
        except sqlite3.Error as exc:
            raise self._db.error(exc) from exc
        with self._db.transact() as conn:
            row = conn.execute(sql.GET_CLAIM, (fingerprint,)).fetchone()
            if (
                row is not None
                and row[0] != lease.owner
                and not _lease.lease_is_dead(_lease_of(row), now, self._host)
            ):
                return False
            conn.execute(sql.PUT_CLAIM, params)
            return True

    def get_claim(self, fingerprint: str) -> Lease | None:
        """Return the live lease on ``fingerprint``, or ``None`` (a dead one counts as none)."""
        found = self._live_claim(fingerprint)
        return None if found is None else found[0]

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        """Extend ``owner``'s lease to ``expires_at``.

        Returns:
            ``False`` when ``owner`` no longer holds the lease (someone took it over).
        """
        with self._db.transact() as conn:
            cur = conn.execute(sql.RENEW_CLAIM, (_ts(expires_at), fingerprint, owner))
            return cur.rowcount == 1

    def release_claim(self, fingerprint: str, owner: str) -> None:
        """Drop the lease on ``fingerprint`` if ``owner`` holds it; otherwise do nothing."""
        try:  # one autocommit statement
            self._db.conn().execute(sql.RELEASE_CLAIM, (fingerprint, owner))
        except sqlite3.Error as exc:
            raise self._db.error(exc) from exc

    def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """Block until nobody holds a live lease on ``fingerprint``, or ``timeout`` seconds.

        SQLite cannot notify, so this polls one indexed row, backing off from 2 ms to 50 ms.
        """
        deadline = time.monotonic() + timeout
        delay = 0.002
        while self._live_claim(fingerprint) is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)

    def close(self) -> None:
        """Close every connection this store opened, in all threads. Idempotent.

        Any later use raises ``StoreError``.
        """
        self._db.close()
