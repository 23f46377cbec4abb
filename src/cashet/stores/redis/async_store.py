"""AsyncRedisStore: the ``redis.asyncio`` driver of the operations in
:mod:`cashet.stores.redis.ops`, with the same data and semantics as the sync
:class:`~cashet.stores.redis.store.RedisStore`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import IO, Any, TypeVar

from cashet.errors import StoreError
from cashet.models import Commit, Lease, ObjectRef, TaskStatus
from cashet.protocols import CheckReport, Hit, HitCounts, ResultData, TagQuery
from cashet.stores.base import AsyncStoreBase
from cashet.stores.hits import HitBatch, HitRecorder
from cashet.stores.objects.base import BlobStore, BlobStoreConfig
from cashet.stores.quarantine import QuarantineEntry
from cashet.stores.redis.calls import OpFlow, RedisCall
from cashet.stores.redis.common import (
    BACKOFF,
    DOC_ARGS,
    AsyncRetry,
    NoBackoff,
    NoScriptError,
    RedisError,
    RedisStoreBase,
    redis,
)
from cashet.stores.redis.external import EXTERNAL, opened
from cashet.stores.redis.keys import DEFAULT_PREFIX
from cashet.stores.redis.ops import IterCursor
from cashet.stores.redis.store import RedisStore

__all__ = ["AsyncRedisStore"]

T = TypeVar("T")

#: Blobs at least this large are hashed, compressed and verified off the event loop.
_OFF_LOOP_BYTES = 1 << 20


def _step(flow: OpFlow[Any], value: Any) -> tuple[bool, Any]:
    # StopIteration cannot cross a Future (asyncio turns it into a TypeError): report it.
    try:
        return False, flow.send(value)
    except StopIteration as stop:
        return True, stop.value


class AsyncRedisStore(RedisStoreBase, AsyncStoreBase):
    """An ``AsyncStore`` in Redis (``redis.asyncio``): the same data and semantics as
    :class:`RedisStore`, so sync and async clients can share one cache.
    """

    __doc__ = (__doc__ or "") + DOC_ARGS

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        max_connections: int | None = None,
        socket_timeout: float | None = 30.0,
        socket_connect_timeout: float | None = 5.0,
        chunk_size: int = 32 << 20,
        inline_threshold: int = 1024,
        options: Mapping[str, Any] | None = None,
        blobs: BlobStore | BlobStoreConfig | None = None,
    ) -> None:
        super().__init__(
            url,
            prefix,
            max_connections,
            socket_timeout,
            socket_connect_timeout,
            chunk_size,
            inline_threshold,
            options,
            blobs,
        )
        # An asyncio client needs the asyncio Retry: given the sync one, redis-py 8 converts
        # it with a warning (issue 9; tests/test_redis_store.py::test_no_warning_on_construction).
        self._r: Any = redis.asyncio.Redis.from_url(
            url, retry=AsyncRetry(NoBackoff(), 0), **self._kwargs
        )
        # Hits are written by the flusher thread and at exit, where no event loop may run:
        # through a sync store on the same Redis, made on the first batch.
        self._writer_args: tuple[str, dict[str, Any]] = (
            url,
            {
                "prefix": prefix,
                "max_connections": 2,
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": socket_connect_timeout,
                "chunk_size": chunk_size,
                "inline_threshold": inline_threshold,
                "options": options,
            },
        )
        self._writer: RedisStore | None = None
        self._hits = HitRecorder(self._write_hits, repr(self))
        self.record_hit = self._hits.record  # type: ignore[method-assign]

    async def __aenter__(self) -> AsyncRedisStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # driver

    async def _exec(self, call: RedisCall) -> Any:
        if self._closed:
            raise self._closed_error()
        if call.io is not None:  # the blob store's (blobs=): off the loop
            return await asyncio.to_thread(call.io)
        tries = 0
        started = time.monotonic()
        while True:
            try:
                if call.batch:
                    pipe = self._r.pipeline(transaction=False)
                    for cmd in call.batch:
                        pipe.execute_command(*cmd)
                    return await pipe.execute()
                script = call.script
                if script is None:
                    return await self._r.execute_command(*call.args)
                try:
                    return await self._r.execute_command("EVALSHA", script.sha, *call.args)
                except NoScriptError:
                    await self._r.execute_command("SCRIPT", "LOAD", script.source)
                    return await self._r.execute_command("EVALSHA", script.sha, *call.args)
            except RedisError as exc:
                await asyncio.sleep(self._down(call, exc, tries, started))
                tries += 1

    async def _run(self, flow: OpFlow[T]) -> T:
        try:
            call = next(flow)
            while True:
                try:
                    reply = await self._exec(call)
                except StoreError as exc:  # the flow may handle it (a best-effort write)
                    call = flow.throw(exc)
                    continue
                call = flow.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _run_off_loop(self, flow: OpFlow[T]) -> T:
        """Like ``_run``, but the flow's own steps (hashing, zstd, verification of a large
        blob) run in a worker thread; only the Redis calls are awaited on the loop."""
        done, value = await asyncio.to_thread(_step, flow, None)
        while not done:
            done, value = await asyncio.to_thread(_step, flow, await self._exec(value))
        return value  # type: ignore[no-any-return]

    # blobs

    async def put_blob(self, data: bytes) -> ObjectRef:
        """Store ``data`` once by content hash; a damaged or lost copy is rewritten."""
        if len(data) >= _OFF_LOOP_BYTES:
            return await self._run_off_loop(self._ops.put_blob(data))
        return await self._run(self._ops.put_blob(data))

    async def get_blob(self, ref: ObjectRef) -> bytes:
        """Return the blob's bytes, verified (see :meth:`RedisStore.get_blob`)."""
        if ref.size >= _OFF_LOOP_BYTES:
            return await self._run_off_loop(self._ops.get_blob(ref))
        return await self._run(self._ops.get_blob(ref))

    async def has_blob(self, hash: str) -> bool:
        """Return whether the blob is stored with all of its bytes."""
        return await self._run(self._ops.has_blob(hash))

    async def open_blob(self, ref: ObjectRef) -> AbstractContextManager[IO[bytes]] | None:
        """A blob kept in the blob store (``blobs=``) as a file verified as it is read, to
        read in a worker thread; ``None`` for one kept in Redis (``get_blob`` reads it). A
        corrupt object is deleted by the blob store; ``get_blob`` then drops its meta key."""
        blobs = self._ops.blob_store
        if blobs is None:
            return None
        meta = self._ops.keys.blob_meta(ref.hash)
        n = await self._exec(RedisCall("read blob", ("HGET", meta, "n")))
        if n is None or int(n) != EXTERNAL:
            return None
        return opened(blobs, ref, lambda: None)

    # commits

    async def put_commit(self, commit: Commit) -> None:
        """Record ``commit`` (idempotent by hash) and count a reference to its result."""
        await self._run(self._ops.put_commit(commit))

    async def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """Store a result, record ``build(ref)`` and release the lease (see
        :meth:`RedisStore.put_result`)."""
        size = len(data) if isinstance(data, bytes) else sum(memoryview(p).nbytes for p in data)
        if size >= _OFF_LOOP_BYTES:
            return await self._run_off_loop(self._ops.put_result(data, build, release))
        return await self._run(self._ops.put_result(data, build, release))

    async def get_commit(self, hash: str) -> Commit | None:
        """Return the commit with this full hash, or ``None``."""
        return await self._run(self._ops.get_commit(hash))

    async def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest completed, cacheable, unexpired commit whose result is stored."""
        return await self._run(self._ops.find_by_fingerprint(fingerprint))

    async def lookup(self, fingerprint: str) -> Hit | None:
        """Return what ``find_by_fingerprint`` finds, with a small result's verified bytes."""
        return await self._run(self._ops.lookup(fingerprint))

    async def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return the commits whose result is this blob, newest first (a scan, as
        :meth:`RedisStore.find_by_result`)."""
        return await AsyncStoreBase.find_by_result(self, blob_hash, limit)

    async def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Describe the live lease on ``fingerprint`` as a running commit, or ``None``."""
        return await self._run(self._ops.find_running_by_fingerprint(fingerprint))

    async def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest commit of ``fingerprint`` whatever its status or expiry."""
        return await self._run(self._ops.latest_for_fingerprint(fingerprint))

    async def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """Return commits newest first, filtered by function, status and tags."""
        return await self._run(self._ops.list_commits(func_name, limit, status, tags))

    async def iter_commits(self) -> AsyncIterator[Commit]:
        """Yield every commit, oldest first, a page at a time (``async for``)."""
        cursor = IterCursor()
        while not cursor.done:
            for commit in await self._run(self._ops.iter_page(cursor)):
                yield commit

    async def get_history(self, hash: str) -> list[Commit]:
        """Return every unexpired commit with the same fingerprint as ``hash``, oldest first."""
        return await self._run(self._ops.get_history(hash))

    async def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Return up to ``limit`` full commit hashes starting with ``prefix``, sorted."""
        return await self._run(self._ops.resolve_prefix(prefix, limit))

    async def touch(self, hash: str, when: datetime) -> None:
        """Set the commit's ``last_accessed`` to ``when`` (an unknown hash is ignored)."""
        await self._run(self._ops.touch(hash, when))

    # lifecycle

    async def check(self, repair: bool = False) -> CheckReport:
        """Check the store's invariants; with ``repair``, fix what can be fixed (see
        :mod:`cashet.stores.redis.doctor_ops`)."""
        return await self._run(self._ops.check(repair))

    async def quarantined(self) -> list[QuarantineEntry]:
        """Every damaged entry set aside, oldest first (see :mod:`cashet.stores.quarantine`)."""
        return await self._run(self._ops.quarantined())

    # hits (the AsyncHitCounter capability)

    def record_hit(self, hash: str, when: float, seconds: float) -> None:
        """Count one hit (in memory, on the loop, no IO; written with the next batch)."""
        self._hits.record(hash, when, seconds)

    def _write_hits(self, batch: HitBatch) -> None:
        writer = self._writer
        if writer is None:
            url, kwargs = self._writer_args
            writer = self._writer = RedisStore(url, **kwargs)
            writer._hits.closed = True  # it writes ours; it records none of its own
        writer.add_hits(batch)

    async def add_hits(self, batch: HitBatch) -> None:
        """Write one batch of hits (one script call, safe to resend)."""
        await self._run(self._ops.add_hits(batch))

    async def flush_hits(self) -> None:
        """Write the hits recorded and not written yet (off the loop)."""
        await asyncio.to_thread(self._hits.flush)

    async def hit_counts(self, hashes: Sequence[str]) -> dict[str, HitCounts]:
        """The written hits of the commits ``hashes`` that have any."""
        return await self._run(self._ops.hit_counts(list(dict.fromkeys(hashes))))

    async def hit_totals(self) -> tuple[int, float]:
        """``(hits, compute seconds saved)`` over every commit (written hits)."""
        return await self._run(self._ops.hit_totals())

    async def stats(self) -> dict[str, int]:
        """Return commit and blob counts and stored sizes (counters, O(1))."""
        return await self._run(self._ops.stats())

    async def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        """Remove old, expired and (over ``max_size_bytes``) least recently used commits."""
        await self.flush_hits()  # access times decide what goes
        return await self._run(self._ops.evict(older_than, max_size_bytes, self.orphan_grace))

    async def delete_commit(self, hash: str) -> bool:
        """Delete one commit; free its blob if nothing else references it."""
        return await self._run(self._ops.delete_commit(hash))

    async def delete_by_tags(self, tags: TagQuery) -> int:
        """Delete every commit matching ``tags``; return how many."""
        return await self._run(self._ops.delete_by_tags(tags))

    # leases

    async def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        """Take the lease on ``fingerprint`` unless another owner holds a live one."""
        return await self._run(self._ops.try_claim(fingerprint, lease))

    async def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        """The calls in flight: ``(fingerprint, lease, claimed at)`` of each live lease."""
        return await self._run(self._ops.running_claims())

    async def get_claim(self, fingerprint: str) -> Lease | None:
        """Return the live lease on ``fingerprint``, or ``None``."""
        return await self._run(self._ops.get_claim(fingerprint))

    async def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        """Extend ``owner``'s lease; ``False`` when it no longer holds it."""
        return await self._run(self._ops.renew_claim(fingerprint, owner, expires_at))

    async def release_claim(self, fingerprint: str, owner: str) -> None:
        """Drop the lease if ``owner`` holds it, and wake the waiters."""
        await self._run(self._ops.release_claim(fingerprint, owner))

    async def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """Wait until nobody holds a live lease on ``fingerprint``, or ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if await self.get_claim(fingerprint) is None:
            return
        op = RedisCall(f"wait for the lease on {fingerprint[:16]}", ())
        try:
            pubsub = self._r.pubsub()
            try:
                await pubsub.subscribe(self._ops.keys.channel(fingerprint))
                while await pubsub.get_message(timeout=max(deadline - loop.time(), 0)) is None:
                    if loop.time() >= deadline:
                        return
                while (lease := await self.get_claim(fingerprint)) is not None:
                    pause = self._ops.pause(lease, deadline - loop.time())
                    if pause <= 0:
                        return
                    await pubsub.get_message(timeout=pause)
            finally:
                await pubsub.aclose()
        except RedisError as exc:
            self._down(op, exc, len(BACKOFF))

    async def close(self) -> None:
        """Close the connection pool, after writing the hits not written yet. Idempotent;
        any later use raises ``StoreError``."""
        if not self._closed:
            await asyncio.to_thread(self._hits.close)
            if self._writer is not None:
                self._writer.close()
        self._closed = True
        await self._r.aclose()
