"""BLAKE3 hashers that use every core for large inputs, and stay safe across ``fork``.

Multithreaded BLAKE3 runs on one global thread pool that does not survive ``fork``: a
child of a process that started it hangs if it hashes with threads again, so such a child
hashes on one thread (tests/test_sqlite_store.py covers the fork case).
"""

from __future__ import annotations

from blake3 import blake3

from cashet import _process

__all__ = ["MULTITHREAD_MIN", "new_hasher"]

#: Inputs at least this large are hashed on every core.
MULTITHREAD_MIN = 8 << 20

_pool_started = False
_pool_lost = False


@_process.after_fork_in_child
def _lose_pool() -> None:
    global _pool_lost
    _pool_lost = _pool_lost or _pool_started


def new_hasher(size_hint: int = 0) -> blake3:
    """Return a fresh hasher; multithreaded when ``size_hint`` is large and it is safe."""
    global _pool_started
    if size_hint >= MULTITHREAD_MIN and not _pool_lost:
        _pool_started = True
        return blake3(max_threads=blake3.AUTO)
    return blake3()
