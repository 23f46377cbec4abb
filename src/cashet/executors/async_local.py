"""``AsyncLocalExecutor``: the asyncio driver of the call flow (:mod:`cashet.core.flow`).

The flow — lookup, lease, execute, store, release — is the same generator the sync
:class:`~cashet.executors.local.LocalExecutor` drives, through the same loop
(:func:`cashet.executors._drive.run_flow`); here each effect is answered with an ``await``.
Task functions: an ``async def`` is awaited on the loop (under ``asyncio.timeout`` when it
has a timeout, so a timed-out attempt is really cancelled); a plain function runs in a
worker thread (``asyncio.to_thread``; its timeout is soft, as in ``LocalExecutor``). While
a task runs, an asyncio task renews its lease.

Cancelling the coroutine awaiting ``submit`` throws ``asyncio.CancelledError`` into the
flow: its ``finally`` releases the lease, then the error goes on. A claim or a release in
flight is carried to its end however often the caller is cancelled meanwhile (a claim that
landed is given back), so the cancelled call returns only once its lease is gone; a
release that fails is retried (:mod:`cashet.executors._orphans`). See
``tests/test_async_client.py::test_cancel_releases_lease`` and
``tests/test_faults_processes.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, assert_never, cast

from cashet.core import leases as _lease
from cashet.core.effects import (
    Claim,
    Effect,
    Execute,
    LatestFor,
    Lookup,
    Outcome,
    PutCommit,
    Record,
    Release,
    Serialize,
    Sleep,
    Touch,
    WaitRelease,
)
from cashet.core.flow import Description, call_flow
from cashet.core.refs import find_refs, replace_refs
from cashet.errors import StoreError
from cashet.executors._drive import (
    FlowExecutor,
    describe_call,
    log_commit,
    run_flow,
    run_inline,
    serialize,
    timeout_error,
)
from cashet.executors._orphans import AsyncOrphans
from cashet.hashing.commits import seal_commit
from cashet.models import AsyncResultRef, Commit, TaskDef, TaskStatus, utcnow
from cashet.protocols import AsyncHitCounter, AsyncStore, Serializer, supports
from cashet.stores.base import full_async_store

__all__ = ["BIG_BYTES", "AsyncLocalExecutor", "is_big"]

log = logging.getLogger("cashet")

#: Values estimated at least this large are hashed, pickled and unpickled in a thread: below
#: it, the work costs less than the thread hop (and stays well under a millisecond).
BIG_BYTES = 1 << 20
#: Containers longer than this count as big without looking further.
_BIG_LEN = 10_000
#: How many objects the size estimate looks at before it calls a value big.
_VISIT_BUDGET = 64
_SCALARS = frozenset({type(None), bool, int, float, complex})
_SIZED = frozenset({str, bytes, bytearray})


def is_big(obj: Any, limit: int = BIG_BYTES) -> bool:
    """Guess cheaply whether hashing or (de)serializing ``obj`` may block for long.

    Looks at a bounded number of objects: lengths of strings and bytes, ``nbytes`` of
    arrays, sizes of pandas objects, and the items of containers and instance dicts. What
    it cannot bound within :data:`_VISIT_BUDGET` objects counts as big (off the loop).
    """
    budget = [_VISIT_BUDGET]
    total = [0]

    def visit(o: Any) -> bool:  # True = big
        t = type(o)
        if t in _SCALARS:
            return False
        budget[0] -= 1
        if budget[0] < 0:
            return True
        if t in _SIZED:
            total[0] += len(o)
            return total[0] >= limit
        if t is memoryview:
            total[0] += o.nbytes
            return total[0] >= limit
        nbytes = getattr(o, "nbytes", None)
        if isinstance(nbytes, int):  # numpy arrays, pandas Series/Index
            total[0] += nbytes
            return total[0] >= limit
        module = getattr(t, "__module__", "") or ""
        if module.startswith("pandas"):
            size = getattr(o, "size", None)  # DataFrame: rows x columns
            return not isinstance(size, int) or size * 8 >= limit
        if t is dict or isinstance(o, dict):
            if len(o) > _BIG_LEN:
                return True
            return any(visit(k) or visit(v) for k, v in o.items())
        if isinstance(o, list | tuple | set | frozenset):
            if len(o) > _BIG_LEN:
                return True
            return any(visit(x) for x in o)
        state = getattr(o, "__dict__", None)
        if isinstance(state, dict):
            return visit(state)
        return False

    return visit(obj)


class AsyncLocalExecutor(FlowExecutor):
    """Run tasks in this process from asyncio, exactly once per fingerprint.

    Args:
        running_ttl: how long a lease lasts without renewal (as in ``LocalExecutor``); while
            a task runs its lease is renewed every ``running_ttl / 3``.
    """

    def __init__(self, running_ttl: timedelta = timedelta(minutes=5)) -> None:
        super().__init__(running_ttl)
        self._orphans = AsyncOrphans()

    async def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        store: AsyncStore,
        serializer: Serializer,
    ) -> Commit:
        """Return the commit for this call: cached, computed by another caller, or run here."""
        handler = _AsyncHandler(func, args, kwargs, store, serializer, self)
        flow = call_flow(task_def, self.running_ttl, seal_commit, handler.describe)
        return await run_flow(flow, handler.answer, True)


def _known_miss(store: object, effect: Lookup) -> bool:
    """Whether ``store`` knows the lookup after this call's claim to be a miss (SQLite; a
    sync answer, from what its claim saw)."""
    known = getattr(store, "known_miss", None)
    return known is not None and known(effect.fingerprint, effect.owner) is True


class _AsyncHandler:
    """Answers the effects of one call's flow with awaits on the store (see ``_SyncHandler``)."""

    __slots__ = ("args", "executor", "func", "kwargs", "serializer", "store")

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        store: AsyncStore,
        serializer: Serializer,
        executor: AsyncLocalExecutor,
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.store = store
        self.serializer = serializer
        self.executor = executor

    def describe(self, task_def: TaskDef) -> Description:
        return describe_call(self.func, self.args, self.kwargs, task_def)

    async def answer(self, effect: Effect) -> Any:
        """Carry out ``effect``; return what the flow receives."""
        store = self.store
        match effect:
            case Lookup():  # the hit, with a small result's bytes when read along
                if effect.owner is not None and _known_miss(store, effect):
                    return None  # the lookup right after our claim: the store knows
                hit = await full_async_store(store).lookup(effect.fingerprint)
                if hit is None:
                    return None
                commit = hit.loaded_commit()
                if commit.result is not None and supports(store, AsyncHitCounter):
                    # served: counted in memory (no write on the hit path), and marked
                    # served so the flow asks for no Touch
                    commit.from_cache = True
                    cast(AsyncHitCounter, store).record_hit(
                        commit.hash, time.time(), commit.compute_seconds or 0.0
                    )
                return commit
            case Touch():  # a store that counts hits recorded the access already
                if not supports(store, AsyncHitCounter):
                    try:
                        await store.touch(effect.hash, effect.when)
                    except StoreError as exc:  # an access time is not worth failing a hit for
                        log.debug("could not record access to %s: %s", effect.hash[:12], exc)
                return None
            case Claim():
                return await self.claim(effect)
            case WaitRelease():
                return await store.wait_for_release(effect.fingerprint, effect.timeout)
            case Release():
                return await self.release(effect.fingerprint, effect.owner)
            case Execute():
                return await self.execute(effect)
            case Sleep():
                return await asyncio.sleep(effect.seconds)
            case Serialize():
                if is_big(effect.value):
                    return await asyncio.to_thread(serialize, self.serializer, effect.value)
                return serialize(self.serializer, effect.value)
            case Record():  # one step where the store can (AsyncSQLiteStore: one transaction)
                writer = full_async_store(self.store)
                return await writer.put_result(effect.data, effect.build, effect.release)
            case LatestFor():
                return await store.latest_for_fingerprint(effect.fingerprint)
            case PutCommit():
                await store.put_commit(effect.commit)
                if effect.commit.status is TaskStatus.FAILED and log.isEnabledFor(logging.INFO):
                    log_commit(effect.commit, "failed")
                return None
            case _:
                assert_never(effect)

    async def claim(self, e: Claim) -> bool:
        await self.executor._orphans.retry(self.store)  # a release that failed before, again
        # Carried to its end however often the caller is cancelled meanwhile: a claim that
        # lands after the caller was cancelled is given back.
        attempt = asyncio.ensure_future(self.store.try_claim(e.fingerprint, e.lease))
        cancelled = await _outlast_cancellation(attempt)
        if not cancelled:
            return attempt.result()
        if not attempt.cancelled() and attempt.exception() is None and attempt.result():
            await self.release(e.fingerprint, e.lease.owner)
        elif attempt.cancelled():  # the loop is shutting down: it may have landed
            _lease.disown(e.lease.owner)
        raise asyncio.CancelledError

    async def release(self, fingerprint: str, owner: str) -> BaseException | None:
        """Give the lease back, to the end however often the caller is cancelled meanwhile
        (then re-raise the cancellation). One that cannot be given back is retried in the
        background (and this process stops waiting for it): the error that ended the call
        stays the error."""
        attempt = asyncio.ensure_future(self.store.release_claim(fingerprint, owner))
        cancelled = await _outlast_cancellation(attempt)
        error = asyncio.CancelledError() if attempt.cancelled() else attempt.exception()
        if error is not None:
            ttl = self.executor.running_ttl.total_seconds()
            self.executor._orphans.add(self.store, fingerprint, owner, ttl, error)
        if cancelled:
            raise asyncio.CancelledError
        return error

    async def execute(self, e: Execute) -> Outcome:
        func = self.func
        call_args, call_kwargs = await _resolve_refs(self.args, self.kwargs)
        keeper = None
        if e.lease is not None:
            ex = self.executor
            keeper = asyncio.create_task(
                _keep_lease(
                    self.store, e.fingerprint, e.lease.owner, ex.running_ttl, ex.renew_every
                )
            )
        try:
            if _is_async(func):
                return await _run_coroutine(func, call_args, call_kwargs, e.timeout)
            return await _run_in_thread(func, call_args, call_kwargs, e.timeout)
        finally:
            if keeper is not None:
                keeper.cancel()


async def _outlast_cancellation(attempt: asyncio.Future[Any]) -> bool:
    """Wait for ``attempt`` to finish even when this task is cancelled meanwhile (any
    number of times); return whether it was. ``attempt`` itself is cancelled only when the
    loop shuts down under it (``asyncio.run`` cancels every task left)."""
    cancelled = False
    while not attempt.done():
        try:
            await asyncio.shield(attempt)
        except asyncio.CancelledError:
            if attempt.cancelled():
                break
            cancelled = True
        except Exception:
            pass
    return cancelled


def _is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with ``async def __call__``
    )


async def _resolve_refs(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Replace upstream result handles in the arguments by their loaded values."""
    refs = find_refs(kwargs, find_refs(args))
    if not refs:
        return args, kwargs
    values: dict[int, Any] = {}
    for ref in refs:
        if id(ref) not in values:
            if isinstance(ref, AsyncResultRef):
                values[id(ref)] = await ref.load()
            else:  # a sync ResultRef: its load() does blocking IO
                values[id(ref)] = await asyncio.to_thread(ref.load)

    def loaded(ref: Any) -> Any:
        return values[id(ref)]

    return replace_refs(args, loaded), replace_refs(kwargs, loaded)


async def _keep_lease(
    store: AsyncStore, fingerprint: str, owner: str, ttl: timedelta, interval: float
) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            if not await store.renew_claim(fingerprint, owner, utcnow() + ttl):
                log.warning("lease on %s was lost while its task ran", fingerprint[:16])
        except Exception as exc:  # keep trying: the task is still running
            log.warning("could not renew lease on %s: %s", fingerprint[:16], exc)


async def _run_coroutine(func: Any, args: Any, kwargs: Any, timeout: float | None) -> Outcome:
    start = time.perf_counter()
    try:
        if timeout is None:
            value = await func(*args, **kwargs)
        else:
            async with asyncio.timeout(timeout) as deadline:
                value = await func(*args, **kwargs)
    except TimeoutError as exc:
        elapsed = time.perf_counter() - start
        if timeout is not None and deadline.expired():
            return Outcome.failed(timeout_error(func, timeout, soft=False), elapsed)
        return Outcome.failed(exc, elapsed)
    except Exception as exc:
        return Outcome.failed(exc, time.perf_counter() - start)
    return Outcome(value=value, seconds=time.perf_counter() - start)


async def _run_in_thread(func: Any, args: Any, kwargs: Any, timeout: float | None) -> Outcome:
    if timeout is None:
        return await asyncio.to_thread(run_inline, func, args, kwargs)
    start = time.perf_counter()
    try:
        return await asyncio.wait_for(asyncio.to_thread(run_inline, func, args, kwargs), timeout)
    except TimeoutError:
        return Outcome.failed(timeout_error(func, timeout, soft=True), time.perf_counter() - start)
