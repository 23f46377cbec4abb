"""``LocalExecutor``: the synchronous driver of the call flow, running tasks in this process.

It answers each effect of :func:`~cashet.core.flow.call_flow` with a blocking call; the
loop that drives the flow is :func:`cashet.executors._drive.run_flow`, shared with the
async executor.

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
from typing import Any, assert_never, cast

from cashet._process import current_pid
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
from cashet.core.refs import replace_refs
from cashet.errors import StoreError
from cashet.executors._drive import (
    FlowExecutor,
    describe_call,
    finish,
    log_commit,
    run_flow,
    run_inline,
    serialize,
    timeout_error,
)
from cashet.executors._orphans import SyncOrphans
from cashet.hashing.commits import seal_commit
from cashet.models import Commit, TaskDef, TaskStatus, utcnow
from cashet.protocols import HitCounter, Serializer, Store, supports
from cashet.stores.base import FullStore, full_store

__all__ = ["LocalExecutor"]

log = logging.getLogger("cashet")


class _Heartbeat:
    """One daemon thread renewing every lease this executor currently holds."""

    def __init__(self, ttl: timedelta, interval: float) -> None:
        self._ttl = ttl
        self._interval = interval
        self._leases: dict[str, tuple[FullStore, str]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = current_pid()

    def add(self, store: FullStore, fingerprint: str, owner: str) -> None:
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


class LocalExecutor(FlowExecutor):
    """Run tasks in this process, exactly once per fingerprint across threads and processes.

    Args:
        running_ttl: how long a lease lasts without renewal. A holder that dies (SIGKILL,
            power loss) blocks others at most this long; on the same host a dead holder's
            lease is taken over at once. While the task runs the lease is renewed every
            ``running_ttl / 3``.
    """

    def __init__(self, running_ttl: timedelta = timedelta(minutes=5)) -> None:
        super().__init__(running_ttl)
        self._heartbeat = _Heartbeat(running_ttl, self.renew_every)
        self._orphans = SyncOrphans()

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
        handler = _SyncHandler(func, args, kwargs, store, serializer, self)
        flow = call_flow(task_def, self.running_ttl, seal_commit, handler.describe)
        return finish(run_flow(flow, handler.answer, False))


_COUNTS_HITS: dict[type, bool] = {}


def _counts_hits(store: object) -> bool:
    """Whether ``store``'s class has the ``HitCounter`` capability (cached per class: this
    is asked on every hit)."""
    cls = type(store)
    counts = _COUNTS_HITS.get(cls)
    if counts is None:
        counts = _COUNTS_HITS[cls] = supports(store, HitCounter)
    return counts


def _known_miss(store: object, effect: Lookup) -> bool:
    """Whether ``store`` knows the lookup after this call's claim to be a miss (SQLite)."""
    known = getattr(store, "known_miss", None)
    return known is not None and known(effect.fingerprint, effect.owner) is True


class _SyncHandler:
    """Answers the effects of one call's flow with blocking calls on the store."""

    __slots__ = ("args", "executor", "func", "heartbeat", "kwargs", "plain", "serializer", "store")

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        store: Store,
        serializer: Serializer,
        executor: LocalExecutor,
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.store: FullStore = full_store(store)  # the store itself for built-in stores
        self.serializer = serializer
        self.executor = executor
        self.heartbeat = executor._heartbeat
        self.plain = False  # described, with no result handle in the arguments

    def describe(self, task_def: TaskDef) -> Description:
        described = describe_call(self.func, self.args, self.kwargs, task_def)
        self.plain = not described[1]  # no upstream blob: nothing to load (see execute)
        return described

    def answer(self, effect: Effect) -> Any:
        """Carry out ``effect``; return what the flow receives."""
        store = self.store
        match effect:
            case Lookup():  # the hit, with a small result's bytes when read along
                if effect.owner is not None and _known_miss(store, effect):
                    return None  # the lookup right after our claim: the store knows
                hit = store.lookup(effect.fingerprint)  # (self.store is full_store's)
                if hit is None:
                    return None
                commit = hit.loaded_commit()
                if commit.result is not None and _counts_hits(store):
                    # served: counted in memory (no write on the hit path), and marked
                    # served so the flow asks for no Touch
                    commit.from_cache = True
                    cast(HitCounter, store).record_hit(
                        commit.hash, time.time(), commit.compute_seconds or 0.0
                    )
                return commit
            case Touch():  # a store that counts hits recorded the access already
                if not _counts_hits(store):
                    try:
                        store.touch(effect.hash, effect.when)
                    except StoreError as exc:  # an access time is not worth failing a hit for
                        log.debug("could not record access to %s: %s", effect.hash[:12], exc)
                return None
            case Claim():
                self.executor._orphans.retry(store)  # a release that failed before, again
                return store.try_claim(effect.fingerprint, effect.lease)
            case WaitRelease():
                return store.wait_for_release(effect.fingerprint, effect.timeout)
            case Release():
                return self.release(effect)
            case Execute():
                return self.execute(effect)
            case Sleep():
                return time.sleep(effect.seconds)
            case Serialize():
                return serialize(self.serializer, effect.value)
            case Record():  # one transaction where the store can (see stores.base)
                return full_store(store).put_result(effect.data, effect.build, effect.release)
            case LatestFor():
                return store.latest_for_fingerprint(effect.fingerprint)
            case PutCommit():
                store.put_commit(effect.commit)
                if effect.commit.status is TaskStatus.FAILED and log.isEnabledFor(logging.INFO):
                    log_commit(effect.commit, "failed")
                return None
            case _:
                assert_never(effect)

    def release(self, e: Release) -> BaseException | None:
        """Give the lease back; one that cannot be is retried in the background (and this
        process stops waiting for it), so the error that ended the call stays the error.
        Answers the release's error, if any (the flow notes it)."""
        try:
            self.store.release_claim(e.fingerprint, e.owner)
        except BaseException as exc:
            ttl = self.executor.running_ttl.total_seconds()
            self.executor._orphans.add(self.store, e.fingerprint, e.owner, ttl, exc)
            if not isinstance(exc, Exception):
                raise  # a second Ctrl-C: stop, the release goes on in the background
            return exc
        return None

    def execute(self, e: Execute) -> Outcome:
        if self.plain:  # the flow described the call just before: no handle to replace
            call_args, call_kwargs = self.args, self.kwargs
        else:
            call_args = replace_refs(self.args, _load_ref)
            call_kwargs = replace_refs(self.kwargs, _load_ref)
        if e.lease is not None:
            self.heartbeat.add(self.store, e.fingerprint, e.lease.owner)
        try:
            if e.timeout is None:
                return run_inline(self.func, call_args, call_kwargs)
            return _run_with_timeout(self.func, call_args, call_kwargs, e.timeout)
        finally:
            if e.lease is not None:
                self.heartbeat.remove(e.lease.owner)


def _load_ref(ref: Any) -> Any:
    return ref.load()


def _run_with_timeout(func: Callable[..., Any], args: Any, kwargs: Any, timeout: float) -> Outcome:
    box: list[Outcome] = []
    escaped: list[BaseException] = []

    def target() -> None:
        try:
            box.append(run_inline(func, args, kwargs))
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: not a task failure
            escaped.append(exc)

    start = time.perf_counter()
    worker = threading.Thread(target=target, name="cashet-task", daemon=True)
    worker.start()
    worker.join(timeout)
    if box:
        return box[0]
    if escaped:
        # The task raised what a plain call lets through (a Ctrl-C, sys.exit()): it leaves
        # this call as itself, as without a timeout, never disguised as a timeout.
        raise escaped[0]
    return Outcome.failed(timeout_error(func, timeout, soft=True), time.perf_counter() - start)
