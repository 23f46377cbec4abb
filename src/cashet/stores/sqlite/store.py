"""SQLiteStore: the default embedded store, one directory on the local disk.

Layout::

    <path>/meta.db            commits, tags, blob index, small blobs inline, leases
    <path>/objects/ab/cdef…   blobs whose encoded form is at least ``inline_threshold`` bytes

``meta.db`` runs in WAL mode: readers never wait for the writer. Each thread (and each
process after ``fork``) has its own connection; every write is one short ``BEGIN
IMMEDIATE`` transaction. Counters, blob reference counts and tag clean-up are kept by
triggers (see :mod:`cashet.stores.sqlite.schema`), so ``stats()`` is O(1) and garbage
collection reads only unreferenced blobs. Every blob is verified against its hash when read.
"""

from __future__ import annotations

import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cashet import _process
from cashet.core import leases as _lease
from cashet.errors import BlobCorruptedError, BlobMissingError, StoreError
from cashet.models import Commit, Lease, ObjectRef, TaskDef, TaskStatus
from cashet.protocols import TagQuery
from cashet.stores.codec import (
    BLOB_RAW,
    BLOB_ZSTD,
    blob_hash,
    blob_hash_parts,
    commit_from_json,
    commit_to_json,
    decode_blob,
    encode_blob,
    verify_blob,
    worth_compressing,
)
from cashet.stores.sqlite import schema as sql

__all__ = ["SQLiteStore"]

#: Raw blob files at least this large are read into a bytearray (see _read_file).
_READINTO_MIN = 1 << 20


def _put_bounded(cache: dict[str, Any], key: str, value: Any, limit: int) -> None:
    """Insert into a small cache, dropping its oldest entry when full."""
    if len(cache) >= limit:
        cache.pop(next(iter(cache)), None)
    cache[key] = value


def _compressible(parts: Sequence[bytes | memoryview]) -> bool:
    """Probe the largest chunk: compress the blob only if it would shrink."""
    largest = max(parts, key=lambda p: memoryview(p).nbytes)
    return worth_compressing(memoryview(largest).cast("B"))


# The connection check runs on every operation and getpid() is a real system call
# (~0.2 µs), so the pid is cached here and refreshed in a forked child.
_pid = os.getpid()
# Guards connection bookkeeping; taken on the slow path only (connect, close).
_registry_lock = threading.Lock()
# Connections a forked child inherited from its parent. SQLite forbids using them in the
# child, and closing them there could drop locks or checkpoint the WAL under the parent,
# so they are kept referenced (the garbage collector would close them) and never touched.
_inherited: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    global _pid, _registry_lock
    _pid = os.getpid()
    _registry_lock = threading.Lock()  # another thread may have held it during the fork


os.register_at_fork(after_in_child=_after_fork_in_child)

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


def _has_file(path: str, size: int) -> bool:
    """Whether ``path`` exists with ``size`` bytes: the cheap check before a rewrite."""
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


def _driver(
    conn: sqlite3.Connection,
    func_name: str | None,
    status: TaskStatus | str | None,
    tags: TagQuery | None,
) -> int | None:
    """Pick the most selective filter to drive a commit query (see ``select_commits``).

    Each filter's matches are counted up to ``SELECTIVITY_CAP`` on its index: a query
    driven by a filter under the cap reads at most that many rows. Returns the index of
    the driving tag, or ``None`` when the commits indexes (function, status) should drive.
    """
    items = list((tags or {}).items())
    if not items:
        return None
    if len(items) == 1 and func_name is None and status is None:
        return 0
    cap = sql.SELECTIVITY_CAP
    best: int | None = None
    best_count = cap + 1
    if func_name is not None or status is not None:
        query, params = sql.count_commits(func_name, None if status is None else str(status))
        best_count = len(conn.execute(query, [*params, cap]).fetchall())
    for i, (key, value) in enumerate(items):
        if best_count == 0:
            break
        if value is None:
            count = len(conn.execute(sql.COUNT_KEY, (key, cap)).fetchall())
        else:
            count = len(conn.execute(sql.COUNT_TAG, (key, value, cap)).fetchall())
        if count < best_count:
            best, best_count = i, count
    return best


class SQLiteStore:
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
    #: Indexed point reads take microseconds and never wait for a writer (WAL mode), so an
    #: event loop may make them inline (``Client.nonblocking_reads``; the HTTP server does).
    nonblocking_reads = True
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
        self._objects = os.fspath(self._path / "objects")
        self._db_file = os.fspath(self._path / "meta.db")
        self._inline_threshold = inline_threshold
        self._busy_timeout = busy_timeout
        self._host = _process.hostname()
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_pid = _pid
        self._closed = False
        # Hit-path caches: decoded commits by hash (commits never change) and the stored
        # bytes of small results found by the last lookups (verified again when used).
        self._decoded: dict[str, Commit] = {}
        self._inline_hints: dict[str, bytes] = {}
        try:
            os.makedirs(self._objects, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {self._path}: {exc}") from exc
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

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

    # connections and transactions

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        try:
            if local.pid == _pid:
                conn: sqlite3.Connection = local.conn
                return conn
        except AttributeError:
            pass
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        with _registry_lock:
            if self._closed:
                raise StoreError(f"{self!r} is closed")
            self._disown_after_fork()
            # Close what threads that have ended left behind, so a store used from many
            # short-lived threads does not pile up open files.
            live = []
            for thread, old in self._conns:
                if thread.is_alive():
                    live.append((thread, old))
                else:
                    with suppress(sqlite3.Error):
                        old.close()
            try:
                # check_same_thread=False only so that close() can close every thread's
                # connection; each connection is still used by its own thread alone.
                conn = sqlite3.connect(
                    self._db_file,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open {self._db_file}: {exc}") from exc
            try:
                # WAL keeps the database consistent with NORMAL; a power cut may only lose
                # the last commits, which a cache can recompute.
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as exc:
                conn.close()
                raise self._error(exc) from exc
            live.append((threading.current_thread(), conn))
            self._conns = live
        self._local.conn, self._local.pid = conn, _pid
        return conn

    def _disown_after_fork(self) -> None:
        """In a forked child, set the parent's connections aside (called under the lock)."""
        if self._conns_pid != _pid:
            _inherited.extend(conn for _, conn in self._conns)
            self._conns, self._conns_pid = [], _pid

    def _error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"{self._db_file}: {exc}")

    def _one(self, query: str, params: tuple[Any, ...]) -> Any:
        try:
            return self._conn().execute(query, params).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _all(self, query: str, params: tuple[Any, ...] | list[Any]) -> list[Any]:
        try:
            return self._conn().execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _begin(self, conn: sqlite3.Connection) -> None:
        # WAL lets readers run beside the writer, but writers still serialize on one lock.
        # The busy handler (connect's timeout) waits for it in most cases, yet SQLite
        # returns SQLITE_BUSY at once in some (another connection recovering the WAL index,
        # a lock upgrade that would deadlock), so BEGIN is retried here with backoff.
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.001
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.Error as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise self._error(exc) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    @contextmanager
    def _transact(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction: commit, or roll back."""
        conn = self._conn()
        self._begin(conn)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise

    def _migrate(self) -> None:
        conn = self._conn()
        version = self._one("PRAGMA user_version", ())[0]
        if version == sql.SCHEMA_VERSION:
            return
        self._check_version(version)
        try:
            # Persistent in the file; it cannot change inside a transaction.
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        with self._transact():
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            for step in sql.MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {sql.SCHEMA_VERSION}")

    def _check_version(self, version: int) -> None:
        if version > sql.SCHEMA_VERSION:
            raise StoreError(
                f"{self._db_file} has schema version {version}, newer than the "
                f"{sql.SCHEMA_VERSION} this cashet knows: upgrade cashet to open it"
            )

    # blobs

    def _blob_path(self, hash: str) -> str:
        return os.path.join(self._objects, hash[:2], hash[2:])

    def put_blob(self, data: bytes) -> ObjectRef:
        """Store ``data`` once by content hash (deduplicated), repairing a damaged copy.

        When the blob is already recorded but its file is missing or of the wrong size (or
        its inline bytes do not match), the stored copy is rewritten from ``data``.

        Returns:
            The blob's hash and its size in bytes.
        """
        h = blob_hash(data)
        ref = ObjectRef(h, len(data))
        row = self._one(sql.BLOB_STATE, (h,))
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
        path = self._blob_path(h)
        if not inline and not _has_file(path, len(encoded)):
            self._write_file(path, encoded)  # outside the lock: other writers go on
        with self._transact() as conn:
            was = conn.execute(sql.BLOB_INFO, (h,)).fetchone()
            conn.execute(
                sql.BLOB_UPSERT,
                (h, len(data), len(encoded), encoded if inline else None, time.time()),
            )
            if inline:
                if was is not None and was[1]:
                    _unlink(path)  # the blob moved into meta.db
            elif not _has_file(path, len(encoded)):
                # Deletes unlink inside their transaction, so under this lock a file that
                # a concurrent delete removed after our write above is seen missing here.
                self._write_file(path, encoded)
        return ref

    def put_blob_parts(self, parts: Sequence[bytes | memoryview]) -> ObjectRef:
        """Store the concatenation of ``parts`` without joining them in memory.

        Serializers that keep large buffers out of band (``PickleSerializer`` with NumPy
        arrays) hand their chunks here: the blob is hashed and written chunk by chunk.
        Equivalent to ``put_blob(b"".join(parts))``.
        """
        h, size = blob_hash_parts(parts)
        if size < _READINTO_MIN or _compressible(parts):
            return self.put_blob(b"".join(parts))
        ref = ObjectRef(h, size)
        stored_size = size + 1
        path = self._blob_path(h)
        row = self._one(sql.BLOB_STATE, (h,))
        if (
            row is not None
            and row[1] is None
            and _has_file(path, row[0])
            and (row[2] > 0 or row[3] > time.time() - self.orphan_grace / 2)
        ):
            return ref
        chunks = [BLOB_RAW, *parts]
        if not _has_file(path, stored_size):
            self._write_file(path, chunks)  # outside the lock: other writers go on
        with self._transact() as conn:
            conn.execute(sql.BLOB_UPSERT, (h, size, stored_size, None, time.time()))
            if not _has_file(path, stored_size):
                self._write_file(path, chunks)  # a concurrent delete removed it
        return ref

    def _intact(self, h: str, stored_size: int, inline: bytes | None, data: bytes) -> bool:
        if inline is not None:
            try:
                return decode_blob(inline, h) == data
            except BlobCorruptedError:
                return False
        return _has_file(self._blob_path(h), stored_size)

    def _write_file(self, path: str, encoded: bytes | Sequence[bytes | memoryview]) -> None:
        # Atomic: a reader sees no file or the whole file, never a partial one. No fsync:
        # every read verifies the hash, so a file torn by a power cut is reported as
        # corrupt, removed, and rewritten when its task runs again; an fsync per blob
        # would cost milliseconds for that rare case.
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".tmp-{name[:8]}-{secrets.token_hex(6)}")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(tmp, "xb") as f:
                if isinstance(encoded, bytes):
                    f.write(encoded)
                else:
                    for chunk in encoded:
                        f.write(chunk)
            os.replace(tmp, path)
        except BaseException as exc:
            with suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write blob file {path}: {exc}") from exc
            raise

    def get_blob(self, ref: ObjectRef) -> bytes:
        """Return the blob's bytes, verified against its hash.

        Raises:
            BlobMissingError: the blob is not stored, or its file is gone.
            BlobCorruptedError: the stored bytes do not match the hash. A corrupt file is
                removed, so that storing the same bytes again repairs the blob.
        """
        h = ref.hash
        hinted = self._inline_hints.pop(h, None)
        if hinted is not None:
            with suppress(BlobCorruptedError):
                data = decode_blob(hinted, h)
                verify_blob(data, h)
                return data
        row = self._one(sql.BLOB_READ, (h,))
        if row is None:
            raise BlobMissingError(f"blob {h} is not in the store {self._path}", h)
        inline = row[0]
        try:
            if inline is None:
                return self._read_file(h)
            try:
                data = decode_blob(inline, h)
                verify_blob(data, h)
            except BlobCorruptedError as exc:
                raise BlobCorruptedError(f"{exc} (stored inline in {self._db_file})", h) from exc
            return data
        except (BlobMissingError, BlobCorruptedError):
            self._forget_blob(h)
            raise

    def _forget_blob(self, h: str) -> None:
        """Drop the index row of a blob found lost, so lookups stop returning its commits.

        ``put_blob`` of the same bytes re-creates the row (counting the commits that point
        at it), which is how a re-run repairs the cache.
        """
        self._inline_hints.pop(h, None)
        with suppress(StoreError), self._transact() as conn:
            conn.execute(sql.DELETE_BLOB, (h,))

    def _read_file(self, h: str) -> bytes:
        path = self._blob_path(h)
        try:
            f = open(path, "rb", buffering=0)  # noqa: SIM115 (closed below)
        except FileNotFoundError as exc:
            raise BlobMissingError(f"blob {h} is missing: no file {path}", h) from exc
        except OSError as exc:
            raise StoreError(f"cannot read blob file {path}: {exc}") from exc
        try:
            with f:
                st = os.fstat(f.fileno())
                head = f.read(1)
                # FileIO.read(n) reads straight into one new bytes object of n bytes, so a
                # raw blob is read once and never copied (readinto a preallocated bytearray
                # would need one more copy to become bytes).
                want = max(st.st_size - 1, 0)
                if head == BLOB_RAW and want >= _READINTO_MIN:
                    # A large raw blob (typically NumPy buffers) is read into a bytearray:
                    # one copy from the kernel, and arrays loaded from it are writable
                    # views instead of read-only ones.
                    buf = bytearray(want)
                    view = memoryview(buf)
                    got = 0
                    while got < want:
                        n = f.readinto(view[got:])
                        if not n:
                            break
                        got += n
                    del view
                    if got < want:
                        del buf[got:]
                    body: bytes | bytearray = buf
                else:
                    # FileIO.read(n) reads straight into one new bytes object of n bytes.
                    body = f.read(want)
                    if len(body) < want:  # one read(2) stops at 2 GiB on Linux
                        body += f.readall()
            data = body if head == BLOB_RAW else decode_blob(head + body, h)
            verify_blob(data, h)
            return data  # type: ignore[return-value]  # bytearray for large raw blobs
        except BlobCorruptedError as exc:
            if head in (BLOB_RAW, BLOB_ZSTD):  # never discard a format we cannot read
                self._discard(path, st)
            raise BlobCorruptedError(f"{exc} (file {path})", h) from exc
        except OSError as exc:
            raise StoreError(f"cannot read blob file {path}: {exc}") from exc

    @staticmethod
    def _discard(path: str, read: os.stat_result) -> None:
        # Remove the corrupt file (unless someone has already replaced it), so that the
        # next put_blob of these bytes sees it missing and rewrites it.
        with suppress(OSError):
            now = os.stat(path)
            if (now.st_ino, now.st_dev) == (read.st_ino, read.st_dev):
                os.unlink(path)

    def has_blob(self, hash: str) -> bool:
        """Return whether the blob is recorded and its file (if any) is present."""
        row = self._one(sql.BLOB_INFO, (hash,))
        return row is not None and (not row[1] or _has_file(self._blob_path(hash), row[0]))

    # commits

    def put_commit(self, commit: Commit) -> None:
        """Record ``commit`` (idempotent by hash) and count a reference to its result blob.

        Raises:
            ValueError: the commit has no hash.
        """
        with self._transact() as conn:
            self._insert_commit(conn, commit)

    def _insert_commit(self, conn: sqlite3.Connection, commit: Commit) -> None:
        if not commit.hash:
            raise ValueError("a commit needs its hash (see _codec.compute_commit_hash)")
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
        data: bytes | Sequence[bytes | memoryview],
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
        with self._transact() as conn:
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
                    _unlink(self._blob_path(ref.hash))  # the blob moved into meta.db
            if release is not None:
                conn.execute(sql.RELEASE_CLAIM, release)
        return commit

    def get_commit(self, hash: str) -> Commit | None:
        """Return the commit with this full hash, or ``None``."""
        row = self._one(sql.GET_COMMIT, (hash,))
        return None if row is None else _commit(row)

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest completed, cacheable, unexpired commit of ``fingerprint``.

        A commit whose result blob is known to be lost is skipped, so the next ``submit``
        recomputes (and so repairs) it. This is the hit path: one indexed query; commits
        are immutable, so a decoded one is reused, and a small result's bytes are kept for
        the ``get_blob`` that follows.
        """
        row = self._one(sql.FIND_HIT, (fingerprint, time.time()))
        if row is None:
            return None
        h, body, last_accessed, inline = row
        commit = self._decoded.get(h)
        if commit is None:
            commit = commit_from_json(body)
            _put_bounded(self._decoded, h, commit, self._DECODED_MAX)
        commit.last_accessed = None if last_accessed is None else _dt(last_accessed)
        if inline is not None and commit.result is not None:
            _put_bounded(self._inline_hints, commit.result.hash, inline, self._DECODED_MAX)
        return commit

    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest commit of ``fingerprint`` whatever its status or expiry."""
        row = self._one(sql.LATEST, (fingerprint,))
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
        conn = self._conn()
        try:
            driver = _driver(conn, func_name, status, tags)
            query, params = sql.select_commits(
                "c.body, c.last_accessed", func_name, status, tags, driver, limit
            )
            return [_commit(row) for row in conn.execute(query, params).fetchall()]
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return the commits whose result is this blob, newest first (indexed)."""
        return [_commit(row) for row in self._all(sql.FIND_BY_RESULT, (blob_hash, limit))]

    def iter_commits(self) -> Iterator[Commit]:
        """Yield every commit, oldest first, a batch at a time (no long read transaction)."""
        after: tuple[float, int] = (-math.inf, 0)
        while True:
            rows = self._all(sql.ITER, (*after, self._BATCH))
            for row in rows:
                yield _commit(row)
            if len(rows) < self._BATCH:
                return
            after = (rows[-1][2], rows[-1][3])

    def get_history(self, hash: str) -> list[Commit]:
        """Return every unexpired commit with the same fingerprint as ``hash``, oldest first.

        An unknown hash gives ``[]``.
        """
        return [_commit(row) for row in self._all(sql.HISTORY, (hash, time.time()))]

    def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Return up to ``limit`` full commit hashes starting with ``prefix``, sorted.

        Raises:
            ValueError: ``prefix`` is empty, longer than 64 or not hexadecimal.
        """
        p = prefix.strip().lower()
        if not p or len(p) > 64 or p.strip(_HEX):
            raise ValueError(f"{prefix!r} is not a hash prefix (1-64 hex digits)")
        # Every hash starting with p sorts in [p, p + "g"): "g" follows every hex digit.
        return [row[0] for row in self._all(sql.PREFIX, (p, p + "g", limit))]

    def touch(self, hash: str, when: datetime) -> None:
        """Set the commit's ``last_accessed`` to ``when`` (an unknown hash is ignored)."""
        with self._transact() as conn:
            conn.execute(sql.TOUCH, (_ts(when), hash))

    # lifecycle

    def stats(self) -> dict[str, int]:
        """Return commit and blob counts and stored sizes (read from counters, O(1)).

        Keys: ``total_commits``, ``completed_commits``, ``stored_objects``, ``disk_bytes``,
        ``blob_objects``, ``blob_bytes``, ``inline_objects``, ``inline_bytes``; sizes are
        the stored (encoded, possibly compressed) bytes.
        """
        total, completed, files, file_bytes, inline, inline_bytes = self._one(sql.STATS, ())
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
        with self._transact() as conn:
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
            with self._transact() as conn:
                rows = conn.execute(query, (bound, self._BATCH)).fetchall()
                for row in rows:
                    done += bool(delete(conn, row))
            if len(rows) < self._BATCH:
                return done

    def _shrink(self, max_size_bytes: int) -> int:
        removed = 0
        while True:
            with self._transact() as conn:
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
        with self._transact() as conn:
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
        with self._transact() as conn:
            query, params = sql.select_commits(
                "c.hash", None, None, tags, _driver(conn, None, None, tags)
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
            _unlink(self._blob_path(hash))

    # leases

    def _live_claim(self, fingerprint: str) -> tuple[Lease, float] | None:
        row = self._one(sql.GET_CLAIM, (fingerprint,))
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
            if self._conn().execute(sql.NEW_CLAIM, params).rowcount == 1:
                return True
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        with self._transact() as conn:
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
        with self._transact() as conn:
            cur = conn.execute(sql.RENEW_CLAIM, (_ts(expires_at), fingerprint, owner))
            return cur.rowcount == 1

    def release_claim(self, fingerprint: str, owner: str) -> None:
        """Drop the lease on ``fingerprint`` if ``owner`` holds it; otherwise do nothing."""
        try:  # one autocommit statement
            self._conn().execute(sql.RELEASE_CLAIM, (fingerprint, owner))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

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
        with _registry_lock:
            self._closed = True
            self._disown_after_fork()
            conns, self._conns = self._conns, []
            self._local = threading.local()
        for _, conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
