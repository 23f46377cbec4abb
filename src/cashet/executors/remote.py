"""Shipping misses to other processes: what the cluster executors share.

The driver (the process that calls ``submit``) runs the first half of a call,
:func:`~cashet.core.flow.acquire_flow`: the key is computed there (where the source is),
a hit is answered there and never touches the cluster, and a miss takes its lease there.
Only a miss is shipped, as a :class:`Shipment`: its ``TaskDef`` and lease, the store's
*configuration* (:mod:`cashet.stores.shipping`), the readable description of the call
(made on the driver, as it was keyed) and the pickled call. The worker runs
:func:`run_shipped`: it reopens the store (once per process), runs the second half,
:func:`~cashet.core.flow.compute_flow` (re-check, run with retries, heartbeat, record,
release), and returns only the commit: the result's bytes stay in the shared store and
the driver's ``ResultRef`` loads them lazily.

The call travels pickled by cloudpickle (else dill): a function defined in ``__main__``, a
notebook or a closure by value; an importable one by reference (also when the module
name is its ``@client.task`` wrapper). ``ResultRef`` arguments travel as handles that load
from the worker's store.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import threading
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cashet.core.effects import Effect, Release
from cashet.core.flow import Acquired, Description, acquire_flow, compute_flow, new_lease
from cashet.core.refs import find_refs, replace_refs
from cashet.errors import CashetError, ExecutorError
from cashet.executors._drive import (
    FlowExecutor,
    describe_call,
    drive,
    finish,
    log_commit,
    run_flow,
)
from cashet.executors.local import LocalExecutor, _SyncHandler
from cashet.hashing.commits import seal_commit
from cashet.models import Commit, Lease, ObjectRef, ResultRef, TaskDef, utcnow
from cashet.protocols import Serializer, Store
from cashet.stores.base import full_store
from cashet.stores.config import StoreConfig
from cashet.stores.shipping import open_store, store_config

__all__ = [
    "Shipment",
    "ShippingExecutor",
    "drive_acquire",
    "pack_call",
    "run_shipped",
    "unpack_call",
]

log = logging.getLogger("cashet")

#: A commit's read-along result bytes travel back only when at most this large.
_SMALL = 1024


@dataclass(frozen=True, slots=True)
class Shipment:
    """One miss, as a worker receives it."""

    task_def: TaskDef
    lease: Lease | None
    store: StoreConfig
    running_ttl: timedelta
    description: Description
    #: ``"cloudpickle"`` or ``"dill"``: what ``call`` was pickled with.
    pickler: str
    #: ``(func, args, kwargs, serializer)``, pickled.
    call: bytes


# --- pickling the call -------------------------------------------------------------------


def _by_name(func: types.FunctionType) -> tuple[str, str] | None:
    """``(module, qualname)`` when ``func`` is its module's ``@client.task`` (or other
    ``functools.wraps``) wrapper's ``__wrapped__``: importable on a worker by name."""
    import sys

    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in qualname:
        return None
    target: Any = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    if target is not func and getattr(target, "__wrapped__", None) is func:
        return module, qualname
    return None


def load_by_name(module: str, qualname: str) -> Any:
    """The function a wrapper named ``module.qualname`` wraps (on the worker)."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target.__wrapped__


def _cloudpickle_dumps(obj: Any) -> bytes:
    import io

    import cloudpickle

    class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, o: Any) -> Any:
            if isinstance(o, types.FunctionType):
                named = _by_name(o)
                if named is not None:
                    return load_by_name, named
            return super().reducer_override(o)

    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def pack_call(obj: Any, what: str) -> tuple[str, bytes]:
    """Pickle ``obj`` (a call: function, arguments, ...) for another process.

    Raises:
        ExecutorError: it cannot be pickled (``what`` names the call in the message).
    """
    try:
        try:
            return "cloudpickle", _cloudpickle_dumps(obj)
        except ImportError:
            import dill

            return "dill", dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, recurse=True)
    except Exception as exc:
        raise ExecutorError(
            f"{what} cannot be sent to a worker process (its function or an argument cannot"
            f" be pickled): {type(exc).__name__}: {exc}"
        ) from exc


def unpack_call(pickler: str, data: bytes) -> Any:
    """The object :func:`pack_call` pickled."""
    if pickler == "dill":
        import dill

        return dill.loads(data)
    return pickle.loads(data)


class _StoreLoader:
    """Loads a ``ResultRef`` argument on a worker, from the store it reopens."""

    __slots__ = ("config", "serializer")

    def __init__(self, config: StoreConfig, serializer: Serializer) -> None:
        self.config = config
        self.serializer = serializer

    def __getstate__(self) -> tuple[StoreConfig, Serializer]:
        return self.config, self.serializer

    def __setstate__(self, state: tuple[StoreConfig, Serializer]) -> None:
        self.config, self.serializer = state

    def __call__(self, ref: ObjectRef, data: bytes | None = None) -> Any:
        if data is not None:
            return self.serializer.loads(data)
        return self.serializer.loads(open_store(self.config).get_blob(ref))


def _shippable_refs(value: Any, loader: _StoreLoader) -> Any:
    def swap(ref: Any) -> Any:
        return ResultRef(ref.commit, loader)

    return replace_refs(value, swap)


# --- the worker's half -------------------------------------------------------------------

_workers: dict[timedelta, LocalExecutor] = {}
_workers_lock = threading.Lock()


def _worker_executor(ttl: timedelta) -> LocalExecutor:
    """This process's executor for leases of ``ttl`` (its heartbeat renews them)."""
    with _workers_lock:
        ex = _workers.get(ttl)
        if ex is None:
            ex = _workers[ttl] = LocalExecutor(ttl)
        return ex


def run_shipped(shipment: Shipment) -> Commit | None:
    """Run a shipped miss on a worker; return its commit (small: no result bytes).

    Returns ``None``, without running anything, when the lease the driver took is no longer
    its own (it expired and someone took it over): the driver then starts the call over.

    Raises:
        TaskError: the function failed on every attempt (the commit of the failure is
            recorded, the lease released).
        ExecutorError: the call or the store cannot be loaded on this worker.
    """
    td, lease = shipment.task_def, shipment.lease
    try:
        func, args, kwargs, serializer = unpack_call(shipment.pickler, shipment.call)
    except Exception as exc:
        if lease is not None:  # the driver may not hear of it (Celery): give it back now
            try:
                full_store(open_store(shipment.store)).release_claim(td.fingerprint, lease.owner)
            except Exception as release_error:
                exc.add_note(f"the lease could not be released either: {release_error}")
        raise ExecutorError(
            f"task {td.func_name} cannot be loaded on the worker (is its module importable"
            f" there?): {type(exc).__name__}: {exc}"
        ) from exc
    store = full_store(open_store(shipment.store))
    ex = _worker_executor(shipment.running_ttl)
    if lease is None:  # cache=False: nothing to share, nothing to guard
        return _compute(shipment, None, func, args, kwargs, serializer, store, ex)
    # The same shipment delivered twice (an engine's rerun, a broker's redelivery) holds
    # the same driver lease: a second, worker-held lease on the run itself keeps a
    # duplicate from running while the first is alive (judged by the worker's own
    # process, so a dead first run is taken over at once on its host).
    run_fp = td.fingerprint + RUN_SUFFIX
    mine = new_lease(shipment.running_ttl, td.func_name)
    while not store.try_claim(run_fp, mine):
        store.wait_for_release(run_fp, shipment.running_ttl.total_seconds())
        hit = store.lookup(td.fingerprint)
        if hit is not None and hit.commit.result is not None:
            return _small(hit.loaded_commit())  # the first delivery finished it
        mine = new_lease(shipment.running_ttl, td.func_name)
    ex._heartbeat.add(store, run_fp, mine.owner)
    try:
        if not store.renew_claim(td.fingerprint, lease.owner, utcnow() + shipment.running_ttl):
            return None  # no longer the driver's: it starts over
        return _compute(shipment, lease, func, args, kwargs, serializer, store, ex)
    finally:
        ex._heartbeat.remove(mine.owner)
        try:
            store.release_claim(run_fp, mine.owner)
        except Exception as exc:  # it expires; the driver's lease is what guards the call
            log.warning("could not release the run lease of %s: %s", td.func_name, exc)


#: Appended to a fingerprint for the worker-held lease on one shipped run.
RUN_SUFFIX = "#run"


def _compute(
    shipment: Shipment,
    lease: Lease | None,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    serializer: Serializer,
    store: Any,
    ex: LocalExecutor,
) -> Commit:
    handler = _SyncHandler(func, args, kwargs, store, serializer, ex)
    description = shipment.description
    flow = compute_flow(shipment.task_def, lease, seal_commit, lambda _td: description)
    return _small(finish(run_flow(flow, handler.answer, False)))


def _small(commit: Commit) -> Commit:
    if commit.result_data is not None and len(commit.result_data) > _SMALL:
        commit.result_data = None
    return commit


# --- the driver's half -------------------------------------------------------------------


def drive_acquire(
    flow: Generator[Effect, Any, Acquired], answer: Callable[[Effect], Any]
) -> Acquired:
    """Run :func:`~cashet.core.flow.acquire_flow` with blocking answers."""
    return finish(drive(flow, answer, False))


class ShippingExecutor(FlowExecutor):
    """The driver's side of every cluster executor: hits here, misses shipped.

    A subclass says how to start a :class:`Shipment` on its engine (:meth:`_start`, which
    answers a handle), wait for it (:meth:`_wait`) and give up on it (:meth:`_cancel`).

    Args:
        running_ttl: how long a lease lasts without renewal (renewed by the worker's
            heartbeat while the task runs). A worker killed mid-task holds its call at
            most this long: then the engine's retry or the next submit runs it.
    """

    #: Workers may run on other hosts (a SQLite store is then refused).
    remote: bool = False

    def __init__(self, running_ttl: timedelta = timedelta(minutes=5)) -> None:
        super().__init__(running_ttl)
        self._local = LocalExecutor(running_ttl)

    # engine hooks

    def _start(self, shipment: Shipment, store: Any) -> Any:
        """Send ``shipment``; answer a handle for :meth:`_wait`. ``store`` is the driver's
        (sync) store, or ``None`` under ``AsyncClient``."""
        raise NotImplementedError

    def _wait(self, handle: Any) -> Commit | None:
        raise NotImplementedError

    def _cancel(self, handle: Any) -> None:
        """Give up on a started shipment (best effort)."""

    def _store_config(self, store: Any) -> StoreConfig:
        return store_config(store, remote=self.remote)

    # the driver

    def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        store: Store,
        serializer: Serializer,
    ) -> Commit:
        """Answer a hit here; ship a miss to a worker and return the commit it recorded.

        Raises:
            TaskError: the function failed on every attempt.
            ExecutorError: the call could not be shipped, loaded or run by the engine (the
                lease is released).
        """
        config = self._store_config(store)  # before any claim: a bad store fails at once
        handler = _SyncHandler(func, args, kwargs, store, serializer, self._local)
        while True:
            got = drive_acquire(acquire_flow(task_def, self.running_ttl), handler.answer)
            if isinstance(got, Commit):
                return got
            done = self._ship(func, args, kwargs, task_def, got, config, serializer, handler)
            if done is not None:
                if log.isEnabledFor(logging.INFO):
                    log_commit(done, "ran")
                return done
            log.info("lease on %s was lost before a worker ran it: again", task_def.fingerprint)

    def _ship(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        lease: Lease | None,
        config: StoreConfig,
        serializer: Serializer,
        handler: _SyncHandler,
    ) -> Commit | None:
        handle: Any = None
        try:
            shipment = self.shipment(func, args, kwargs, task_def, lease, config, serializer)
            handle = self._start(shipment, handler.store)
            if lease is None:
                return self._wait(handle)
            # Renewed here too while the call waits in the engine's queue (the worker renews
            # it once it runs): a long queue never lets the lease expire under it.
            handler.heartbeat.add(handler.store, task_def.fingerprint, lease.owner)
            try:
                return self._wait(handle)
            finally:
                handler.heartbeat.remove(lease.owner)
        except BaseException as exc:
            if handle is not None:
                try:
                    self._cancel(handle)
                except Exception as cancel_error:  # the original error stays the error
                    log.debug("could not cancel %s: %s", task_def.func_name, cancel_error)
            if lease is not None:  # released already when the worker failed cleanly
                handler.release(Release(task_def.fingerprint, lease.owner))
            if isinstance(exc, CashetError) or not isinstance(exc, Exception):
                raise
            raise ExecutorError(
                f"task {task_def.func_name} could not be run by {type(self).__name__}:"
                f" {type(exc).__name__}: {exc}"
            ) from exc

    def shipment(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        lease: Lease | None,
        config: StoreConfig,
        serializer: Serializer,
    ) -> Shipment:
        """Make the shipment of a miss (the description is made here, on the driver).

        Raises:
            ExecutorError: the call cannot be pickled.
        """
        description = describe_call(func, args, kwargs, task_def)
        if find_refs(kwargs, find_refs(args)):
            loader = _StoreLoader(config, serializer)
            args = _shippable_refs(args, loader)
            kwargs = _shippable_refs(kwargs, loader)
        pickler, data = pack_call((func, args, kwargs, serializer), f"task {task_def.func_name}")
        return Shipment(task_def, lease, config, self.running_ttl, description, pickler, data)
