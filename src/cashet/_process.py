"""Process-wide concerns in one place: who we are (pid, host), what a forked child must
redo, and the small bounded caches the hot paths keep.

Who we are, for the leases we take: host name, boot id, PID namespace and pid.

Every other module asks here instead of keeping its own pid cache or fork hook: one
``os.register_at_fork`` for the whole package, hooks run in the order they were added.

:data:`fork_gate` keeps forks and native library calls apart: code that must not be
interrupted by a fork (every SQLite call) runs inside ``with fork_gate:``; a fork waits
until no thread is inside, and no thread enters until the fork is done. A thread forked in
the middle of a C library call would leave the child with that library's mutexes held
forever (the child then hangs in ``sqlite3_open``) or with its half-made locks.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import TypeVar

__all__ = [
    "BoundedCache",
    "ForkGate",
    "after_fork_in_child",
    "before_fork",
    "current_pid",
    "fork_gate",
    "boot_id",
    "hostname",
    "pid_namespace",
]

K = TypeVar("K")
V = TypeVar("V")

# getpid() is a system call and the hot paths ask for it on every call (lease owners,
# connection checks), so it is cached and refreshed in a forked child.
_pid = os.getpid()
_child_hooks: list[Callable[[], None]] = []


def current_pid() -> int:
    """Return this process's id (cached; correct after ``fork``)."""
    return _pid


@functools.cache
def hostname() -> str:
    """Return this host's name, as recorded in the leases it takes."""
    return socket.gethostname()


@functools.cache
def boot_id() -> str:
    """Return this boot's id (Linux: ``/proc/sys/kernel/random/boot_id``), or ``""``.

    Containers share their host's: it tells two hosts of one name (or one host before and
    after a reboot) apart, as recorded in the leases this process takes.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except (OSError, ValueError):
        return ""


def _read_pid_namespace() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except (OSError, ValueError):
        return ""
    return link.partition("[")[2].rstrip("]") or link


_pid_ns = _read_pid_namespace()


def pid_namespace() -> str:
    """Return the id of the PID namespace this process's pid is valid in (Linux: the inode
    of ``/proc/self/ns/pid``), or ``""`` where unknown.

    Two containers of one host name have different ones: a pid seen in one means nothing
    in the other. Refreshed in a forked child (a parent that called ``unshare(CLONE_NEWPID)``
    forks its children into a new namespace).
    """
    return _pid_ns


def after_fork_in_child(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` in every child forked from now on (after the pid is refreshed).

    Usable as a decorator. A hook resets what the child must not share with its parent:
    connections, locks another thread may have held, thread pools that did not survive.
    """
    _child_hooks.append(hook)
    return hook


def before_fork(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` in the forking thread before every fork from now on, once no thread is
    inside :data:`fork_gate` (and none can enter until the fork is done).

    Usable as a decorator. A hook may make the parent's state safe to copy (close
    connections that the child must not inherit); it must not enter the gate itself.
    """
    _before_hooks.append(hook)
    return hook


class ForkGate:
    """A process-wide gate between forks and the code that must not be forked through.

    ``with fork_gate:`` is a shared entry, re-entrant per thread; a fork takes the gate
    exclusively: it waits for the threads inside to leave and holds new ones at the door
    until the fork is done, in the parent and in the child. A fork made by a thread that
    is itself inside the gate waits only for the others.
    """

    def __init__(self) -> None:
        self._reset(0)

    def _reset(self, inside: int) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        # One item per thread inside. The hot path takes no lock: list.append and pop are
        # atomic, and a thread re-checks ``_forking`` after it counted itself in, while a
        # fork counts the threads after it raised ``_forking`` (one of them sees the other).
        self._inside: list[None] = [None] * inside
        self._forking = False
        if inside == 0:
            self._depth = threading.local()

    def __enter__(self) -> None:
        depth = self._depth
        n = getattr(depth, "n", 0)
        if n == 0:
            self._inside.append(None)
            if self._forking:
                self._wait_for_fork()
        depth.n = n + 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        depth = self._depth
        depth.n -= 1
        if depth.n == 0:
            self._leave()

    def _leave(self) -> None:
        self._inside.pop()
        if self._forking:
            with self._lock:
                self._idle.notify_all()

    def _wait_for_fork(self) -> None:
        self._leave()
        with self._lock:
            while self._forking:
                self._idle.wait()
            self._inside.append(None)  # under the lock: a fork to come counts it

    def _close(self) -> int:
        """Take the gate exclusively (the fork is next); return how deep this thread is in."""
        own = getattr(self._depth, "n", 0)
        with self._lock:
            self._forking = True
            while len(self._inside) > (1 if own else 0):
                self._idle.wait()
        return own

    def _open(self) -> None:
        with self._lock:
            self._forking = False
            self._idle.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the gate alone, as a fork does: wait for the other threads inside to
        leave, keep new ones out until the block ends (closing connections that other
        threads may be using)."""
        self._close()
        try:
            yield
        finally:
            self._open()


#: The one gate of the process (see the module docstring).
fork_gate = ForkGate()
_before_hooks: list[Callable[[], None]] = []


def _before() -> None:
    fork_gate._close()
    for hook in _before_hooks:
        hook()


def _in_parent() -> None:
    fork_gate._open()


def _in_child() -> None:
    global _pid, _pid_ns
    _pid = os.getpid()
    _pid_ns = _read_pid_namespace()
    # Only the forking thread lives on: the gate starts over with it alone (inside or not).
    fork_gate._reset(1 if getattr(fork_gate._depth, "n", 0) else 0)
    for hook in _child_hooks:
        hook()


os.register_at_fork(before=_before, after_in_parent=_in_parent, after_in_child=_in_child)


class BoundedCache(dict[K, V]):
    """A dict that holds at most ``limit`` entries, dropping the oldest insertion first.

    Reads are plain ``dict`` reads (the hit paths use ``.get``); only :meth:`put` evicts.
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError(f"BoundedCache limit must be at least 1, got {limit}")
        self.limit = limit

    def put(self, key: K, value: V) -> None:
        """Insert ``key``, dropping the oldest entry when the cache is full.

        Safe beside other threads' ``put``s: iterating a dict another thread changes can
        raise ``RuntimeError``; then the oldest entry is left for a later ``put``, which
        drops up to a few entries to get back under the limit (the bound self-corrects).
        """
        if key not in self:
            for _ in range(4):
                if len(self) < self.limit:
                    break
                with suppress(RuntimeError, StopIteration):  # changed (or emptied) meanwhile
                    self.pop(next(iter(self)), None)
        self[key] = value
