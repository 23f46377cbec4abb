"""``Client``: the synchronous entry point — submit, chain, batch, inspect.

Only the sync IO lives here: hashing and driving the executor in the calling thread, the
batch's thread pool, the HTTP server. The decorator, option handling and the provenance
methods are shared with ``AsyncClient`` (:mod:`cashet._client_base`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from cashet._client_base import (
    ClientBase,
    StoreQueries,
    TaskFunctionBase,
    check_workers,
    default_store_dir,
    executor_commit,
)
from cashet._log import log
from cashet._process import current_pid
from cashet._progress import PROGRESS_MIN_TASKS, BatchTally, progress
from cashet.core.batch import BatchItem, plan_batch
from cashet.core.options import TaskOptions, make_task_def
from cashet.errors import StoreError
from cashet.hashing import hash_call
from cashet.hashing.kept import KeptDigests, lent
from cashet.models import Commit, ResultRef, TaskDef, utcnow
from cashet.protocols import Executor, HitCounter, Serializer, Store, supports
from cashet.provenance.explain import Explanation, explain_key
from cashet.stores.base import full_store
from cashet.stores.modes import mode_store
from cashet.stores.signing import SigningKey, signed_store
from cashet.stores.signing import signing_key as signing_key_of
from cashet.stores.urls import client_store

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

#: ``async def`` and async generator functions: a blocking client cannot run them.
_ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _refuse_async(func: Callable[..., Any]) -> None:
    code = getattr(func, "__code__", None)
    if code is not None and code.co_flags & _ASYNC_FLAGS:
        raise TypeError(
            f"{getattr(func, '__qualname__', func)!r} is an async def: Client cannot await"
            " it; submit it with AsyncClient (await client.submit(...))"
        )


__all__ = ["PROGRESS_MIN_TASKS", "Client", "TaskFunction", "default_store_dir"]

T = TypeVar("T")


class TaskFunction(TaskFunctionBase[T]):
    """A function registered with ``@client.task``: calling it submits it."""

    client: Client

    def __call__(self, *args: Any, **kwargs: Any) -> ResultRef[T]:
        return self.client.submit(cast("Callable[..., T]", self), *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> ResultRef[T]:
        """Same as calling the task."""
        return self.client.submit(cast("Callable[..., T]", self), *args, **kwargs)


class Client(ClientBase[TaskFunction[Any]], StoreQueries):
    """Persistent memoization of function calls.

    Args:
        store_dir: directory of the default ``SQLiteStore`` (default ``$CASHET_DIR`` or
            ``.cashet``). Ignored when ``store`` is given.
        store: any ``Store`` (``SQLiteStore``, ``RedisStore``, your own), or a store URL:
            ``"sqlite:///path/to/.cashet"``, ``"redis://host:6379/0"`` (``?prefix=...``),
            ``"rediss://..."``, ``"unix:///path/redis.sock"``. Default: ``$CASHET_STORE``
            when set (and no ``store_dir``), else the SQLite store in ``store_dir``.
        executor: any ``Executor``; default ``LocalExecutor()``.
        serializer: any ``Serializer``; default ``PickleSerializer()``.
        max_workers: parallelism of ``submit_many``/``map`` (1 = sequential).
        readonly: open the default store read-only: hits are served, misses computed and
            returned but not stored, nothing written (``rm``, ``gc``, ``import_archive``
            raise ``ReadOnlyStoreError``). A store directory that cannot be written is
            opened so anyway, with a ``ReadOnlyStoreWarning``. Ignored with ``store``.
        versions: put the versions of the libraries a task uses in its key: ``"off"``
            (default: recorded in each commit's manifest, not in the key), ``"major"``,
            ``"minor"`` or ``"exact"``; ``@client.task(versions=...)`` overrides it.
        mode: how calls use the cache (default ``$CASHET_MODE``, else ``"normal"``):
            ``"off"`` runs every call and stores nothing (no lookups; for tests),
            ``"readonly"`` serves hits and stores nothing (misses are computed and returned;
            for CI runs that must not grow a shared cache; any store), ``"refresh"``
            recomputes every call and stores the new results (``_force=True`` for all).
            In ``"off"`` and ``"readonly"``, ``rm``, ``gc``, ``invalidate`` and
            ``import_archive`` raise ``ReadOnlyStoreError``.
        signing_key: a team key (text or bytes, 16 or more; default ``$CASHET_SIGNING_KEY``):
            every commit written is signed with it, and a commit not signed with it is never
            served (a miss; ``check()`` reports it). See :mod:`cashet.stores.signing`.
        local_cache: a directory that keeps a local copy of every blob read from (or
            written to) the store's object store (``SQLiteStore(path, blobs=S3BlobStore(...))``):
            a hit's blob is served from it when there (verified), fetched once otherwise.
            Nothing changes when the store's blobs are local files already; a store with
            no blob store (a RedisStore without ``blobs=``) refuses it with ``ValueError``.
    """

    _task_class = TaskFunction

    def __init__(
        self,
        store_dir: str | os.PathLike[str] | None = None,
        store: Store | str | None = None,
        executor: Executor | None = None,
        serializer: Serializer | None = None,
        max_workers: int = 1,
        readonly: bool = False,
        versions: str = "off",
        mode: str | None = None,
        signing_key: str | bytes | SigningKey | None = None,
        local_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(serializer, max_workers, versions, mode)
        key = signing_key_of(signing_key)  # a bad key fails before any store is opened
        opened = client_store(
            store,
            store_dir,
            default_store_dir(),
            readonly,
            asynchronous=False,
            mode=self.mode,
            local_cache=local_cache,
        )
        opened = signed_store(opened, key, asynchronous=False)
        opened = mode_store(opened, self.mode, asynchronous=False)
        if executor is None:
            from cashet.executors.local import LocalExecutor

            executor = LocalExecutor()
        self.store: Store = opened
        self.executor: Executor = executor
        self._pool: tuple[int, int, ThreadPoolExecutor] | None = None

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
        func, options, identity = self._prepare(
            func, _cache, _force, _tags, _retries, _timeout, _ttl
        )
        _refuse_async(func)
        kept: KeptDigests = {}  # the big buffers' digests, for the manifest of a miss
        task_def = make_task_def(identity, options, hash_call(func, args, kwargs, None, kept))
        if not kept:
            return self._submit_keyed(func, args, kwargs, task_def)
        with lent(kept, task_def.args_hash):
            return self._submit_keyed(func, args, kwargs, task_def)

    def _submit_keyed(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
    ) -> ResultRef[Any]:
        """``submit`` of a call already keyed."""
        done = self.executor.submit(func, args, kwargs, task_def, self.store, self.serializer)
        return ResultRef(executor_commit(done), self._load_object)

    def explain(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Explanation:
        """Say, without running anything, whether ``submit(func, *args, **kwargs)`` would be
        a cache hit, and if not, what differs from the nearest earlier run of the same
        function: ``.hit``, ``.changes`` (each a ``Change``: ``kind``, ``name``, ``before``,
        ``after``), ``str(explanation)`` a readable report.
        """
        task_def, manifest, source = self._explained_call(func, args, dict(kwargs))
        return explain_key(self.store, task_def, manifest, source)

    if TYPE_CHECKING:  # typing only: the one implementation is ClientBase.task

        @overload  # type: ignore[override]
        def task(
            self,
            func: Callable[..., T],
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
            versions: str | None = None,
        ) -> TaskFunction[T]: ...

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
            ignore_globals: Iterable[str] | None = None,
            versions: str | None = None,
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
            ignore_globals: Iterable[str] | None = None,
            versions: str | None = None,
        ) -> TaskFunction[T] | Callable[[Callable[..., T]], TaskFunction[T]]: ...

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
        workers = check_workers(self.max_workers if max_workers is None else max_workers)
        graph = getattr(type(self.executor), "submit_graph", None)
        if graph is not None and any(item.deps for item in order):
            return self._batch_output(tasks, self._run_graph(order))
        return self._batch_output(tasks, self._run_batch(order, workers))

    def _run_graph(self, order: list[BatchItem]) -> dict[Hashable, ResultRef[Any]]:
        """A batch with ``TaskRef`` wiring handed whole to an executor that runs it as one
        graph on its engine (``DaskExecutor.submit_graph``)."""

        def make_ref(commit: Commit) -> ResultRef[Any]:
            return ResultRef(commit, self._load_object)

        with progress(len(order)) as advance:
            tally = BatchTally(advance)
            return cast(Any, self.executor).submit_graph(  # type: ignore[no-any-return]
                order, self._keyed_call, self.store, self.serializer, make_ref, tally.done
            )

    def _submit_item(self, item: BatchItem, results: Mapping[Hashable, Any]) -> ResultRef[Any]:
        func, args, kwargs = self._batch_call(item, results)
        return self.submit(func, *args, **kwargs)

    def _run_batch(self, order: list[BatchItem], workers: int) -> dict[Hashable, ResultRef[Any]]:
        results: dict[Hashable, ResultRef[Any]] = {}
        with progress(len(order)) as advance:
            tally = BatchTally(advance)
            if workers == 1 or len(order) == 1:
                for item in order:
                    ref = results[item.key] = self._submit_item(item, results)
                    tally.done(ref.cached, 0)
                return results
            # Hits first, on this thread: a re-run of a batch is answered without a thread
            # hop per call (a cluster executor's hits never leave the driver either). The
            # misses go to the pool already keyed: nothing is hashed twice.
            keyed: dict[Hashable, tuple[Any, ...]] = {}
            for item in order:
                if item.deps:
                    continue
                call = self._keyed_call(item.func, item.args, dict(item.kwargs))
                _refuse_async(call[0])
                hit = self._cached(call[3])
                if hit is None:
                    keyed[item.key] = call
                else:
                    results[item.key] = hit
                    tally.done(True, 0)
            pending = {item.key: item for item in order if item.key not in results}
            # Imported here: concurrent.futures costs ~9 ms, and most runs never batch.
            from concurrent.futures import FIRST_EXCEPTION, wait

            running: dict[Future[ResultRef[Any]], Hashable] = {}
            pool = self._batch_pool(workers)
            try:
                while pending or running:
                    ready = [k for k, it in pending.items() if all(d in results for d in it.deps)]
                    for k in ready:
                        item = pending.pop(k)
                        prepared = keyed.pop(k, None)
                        if prepared is None:
                            future = pool.submit(self._submit_item, item, dict(results))
                        else:
                            future = pool.submit(self._submit_keyed, *prepared)
                        running[future] = k
                    done, _ = wait(list(running), return_when=FIRST_EXCEPTION)
                    for fut in done:
                        k = running.pop(fut)
                        exc = fut.exception()
                        if exc is not None:
                            for other in running:
                                other.cancel()
                            raise exc
                        ref = results[k] = fut.result()
                        tally.done(ref.cached, len(running))
            finally:  # as the pool's shutdown did: what started ends before we return
                for fut in running:
                    fut.cancel()
                if running:
                    wait(list(running))
        return results

    def _batch_pool(self, workers: int) -> ThreadPoolExecutor:
        """The client's thread pool for batches, kept between them: a thread's store
        connection is opened once, not per batch (a re-run of 200 hits took 30 ms through
        fresh threads, 5 ms on warm ones). A new one after a fork or for another size."""
        from concurrent.futures import ThreadPoolExecutor

        pid = current_pid()
        held = self._pool
        if held is not None and held[0] == pid and held[1] == workers:
            return held[2]
        if held is not None and held[0] == pid:
            held[2].shutdown(wait=False)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cashet")
        self._pool = (pid, workers, pool)
        return pool

    def map(
        self, func: Callable[..., T], items: Iterable[Any], *args: Any, **kwargs: Any
    ) -> list[ResultRef[T]]:
        """Submit ``func(item, *args, **kwargs)`` for each item, each cached on its own."""
        batch = [(func, (item, *args), kwargs) for item in items]
        return self.submit_many(batch)

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
            held, self._pool = self._pool, None
            if held is not None and held[0] == current_pid():
                held[2].shutdown(wait=True)
            self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(store={self.store!r})"

    # --- for the shells: cache peeks and the store on disk -------------------------------

    @classmethod
    def open_existing(cls, store_dir: str | os.PathLike[str], *, repair: bool = False) -> Client:
        """Open the store in ``store_dir`` without ever creating one.

        Args:
            store_dir: the directory of an existing default (SQLite) store.
            repair: also open a store whose database is gone while its blob files remain
                (``cashet doctor``: it opens empty, and ``check(repair=True)`` reclaims
                them).

        Raises:
            StoreError: ``store_dir`` does not hold a store.
        """
        from cashet.stores.sqlite.layout import check_store_dir

        check_store_dir(Path(store_dir), lost_db=repair)
        return cls(store_dir=store_dir)

    def as_task(self, func: Callable[..., T], options: TaskOptions) -> TaskFunction[T]:
        """Return ``func`` as a task of this client with ``options``, without registering it.

        What ``@client.task(...)`` makes, minus the entry in :attr:`tasks`: for a shell
        that runs a function with the options it was registered with elsewhere.

        Args:
            func: the function to call (not a task: its own options would be ignored).
            options: its default options (``task.options`` of a registered task).
        """
        return TaskFunction(self, func, options)

    @property
    def nonblocking_reads(self) -> bool:
        """Whether point reads (``show``, a ``lookup`` that writes nothing, ``result_bytes``
        of a small result) take microseconds and never wait for a writer, so an event loop
        may make them inline (the embedded SQLite store in WAL mode)."""
        return bool(getattr(type(self.store), "nonblocking_reads", False))

    def lookup(
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
        _read_only: bool = False,
        **kwargs: Any,
    ) -> ResultRef[T] | None:
        """Return the cached result of ``func(*args, **kwargs)``, or ``None``: never run it.

        Takes what :meth:`submit` takes and finds what it would find as a cache hit,
        without claiming or running anything; a hit's access time is recorded as
        ``submit`` records it. A call that would run whatever the cache holds
        (``cache=False`` or ``force=True``) finds nothing.

        Args:
            func: the function or task, as for :meth:`submit`.
            *args: its positional arguments.
            _cache, _force, _tags, _retries, _timeout, _ttl: as for :meth:`submit`.
            _read_only: write nothing: the hit is not counted; on a store that does not
                count hits, a hit whose access ``submit`` would record now (its last one is
                over a second old) is left alone and ``None`` returned.
            **kwargs: its keyword arguments.

        Returns:
            A ``ResultRef`` (``.cached`` is true), or ``None`` when nothing is cached.

        Raises:
            TypeError: ``func`` is not callable, or an argument cannot be hashed exactly.
            ValueError: an option has a wrong type or value.
        """
        key = self._lookup_key(func, _cache, _force, _tags, _retries, _timeout, _ttl)
        if key is None:
            return None
        func, options = key
        task_def = make_task_def(
            self._identity(func, options), options, hash_call(func, args, kwargs)
        )
        return self._cached(task_def, _read_only)

    def _cached(self, task_def: TaskDef, _read_only: bool = False) -> ResultRef[Any] | None:
        """:meth:`lookup` of a call already keyed (``None`` when it would run anyway)."""
        if not task_def.cache or task_def.force:
            return None
        hit = full_store(self.store).lookup(task_def.fingerprint)
        if hit is None or hit.commit.result is None:
            return None
        commit = hit.loaded_commit()
        now = utcnow()
        if supports(self.store, HitCounter):  # counted in memory: nothing written now
            if not _read_only:
                cast(HitCounter, self.store).record_hit(
                    commit.hash, now.timestamp(), commit.compute_seconds or 0.0
                )
                if self._hit_needs_touch(commit, now):
                    commit.last_accessed = now
        elif self._hit_needs_touch(commit, now):
            if _read_only:
                return None
            try:
                full_store(self.store).touch(commit.hash, now)
            except StoreError as exc:  # an access time is not worth failing a hit for
                log.debug("could not record access to %s: %s", commit.hash[:12], exc)
            commit.last_accessed = now
        commit.from_cache = True
        return ResultRef(commit, self._load_object)

    def database_info(self) -> tuple[str, int] | None:
        """Return the name and size in bytes of the store's database file on this machine.

        The size includes the write-ahead log. ``None`` when the store keeps no database
        file here (a Redis store, for one).
        """
        from cashet.stores.sqlite.layout import database_info

        path = getattr(self.store, "path", None)
        return None if path is None else database_info(Path(path))
