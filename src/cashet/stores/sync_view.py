"""A sync ``Store`` over an ``AsyncStore``: for sync code in a worker thread while the
event loop that owns the async store runs (the ``AsyncClient``'s provenance methods)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from cashet.protocols import AsyncHitCounter, HitCounts, supports
from cashet.stores.base import full_async_store

__all__ = ["SyncView"]

R = TypeVar("R")


class SyncView:
    """A sync ``Store`` over an ``AsyncStore``, for a worker thread while the loop runs.

    Each call is submitted to ``loop`` and waited for, so sync code (the ``Client``'s
    provenance methods, the archive) runs unchanged over any async store.
    """

    def __init__(self, store: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop

    def _wait(self, awaitable: Awaitable[R]) -> R:
        async def run() -> R:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._wait(method(*args, **kwargs))

        return call

    @property
    def config(self) -> Any:
        """The async store's ``StoreConfig`` (what reopens it in a worker process)."""
        return self._store.config

    def iter_commits(self) -> Iterator[Any]:
        # The AsyncCommitIterator capability (list_commits for stores without it).
        it: AsyncIterator[Any] = full_async_store(self._store).iter_commits().__aiter__()
        while True:
            try:
                yield self._wait(it.__anext__())
            except StopAsyncIteration:
                return

    # The HitCounter capability, over the async store's AsyncHitCounter when it has one
    # (else: nothing counted, nothing to read).

    def record_hit(self, hash: str, when: float, seconds: float) -> None:
        if supports(self._store, AsyncHitCounter):
            self._store.record_hit(hash, when, seconds)

    def flush_hits(self) -> None:
        if supports(self._store, AsyncHitCounter):
            self._wait(self._store.flush_hits())

    def hit_counts(self, hashes: Sequence[str]) -> dict[str, HitCounts]:
        if supports(self._store, AsyncHitCounter):
            return dict(self._wait(self._store.hit_counts(hashes)))
        return {}

    def hit_totals(self) -> tuple[int, float]:
        if supports(self._store, AsyncHitCounter):
            hits, saved = self._wait(self._store.hit_totals())
            return int(hits), float(saved)
        return (0, 0.0)

    def close(self) -> None:
        """Do nothing: the async store belongs to the ``AsyncClient``."""
