"""Leases this process took and could not give back, released again until they are gone.

A release can fail: the disk is full at the commit, Redis went away mid-task, a second
Ctrl-C interrupted it. The lease would then stay until its expiry (``running_ttl``, 5
minutes by default), and every submit of the same call would wait for it. Instead the
executor hands it here: it is *disowned* (:func:`cashet.core.leases.disown`: this process
judges it dead at once and takes it over rather than wait), and its release is retried with
a short backoff (0.05 s doubling to 2 s) in the background — a daemon thread for sync
stores, a task on the event loop for async ones — and again before the next claim through
the same executor (a reconnected store answers then), until it succeeds or the lease has
expired anyway.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from cashet._process import after_fork_in_child
from cashet.core import leases as _lease

__all__ = ["AsyncOrphans", "Orphan", "SyncOrphans"]

log = logging.getLogger("cashet")

_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0


@dataclass(slots=True)
class Orphan:
    """A lease to release again: on ``store``, until ``give_up_at`` (``time.monotonic``)."""

    store: Any
    fingerprint: str
    owner: str
    give_up_at: float


def _report(fingerprint: str, exc: BaseException) -> None:
    log.warning(
        "could not release the lease on %s (%s: %s); retrying in the background "
        "(this process will not wait for it)",
        fingerprint[:16],
        type(exc).__name__,
        exc,
    )


class _Pending:
    """The orphans of one executor (shared by its threads), keyed by owner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Orphan] = {}

    def add(self, orphan: Orphan, exc: BaseException) -> None:
        _lease.disown(orphan.owner)
        with self._lock:
            self._items[orphan.owner] = orphan
        _report(orphan.fingerprint, exc)

    def due(self, store: Any = None) -> list[Orphan]:
        """The orphans to try now (of ``store`` only, when given); expired ones are dropped."""
        now = time.monotonic()
        with self._lock:
            for owner, orphan in list(self._items.items()):
                if now >= orphan.give_up_at:  # expired: nobody waits for it any more
                    del self._items[owner]
                    _lease.reclaimed(owner)
            return [o for o in self._items.values() if store is None or o.store is store]

    def done(self, orphan: Orphan) -> None:
        with self._lock:
            self._items.pop(orphan.owner, None)
        _lease.reclaimed(orphan.owner)
        log.info("released the lease on %s at last", orphan.fingerprint[:16])

    def clear(self) -> None:
        self._lock = threading.Lock()
        self._items.clear()

    def __bool__(self) -> bool:
        return bool(self._items)


# Every registry, so that a forked child can drop what its parent disowned.
_registries: weakref.WeakSet[SyncOrphans | AsyncOrphans] = weakref.WeakSet()


@after_fork_in_child
def _forget_in_child() -> None:
    for registry in list(_registries):
        registry._in_child()


class SyncOrphans:
    """The orphans of one ``LocalExecutor``: retried by one daemon thread while any is left."""

    def __init__(self) -> None:
        self._pending = _Pending()
        self._thread: threading.Thread | None = None
        _registries.add(self)

    def _in_child(self) -> None:
        self._pending.clear()  # the parent goes on releasing its own
        self._thread = None

    def add(self, store: Any, fingerprint: str, owner: str, ttl: float, exc: BaseException) -> None:
        """Record a release that failed with ``exc``; the lease lasts at most ``ttl`` s more."""
        self._pending.add(Orphan(store, fingerprint, owner, time.monotonic() + ttl), exc)
        with self._pending._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="cashet-release", daemon=True
                )
                self._thread.start()

    def retry(self, store: Any) -> None:
        """Try now to release the orphans of ``store`` (before a claim; cheap when none)."""
        if self._pending:
            self._try(self._pending.due(store))

    def _try(self, orphans: list[Orphan]) -> None:
        for orphan in orphans:
            try:
                orphan.store.release_claim(orphan.fingerprint, orphan.owner)
            except Exception:  # still failing: the next round tries again
                continue
            self._pending.done(orphan)

    def _run(self) -> None:
        delay = _FIRST_DELAY
        while True:
            time.sleep(delay)
            with self._pending._lock:
                if not self._pending._items:
                    self._thread = None
                    return
            self._try(self._pending.due())
            delay = min(delay * 2, _MAX_DELAY)


class AsyncOrphans:
    """The orphans of one ``AsyncLocalExecutor``: retried by a task on the running loop."""

    def __init__(self) -> None:
        self._pending = _Pending()
        self._task: asyncio.Task[None] | None = None
        _registries.add(self)

    def _in_child(self) -> None:
        self._pending.clear()
        self._task = None

    def add(self, store: Any, fingerprint: str, owner: str, ttl: float, exc: BaseException) -> None:
        """Record a release that failed with ``exc`` (called on the loop)."""
        self._pending.add(Orphan(store, fingerprint, owner, time.monotonic() + ttl), exc)
        task = self._task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def retry(self, store: Any) -> None:
        """Try now to release the orphans of ``store`` (before a claim; cheap when none)."""
        if self._pending:
            await self._try(self._pending.due(store))

    async def _try(self, orphans: list[Orphan]) -> None:
        for orphan in orphans:
            try:
                await orphan.store.release_claim(orphan.fingerprint, orphan.owner)
            except Exception:
                continue
            self._pending.done(orphan)

    async def _run(self) -> None:
        delay = _FIRST_DELAY
        while self._pending:
            await asyncio.sleep(delay)
            await self._try(self._pending.due())
            delay = min(delay * 2, _MAX_DELAY)
