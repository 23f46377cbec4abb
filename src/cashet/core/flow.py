"""The call flow, written once and free of IO.

:func:`call_flow` is a generator that *yields effects* (look this fingerprint up, claim its
lease, run the function, store these bytes, ...) and receives their results. The sync
driver (:mod:`cashet.executors.local`) answers them with blocking calls; the async driver
answers them with awaits. All decisions — cache hit or miss, who computes, retries, what
commit is recorded, releasing the lease on every exit path — live here.

Exit paths: the driver throws any exception raised while carrying out an effect (including
``KeyboardInterrupt`` and ``asyncio.CancelledError``) back into the generator with
``gen.throw``; the ``finally`` block then yields ``Release`` before the exception leaves.
"""

from __future__ import annotations

import functools
import itertools
import os
import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cashet.errors import TaskError, TaskTimeoutError
from cashet.hashing.commits import seal_commit
from cashet.models import Commit, Lease, ObjectRef, TaskDef, TaskStatus, utcnow

__all__ = [
    "Claim",
    "Execute",
    "Flow",
    "LatestFor",
    "Lookup",
    "Outcome",
    "PutCommit",
    "Record",
    "Release",
    "Serialize",
    "Sleep",
    "Touch",
    "WaitRelease",
    "call_flow",
    "retry_delay",
]

#: Update ``last_accessed`` on a hit only when the stored value is older than this, so the
#: hit path is a single read nearly always (GC works at coarser granularity anyway).
TOUCH_AFTER = timedelta(seconds=1)


# --- effects ------------------------------------------------------------------------------


@dataclass(slots=True)
class Lookup:
    """Return the newest completed, cacheable, unexpired commit for ``fingerprint`` or None."""

    fingerprint: str


@dataclass(slots=True)
class LatestFor:
    """Return the newest commit of any status for ``fingerprint`` (the parent), or None."""

    fingerprint: str


@dataclass(slots=True)
class Touch:
    """Record an access to commit ``hash`` at ``when``."""

    hash: str
    when: datetime


@dataclass(slots=True)
class Claim:
    """Try to take the lease; return True when taken."""

    fingerprint: str
    lease: Lease


@dataclass(slots=True)
class WaitRelease:
    """Block until the lease on ``fingerprint`` is released or dead, at most ``timeout`` s."""

    fingerprint: str
    timeout: float


@dataclass(slots=True)
class Release:
    """Give the lease back."""

    fingerprint: str
    owner: str


@dataclass(slots=True)
class Execute:
    """Run the task function once (resolving upstream results) and return an ``Outcome``.

    While it runs the driver keeps the lease alive (``lease`` is None when no lease is held).
    """

    attempt: int
    timeout: float | None
    lease: Lease | None
    fingerprint: str = ""


@dataclass(slots=True)
class Sleep:
    """Wait ``seconds`` before the next attempt."""

    seconds: float


@dataclass(slots=True)
class Serialize:
    """Turn ``value`` into bytes with the client's serializer."""

    value: Any


@dataclass(slots=True)
class PutCommit:
    """Record ``commit``."""

    commit: Commit


@dataclass(slots=True)
class Record:
    """Store the result ``data``, record ``build(blob_ref)`` and release the lease.

    Return the recorded commit. Stores with a ``put_result`` method do it in one
    transaction; for others the driver falls back to ``put_blob``, ``put_commit`` and
    ``release_claim``.
    """

    data: Any
    build: Callable[[ObjectRef], Commit]
    release: tuple[str, str] | None


Effect = (
    Lookup
    | LatestFor
    | Touch
    | Claim
    | WaitRelease
    | Release
    | Execute
    | Sleep
    | Serialize
    | PutCommit
)
Flow = Generator[Any, Any, Commit]


@dataclass(slots=True)
class Outcome:
    """What one attempt produced: a value, or an exception with its formatted traceback."""

    value: Any = None
    error: BaseException | None = None
    traceback_text: str = ""
    seconds: float = 0.0

    @classmethod
    def failed(cls, exc: BaseException, seconds: float = 0.0) -> Outcome:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(error=exc, traceback_text=text, seconds=seconds)


_token_prefix = os.urandom(8).hex()
_token_counter = itertools.count()


def _after_fork_in_child() -> None:
    global _token_prefix, _token_counter
    _token_prefix = os.urandom(8).hex()
    _token_counter = itertools.count()


os.register_at_fork(after_in_child=_after_fork_in_child)


def unique_token() -> str:
    """A token unique across processes and calls (random per process, then a counter)."""
    return f"{_token_prefix}{next(_token_counter):08x}"


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0-based): 0.1, 0.2, 0.4 … 2."""
    return float(min(0.1 * (2**attempt), 2.0))


@dataclass(slots=True)
class LeaseSettings:
    """How long a lease lasts and who we are."""

    ttl: timedelta
    host: str
    pid: int

    def new_lease(self, func_name: str, now: datetime | None = None) -> Lease:
        return Lease(
            owner=unique_token(),
            host=self.host,
            pid=self.pid,
            expires_at=(now or utcnow()) + self.ttl,
            func_name=func_name,
        )


def _error_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text.strip()


def call_flow(
    task_def: TaskDef,
    lease_settings: LeaseSettings,
    describe: Callable[[], tuple[str, tuple[str, ...]]] | None = None,
) -> Flow:
    """Drive one ``submit``: return the commit holding the result, or raise ``TaskError``.

    Args:
        task_def: the call's identity and options.
        lease_settings: lease duration and this process's identity.
        describe: called on a miss only: returns the readable args snapshot and the blob
            hashes of the ``ResultRef`` arguments (lineage). Pure, but not free, so a hit
            never pays for it.
    """
    fp = task_def.fingerprint
    use_cache = task_def.cache and not task_def.force

    if use_cache:
        hit = yield Lookup(fp)
        if hit is not None:
            return (yield from _on_hit(hit))

    lease: Lease | None = None
    if task_def.cache:
        # Exactly once: only the lease holder computes; others wait for its result.
        while True:
            candidate = lease_settings.new_lease(task_def.func_name)
            if (yield Claim(fp, candidate)):
                lease = candidate
                break
            yield WaitRelease(fp, lease_settings.ttl.total_seconds())
            if use_cache:
                hit = yield Lookup(fp)
                if hit is not None:
                    return (yield from _on_hit(hit))

    try:
        if use_cache:
            # Someone may have finished between our lookup and our claim.
            hit = yield Lookup(fp)
            if hit is not None:
                return (yield from _on_hit(hit))

        outcome = Outcome()
        total_seconds = 0.0
        attempts = 0
        for attempt in range(task_def.retries + 1):
            attempts = attempt + 1
            outcome = yield Execute(attempt, task_def.timeout, lease, fp)
            total_seconds += outcome.seconds
            if outcome.error is None:
                break
            if attempt < task_def.retries:
                yield Sleep(retry_delay(attempt))

        parent = yield LatestFor(fp)
        snapshot, input_hashes = describe() if describe is not None else ("", ())
        if snapshot and not task_def.args_snapshot:
            task_def.args_snapshot = snapshot
        now = utcnow()
        base = Commit(
            hash="",
            task_def=task_def,
            status=TaskStatus.COMPLETED,
            created_at=now,
            parent_hash=None if parent is None else parent.hash,
            tags=dict(task_def.tags),
            compute_seconds=total_seconds,
            expires_at=None if task_def.ttl is None else now + timedelta(seconds=task_def.ttl),
            input_hashes=input_hashes,
            salt=unique_token(),
            last_accessed=now,
        )

        if outcome.error is not None:
            failed = replace(base, status=TaskStatus.FAILED, error=outcome.traceback_text)
            failed.sealed_json = seal_commit(failed)
            yield PutCommit(failed)
            error_cls = TaskTimeoutError if isinstance(outcome.error, TimeoutError) else TaskError
            raise error_cls(
                f"task {task_def.func_name} failed after {attempts} attempt"
                f"{'s' if attempts != 1 else ''}: {_error_line(outcome.error)}",
                func_name=task_def.func_name,
                traceback_text=outcome.traceback_text,
                attempts=attempts,
            ) from outcome.error

        data = yield Serialize(outcome.value)
        release = None if lease is None else (fp, lease.owner)
        done: Commit = yield Record(data, functools.partial(_with_result, base), release)
        lease = None  # released with the record
        return done
    finally:
        if lease is not None:
            yield Release(fp, lease.owner)


def _with_result(base: Commit, ref: ObjectRef) -> Commit:
    base.result = ref
    base.sealed_json = seal_commit(base)
    return base


def _on_hit(hit: Commit) -> Generator[Any, Any, Commit]:
    hit.from_cache = True
    now = utcnow()
    if hit.last_accessed is None or now - hit.last_accessed > TOUCH_AFTER:
        yield Touch(hit.hash, now)
        hit.last_accessed = now
    return hit
