"""Plain data types shared by every layer: commits, blobs, leases, result handles.

This module is a leaf: it imports nothing else from cashet but :mod:`cashet.errors`.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

__all__ = [
    "new_commit",
    "AsyncResultRef",
    "Commit",
    "CommitPage",
    "Lease",
    "ObjectRef",
    "ResultRef",
    "ResultRefBase",
    "TaskDef",
    "TaskRef",
    "TaskStatus",
    "utcnow",
]

T = TypeVar("T")


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class TaskStatus(enum.StrEnum):
    """Life-cycle state of a commit.

    Commits are ``RUNNING`` (a call in flight), ``COMPLETED`` or ``FAILED``. ``PENDING`` and
    ``CACHED`` are the published cashet's other members, kept so that code naming them
    still runs; no commit is recorded with them (a hit is ``ResultRef.cached``).
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CACHED = "cached"

    @classmethod
    def recorded(cls) -> tuple[TaskStatus, ...]:
        """The statuses a commit can have (what ``log`` filters by)."""
        return (cls.RUNNING, cls.COMPLETED, cls.FAILED)

    @classmethod
    def parse(cls, value: TaskStatus | str) -> TaskStatus:
        """Turn a ``TaskStatus`` or its string value into a ``TaskStatus``.

        Raises:
            ValueError: naming the valid values when ``value`` is not one of them.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        valid = ", ".join(s.value for s in cls)
        raise ValueError(f"unknown status {value!r}; valid values are: {valid}")


class ShortHash(str):
    """A short hash that may also be called: the published cashet's ``short_hash()``."""

    __slots__ = ()

    def __call__(self) -> str:
        """Return the short hash (for code written against the published method)."""
        return str(self)


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A content-addressed blob: its BLAKE3 hex digest and its size in bytes.

    ``size`` is the length of the serialized (uncompressed) bytes.
    """

    hash: str
    size: int


class _Decoded:
    """The base of :class:`TaskDef`: a task definition read from a store may have fields
    not decoded yet (:mod:`cashet.hashing.lazy`: a cache hit decodes only what it reads).

    Its one slot, ``_pending`` (not a field: not compared, hashed or pickled), holds what
    decodes them, called when one of them is first read; unset or ``None``: all decoded.
    """

    __slots__ = ("_pending",)
    _pending: Callable[[Any], None] | None

    if not TYPE_CHECKING:  # (typing: a TaskDef has its fields, no other attribute)

        def __getattr__(self, name: str) -> Any:
            # Reached only for an attribute not set: a field not decoded yet, or none.
            if name != "_pending":
                pending = getattr(self, "_pending", None)
                if pending is not None:
                    pending(self)
                    return getattr(self, name)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


@dataclass(slots=True)
class TaskDef(_Decoded):
    """What was called: the function's identity, the arguments' digest and the options."""

    func_name: str
    func_hash: str
    args_hash: str
    func_source: str = ""
    args_snapshot: str = ""
    module: str = ""
    cache: bool = True
    force: bool = False
    retries: int = 0
    timeout: float | None = None
    ttl: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    #: What went into the key (see :mod:`cashet.hashing.manifest`): the code reached, the
    #: values read, the arguments by name, Python and package versions. Recorded on a miss;
    #: empty for commits made before it existed.
    manifest: Mapping[str, Any] = field(default_factory=dict)
    #: The ``FunctionIdentity`` the key was computed from (internal: not stored, not
    #: hashed, not pickled; the manifest is made from it on a miss).
    identity: Any = field(default=None, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """The cache key: ``func_hash:args_hash``."""
        return f"{self.func_hash}:{self.args_hash}"

    def __getstate__(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in self.__slots__}
        state["identity"] = None  # holds the values the code reads (maybe a lock)
        return state

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        if isinstance(state, tuple):  # (None, slots): the form before __getstate__
            state = state[1]
        defaults = TaskDef("", "", "")  # a field missing from an older pickle: its default
        for name in self.__slots__:
            object.__setattr__(self, name, state.get(name, getattr(defaults, name)))


@dataclass(slots=True)
class Commit:
    """One recorded run of a task: immutable except for ``last_accessed``.

    ``hash`` is the BLAKE3 digest of the commit's canonical content (see
    :func:`cashet.hashing.commits.compute_commit_hash`); ``result`` is the output blob of a
    completed run.
    """

    hash: str
    task_def: TaskDef
    status: TaskStatus
    created_at: datetime = field(default_factory=utcnow)
    result: ObjectRef | None = None
    parent_hash: str | None = None
    error: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    compute_seconds: float | None = None
    expires_at: datetime | None = None
    input_hashes: tuple[str, ...] = ()
    salt: str = ""
    last_accessed: datetime | None = None
    #: The team key's MAC over ``hash`` (``<key id>:<hex>``), when written by a client with a
    #: signing key (:mod:`cashet.stores.signing`). Stored beside the content, not hashed.
    signature: str | None = field(default=None, compare=False, repr=False)
    #: Hits recorded for this commit and the time of the last one, as written by the store
    #: (``log`` and ``show`` fill them in; not hashed, like ``last_accessed``).
    hits: int = field(default=0, compare=False, repr=False)
    last_hit: datetime | None = field(default=None, compare=False, repr=False)
    #: Set on the commit a ``submit`` returned from the cache (not stored, not hashed).
    from_cache: bool = field(default=False, compare=False, repr=False)
    #: The stored JSON form, when it was produced together with ``hash`` (internal).
    sealed_json: str = field(default="", compare=False, repr=False)
    #: The result's stored bytes, verified, when the cache lookup that found this commit
    #: read them along (small results): the ``ResultRef`` then loads without another read.
    #: Not stored, not hashed; cleared once loaded.
    result_data: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """The cache key of the call this commit records."""
        return self.task_def.fingerprint

    @property
    def func_name(self) -> str:
        """Name of the task function."""
        return self.task_def.func_name

    @property
    def ttl_seconds(self) -> float | None:
        """Time to live of the entry in seconds, or ``None`` for no expiry."""
        return self.task_def.ttl

    @property
    def short_hash(self) -> str:
        """The first 12 hex digits of the commit hash.

        Also callable (``commit.short_hash()``), as the published cashet's method was.
        """
        return ShortHash(self.hash[:12])

    @property
    def output_ref(self) -> ObjectRef | None:
        """The result blob (``result``), by the published cashet's name."""
        return self.result

    def summary(self) -> dict[str, Any]:
        """A short JSON-able description, with the published cashet's keys.

        Keys: ``hash``, ``short_hash``, ``function``, ``status``, ``created_at`` (ISO 8601),
        ``output`` (the result blob hash or ``None``), ``parent``, ``tags``.
        """
        return {
            "hash": self.hash,
            "short_hash": self.hash[:12],
            "function": self.task_def.func_name,
            "status": self.status.value,
            "created_at": self.created_at.isoformat(),
            "output": None if self.result is None else self.result.hash,
            "parent": self.parent_hash,
            "tags": dict(self.tags),
        }

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether the commit's TTL has run out at ``now`` (default: the current time)."""
        if self.expires_at is None:
            return False
        return (now or utcnow()) >= self.expires_at


_dataclass_commit_init = Commit.__init__
_UNSET: Any = object()


def _commit_init(self: Commit, *args: Any, output_ref: Any = _UNSET, **kwargs: Any) -> None:
    if output_ref is not _UNSET:  # the published cashet's name of ``result``
        if len(args) > 4 or "result" in kwargs:
            raise TypeError("Commit() got both 'result' and its alias 'output_ref'")
        kwargs["result"] = output_ref
    _dataclass_commit_init(self, *args, **kwargs)


_commit_init.__doc__ = _dataclass_commit_init.__doc__
_signature = inspect.signature(_dataclass_commit_init)
_commit_init.__signature__ = _signature.replace(  # type: ignore[attr-defined]
    parameters=[
        *_signature.parameters.values(),
        inspect.Parameter("output_ref", inspect.Parameter.KEYWORD_ONLY, default=None),
    ]
)
Commit.__init__ = _commit_init  # type: ignore[method-assign]


def new_commit(*fields: Any) -> Commit:
    """A ``Commit`` from its fields in order, without the alias check (the hit path)."""
    c: Commit = object.__new__(Commit)
    _dataclass_commit_init(c, *fields)
    return c


@dataclass(frozen=True, slots=True)
class Lease:
    """Who is computing a fingerprint right now, and until when the claim holds.

    ``host``, ``boot_id`` and ``pid_ns`` name the machine and the PID namespace the holder
    runs in, ``pid`` its process there: a caller on the same host, boot and PID namespace
    sees at once that the holder's process is gone, without waiting for ``expires_at``.
    A holder anywhere else (another container with the same host name, another boot) is
    judged by ``expires_at`` alone. ``boot_id`` and ``pid_ns`` are empty where they are
    unknown (a lease written by an older cashet, a system without ``/proc``).
    """

    owner: str
    host: str
    pid: int
    expires_at: datetime
    func_name: str = ""
    boot_id: str = ""
    pid_ns: str = ""


@dataclass(frozen=True, slots=True)
class TaskRef:
    """Placeholder for the output of task number ``index`` in a ``submit_many`` batch.

    For a dict batch, ``index`` is the key of the referenced task.
    """

    index: Any


class ResultRefBase(Generic[T]):
    """What :class:`ResultRef` and :class:`AsyncResultRef` share: the commit, the blob, repr.

    The subclasses differ only in ``load`` (a call or an await).
    """

    __slots__ = ("_loaded", "_loader", "_value", "commit", "commit_hash", "hash", "size")

    def __init__(self, commit: Commit, loader: Callable[[ObjectRef, bytes | None], Any]) -> None:
        """Wrap ``commit``'s result; ``loader(ref, data)`` loads it: from ``data`` (the bytes a
        cache lookup read along, ``commit.result_data``) when given, else from the store (an
        async loader for ``AsyncResultRef``).

        Raises:
            ValueError: the commit has no result (a failed run).
        """
        if commit.result is None:
            raise ValueError(f"commit {commit.hash[:12]} has no result")
        self.commit = commit
        self.commit_hash: str = commit.hash
        self.hash: str = commit.result.hash
        self.size: int = commit.result.size
        self._loader = loader
        self._loaded = False
        self._value: Any = None

    @property
    def short_hash(self) -> str:
        """The first 12 hex digits of the result blob hash."""
        return self.hash[:12]

    @property
    def object_ref(self) -> ObjectRef:
        """The blob this handle points at."""
        assert self.commit.result is not None
        return self.commit.result

    @property
    def cached(self) -> bool:
        """Whether ``submit`` found this result in the cache instead of running the task."""
        return self.commit.from_cache

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(hash={self.hash[:12]}, commit={self.commit_hash[:12]}, "
            f"size={self.size}, func={self.commit.func_name!r})"
        )


class ResultRef(ResultRefBase[T]):
    """A lazy handle to a stored result.

    Pass it as an argument to another ``submit`` to chain steps: the downstream cache key
    uses this result's blob hash, and the function receives the loaded value.
    """

    __slots__ = ()

    def load(self) -> T:
        """Read, verify and deserialize the result (once; later calls return the same object)."""
        if not self._loaded:
            data, self.commit.result_data = self.commit.result_data, None
            self._value = self._loader(self.object_ref, data)
            self._loaded = True
        return self._value  # type: ignore[no-any-return]


class AsyncResultRef(ResultRefBase[T]):
    """The asyncio twin of :class:`ResultRef`: ``await ref.load()``."""

    __slots__ = ()

    async def load(self) -> T:
        """Read, verify and deserialize the result (once)."""
        if not self._loaded:
            data, self.commit.result_data = self.commit.result_data, None
            self._value = await self._loader(self.object_ref, data)
            self._loaded = True
        return self._value  # type: ignore[no-any-return]


@dataclass(slots=True)
class CommitPage:
    """A page of commits, newest first (``Client.log_page``): ``cursor`` starts the next
    (``None``: no more); ``scanned`` commits were read; ``partial``: a text search stopped
    at its window before the page was full (``cursor`` continues it)."""

    commits: list[Commit]
    cursor: str | None = None
    scanned: int = 0
    partial: bool = False
