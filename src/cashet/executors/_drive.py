"""What both local executors share: the one loop that drives a call flow, and its decisions.

:func:`run_flow` runs a :data:`~cashet.core.flow.CallFlow` to its commit, handing each
effect to an *answer* function: the sync executor's answer returns the value (and
:func:`finish` runs the loop without an event loop, since it never suspends), the async
executor's answer returns an awaitable that the loop awaits. Also here, once: the lease
duration rule (:class:`FlowExecutor`), how results are serialized, the timeout message and
the log lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Generator
from datetime import timedelta
from typing import Any, TypeVar, cast

from cashet.core.effects import Effect, Outcome
from cashet.core.flow import CallFlow, Description
from cashet.core.refs import find_refs
from cashet.errors import TaskTimeoutError
from cashet.hashing import args_snapshot, function_identity
from cashet.hashing.kept import take
from cashet.hashing.manifest import key_manifest
from cashet.models import Commit, TaskDef
from cashet.protocols import PartsSerializer, Serializer, supports

__all__ = [
    "drive",
    "FlowExecutor",
    "describe_call",
    "finish",
    "log_commit",
    "run_flow",
    "run_inline",
    "serialize",
    "timeout_error",
]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("cashet")


class FlowExecutor:
    """The lease rules of both local executors: validate ``running_ttl``, renew at a third.

    Args:
        running_ttl: how long a lease lasts without renewal. A holder that dies (SIGKILL,
            power loss) blocks others at most this long; on the same host a dead holder's
            lease is taken over at once. While the task runs the lease is renewed every
            ``running_ttl / 3``.

    Raises:
        TypeError: ``running_ttl`` is not a ``timedelta``.
        ValueError: ``running_ttl`` is not positive.
    """

    def __init__(self, running_ttl: timedelta = timedelta(minutes=5)) -> None:
        if not isinstance(running_ttl, timedelta):
            raise TypeError(f"running_ttl must be a datetime.timedelta, not {type(running_ttl)}")
        if running_ttl.total_seconds() <= 0:
            raise ValueError(f"running_ttl must be positive, not {running_ttl}")
        self.running_ttl = running_ttl
        #: Seconds between two renewals of a running task's lease.
        self.renew_every = max(running_ttl.total_seconds() / 3, 0.01)


async def drive(
    flow: Generator[Effect, Any, R], answer: Callable[[Effect], Any], awaits: bool
) -> R:
    """Run ``flow`` to its value, answering each effect with ``answer(effect)``.

    With ``awaits`` the answer is awaited (the async executors); without, it is the value
    itself and nothing here suspends, so :func:`finish` completes the coroutine at once (the
    sync ones). An exception raised by an answer (``KeyboardInterrupt`` and
    ``asyncio.CancelledError`` included) is thrown back into the flow, so its ``finally``
    releases the lease before the exception leaves.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: R = stop.value
            return result
        error = None
        try:
            value = answer(effect)
            if awaits:
                value = await value
        except BaseException as exc:
            value = None
            error = exc


async def run_flow(flow: CallFlow, answer: Callable[[Effect], Any], awaits: bool) -> Commit:
    """Run a call's ``flow`` to its commit (see :func:`drive`), and log the outcome."""
    commit = await drive(flow, answer, awaits)
    if commit.from_cache:
        if log.isEnabledFor(logging.DEBUG):
            log_commit(commit, "hit")
    elif log.isEnabledFor(logging.INFO):
        log_commit(commit, "ran")
    return commit


def finish(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a sync :func:`run_flow`) and return its value."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a sync call flow awaited something")


def log_commit(commit: Commit, what: str) -> None:
    """Log one line about a commit: fingerprint, function, commit hash and duration."""
    seconds = commit.compute_seconds
    took = "" if seconds is None or commit.from_cache else f" in {seconds * 1000:.1f} ms"
    level = logging.DEBUG if what == "hit" else logging.INFO
    if commit.status.value == "failed":
        level = logging.WARNING
    log.log(
        level,
        "%s %s fingerprint=%s commit=%s%s",
        what,
        commit.func_name,
        commit.fingerprint[:16],
        commit.hash[:12],
        took,
    )


def describe_call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], task_def: TaskDef
) -> Description:
    """Return the readable snapshot of a call's arguments, its upstream blob hashes and the
    manifest of its key (made from the identity the client keyed the call with)."""
    refs = find_refs(kwargs, find_refs(args))
    identity = task_def.identity
    if identity is None:  # a TaskDef made by hand: the function's identity now
        identity = function_identity(func)
    # the digests of big buffers the client's key kept for this call: not hashed again
    manifest = key_manifest(identity, func, args, kwargs, take(task_def.args_hash))
    return args_snapshot(args, kwargs), tuple(dict.fromkeys(r.hash for r in refs)), manifest


def serialize(serializer: Serializer, value: Any) -> bytes | list[bytes | memoryview]:
    """Serialize a result, as chunks when the serializer can avoid copying large buffers."""
    if supports(serializer, PartsSerializer):
        chunks = cast(PartsSerializer, serializer).dumps_parts(value)
        return chunks[0] if len(chunks) == 1 and isinstance(chunks[0], bytes) else chunks
    return serializer.dumps(value)


def run_inline(func: Callable[..., Any], args: Any, kwargs: Any) -> Outcome:
    """Call ``func`` in this thread and time it; an ``Exception`` becomes a failed outcome."""
    start = time.perf_counter()
    try:
        value = func(*args, **kwargs)
    except Exception as exc:
        return Outcome.failed(exc, time.perf_counter() - start)
    return Outcome(value=value, seconds=time.perf_counter() - start)


def timeout_error(func: Any, timeout: float, soft: bool) -> TaskTimeoutError:
    """The error of an attempt that ran out of time (``soft``: its thread keeps running)."""
    what = f"{getattr(func, '__qualname__', func)!s} timed out after {timeout:g}s"
    if soft:
        what += " (the thread keeps running: timeouts of plain functions are soft)"
    return TaskTimeoutError(what)
