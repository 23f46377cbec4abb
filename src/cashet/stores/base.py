"""The store contract made whole: every optional capability, with a correct default.

A third-party store implements only the required :class:`~cashet.protocols.Store` (or
:class:`~cashet.protocols.AsyncStore`) methods. Everything else cashet calls is a capability
protocol of :mod:`cashet.protocols`, and this module gives each one a default written in
terms of the required methods:

* ``put_blob_parts``  = ``put_blob(b"".join(parts))``
* ``put_result``      = ``put_blob`` + ``put_commit(build(ref))`` + ``release_claim``
* ``find_by_result``  = a scan of ``iter_commits``
* ``lookup``          = ``find_by_fingerprint``, with no bytes along
* ``iter_commits``    (async) = ``list_commits(limit=None)``, oldest first

A store may subclass :class:`StoreBase` / :class:`AsyncStoreBase` to inherit them (the
built-in stores do, and override what they do better). Callers that need a capability use
:func:`full_store` / :func:`full_async_store`: the store itself when its class has every
capability, else an adapter that forwards the required methods to it and fills in the rest
(the store's own capability methods, when its class has some, are kept).

Every ``Commit`` a store returns is the caller's to mutate: stores that cache decoded
commits hand out :func:`copy_commit` copies.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from cashet.errors import AmbiguousHashError
from cashet.models import Commit, Lease, ObjectRef, TaskStatus, new_commit, utcnow
from cashet.protocols import (
    AsyncBlobPartsWriter,
    AsyncCommitIterator,
    AsyncHitLookup,
    AsyncResultIndex,
    AsyncResultWriter,
    AsyncStore,
    BlobParts,
    BlobPartsWriter,
    CommitIterator,
    Hit,
    HitLookup,
    Housekeeping,
    LeaseListing,
    Leases,
    ResultData,
    ResultIndex,
    ResultWriter,
    Store,
    TagQuery,
    protocol_members,
    supports,
)

__all__ = [
    "unique_prefix",
    "AsyncFullStore",
    "AsyncStoreBase",
    "FullStore",
    "LocalLeases",
    "StoreBase",
    "copy_commit",
    "full_async_store",
    "full_store",
]

#: The capabilities :func:`full_store` guarantees, each with the names of its members.
SYNC_CAPABILITIES: tuple[type, ...] = (
    Housekeeping,
    CommitIterator,
    Leases,
    LeaseListing,
    ResultWriter,
    BlobPartsWriter,
    ResultIndex,
    HitLookup,
)
ASYNC_CAPABILITIES: tuple[type, ...] = (
    AsyncResultWriter,
    AsyncBlobPartsWriter,
    AsyncResultIndex,
    AsyncHitLookup,
    AsyncCommitIterator,
)


#: Capabilities that are single store operations (not composed of others): a wrapper that
#: forwards them by ``__getattr__`` may supply them (see ``_FullStore``).
_PRIMITIVE: tuple[type, ...] = (Housekeeping, CommitIterator, Leases, LeaseListing)


@runtime_checkable
class FullStore(
    Store,
    Housekeeping,
    CommitIterator,
    Leases,
    LeaseListing,
    ResultWriter,
    BlobPartsWriter,
    ResultIndex,
    HitLookup,
    Protocol,
):
    """A sync store with every capability (what :func:`full_store` returns)."""


@runtime_checkable
class AsyncFullStore(
    AsyncStore,
    AsyncResultWriter,
    AsyncBlobPartsWriter,
    AsyncResultIndex,
    AsyncHitLookup,
    AsyncCommitIterator,
    Protocol,
):
    """An async store with every capability (what :func:`full_async_store` returns)."""


def unique_prefix(prefix: str, found: list[str]) -> str | None:
    """The one commit hash ``found`` for ``prefix``; ``None`` when none.

    Raises:
        AmbiguousHashError: several match.
    """
    if len(found) > 1:
        raise AmbiguousHashError(prefix, found)
    return found[0] if found else None


def copy_commit(c: Commit, last_accessed: datetime | None) -> Commit:
    """Return a new commit equal to ``c`` (its signature too) with ``last_accessed`` set,
    its tags copied.

    The other fields are immutable values, so sharing them is safe; ``from_cache`` and
    ``sealed_json`` start fresh. About 0.5 µs: cheap enough for the hit path.
    """
    # Positional (the field order of Commit): measurably cheaper on the hit path.
    return new_commit(
        c.hash,
        c.task_def,
        c.status,
        c.created_at,
        c.result,
        c.parent_hash,
        c.error,
        dict(c.tags),
        c.compute_seconds,
        c.expires_at,
        c.input_hashes,
        c.salt,
        last_accessed,
        c.signature,
    )


def _has_tags(commit: Commit, tags: TagQuery) -> bool:
    return all(
        key in commit.tags and (value is None or commit.tags[key] == value)
        for key, value in tags.items()
    )


class _LocalLeases:
    """Leases kept in this process, for a store without :class:`~cashet.protocols.Leases`."""

    def __init__(self) -> None:
        self._held: dict[str, Lease] = {}
        self._changed = threading.Condition()

    def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        with self._changed:
            held = self._held.get(fingerprint)
            if held is not None and held.expires_at > utcnow():
                return False
            self._held[fingerprint] = lease
            return True

    def get(self, fingerprint: str) -> Lease | None:
        with self._changed:
            return self._held.get(fingerprint)

    def renew(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        with self._changed:
            held = self._held.get(fingerprint)
            if held is None or held.owner != owner:
                return False
            self._held[fingerprint] = dataclasses.replace(held, expires_at=expires_at)
            return True

    def release(self, fingerprint: str, owner: str) -> None:
        with self._changed:
            held = self._held.get(fingerprint)
            if held is not None and held.owner == owner:
                del self._held[fingerprint]
            self._changed.notify_all()

    def wait(self, fingerprint: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while fingerprint in self._held:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)


#: Leases kept in this process (a read-only store's, a store without ``Leases``).
LocalLeases = _LocalLeases

#: In-process leases per store object (by id: a third-party store need not be hashable).
_LEASES: dict[int, tuple[Any, _LocalLeases]] = {}
_LEASES_LOCK = threading.Lock()
_WARNED: set[type] = set()


def _local_leases(store: Any) -> _LocalLeases:
    target = getattr(store, "store", store) if isinstance(store, _FullStore) else store
    with _LEASES_LOCK:
        entry = _LEASES.get(id(target))
        if entry is None or entry[0] is not target:
            entry = (target, _LocalLeases())
            _LEASES[id(target)] = entry
        cls = type(target)
        if cls not in _WARNED:
            _WARNED.add(cls)
            missing = [n for n in protocol_members(Leases) if not hasattr(cls, n)]
            warnings.warn(
                f"{cls.__qualname__} has no {', '.join(missing)}: cashet keeps its leases in "
                "this process, so a call runs once per process, not once across processes",
                RuntimeWarning,
                stacklevel=4,
            )
    return entry[1]


def _newest_first(commits: list[Commit], limit: int) -> list[Commit]:
    commits.sort(key=lambda c: c.created_at, reverse=True)
    return commits[: max(limit, 0)]


# --- sync ----------------------------------------------------------------------------------


class StoreBase:
    """Defaults for every sync capability, in terms of the required ``Store`` methods.

    Subclasses implement the ``Store`` protocol; these methods call only that.
    """

    # The required methods the defaults use (declared for the type checker only).
    put_blob: Callable[[bytes], ObjectRef]
    put_commit: Callable[[Commit], None]
    find_by_fingerprint: Callable[[str], Commit | None]
    list_commits: Callable[..., list[Commit]]
    delete_commit: Callable[[str], bool]

    # --- Housekeeping and CommitIterator: scans of list_commits -------------------------

    def iter_commits(self) -> Iterator[Commit]:
        """Every commit, oldest first (default: ``list_commits(limit=None)`` reversed)."""
        return iter(sorted(self.list_commits(limit=None), key=lambda c: c.created_at))

    def has_blob(self, hash: str) -> bool:
        """Whether a commit's result is this blob (default: a scan of the commits)."""
        return any(c.result is not None and c.result.hash == hash for c in self.iter_commits())

    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        """The newest commit of ``fingerprint`` whatever its status (default: a scan)."""
        found = [c for c in self.iter_commits() if c.fingerprint == fingerprint]
        return _newest_first(found, 1)[0] if found else None

    def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Up to ``limit`` commit hashes starting with ``prefix`` (default: a scan)."""
        return [c.hash for c in self.iter_commits() if c.hash.startswith(prefix)][:limit]

    def touch(self, hash: str, when: datetime) -> None:
        """Record an access (default: not tracked, so ``gc`` ages by creation time)."""

    def delete_by_tags(self, tags: TagQuery) -> int:
        """Delete the commits carrying ``tags`` (default: a scan, then ``delete_commit``)."""
        doomed = [c.hash for c in self.iter_commits() if _has_tags(c, tags)]
        return sum(1 for h in doomed if self.delete_commit(h))

    # --- Leases: within this process ------------------------------------------------------

    def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        """The live leases (default: none known; a store with ``LeaseListing`` lists them)."""
        return []

    def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        """Take the lease of ``fingerprint`` unless a live one is held (this process only)."""
        return _local_leases(self).try_claim(fingerprint, lease)

    def get_claim(self, fingerprint: str) -> Lease | None:
        """The lease held on ``fingerprint`` in this process, if any."""
        return _local_leases(self).get(fingerprint)

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        """Extend ``owner``'s lease; ``False`` when it is no longer held."""
        return _local_leases(self).renew(fingerprint, owner, expires_at)

    def release_claim(self, fingerprint: str, owner: str) -> None:
        """Drop ``owner``'s lease and wake the waiters."""
        _local_leases(self).release(fingerprint, owner)

    def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """Wait until the lease of ``fingerprint`` is released or ``timeout`` passes."""
        _local_leases(self).wait(fingerprint, timeout)

    def put_blob_parts(self, parts: BlobParts) -> ObjectRef:
        """Store the concatenation of ``parts`` (default: join them, then ``put_blob``)."""
        return self.put_blob(b"".join(parts))

    def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """Store a result, record ``build(ref)`` and drop the lease ``release`` (fingerprint,
        owner); default: ``put_blob``, ``put_commit``, ``release_claim`` in turn.

        Returns:
            The recorded commit.
        """
        ref = self.put_blob(data) if isinstance(data, bytes) else self.put_blob_parts(data)
        commit = build(ref)
        self.put_commit(commit)
        if release is not None:
            self.release_claim(*release)
        return commit

    def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return up to ``limit`` commits whose result is this blob, newest first.

        Default: one scan of ``iter_commits`` (stores with an index override it).
        """
        found = [
            c for c in self.iter_commits() if c.result is not None and c.result.hash == blob_hash
        ]
        return _newest_first(found, limit)

    def lookup(self, fingerprint: str) -> Hit | None:
        """Return ``find_by_fingerprint``'s commit as a :class:`~cashet.protocols.Hit`.

        Default: no result bytes come along (``Hit.data`` is ``None``).
        """
        commit = self.find_by_fingerprint(fingerprint)
        return None if commit is None else Hit(commit)


class _FullStore(StoreBase):
    """A store given every capability: the required methods forwarded, the rest defaulted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        for capability in SYNC_CAPABILITIES:
            names = protocol_members(capability)
            if supports(store, capability):  # the store's own, better version
                for name in names:
                    setattr(self, name, getattr(store, name))
            elif capability in _PRIMITIVE and all(hasattr(store, n) for n in names):
                # A wrapper that forwards these with __getattr__ (a logging or metrics
                # wrapper): they are single operations of the store it wraps, with no
                # default built from other methods that the wrapper's own would be
                # bypassed by, so they are used (its leases stay cross-process).
                for name in names:
                    setattr(self, name, getattr(store, name))

    def __repr__(self) -> str:
        return f"full_store({self.store!r})"

    def put_blob(self, data: bytes) -> ObjectRef:
        return self.store.put_blob(data)

    def get_blob(self, ref: ObjectRef) -> bytes:
        return self.store.get_blob(ref)

    def put_commit(self, commit: Commit) -> None:
        self.store.put_commit(commit)

    def get_commit(self, hash: str) -> Commit | None:
        return self.store.get_commit(hash)

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return self.store.find_by_fingerprint(fingerprint)

    def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return self.store.find_running_by_fingerprint(fingerprint)

    def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        return self.store.list_commits(func_name, limit, status, tags)

    def get_history(self, hash: str) -> list[Commit]:
        return self.store.get_history(hash)

    def stats(self) -> dict[str, int]:
        return self.store.stats()

    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        return self.store.evict(older_than, max_size_bytes)

    def delete_commit(self, hash: str) -> bool:
        return self.store.delete_commit(hash)

    def close(self) -> None:
        self.store.close()


def full_store(store: Store) -> FullStore:
    """Return ``store`` with every sync capability.

    ``store`` itself when its class has them all (every built-in store: no cost), else an
    adapter over it (cheap to make; make one per use or keep it).
    """
    if supports(store, FullStore):
        return store  # type: ignore[return-value]
    return _FullStore(store)


# --- async ---------------------------------------------------------------------------------


class AsyncStoreBase:
    """Defaults for every async capability, in terms of the required ``AsyncStore`` methods."""

    put_blob: Callable[[bytes], Any]
    put_commit: Callable[[Commit], Any]
    release_claim: Callable[[str, str], Any]
    find_by_fingerprint: Callable[[str], Any]
    list_commits: Callable[..., Any]

    async def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        """The live leases (default: none known), as the sync ``running_claims``."""
        return []

    async def put_blob_parts(self, parts: BlobParts) -> ObjectRef:
        """Store the concatenation of ``parts`` (default: joined in a thread, then stored)."""
        import asyncio  # here: ``import cashet`` (sync users) must not load asyncio

        if len(parts) == 1:
            data = bytes(parts[0])
        else:
            data = await asyncio.to_thread(b"".join, parts)
        ref: ObjectRef = await self.put_blob(data)
        return ref

    async def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """As :meth:`StoreBase.put_result`; the lease is released even while cancelled."""
        import asyncio

        if isinstance(data, bytes):
            ref: ObjectRef = await self.put_blob(data)
        else:
            ref = await self.put_blob_parts(data)
        commit = build(ref)
        await self.put_commit(commit)
        if release is not None:
            await asyncio.shield(self.release_claim(*release))
        return commit

    async def iter_commits(self) -> AsyncIterator[Commit]:
        """Yield every commit, oldest first (default: one ``list_commits(limit=None)``)."""
        commits: list[Commit] = await self.list_commits(limit=None)
        for commit in reversed(commits):
            yield commit

    async def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """As :meth:`StoreBase.find_by_result` (default: one scan of ``iter_commits``)."""
        found = [
            c
            async for c in self.iter_commits()
            if c.result is not None and c.result.hash == blob_hash
        ]
        return _newest_first(found, limit)

    async def lookup(self, fingerprint: str) -> Hit | None:
        """As :meth:`StoreBase.lookup`."""
        commit: Commit | None = await self.find_by_fingerprint(fingerprint)
        return None if commit is None else Hit(commit)


class _AsyncFullStore(AsyncStoreBase):
    """An async store given every capability (see :func:`full_async_store`)."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        for capability in ASYNC_CAPABILITIES:
            if supports(store, capability):
                for name in protocol_members(capability):
                    setattr(self, name, getattr(store, name))

    def __repr__(self) -> str:
        return f"full_async_store({self.store!r})"

    async def put_blob(self, data: bytes) -> ObjectRef:
        return await self.store.put_blob(data)

    async def get_blob(self, ref: ObjectRef) -> bytes:
        return await self.store.get_blob(ref)

    async def has_blob(self, hash: str) -> bool:
        return await self.store.has_blob(hash)

    async def put_commit(self, commit: Commit) -> None:
        await self.store.put_commit(commit)

    async def get_commit(self, hash: str) -> Commit | None:
        return await self.store.get_commit(hash)

    async def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return await self.store.find_by_fingerprint(fingerprint)

    async def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return await self.store.find_running_by_fingerprint(fingerprint)

    async def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        return await self.store.latest_for_fingerprint(fingerprint)

    async def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        return await self.store.list_commits(func_name, limit, status, tags)

    async def get_history(self, hash: str) -> list[Commit]:
        return await self.store.get_history(hash)

    async def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        return await self.store.resolve_prefix(prefix, limit)

    async def touch(self, hash: str, when: datetime) -> None:
        await self.store.touch(hash, when)

    async def stats(self) -> dict[str, int]:
        return await self.store.stats()

    async def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        return await self.store.evict(older_than, max_size_bytes)

    async def delete_commit(self, hash: str) -> bool:
        return await self.store.delete_commit(hash)

    async def delete_by_tags(self, tags: TagQuery) -> int:
        return await self.store.delete_by_tags(tags)

    async def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        return await self.store.try_claim(fingerprint, lease)

    async def get_claim(self, fingerprint: str) -> Lease | None:
        return await self.store.get_claim(fingerprint)

    async def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        return await self.store.renew_claim(fingerprint, owner, expires_at)

    async def release_claim(self, fingerprint: str, owner: str) -> None:
        await self.store.release_claim(fingerprint, owner)

    async def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        await self.store.wait_for_release(fingerprint, timeout)

    async def close(self) -> None:
        await self.store.close()


def full_async_store(store: AsyncStore) -> AsyncFullStore:
    """Return ``store`` with every async capability (itself when its class has them all)."""
    if supports(store, AsyncFullStore):
        return store  # type: ignore[return-value]
    return _AsyncFullStore(store)
