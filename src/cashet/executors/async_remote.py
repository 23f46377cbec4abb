"""The asyncio driver of the cluster executors: ``AsyncClient(executor=DaskExecutor(...))``.

The same split as :class:`~cashet.executors.remote.ShippingExecutor`, with awaits: the
first half of the call (:func:`~cashet.core.flow.acquire_flow`) answered by the async
handler on the loop; a miss shipped by the sync executor's engine and its answer awaited
in a thread. ``AsyncClient`` wraps a cluster executor in :class:`AsyncShipping` itself
(through the executor's ``as_async()``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from typing import Any

from cashet.core.effects import Effect, Execute, Outcome
from cashet.core.flow import Acquired, acquire_flow, call_flow
from cashet.errors import CashetError, ExecutorError
from cashet.executors._drive import drive, log_commit, run_flow
from cashet.executors.async_local import (
    AsyncLocalExecutor,
    _AsyncHandler,
    _keep_lease,
    _resolve_refs,
)
from cashet.executors.processes import ProcessExecutor
from cashet.executors.remote import ShippingExecutor
from cashet.hashing.commits import seal_commit
from cashet.models import Commit, Lease, TaskDef
from cashet.protocols import AsyncStore, Serializer

__all__ = ["AsyncProcesses", "AsyncShipping", "as_async"]

log = logging.getLogger("cashet")


async def _drive_acquire(
    flow: Generator[Effect, Any, Acquired], answer: Callable[[Effect], Any]
) -> Acquired:
    return await drive(flow, answer, True)


class AsyncShipping(AsyncLocalExecutor):
    """An ``AsyncExecutor`` over a cluster executor (hits on the loop, misses shipped).

    Args:
        shipping: the cluster executor whose engine runs the misses.
    """

    def __init__(self, shipping: ShippingExecutor) -> None:
        super().__init__(shipping.running_ttl)
        self.shipping = shipping

    async def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        store: AsyncStore,
        serializer: Serializer,
    ) -> Commit:
        """Answer a hit here; ship a miss and await the commit its worker recorded.

        Raises:
            TaskError: the function failed on every attempt.
            ExecutorError: as for the sync executor (the lease is released).
        """
        ship = self.shipping
        config = ship._store_config(store)
        handler = _AsyncHandler(func, args, kwargs, store, serializer, self)
        while True:
            got = await _drive_acquire(acquire_flow(task_def, self.running_ttl), handler.answer)
            if isinstance(got, Commit):
                return got
            done = await self._ship(func, args, kwargs, task_def, got, config, serializer, handler)
            if done is not None:
                if log.isEnabledFor(logging.INFO):
                    log_commit(done, "ran")
                return done

    async def _ship(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        lease: Lease | None,
        config: Any,
        serializer: Serializer,
        handler: _AsyncHandler,
    ) -> Commit | None:
        ship = self.shipping
        handle: Any = None
        try:
            shipment = ship.shipment(func, args, kwargs, task_def, lease, config, serializer)
            handle = ship._start(shipment, None)
            keeper = None
            if lease is not None:  # renewed while the call waits in the engine's queue
                keeper = asyncio.create_task(
                    _keep_lease(
                        handler.store,
                        task_def.fingerprint,
                        lease.owner,
                        self.running_ttl,
                        self.renew_every,
                    )
                )
            try:
                done: Commit | None = await asyncio.to_thread(ship._wait, handle)
            finally:
                if keeper is not None:
                    keeper.cancel()
            return done
        except BaseException as exc:
            if handle is not None:
                try:
                    ship._cancel(handle)
                except Exception as cancel_error:
                    log.debug("could not cancel %s: %s", task_def.func_name, cancel_error)
            if lease is not None:
                await handler.release(task_def.fingerprint, lease.owner)
            if isinstance(exc, CashetError) or not isinstance(exc, Exception):
                raise
            raise ExecutorError(
                f"task {task_def.func_name} could not be run by {type(ship).__name__}:"
                f" {type(exc).__name__}: {exc}"
            ) from exc


class AsyncProcesses(AsyncLocalExecutor):
    """An ``AsyncExecutor`` over a :class:`~cashet.executors.processes.ProcessExecutor`:
    the flow on the loop, each attempt in one of its worker processes (hard timeouts)."""

    def __init__(self, processes: ProcessExecutor) -> None:
        super().__init__(processes.running_ttl)
        self.processes = processes

    async def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        store: AsyncStore,
        serializer: Serializer,
    ) -> Commit:
        """As :meth:`ProcessExecutor.submit`, awaited."""
        handler = _AsyncProcessHandler(func, args, kwargs, store, serializer, self)
        flow = call_flow(task_def, self.running_ttl, seal_commit, handler.describe)
        return await run_flow(flow, handler.answer, True)


class _AsyncProcessHandler(_AsyncHandler):
    __slots__ = ()

    async def execute(self, e: Execute) -> Outcome:
        ex = self.executor
        assert isinstance(ex, AsyncProcesses)
        call_args, call_kwargs = await _resolve_refs(self.args, self.kwargs)
        keeper = None
        if e.lease is not None:
            keeper = asyncio.create_task(
                _keep_lease(
                    self.store, e.fingerprint, e.lease.owner, ex.running_ttl, ex.renew_every
                )
            )
        what = f"task {getattr(self.func, '__qualname__', self.func)!s}"
        try:
            pool = ex.processes._pool
            return await asyncio.to_thread(
                pool.run, self.func, call_args, call_kwargs, e.timeout, what
            )
        finally:
            if keeper is not None:
                keeper.cancel()


def as_async(executor: Any) -> Any:
    """``executor`` for ``AsyncClient``: a cluster executor wrapped in
    :class:`AsyncShipping`, a ``ProcessExecutor`` in :class:`AsyncProcesses`, anything
    else as it is."""
    if isinstance(executor, ShippingExecutor):
        return AsyncShipping(executor)
    if isinstance(executor, ProcessExecutor):
        return AsyncProcesses(executor)
    return executor
