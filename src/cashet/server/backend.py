"""How the server calls its client: the only difference between the sync and async apps.

The server never imports a client class. It is handed a ``Client`` or an ``AsyncClient``
and calls their public methods only; which of the two it holds it tells by whether
``client.submit`` is a coroutine function. :class:`SyncBackend` runs the ``Client``'s calls
in worker threads (one hop per request), :class:`AsyncBackend` awaits the
``AsyncClient``'s.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from anyio import CapacityLimiter

from cashet._process import BoundedCache
from cashet.errors import StoreError, TaskError
from cashet.models import Commit, ObjectRef
from cashet.server.input import Submission
from cashet.server.responses import TaskProblem, error_line
from cashet.server.results import ResultEncoder, ServedResult

if TYPE_CHECKING:
    from cashet.async_client import AsyncClient
    from cashet.client import Client
    from cashet.models import ResultRef

__all__ = [
    "BIG_RESULT",
    "SMALL",
    "SUBMIT_THREADS",
    "AsyncBackend",
    "Backend",
    "SyncBackend",
    "is_async_client",
]


#: At most this many tasks run at once in the sync app; reads use other threads, so a
#: server busy computing still answers ``/commit``, ``/log``, ...
SUBMIT_THREADS = 32
#: Results at least this big are decoded off the event loop by the async app.
BIG_RESULT = 2**20
#: Bodies and results up to this size may be handled on the event loop (sync app, when the
#: client's reads never block).
SMALL = 64 * 2**10


def is_async_client(client: Any) -> bool:
    """Whether ``client`` is an ``AsyncClient`` (its ``submit`` is a coroutine function)."""
    return inspect.iscoroutinefunction(getattr(client, "submit", None))


class _TaskWrappers:
    """The client's task for each registered function and its options, made once.

    ``Client.as_task`` wraps a function with the options it was registered with; a hot
    ``/submit`` reuses the wrapper instead of making one per request.
    """

    MAX_ENTRIES = 1024

    def __init__(self, client: Any) -> None:
        self.client = client
        self._made: BoundedCache[tuple[int, int], tuple[Any, Any, Any]] = BoundedCache(
            self.MAX_ENTRIES
        )
        self._lock = threading.Lock()

    def of(self, sub: Submission) -> Any:
        """The task to hand the client for ``sub``."""
        key = (id(sub.func), id(sub.base))
        made = self._made.get(key)
        if made is not None and made[0] is sub.func and made[1] is sub.base:
            return made[2]
        task = self.client.as_task(sub.func, sub.base)
        with self._lock:  # entries hold func and base: their ids are not reused meanwhile
            self._made.put(key, (sub.func, sub.base, task))
        return task


# --- the two backends ---------------------------------------------------------------------------


class SyncBackend:
    """Runs ``Client`` calls in worker threads: one thread hop per request.

    Except the hot reads when the client's reads never block (``Client.nonblocking_reads``:
    ``GET /commit``, a cached ``/submit`` with a small body and result), which run on the
    event loop: they take less time than the hop.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.results = ResultEncoder(client.serializer)
        self.wrappers = _TaskWrappers(client)
        self.inline_reads = client.nonblocking_reads
        self._limiter: CapacityLimiter | None = None

    def registered(self) -> Mapping[str, Any]:
        """The client's ``@client.task`` registry (read per request: tasks may come late)."""
        return self.client.tasks

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """``client.<method>(*args, **kwargs)``, in a worker thread."""
        bound = functools.partial(getattr(self.client, method), *args, **kwargs)
        return await anyio.to_thread.run_sync(bound)

    async def read(self, method: str, /, *args: Any) -> Any:
        """``call`` for one indexed point read: on the loop when the client allows it."""
        if self.inline_reads:
            return getattr(self.client, method)(*args)
        return await self.call(method, *args)

    def fast_hit(self, sub: Submission, small: bool) -> ServedResult | None:
        """A hit answered on the loop: small body and result, and nothing to write."""
        if not (self.inline_reads and small):
            return None
        ref = self._lookup(sub, read_only=True)
        if ref is None or ref.size > SMALL:
            return None
        return self._served(ref.commit, ref.object_ref)

    async def cached(self, sub: Submission) -> ServedResult | None:
        """The stored result of ``sub`` without running it, or ``None``."""

        def peek() -> ServedResult | None:
            ref = self._lookup(sub, read_only=False)
            return None if ref is None else self._served(ref.commit, ref.object_ref)

        return await anyio.to_thread.run_sync(peek)

    async def by_hash(self, hash: str) -> ServedResult:
        """``GET /result/{hash}``: a commit hash or prefix, or a full blob hash."""

        def read() -> ServedResult:
            ref, commit = self.client.resolve_result(hash)
            return self._served(commit, ref)

        return await anyio.to_thread.run_sync(read)

    async def submit(self, sub: Submission) -> tuple[ServedResult, bool]:
        """Run (or find) ``sub``; at most :data:`SUBMIT_THREADS` run at once."""
        if self._limiter is None:  # made on first use: it needs a running event loop
            self._limiter = CapacityLimiter(SUBMIT_THREADS)
        return await anyio.to_thread.run_sync(self._submit, sub, limiter=self._limiter)

    def _lookup(self, sub: Submission, *, read_only: bool) -> ResultRef[Any] | None:
        task = self.wrappers.of(sub)
        return self.client.lookup(
            task, *sub.args, **sub.submit_kwargs(), _read_only=read_only, **sub.kwargs
        )

    def _submit(self, sub: Submission) -> tuple[ServedResult, bool]:
        task = self.wrappers.of(sub)  # so that the task's own options (name, tags...) apply
        try:
            ref = self.client.submit(task, *sub.args, **sub.submit_kwargs(), **sub.kwargs)
        except (TaskError, StoreError):
            raise
        except Exception as exc:
            raise TaskProblem(error_line(exc)) from exc
        return self._served(ref.commit, ref.object_ref), ref.cached

    def _served(self, commit: Commit | None, ref: ObjectRef) -> ServedResult:
        encoded = self.results.cached(ref.hash)
        if encoded is None:
            encoded = self.results.encode(ref.hash, self.client.result_bytes(ref))
        return ServedResult(commit, ref.hash, encoded)


class AsyncBackend:
    """Awaits the ``AsyncClient``."""

    inline_reads = False  # the async store is awaited: no on-loop reads

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.results = ResultEncoder(client.serializer)
        self.wrappers = _TaskWrappers(client)

    def registered(self) -> Mapping[str, Any]:
        """The client's ``@client.task`` registry (read per request: tasks may come late)."""
        return self.client.tasks

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """``await client.<method>(*args, **kwargs)``."""
        return await getattr(self.client, method)(*args, **kwargs)

    async def read(self, method: str, /, *args: Any) -> Any:
        """As :meth:`call`."""
        return await self.call(method, *args)

    def fast_hit(self, sub: Submission, small: bool) -> ServedResult | None:
        """Never: every read is awaited."""
        return None

    async def cached(self, sub: Submission) -> ServedResult | None:
        """The stored result of ``sub`` without running it, or ``None``."""
        task = self.wrappers.of(sub)
        ref = await self.client.lookup(task, *sub.args, **sub.submit_kwargs(), **sub.kwargs)
        return None if ref is None else await self._served(ref.commit, ref.object_ref)

    async def by_hash(self, hash: str) -> ServedResult:
        """``GET /result/{hash}``: a commit hash or prefix, or a full blob hash."""
        ref, commit = await self.client.resolve_result(hash)
        return await self._served(commit, ref)

    async def submit(self, sub: Submission) -> tuple[ServedResult, bool]:
        """Run (or find) ``sub``."""
        task = self.wrappers.of(sub)
        try:
            ref = await self.client.submit(task, *sub.args, **sub.submit_kwargs(), **sub.kwargs)
        except (TaskError, StoreError):
            raise
        except Exception as exc:
            raise TaskProblem(error_line(exc)) from exc
        return await self._served(ref.commit, ref.object_ref), ref.cached

    async def _served(self, commit: Commit | None, ref: ObjectRef) -> ServedResult:
        encoded = self.results.cached(ref.hash)
        if encoded is None:
            data = await self.client.result_bytes(ref)
            if len(data) >= BIG_RESULT:
                encoded = await anyio.to_thread.run_sync(self.results.encode, ref.hash, data)
            else:
                encoded = self.results.encode(ref.hash, data)
        return ServedResult(commit, ref.hash, encoded)


Backend = SyncBackend | AsyncBackend
