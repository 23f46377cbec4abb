"""``LocalExecutor``: the synchronous driver of the call flow, running tasks in this process.

A task without a timeout runs in the calling thread (no thread hop); a task with a timeout
runs in a daemon thread that the caller stops waiting for when time is up (Python cannot
kill a thread: the timeout is soft, as documented). While a task runs, a single heartbeat
thread per executor renews its lease, so a task longer than the lease is never run twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from cashet.core.flow import (
    Claim,
    Execute,
    LatestFor,
    LeaseSettings,
    Lookup,
    Outcome,
    PutCommit,
    Record,
    Release,
    Serialize,
    Sleep,
    Touch,
    WaitRelease,
    call_flow,
)
from cashet.core.leases import current_pid, hostname
from cashet.core.refs import find_refs, replace_refs
from cashet.errors import StoreError, TaskTimeoutError
from cashet.hashing import args_snapshot
from cashet.models import Commit, TaskDef, utcnow
from cashet.protocols import PartsSerializer, Serializer, Store, supports
from cashet.stores.base import full_store

__all__ = ["LocalExecutor", "describe_call", "run_flow"]

log = logging.getLogger("cashet")


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


def describe_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """Return the readable snapshot of a call's arguments and its upstream blob hashes."""
    refs = find_refs(kwargs, find_refs(args))
    return args_snapshot(args, kwargs), tuple(dict.fromkeys(r.hash for r in refs))


def run_flow(flow: Any, call: Any) -> Commit:
    """Run a call-flow generator to completion, answering each effect through ``call``.

    ``call.HANDLERS`` maps each effect type to a method of ``call``. An exception from a
    handler is thrown back into the flow, so its ``finally`` releases the lease before the
    exception leaves (KeyboardInterrupt included).
    """
    handlers = call.HANDLERS
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            value = handlers[type(effect)](call, effect)
        except BaseException as exc:
            value = None
            error = exc


class _Heartbeat:
    """One daemon thread renewing every lease this executor currently holds."""

    def __init__(self, ttl: timedelta, interval: float) -> None:
        self._ttl = ttl
        self._interval = interval
        self._leases: dict[str, tuple[Store, str]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = current_pid()

    def add(self, store: Store, fingerprint: str, owner: str) -> None:
        with self._lock:
            self._leases[owner] = (store, fingerprint)
            if self._thread is None or not self._thread.is_alive() or self._pid != current_pid():
                self._pid = current_pid()
                self._thread = threading.Thread(
                    target=self._run, name="cashet-heartbeat", daemon=True
                )
                self._thread.start()

    def remove(self, owner: str) -> None:
        with self._lock:
            self._leases.pop(owner, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            with self._lock:
                if not self._leases:
                    self._thread = None
                    return
                held = list(self._leases.items())
            expires = utcnow() + self._ttl
            for owner, (store, fp) in held:
                try:
                    if not store.renew_claim(fp, owner, expires):
                        log.warning("lease on %s was lost while its task ran", fp[:16])
                except Exception as exc:  # keep renewing the others
                    log.warning("could not renew lease on %s: %s", fp[:16], exc)


class LocalExecutor:
    """Run tasks in this process, exactly once per fingerprint across threads and processes.

    Args:
        running_ttl: how long a lease lasts without renewal. A holder that dies (SIGKILL,
            power loss) blocks others at most this long; on the same host a dead holder's
            lease is taken over at once. While the task runs the lease is renewed every
            ``running_ttl / 3``.
    """

    def __init__(self, running_ttl: timedelta = timedelta(minutes=5)) -> None:
        if not isinstance(running_ttl, timedelta):
            raise TypeError(f"running_ttl must be a datetime.timedelta, not {type(running_ttl)}")
        if running_ttl.total_seconds() <= 0:
            raise ValueError(f"running_ttl must be positive, not {running_ttl}")
        self.running_ttl = running_ttl
        self._heartbeat = _Heartbeat(running_ttl, max(running_ttl.total_seconds() / 3, 0.01))
        self._settings: LeaseSettings | None = None

    def _lease_settings(self) -> LeaseSettings:
        settings = self._settings
        if settings is None or settings.pid != current_pid():
            settings = self._settings = LeaseSettings(self.running_ttl, hostname(), current_pid())
        return settings

    def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        store: Store,
        serializer: Serializer,
    ) -> Commit:
        """Return the commit for this call: cached, computed by another caller, or run here."""
        call = _SyncCall(func, args, kwargs, store, serializer, self._heartbeat)
        commit = run_flow(call_flow(task_def, self._lease_settings(), call.describe), call)
        if commit.from_cache and log.isEnabledFor(logging.DEBUG):
            log_commit(commit, "hit")
        return commit


class _SyncCall:
    """Answers the effects of one call's flow with blocking calls on the store."""

    __slots__ = ("args", "func", "heartbeat", "kwargs", "serializer", "store")

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        store: Store,
        serializer: Serializer,
        heartbeat: _Heartbeat,
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.store = store
        self.serializer = serializer
        self.heartbeat = heartbeat

    def describe(self) -> tuple[str, tuple[str, ...]]:
        return describe_call(self.args, self.kwargs)

    def lookup(self, e: Lookup) -> Commit | None:
        return self.store.find_by_fingerprint(e.fingerprint)

    def latest(self, e: LatestFor) -> Commit | None:
        return self.store.latest_for_fingerprint(e.fingerprint)

    def touch(self, e: Touch) -> None:
        try:
            self.store.touch(e.hash, e.when)
        except StoreError as exc:  # an access time is not worth failing a hit for
            log.debug("could not record access to %s: %s", e.hash[:12], exc)

    def claim(self, e: Claim) -> bool:
        return self.store.try_claim(e.fingerprint, e.lease)

    def wait_release(self, e: WaitRelease) -> None:
        self.store.wait_for_release(e.fingerprint, e.timeout)

    def release(self, e: Release) -> None:
        self.store.release_claim(e.fingerprint, e.owner)

    def execute(self, e: Execute) -> Outcome:
        call_args = replace_refs(self.args, _load_ref)
        call_kwargs = replace_refs(self.kwargs, _load_ref)
        if e.lease is not None:
            self.heartbeat.add(self.store, e.fingerprint, e.lease.owner)
        try:
            if e.timeout is None:
                return _run_inline(self.func, call_args, call_kwargs)
            return _run_with_timeout(self.func, call_args, call_kwargs, e.timeout)
        finally:
            if e.lease is not None:
                self.heartbeat.remove(e.lease.owner)

    def sleep(self, e: Sleep) -> None:
        time.sleep(e.seconds)

    def serialize(self, e: Serialize) -> bytes | list[bytes | memoryview]:
        return serialize(self.serializer, e.value)

    def put_commit(self, e: PutCommit) -> None:
        self.store.put_commit(e.commit)
        if log.isEnabledFor(logging.INFO):
            log_commit(e.commit, "ran" if e.commit.status.value == "completed" else "failed")

    def record(self, e: Record) -> Commit:
        commit = record_result(self.store, e)
        if log.isEnabledFor(logging.INFO):
            log_commit(commit, "ran")
        return commit

    HANDLERS: dict[type, Callable[[Any, Any], Any]] = {  # noqa: RUF012
        Lookup: lookup,
        LatestFor: latest,
        Touch: touch,
        Claim: claim,
        WaitRelease: wait_release,
        Release: release,
        Execute: execute,
        Sleep: sleep,
        Serialize: serialize,
        PutCommit: put_commit,
        Record: record,
    }


def serialize(serializer: Serializer, value: Any) -> bytes | list[bytes | memoryview]:
    """Serialize a result, as chunks when the serializer can avoid copying large buffers."""
    if supports(serializer, PartsSerializer):
        chunks = cast(PartsSerializer, serializer).dumps_parts(value)
        return chunks[0] if len(chunks) == 1 and isinstance(chunks[0], bytes) else chunks
    return serializer.dumps(value)


def record_result(store: Store, e: Record) -> Commit:
    """Carry out a ``Record`` effect on a sync store (one transaction when it can)."""
    return full_store(store).put_result(e.data, e.build, e.release)


def _load_ref(ref: Any) -> Any:
    return ref.load()


def _run_inline(func: Callable[..., Any], args: Any, kwargs: Any) -> Outcome:
    start = time.perf_counter()
    try:
        value = func(*args, **kwargs)
    except Exception as exc:
        return Outcome.failed(exc, time.perf_counter() - start)
    return Outcome(value=value, seconds=time.perf_counter() - start)


def _run_with_timeout(func: Callable[..., Any], args: Any, kwargs: Any, timeout: float) -> Outcome:
    box: list[Outcome] = []

    def target() -> None:
        box.append(_run_inline(func, args, kwargs))

    start = time.perf_counter()
    worker = threading.Thread(target=target, name="cashet-task", daemon=True)
    worker.start()
    worker.join(timeout)
    if box:
        return box[0]
    exc = TaskTimeoutError(
        f"{getattr(func, '__qualname__', func)!s} timed out after {timeout:g}s "
        "(the thread keeps running: local timeouts are soft)"
    )
    return Outcome.failed(exc, time.perf_counter() - start)
