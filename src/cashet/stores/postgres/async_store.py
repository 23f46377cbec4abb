"""AsyncPostgresStore: the asyncio driver (``psycopg`` ``AsyncConnection`` and
``psycopg_pool.AsyncConnectionPool``) of the operations the sync
:class:`~cashet.stores.postgres.store.PostgresStore` runs: the same data and semantics, so
sync and async clients share one cache.

The pool is made on the first call in the running loop (and again in a forked child, or
for another loop). Blobs of 1 MiB or more are hashed, compressed and verified off the event
loop. Hits are written by the process-wide flusher thread, where no loop runs: through a
sync store on the same database, made on the first batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
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
from cashet.stores.base import AsyncStoreBase
from cashet.stores.blobs import blob_hash, decode_blob, encode_blob, verify_blob
from cashet.stores.hits import HitBatch, HitRecorder
from cashet.stores.postgres.blob_table import ExternalBlobs
from cashet.stores.postgres.calls import Flow, Q, Tx
from cashet.stores.postgres.common import DOC_ARGS, PgStoreBase, current_version, migrate
from cashet.stores.postgres.schema import SCHEMA_VERSION
from cashet.stores.postgres.store import PostgresStore, _name
from cashet.stores.quarantine import QuarantineEntry

__all__ = ["AsyncPostgresStore"]

T = TypeVar("T")

#: Blobs at least this large are hashed, compressed and verified off the event loop.
_OFF_LOOP_BYTES = 1 << 20


async def _exec(cur: Any, q: Q) -> Any:
    if q.fetch == "many":
        await cur.executemany(q.sql, q.params)
        return None
    if q.binary:
        await cur.execute(q.sql, q.params, binary=True)
    else:
        await cur.execute(q.sql, q.params)
    if q.fetch == "count":
        return cur.rowcount
    if q.fetch == "one":
        return await cur.fetchone()
    return await cur.fetchall()


def _step(flow: Flow[Any], value: Any) -> tuple[bool, Any]:
    # StopIteration cannot cross a Future (asyncio turns it into a TypeError): report it.
    try:
        return False, flow.send(value)
    except StopIteration as stop:
        return True, stop.value


async def adrive(conn: Any, flow: Flow[T], tx: bool = False, off_loop: bool = False) -> T:
    """Run ``flow`` on the async ``conn`` (in one transaction with ``tx``). ``off_loop``:
    the flow's own steps run in a worker thread (they call a blob store that blocks)."""
    if tx:
        async with conn.transaction():
            return await adrive(conn, flow, False, off_loop)
    cur = getattr(conn, "_cashet_cursor", None)  # one per connection (see store.drive)
    if cur is None or cur.closed:
        cur = conn._cashet_cursor = conn.cursor()
    reply: Any = None
    while True:
        if off_loop:
            done, item = await asyncio.to_thread(_step, flow, reply)
        else:
            done, item = _step(flow, reply)
        if done:
            return item  # type: ignore[no-any-return]
        if isinstance(item, Tx):
            reply = await adrive(conn, item.flow, True, off_loop)
        else:
            reply = await _exec(cur, item)


def _encode(data: bytes) -> tuple[str, bytes]:
    return blob_hash(data), encode_blob(data)


def _decode(encoded: bytes, h: str) -> bytes:
    data = decode_blob(encoded, h)
    verify_blob(data, h)
    return data


class AsyncPostgresStore(PgStoreBase, AsyncStoreBase):
    """An ``AsyncStore`` in PostgreSQL: the same data and semantics as
    :class:`~cashet.stores.postgres.store.PostgresStore`.
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
        self._pool_key: tuple[int, Any] = (-1, None)
        self._opening: dict[tuple[int, Any], asyncio.Lock] = {}
        self._writer: PostgresStore | None = None
        self._external = isinstance(self._blobs, ExternalBlobs)
        self._hits = HitRecorder(self._write_hits, repr(self))
        self.record_hit = self._hits.record  # type: ignore[method-assign]

    async def __aenter__(self) -> AsyncPostgresStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # driver

    async def _get_pool(self) -> Any:
        key = (current_pid(), asyncio.get_running_loop())
        pool = self._pool
        if pool is not None and self._pool_key == key:
            return pool
        opening = self._opening.get(key)
        if opening is None:  # one per loop (and per process): a lock belongs to its loop
            opening = self._opening[key] = asyncio.Lock()
        async with opening:
            if self._closed:
                raise self._closed_error()
            if self._pool is not None and self._pool_key == key:
                return self._pool
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
                ) as conn:
                    if await adrive(conn, current_version(self._sql)) != SCHEMA_VERSION:
                        await adrive(conn, migrate(self._sql), tx=True)
            except psycopg.Error as exc:
                raise self._error(exc, "open the store") from None
            pool = psycopg_pool.AsyncConnectionPool(
                self._dsn,
                min_size=1,
                max_size=self._max_connections,
                kwargs={"autocommit": True},
                timeout=self._connect_timeout,
                name=f"cashet-{self._schema}",
                open=False,
            )
            await pool.open()
            # Another loop's pool (or the parent's) is left alone: it cannot be used here.
            self._pool, self._pool_key = pool, key
            return pool

    async def _run(self, flow: Flow[T], tx: bool = False, blobs: bool = False) -> T:
        """Run ``flow``; ``blobs``: it may call the blob store, whose calls block when it is
        not the ``blob_data`` table (they are made in a worker thread then)."""
        if self._closed:
            raise self._closed_error()
        pool = await self._get_pool()
        try:
            conn = await pool.getconn()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise self._error(exc, "connect") from None
        try:
            return await adrive(conn, flow, tx, blobs and self._external)
        except psycopg.Error as exc:
            raise self._error(exc, _name(flow)) from None
        finally:
            await asyncio.shield(pool.putconn(conn))

    # blobs

    async def put_blob(self, data: bytes) -> ObjectRef:
        if len(data) >= _OFF_LOOP_BYTES:
            h, encoded = await asyncio.to_thread(_encode, data)
        else:
            h, encoded = _encode(data)
        return await self._run(self._ops.put_encoded(h, len(data), encoded), True, True)

    async def put_blob_parts(self, parts: BlobParts) -> ObjectRef:
        data = b"".join(parts) if len(parts) != 1 else bytes(parts[0])
        return await self.put_blob(data)

    async def get_blob(self, ref: ObjectRef) -> bytes:
        try:
            encoded, verified = await self._run(self._ops.read_blob(ref.hash), blobs=True)
            if verified:
                return encoded
            if len(encoded) >= _OFF_LOOP_BYTES:
                return await asyncio.to_thread(_decode, encoded, ref.hash)
            return _decode(encoded, ref.hash)
        except BlobCorruptedError:
            await self._run(self._ops.forget_blob(ref.hash), True, True)
            raise

    async def has_blob(self, hash: str) -> bool:
        return await self._run(self._ops.has_blob(hash))

    # commits

    async def put_commit(self, commit: Commit) -> None:
        await self._run(self._ops.put_commit(commit), True)

    async def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """As :meth:`PostgresStore.put_result`; the commit and release are carried to
        their end even while cancelled."""
        if isinstance(data, bytes):
            ref = await self.put_blob(data)
        else:
            ref = await self.put_blob_parts(data)
        commit = build(ref)
        await asyncio.shield(self._run(self._ops.record(commit, release), True))
        return commit

    async def get_commit(self, hash: str) -> Commit | None:
        return await self._run(self._ops.get_commit(hash))

    async def lookup(self, fingerprint: str) -> Hit | None:
        return await self._run(self._ops.lookup(fingerprint))

    async def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        hit = await self.lookup(fingerprint)
        return None if hit is None else hit.commit

    async def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        return await self._run(self._ops.by_result(blob_hash, limit))

    async def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return await self._run(self._ops.running_commit(fingerprint))

    async def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        return await self._run(self._ops.latest(fingerprint))

    async def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        return await self._run(self._ops.list_commits(func_name, limit, status, tags))

    async def iter_commits(self) -> AsyncIterator[Commit]:
        after: Any = (float("-inf"), 0)
        while after is not None:
            commits, after = await self._run(self._ops.iter_page(after))
            for commit in commits:
                yield commit

    async def have_commits(self, hashes: Sequence[str]) -> set[str]:
        return await self._run(self._ops.have_commits(hashes))

    async def have_blobs(self, hashes: Sequence[str]) -> set[str]:
        return await self._run(self._ops.have_blobs(hashes))

    async def put_many(self, blobs: Sequence[bytes], commits: Sequence[Commit]) -> None:
        encoded = await asyncio.to_thread(lambda: [(*_encode(b), b) for b in blobs])
        batch = [(h, len(b), e) for h, e, b in encoded]
        await self._run(self._ops.put_many(batch, commits), True, True)

    async def get_history(self, hash: str) -> list[Commit]:
        return await self._run(self._ops.history(hash))

    async def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        return await self._run(self._ops.resolve_prefix(prefix, limit))

    async def touch(self, hash: str, when: datetime) -> None:
        await self._run(self._ops.touch(hash, when))

    async def check(self, repair: bool = False) -> CheckReport:
        return await self._run(self._ops.check(repair, repr(self)), blobs=True)

    async def quarantined(self) -> list[QuarantineEntry]:
        return await self._run(self._ops.quarantined())

    # hits (the AsyncHitCounter capability)

    def record_hit(self, hash: str, when: float, seconds: float) -> None:
        self._hits.record(hash, when, seconds)

    def _write_hits(self, batch: HitBatch) -> None:
        writer = self._writer
        if writer is None or writer._closed:
            options = {**self._options(), "max_connections": 2, "blobs": self._blobs}
            writer = self._writer = PostgresStore(self._dsn, **options)
            writer._hits.closed = True  # it writes ours; it records none of its own
        writer._write_hits(batch)

    async def flush_hits(self) -> None:
        await asyncio.to_thread(self._hits.flush)

    async def hit_counts(self, hashes: Sequence[str]) -> dict[str, HitCounts]:
        return await self._run(self._ops.hit_counts(hashes))

    async def hit_totals(self) -> tuple[int, float]:
        return await self._run(self._ops.hit_totals())

    # lifecycle

    async def stats(self) -> dict[str, int]:
        return await self._run(self._ops.stats())

    async def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        await self.flush_hits()
        flow = self._ops.evict(older_than, max_size_bytes, self.orphan_grace)
        return await self._run(flow, blobs=True)

    async def delete_commit(self, hash: str) -> bool:
        return await self._run(self._ops.delete_commit(hash), blobs=True)

    async def delete_by_tags(self, tags: TagQuery) -> int:
        return await self._run(self._ops.delete_by_tags(tags), blobs=True)

    # leases

    async def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        return await self._run(self._ops.try_claim(fingerprint, lease), True)

    async def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        return await self._run(self._ops.running_claims())

    async def get_claim(self, fingerprint: str) -> Lease | None:
        return await self._run(self._ops.get_claim(fingerprint))

    async def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        return await self._run(self._ops.renew_claim(fingerprint, owner, expires_at))

    async def release_claim(self, fingerprint: str, owner: str) -> None:
        await asyncio.shield(self._run(self._ops.release_claim(fingerprint, owner)))

    async def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """As :meth:`PostgresStore.wait_for_release`, awaiting the notification."""
        deadline = time.monotonic() + timeout
        if self._closed:
            raise self._closed_error()
        pool = await self._get_pool()
        try:
            conn = await pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise self._error(exc, "wait for a lease") from None
        channel = pgsql.Identifier(self._sql.channel)
        try:
            await conn.execute(pgsql.SQL("LISTEN {}").format(channel))
            try:
                while (lease := await adrive(conn, self._ops.get_claim(fingerprint))) is not None:
                    pause = self._ops.pause(lease, deadline - time.monotonic())
                    if pause <= 0:
                        return
                    async for note in conn.notifies(timeout=pause):
                        if note.payload == fingerprint:
                            break
            finally:
                await conn.execute("UNLISTEN *")
        except psycopg.Error as exc:
            raise self._error(exc, f"wait for the lease on {fingerprint[:16]}") from None
        finally:
            await asyncio.shield(pool.putconn(conn))

    async def close(self) -> None:
        """Write the hits not written yet and close the pool. Idempotent; any later use
        raises ``StoreError``."""
        if self._closed:
            return
        await asyncio.to_thread(self._hits.close)
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None and self._pool_key[0] == current_pid():
            await pool.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.close)
