"""Process-wide concerns in one place: who we are (pid, host), what a forked child must
redo, and the small bounded caches the hot paths keep.

Every other module asks here instead of keeping its own pid cache or fork hook: one
``os.register_at_fork`` for the whole package, hooks run in the order they were added.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from typing import TypeVar

__all__ = ["BoundedCache", "after_fork_in_child", "current_pid", "hostname"]

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


def after_fork_in_child(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` in every child forked from now on (after the pid is refreshed).

    Usable as a decorator. A hook resets what the child must not share with its parent:
    connections, locks another thread may have held, thread pools that did not survive.
    """
    _child_hooks.append(hook)
    return hook


def _in_child() -> None:
    global _pid
    _pid = os.getpid()
    for hook in _child_hooks:
        hook()


os.register_at_fork(after_in_child=_in_child)


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
        """Insert ``key``, dropping the oldest entry when the cache is full."""
        if key not in self and len(self) >= self.limit:
            self.pop(next(iter(self)), None)
        self[key] = value
