"""What ``Client`` and ``AsyncClient`` share, written once.

* :class:`ClientBase`: construction checks, the ``task`` decorator and its registry, the
  option handling and function identity of every ``submit``, and batch wiring. The
  clients keep only their IO: how they hash, drive the executor and load results.
* :class:`TaskFunctionBase`: a registered task (``TaskFunction`` calls, ``AsyncTaskFunction``
  awaits).
* :class:`StoreQueries`: the provenance and maintenance methods (``log``, ``show``, ``get``,
  ``diff``, ``history``, ``rm``, ``gc``, ``clear``, ``invalidate``, ``stats``, ``export``,
  ``import_archive``) over a *sync* store. ``Client`` inherits them; ``AsyncClient`` runs
  them off the event loop over a sync view of its store, so both validate, fail and answer
  the same way by construction (``tests/test_async_parity.py``).

Below the clients (docs/architecture.md): imports the core, hashing, provenance and models,
never a client module.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from blake3 import blake3

from cashet._log import configure_from_env
from cashet.core.batch import BatchItem, substitute_task_refs
from cashet.core.options import (
    DEFAULT_OPTIONS,
    TaskOptions,
    call_options,
    check_ignore_globals,
    make_options,
)
from cashet.errors import CashetError, CommitNotFoundError
from cashet.hashing import function_identity, ignore
from cashet.models import Commit, Lease, ObjectRef, TaskDef, TaskStatus
from cashet.protocols import (
    BlobOpener,
    Serializer,
    Store,
    StreamSerializer,
    TagQuery,
    supports,
)
from cashet.provenance.diff import diff_commits
from cashet.provenance.query import (
    check_tag_query,
    gc_cutoff,
    parse_status,
    resolve_commit,
    resolve_result,
)
from cashet.stores.base import full_store

if TYPE_CHECKING:
    from cashet.hashing.functions import FunctionIdentity
    from cashet.provenance.archive import ExportResult, ImportResult

__all__ = [
    "ClientBase",
    "StoreQueries",
    "TaskFunctionBase",
    "check_workers",
    "default_store_dir",
]

T = TypeVar("T")
TF = TypeVar("TF", bound="TaskFunctionBase[Any]")


def default_store_dir() -> Path:
    """Return ``$CASHET_DIR`` if set, else ``.cashet`` in the current directory."""
    return Path(os.environ.get("CASHET_DIR") or ".cashet")


def check_workers(workers: Any) -> int:
    """Return ``workers`` when it is a positive ``int``.

    Raises:
        ValueError: anything else (``bool`` included).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"max_workers must be a positive integer, not {workers!r}")
    return workers


class TaskFunctionBase(Generic[T]):
    """A function registered with ``@client.task``; the subclasses make calling it submit.

    Args:
        client: the client that submits it.
        func: the function.
        options: its default options (call-site ``_x`` options beat them).
    """

    #: Shown in ``repr``: ``<cashet task f>`` or ``<cashet async task f>``.
    _kind = "task"

    def __init__(self, client: Any, func: Callable[..., T], options: TaskOptions) -> None:
        self.client = client
        self.func = func
        self.options = options
        self.name: str = options.name or str(getattr(func, "__qualname__", repr(func)))
        functools.update_wrapper(cast(Any, self), func)

    def __repr__(self) -> str:
        return f"<cashet {self._kind} {self.name}>"

    def __cashet_hash__(self) -> Any:
        """A task read by other code (a method of a class, a helper) is keyed by its function."""
        return self.func

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        """Bind like a function: ``@client.task`` on a method gives ``Model(3).predict``, a
        task of the bound method, so the instance is part of the call's key (issue 12)."""
        if obj is None:
            return self
        bind = getattr(self.func, "__get__", None)
        if bind is None:
            return self
        return type(self)(self.client, bind(obj, objtype), self.options)


class ClientBase(Generic[TF]):
    """The IO-free half of a client, shared by ``Client`` and ``AsyncClient``.

    A subclass sets ``_task_class`` (what ``@client.task`` makes) and ``store``.
    """

    _task_class: type[TF]
    serializer: Serializer
    max_workers: int

    def __init__(self, serializer: Serializer | None, max_workers: int) -> None:
        """Check ``max_workers`` and set the defaults; the subclass then sets its store."""
        configure_from_env()
        check_workers(max_workers)
        if serializer is None:
            from cashet.serializers import PickleSerializer

            serializer = PickleSerializer()
        self.serializer = serializer
        self.max_workers = max_workers
        self._tasks: dict[str, TF] = {}
        self._closed = False

    # --- registering ----------------------------------------------------------------------

    def task(
        self,
        func: Callable[..., T] | None = None,
        /,
        *,
        name: str | None = None,
        cache: bool = True,
        force: bool = False,
        tags: Mapping[str, str] | None = None,
        retries: int = 0,
        timeout: float | None = None,
        ttl: float | None = None,
        ignore_globals: Iterable[str] | None = None,
    ) -> TF | Callable[[Callable[..., T]], TF]:
        """Register a task with default options; calling it submits it.

        Use bare (``@client.task``) or with options (``@client.task(retries=3)``). The task
        is also registered under its name for the HTTP server. Not a coroutine on
        ``AsyncClient`` either: registering does no IO.

        ``ignore_globals`` names values the task's code reads that must stay out of its cache
        key (global names such as ``"LOCK"``, dotted paths such as ``"cfg.CACHE"``, closure
        variables): a lock, a logger, a connection, a cache. They are neither hashed nor
        warned about; a change to them does not change the key (see ``docs/cache-keys.md``;
        the same as ``@cashet.hashing.ignore(...)``).

        Raises:
            ValueError: an option has a wrong type or value.
            TypeError: what is decorated is not callable.
        """
        options = make_options(
            cache=cache, force=force, tags=tags, retries=retries, timeout=timeout, ttl=ttl,
            name=name,
        )  # fmt: skip
        ignored = check_ignore_globals(ignore_globals)

        def register(f: Callable[..., T]) -> TF:
            if not callable(f):
                raise TypeError(f"@task needs a callable, not {type(f).__name__}")
            if isinstance(f, TaskFunctionBase):
                f = f.func
            if ignored:
                ignore(*ignored)(getattr(f, "__func__", f))
            tf = self._task_class(self, f, options)
            self._tasks[tf.name] = tf
            return tf

        if func is not None:
            return register(func)
        return register

    @property
    def tasks(self) -> dict[str, TF]:
        """Tasks registered with ``@client.task``, by name."""
        return dict(self._tasks)

    # --- submitting -----------------------------------------------------------------------

    def _prepare(
        self,
        func: Callable[..., Any],
        cache: Any,
        force: Any,
        tags: Any,
        retries: Any,
        timeout: Any,
        ttl: Any,
    ) -> tuple[Callable[..., Any], TaskOptions, FunctionIdentity]:
        """The function to run, its options and identity: everything of a ``submit`` but
        the arguments' digest (hashed by the client: in a thread when big, on ``AsyncClient``).
        """
        func, options = self._resolve(func, cache, force, tags, retries, timeout, ttl)
        return func, options, function_identity(func)

    def _resolve(
        self,
        func: Callable[..., Any],
        cache: Any,
        force: Any,
        tags: Any,
        retries: Any,
        timeout: Any,
        ttl: Any,
    ) -> tuple[Callable[..., Any], TaskOptions]:
        """The function to run and its options (:meth:`_prepare` without the identity)."""
        if self._closed:
            raise CashetError(f"this {type(self).__name__} is closed")
        options = DEFAULT_OPTIONS
        if isinstance(func, TaskFunctionBase):
            options = func.options
            func = func.func
        options = call_options(options, cache, force, tags, retries, timeout, ttl)
        if not callable(func):
            raise TypeError(f"submit() needs a callable, not {type(func).__name__}")
        return func, options

    def _lookup_key(
        self,
        func: Callable[..., Any],
        cache: Any,
        force: Any,
        tags: Any,
        retries: Any,
        timeout: Any,
        ttl: Any,
    ) -> tuple[Callable[..., Any], TaskOptions] | None:
        """What a cache-only :meth:`lookup` keys on (as :meth:`_resolve`), or ``None`` when
        such a call would run whatever the cache holds (``cache=False`` or ``force=True``)."""
        resolved = self._resolve(func, cache, force, tags, retries, timeout, ttl)
        if not resolved[1].cache or resolved[1].force:
            return None
        return resolved

    @staticmethod
    def _hit_needs_touch(commit: Commit, now: datetime) -> bool:
        """Whether a hit on ``commit`` at ``now`` records its access (as ``submit`` does)."""
        return commit.last_accessed is None or now - commit.last_accessed > touch_after()

    @staticmethod
    def _batch_call(
        item: BatchItem, results: Mapping[Hashable, Any]
    ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        """``item``'s function and arguments, its ``TaskRef``s replaced by ``results``."""
        args = substitute_task_refs(item.args, results)
        kwargs = substitute_task_refs(item.kwargs, results)
        return item.func, args, kwargs

    @staticmethod
    def _batch_output(
        tasks: Sequence[Any] | Mapping[Hashable, Any], results: Mapping[Hashable, T]
    ) -> list[T] | dict[Hashable, T]:
        """The results of a batch shaped as its input: by key for a dict, else a list."""
        if isinstance(tasks, Mapping):
            return {k: results[k] for k in tasks}
        return [results[i] for i in range(len(results))]


#: Results at least this large load from a file the store opens (when it can, and the
#: serializer can read one), so that their bytes and their value are never held at once.
STREAM_MIN = 1 << 20


def load_result(store: Store, serializer: Serializer, ref: ObjectRef) -> Any:
    """Load the result ``ref`` from ``store``: a large one straight from its file when the
    store can open it and the serializer read one (see ``protocols.BlobOpener``)."""
    if (
        ref.size >= STREAM_MIN
        and supports(store, BlobOpener)
        and supports(serializer, StreamSerializer)
    ):
        opened = cast(BlobOpener, store).open_blob(ref)
        if opened is not None:
            with opened as f:
                return cast(StreamSerializer, serializer).load(f)
    return serializer.loads(store.get_blob(ref))


class StoreQueries:
    """Provenance and maintenance over a sync store: ``Client``'s, and ``AsyncClient``'s
    off the loop.

    Args:
        store: a sync ``Store`` (for ``AsyncClient``: a sync view of its async store).
        serializer: loads results for :meth:`get`.
    """

    store: Store
    serializer: Serializer

    def __init__(self, store: Store, serializer: Serializer) -> None:
        self.store = store
        self.serializer = serializer

    def _load_object(self, ref: ObjectRef, data: bytes | None = None) -> Any:
        if data is None:
            return load_result(self.store, self.serializer, ref)
        return self.serializer.loads(data)

    def log(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | str | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """List commits, newest first.

        Args:
            func_name: only commits of the function with this name.
            limit: at most this many (``None``: all).
            status: only commits in this state (``TaskStatus`` or its string value).
                ``"running"`` lists the calls in flight right now (their leases), each as
                a commit with no result (its hash names no stored commit).
            tags: only commits carrying every tag (``{key: None}`` = the key with any value).

        Raises:
            ValueError: ``limit`` is negative, or ``status`` is unknown (the valid values
                are listed).
            TypeError: ``tags`` is not a mapping of strings to strings or ``None``.
        """
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
        if func_name is not None and not isinstance(func_name, str):
            raise TypeError(f"func_name must be a str, not {type(func_name).__name__}")
        query = None if tags is None else check_tag_query(tags) or None
        wanted = parse_status(status)
        commits = self.store.list_commits(
            func_name=func_name, limit=limit, status=wanted, tags=query
        )
        if wanted is not TaskStatus.RUNNING or query:
            return commits
        running = [
            running_commit(fingerprint, lease, claimed_at)
            for fingerprint, lease, claimed_at in full_store(self.store).running_claims()
            if func_name is None or lease.func_name == func_name
        ]
        running.extend(commits)
        running.sort(key=lambda c: c.created_at, reverse=True)
        return running if limit is None else running[:limit]

    def show(self, hash: str) -> Commit | None:
        """Return the commit with this hash or unique hash prefix, or ``None`` if none has it.

        The full hash of a result blob (``ref.hash``) also works when the store can look
        results up (``SQLiteStore``): the newest commit that produced it is returned.
        The commit carries its provenance: ``task_def.func_source``,
        ``task_def.args_snapshot``, ``parent_hash``, ``created_at``, ``tags``, ``error``,
        ``compute_seconds`` and ``result`` (blob hash and size). Expired commits are shown
        until ``gc`` deletes them.

        Raises:
            AmbiguousHashError: the prefix matches several commits (``.candidates``).
            ValueError: ``hash`` is not hexadecimal.
        """
        try:
            return resolve_commit(self.store, hash, by_result=True)
        except CommitNotFoundError:  # the spec's Store returns Commit | None, and so do we
            return None

    def get(self, hash: str) -> Any:
        """Load the result recorded by a commit.

        Args:
            hash: a commit hash or unique prefix; or, when no commit has it, the full hash
                of a result blob (``ref.hash``).

        Raises:
            CommitNotFoundError: nothing matches, or the commit has no result (a failed run).
            AmbiguousHashError: the prefix matches several commits.
            BlobError: the result blob is missing or corrupt.
        """
        ref, _ = resolve_result(self.store, hash)
        return self._load_object(ref)

    def diff(self, hash_a: str, hash_b: str) -> dict[str, Any]:
        """Compare two commits (hashes or unique prefixes).

        Returns:
            ``{'func_changed': ..., 'args_changed': ..., 'output_changed': ..., ...}`` plus
            ``source_diff`` (unified diff of the sources) and ``args_diff`` (a list of
            ``{'path', 'change', 'a', 'b'}`` from a structural comparison of the argument
            snapshots).
        """
        a = resolve_commit(self.store, hash_a, by_result=True)
        return diff_commits(a, resolve_commit(self.store, hash_b, by_result=True))

    def history(self, hash: str) -> list[Commit]:
        """Every run of the same function and arguments as this commit, oldest first.

        Forced runs and re-runs after a TTL expired are separate commits (each one's
        ``parent_hash`` names the run before it); expired commits are left out.
        """
        return self.store.get_history(resolve_commit(self.store, hash, by_result=True).hash)

    def rm(self, hash: str) -> bool:
        """Delete one commit (hash or unique prefix) and the blob only it used.

        Returns:
            Whether a commit was deleted: ``False`` when no commit has that hash (or it
            went away meanwhile).

        Raises:
            AmbiguousHashError: the prefix matches several commits.
            ValueError: ``hash`` is not hexadecimal.
        """
        try:
            target = resolve_commit(self.store, hash)
        except CommitNotFoundError:
            return False
        return self.store.delete_commit(target.hash)

    def gc(
        self, older_than: timedelta = timedelta(days=30), max_size_bytes: int | None = None
    ) -> int:
        """Evict entries unused for ``older_than``, expired entries and orphaned blobs.

        Age is measured from a commit's last access: its last cache hit, or its creation if
        never hit (``show`` and ``get`` do not count). With ``max_size_bytes``, least
        recently used entries are also evicted until the stored bytes fit. A running
        task's lease is never touched.

        Returns:
            The number of commits removed.

        Raises:
            TypeError: ``older_than`` is not a ``timedelta``.
            ValueError: a negative age or size.
        """
        cutoff = gc_cutoff(older_than)
        if max_size_bytes is not None and (
            isinstance(max_size_bytes, bool)
            or not isinstance(max_size_bytes, int)
            or max_size_bytes < 0
        ):
            raise ValueError(
                f"max_size_bytes must be a non-negative integer, not {max_size_bytes!r}"
            )
        return self.store.evict(cutoff, max_size_bytes)

    def clear(self) -> int:
        """Remove every entry and orphaned blob (``gc(timedelta(0))``); return the count."""
        return self.gc(timedelta(0))

    def invalidate(self, tags: TagQuery) -> int:
        """Delete the commits carrying all these tags (``{key: None}`` = key present).

        Returns:
            The number of commits deleted.

        Raises:
            ValueError: ``tags`` is empty (that would match everything).
            TypeError: ``tags`` is not a mapping of strings to strings or ``None``.
        """
        return full_store(self.store).delete_by_tags(check_tag_query(tags, allow_empty=False))

    def stats(self) -> dict[str, int]:
        """Return commit and storage counters.

        Keys: ``total_commits``, ``completed_commits``, ``stored_objects``, ``disk_bytes``,
        ``blob_objects``, ``blob_bytes``, ``inline_objects``, ``inline_bytes``.
        """
        return self.store.stats()

    def export(self, path: str | os.PathLike[str]) -> ExportResult:
        """Write every commit and the result blobs they use to a portable ``.tar.gz``.

        Streams (one blob in memory at a time); the file appears only when complete.

        Returns:
            The number of commits written (an ``int``; ``.blobs``, ``.bytes`` and
            ``.skipped`` — commits left out because their blob was unreadable — too).
        """
        from cashet.provenance.archive import export_archive

        return export_archive(self.store, path)

    def import_archive(self, path: str | os.PathLike[str]) -> ImportResult:
        """Add the commits and blobs of an archive made by :meth:`export`.

        The archive is untrusted: every member name, blob and commit is verified before
        anything is written, and nothing is written unless all of it is valid. Commits the
        store already has are skipped.

        Returns:
            The number of commits imported (an ``int``, also ``.imported``), with
            ``.skipped`` and ``.blobs``.

        Raises:
            ArchiveError: the archive was rejected; the store is unchanged.
        """
        from cashet.provenance.archive import import_archive

        return import_archive(self.store, path)

    # --- reads the shells need (the server and the CLI never touch the store) -------------

    def resolve_result(self, hash: str) -> tuple[ObjectRef, Commit | None]:
        """Return the result blob ``hash`` names, and the commit that recorded it.

        Args:
            hash: a commit hash or unique prefix; or, when no commit has it, the full hash
                of a result blob (then the commit is ``None``).

        Raises:
            CommitNotFoundError: nothing matches, or the commit has no result (a failed run).
            AmbiguousHashError: the prefix matches several commits.
            ValueError: ``hash`` is not hexadecimal.
        """
        return resolve_result(self.store, hash)

    def result_bytes(self, result: str | ObjectRef) -> bytes:
        """Return a stored result's serialized bytes, verified but not deserialized.

        Args:
            result: what :meth:`get` takes (a commit hash or unique prefix, or a full blob
                hash), or the blob itself (``ref.object_ref``).

        Raises:
            CommitNotFoundError, AmbiguousHashError: as :meth:`get`.
            BlobError: the result blob is missing or corrupt.
        """
        ref = result if isinstance(result, ObjectRef) else resolve_result(self.store, result)[0]
        return self.store.get_blob(ref)


@functools.cache
def touch_after() -> timedelta:
    """``core.flow.TOUCH_AFTER``, imported on first use (it would slow ``import cashet``)."""
    from cashet.core.flow import TOUCH_AFTER

    return TOUCH_AFTER


def executor_commit(done: Any) -> Commit:
    """The commit an executor's ``submit`` answered.

    Ours answer the ``Commit``; the published protocol's executors answer
    ``(commit, was_cached)``, and those work unchanged (issue 12): ``was_cached`` sets
    ``commit.from_cache``.
    """
    if isinstance(done, tuple) and len(done) == 2 and isinstance(done[0], Commit):
        commit: Commit = done[0]
        commit.from_cache = bool(done[1])
        return commit
    if not isinstance(done, Commit):
        raise TypeError(
            f"the executor's submit() returned {type(done).__name__}: expected a Commit "
            "or a (Commit, was_cached) pair"
        )
    return done


def running_commit(fingerprint: str, lease: Lease, claimed_at: datetime) -> Commit:
    """A call in flight, shown as a ``RUNNING`` commit (not stored: its hash names nothing)."""
    func_hash, _, args_hash = fingerprint.partition(":")
    task_def = TaskDef(func_name=lease.func_name, func_hash=func_hash, args_hash=args_hash)
    digest = blake3(f"running\0{fingerprint}\0{lease.owner}".encode()).hexdigest()
    return Commit(
        hash=digest,
        task_def=task_def,
        status=TaskStatus.RUNNING,
        created_at=claimed_at,
        expires_at=None,
        tags={"host": lease.host, "pid": str(lease.pid)},
    )
