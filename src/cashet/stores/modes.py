"""Stores seen through a client's mode: ``Client(mode="off" | "readonly")``.

``mode="readonly"`` (CI runs that must not grow a shared cache) serves hits and stores
nothing; ``mode="off"`` (tests) neither looks up nor stores: every call runs. Both wrap any
store (SQLite, Redis, a third party's) the way a read-only SQLite store behaves
(:mod:`cashet.stores.sqlite.readonly`):

* reads (``log``, ``show``, ``get``, ``stats``, ``export``) go to the store; ``off`` alone
  finds nothing for a call (``lookup``, ``find_by_fingerprint``... answer ``None``);
* ``put_result`` stores nothing: the commit carries the bytes (``Commit.result_data``) for
  its ``ResultRef`` to load; ``put_blob``/``put_commit`` write nothing; ``touch`` records
  nothing;
* leases are kept in this process (a call runs once per process; no lease is written);
* ``rm``, ``gc``, ``invalidate``, ``import`` raise :class:`~cashet.errors.ReadOnlyStoreError`
  naming the mode.

Each wrapper's class has every capability of :func:`~cashet.stores.base.full_store` (and
the async set), so no adapter composes defaults around it; other attributes (``path``,
``quarantined``...) are the wrapped store's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

from cashet.errors import BlobMissingError, ReadOnlyStoreError
from cashet.models import Commit, Lease, ObjectRef, TaskStatus
from cashet.protocols import STORE_STATS, AsyncStore, BlobParts, Hit, ResultData, Store, TagQuery
from cashet.stores.base import LocalLeases, full_async_store, full_store
from cashet.stores.blobs import blob_hash

__all__ = [
    "MODES",
    "AsyncEmptyStore",
    "AsyncModeStore",
    "EmptyStore",
    "ModeStore",
    "check_mode",
    "mode_store",
]

#: The modes of ``Client(mode=...)`` / ``$CASHET_MODE``.
MODES = ("normal", "off", "readonly", "refresh")


def check_mode(value: Any) -> str:
    """Validate a mode (``Client(mode=...)`` or ``$CASHET_MODE``)."""
    if value not in MODES:
        raise ValueError(
            f"mode must be one of {', '.join(map(repr, MODES))}, not {value!r}"
            " (Client(mode=...) or $CASHET_MODE)"
        )
    return str(value)


def mode_store(store: Any, mode: str, *, asynchronous: bool) -> Any:
    """``store`` as ``mode`` sees it: wrapped for ``off``/``readonly``, else itself.

    A store already read-only (``SQLiteStore(readonly=True)``) is kept as it is in
    ``readonly`` mode.
    """
    if mode == "off" or (mode == "readonly" and getattr(store, "readonly", False) is not True):
        return AsyncModeStore(store, mode) if asynchronous else ModeStore(store, mode)
    return store


class EmptyStore:
    """No store at all: what ``off`` and ``readonly`` read when the store directory does not
    exist (a fresh CI checkout): nothing is found, and nothing is created."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __repr__(self) -> str:
        return f"EmptyStore({self.where!r})"

    def get_blob(self, ref: ObjectRef) -> bytes:
        raise BlobMissingError(f"blob {ref.hash} not found: no store at {self.where}", ref.hash)

    def get_commit(self, hash: str) -> Commit | None:
        return None

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return None

    def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return None

    def list_commits(self, *args: Any, **kwargs: Any) -> list[Commit]:
        return []

    def get_history(self, hash: str) -> list[Commit]:
        return []

    def stats(self) -> dict[str, int]:
        return dict.fromkeys(STORE_STATS, 0)

    def close(self) -> None:
        return None


class AsyncEmptyStore(EmptyStore):
    """:class:`EmptyStore` for an ``AsyncClient``."""

    async def get_blob(self, ref: ObjectRef) -> bytes:  # type: ignore[override]
        return EmptyStore.get_blob(self, ref)

    async def has_blob(self, hash: str) -> bool:
        return False

    async def get_commit(self, hash: str) -> Commit | None:  # type: ignore[override]
        return None

    async def find_by_fingerprint(self, fingerprint: str) -> Commit | None:  # type: ignore[override]
        return None

    async def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:  # type: ignore[override]
        return None

    async def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        return None

    async def list_commits(self, *args: Any, **kwargs: Any) -> list[Commit]:  # type: ignore[override]
        return []

    async def get_history(self, hash: str) -> list[Commit]:  # type: ignore[override]
        return []

    async def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        return []

    async def stats(self) -> dict[str, int]:  # type: ignore[override]
        return dict.fromkeys(STORE_STATS, 0)

    async def close(self) -> None:  # type: ignore[override]
        return None


def _unstored(data: ResultData, build: Callable[[ObjectRef], Commit]) -> Commit:
    joined = data if isinstance(data, bytes) else b"".join(data)
    commit = build(ObjectRef(blob_hash(joined), len(joined)))
    commit.result_data = joined
    return commit


class _ModeBase:
    """What both wrappers share: the mode, the in-process leases, the refusals."""

    #: Nothing written through this wrapper (``import_archive`` checks it).
    readonly = True

    def __init__(self, store: Any, mode: str) -> None:
        self.store = store
        self.mode = check_mode(mode)
        self._lookups = mode != "off"
        self._leases = LocalLeases()

    def __repr__(self) -> str:
        return f"{self.store!r} (mode={self.mode!r})"

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the wrapper lacks (``path``, ``quarantined``...).
        if name.startswith("__") or name == "store":
            raise AttributeError(name)
        return getattr(self.store, name)

    def _refuse(self, what: str) -> ReadOnlyStoreError:
        why = "stores nothing" if self.mode == "off" else "is read-only"
        return ReadOnlyStoreError(f"{self.store!r} in mode {self.mode!r} {why}: cannot {what}")


class ModeStore(_ModeBase):
    """A sync store in mode ``off`` or ``readonly`` (see the module docstring)."""

    def __init__(self, store: Store, mode: str) -> None:
        super().__init__(store, mode)
        self._full = full_store(store)

    # --- reads ----------------------------------------------------------------------------

    def get_blob(self, ref: ObjectRef) -> bytes:
        return self.store.get_blob(ref)  # type: ignore[no-any-return]

    def get_commit(self, hash: str) -> Commit | None:
        return self.store.get_commit(hash)  # type: ignore[no-any-return]

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return self.store.find_by_fingerprint(fingerprint) if self._lookups else None

    def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        if not self._lookups:
            return None
        return self.store.find_running_by_fingerprint(fingerprint)  # type: ignore[no-any-return]

    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        return self._full.latest_for_fingerprint(fingerprint) if self._lookups else None

    def lookup(self, fingerprint: str) -> Hit | None:
        return self._full.lookup(fingerprint) if self._lookups else None

    def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        return self.store.list_commits(func_name, limit, status, tags)  # type: ignore[no-any-return]

    def get_history(self, hash: str) -> list[Commit]:
        return self.store.get_history(hash)  # type: ignore[no-any-return]

    def stats(self) -> dict[str, int]:
        return self.store.stats()  # type: ignore[no-any-return]

    def iter_commits(self) -> Iterator[Commit]:
        return self._full.iter_commits()

    def has_blob(self, hash: str) -> bool:
        return self._full.has_blob(hash)

    def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        return self._full.resolve_prefix(prefix, limit)

    def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        return self._full.find_by_result(blob_hash, limit)

    def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        return self._full.running_claims()

    # --- writes: none ---------------------------------------------------------------------

    def put_blob(self, data: bytes) -> ObjectRef:
        return ObjectRef(blob_hash(data), len(data))  # not stored

    def put_blob_parts(self, parts: BlobParts) -> ObjectRef:
        return self.put_blob(b"".join(parts))

    def put_commit(self, commit: Commit) -> None:
        return None  # not stored

    def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        commit = _unstored(data, build)
        if release is not None:
            self.release_claim(*release)
        return commit

    def touch(self, hash: str, when: datetime) -> None:
        return None  # access times are not recorded

    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        raise self._refuse("collect garbage")

    def delete_commit(self, hash: str) -> bool:
        raise self._refuse(f"delete commit {hash[:12]}")

    def delete_by_tags(self, tags: TagQuery) -> int:
        raise self._refuse("delete commits by tags")

    # --- leases: this process's -----------------------------------------------------------

    def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        return self._leases.try_claim(fingerprint, lease)

    def get_claim(self, fingerprint: str) -> Lease | None:
        return self._leases.get(fingerprint)

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        return self._leases.renew(fingerprint, owner, expires_at)

    def release_claim(self, fingerprint: str, owner: str) -> None:
        self._leases.release(fingerprint, owner)

    def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        self._leases.wait(fingerprint, timeout)

    def close(self) -> None:
        self.store.close()


class AsyncModeStore(_ModeBase):
    """An async store in mode ``off`` or ``readonly`` (see the module docstring)."""

    def __init__(self, store: AsyncStore, mode: str) -> None:
        super().__init__(store, mode)
        self._full = full_async_store(store)

    async def get_blob(self, ref: ObjectRef) -> bytes:
        return await self.store.get_blob(ref)  # type: ignore[no-any-return]

    async def has_blob(self, hash: str) -> bool:
        return await self.store.has_blob(hash)  # type: ignore[no-any-return]

    async def get_commit(self, hash: str) -> Commit | None:
        return await self.store.get_commit(hash)  # type: ignore[no-any-return]

    async def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        if not self._lookups:
            return None
        return await self.store.find_by_fingerprint(fingerprint)  # type: ignore[no-any-return]

    async def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        if not self._lookups:
            return None
        return await self.store.find_running_by_fingerprint(fingerprint)  # type: ignore[no-any-return]

    async def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        if not self._lookups:
            return None
        return await self.store.latest_for_fingerprint(fingerprint)  # type: ignore[no-any-return]

    async def lookup(self, fingerprint: str) -> Hit | None:
        return await self._full.lookup(fingerprint) if self._lookups else None

    async def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        return await self.store.list_commits(func_name, limit, status, tags)  # type: ignore[no-any-return]

    async def get_history(self, hash: str) -> list[Commit]:
        return await self.store.get_history(hash)  # type: ignore[no-any-return]

    async def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        return await self.store.resolve_prefix(prefix, limit)  # type: ignore[no-any-return]

    async def stats(self) -> dict[str, int]:
        return await self.store.stats()  # type: ignore[no-any-return]

    def iter_commits(self) -> AsyncIterator[Commit]:
        return self._full.iter_commits()

    async def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        return await self._full.find_by_result(blob_hash, limit)

    async def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        claims = getattr(self.store, "running_claims", None)
        return [] if claims is None else await claims()

    async def put_blob(self, data: bytes) -> ObjectRef:
        return ObjectRef(blob_hash(data), len(data))  # not stored

    async def put_blob_parts(self, parts: BlobParts) -> ObjectRef:
        return await self.put_blob(b"".join(parts))

    async def put_commit(self, commit: Commit) -> None:
        return None  # not stored

    async def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        if isinstance(data, bytes):
            commit = _unstored(data, build)
        else:
            import asyncio  # here: ``import cashet`` must not load asyncio

            commit = await asyncio.to_thread(_unstored, data, build)
        if release is not None:
            self._leases.release(*release)
        return commit

    async def touch(self, hash: str, when: datetime) -> None:
        return None

    async def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        raise self._refuse("collect garbage")

    async def delete_commit(self, hash: str) -> bool:
        raise self._refuse(f"delete commit {hash[:12]}")

    async def delete_by_tags(self, tags: TagQuery) -> int:
        raise self._refuse("delete commits by tags")

    async def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        return self._leases.try_claim(fingerprint, lease)

    async def get_claim(self, fingerprint: str) -> Lease | None:
        return self._leases.get(fingerprint)

    async def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        return self._leases.renew(fingerprint, owner, expires_at)

    async def release_claim(self, fingerprint: str, owner: str) -> None:
        self._leases.release(fingerprint, owner)

    async def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        import asyncio

        await asyncio.to_thread(self._leases.wait, fingerprint, timeout)

    async def close(self) -> None:
        await self.store.close()
