"""PostgresStore: a cache in a PostgreSQL database a team already runs (its asyncio twin,
``AsyncPostgresStore``, is in :mod:`cashet.stores.postgres.async_store`).

A thin driver of the operations in :mod:`~cashet.stores.postgres.ops` and
:mod:`~cashet.stores.postgres.upkeep_ops`: each runs on one connection checked out of a
``psycopg_pool.ConnectionPool`` (autocommit: a point read is one round trip), as one
transaction when it writes several rows. The pool is made on first use in each process: a
forked child (a cluster worker) makes its own and never touches the parent's connections.
Waiting for a lease ``LISTEN``\\ s on the store's channel; a release ``NOTIFY``\\ s it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import sql as pgsql

from cashet._process import current_pid
from cashet.errors import BlobCorruptedError
from cashet.models import Commit, Lease, ObjectRef, TaskStatus
from cashet.protocols import BlobParts, CheckReport, Hit, HitCounts, ResultData, TagQuery
from cashet.stores.base import StoreBase
from cashet.stores.blobs import blob_hash, decode_blob, encode_blob, verify_blob
from cashet.stores.hits import HitBatch, HitRecorder
from cashet.stores.postgres.calls import Flow, Q, Tx
from cashet.stores.postgres.common import DOC_ARGS, PgStoreBase, current_version, migrate
from cashet.stores.postgres.schema import SCHEMA_VERSION
from cashet.stores.quarantine import QuarantineEntry

__all__ = ["PostgresStore", "drive"]

T = TypeVar("T")


def _exec(cur: Any, q: Q) -> Any:
    if q.fetch == "many":
        cur.executemany(q.sql, q.params)
        return None
    if q.binary:
        cur.execute(q.sql, q.params, binary=True)
    else:
        cur.execute(q.sql, q.params)
    if q.fetch == "count":
        return cur.rowcount
    if q.fetch == "one":
        return cur.fetchone()
    return cur.fetchall()


def drive(conn: Any, flow: Flow[T], tx: bool = False) -> T:
    """Run ``flow`` on ``conn`` (in one transaction with ``tx``); return its result."""
    if tx:
        with conn.transaction():
            return drive(conn, flow)
    # One cursor per connection, kept on it: a cursor made per call costs as much as a
    # third of a hit's round trip (bench postgres_hit_f1). Every answer is fetched before
    # the flow goes on, so nested steps share it safely.
    cur = getattr(conn, "_cashet_cursor", None)
    if cur is None or cur.closed:
        cur = conn._cashet_cursor = conn.cursor()
    try:
        item = next(flow)
        while True:
            reply = drive(conn, item.flow, True) if isinstance(item, Tx) else _exec(cur, item)
            item = flow.send(reply)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class _Held:
    """The connection a thread keeps out of the pool (the hit path skips the checkout); it
    goes back to the pool when the thread ends (or the store closes)."""

    __slots__ = ("conn", "pid", "pool")

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self.pool = pool
        self.pid = -1  # until the connection is ours (getconn may raise)
        self.conn = pool.getconn()
        self.pid = current_pid()

    def __del__(self) -> None:
        if self.pid == current_pid():
            with suppress(Exception):
                self.pool.putconn(self.conn)


class PostgresStore(PgStoreBase, StoreBase):
    """A ``Store`` in PostgreSQL, shared by every process and machine that reaches it.

    Safe to share between threads and across ``fork``. Commits, tags, the blob index and
    leases are rows of the store's schema; small results live in their index row (a hit is
    one indexed query), larger ones in the blob backend. Leases compare expiry times from
    the clocks of the machines involved: keep them in sync (NTP), as for any lease.
    """

    __doc__ = (__doc__ or "") + DOC_ARGS

    def __init__(
        self,
        dsn: str = "postgresql://localhost/postgres",
        *,
        schema: str = "cashet",
        blobs: Any = None,
        inline_threshold: int = 1024,
        max_connections: int = 16,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(dsn, schema, blobs, inline_threshold, max_connections, connect_timeout)
        self._pool_pid = -1
        self._pool_lock = threading.Lock()
        self._hits = HitRecorder(self._write_hits, repr(self))
        self.record_hit = self._hits.record  # type: ignore[method-assign]
        self._prepare()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # driver

    def _prepare(self) -> None:
        """Connect once now (a wrong DSN fails here, clearly) and create or migrate the
        schema."""
        try:
            with psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
            ) as conn:
                if drive(conn, current_version(self._sql)) != SCHEMA_VERSION:
                    drive(conn, migrate(self._sql), tx=True)
        except psycopg.Error as exc:
            raise self._error(exc, "open the store") from None

    def _get_pool(self) -> Any:
        pool = self._pool
        if pool is not None and self._pool_pid == current_pid():
            return pool
        if self._pool_pid != current_pid():
            self._pool_lock = threading.Lock()  # a forked child: the parent's may be held
        with self._pool_lock:
            if self._closed:
                raise self._closed_error()
            if self._pool is None or self._pool_pid != current_pid():
                # The parent's pool (after a fork) is forgotten, never closed: its
                # connections are the parent's (psycopg closes none of them here).
                self._pool = psycopg_pool.ConnectionPool(
                    self._dsn,
                    min_size=1,
                    max_size=self._max_connections,
                    kwargs={"autocommit": True},
                    timeout=self._connect_timeout,
                    name=f"cashet-{self._schema}",
                    open=True,
                )
                self._pool_pid = current_pid()
            return self._pool

    def _conn(self) -> Any:
        """This thread's connection (held out of the pool; a new one after a fork)."""
        try:
            held = self._local.held
            if held.pid == current_pid() and held.pool is self._pool:
                return held.conn
        except AttributeError:
            pass
        self._local.held = _Held(self._get_pool())
        return self._local.held.conn

    def _run(self, flow: Flow[T], tx: bool = False, what: str = "") -> T:
        if self._closed:
            raise self._closed_error()
        try:
            conn = self._conn()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise self._error(exc, what or "connect") from None
        try:
            return drive(conn, flow, tx)
        except psycopg.Error as exc:
            if conn.closed or conn.broken:  # a new connection next time
                with suppress(AttributeError):
                    del self._local.held
            raise self._error(exc, what or _name(flow)) from None

    # blobs

    def put_blob(self, data: bytes) -> ObjectRef:
        """Store ``data`` once by content hash."""
        return self._run(self._ops.put_encoded(blob_hash(data), len(data), encode_blob(data)), True)

    def put_blob_parts(self, parts: BlobParts) -> ObjectRef:
        """Store the concatenation of ``parts``."""
        return self.put_blob(b"".join(parts))

    def get_blob(self, ref: ObjectRef) -> bytes:
        """Return the blob's bytes, verified against its hash.

        Raises:
            BlobMissingError: the blob is not stored.
            BlobCorruptedError: the stored bytes do not match; the copy is dropped, so
                that storing the same bytes again repairs it.
        """
        try:
            payload, verified = self._run(self._ops.read_blob(ref.hash))
            if verified:
                return payload
            data = decode_blob(payload, ref.hash)
            verify_blob(data, ref.hash)
        except BlobCorruptedError:
            self._run(self._ops.forget_blob(ref.hash), True)
            raise
        return data

    def has_blob(self, hash: str) -> bool:
        """Return whether the blob is stored."""
        return self._run(self._ops.has_blob(hash))

    # commits

    def put_commit(self, commit: Commit) -> None:
        """Record ``commit`` (idempotent by hash) and count a reference to its result.

        Raises:
            ValueError: the commit has no hash.
        """
        self._run(self._ops.put_commit(commit), True)

    def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """Store a result, record ``build(ref)`` and release the lease (one transaction
        for the commit and the release)."""
        ref = self.put_blob(data) if isinstance(data, bytes) else self.put_blob_parts(data)
        commit = build(ref)
        self._run(self._ops.record(commit, release), True)
        return commit

    def get_commit(self, hash: str) -> Commit | None:
        """Return the commit with this full hash, or ``None`` (also when it is damaged)."""
        return self._run(self._ops.get_commit(hash))

    def lookup(self, fingerprint: str) -> Hit | None:
        """The newest completed, cacheable, unexpired commit of ``fingerprint`` whose
        result is stored, with a small result's verified bytes (one indexed query)."""
        return self._run(self._ops.lookup(fingerprint))

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return what :meth:`lookup` finds, without the bytes."""
        hit = self.lookup(fingerprint)
        return None if hit is None else hit.commit

    def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return the commits whose result is this blob, newest first (indexed)."""
        return self._run(self._ops.by_result(blob_hash, limit))

    def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Describe the live lease on ``fingerprint`` as a running commit, or ``None``."""
        return self._run(self._ops.running_commit(fingerprint))

    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest commit of ``fingerprint`` whatever its status or expiry."""
        return self._run(self._ops.latest(fingerprint))

    def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """Return commits newest first, filtered by function, status and tags."""
        return self._run(self._ops.list_commits(func_name, limit, status, tags))

    def iter_commits(self) -> Iterator[Commit]:
        """Yield every commit, oldest first, a page at a time (no long transaction)."""
        after: Any = (float("-inf"), 0)
        while after is not None:
            commits, after = self._run(self._ops.iter_page(after))
            yield from commits

    def have_commits(self, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` this store records (``push``/``pull`` ask in batches)."""
        return self._run(self._ops.have_commits(hashes))

    def have_blobs(self, hashes: Sequence[str]) -> set[str]:
        """Which of the blobs ``hashes`` this store has."""
        return self._run(self._ops.have_blobs(hashes))

    def put_many(self, blobs: Sequence[bytes], commits: Sequence[Commit]) -> None:
        """Store ``blobs``, then record ``commits``, in one transaction (``push``/``pull``:
        a batch costs a few round trips, not a few per commit)."""
        encoded = [(blob_hash(b), len(b), encode_blob(b)) for b in blobs]
        self._run(self._ops.put_many(encoded, commits), True)

    def get_history(self, hash: str) -> list[Commit]:
        """Return every unexpired commit with the same fingerprint as ``hash``, oldest first."""
        return self._run(self._ops.history(hash))

    def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Return up to ``limit`` full commit hashes starting with ``prefix``, sorted."""
        return self._run(self._ops.resolve_prefix(prefix, limit))

    def touch(self, hash: str, when: datetime) -> None:
        """Set the commit's ``last_accessed`` to ``when`` (an unknown hash is ignored)."""
        self._run(self._ops.touch(hash, when))

    def check(self, repair: bool = False) -> CheckReport:
        """Check the store's invariants; with ``repair``, fix what can be fixed (see
        :mod:`cashet.stores.postgres.doctor_ops`)."""
        return self._run(self._ops.check(repair, repr(self)))

    def quarantined(self) -> list[QuarantineEntry]:
        """Every damaged entry set aside, oldest first (see :mod:`cashet.stores.quarantine`)."""
        return self._run(self._ops.quarantined())

    # hits (the HitCounter capability: counted in memory, one transaction per batch)

    def record_hit(self, hash: str, when: float, seconds: float) -> None:
        """Count one hit of commit ``hash`` (no IO; written with the next batch)."""
        self._hits.record(hash, when, seconds)

    def flush_hits(self) -> None:
        """Write the hits this process recorded and has not written yet."""
        self._hits.flush()

    def _write_hits(self, batch: HitBatch) -> None:
        self._run(self._ops.add_hits(batch), True)

    def hit_counts(self, hashes: Sequence[str]) -> dict[str, HitCounts]:
        """The written hits of the commits ``hashes`` that have any."""
        return self._run(self._ops.hit_counts(hashes))

    def hit_totals(self) -> tuple[int, float]:
        """``(hits, compute seconds saved)`` over every commit (written hits)."""
        return self._run(self._ops.hit_totals())

    # lifecycle

    def stats(self) -> dict[str, int]:
        """Return commit and blob counts and stored sizes."""
        return self._run(self._ops.stats())

    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        """Remove old, expired and (over ``max_size_bytes``) least recently used commits;
        free unreferenced blobs after ``orphan_grace``. Returns the commits removed."""
        self._hits.flush()  # access times decide what goes
        return self._run(self._ops.evict(older_than, max_size_bytes, self.orphan_grace))

    def delete_commit(self, hash: str) -> bool:
        """Delete one commit (a unique prefix will do); free its blob at its last reference.

        Raises:
            AmbiguousHashError: the prefix names several commits.
        """
        return self._run(self._ops.delete_commit(hash))

    def delete_by_tags(self, tags: TagQuery) -> int:
        """Delete every commit carrying ``tags``; return how many.

        Raises:
            ValueError: ``tags`` is empty (that would delete everything).
        """
        return self._run(self._ops.delete_by_tags(tags))

    # leases

    def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        """Take the lease on ``fingerprint`` unless another owner holds a live one."""
        return self._run(self._ops.try_claim(fingerprint, lease), True)

    def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        """The calls in flight: ``(fingerprint, lease, claimed at)`` of each live lease."""
        return self._run(self._ops.running_claims())

    def get_claim(self, fingerprint: str) -> Lease | None:
        """Return the live lease on ``fingerprint``, or ``None``."""
        return self._run(self._ops.get_claim(fingerprint))

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        """Extend ``owner``'s lease; ``False`` when it no longer holds it."""
        return self._run(self._ops.renew_claim(fingerprint, owner, expires_at))

    def release_claim(self, fingerprint: str, owner: str) -> None:
        """Drop the lease if ``owner`` holds it, and wake the waiters."""
        self._run(self._ops.release_claim(fingerprint, owner))

    def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """Block until nobody holds a live lease on ``fingerprint``, or ``timeout`` seconds.

        Woken by the release's notification; also when the lease expires (its holder may
        be dead: a lease of this host is looked at every 0.25 s).
        """
        deadline = time.monotonic() + timeout
        if self._closed:
            raise self._closed_error()
        pool = self._get_pool()
        try:
            conn = pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise self._error(exc, "wait for a lease") from None
        channel = pgsql.Identifier(self._sql.channel)
        try:
            conn.execute(pgsql.SQL("LISTEN {}").format(channel))
            try:  # looked at only once listening, so no release can fall in between
                while (lease := drive(conn, self._ops.get_claim(fingerprint))) is not None:
                    pause = self._ops.pause(lease, deadline - time.monotonic())
                    if pause <= 0:
                        return
                    for note in conn.notifies(timeout=pause):
                        if note.payload == fingerprint:
                            break
            finally:
                conn.execute("UNLISTEN *")
        except psycopg.Error as exc:
            raise self._error(exc, f"wait for the lease on {fingerprint[:16]}") from None
        finally:
            pool.putconn(conn)

    def close(self) -> None:
        """Write the hits not written yet and close the connection pool. Idempotent; any
        later use raises ``StoreError``."""
        if self._closed:
            return
        self._hits.close()
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == current_pid():
            pool.close()


def _name(flow: Any) -> str:
    """What a flow does, for an error message (its operation's name)."""
    name = getattr(getattr(flow, "gi_code", None), "co_name", "") or "reach the database"
    return name.replace("_", " ")
