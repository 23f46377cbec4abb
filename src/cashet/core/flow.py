"""The call flow, written once and free of IO.

:func:`call_flow` is a generator that *yields effects* (:mod:`cashet.core.effects`: look
this fingerprint up, claim its lease, run the function, store these bytes, ...) and
receives their answers. One driver (:mod:`cashet.executors._drive`) runs it for both
executors: the sync one answers each effect with a blocking call, the async one with an
await. All decisions — cache hit or miss, who computes, retries, what commit is recorded,
releasing the lease on every exit path — live here; this module does no IO and imports
no store, executor or client.

Exit paths: the driver throws any exception raised while carrying out an effect (including
``KeyboardInterrupt`` and ``asyncio.CancelledError``) back into the generator with
``gen.throw``; the ``finally`` block then yields ``Release`` before the exception leaves.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Generator
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeAlias

from cashet._process import after_fork_in_child, boot_id, current_pid, hostname, pid_namespace
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
from cashet.errors import CashetError, ResultSerializationError, TaskError, TaskTimeoutError
from cashet.models import Commit, Lease, ObjectRef, TaskDef, TaskStatus, utcnow

__all__ = [
    "Description",
    "TOUCH_AFTER",
    "Acquired",
    "CallFlow",
    "acquire_flow",
    "call_flow",
    "compute_flow",
    "new_lease",
    "retry_delay",
    "unique_token",
]

#: What ``describe`` returns on a miss: the readable args snapshot, the lineage (blob hashes
#: of the ``ResultRef`` arguments) and the key's manifest.
Description: TypeAlias = tuple[str, tuple[str, ...], dict[str, Any]]

#: The generator type of one call's flow: yields effects, receives answers, returns a commit.
CallFlow: TypeAlias = Generator[Effect, Any, Commit]

#: Update ``last_accessed`` on a hit only when the stored value is older than this, so the
#: hit path is a single read nearly always (GC works at coarser granularity anyway).
TOUCH_AFTER = timedelta(seconds=1)


_token_prefix = os.urandom(8).hex()
_token_counter = itertools.count()


@after_fork_in_child
def _new_tokens_in_child() -> None:
    global _token_prefix, _token_counter
    _token_prefix = os.urandom(8).hex()
    _token_counter = itertools.count()


def unique_token() -> str:
    """A token unique across processes and calls (random per process, then a counter)."""
    return f"{_token_prefix}{next(_token_counter):08x}"


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0-based): 0.1, 0.2, 0.4 … 2."""
    return float(min(0.1 * (2**attempt), 2.0))


def new_lease(ttl: timedelta, func_name: str) -> Lease:
    """Return a fresh lease for this process, valid for ``ttl`` from now."""
    return Lease(
        owner=unique_token(),
        host=hostname(),
        pid=current_pid(),
        expires_at=utcnow() + ttl,
        func_name=func_name,
        boot_id=boot_id(),
        pid_ns=pid_namespace(),
    )


def _error_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text.strip()


def _type_name(value: object) -> str:
    cls = type(value)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def call_flow(
    task_def: TaskDef,
    lease_ttl: timedelta,
    seal: Callable[[Commit], str],
    describe: Callable[[TaskDef], Description] | None = None,
) -> CallFlow:
    """Yield the effects of one ``submit``; return the commit holding the result.

    The two halves, :func:`acquire_flow` (a hit, or the lease to compute) and
    :func:`compute_flow` (run, record, release), one after the other: a cluster executor
    runs the first on the driver and ships only misses, with their lease, to a worker that
    runs the second.

    Args:
        task_def: the call's identity and options.
        lease_ttl: how long a lease lasts without renewal.
        seal: sets a commit's hash from its content and returns its stored JSON (the
            ``hashing.commits.seal_commit``; passed in, so tests can seal differently).
        describe: called on a miss only, before the function runs (so that an argument
            or a global it mutates is recorded as it was keyed): returns the readable args
            snapshot, the blob hashes of the ``ResultRef`` arguments (lineage) and the key's
            manifest. Pure, but not free, so a hit never pays for it.

    Raises:
        TaskError: the function failed on every attempt (``TaskTimeoutError`` when the last
            failure was a timeout).
    """
    fp = task_def.fingerprint
    if task_def.cache and not task_def.force:
        hit: Commit | None = yield Lookup(fp)
        # (a completed commit without a result, which a third-party store may hold, is no hit)
        if hit is not None and hit.result is not None:  # the hot path: inlined
            touch = _served(hit)
            if touch is not None:
                yield touch
            return hit
    got = yield from acquire_flow(task_def, lease_ttl, looked_up=True)
    if isinstance(got, Commit):
        return got
    return (yield from compute_flow(task_def, got, seal, describe))


#: What :func:`acquire_flow` returns: the commit of a hit, the lease this call now holds,
#: or ``None`` (``cache=False``: no lease is taken, the call runs).
Acquired: TypeAlias = Commit | Lease | None


def acquire_flow(
    task_def: TaskDef, lease_ttl: timedelta, *, looked_up: bool = False
) -> Generator[Effect, Any, Acquired]:
    """The first half of a call: answer it from the cache, or take its lease.

    Args:
        task_def: the call's identity and options.
        lease_ttl: how long a lease lasts without renewal.
        looked_up: the caller has already looked the fingerprint up and found nothing.
    """
    fp = task_def.fingerprint
    use_cache = task_def.cache and not task_def.force
    if use_cache and not looked_up:
        hit: Commit | None = yield Lookup(fp)
        if hit is not None and hit.result is not None:
            return (yield from _on_hit(hit))
    lease: Lease | None = None
    if task_def.cache:
        # Exactly once: only the lease holder computes; others wait for its result.
        while True:
            candidate = new_lease(lease_ttl, task_def.func_name)
            if (yield Claim(fp, candidate)):
                lease = candidate
                break
            yield WaitRelease(fp, lease_ttl.total_seconds())
            if use_cache:
                hit = yield Lookup(fp)
                if hit is not None and hit.result is not None:
                    return (yield from _on_hit(hit))

    return lease


def compute_flow(
    task_def: TaskDef,
    lease: Lease | None,
    seal: Callable[[Commit], str],
    describe: Callable[[TaskDef], Description] | None = None,
) -> CallFlow:
    """The second half of a call: run it and record its commit, holding ``lease`` (from
    :func:`acquire_flow`; ``None`` when ``cache=False``), which it releases on every exit
    path. Checks the cache once more first: someone may have finished meanwhile.

    Raises:
        TaskError: as :func:`call_flow`.
    """
    fp = task_def.fingerprint
    use_cache = task_def.cache and not task_def.force
    try:
        if use_cache:
            # Someone may have finished between our lookup and our claim.
            hit = yield Lookup(fp, None if lease is None else lease.owner)
            if hit is not None and hit.result is not None:
                return (yield from _on_hit(hit))

        snapshot, input_hashes, manifest = (
            describe(task_def) if describe is not None else ("", (), {})
        )
        if snapshot and not task_def.args_snapshot:
            task_def.args_snapshot = snapshot
        if manifest and not task_def.manifest:
            task_def.manifest = manifest

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
            failed.sealed_json = seal(failed)
            yield PutCommit(failed)
            error_cls = TaskTimeoutError if isinstance(outcome.error, TimeoutError) else TaskError
            raise error_cls(
                f"task {task_def.func_name} failed after {attempts} attempt"
                f"{'s' if attempts != 1 else ''}: {_error_line(outcome.error)}",
                func_name=task_def.func_name,
                traceback_text=outcome.traceback_text,
                attempts=attempts,
            ) from outcome.error

        try:
            data = yield Serialize(outcome.value)
        except CashetError:
            raise
        except Exception as exc:  # the result cannot be stored: say whose and what
            raise ResultSerializationError(
                f"the result of task {task_def.func_name} (a {_type_name(outcome.value)}) "
                f"cannot be serialized, so nothing was stored: {_error_line(exc)}",
                func_name=task_def.func_name,
            ) from exc
        release = None if lease is None else (fp, lease.owner)
        record = Record(data, functools.partial(_with_result, seal, base), release)
        done: Commit = yield record
        lease = None  # released with the record
        return done
    except BaseException as exc:
        if lease is not None and not isinstance(exc, GeneratorExit):
            # What failed stays the error; a failed release (the store is down, the disk
            # full) is said in a note, never in its place.
            owner, lease = lease.owner, None
            released: object
            try:
                released = yield Release(fp, owner)
            except Exception as release_error:  # a driver that lets it out
                released = release_error
            if isinstance(released, BaseException):
                exc.add_note(
                    "The lease on this call could not be released either (it is retried in"
                    " the background; this process does not wait for it): " + _error_line(released)
                )
        raise
    finally:
        if lease is not None:
            yield Release(fp, lease.owner)


def _with_result(seal: Callable[[Commit], str], base: Commit, ref: ObjectRef) -> Commit:
    base.result = ref
    base.sealed_json = seal(base)
    return base


def _served(hit: Commit) -> Touch | None:
    """Mark ``hit`` as served from the cache; return the ``Touch`` it is due, if any.

    A commit the executor marked served already (``from_cache``) was recorded by a store
    that counts hits (``HitCounter``): it is due no ``Touch``.
    """
    if hit.from_cache:
        return None
    hit.from_cache = True
    now = utcnow()
    if hit.last_accessed is None or now - hit.last_accessed > TOUCH_AFTER:
        hit.last_accessed = now
        return Touch(hit.hash, now)
    return None


def _on_hit(hit: Commit) -> CallFlow:
    touch = _served(hit)
    if touch is not None:
        yield touch
    return hit
