"""Faults between processes: forks under load, leases whose release fails, holders in other
PID namespaces (issue 13, items 2, 3 and 4). Real forks, real processes, a real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cashet import Client
from cashet.async_client import AsyncClient

pytestmark = [pytest.mark.filterwarnings("ignore::cashet.errors.ClosureWarning")]

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _square(x: int) -> int:
    return x * x


def _wait_child(pid: int, timeout: float) -> int | None:
    """The exit status of child ``pid``, or ``None`` (it is killed) when it is still running
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@needs_fork
@pytest.mark.slow
def test_forks_while_threads_use_the_sqlite_store(tmp_path: Path) -> None:
    """Item 2: 4 threads hammer the store while 30 children are forked; each child uses the
    store (a miss, then a hit) and exits. None may hang in SQLite's mutexes (a thread was
    inside SQLite at the fork) nor wait for "database is locked" (an inherited lock)."""
    client = Client(store_dir=tmp_path / "cache")
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                client.submit(_square, n * 1_000_000 + i % 50)  # misses, then hits
                client.log(limit=5)
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    stuck: list[int] = []
    failed: list[tuple[int, int | None]] = []
    try:
        time.sleep(0.2)
        for k in range(30):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports by its exit status
                code = 1
                try:
                    ref = client.submit(_square, -1 - k)
                    again = client.submit(_square, -1 - k)
                    if ref.load() == (k + 1) ** 2 and again.commit.from_cache:
                        code = 0
                finally:
                    os._exit(code)
            status = _wait_child(pid, 45.0)
            if status is None:
                stuck.append(k)
            elif status != 0:
                failed.append((k, status))
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    client.close()
    assert errors == []
    assert stuck == [], f"children stuck after fork: {stuck}"
    assert failed == []


@needs_fork
def test_async_sqlite_store_works_in_a_forked_child(tmp_path: Path) -> None:
    """Item 2, the async store: its worker thread stays behind in a fork, and the child's
    calls must not be queued for it forever."""
    client = AsyncClient(store_dir=tmp_path / "cache")

    async def use(x: int) -> bool:
        ref = await client.submit(_square, x)
        again = await client.submit(_square, x)
        return bool(await ref.load() == x * x and again.cached)

    assert asyncio.run(use(3))  # the parent's worker thread now exists
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports by its exit status
        code = 1
        try:
            code = 0 if asyncio.run(use(4)) else 1
        finally:
            os._exit(code)
    assert _wait_child(pid, 60.0) == 0
    assert asyncio.run(use(5))

    async def close() -> None:
        await client.close()

    asyncio.run(close())
