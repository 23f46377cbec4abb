"""``ProcessExecutor``: each attempt of a miss in a local worker process, with hard timeouts.

The whole call flow runs in the calling process, as with
:class:`~cashet.executors.local.LocalExecutor` (lookup, lease and its heartbeat, retries,
recording): only each attempt (``Execute``) goes to a worker process of a small pool of
our own (``multiprocessing``, ``spawn`` by default). An attempt that outlives its
``_timeout`` is *killed* with its process (SIGKILL), which the pool replaces: the attempt
fails with ``TaskTimeoutError`` (retried if the task has retries; the lease released at
the end, as always). A worker process that dies mid-attempt (killed, out of memory) fails
that attempt the same way, with an ``ExecutorError``: nothing half-written is ever
recorded, and a later submit runs the call again.

The value comes back through the worker's pipe (a local pool: no scheduler in between),
and is serialized and stored here.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from datetime import timedelta
from typing import Any

from cashet._process import current_pid
from cashet.core.effects import Execute, Outcome
from cashet.core.flow import call_flow
from cashet.core.refs import replace_refs
from cashet.errors import ExecutorError, TaskTimeoutError
from cashet.executors._drive import finish, run_flow
from cashet.executors.local import LocalExecutor, _SyncHandler
from cashet.executors.remote import pack_call, unpack_call
from cashet.hashing.commits import seal_commit
from cashet.models import Commit, TaskDef
from cashet.protocols import Serializer, Store

__all__ = ["ProcessExecutor"]


def _worker_main(conn: Any) -> None:
    """A worker process: run each call it is sent until its pipe closes."""
    import pickle

    from cashet.executors._drive import run_inline

    while True:
        try:
            pickler, data = conn.recv()
        except (EOFError, OSError):
            return
        try:
            func, args, kwargs = unpack_call(pickler, data)
        except Exception as exc:
            conn.send(("error", _portable(exc), traceback.format_exc(), 0.0))
            continue
        conn.send(("started",))  # the attempt's time starts now (not with an import)
        outcome = run_inline(func, args, kwargs)
        if outcome.error is not None:
            error = _portable(outcome.error)
            conn.send(("error", error, outcome.traceback_text, outcome.seconds))
            continue
        try:
            reply = _dumps(("ok", outcome.value, "", outcome.seconds))
        except Exception as exc:
            text = traceback.format_exc()
            reply = pickle.dumps(("error", _portable(exc), text, outcome.seconds))
        conn.send_bytes(reply)


def _dumps(obj: Any) -> bytes:
    """Pickled by cloudpickle when it is there (a value of a class defined in the driver's
    ``__main__`` travels back by value), else by pickle."""
    import pickle

    try:
        import cloudpickle
    except ImportError:
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    data: bytes = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a ``RuntimeError`` saying what it was."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


class _Worker:
    __slots__ = ("conn", "process")

    def __init__(self, ctx: Any) -> None:
        parent, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main, args=(child,), name="cashet-process", daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class _Pool:
    """At most ``size`` worker processes; an idle one serves the next attempt."""

    def __init__(self, size: int, ctx: Any) -> None:
        self._ctx = ctx
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = current_pid()

    def _take(self) -> _Worker:
        with self._lock:
            if self._pid != current_pid():  # a forked child: the workers are the parent's
                self._idle, self._pid = [], current_pid()
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    return worker
                worker.conn.close()
        return _Worker(self._ctx)

    def run(self, func: Any, args: Any, kwargs: Any, timeout: float | None, what: str) -> Outcome:
        pickler, data = pack_call((func, args, kwargs), what)
        with self._slots:
            worker = self._take()
            start = time.perf_counter()
            done = False
            try:
                worker.conn.send((pickler, data))
                reply = worker.conn.recv()  # "started", or the error of loading the call
                if reply[0] == "started":
                    start = time.perf_counter()
                    if not worker.conn.poll(timeout):
                        seconds = time.perf_counter() - start
                        return Outcome.failed(_timed_out(func, timeout), seconds)
                    reply = worker.conn.recv()
                done = True
            except (EOFError, OSError):
                worker.process.join(1)
                code = worker.process.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                return Outcome.failed(
                    ExecutorError(f"{what}: its worker process died mid-attempt ({how})"),
                    time.perf_counter() - start,
                )
            finally:
                if done:
                    with self._lock:
                        self._idle.append(worker)
                else:  # timed out, interrupted or dead: the process goes
                    worker.kill()
        status, value, text, seconds = reply
        if status == "ok":
            return Outcome(value=value, seconds=seconds)
        outcome = Outcome.failed(value, seconds)
        outcome.traceback_text = text or outcome.traceback_text
        return outcome

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.conn.close()  # its loop ends
            worker.process.join(5)
            if worker.process.is_alive():
                worker.kill()


def _timed_out(func: Any, timeout: float | None) -> TaskTimeoutError:
    name = getattr(func, "__qualname__", func)
    return TaskTimeoutError(
        f"{name!s} timed out after {timeout:g}s: its worker process was killed (hard timeout)"
    )


class ProcessExecutor(LocalExecutor):
    """Run each attempt of a miss in a local worker process; a timeout kills it.

    Args:
        max_workers: processes at most (default: the number of CPUs); attempts beyond wait.
        running_ttl: as for :class:`~cashet.executors.local.LocalExecutor`.
        mp_context: a ``multiprocessing`` start method (``"spawn"`` by default: a fresh
            interpreter, safe with threads; ``"forkserver"`` or ``"fork"`` start faster).

    Functions defined in ``__main__`` or a closure are sent by value (cloudpickle, else
    dill). A script using it must guard its entry point (``if __name__ == "__main__":``),
    as with any spawned process.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        running_ttl: timedelta = timedelta(minutes=5),
        mp_context: str = "spawn",
    ) -> None:
        super().__init__(running_ttl)
        size = max_workers if max_workers is not None else (os.cpu_count() or 1)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"max_workers must be a positive integer, not {max_workers!r}")
        self.max_workers = size
        self._pool = _Pool(size, multiprocessing.get_context(mp_context))

    def submit(
        self,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        task_def: TaskDef,
        store: Store,
        serializer: Serializer,
    ) -> Commit:
        """Return the commit for this call: cached, computed by another caller, or run in a
        worker process."""
        handler = _ProcessHandler(func, args, kwargs, store, serializer, self)
        flow = call_flow(task_def, self.running_ttl, seal_commit, handler.describe)
        return finish(run_flow(flow, handler.answer, False))

    def shutdown(self) -> None:
        """Stop the idle worker processes (busy ones stop when their attempt ends)."""
        self._pool.shutdown()

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class _ProcessHandler(_SyncHandler):
    __slots__ = ()

    def execute(self, e: Execute) -> Outcome:
        call_args = replace_refs(self.args, _load_ref)
        call_kwargs = replace_refs(self.kwargs, _load_ref)
        ex = self.executor
        assert isinstance(ex, ProcessExecutor)
        what = f"task {getattr(self.func, '__qualname__', self.func)!s}"
        if e.lease is not None:
            self.heartbeat.add(self.store, e.fingerprint, e.lease.owner)
        try:
            return ex._pool.run(self.func, call_args, call_kwargs, e.timeout, what)
        finally:
            if e.lease is not None:
                self.heartbeat.remove(e.lease.owner)


def _load_ref(ref: Any) -> Any:
    return ref.load()
