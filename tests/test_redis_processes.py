"""Exactly once across processes and "machines", with real subprocesses and a real Redis.

Each worker is a separate Python process with its own ``Client(store=RedisStore(...))``; it
prints ``ready``, waits for ``go`` on stdin, submits one slow task and prints the outcome.
Every run of the task appends the worker's pid to a file, so the test counts executions.
A worker given ``FAKE_HOST`` records that host name in its leases, as a process on another
machine would: its lease can then only be judged by its expiry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._redis import check_invariants, drop_prefix, fresh_prefix

pytest.importorskip("redis")

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, os, sys, time
if os.environ.get("FAKE_HOST"):
    import socket
    socket.gethostname = lambda: os.environ["FAKE_HOST"]
from datetime import timedelta
from cashet import Client
from cashet.executor import LocalExecutor
from cashet.redis_store import RedisStore


def slow_task(x):
    with open(os.environ["RUNS_FILE"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(float(os.environ["TASK_SECONDS"]))
    return x * 10


ttl = timedelta(seconds=float(os.environ["LEASE_TTL"]))
client = Client(
    store=RedisStore(os.environ["REDIS_URL"], prefix=os.environ["PREFIX"]),
    executor=LocalExecutor(running_ttl=ttl),
)
print("ready", flush=True)
sys.stdin.readline()
ref = client.submit(slow_task, 7)
print(json.dumps({"value": ref.load(), "cached": ref.cached, "commit": ref.commit_hash}))
client.close()
"""


class Worker:
    """One worker process (see the module docstring)."""

    def __init__(self, script: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )

    def ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "ready", f"worker {self.proc.pid} said {line!r}"

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = 120) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"worker {self.proc.pid} exited {self.proc.returncode}"
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate()  # reaped: its pid is really gone

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class Farm:
    """Starts workers sharing one Redis prefix and one file of executions."""

    def __init__(self, tmp_path: Path, url: str, prefix: str) -> None:
        self.script = tmp_path / "worker.py"
        self.script.write_text(WORKER)
        self.runs = tmp_path / "runs.txt"
        self.runs.touch()
        self.url, self.prefix = url, prefix
        self.workers: list[Worker] = []

    def start(self, task_seconds: float, lease_ttl: float, host: str | None = None) -> Worker:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "REDIS_URL": self.url,
            "PREFIX": self.prefix,
            "RUNS_FILE": str(self.runs),
            "TASK_SECONDS": str(task_seconds),
            "LEASE_TTL": str(lease_ttl),
        }
        if host is not None:
            env["FAKE_HOST"] = host
        worker = Worker(self.script, env)
        self.workers.append(worker)
        return worker

    def executions(self) -> list[int]:
        return [int(line) for line in self.runs.read_text().split()]

    def wait_for_executions(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.executions()) < n:
            assert time.monotonic() < deadline, f"fewer than {n} executions after {timeout}s"
            time.sleep(0.02)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


@pytest.fixture
def farm(tmp_path: Path, redis_url: str) -> Iterator[Farm]:
    prefix = fresh_prefix()
    f = Farm(tmp_path, redis_url, prefix)
    try:
        yield f
        check_invariants(redis_url, prefix)
    finally:
        f.close()
        drop_prefix(redis_url, prefix)


def test_eight_processes_run_one_slow_task_once(farm: Farm) -> None:
    workers = [farm.start(task_seconds=1.0, lease_ttl=300) for _ in range(8)]
    for w in workers:
        w.ready()
    for w in workers:  # as close together as we can
        w.go()
    results = [w.result() for w in workers]
    assert len(farm.executions()) == 1
    assert {r["value"] for r in results} == {70}
    assert len({r["commit"] for r in results}) == 1
    assert sorted(r["cached"] for r in results) == [False] + [True] * 7


def test_lease_of_killed_remote_worker_expires_and_is_taken_over(farm: Farm) -> None:
    """A worker on "another machine" is SIGKILLed mid-task: nobody can see its process is
    gone, so its lease is taken over once it expires (1 s: it is no longer renewed)."""
    doomed = farm.start(task_seconds=600, lease_ttl=1, host="machine-a.invalid")
    taker = farm.start(task_seconds=0.1, lease_ttl=1)
    doomed.ready()
    taker.ready()
    doomed.go()
    farm.wait_for_executions(1)
    doomed.kill()
    taker.go()
    result = taker.result()
    assert result == {"value": 70, "cached": False, "commit": result["commit"]}
    assert farm.executions() == [doomed.proc.pid, taker.proc.pid]


def test_killed_worker_on_this_host_is_taken_over_at_once(farm: Farm) -> None:
    """On the same host a dead holder is seen at once: no need to wait out its 5 minutes."""
    doomed = farm.start(task_seconds=600, lease_ttl=300)
    taker = farm.start(task_seconds=0.1, lease_ttl=300)
    doomed.ready()
    taker.ready()
    doomed.go()
    farm.wait_for_executions(1)
    doomed.kill()
    taker.go()
    assert taker.result(timeout=60)["cached"] is False
    assert farm.executions() == [doomed.proc.pid, taker.proc.pid]


def test_heartbeat_keeps_a_long_task_leased(farm: Farm) -> None:
    """A task running 3x longer than its 1 s lease keeps it, renewed by the heartbeat: the
    worker that comes later waits and gets its result instead of running it again."""
    holder = farm.start(task_seconds=3.0, lease_ttl=1, host="machine-a.invalid")
    waiter = farm.start(task_seconds=3.0, lease_ttl=1)
    holder.ready()
    waiter.ready()
    holder.go()
    farm.wait_for_executions(1)
    waiter.go()
    first, second = holder.result(), waiter.result()
    assert farm.executions() == [holder.proc.pid]
    assert first["cached"] is False and second["cached"] is True
    assert first["commit"] == second["commit"]
