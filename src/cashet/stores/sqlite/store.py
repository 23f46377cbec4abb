"""SQLiteStore: the default embedded store, one directory on the local disk.

Layout::

    <path>/meta.db            commits, tags, blob index, small blobs inline, leases
    <path>/objects/ab/cdef…   blobs whose encoded form is at least ``inline_threshold`` bytes
                              (or, with ``blobs=``, in that blob store: an S3 bucket)

``meta.db`` runs in WAL mode: readers never wait for the writer (connections and
transactions: :mod:`~cashet.stores.sqlite.connection`; blob files:
:mod:`~cashet.stores.objects.files`; leases: :mod:`~cashet.stores.sqlite.claims`; delete
and evict: :mod:`~cashet.stores.sqlite.removal`). Counters, blob reference counts and tag
clean-up are kept by triggers (see :mod:`cashet.stores.sqlite.schema`), so ``stats()`` is
O(1) and garbage collection reads only unreferenced blobs. Every blob is verified against
its hash when read, and so is every commit (a damaged row is never returned: it is
quarantined, see :mod:`~cashet.stores.sqlite.damage`). Every commit returned is a fresh
object, the caller's to mutate.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from cashet import _process
from cashet.errors import (
    BlobCorruptedError,
    ReadOnlyStoreWarning,
    StoreError,
)
from cashet.hashing.commits import check_commit_hash
from cashet.hashing.lazy import decode_lazily
from cashet.models import Commit, ObjectRef, TaskStatus
from cashet.protocols import Hit, HitCounts, ResultData, TagQuery
from cashet.stores.base import LocalLeases, StoreBase, copy_commit
from cashet.stores.blobs import (
    blob_hash,
    decode_blob,
    encode_blob,
    verify_blob,
)
from cashet.stores.config import StoreConfig
from cashet.stores.hits import HitBatch, HitRecorder
from cashet.stores.objects.base import BlobStore, BlobStoreConfig
from cashet.stores.objects.files import READINTO_MIN, FileBlobStore
from cashet.stores.objects.opening import open_blob_store
from cashet.stores.quarantine import hit_fingerprint
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.blob_rows import BlobsMixin
from cashet.stores.sqlite.claims import ClaimsMixin
from cashet.stores.sqlite.connection import DB_ERRORS, Database
from cashet.stores.sqlite.damage import DamageMixin, epoch_or_none
from cashet.stores.sqlite.doctor import COUNTED, DoctorMixin, warn_files_left
from cashet.stores.sqlite.layout import DB_FILE, check_store_dir
from cashet.stores.sqlite.lean import FunctionBooks, FunctionRowDamaged, LeanRowsMixin, fp_key
from cashet.stores.sqlite.legacy import migrate_if_legacy
from cashet.stores.sqlite.pages import PagesMixin
from cashet.stores.sqlite.readonly import ReadOnlyMixin, unwritable
from cashet.stores.sqlite.removal import RemovalMixin
from cashet.stores.sqlite.schema import to_epoch
from cashet.stores.sqlite.tiny import in_row
from cashet.stores.stats import store_stats

__all__ = ["SQLiteStore"]

_HEX = "0123456789abcdef"


def _has_content(db_file: str) -> bool:
    """Whether ``meta.db`` exists with something in it (else a store opens empty)."""
    try:
        return os.stat(db_file).st_size > 0
    except OSError:
        return False


class SQLiteStore(
    LeanRowsMixin,
    ReadOnlyMixin,
    DoctorMixin,
    ClaimsMixin,
    RemovalMixin,
    PagesMixin,
    DamageMixin,
    BlobsMixin,
    StoreBase,
):
    """The default store: SQLite metadata and content-addressed blob files in one directory.

    Safe to share between threads and across ``fork``; several processes may use one
    directory at once.

    Args:
        path: the store directory (created if missing, unless read-only).
        inline_threshold: blobs whose encoded form is smaller than this many bytes live in
            ``meta.db``; larger ones are files under ``objects/``.
        busy_timeout: seconds a write waits for another writer before ``StoreError``.
        readonly: open the store read-only (:mod:`~cashet.stores.sqlite.readonly`): hits
            are served, misses computed and not stored, nothing is written. A store whose
            directory cannot be written is opened so anyway, with a
            :class:`~cashet.errors.ReadOnlyStoreWarning`.
        blobs: where blobs too large to be inline go (a ``BlobStore``, e.g.
            ``S3BlobStore``, or its ``BlobStoreConfig``); default: ``FileBlobStore`` in
            ``<path>/objects``. Results under ``inline_threshold`` stay in ``meta.db``
            either way. The blob store belongs to this store: its ``evict``, ``delete``
            and ``doctor --repair`` delete blobs no commit here uses.

    Warns:
        DamagedStoreWarning: ``meta.db`` was missing or empty while ``objects/`` holds blob
            files (no commit knows them any more; ``cashet doctor --repair`` reclaims them).

    Raises:
        StoreError: the directory or database cannot be opened, or ``meta.db`` was written
            by a newer cashet whose schema this one does not know; read-only, also when
            there is no store there or it needs an upgrade.
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
        readonly: bool = False,
        blobs: BlobStore | BlobStoreConfig | None = None,
    ) -> None:
        self._path = Path(path)
        self._inline_threshold = inline_threshold
        self._busy_timeout = busy_timeout
        self._host = _process.hostname()
        db_file = os.fspath(self._path / DB_FILE)
        why = "" if readonly else unwritable(self._path, db_file)
        self.readonly: bool = readonly or bool(why)
        self._local_leases = LocalLeases()
        self._lost: set[str] = set()
        self._told_unstored = False
        if self.readonly:
            check_store_dir(self._path)  # never created read-only
        if isinstance(blobs, BlobStoreConfig):
            blobs = open_blob_store(blobs)
        self._files: FileBlobStore | None = None
        if not self.readonly:
            try:
                os.makedirs(self._path, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the store directory {self._path}: {exc}") from exc
        if blobs is None:
            objects = self._path / "objects"
            blobs = self._files = FileBlobStore(objects, self._path, create=not self.readonly)
        self._blobs: BlobStore = blobs
        # Decoded and verified commits by hash (commits never change; callers get copies),
        # each with the fingerprint it answers as a hit ("" if none: failed, uncached).
        self._decoded: _process.BoundedCache[str, tuple[Commit, str]] = _process.BoundedCache(
            self._DECODED_MAX
        )
        self._books = FunctionBooks()  # the function rows commits are deflated against
        gone = False
        if not self.readonly:
            # A store of the published cashet 0.4.x/0.5.x is migrated first (or refused).
            with _process.fork_gate:
                migrate_if_legacy(self._path, inline_threshold)
            gone = not _has_content(db_file)
        self._db = Database(db_file, busy_timeout, repr(self), readonly=self.readonly)
        self._hits = HitRecorder(self._write_hits, repr(self))
        if not self.readonly:  # the hit path calls the recorder directly (one call less)
            self.record_hit = self._hits.record  # type: ignore[method-assign]
        if gone and self._files is not None and not self.stats()["total_commits"]:
            warn_files_left(self._path, self._files.root)  # (not recovered from the WAL)
        if why:
            warnings.warn(
                ReadOnlyStoreWarning(
                    f"the cashet store {self._path} is opened read-only because {why}:"
                    " cache hits are served, misses are computed but not stored (pass"
                    " readonly=True to say you know)"
                ),
                stacklevel=3,
            )

    @property
    def path(self) -> Path:
        """The store directory."""
        return self._path

    def __repr__(self) -> str:
        if self._files is None:
            return f"SQLiteStore({os.fspath(self._path)!r}, blobs={self._blobs!r})"
        return f"SQLiteStore({os.fspath(self._path)!r})"

    @property
    def blobs(self) -> BlobStore:
        """Where the blobs that are not inline are kept."""
        return self._blobs

    @blobs.setter
    def blobs(self, blobs: BlobStore) -> None:
        # (Client(local_cache=...) puts a CachedBlobStore in front of the one given)
        self._blobs = blobs
        self._files = blobs if isinstance(blobs, FileBlobStore) else None

    @property
    def config(self) -> StoreConfig:
        """What reopens this store in another process (a cluster worker): the absolute
        path and the options. See :mod:`cashet.stores.shipping`."""
        options: tuple[tuple[str, Any], ...] = (
            ("inline_threshold", self._inline_threshold),
            ("busy_timeout", self._busy_timeout),
            ("readonly", self.readonly),
        )
        if self._files is None:  # (a config: its repr shows no credential)
            options += (("blobs", self._blobs.config),)
        return StoreConfig("sqlite", os.path.abspath(self._path), options)

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

    def put_commit(self, commit: Commit) -> None:
        """Record ``commit`` (idempotent by hash) and count a reference to its result blob.

        Raises:
            ValueError: the commit has no hash, or does not hash to it (it would never
                verify when read back).
        """
        check_commit_hash(commit)
        if self.readonly:
            return  # not stored
        row = self._commit_row(commit)
        with self._db.transact() as conn:
            self._insert_commit(conn, commit, row)

    def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """Store a result, record its commit and drop the lease: the end of a miss.

        Same effect as ``put_blob`` + ``put_commit(build(ref))`` + ``release_claim``, but a
        small (inline) result takes one transaction instead of three. Read-only, nothing
        is stored: the commit carries the bytes (``Commit.result_data``) for its
        ``ResultRef`` to load.
        """
        if self.readonly:
            return self._unstored_result(data, build, release)
        if not isinstance(data, bytes):
            ref = self.put_blob_parts(data)
            encoded = None
        elif len(data) >= READINTO_MIN:  # streamed, never encoded whole in memory
            ref = self._put_large([data], blob_hash(data), len(data))
            encoded = None
        else:
            encoded = encode_blob(data)
            if len(encoded) >= self._inline_threshold:
                ref = self._put_small(data, blob_hash(data), encoded)  # encoded once
                encoded = None
            else:
                ref = ObjectRef(blob_hash(data), len(data))
        commit = build(ref)
        row = self._commit_row(commit)  # deflated before the write lock is taken
        held = encoded if encoded is not None and in_row(encoded, self._inline_threshold) else None
        with self._db.transact() as conn:
            # The commit first: a new blob row then counts it at once (refcount 1), so it
            # never enters the index of unreferenced blobs. An existing row was counted by
            # the commit's insert trigger. A tiny result goes in the commit's row (v8).
            self._insert_commit(conn, commit, row, held)
            if encoded is not None and held is None:
                was = conn.execute(sql.BLOB_INFO, (ref.hash,)).fetchone()
                conn.execute(
                    sql.BLOB_UPSERT, (ref.hash, ref.size, len(encoded), encoded, time.time())
                )
                if was is not None and was[1]:
                    self._blobs.delete(ref.hash)  # the blob moved into meta.db
            if release is not None:
                conn.execute(sql.RELEASE_CLAIM, release)
        return commit

    def _unstored_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None,
    ) -> Commit:
        joined = data if isinstance(data, bytes) else b"".join(data)
        commit = build(ObjectRef(blob_hash(joined), len(joined)))
        commit.result_data = joined
        if release is not None:
            self.release_claim(*release)
        self._unstored(commit.task_def.func_name)
        return commit

    def get_commit(self, hash: str) -> Commit | None:
        """Return the commit with this full hash, or ``None`` (also when it is damaged)."""
        row = self._db.one(sql.GET_COMMIT, (hash,))
        return None if row is None else self._row_commit(row)

    def _template(
        self, h: str, body: Any, rowid: Any, fn: Any, result: Any, settle: bool = True
    ) -> tuple[Commit, str] | Literal[False] | None:
        """The decoded and verified commit ``h`` and the fingerprint it is a hit for, kept
        (never handed out: callers get copies); ``None`` when the row is damaged (it is
        quarantined), or ``False`` then without ``settle`` (nothing written).

        Verified once per commit per process: the kept template is what hashes to ``h``.
        """
        cached = self._decoded.get(h)
        if cached is None:
            try:
                template = self._verified(h, body, fn, result, decode_lazily)  # the tail: later
            except FunctionRowDamaged:
                return None  # not this row's damage: left for cashet doctor
            except ValueError as exc:
                if not settle:
                    return False
                self._quarantine_row(rowid, h, body, f"the stored commit is damaged: {exc}")
                return None
            cached = (template, hit_fingerprint(template))
            self._decoded.put(h, cached)
        return cached

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest completed, cacheable, unexpired commit of ``fingerprint``.

        A commit whose result blob is known to be lost is skipped, so the next ``submit``
        recomputes (and so repairs) it. One indexed query; commits are immutable, so a
        decoded one is reused (the caller gets a copy). The hit path is :meth:`lookup`.
        """
        hit = self.lookup(fingerprint)
        return None if hit is None else hit.commit

    def lookup(self, fingerprint: str) -> Hit | None:
        """Return what ``find_by_fingerprint`` finds, with a small result's verified bytes.

        The same single query; nothing is kept for a later ``get_blob``. The commit found
        must be the one asked for by its own verified content (its fingerprint, completed,
        cacheable, unexpired): whatever the indexes or columns say, anything else is a miss.
        """
        found = self._lookup(fingerprint, True)
        return None if found is False else found

    def lookup_nowait(self, fingerprint: str) -> Hit | Literal[False] | None:
        """:meth:`lookup` for an event loop: one indexed read and nothing else.

        It never writes, so it never waits for a writer (WAL mode; see
        :attr:`nonblocking_reads`), and it is checked exactly as :meth:`lookup`. ``False``
        when only a write can settle the answer (a damaged row to quarantine, a row whose
        columns contradict its body): call :meth:`lookup` then, off the loop.
        """
        return self._lookup(fingerprint, False)

    def _lookup(self, fingerprint: str, settle: bool) -> Hit | Literal[False] | None:
        key = fp_key(fingerprint)
        row = self._db.one(sql.FIND_HIT_ONE, (key, time.time()))
        if row is None:
            return None
        h, body, last_accessed, inline, rowid, fn, result = row
        cached = self._decoded.get(h) or self._template(h, body, rowid, fn, result, settle)
        if cached is None or cached is False:
            return cached  # damaged: None once quarantined, False to leave it to lookup
        template, answers = cached
        if (
            answers != fingerprint
            and template.fingerprint != fingerprint
            and fp_key(template.fingerprint) == key  # another call's, under the same key
        ):
            return self._lookup_shared(fingerprint, key, settle)
        if answers != fingerprint or (template.expires_at is not None and template.is_expired()):
            if not settle:
                return False  # lookup settles it (quarantine, or a note)
            self._mismatch(rowid, template, fingerprint)
            return None
        return self._hit(template, last_accessed, inline)

    def _hit(self, template: Commit, last_accessed: Any, inline: Any) -> Hit | None:
        """The hit of a found commit: a copy, with a small result's verified bytes."""
        if self._lost and template.result is not None and template.result.hash in self._lost:
            return None  # read-only: found lost in this process
        data = None
        if type(inline) is bytes and template.result is not None:
            blob = template.result.hash
            try:  # (try, not contextlib.suppress: this is the hit path)
                decoded = decode_blob(inline, blob)
                verify_blob(decoded, blob)
                data = decoded  # only once verified
            except BlobCorruptedError:  # get_blob reports (and forgets) it
                pass
        return Hit(copy_commit(template, epoch_or_none(last_accessed)), data)

    def _lookup_shared(
        self, fingerprint: str, key: int, settle: bool
    ) -> Hit | Literal[False] | None:
        """A lookup whose fingerprint key another call's shares (no damage): the newest
        of the key's rows that answers ``fingerprint``."""
        for h, body, last_accessed, inline, rowid, fn, result in self._db.all(
            sql.FIND_HIT, (key, time.time())
        ):
            cached = self._decoded.get(h) or self._template(h, body, rowid, fn, result, settle)
            if cached is False:
                return False
            if cached is not None and cached[1] == fingerprint:
                return self._hit(cached[0], last_accessed, inline)
        return None

    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest commit of ``fingerprint`` whatever its status or expiry."""
        for row in self._db.all(sql.LATEST, (fp_key(fingerprint),)):
            commit = self._row_commit(row)
            if commit is not None and commit.fingerprint == fingerprint:
                return commit
        return None

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

        A damaged row is left out (and quarantined); the next rows take its place.

        Raises:
            ValueError: ``limit`` is negative, or ``status`` is not a status.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        want = limit
        while True:
            try:
                with self._db.gated():
                    driver = sql.choose_driver(self._db.conn(), func_name, status, tags)
                query, params = sql.select_commits(
                    "c.body, c.last_accessed, c.hash, c.rowid, c.fn, c.result_hash",
                    func_name,
                    status,
                    tags,
                    driver,
                    want,
                )
            except DB_ERRORS as exc:
                raise self._db.error(exc) from exc
            rows = self._db.all(query, params)
            commits = self._rows_commits(rows)
            if limit is None or want is None or len(commits) >= limit or len(rows) < want:
                return commits[:limit]
            want += len(rows) - len(commits)  # as many more as were left out

    def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return the commits whose result is this blob, newest first (indexed)."""
        return self._rows_commits(self._db.all(sql.FIND_BY_RESULT, (blob_hash, limit)))

    def iter_commits(self) -> Iterator[Commit]:
        """Yield every commit, oldest first, a batch at a time (no long read transaction)."""
        after: tuple[float, int] = (-math.inf, 0)
        while True:
            rows = self._db.all(sql.ITER, (*after, self._BATCH))
            yield from self._rows_commits(rows)
            if len(rows) < self._BATCH:
                return
            after = (rows[-1][6], rows[-1][3])

    def get_history(self, hash: str) -> list[Commit]:
        """Return every unexpired commit with the same fingerprint as ``hash``, oldest first.

        An unknown hash gives ``[]``.
        """
        commits = self._rows_commits(self._db.all(sql.HISTORY, (hash, time.time())))
        mine = next((c for c in commits if c.hash == hash), None) or self.get_commit(hash)
        if mine is None:
            return []
        return [c for c in commits if c.fingerprint == mine.fingerprint]

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
            conn.execute(sql.TOUCH, (to_epoch(when), hash))

    # hits (the HitCounter capability: counted in memory, written in batches)

    def record_hit(self, hash: str, when: float, seconds: float) -> None:
        """Count one hit of commit ``hash`` (no IO; written with the next batch).

        A read-only store records nothing.
        """
        if not self.readonly:
            self._hits.record(hash, when, seconds)

    def flush_hits(self) -> None:
        """Write the hits this process recorded and has not written yet (one transaction)."""
        self._hits.flush()

    def _write_hits(self, batch: HitBatch) -> None:
        counts = [(n, last, saved, h) for h, (n, last, saved) in batch.items()]
        access = [(ts, h, ts) for (_, ts, _, h) in counts]
        with self._db.transact() as conn:
            conn.executemany(sql.ADD_HITS, counts)
            conn.executemany(sql.HIT_ACCESS, access)

    def hit_counts(self, hashes: Sequence[str]) -> dict[str, HitCounts]:
        """The written hits of the commits ``hashes`` that have any."""
        found: dict[str, HitCounts] = {}
        wanted = list(dict.fromkeys(hashes))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT hash, count, last_hit FROM hits WHERE hash IN ({marks})"
            for h, n, ts in self._db.all(query, chunk):
                found[h] = HitCounts(int(n), epoch_or_none(ts))
        return found

    def hit_totals(self) -> tuple[int, float]:
        """``(hits, compute seconds saved)`` over every commit (written hits)."""
        row = self._db.one(sql.HIT_TOTALS, ())
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    # lifecycle

    def stats(self) -> dict[str, int]:
        """Return commit and blob counts and stored sizes (read from counters, O(1)).

        Keys: ``total_commits``, ``completed_commits``, ``stored_objects``, ``disk_bytes``,
        ``blob_objects``, ``blob_bytes``, ``inline_objects``, ``inline_bytes``; sizes are
        the stored (encoded, possibly compressed) bytes.
        """
        row = self._db.one(sql.STATS, ())
        if row is None or not all(type(v) is int for v in row):
            # Damaged counters (``cashet doctor --repair`` rewrites them): counted instead.
            row = self._db.one(COUNTED, ())
        total, completed, files, file_bytes, inline, inline_bytes = row
        return store_stats(total, completed, files, file_bytes, inline, inline_bytes)

    def close(self) -> None:
        """Close every connection this store opened, in all threads. Idempotent.

        Any later use raises ``StoreError``. The hits recorded and not yet written are
        written first.
        """
        if not self.readonly:
            self._hits.close()
        self._db.close()
