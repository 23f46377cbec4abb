"""Exactly-once execution across real processes sharing one store: a SQLite directory, or
a PostgreSQL schema (the lease rows, their row locks and LISTEN/NOTIFY)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cashet import Client
from cashet.executor import LocalExecutor
from cashet.models import Lease, utcnow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::cashet.errors.ClosureWarning"),
]

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from datetime import timedelta
    from cashet import Client
    from cashet.executor import LocalExecutor

    def slow_task(log_path, seconds):
        with open(log_path, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(seconds)
        return "result"

    if __name__ == "__main__":
        store, log_path = sys.argv[1], sys.argv[2]
        seconds, ttl = float(sys.argv[3]), float(sys.argv[4])
        executor = LocalExecutor(running_ttl=timedelta(seconds=ttl))
        where = {"store": store} if store.startswith("postgresql:") else {"store_dir": store}
        with Client(executor=executor, **where) as c:
            ref = c.submit(slow_task, log_path, seconds)
            print(ref.load(), ref.commit_hash, flush=True)
    """
)


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where the processes meet: a store directory, or a PostgreSQL store URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "store")
    else:
        yield request.getfixturevalue("pg_url")


def _spawn(tmp: Path, store: str, log: Path, seconds: float, ttl: float) -> subprocess.Popen[str]:
    script = tmp / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    return subprocess.Popen(
        [sys.executable, str(script), store, str(log), str(seconds), str(ttl)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_eight_processes_run_a_slow_task_once(tmp_path: Path, shared: str) -> None:
    store, log = shared, tmp_path / "runs.log"
    procs = [_spawn(tmp_path, store, log, 1.5, 300) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len(_runs(log)) == 1
    commits = {o[0].split()[1] for o in outs}
    assert len(commits) == 1 and all(o[0].startswith("result") for o in outs)


def test_task_longer_than_lease_is_not_run_twice(tmp_path: Path, shared: str) -> None:
    # The lease lasts 0.6 s; the task runs 2.5 s; the heartbeat must keep renewing it.
    store, log = shared, tmp_path / "runs.log"
    first = _spawn(tmp_path, store, log, 2.5, 0.6)
    while not _runs(log):
        time.sleep(0.02)
    others = [_spawn(tmp_path, store, log, 2.5, 0.6) for _ in range(3)]
    for p in [first, *others]:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert len(_runs(log)) == 1


def test_sigkilled_holder_is_taken_over_at_once_on_same_host(tmp_path: Path, shared: str) -> None:
    store, log = shared, tmp_path / "runs.log"
    # A 300 s lease: only the dead-pid check lets the second worker in quickly.
    victim = _spawn(tmp_path, store, log, 60, 300)
    while not _runs(log):
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)
    successor = _spawn(tmp_path, store, log, 0.1, 300)
    out, err = successor.communicate(timeout=60)
    assert successor.returncode == 0, err
    assert out.startswith("result")
    assert len(_runs(log)) == 2


def test_foreign_host_lease_blocks_until_it_expires(tmp_path: Path, shared: str) -> None:
    calls = []

    def task() -> int:
        calls.append(1)
        return 7

    executor = LocalExecutor(running_ttl=timedelta(seconds=30))
    where: dict[str, Any] = (
        {"store": shared} if shared.startswith("postgresql:") else {"store_dir": shared}
    )
    with Client(executor=executor, **where) as c:
        from cashet.hashing import function_identity, hash_args

        fp = f"{function_identity(task).hash}:{hash_args((), {})}"
        # a live lease held by a process on another machine, expiring in 0.8 s
        lease = Lease("someone-else", "another-host.invalid", 1, utcnow() + timedelta(seconds=0.8))
        assert c.store.try_claim(fp, lease)
        t0 = time.monotonic()
        assert c.submit(task).load() == 7
        waited = time.monotonic() - t0
    assert calls == [1]
    assert waited >= 0.5  # it did wait for the foreign lease instead of running at once


def test_threads_with_separate_clients_run_once(shared: str) -> None:
    calls = []
    lock = threading.Lock()

    def expensive(x: int) -> int:
        with lock:
            calls.append(x)
        time.sleep(0.3)
        return x * 10

    results = []

    def worker() -> None:
        where = {"store": shared} if shared.startswith("postgresql:") else {"store_dir": shared}
        with Client(**where) as c:
            results.append(c.submit(expensive, 4).load())

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [4] and results == [40] * 10
