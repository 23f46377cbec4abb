"""``CeleryExecutor``: misses shipped as Celery tasks.

Making the executor registers one task, ``cashet.run_shipped``, on the given app; workers
are the app's own (``celery -A <module that builds the app and the executor> worker``).
The task is sent where the app's configuration routes it (its default queue,
``task_default_queue``, its ``task_routes``): cashet has no queue of its own. Its one
argument is the shipment, pickled and base64-encoded in a JSON string, so it travels with
the app's default serializer; it returns nothing and keeps no result.

No result backend is needed: the driver holds the call's lease (renewing it while the
message waits in the queue) and watches the store; when the worker has released the lease,
the commit it recorded is there (a hit, or the failure it recorded). Celery acknowledges a
message before running it by default (at most once: a worker killed mid-task loses it, and
the driver waits); with ``task_acks_late`` and ``task_reject_on_worker_lost`` the message is
delivered again, and the run lease (:func:`cashet.executors.remote.run_shipped`) makes a
duplicate delivery harmless. ``celery`` is imported by the app, never by ``import cashet``.
"""

from __future__ import annotations

import base64
import logging
import pickle
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cashet.errors import ExecutorError, TaskError
from cashet.executors.remote import RUN_SUFFIX, Shipment, ShippingExecutor, _small, run_shipped
from cashet.models import Commit, TaskStatus
from cashet.stores.base import full_store
from cashet.stores.shipping import open_store

__all__ = ["TASK_NAME", "CeleryExecutor", "run_celery_task"]

log = logging.getLogger("cashet")

#: The name of cashet's task on a Celery app.
TASK_NAME = "cashet.run_shipped"


def run_celery_task(data: str) -> None:
    """The Celery task: run the shipment ``data`` (base64 of its pickle) on this worker."""
    shipment = pickle.loads(base64.b64decode(data))
    run_shipped(shipment)


@dataclass(slots=True)
class _Sent:
    shipment: Shipment
    store: Any
    before: str | None
    result: Any


class CeleryExecutor(ShippingExecutor):
    """Run misses on a Celery app's workers (needs ``cashet[celery]``).

    Args:
        app: the ``celery.Celery`` app; its task ``cashet.run_shipped`` is registered at
            once, so build the executor in the module workers import (``celery -A``).
        running_ttl: see :class:`~cashet.executors.remote.ShippingExecutor`.
        remote: the workers may run on other hosts (default): a SQLite store is refused;
            pass ``False`` when every worker runs on this host.
        poll: seconds between two looks at the store while a call runs.
        start_timeout: seconds a call may wait for a worker to take it; then the driver
            gives up with ``ExecutorError`` (the message is revoked and the lease given
            back: a worker that takes it later runs nothing). ``None`` (default): wait as
            long as it takes, with a warning in the log every minute.

    Calls with ``cache=False`` cannot be run here (their commit is found through the lease
    and the cache): they raise ``ExecutorError``.
    """

    def __init__(
        self,
        app: Any,
        running_ttl: timedelta = timedelta(minutes=5),
        remote: bool = True,
        poll: float = 0.5,
        start_timeout: float | None = None,
    ) -> None:
        super().__init__(running_ttl)
        if start_timeout is not None and not start_timeout > 0:
            raise ValueError(f"start_timeout must be a positive number, got {start_timeout!r}")
        self.app = app
        self.remote = remote
        self.poll = poll
        self.start_timeout = start_timeout
        self.task = app.task(name=TASK_NAME, ignore_result=True)(run_celery_task)

    def _start(self, shipment: Shipment, store: Any) -> _Sent:
        td = shipment.task_def
        if shipment.lease is None:
            raise ExecutorError(
                f"task {td.func_name}: CeleryExecutor runs cached calls only (cache=False has"
                " no lease to follow); run it with another executor"
            )
        # The driver's own store (a second SQLiteStore on the same directory in this
        # process would not see the worker's release: see the report of issue 14).
        store = full_store(open_store(shipment.store) if store is None else store)
        before = store.latest_for_fingerprint(td.fingerprint)
        data = base64.b64encode(pickle.dumps(shipment, pickle.HIGHEST_PROTOCOL)).decode()
        result = self.task.apply_async(args=(data,))
        return _Sent(shipment, store, None if before is None else before.hash, result)

    def _wait(self, handle: Any) -> Commit | None:
        sent: _Sent = handle
        td, lease, store = sent.shipment.task_def, sent.shipment.lease, sent.store
        assert lease is not None
        fp = td.fingerprint
        waiting = _Waiting(self.start_timeout)
        while True:
            claim = store.get_claim(fp)
            if claim is not None and claim.owner == lease.owner:
                if not waiting.started and store.get_claim(fp + RUN_SUFFIX) is not None:
                    waiting.started = True  # a worker holds the run: it has the message
                waiting.check(td.func_name, self._queue())
                store.wait_for_release(fp, self.poll)  # ours is renewed: returns at ``poll``
                continue
            hit = store.lookup(fp)
            if hit is not None and hit.commit.result is not None:
                return _small(hit.loaded_commit())
            latest = store.latest_for_fingerprint(fp)
            failed = latest is not None and latest.hash != sent.before
            if failed and latest is not None and latest.status is TaskStatus.FAILED:
                text = latest.error or ""
                last = text.strip().splitlines()[-1] if text.strip() else "failed"
                raise TaskError(
                    f"task {td.func_name} failed on a Celery worker: {last}",
                    func_name=td.func_name,
                    traceback_text=text,
                )
            if claim is not None:
                return None  # someone else's lease now: the driver starts over
            raise ExecutorError(
                f"task {td.func_name}: a Celery worker gave its lease back without a result"
                " (see the worker's log)"
            )

    def _cancel(self, handle: Any) -> None:
        sent: _Sent = handle
        sent.result.revoke()  # best effort: a late worker finds the lease gone anyway

    def _queue(self) -> str:
        routes = self.app.conf.task_routes
        queue = str(self.app.conf.task_default_queue)
        return f"queue {queue!r}" if not routes else f"the queue the app routes {TASK_NAME} to"

    def __repr__(self) -> str:
        return f"CeleryExecutor({self.app!r})"


class _Waiting:
    """How long a sent call has waited for a worker: a warning every minute, an error at
    ``start_timeout``."""

    __slots__ = ("deadline", "next_warning", "start", "started")

    def __init__(self, start_timeout: float | None) -> None:
        self.start = time.monotonic()
        self.deadline = None if start_timeout is None else self.start + start_timeout
        self.next_warning = self.start + _WARN_EVERY
        self.started = False

    def check(self, name: str, queue: str) -> None:
        if self.started:
            return
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            raise ExecutorError(
                f"no Celery worker took task {name} within {now - self.start:.0f}s ({queue}):"
                " are workers running (celery -A <module that makes the executor> worker)"
                " and consuming that queue?"
            )
        if now >= self.next_warning:
            self.next_warning = now + _WARN_EVERY
            log.warning(
                "task %s has waited %.0fs for a Celery worker (%s)", name, now - self.start, queue
            )


#: Seconds between two warnings that a sent call still waits for a worker.
_WARN_EVERY = 60.0
