"""``AsyncClient``: the same cache from asyncio — ``await client.submit(f, x)``.

Thin by design. ``submit`` shares option merging and ``TaskDef`` construction
(:mod:`cashet.core.options`), hashing (:mod:`cashet.hashing`) and the call flow
(:mod:`cashet.core.flow`, driven by :class:`~cashet.executors.async_local.AsyncLocalExecutor`)
with :class:`~cashet.client.Client`; ``submit_many`` shares its batch planning
(:mod:`cashet.core.batch`). Everything else — ``log``, ``show``, ``get``, ``diff``, ``history``,
``rm``, ``gc``, ``clear``, ``invalidate``, ``stats``, ``export``, ``import_archive`` — *is*
the sync ``Client``'s method, run off the event loop against a sync view of the store: in
the store's own worker thread for :class:`~cashet.stores.sqlite.async_store.AsyncSQLiteStore`, in a
thread that forwards each store call back to the loop for any other ``AsyncStore``. So
validation, errors and results are the same by construction (``tests/test_async_parity.py``).

Off the loop: task functions that are not ``async def``, and hashing and (de)serializing of
values estimated at 1 MiB or more. Small values stay on the loop, where they cost less than
a thread hop.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar, cast, overload

from cashet._log import configure_from_env, log
from cashet.client import Client, TaskFunction, _progress, default_store_dir
from cashet.core.batch import BatchItem, plan_batch, substitute_task_refs
from cashet.core.options import (
    DEFAULT_OPTIONS,
    TaskOptions,
    call_options,
    make_options,
    make_task_def,
)
from cashet.errors import CashetError
from cashet.executors.async_local import BIG_BYTES, is_big
from cashet.hashing import function_identity, hash_call
from cashet.models import AsyncResultRef, Commit, ObjectRef, TaskStatus
from cashet.protocols import AsyncExecutor, AsyncStore, Serializer, TagQuery
from cashet.provenance.archive import ExportResult, ImportResult

__all__ = ["AsyncClient", "AsyncTaskFunction"]

T = TypeVar("T")
R = TypeVar("R")


class AsyncTaskFunction(Generic[T]):
    """A function registered with ``@async_client.task``: ``await f(x)`` submits it."""

    def __init__(self, client: AsyncClient, func: Callable[..., Any], options: TaskOptions):
        self.client = client
        self.func = func
        self.options = options
        self.name = str(options.name or getattr(func, "__qualname__", repr(func)))
        functools.update_wrapper(self, func)

    async def __call__(self, *args: Any, **kwargs: Any) -> AsyncResultRef[T]:
        return await self.client.submit(cast(Any, self), *args, **kwargs)

    async def submit(self, *args: Any, **kwargs: Any) -> AsyncResultRef[T]:
        """Same as calling the task."""
        return await self.client.submit(cast(Any, self), *args, **kwargs)

    def __repr__(self) -> str:
        return f"<cashet async task {self.name}>"


class AsyncClient:
    """Persistent memoization of function calls, for asyncio.

    Mirrors :class:`~cashet.client.Client`: the same methods with the same parameters, each
    ``async def`` (``task`` excepted: it only registers). ``submit`` returns an
    :class:`~cashet.models.AsyncResultRef` (``await ref.load()``); pass it to another
    ``submit`` to chain steps. ``async def`` task functions are awaited on the loop; plain
    ones run in a worker thread.

    Args:
        store_dir: directory of the default ``AsyncSQLiteStore`` (default ``$CASHET_DIR`` or
            ``.cashet``). Ignored when ``store`` is given.
        store: any ``AsyncStore`` (``AsyncSQLiteStore``, ``AsyncRedisStore``, your own).
        executor: any ``AsyncExecutor``; default ``AsyncLocalExecutor()``.
        serializer: any ``Serializer``; default ``PickleSerializer()``.
        max_workers: how many tasks of ``submit_many``/``map`` run at once (1 = sequential).
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str] | None = None,
        store: AsyncStore | None = None,
        executor: AsyncExecutor | None = None,
        serializer: Serializer | None = None,
        max_workers: int = 1,
    ) -> None:
        configure_from_env()
        _check_workers(max_workers)
        if store is None:
            from cashet.stores.sqlite.async_store import AsyncSQLiteStore

            store = AsyncSQLiteStore(
                Path(store_dir) if store_dir is not None else default_store_dir()
            )
        if executor is None:
            from cashet.executors.async_local import AsyncLocalExecutor

            executor = AsyncLocalExecutor()
        if serializer is None:
            from cashet.serializers import PickleSerializer

            serializer = PickleSerializer()
        self.store: AsyncStore = store
        self.executor: AsyncExecutor = executor
        self.serializer: Serializer = serializer
        self.max_workers = max_workers
        self._tasks: dict[str, AsyncTaskFunction[Any]] = {}
        self._shadow: Client | None = None
        self._closed = False

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
        if self._closed:
            raise CashetError("this AsyncClient is closed")
        options = DEFAULT_OPTIONS
        if isinstance(func, AsyncTaskFunction | TaskFunction):
            options = func.options
            func = func.func
        options = call_options(options, _cache, _force, _tags, _retries, _timeout, _ttl)
        if not callable(func):
            raise TypeError(f"submit() needs a callable, not {type(func).__name__}")
        identity = function_identity(func)
        if is_big(args) or is_big(kwargs):
            args_hash = await asyncio.to_thread(hash_call, func, args, kwargs)
        else:
            args_hash = hash_call(func, args, kwargs)
        task_def = make_task_def(identity, options, args_hash)
        commit = await self.executor.submit(
            func, args, kwargs, task_def, self.store, self.serializer
        )
        return AsyncResultRef(commit, self._load_object)

    async def _load_object(self, ref: ObjectRef) -> Any:
        data = await self.store.get_blob(ref)
        if len(data) >= BIG_BYTES:
            return await asyncio.to_thread(self.serializer.loads, data)
        return self.serializer.loads(data)

    @overload
    def task(self, func: Callable[..., T], /) -> AsyncTaskFunction[T]: ...

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
    ) -> AsyncTaskFunction[T] | Callable[[Callable[..., T]], AsyncTaskFunction[T]]:
        """Register a task with default options; ``await task(x)`` returns an ``AsyncResultRef``.

        Use bare (``@client.task``) or with options (``@client.task(retries=3)``). Not a
        coroutine: registering does no IO.
        """
        options = make_options(
            cache=cache, force=force, tags=tags, retries=retries, timeout=timeout, ttl=ttl,
            name=name,
        )  # fmt: skip

        def register(f: Callable[..., T]) -> AsyncTaskFunction[T]:
            if not callable(f):
                raise TypeError(f"@task needs a callable, not {type(f).__name__}")
            if isinstance(f, AsyncTaskFunction | TaskFunction):
                f = f.func
            tf: AsyncTaskFunction[T] = AsyncTaskFunction(self, f, options)
            self._tasks[tf.name] = tf
            return tf

        if func is not None:
            return register(func)
        return register

    @property
    def tasks(self) -> dict[str, AsyncTaskFunction[Any]]:
        """Tasks registered with ``@client.task``, by name."""
        return dict(self._tasks)

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
        workers = self.max_workers if max_workers is None else max_workers
        _check_workers(workers)
        with _progress(len(order)) as advance:
            if workers == 1 or len(order) == 1:
                results: dict[Hashable, AsyncResultRef[Any]] = {}
                for item in order:
                    results[item.key] = await self._submit_item(item, results)
                    advance()
            else:
                results = await self._run_concurrently(order, workers, advance)
        if isinstance(tasks, Mapping):
            return {k: results[k] for k in tasks}
        return [results[i] for i in range(len(order))]

    async def _submit_item(
        self, item: BatchItem, results: Mapping[Hashable, Any]
    ) -> AsyncResultRef[Any]:
        args = substitute_task_refs(item.args, results)
        kwargs = substitute_task_refs(item.kwargs, results)
        return await self.submit(item.func, *args, **kwargs)

    async def _run_concurrently(
        self, order: list[BatchItem], workers: int, advance: Callable[[], None]
    ) -> dict[Hashable, AsyncResultRef[Any]]:
        limit = asyncio.Semaphore(workers)
        running: dict[Hashable, asyncio.Task[AsyncResultRef[Any]]] = {}

        async def run(item: BatchItem) -> AsyncResultRef[Any]:
            deps = {d: await running[d] for d in item.deps}
            async with limit:
                ref = await self._submit_item(item, deps)
            advance()
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

    # --- provenance: the sync Client's methods, run off the loop ---------------------------

    async def log(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | str | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """List commits, newest first (as :meth:`Client.log <cashet.client.Client.log>`)."""
        return await self._sync(lambda c: c.log(func_name, limit, status, tags))

    async def show(self, hash: str) -> Commit:
        """Return the commit with this hash or unique prefix (as ``Client.show``)."""
        return await self._sync(lambda c: c.show(hash))

    async def get(self, hash: str) -> Any:
        """Load the result recorded by a commit (as ``Client.get``)."""
        return await self._sync(lambda c: c.get(hash))

    async def diff(self, hash_a: str, hash_b: str) -> dict[str, Any]:
        """Compare two commits (as ``Client.diff``)."""
        return await self._sync(lambda c: c.diff(hash_a, hash_b))

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

    async def clear(self) -> int:
        """Remove every entry and orphaned blob; return the count (as ``Client.clear``)."""
        return await self._sync(lambda c: c.clear())

    async def invalidate(self, tags: TagQuery) -> int:
        """Delete the commits carrying all these tags (as ``Client.invalidate``)."""
        return await self._sync(lambda c: c.invalidate(tags))

    async def stats(self) -> dict[str, int]:
        """Return commit and storage counters (as ``Client.stats``)."""
        return await self._sync(lambda c: c.stats())

    async def export(self, path: str | os.PathLike[str]) -> ExportResult:
        """Write every commit and its result blob to a ``.tar.gz`` (as ``Client.export``)."""
        return await self._sync(lambda c: c.export(path))

    async def import_archive(self, path: str | os.PathLike[str]) -> ImportResult:
        """Add the commits and blobs of an archive (as ``Client.import_archive``)."""
        return await self._sync(lambda c: c.import_archive(path))

    async def _sync(self, method: Callable[[Client], R]) -> R:
        """Run ``method(sync_client)`` off the loop, over a sync view of this store."""
        store: Any = self.store
        if hasattr(store, "run_sync") and hasattr(store, "sync_store"):
            # AsyncSQLiteStore: in its worker thread, on its own sync store.
            shadow = self._shadow_over(store.sync_store)
            return await store.run_sync(method, shadow)  # type: ignore[no-any-return]
        view = _SyncView(store, asyncio.get_running_loop())
        return await asyncio.to_thread(method, self._shadow_over(view))

    def _shadow_over(self, sync_store: Any) -> Client:
        """A sync ``Client`` over ``sync_store`` (never closed: the store is ours to close)."""
        shadow = self._shadow
        if shadow is None or shadow.store is not sync_store:
            from cashet.executors.local import LocalExecutor

            shadow = Client(store=sync_store, executor=LocalExecutor(), serializer=self.serializer)
            if not isinstance(sync_store, _SyncView):
                self._shadow = shadow
        return shadow

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

        from cashet.server.app import _is_loopback, create_async_app

        app = create_async_app(
            self,
            require_token=require_token,
            tasks=tasks,
            allow_remote_code=allow_remote_code,
            read_only=read_only,
        )
        if require_token is None and not _is_loopback(host):
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


def _check_workers(workers: Any) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"max_workers must be a positive integer, not {workers!r}")


class _SyncView:
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

    def iter_commits(self) -> Iterator[Any]:
        native = getattr(self._store, "iter_commits", None)
        if native is None:
            yield from reversed(self._wait(self._store.list_commits(limit=None)))
            return
        it: AsyncIterator[Any] = native().__aiter__()
        while True:
            try:
                yield self._wait(it.__anext__())
            except StopAsyncIteration:
                return

    def close(self) -> None:
        """Do nothing: the async store belongs to the ``AsyncClient``."""
