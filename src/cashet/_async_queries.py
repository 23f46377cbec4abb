"""The provenance and maintenance methods of ``AsyncClient``: the sync ``StoreQueries``
methods run off the event loop, over a sync view of the async store (so both clients
validate, fail and answer the same way by construction: ``tests/test_async_parity.py``).

A mixin of :class:`~cashet.async_client.AsyncClient` (``store``, ``serializer`` and
``_shadow`` are the client's).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from cashet._queries import StoreQueries
from cashet.models import Commit, TaskStatus
from cashet.protocols import (
    AsyncStore,
    CommitPage,
    Serializer,
    Store,
    SyncBacked,
    TagQuery,
    supports,
)
from cashet.stores.sync_view import SyncView

if TYPE_CHECKING:
    from cashet.provenance.archive import ExportResult, ImportResult
    from cashet.provenance.explain import Explanation
    from cashet.provenance.lineage import Lineage
    from cashet.provenance.sync import SyncResult
    from cashet.provenance.usage import FunctionUsage
    from cashet.provenance.verify import VerifyOutcome, VerifyReport

__all__ = ["AsyncQueries"]

R = TypeVar("R")


class AsyncQueries:
    """``log``, ``show``, ``get``, ``diff``, ``why``, ``history``, ``rm``, ``gc``, ``clear``,
    ``invalidate``, ``stats``, ``lineage``, ``verify``, ``export``, ``import_archive``:
    awaitable, each as the sync ``Client``'s."""

    store: AsyncStore
    serializer: Serializer
    _shadow: StoreQueries | None

    async def log(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | str | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """List commits, newest first (as :meth:`Client.log <cashet.client.Client.log>`)."""
        return await self._sync(lambda c: c.log(func_name, limit, status, tags))

    async def log_page(
        self,
        func_name: str | None = None,
        status: TaskStatus | str | None = None,
        tags: TagQuery | None = None,
        text: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> CommitPage:
        """One page of commits, newest first (as ``Client.log_page``)."""
        return await self._sync(lambda c: c.log_page(func_name, status, tags, text, cursor, limit))

    async def show(self, hash: str) -> Commit | None:
        """Return the commit with this hash or unique prefix, or ``None`` (as ``Client.show``)."""
        return await self._sync(lambda c: c.show(hash))

    async def get(self, hash: str) -> Any:
        """Load the result recorded by a commit (as ``Client.get``)."""
        return await self._sync(lambda c: c.get(hash))

    async def diff(self, hash_a: str, hash_b: str) -> dict[str, Any]:
        """Compare two commits (as ``Client.diff``)."""
        return await self._sync(lambda c: c.diff(hash_a, hash_b))

    async def why(self, hash: str) -> Explanation:
        """Why a commit was computed (as ``Client.why``)."""
        return await self._sync(lambda c: c.why(hash))

    async def history(self, hash: str) -> list[Commit]:
        """Every run of the same function and arguments, oldest first (as ``Client.history``)."""
        return await self._sync(lambda c: c.history(hash))

    async def rm(self, hash: str) -> bool:
        """Delete one commit and the blob only it used (as ``Client.rm``)."""
        return await self._sync(lambda c: c.rm(hash))

    async def gc(
        self, older_than: timedelta = timedelta(days=30), max_size_bytes: int | None = None
    ) -> int:
        """Evict old, expired and (over a size) least recently used entries (as ``Client.gc``)."""
        return await self._sync(lambda c: c.gc(older_than, max_size_bytes))

    async def gc_preview(
        self, older_than: timedelta = timedelta(days=30), max_size_bytes: int | None = None
    ) -> list[Commit]:
        """What ``gc`` would evict now; nothing deleted (as ``Client.gc_preview``)."""
        return await self._sync(lambda c: c.gc_preview(older_than, max_size_bytes))

    async def clear(self) -> int:
        """Remove every entry and orphaned blob; return the count (as ``Client.clear``)."""
        return await self._sync(lambda c: c.clear())

    async def invalidate(self, tags: TagQuery) -> int:
        """Delete the commits carrying all these tags (as ``Client.invalidate``)."""
        return await self._sync(lambda c: c.invalidate(tags))

    async def stats(self) -> dict[str, Any]:
        """Return commit and storage counters, hits and time saved (as ``Client.stats``)."""
        return await self._sync(lambda c: c.stats())

    async def lineage(self, hash: str, depth: int = 10, max_nodes: int = 200) -> Lineage:
        """The lineage of a commit (as ``Client.lineage``)."""
        return await self._sync(lambda c: c.lineage(hash, depth, max_nodes))

    async def verify(
        self,
        sample: int = 10,
        seed: int | None = None,
        advance: Callable[[VerifyOutcome], None] | None = None,
    ) -> VerifyReport:
        """Re-run sampled cached calls and compare (as ``Client.verify``), off the loop
        (``advance`` is called in the worker thread)."""
        return await self._sync(lambda c: c.verify(sample, seed, advance))

    async def stats_by_function(self) -> list[FunctionUsage]:
        """Per function: runs, hits, time saved, ... (as ``Client.stats_by_function``)."""
        return await self._sync(lambda c: c.stats_by_function())

    async def savings_by_function(self) -> list[dict[str, Any]]:
        """Runs, hits and seconds saved per function (as ``Client.savings_by_function``)."""
        return await self._sync(lambda c: c.savings_by_function())

    async def export(self, path: str | os.PathLike[str]) -> ExportResult:
        """Write every commit and its result blob to a ``.tar.gz`` (as ``Client.export``)."""
        return await self._sync(lambda c: c.export(path))

    async def import_archive(self, path: str | os.PathLike[str]) -> ImportResult:
        """Add the commits and blobs of an archive (as ``Client.import_archive``)."""
        return await self._sync(lambda c: c.import_archive(path))

    async def push(self, store: Store | AsyncStore | str) -> SyncResult:
        """Copy the commits that ``store`` lacks into it (as ``Client.push``)."""
        other = self._sync_other(store)
        return await self._sync(lambda c: c.push(other))

    async def pull(self, store: Store | AsyncStore | str) -> SyncResult:
        """Copy the commits of ``store`` that this store lacks (as ``Client.pull``)."""
        other = self._sync_other(store)
        return await self._sync(lambda c: c.pull(other))

    def _sync_other(self, store: Any) -> Any:
        """Another store as a sync one: an async store seen through a sync view."""
        if isinstance(store, str) or not inspect.iscoroutinefunction(
            getattr(store, "put_blob", None)
        ):
            return store
        return SyncView(store, asyncio.get_running_loop())

    async def _sync(self, method: Callable[[Any], R]) -> R:
        """Run ``method(queries)`` off the loop; ``queries`` is a :class:`StoreQueries` over
        a sync view of this store."""
        store = self.store
        if supports(store, SyncBacked):
            # AsyncSQLiteStore: in its worker thread, on its own sync store.
            backed = cast(SyncBacked, store)
            return await backed.run_sync(method, self._shadow_over(backed.sync_store))
        view = SyncView(store, asyncio.get_running_loop())
        return await asyncio.to_thread(method, self._shadow_over(view))

    def _shadow_over(self, sync_store: Any) -> StoreQueries:
        """The sync queries over ``sync_store`` (never closed: the store is ours to close)."""
        shadow = self._shadow
        if shadow is None or shadow.store is not sync_store:
            shadow = StoreQueries(sync_store, self.serializer)
            if not isinstance(sync_store, SyncView):
                self._shadow = shadow
        return shadow
