"""``AsyncClient``: the same cache from asyncio — ``await client.submit(f, x)``.

Thin by design: only the asyncio IO lives here. The decorator, option handling and function
identity (:mod:`cashet._client_base`), hashing (:mod:`cashet.hashing`), batch planning
(:mod:`cashet.core.batch`) and the call flow (:mod:`cashet.core.flow`, driven by
:class:`~cashet.executors.async_local.AsyncLocalExecutor`) are shared with
:class:`~cashet.client.Client`. Everything else — ``log``, ``show``, ``get``, ``diff``,
``history``, ``rm``, ``gc``, ``clear``, ``invalidate``, ``stats``, ``export``,
``import_archive`` — *is* the sync client's method (:class:`~cashet._client_base.StoreQueries`),
run off the event loop against a sync view of the store: in the store's own worker thread
for :class:`~cashet.stores.sqlite.async_store.AsyncSQLiteStore`, in a thread that forwards
each store call back to the loop for any other ``AsyncStore``. So validation, errors and
results are the same by construction (``tests/test_async_parity.py``).

Off the loop: task functions that are not ``async def``, and hashing and (de)serializing of
values estimated at 1 MiB or more. Small values stay on the loop, where they cost less than
a thread hop.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import (
    Callable,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from cashet._async_queries import AsyncQueries
from cashet._client_base import (
    ClientBase,
    StoreQueries,
    TaskFunctionBase,
    check_workers,
    default_store_dir,
    executor_commit,
)
from cashet._log import log
from cashet._progress import BatchTally, progress
from cashet._queries import STREAM_MIN, load_result
from cashet.core.batch import BatchItem, plan_batch
from cashet.core.options import TaskOptions, make_task_def
from cashet.errors import StoreError
from cashet.executors.async_local import BIG_BYTES, is_big
from cashet.hashing import FunctionIdentity, hash_call
from cashet.hashing.functions import identity_is_heavy
from cashet.hashing.kept import KeptDigests, lent
from cashet.models import AsyncResultRef, Commit, ObjectRef, TaskDef, utcnow
from cashet.protocols import (
    AsyncCheckup,
    AsyncExecutor,
    AsyncHitCounter,
    AsyncStore,
    CheckReport,
    Serializer,
    SyncBacked,
    supports,
)
from cashet.provenance.explain import Explanation, explain_key
from cashet.stores.base import full_async_store
from cashet.stores.modes import mode_store
from cashet.stores.signing import SigningKey, signed_store
from cashet.stores.signing import signing_key as signing_key_of
from cashet.stores.sync_view import SyncView
from cashet.stores.urls import client_store

if TYPE_CHECKING:
    pass

__all__ = ["AsyncClient", "AsyncTaskFunction"]

T = TypeVar("T")
R = TypeVar("R")


class AsyncTaskFunction(TaskFunctionBase[T]):
    """A function registered with ``@async_client.task``: ``await f(x)`` submits it."""

    client: AsyncClient
    _kind = "async task"

    async def __call__(self, *args: Any, **kwargs: Any) -> AsyncResultRef[T]:
        return await self.client.submit(cast(Any, self), *args, **kwargs)

    async def submit(self, *args: Any, **kwargs: Any) -> AsyncResultRef[T]:
        """Same as calling the task."""
        return await self.client.submit(cast(Any, self), *args, **kwargs)


def _call_key(
    identity_of: Callable[[], FunctionIdentity],
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    kept: KeptDigests,
) -> tuple[FunctionIdentity, str]:
    return identity_of(), hash_call(func, args, kwargs, None, kept)


async def _task_def(
    client: AsyncClient,
    func: Callable[..., Any],
    options: TaskOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[TaskDef, KeptDigests | None]:
    """The ``TaskDef`` of one call: keyed in a thread when that may take long (a big
    argument, or a big global re-hashed on every call), on the event loop otherwise; and
    the digests of the big buffers its key kept for its manifest (``hashing.kept``)."""
    kept: KeptDigests | None = None
    if identity_is_heavy(func) or is_big(args) or is_big(kwargs):
        identity_of = functools.partial(client._identity, func, options)
        kept = {}
        identity, args_hash = await asyncio.to_thread(
            _call_key, identity_of, func, args, kwargs, kept
        )
    else:
        identity, args_hash = client._identity(func, options), hash_call(func, args, kwargs)
    return make_task_def(identity, options, args_hash), kept


class AsyncClient(AsyncQueries, ClientBase[AsyncTaskFunction[Any]]):
    """Persistent memoization of function calls, for asyncio.

    Mirrors :class:`~cashet.client.Client`: the same methods with the same parameters, each
    ``async def`` (``task`` excepted: it only registers). ``submit`` returns an
    :class:`~cashet.models.AsyncResultRef` (``await ref.load()``); pass it to another
    ``submit`` to chain steps. ``async def`` task functions are awaited on the loop; plain
    ones run in a worker thread.

    Args:
        store_dir: directory of the default ``AsyncSQLiteStore`` (default ``$CASHET_DIR`` or
            ``.cashet``). Ignored when ``store`` is given.
        store: any ``AsyncStore`` (``AsyncSQLiteStore``, ``AsyncRedisStore``, your own), or a
            store URL (as ``Client``'s).
        executor: any ``AsyncExecutor``; default ``AsyncLocalExecutor()``. A cluster
            executor (``DaskExecutor``, ``FuturesExecutor``, ``ProcessExecutor``) works too.
        serializer: any ``Serializer``; default ``PickleSerializer()``.
        max_workers: how many tasks of ``submit_many``/``map`` run at once (1 = sequential).
        readonly: open the default store read-only (as ``Client``'s ``readonly``).
        versions: library versions in the key (as ``Client``'s ``versions``).
        mode: ``"normal"``, ``"off"``, ``"readonly"`` or ``"refresh"`` (as ``Client``'s
            ``mode``; default ``$CASHET_MODE``).
        signing_key: the team key commits are signed and checked with (as ``Client``'s;
            default ``$CASHET_SIGNING_KEY``).
        local_cache: a directory caching the blobs of the store's object store (as
            ``Client``'s ``local_cache``).
    """

    _task_class = AsyncTaskFunction

    def __init__(
        self,
        store_dir: str | os.PathLike[str] | None = None,
        store: AsyncStore | str | None = None,
        executor: AsyncExecutor | None = None,
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
            asynchronous=True,
            mode=self.mode,
            local_cache=local_cache,
        )
        opened = signed_store(opened, key, asynchronous=True)
        opened = mode_store(opened, self.mode, asynchronous=True)
        if executor is None:
            from cashet.executors.async_local import AsyncLocalExecutor

            executor = AsyncLocalExecutor()
        else:  # a cluster executor (DaskExecutor, ...): its misses awaited from the loop
            from cashet.executors.async_remote import as_async

            executor = as_async(executor)
        self.store: AsyncStore = opened
        self.executor: AsyncExecutor = executor
        self._shadow: StoreQueries | None = None

    # --- submitting -----------------------------------------------------------------------

    async def submit(
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
    ) -> AsyncResultRef[T]:
        """Run ``func(*args, **kwargs)`` once; return a handle to the (cached) result.

        As :meth:`Client.submit <cashet.client.Client.submit>`. ``func`` may be an
        ``async def`` (awaited; ``_timeout`` cancels it) or a plain function (run in a
        thread; ``_timeout`` stops waiting for it). Cancelling the awaiting coroutine
        releases the call's lease, so another caller can run it at once.

        Raises:
            TaskError: the function failed on every attempt (original traceback included).
            TypeError: an argument cannot be hashed exactly (its position is named).
            ValueError: an option has a wrong type or value.
        """
        func, options = self._resolve(func, _cache, _force, _tags, _retries, _timeout, _ttl)
        task_def, kept = await _task_def(self, func, options, args, kwargs)
        if not kept:
            done = await self.executor.submit(
                func, args, kwargs, task_def, self.store, self.serializer
            )
        else:
            with lent(kept, task_def.args_hash):  # for its description, on a miss
                done = await self.executor.submit(
                    func, args, kwargs, task_def, self.store, self.serializer
                )
        return AsyncResultRef(executor_commit(done), self._load_object)

    async def _load_object(self, ref: ObjectRef, data: bytes | None = None) -> Any:
        if data is None and ref.size >= STREAM_MIN and supports(self.store, SyncBacked):
            # A large result straight from its file, in the store's own thread.
            backed = cast(SyncBacked, self.store)
            return await backed.run_sync(load_result, backed.sync_store, self.serializer, ref)
        if data is None:
            data = await self.store.get_blob(ref)
        if len(data) >= BIG_BYTES:
            return await asyncio.to_thread(self.serializer.loads, data)
        return self.serializer.loads(data)

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
        ) -> AsyncTaskFunction[T]: ...

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
        ) -> Callable[[Callable[..., T]], AsyncTaskFunction[T]]: ...

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
        ) -> AsyncTaskFunction[T] | Callable[[Callable[..., T]], AsyncTaskFunction[T]]: ...

    @overload
    async def submit_many(
        self, tasks: Sequence[Any], max_workers: int | None = None
    ) -> list[AsyncResultRef[Any]]: ...

    @overload
    async def submit_many(
        self, tasks: Mapping[Hashable, Any], max_workers: int | None = None
    ) -> dict[Hashable, AsyncResultRef[Any]]: ...

    async def submit_many(
        self, tasks: Sequence[Any] | Mapping[Hashable, Any], max_workers: int | None = None
    ) -> list[AsyncResultRef[Any]] | dict[Hashable, AsyncResultRef[Any]]:
        """Submit a batch in dependency order; ``TaskRef(i)`` wires task ``i``'s output in.

        As :meth:`Client.submit_many <cashet.client.Client.submit_many>`; with
        ``max_workers > 1`` up to that many ready tasks run concurrently. When a task fails,
        the tasks still running are cancelled (their leases released) and the error raised.
        """
        order = plan_batch(tasks)
        workers = check_workers(self.max_workers if max_workers is None else max_workers)
        graph = getattr(self.executor, "shipping", None)
        if hasattr(type(graph), "submit_graph") and any(item.deps for item in order):
            return self._batch_output(tasks, await self._run_graph(graph, order))
        with progress(len(order)) as advance:
            tally = BatchTally(advance)
            if workers == 1 or len(order) == 1:
                results: dict[Hashable, AsyncResultRef[Any]] = {}
                for item in order:
                    ref = results[item.key] = await self._submit_item(item, results)
                    tally.done(ref.cached, 0)
            else:
                results = await self._run_concurrently(order, workers, tally)
        return self._batch_output(tasks, results)

    async def _run_graph(
        self, graph: Any, order: list[BatchItem]
    ) -> dict[Hashable, AsyncResultRef[Any]]:
        """A batch with ``TaskRef`` wiring run as one graph on the cluster executor's engine
        (``DaskExecutor.submit_graph``), driven from a thread over a sync view of the store."""
        graph._store_config(self.store)  # a store workers cannot reopen fails here, at once

        def make_ref(commit: Commit) -> AsyncResultRef[Any]:
            return AsyncResultRef(commit, self._load_object)

        view = SyncView(self.store, asyncio.get_running_loop())
        with progress(len(order)) as advance:
            tally = BatchTally(advance)
            run = graph.submit_graph
            done = await asyncio.to_thread(
                run, order, self._keyed_call, view, self.serializer, make_ref, tally.done
            )
        return cast("dict[Hashable, AsyncResultRef[Any]]", done)

    async def _submit_item(
        self, item: BatchItem, results: Mapping[Hashable, Any]
    ) -> AsyncResultRef[Any]:
        func, args, kwargs = self._batch_call(item, results)
        return await self.submit(func, *args, **kwargs)

    async def _run_concurrently(
        self, order: list[BatchItem], workers: int, tally: BatchTally
    ) -> dict[Hashable, AsyncResultRef[Any]]:
        limit = asyncio.Semaphore(workers)
        inflight = [0]  # calls running now, for the bar
        running: dict[Hashable, asyncio.Task[AsyncResultRef[Any]]] = {}

        async def run(item: BatchItem) -> AsyncResultRef[Any]:
            deps = {d: await running[d] for d in item.deps}
            async with limit:
                inflight[0] += 1
                try:
                    ref = await self._submit_item(item, deps)
                finally:
                    inflight[0] -= 1
            tally.done(ref.cached, inflight[0])
            return ref

        for item in order:  # topological: every dependency's task exists already
            running[item.key] = asyncio.ensure_future(run(item))
        try:
            await asyncio.gather(*running.values())
        except BaseException:
            for t in running.values():
                t.cancel()
            # Wait for the cancelled ones, so their leases are released before we raise.
            await asyncio.gather(*running.values(), return_exceptions=True)
            raise
        return {k: t.result() for k, t in running.items()}

    async def map(
        self, func: Callable[..., T], items: Iterable[Any], *args: Any, **kwargs: Any
    ) -> list[AsyncResultRef[T]]:
        """Submit ``func(item, *args, **kwargs)`` for each item, each cached on its own."""
        batch = [(func, (item, *args), kwargs) for item in items]
        return await self.submit_many(batch)

    # --- provenance: the sync Client's methods, run off the loop (AsyncQueries) --------

    async def explain(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Explanation:
        """Whether the call would be a hit, and why not (as ``Client.explain``)."""
        task_def, manifest, source = await asyncio.to_thread(
            self._explained_call, func, args, dict(kwargs)
        )
        return await self._sync(lambda c: explain_key(c.store, task_def, manifest, source))

    async def check(self, repair: bool = False) -> CheckReport:
        """Check the store for damage; with ``repair``, fix what can be (as ``Client.check``)."""
        if not isinstance(repair, bool):
            raise TypeError(f"repair must be a bool, not {type(repair).__name__}")
        store = self.store
        if supports(store, AsyncCheckup):
            report: CheckReport = await cast(AsyncCheckup, store).check(repair)
            return report
        return await self._sync(lambda c: c.check(repair))

    # --- serving and lifecycle ------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        require_token: str | None = None,
        tasks: Mapping[str, Callable[..., Any]] | None = None,
        allow_remote_code: bool = False,
        read_only: bool = False,
    ) -> None:
        """Serve this cache over HTTP on the running loop until cancelled (``server`` extra).

        As :meth:`Client.serve <cashet.client.Client.serve>`, with
        :func:`cashet.server.app.create_async_app`: ``async def`` tasks are awaited on this loop.

        Raises:
            ValueError: ``allow_remote_code`` without ``require_token``, or a bad token.
        """
        import uvicorn

        from cashet.server.app import create_async_app, is_loopback

        app = create_async_app(
            self,
            require_token=require_token,
            tasks=tasks,
            allow_remote_code=allow_remote_code,
            read_only=read_only,
        )
        if require_token is None and not is_loopback(host):
            log.warning(
                "serving on %s without a token: anyone who can reach port %s can run the "
                "registered tasks and gc (use require_token)",
                host,
                port,
            )
        await uvicorn.Server(uvicorn.Config(app, host=host, port=port)).serve()

    async def close(self) -> None:
        """Close the store. Idempotent."""
        if not self._closed:
            self._closed = True
            await self.store.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient(store={self.store!r})"

    # --- for the shells: cache peeks, raw results, the store on disk -----------------------

    @classmethod
    def open_existing(cls, store_dir: str | os.PathLike[str]) -> AsyncClient:
        """Open the store in ``store_dir`` without ever creating one (as ``Client``'s).

        Raises:
            StoreError: ``store_dir`` does not hold a store.
        """
        from cashet.stores.sqlite.layout import check_store_dir

        check_store_dir(Path(store_dir))
        return cls(store_dir=store_dir)

    def as_task(self, func: Callable[..., T], options: TaskOptions) -> AsyncTaskFunction[T]:
        """Return ``func`` as a task of this client with ``options``, without registering it.

        What ``@client.task(...)`` makes, minus the entry in :attr:`tasks`: for a shell
        that runs a function with the options it was registered with elsewhere.

        Args:
            func: the function to call (not a task: its own options would be ignored).
            options: its default options (``task.options`` of a registered task).
        """
        return AsyncTaskFunction(self, func, options)

    @property
    def nonblocking_reads(self) -> bool:
        """As :attr:`Client.nonblocking_reads <cashet.client.Client.nonblocking_reads>`."""
        return bool(getattr(type(self.store), "nonblocking_reads", False))

    async def lookup(
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
    ) -> AsyncResultRef[T] | None:
        """Return the cached result of ``func(*args, **kwargs)``, or ``None``: never run it.

        As :meth:`Client.lookup <cashet.client.Client.lookup>`.

        Raises:
            TypeError: ``func`` is not callable, or an argument cannot be hashed exactly.
            ValueError: an option has a wrong type or value.
        """
        key = self._lookup_key(func, _cache, _force, _tags, _retries, _timeout, _ttl)
        if key is None:
            return None
        task_def, _ = await _task_def(self, *key, args, kwargs)
        hit = await full_async_store(self.store).lookup(task_def.fingerprint)
        if hit is None or hit.commit.result is None:
            return None
        commit = hit.loaded_commit()
        now = utcnow()
        if supports(self.store, AsyncHitCounter):  # counted in memory: nothing written now
            if not _read_only:
                cast(AsyncHitCounter, self.store).record_hit(
                    commit.hash, now.timestamp(), commit.compute_seconds or 0.0
                )
                if self._hit_needs_touch(commit, now):
                    commit.last_accessed = now
        elif self._hit_needs_touch(commit, now):
            if _read_only:
                return None
            try:
                await self.store.touch(commit.hash, now)
            except StoreError as exc:  # an access time is not worth failing a hit for
                log.debug("could not record access to %s: %s", commit.hash[:12], exc)
            commit.last_accessed = now
        commit.from_cache = True
        return AsyncResultRef(commit, self._load_object)

    async def resolve_result(self, hash: str) -> tuple[ObjectRef, Commit | None]:
        """Return the result blob ``hash`` names and its commit (as ``Client``'s)."""
        return await self._sync(lambda c: c.resolve_result(hash))

    async def result_bytes(self, result: str | ObjectRef) -> bytes:
        """Return a stored result's serialized bytes, verified (as ``Client``'s)."""
        if isinstance(result, ObjectRef):
            return await self.store.get_blob(result)
        return await self._sync(lambda c: c.result_bytes(result))

    async def database_info(self) -> tuple[str, int] | None:
        """Return the database file's name and size (as ``Client``'s), or ``None``."""
        from cashet.stores.sqlite.layout import database_info

        path = getattr(self.store, "path", None)
        if path is None:
            return None
        return await asyncio.to_thread(database_info, Path(path))
