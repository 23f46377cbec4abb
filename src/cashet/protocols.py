"""The pluggable interfaces: ``Store``, ``AsyncStore``, ``Executor``, ``AsyncExecutor``,
``Serializer``.

A store keeps blobs (content-addressed bytes), commits (recorded runs) and leases (who is
computing a fingerprint right now). Every backend passes the same contract suite
(``tests/test_store_contract.py``).

Semantics every store implements:

* ``put_blob`` is idempotent and deduplicates by content hash; a blob's reference count is
  the number of commits whose ``result`` points at it. ``put_commit`` increments it,
  ``delete_commit`` decrements it and frees the blob when it reaches zero.
* ``get_blob`` verifies the bytes against the hash and raises ``BlobCorruptedError`` /
  ``BlobMissingError`` instead of returning wrong bytes.
* ``find_by_fingerprint`` returns the newest *completed*, *cacheable*, *unexpired* commit.
* Every ``Commit`` returned is the caller's own: mutating it affects neither the store nor
  what other calls return (stores that cache decoded commits hand out copies).
* ``try_claim`` takes the lease on a fingerprint when nobody holds a live one (a lease is dead
  when expired, or when it was taken on this host by a process that no longer exists).

``Store`` and ``AsyncStore`` are the whole required contract: a store implementing only them
works everywhere. Whatever more cashet uses is an optional *capability*, a small protocol of
its own (``ResultWriter``, ``BlobPartsWriter``, ``ResultIndex``, ``HitLookup``,
``CommitIterator``, their ``Async*`` twins, ``SyncBacked``; ``PartsSerializer`` for
serializers). Callers ask :func:`supports` whether a store's *class* has one, never the
instance (an object delegating unknown attributes with ``__getattr__`` has none), or use
:func:`cashet.stores.base.full_store`, which fills in every missing capability from the
required methods.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

from cashet.models import Commit, CommitPage, Lease, ObjectRef, TaskDef, TaskStatus

__all__ = [
    "STORE_STATS",
    "AsyncBlobPartsWriter",
    "AsyncCheckup",
    "AsyncCommitIterator",
    "AsyncExecutor",
    "AsyncHitCounter",
    "AsyncHitLookup",
    "AsyncResultIndex",
    "AsyncResultWriter",
    "AsyncStore",
    "BlobOpener",
    "BlobParts",
    "BlobPartsWriter",
    "CheckReport",
    "Checkup",
    "CommitIterator", "CommitPage", "CommitPages",
    "Executor",
    "Finding",
    "FunctionTotals",
    "Hit",
    "HitCounter",
    "HitCounts",
    "HitLookup",
    "Housekeeping",
    "InputIndex",
    "LeaseListing",
    "Leases",
    "PartsSerializer",
    "ResultData",
    "ResultIndex",
    "ResultWriter",
    "Serializer",
    "Store",
    "StreamSerializer",
    "SyncBacked",
    "TagQuery",
    "protocol_members",
    "supports",
]

#: The counters every store's ``stats()`` returns (the spec's Store protocol).
STORE_STATS = (
    "total_commits",
    "completed_commits",
    "stored_objects",
    "disk_bytes",
    "blob_objects",
    "blob_bytes",
    "inline_objects",
    "inline_bytes",
)

R = TypeVar("R")

#: A tag filter: every key must be present; a ``None`` value matches any value.
TagQuery = Mapping[str, str | None]
#: A blob given as chunks to be stored as their concatenation (never joined in memory).
BlobParts = Sequence[bytes | memoryview]
#: A serialized result: one bytes object, or chunks (see ``PartsSerializer``).
ResultData = bytes | BlobParts


@dataclass(frozen=True, slots=True)
class Hit:
    """What a cache lookup found: the commit, and its result's bytes when they came along.

    ``data`` is the verified result (``ObjectRef`` ``commit.result``) when the store read it
    with the lookup (small results); ``None`` otherwise: ``get_blob`` reads it then.
    """

    commit: Commit
    data: bytes | None = None

    def loaded_commit(self) -> Commit:
        """The commit, carrying the bytes read along (``Commit.result_data``) for its
        ``ResultRef`` to load without a second read."""
        self.commit.result_data = self.data
        return self.commit


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The public names a protocol declares (its methods, properties and attributes)."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        names.update(n for n in vars(klass) if not n.startswith("_"))
        names.update(n for n in getattr(klass, "__annotations__", {}) if not n.startswith("_"))
    return tuple(sorted(names))


@functools.cache
def _class_supports(cls: type, protocol: type) -> bool:
    return all(hasattr(cls, name) for name in protocol_members(protocol))


def supports(obj: object, capability: type) -> bool:
    """Whether the *class* of ``obj`` has every member of the protocol ``capability``.

    Looked up on ``type(obj)`` (cached per class), never on the instance: a wrapper that
    forwards unknown attributes with ``__getattr__`` does not gain its target's
    capabilities, so its own ``put_blob`` and ``put_commit`` are the ones called.
    """
    cls: Any = type(obj)
    return _class_supports(cls, capability)


@runtime_checkable
class PartsSerializer(Protocol):
    """A serializer capability: the result as chunks, large buffers not copied.

    ``b"".join(dumps_parts(obj)) == dumps(obj)``; stores with ``put_blob_parts`` write the
    chunks without joining them.
    """

    def dumps_parts(self, obj: Any) -> list[bytes | memoryview]: ...


@runtime_checkable
class StreamSerializer(Protocol):
    """A serializer capability: load a result from a readable binary file.

    ``load(f)`` equals ``loads(f.read())``, without holding the bytes and the value at
    once (a large ``bytes`` or array is read straight into its own memory).
    """

    def load(self, file: IO[bytes]) -> Any: ...


@runtime_checkable
class BlobOpener(Protocol):
    """A store capability: a large blob as a file, verified as it is read.

    ``open_blob(ref)`` returns ``None`` when the blob is not kept as a file (then
    ``get_blob`` is used), else a context manager of a readable binary file of the blob's
    bytes; leaving it checks them against the hash (reading what was left), and raises
    ``BlobCorruptedError`` (forgetting the copy, as ``get_blob`` does) instead of letting
    what was read from them out.
    """

    def open_blob(self, ref: ObjectRef) -> AbstractContextManager[IO[bytes]] | None: ...


@runtime_checkable
class Serializer(Protocol):
    """Turns results into bytes and back."""

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


@runtime_checkable
class Store(Protocol):
    """Synchronous storage backend: the spec's twelve methods.

    A store implementing only these works everywhere: what else cashet calls is a
    capability below (:class:`Housekeeping`, :class:`CommitIterator`, :class:`Leases`, ...),
    which :func:`cashet.stores.base.full_store` supplies when the store's class lacks it.
    Without :class:`Leases`, exactly-once holds within one process (a warning says so).
    """

    # blobs
    def put_blob(self, data: bytes) -> ObjectRef: ...
    def get_blob(self, ref: ObjectRef) -> bytes: ...

    # commits
    def put_commit(self, commit: Commit) -> None: ...
    def get_commit(self, hash: str) -> Commit | None: ...
    def find_by_fingerprint(self, fingerprint: str) -> Commit | None: ...
    def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None: ...
    def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]: ...
    def get_history(self, hash: str) -> list[Commit]: ...

    # lifecycle
    def stats(self) -> dict[str, int]: ...
    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int: ...
    def delete_commit(self, hash: str) -> bool: ...
    def close(self) -> None: ...


# --- store capabilities (optional; see the module docstring) ---------------------------------


@runtime_checkable
class ResultWriter(Protocol):
    """End a miss in one step: store the result, record its commit, drop the lease."""

    def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """Same effect as ``put_blob`` + ``put_commit(build(ref))`` + ``release_claim(*release)``.

        Returns:
            The recorded commit, ``build(ref)``.
        """
        ...


@runtime_checkable
class BlobPartsWriter(Protocol):
    """Store a blob given as chunks (``put_blob(b"".join(parts))``, without the join)."""

    def put_blob_parts(self, parts: BlobParts) -> ObjectRef: ...


@runtime_checkable
class ResultIndex(Protocol):
    """Find the commits that produced a blob (``show``/``get`` by a result's hash)."""

    def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return up to ``limit`` commits whose ``result`` is this blob, newest first."""
        ...


@runtime_checkable
class InputIndex(Protocol):
    """The commits with a blob in ``input_hashes``, oldest first (a lineage's downstream)."""

    def find_by_input(self, blob_hash: str, limit: int = 200) -> list[Commit]: ...


@runtime_checkable
class CommitIterator(Protocol):
    """Every commit, oldest first (a ``Store`` method; a capability of async stores)."""

    def iter_commits(self) -> Iterator[Commit]: ...


@runtime_checkable
class CommitPages(Protocol):
    """Commits page by page (without it: a scan of ``list_commits``). ``text`` (lower case)
    matches a hash prefix or the stored record; at most ``window`` commits are read for it."""

    def page_commits(
        self, func_name: str | None, status: TaskStatus | None, tags: TagQuery | None,
        text: str | None, cursor: str | None, limit: int, window: int,
    ) -> CommitPage: ...


@runtime_checkable
class FunctionTotals(Protocol):
    """Per function ``(name, runs, hits, seconds saved)``, kept by the store (``/ui/stats``)."""

    def function_totals(self) -> list[tuple[str, int, int, float]]: ...


@runtime_checkable
class Housekeeping(Protocol):
    """Point reads and upkeep beyond the spec's methods (defaults scan ``list_commits``)."""

    def has_blob(self, hash: str) -> bool: ...
    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None: ...
    def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]: ...
    def touch(self, hash: str, when: datetime) -> None: ...
    def delete_by_tags(self, tags: TagQuery) -> int: ...


@runtime_checkable
class Leases(Protocol):
    """Claims that make a call run once across processes (default: within this process)."""

    def try_claim(self, fingerprint: str, lease: Lease) -> bool: ...
    def get_claim(self, fingerprint: str) -> Lease | None: ...
    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool: ...
    def release_claim(self, fingerprint: str, owner: str) -> None: ...
    def wait_for_release(self, fingerprint: str, timeout: float) -> None: ...


@runtime_checkable
class LeaseListing(Protocol):
    """The calls running right now: every live lease, for ``log(status="running")``."""

    def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        """Return ``(fingerprint, lease, claimed_at)`` of every live lease."""
        ...


@runtime_checkable
class HitLookup(Protocol):
    """``find_by_fingerprint`` that also hands over a small result's bytes (one read)."""

    def lookup(self, fingerprint: str) -> Hit | None:
        """Return what ``find_by_fingerprint`` finds, with the result's bytes if read along."""
        ...


@dataclass(frozen=True, slots=True)
class HitCounts:
    """The recorded hits of one commit: how many, and when the last one was."""

    hits: int = 0
    last_hit: datetime | None = None


@runtime_checkable
class HitCounter(Protocol):
    """Every hit counted, with no write on the hit path: hits are kept in memory and
    written in batches (periodically, when garbage is collected, at ``close`` and at a
    normal exit). Recording also keeps ``last_accessed``, which ``evict`` orders by.

    A store without it keeps working: its ``touch`` is called at most once a second per
    commit, and no hits are counted.
    """

    def record_hit(self, hash: str, when: float, seconds: float) -> None:
        """Count one hit of commit ``hash`` at ``when`` (epoch seconds) that saved
        ``seconds`` of compute (no IO: never blocks on the store, never raises for it)."""
        ...

    def flush_hits(self) -> None:
        """Write the hits recorded in this process and not written yet."""
        ...

    def hit_counts(self, hashes: Sequence[str]) -> dict[str, HitCounts]:
        """The recorded hits of the commits ``hashes`` that have any (written ones)."""
        ...

    def hit_totals(self) -> tuple[int, float]:
        """``(hits, compute seconds saved)`` over every commit in the store (written)."""
        ...


@dataclass(slots=True)
class Finding:
    """One thing a store's check found.

    Attributes:
        kind: what it is: ``"integrity"`` (the database's own check failed),
            ``"damaged_commit"`` (a commit row that does not verify), ``"quarantined"``
            (an entry set aside earlier, listed), ``"orphan_file"`` (a blob file no row
            knows), ``"missing_blob"`` (a commit whose result blob is gone),
            ``"stale_lease"`` (a lease whose holder is dead or expired),
            ``"dangling_index"`` (an index entry naming nothing), ``"orphan_blob"`` (a blob
            no commit references), ``"store_gone"`` (a database gone while blobs remain),
            ``"readonly"`` (a repair the store cannot make: it is read-only).
        subject: what it concerns (a commit or blob hash, a fingerprint, a file, a key).
        detail: what is wrong, in words.
        action: what ``repair`` did about it (``""``: nothing, or not asked to).
        problem: whether it is damage (``False``: informational, e.g. an entry already
            quarantined).
    """

    kind: str
    subject: str
    detail: str
    action: str = ""
    problem: bool = True


@dataclass(slots=True)
class CheckReport:
    """What a store's check (``client.check()``, ``cashet doctor``) found and did.

    Attributes:
        where: the store checked (its ``repr``, or where it lives).
        repair: whether repairs were asked for.
        findings: everything found, in the order found.
        counts: what was examined (``commits``, ``blobs``, ``files``, ``leases``, ...).
        reclaimed_bytes: bytes of blob files (or values) the repair removed.
    """

    where: str
    repair: bool
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    reclaimed_bytes: int = 0

    @property
    def ok(self) -> bool:
        """Whether nothing wrong is left: every problem found was repaired."""
        return not self.remaining

    @property
    def remaining(self) -> list[Finding]:
        """The problems not repaired (all of them when ``repair`` was not asked)."""
        return [f for f in self.findings if f.problem and not f.action]

    def add(self, kind: str, subject: str, detail: str, action: str = "") -> Finding:
        """Record a problem (``action``: what was done about it, if anything)."""
        finding = Finding(kind, subject, detail, action)
        self.findings.append(finding)
        return finding

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (``cashet doctor --json``)."""
        return {
            "store": self.where,
            "repair": self.repair,
            "ok": self.ok,
            "counts": dict(self.counts),
            "reclaimed_bytes": self.reclaimed_bytes,
            "findings": [asdict(f) for f in self.findings],
        }


@runtime_checkable
class Checkup(Protocol):
    """A store that checks its own invariants and repairs what it can (``cashet doctor``)."""

    def check(self, repair: bool = False) -> CheckReport:
        """Examine the whole store; with ``repair``, fix what can be fixed.

        Never raises for damage found (it is reported); raises ``StoreError`` only when the
        store cannot be read at all.
        """
        ...


@runtime_checkable
class AsyncCheckup(Protocol):
    """The asyncio twin of :class:`Checkup`."""

    async def check(self, repair: bool = False) -> CheckReport: ...


@runtime_checkable
class AsyncStore(Protocol):
    """Asynchronous storage backend: the same operations as :class:`Store`, awaited."""

    async def put_blob(self, data: bytes) -> ObjectRef: ...
    async def get_blob(self, ref: ObjectRef) -> bytes: ...
    async def has_blob(self, hash: str) -> bool: ...
    async def put_commit(self, commit: Commit) -> None: ...
    async def get_commit(self, hash: str) -> Commit | None: ...
    async def find_by_fingerprint(self, fingerprint: str) -> Commit | None: ...
    async def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None: ...
    async def latest_for_fingerprint(self, fingerprint: str) -> Commit | None: ...
    async def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]: ...
    async def get_history(self, hash: str) -> list[Commit]: ...
    async def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]: ...
    async def touch(self, hash: str, when: datetime) -> None: ...
    async def stats(self) -> dict[str, int]: ...
    async def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int: ...
    async def delete_commit(self, hash: str) -> bool: ...
    async def delete_by_tags(self, tags: TagQuery) -> int: ...
    async def try_claim(self, fingerprint: str, lease: Lease) -> bool: ...
    async def get_claim(self, fingerprint: str) -> Lease | None: ...
    async def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool: ...
    async def release_claim(self, fingerprint: str, owner: str) -> None: ...
    async def wait_for_release(self, fingerprint: str, timeout: float) -> None: ...
    async def close(self) -> None: ...


@runtime_checkable
class AsyncResultWriter(Protocol):
    """The asyncio twin of :class:`ResultWriter`."""

    async def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit: ...


@runtime_checkable
class AsyncBlobPartsWriter(Protocol):
    """The asyncio twin of :class:`BlobPartsWriter`."""

    async def put_blob_parts(self, parts: BlobParts) -> ObjectRef: ...


@runtime_checkable
class AsyncResultIndex(Protocol):
    """The asyncio twin of :class:`ResultIndex`."""

    async def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]: ...


@runtime_checkable
class AsyncCommitIterator(Protocol):
    """Every commit, oldest first, with ``async for``."""

    def iter_commits(self) -> AsyncIterator[Commit]: ...


@runtime_checkable
class AsyncHitLookup(Protocol):
    """The asyncio twin of :class:`HitLookup`."""

    async def lookup(self, fingerprint: str) -> Hit | None: ...


@runtime_checkable
class AsyncHitCounter(Protocol):
    """The asyncio twin of :class:`HitCounter` (``record_hit`` stays a plain call: no IO)."""

    def record_hit(self, hash: str, when: float, seconds: float) -> None: ...
    async def flush_hits(self) -> None: ...
    async def hit_counts(self, hashes: Sequence[str]) -> dict[str, HitCounts]: ...
    async def hit_totals(self) -> tuple[int, float]: ...


class SyncBacked(Protocol):
    """An async store that is a sync ``Store`` run in a worker thread of its own.

    Sync code over the whole store (an archive export, a provenance query) runs there on
    :attr:`sync_store` through :meth:`run_sync`, with no second connection.
    """

    @property
    def sync_store(self) -> Store:
        """The wrapped sync store; use it only through :meth:`run_sync`."""
        ...

    async def run_sync(self, fn: Callable[..., R], /, *args: Any) -> R:
        """Run ``fn(*args)`` in the store's worker thread, after the calls queued before."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs one task call against a store and returns the commit that records it.

    The executor owns the call's life cycle: cache lookup, lease, execution (with retries
    and timeout), storing the result and recording the commit.
    """

    def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        store: Store,
        serializer: Serializer,
    ) -> Commit: ...


@runtime_checkable
class AsyncExecutor(Protocol):
    """The asyncio twin of :class:`Executor`."""

    async def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        store: AsyncStore,
        serializer: Serializer,
    ) -> Commit: ...
