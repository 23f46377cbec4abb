"""``Client``: the synchronous entry point — submit, chain, batch, inspect."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from cashet._log import configure_from_env
from cashet.core.batch import BatchItem, plan_batch, substitute_task_refs
from cashet.core.options import (
    CALL_OPTIONS,
    DEFAULT_OPTIONS,
    TaskOptions,
    call_options,
    make_options,
    make_task_def,
)
from cashet.errors import CashetError
from cashet.hashing import function_identity, hash_call
from cashet.models import Commit, ObjectRef, ResultRef, TaskStatus
from cashet.protocols import Executor, Serializer, Store, TagQuery
from cashet.provenance.query import (
    diff_commits,
    gc_cutoff,
    parse_status,
    resolve_commit,
    resolve_result,
    validate_tags,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

    from cashet.provenance.archive import ExportResult, ImportResult

__all__ = ["Client", "TaskFunction", "default_store_dir"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Batches at least this long show a progress bar when stderr is a terminal.
PROGRESS_MIN_TASKS = 8


def default_store_dir() -> Path:
    """``$CASHET_DIR`` if set, else ``.cashet`` in the current directory."""
    return Path(os.environ.get("CASHET_DIR") or ".cashet")


class TaskFunction(Generic[T]):
    """A function registered with ``@client.task``: calling it submits it."""

    def __init__(self, client: Client, func: Callable[..., T], options: TaskOptions) -> None:
        self.client = client
        self.func = func
        self.options = options
        self.name: str = options.name or str(getattr(func, "__qualname__", repr(func)))
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> ResultRef[T]:
        return self.client.submit(cast("Callable[..., T]", self), *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> ResultRef[T]:
        """Same as calling the task."""
        return self.client.submit(cast("Callable[..., T]", self), *args, **kwargs)

    def __repr__(self) -> str:
        return f"<cashet task {self.name}>"


class Client:
    """Persistent memoization of function calls.

    Args:
        store_dir: directory of the default ``SQLiteStore`` (default ``$CASHET_DIR`` or
            ``.cashet``). Ignored when ``store`` is given.
        store: any ``Store`` (``SQLiteStore``, ``RedisStore``, your own).
        executor: any ``Executor``; default ``LocalExecutor()``.
        serializer: any ``Serializer``; default ``PickleSerializer()``.
        max_workers: parallelism of ``submit_many``/``map`` (1 = sequential).
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str] | None = None,
        store: Store | None = None,
        executor: Executor | None = None,
        serializer: Serializer | None = None,
        max_workers: int = 1,
    ) -> None:
        configure_from_env()
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive integer, not {max_workers!r}")
        if store is None:
            from cashet.stores.sqlite.store import SQLiteStore

            store = SQLiteStore(Path(store_dir) if store_dir is not None else default_store_dir())
        if executor is None:
            from cashet.executors.local import LocalExecutor

            executor = LocalExecutor()
        if serializer is None:
            from cashet.serializers import PickleSerializer

            serializer = PickleSerializer()
        self.store: Store = store
        self.executor: Executor = executor
        self.serializer: Serializer = serializer
        self.max_workers = max_workers
        self._tasks: dict[str, TaskFunction[Any]] = {}
        self._closed = False

    # --- submitting -----------------------------------------------------------------------

    def submit(
        self,
        func: Callable[..., T],
        /,
        *args: Any,
        _cache: bool | None = None,
        _force: bool | None = None,
        _tags: Mapping[str, str] | None = None,
        _retries: int | None = None,
        _timeout: float | None = None,
        _ttl: float | None = None,
        **kwargs: Any,
    ) -> ResultRef[T]:
        """Run ``func(*args, **kwargs)`` once; return a handle to the (cached) result.

        Arguments that are ``ResultRef``s (also inside lists, tuples and dicts) chain steps:
        the cache key uses the upstream blob hash, and ``func`` receives the loaded value.

        Options (call site beats ``@client.task(...)`` beats defaults): ``_cache=False``
        always runs and records; ``_force=True`` runs and replaces the cached result;
        ``_tags`` labels the commit; ``_retries`` retries failures with backoff;
        ``_timeout`` (seconds) fails a slow attempt; ``_ttl`` (seconds) expires the entry.

        Raises:
            TaskError: the function failed on every attempt (original traceback included).
            TypeError: an argument cannot be hashed exactly (its position is named).
            ValueError: an option has a wrong type or value.
        """
        if self._closed:
            raise CashetError("this Client is closed")
        options = DEFAULT_OPTIONS
        if isinstance(func, TaskFunction):
            options = func.options
            func = func.func
        options = call_options(options, _cache, _force, _tags, _retries, _timeout, _ttl)
        if not callable(func):
            raise TypeError(f"submit() needs a callable, not {type(func).__name__}")
        task_def = make_task_def(function_identity(func), options, hash_call(func, args, kwargs))
        commit = self.executor.submit(func, args, kwargs, task_def, self.store, self.serializer)
        return ResultRef(commit, self._load_object)

    def _load_object(self, ref: ObjectRef) -> Any:
        return self.serializer.loads(self.store.get_blob(ref))

    @overload
    def task(self, func: Callable[..., T], /) -> TaskFunction[T]: ...

    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        cache: bool = True,
        force: bool = False,
        tags: Mapping[str, str] | None = None,
        retries: int = 0,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> Callable[[Callable[..., T]], TaskFunction[T]]: ...

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
    ) -> TaskFunction[T] | Callable[[Callable[..., T]], TaskFunction[T]]:
        """Register a task with default options; calling it returns a ``ResultRef``.

        Use bare (``@client.task``) or with options (``@client.task(retries=3)``). The task
        is also registered under its name for the HTTP server.
        """
        options = make_options(
            cache=cache,
            force=force,
            tags=tags,
            retries=retries,
            timeout=timeout,
            ttl=ttl,
            name=name,
        )

        def register(f: Callable[..., T]) -> TaskFunction[T]:
            if not callable(f):
                raise TypeError(f"@task needs a callable, not {type(f).__name__}")
            if isinstance(f, TaskFunction):
                f = f.func
            tf = TaskFunction(self, f, options)
            self._tasks[tf.name] = tf
            return tf

        if func is not None:
            return register(func)
        return register

    @property
    def tasks(self) -> dict[str, TaskFunction[Any]]:
        """Tasks registered with ``@client.task``, by name."""
        return dict(self._tasks)

    @overload
    def submit_many(
        self, tasks: Sequence[Any], max_workers: int | None = None
    ) -> list[ResultRef[Any]]: ...

    @overload
    def submit_many(
        self, tasks: Mapping[Hashable, Any], max_workers: int | None = None
    ) -> dict[Hashable, ResultRef[Any]]: ...

    def submit_many(
        self, tasks: Sequence[Any] | Mapping[Hashable, Any], max_workers: int | None = None
    ) -> list[ResultRef[Any]] | dict[Hashable, ResultRef[Any]]:
        """Submit a batch in dependency order; ``TaskRef(i)`` wires task ``i``'s output in.

        Items are ``f``, ``(f, args)`` or ``(f, args, kwargs)``; ``tasks`` is a list (refs
        by index) or a dict (refs by key). Independent tasks run in parallel with
        ``max_workers > 1``. The whole batch is validated before anything runs.

        Returns:
            ``ResultRef``s in the input's order (a list), or by key (a dict).

        Raises:
            TypeError, ValueError: a malformed batch (nothing has run).
            TaskError: a task failed; tasks depending on it were not run.
        """
        order = plan_batch(tasks)
        workers = self.max_workers if max_workers is None else max_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"max_workers must be a positive integer, not {workers!r}")
        results = self._run_batch(order, workers)
        if isinstance(tasks, Mapping):
            return {k: results[k] for k in tasks}
        return [results[i] for i in range(len(order))]

    def _submit_item(self, item: BatchItem, results: Mapping[Hashable, Any]) -> ResultRef[Any]:
        args = substitute_task_refs(item.args, results)
        kwargs = substitute_task_refs(item.kwargs, results)
        call_opts = {k: kwargs.pop(k) for k in CALL_OPTIONS if k in kwargs}
        return self.submit(item.func, *args, **call_opts, **kwargs)

    def _run_batch(self, order: list[BatchItem], workers: int) -> dict[Hashable, ResultRef[Any]]:
        results: dict[Hashable, ResultRef[Any]] = {}
        with _progress(len(order)) as advance:
            if workers == 1 or len(order) == 1:
                for item in order:
                    results[item.key] = self._submit_item(item, results)
                    advance()
                return results
            pending = {item.key: item for item in order}
            # Imported here: concurrent.futures costs ~9 ms, and most runs never batch.
            from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

            running: dict[Future[ResultRef[Any]], Hashable] = {}
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cashet") as pool:
                while pending or running:
                    ready = [k for k, it in pending.items() if all(d in results for d in it.deps)]
                    for k in ready:
                        item = pending.pop(k)
                        running[pool.submit(self._submit_item, item, dict(results))] = k
                    done, _ = wait(list(running), return_when=FIRST_EXCEPTION)
                    for fut in done:
                        k = running.pop(fut)
                        exc = fut.exception()
                        if exc is not None:
                            for other in running:
                                other.cancel()
                            raise exc
                        results[k] = fut.result()
                        advance()
        return results

    def map(
        self, func: Callable[..., T], items: Iterable[Any], *args: Any, **kwargs: Any
    ) -> list[ResultRef[T]]:
        """Submit ``func(item, *args, **kwargs)`` for each item, each cached on its own."""
        batch = [(func, (item, *args), kwargs) for item in items]
        return self.submit_many(batch)

    # --- provenance -----------------------------------------------------------------------

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
        query = None if tags is None else validate_tags(tags) or None
        return self.store.list_commits(
            func_name=func_name, limit=limit, status=parse_status(status), tags=query
        )

    def show(self, hash: str) -> Commit:
        """Return the commit with this hash or unique hash prefix.

        The full hash of a result blob (``ref.hash``) also works when the store can look
        results up (``SQLiteStore``): the newest commit that produced it is returned.
        The commit carries its provenance: ``task_def.func_source``,
        ``task_def.args_snapshot``, ``parent_hash``, ``created_at``, ``tags``, ``error``,
        ``compute_seconds`` and ``result`` (blob hash and size). Expired commits are shown
        until ``gc`` deletes them.

        Raises:
            CommitNotFoundError: no commit matches.
            AmbiguousHashError: the prefix matches several commits (``.candidates``).
            ValueError: ``hash`` is not hexadecimal.
        """
        return resolve_commit(self.store, hash, by_result=True)

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
            Whether a commit was deleted (``False`` if it went away meanwhile).

        Raises:
            CommitNotFoundError, AmbiguousHashError: as :meth:`show`.
        """
        return self.store.delete_commit(resolve_commit(self.store, hash).hash)

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
        return self.store.delete_by_tags(validate_tags(tags, allow_empty=False))

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

    # --- lifecycle ------------------------------------------------------------------------

    def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        require_token: str | None = None,
        tasks: Mapping[str, Callable[..., Any]] | None = None,
        allow_remote_code: bool = False,
        read_only: bool = False,
    ) -> None:
        """Serve this cache over HTTP until interrupted (needs the ``server`` extra).

        ``POST /submit`` runs the tasks in ``tasks`` and those registered with
        ``@client.task``, with JSON arguments; see :func:`cashet.server.app.create_app` for the
        endpoints and the other arguments. Without ``require_token``, anyone who can reach
        ``host:port`` can run those tasks: keep such a server on loopback.

        Raises:
            ValueError: ``allow_remote_code`` without ``require_token``, or a bad token.
        """
        from cashet.server.app import create_app, run_app

        app = create_app(
            self,
            require_token=require_token,
            tasks=tasks,
            allow_remote_code=allow_remote_code,
            read_only=read_only,
        )
        run_app(app, host, port)

    def close(self) -> None:
        """Close the store. Idempotent."""
        if not self._closed:
            self._closed = True
            self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(store={self.store!r})"


class _NoProgress:
    def __enter__(self) -> Callable[[], None]:
        return lambda: None

    def __exit__(self, *exc: object) -> None:
        return None


class _RichProgress:
    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("cashet", total=total)

    def __enter__(self) -> Callable[[], None]:
        self._progress.start()
        return lambda: self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def _progress(total: int) -> _NoProgress | _RichProgress:
    if total >= PROGRESS_MIN_TASKS and sys.stderr is not None and sys.stderr.isatty():
        return _RichProgress(total)
    return _NoProgress()
