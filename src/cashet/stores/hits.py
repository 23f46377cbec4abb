"""Hits counted in memory and written in batches: no write transaction on the hit path.

A store with the :class:`~cashet.protocols.HitCounter` capability keeps one
:class:`HitRecorder`. Every hit adds to it (the count, the time of the last hit and the
compute seconds the hit saved, per commit) under a lock, with no IO. The batch is written by
the store's ``write`` function (one transaction, or one pipelined call):

* every :data:`FLUSH_EVERY` seconds by one process-wide daemon thread, while hits wait;
* when the store collects garbage (``evict``: access times decide what goes) or closes;
* at a normal interpreter exit (``atexit``).

A process killed with SIGKILL loses the hits recorded since the last flush (their counts and
access times), never data. A forked child drops the hits it inherited: its parent writes them.

Only recorders holding unwritten hits are referenced from here, so a store that is dropped
after its last flush is collected as ever.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeAlias

from cashet._process import after_fork_in_child

__all__ = ["FLUSH_EVERY", "HitBatch", "HitRecorder", "flush_all"]

log = logging.getLogger("cashet")

#: Seconds between two background flushes of the hits waiting to be written.
FLUSH_EVERY = 2.0

#: What a flush writes: commit hash -> [hits, time of the last one (epoch seconds), compute
#: seconds saved].
HitBatch: TypeAlias = dict[str, list[Any]]

_waiting: set[HitRecorder] = set()  # recorders with unwritten hits (strong references)
_waiting_lock = threading.Lock()
_flusher: threading.Thread | None = None
_wake = threading.Event()


class HitRecorder:
    """The unwritten hits of one store.

    Args:
        write: writes one batch (one transaction, or one pipelined call); raising leaves
            the batch to the next flush.
        name: what the log names when a batch cannot be written.
    """

    __slots__ = ("__weakref__", "_flushing", "_lock", "_name", "_pending", "_write", "closed")

    def __init__(self, write: Callable[[HitBatch], None], name: str) -> None:
        self._write = write
        self._name = name
        self._pending: HitBatch = {}
        self._lock = threading.Lock()
        # Held while a batch is written: ``close`` waits for a flush in another thread
        # (the flusher's) to end before the store closes the connection it writes on.
        self._flushing = threading.Lock()
        self.closed = False

    def record(self, hash: str, when: float, seconds: float) -> None:
        """Count one hit of commit ``hash`` at ``when`` (epoch seconds) that saved
        ``seconds`` of compute."""
        with self._lock:
            entry = self._pending.get(hash)
            if entry is not None:
                entry[0] += 1
                entry[1] = when if when > entry[1] else entry[1]
                entry[2] += seconds
            else:
                if not self._pending:
                    _enlist(self)
                self._pending[hash] = [1, when, seconds]

    def pending(self) -> int:
        """The number of hits recorded and not yet written."""
        with self._lock:
            return int(sum(e[0] for e in self._pending.values()))

    def flush(self) -> None:
        """Write the hits recorded so far (a failure is logged; they wait for the next one)."""
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            self._write(batch)
        except Exception as exc:  # an access time is not worth failing anything for
            log.debug("could not record %d hits on %s: %s", len(batch), self._name, exc)
            if self.closed:
                return
            with self._lock:
                for h, (n, ts, saved) in batch.items():
                    entry = self._pending.get(h)
                    if entry is None:
                        if not self._pending:
                            _enlist(self)
                        self._pending[h] = [n, ts, saved]
                    else:
                        entry[0] += n
                        entry[1] = max(entry[1], ts)
                        entry[2] += saved

    def close(self) -> None:
        """Flush, then stop recording (a closed store records nothing more)."""
        self.flush()
        self.closed = True
        with _waiting_lock:
            _waiting.discard(self)


def _enlist(recorder: HitRecorder) -> None:
    """Note ``recorder`` as holding unwritten hits; start the flusher if needed."""
    global _flusher
    with _waiting_lock:
        _waiting.add(recorder)
        if _flusher is None or not _flusher.is_alive():
            _flusher = threading.Thread(target=_run, name="cashet-hits", daemon=True)
            _flusher.start()


def _take_waiting() -> list[HitRecorder]:
    with _waiting_lock:
        waiting = list(_waiting)
        _waiting.clear()
    return waiting


def flush_all() -> None:
    """Write the unwritten hits of every store of this process (at exit, and for tests)."""
    for recorder in _take_waiting():
        recorder.flush()


def _run() -> None:
    global _flusher
    while True:
        _wake.wait(FLUSH_EVERY)
        _wake.clear()
        flush_all()
        with _waiting_lock:
            if not _waiting:
                _flusher = None
                return


atexit.register(flush_all)


@after_fork_in_child
def _drop_inherited() -> None:
    """A forked child forgets the parent's unwritten hits (the parent writes them)."""
    global _flusher, _waiting_lock
    for recorder in _waiting:
        recorder._lock = threading.Lock()
        recorder._pending = {}
    _waiting.clear()
    _waiting_lock = threading.Lock()
    _flusher = None
