"""AsyncSQLiteStore: the SQLite store for asyncio, with no second implementation.

It wraps one :class:`~cashet.stores.sqlite.store.SQLiteStore` and runs every call in one worker
thread of its own, so the store's connection is used by that thread alone and calls are
serialized in the order they were awaited (Starlette's ``run_in_threadpool``, anysqlite's
``CapacityLimiter(1)``). The one exception is the hit path: :meth:`~AsyncSQLiteStore.lookup`
is one indexed read that never waits for a writer (WAL mode), made on the loop in a
connection of the loop's own thread, since it costs less than the hop. It writes nothing; a
lookup that must (a damaged row to quarantine) is handed to the worker thread. Blob files
are never read on the loop.

``wait_for_release`` polls with ``asyncio.sleep`` between cheap checks, so a waiter never
occupies the worker thread that the lease holder needs to record its result.

It is :class:`~cashet.protocols.SyncBacked`: sync code over the whole store runs on
:attr:`~AsyncSQLiteStore.sync_store` through :meth:`~AsyncSQLiteStore.run_sync`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from cashet import _process
from cashet.errors import StoreError
from cashet.models import Commit, Lease, ObjectRef, TaskStatus
from cashet.protocols import BlobParts, CheckReport, Hit, HitCounts, ResultData, TagQuery
from cashet.stores.base import AsyncStoreBase
from cashet.stores.config import StoreConfig
from cashet.stores.objects.base import BlobStore, BlobStoreConfig
from cashet.stores.quarantine import QuarantineEntry
from cashet.stores.sqlite.store import SQLiteStore

__all__ = ["AsyncSQLiteStore"]

R = TypeVar("R")

#: Commits ``iter_commits`` reads per hop to the worker thread.
_BATCH = 256


#: Every open store, so that a forked child can give each a worker thread of its own.
_stores: weakref.WeakSet[AsyncSQLiteStore] = weakref.WeakSet()


@_process.after_fork_in_child
def _new_workers_in_child() -> None:
    # The parent's worker thread did not survive the fork, but its pool believes it idle
    # and would queue calls for it forever.
    for store in list(_stores):
        store._worker = _new_worker()


def _new_worker() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="cashet-sqlite")


def _take(it: Iterator[Commit], n: int) -> list[Commit]:
    return list(itertools.islice(it, n))


class AsyncSQLiteStore(AsyncStoreBase):
    """The default store of :class:`~cashet.async_client.AsyncClient`.

    Same directory layout and semantics as :class:`~cashet.stores.sqlite.store.SQLiteStore` (a
    sync and an async client may share one directory).

    Args:
        path: the store directory (created if missing).
        inline_threshold: as in ``SQLiteStore``.
        busy_timeout: as in ``SQLiteStore``.
        readonly: as in ``SQLiteStore``.

    Raises:
        StoreError: the directory or database cannot be opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ".cashet",
        *,
        inline_threshold: int = 1024,
        busy_timeout: float = 30.0,
        readonly: bool = False,
        blobs: BlobStore | BlobStoreConfig | None = None,
    ) -> None:
        # Opening (mkdir, schema migration) is quick and happens once: done here, in the
        # caller's thread, so that the constructor stays synchronous like the spec's.
        self._sync = SQLiteStore(
            path,
            inline_threshold=inline_threshold,
            busy_timeout=busy_timeout,
            readonly=readonly,
            blobs=blobs,
        )
        self._worker = _new_worker()
        self._closed = False
        _stores.add(self)

    @property
    def path(self) -> Path:
        """The store directory."""
        return self._sync.path

    @property
    def config(self) -> StoreConfig:
        """What reopens this store in another process: the sync store's (a worker uses
        the sync twin)."""
        return self._sync.config

    @property
    def blobs(self) -> BlobStore:
        """Where the blobs that are not inline are kept (read in the worker thread)."""
        return self._sync.blobs

    @blobs.setter
    def blobs(self, blobs: BlobStore) -> None:
        self._sync.blobs = blobs

    @property
    def sync_store(self) -> SQLiteStore:
        """The wrapped sync store; use it only through :meth:`run_sync`."""
        return self._sync

    def __repr__(self) -> str:
        return "Async" + repr(self._sync)

    async def __aenter__(self) -> AsyncSQLiteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def run_sync(self, fn: Callable[..., R], /, *args: Any) -> R:
        """Run ``fn(*args)`` in this store's worker thread (after the calls queued before).

        Use it to run sync code over :attr:`sync_store` (an archive export, a provenance
        query) without a second connection.

        Raises:
            StoreError: the store is closed.
        """
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, functools.partial(fn, *args))

    # blobs

    async def put_blob(self, data: bytes) -> ObjectRef:
        """Store ``data`` (deduplicated by content hash); return its ``ObjectRef``."""
        return await self.run_sync(self._sync.put_blob, data)

    async def put_blob_parts(self, parts: BlobParts) -> ObjectRef:
        """Store the concatenation of ``parts`` without joining them in memory."""
        return await self.run_sync(self._sync.put_blob_parts, parts)

    async def get_blob(self, ref: ObjectRef) -> bytes:
        """Return the blob's bytes, verified against its hash."""
        return await self.run_sync(self._sync.get_blob, ref)

    async def has_blob(self, hash: str) -> bool:
        """Whether the blob is stored."""
        return await self.run_sync(self._sync.has_blob, hash)

    # commits

    async def put_commit(self, commit: Commit) -> None:
        """Record ``commit`` (idempotent by hash)."""
        await self.run_sync(self._sync.put_commit, commit)

    async def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """Store a result, record ``build(ref)`` and drop the lease: one hop, one transaction."""
        return await self.run_sync(self._sync.put_result, data, build, release)

    async def get_commit(self, hash: str) -> Commit | None:
        """Return the commit with this full hash, or ``None``."""
        return await self.run_sync(self._sync.get_commit, hash)

    async def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest completed, cacheable, unexpired commit of ``fingerprint``.

        One hop to the worker thread (the hit path is :meth:`lookup`).
        """
        return await self.run_sync(self._sync.find_by_fingerprint, fingerprint)

    async def lookup(self, fingerprint: str) -> Hit | None:
        """Return the hit with a small result's verified bytes (see ``SQLiteStore.lookup``).

        Made on the loop (``SQLiteStore.lookup_nowait``: one indexed read, which never waits
        for a writer, in a connection of the loop's thread): a hit costs no thread hop, and
        its small result's bytes come along. Only what needs a write (a damaged row to
        quarantine) goes to the worker thread.
        """
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        found = self._sync.lookup_nowait(fingerprint)
        if found is False:
            return await self.run_sync(self._sync.lookup, fingerprint)
        return found

    async def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return the commits whose result is this blob, newest first (indexed)."""
        return await self.run_sync(self._sync.find_by_result, blob_hash, limit)

    async def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Describe the live lease on ``fingerprint`` as a running commit, or ``None``."""
        return await self.run_sync(self._sync.find_running_by_fingerprint, fingerprint)

    async def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest commit of ``fingerprint`` whatever its status."""
        return await self.run_sync(self._sync.latest_for_fingerprint, fingerprint)

    async def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """Return commits newest first, filtered by function, status and tags."""
        return await self.run_sync(self._sync.list_commits, func_name, limit, status, tags)

    async def iter_commits(self) -> AsyncIterator[Commit]:
        """Yield every commit, oldest first, a batch at a time (``async for``)."""
        commits = self._sync.iter_commits()  # advanced in the worker thread only
        while True:
            batch = await self.run_sync(_take, commits, _BATCH)
            for commit in batch:
                yield commit
            if len(batch) < _BATCH:
                return

    async def get_history(self, hash: str) -> list[Commit]:
        """Return every unexpired commit with the same fingerprint as ``hash``, oldest first."""
        return await self.run_sync(self._sync.get_history, hash)

    async def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Return up to ``limit`` full commit hashes starting with ``prefix``, sorted."""
        return await self.run_sync(self._sync.resolve_prefix, prefix, limit)

    async def touch(self, hash: str, when: datetime) -> None:
        """Set the commit's ``last_accessed`` to ``when``."""
        await self.run_sync(self._sync.touch, hash, when)

    def record_hit(self, hash: str, when: float, seconds: float) -> None:
        """Count one hit (``SQLiteStore.record_hit``: in memory, on the loop, no IO)."""
        self._sync.record_hit(hash, when, seconds)

    async def flush_hits(self) -> None:
        """Write the hits recorded and not written yet, in the worker thread."""
        await self.run_sync(self._sync.flush_hits)

    async def hit_counts(self, hashes: Sequence[str]) -> dict[str, HitCounts]:
        """The written hits of the commits ``hashes`` that have any."""
        return await self.run_sync(self._sync.hit_counts, hashes)

    async def hit_totals(self) -> tuple[int, float]:
        """``(hits, compute seconds saved)`` over every commit (written hits)."""
        return await self.run_sync(self._sync.hit_totals)

    # lifecycle

    @property
    def readonly(self) -> bool:
        """Whether the store was opened read-only (see ``SQLiteStore``)."""
        return self._sync.readonly

    async def check(self, repair: bool = False) -> CheckReport:
        """Check the store (``SQLiteStore.check``), in its worker thread."""
        return await self.run_sync(self._sync.check, repair)

    async def quarantined(self) -> list[QuarantineEntry]:
        """Every damaged entry set aside, oldest first (see :mod:`cashet.stores.quarantine`)."""
        return await self.run_sync(self._sync.quarantined)

    async def stats(self) -> dict[str, int]:
        """Return commit and blob counts and stored sizes."""
        return await self.run_sync(self._sync.stats)

    async def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        """Remove old, expired and (over a size limit) least recently used commits."""
        return await self.run_sync(self._sync.evict, older_than, max_size_bytes)

    async def delete_commit(self, hash: str) -> bool:
        """Delete one commit; return whether it existed."""
        return await self.run_sync(self._sync.delete_commit, hash)

    async def delete_by_tags(self, tags: TagQuery) -> int:
        """Delete every commit matching ``tags``; return how many."""
        return await self.run_sync(self._sync.delete_by_tags, tags)

    # leases

    async def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        """Take the lease on ``fingerprint`` unless another owner holds a live one."""
        return await self.run_sync(self._sync.try_claim, fingerprint, lease)

    def known_miss(self, fingerprint: str, owner: str) -> bool:
        """Whether the lookup right after ``owner`` took its lease can only miss (see
        ``SQLiteStore.known_miss``; answered from memory, on the loop)."""
        return self._sync.known_miss(fingerprint, owner)

    async def get_claim(self, fingerprint: str) -> Lease | None:
        """Return the live lease on ``fingerprint``, or ``None``."""
        return await self.run_sync(self._sync.get_claim, fingerprint)

    async def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        """Extend ``owner``'s lease; ``False`` when it no longer holds it."""
        return await self.run_sync(self._sync.renew_claim, fingerprint, owner, expires_at)

    async def release_claim(self, fingerprint: str, owner: str) -> None:
        """Drop the lease on ``fingerprint`` if ``owner`` holds it."""
        await self.run_sync(self._sync.release_claim, fingerprint, owner)

    async def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """Wait until nobody holds a live lease on ``fingerprint``, or ``timeout`` seconds.

        Each check is one indexed read in the worker thread; the waiting in between is an
        ``asyncio.sleep`` (2 ms doubling to 50 ms), so the holder's writes are never queued
        behind a waiter.
        """
        deadline = time.monotonic() + timeout
        delay = 0.002
        while await self.get_claim(fingerprint) is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._worker, self._sync.close)
        finally:
            self._worker.shutdown(wait=False)
