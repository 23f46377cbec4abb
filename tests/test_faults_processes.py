"""Faults between processes: forks under load, leases whose release fails, holders in other
PID namespaces (issue 13, items 2, 3 and 4). Real forks, real processes, a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import sqlite3
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

from cashet import Client, _process
from cashet.async_client import AsyncClient
from cashet.core import leases
from cashet.errors import StoreError
from cashet.executor import AsyncLocalExecutor, LocalExecutor
from cashet.hashing import function_identity, hash_call
from cashet.models import Lease, utcnow
from cashet.store import SQLiteStore
from tests._redis import ping

pytestmark = [
    pytest.mark.filterwarnings("ignore::cashet.errors.ClosureWarning"),
    # Python 3.12+ warns on a fork while threads run: forking so is what these tests test.
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parents[1]

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


# --- item 4: a lease names its holder by host, boot and PID namespace ------------------------


def _free_pid() -> int:
    """A pid no process of this host's (our) PID namespace has."""
    pid = 4_000_000 if Path("/proc/sys/kernel/pid_max").exists() else 99_999
    with contextlib.suppress(OSError, ValueError):
        pid = min(pid, int(Path("/proc/sys/kernel/pid_max").read_text()) - 1)
    while Path(f"/proc/{pid}").exists() or not _dead(pid):
        pid -= 1
    return pid


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


@contextlib.contextmanager
def _lease_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    if kind == "sqlite":
        with SQLiteStore(tmp_path / "cache") as store:
            yield store
        return
    from cashet.redis_store import RedisStore
    from tests._redis import drop_prefix, fresh_prefix

    url = request.getfixturevalue("redis_url")
    prefix = fresh_prefix()
    store = RedisStore(url, prefix=prefix)
    try:
        yield store
    finally:
        store.close()
        drop_prefix(url, prefix)


LEASE_STORES = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.mark.parametrize("kind", LEASE_STORES)
def test_a_live_holder_in_another_pid_namespace_is_not_judged_by_pid(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Item 4, with the lease written as a holder in another container (same host name and
    boot, another PID namespace) writes it: its pid means nothing here, so only its expiry
    may free it. The real thing, under ``unshare``, is the next test (it needs root)."""
    other = Lease(
        owner="container-b",
        host=_process.hostname(),
        pid=_free_pid(),  # no such process here; it lives in the other namespace
        expires_at=utcnow() + timedelta(minutes=5),
        func_name="f",
        boot_id=_process.boot_id(),
        pid_ns="4026599999" if _process.pid_namespace() != "4026599999" else "4026599998",
    )
    mine = Lease("me", _process.hostname(), os.getpid(), utcnow() + timedelta(minutes=5))
    with _lease_store(kind, tmp_path, request) as store:
        assert store.try_claim("fp", other)
        held = store.get_claim("fp")
        assert held is not None and held.owner == "container-b"
        assert (held.host, held.boot_id, held.pid_ns) == (other.host, other.boot_id, other.pid_ns)
        assert not store.try_claim("fp", mine)  # it used to be taken over here
        # The same lease from this very namespace is a dead holder's: taken over at once.
        store.release_claim("fp", "container-b")
        here = dataclasses.replace(other, pid_ns=_process.pid_namespace())
        assert store.try_claim("fp", here)
        assert store.try_claim("fp", mine)
        # A lease of an older cashet (no boot id, no namespace) is judged as before.
        store.release_claim("fp", "me")
        old = dataclasses.replace(other, boot_id="", pid_ns="")
        assert store.try_claim("fp", old)
        assert store.try_claim("fp", mine)


NAMESPACED = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    if os.environ["MODE"] == "inner":
        # In a new PID namespace (we are its pid 1): the holder forks with a pid chosen to
        # be free in the parent namespace, so that a probe from there finds "no such pid".
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(int(os.environ["PID"]) - 1))
        child = os.fork()
        if child:
            sys.exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
        assert os.getpid() == int(os.environ["PID"]), os.getpid()

    from cashet import Client

    def guarded(x):
        with open(os.environ["RUNS"], "a") as fh:
            fh.write(os.environ["MODE"] + "\\n")
        deadline = time.monotonic() + 120
        while not os.path.exists(os.environ["GO"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        return os.environ["MODE"] + " " + str(x)

    with Client(store_dir=os.environ["STORE"]) as c:
        print("ready", flush=True)
        print(c.submit(guarded, 1).load(), flush=True)
    """
)


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    try:
        probe = ["unshare", "--pid", "--fork", "--mount-proc", "true"]
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_works(), reason="unshare --pid --mount-proc needs root here")
def test_a_holder_in_another_pid_namespace_keeps_its_lease(tmp_path: Path) -> None:
    """Item 4 for real: a holder runs in a new PID namespace (as in a container with the
    same host name, ``--network host``) under a pid that does not exist out here. A process
    out here submitting the same call must wait for it, not judge it dead and run it too."""
    script = tmp_path / "namespaced.py"
    script.write_text(NAMESPACED)
    runs, go = tmp_path / "runs.txt", tmp_path / "go"
    runs.touch()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "STORE": str(tmp_path / "cache"),
        "RUNS": str(runs),
        "GO": str(go),
        "PID": str(_free_pid()),
    }
    unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
    inner = subprocess.Popen(
        [*unshare, sys.executable, str(script)],
        env={**env, "MODE": "inner"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    outer: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while runs.read_text() != "inner\n" and inner.poll() is None:
            assert time.monotonic() < deadline, "the namespaced holder never started"
            time.sleep(0.02)
        outer = subprocess.Popen(
            [sys.executable, str(script)],
            env={**env, "MODE": "outer"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert outer.stdout is not None
        assert outer.stdout.readline().strip() == "ready"
        # The outer process claims within milliseconds of "ready": give it ample time to
        # (wrongly) take the lease over and run the task before the holder may finish.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "outer" not in runs.read_text():
            time.sleep(0.05)
        go.touch()
        out, err = outer.communicate(timeout=120)
        inner_out, inner_err = inner.communicate(timeout=120)
    finally:
        go.touch()
        for proc in (inner, outer):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert inner.returncode == 0, inner_err
    assert outer.returncode == 0, err
    assert runs.read_text() == "inner\n"  # the task ran once, in its namespace
    assert out.strip() == "inner 1"  # the outer process waited and got its result
    assert inner_out.split() == ["ready", "inner", "1"]


# --- item 3: leases never outlive their holder's intent ---------------------------------------


def _fingerprint(func: Any, *args: Any) -> str:
    return f"{function_identity(func).hash}:{hash_call(func, args, {})}"


async def _cancel_until_done(task: asyncio.Task[Any], seconds: float) -> None:
    """Cancel ``task`` again and again (every 20 ms, ``seconds`` long), then await it."""
    deadline = time.monotonic() + seconds
    while not task.done() and time.monotonic() < deadline:
        task.cancel()
        await asyncio.sleep(0.02)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)


@pytest.mark.parametrize("where", ["claim", "release"])
def test_a_task_cancelled_again_and_again_leaves_no_lease(tmp_path: Path, where: str) -> None:
    """Item 3, asyncio: the cancelled call is cancelled again while its claim (or its
    release) is in flight — held up for real by another connection's write transaction on
    ``meta.db``. When the cancelled call ends, its lease is gone: a claim that landed late is
    given back, and a release is not abandoned half-way."""
    runs: list[int] = []

    async def hang(x: int) -> int:
        runs.append(x)
        await asyncio.sleep(60)
        return x

    async def main() -> None:
        fp = _fingerprint(hang, 7)
        async with AsyncClient(store_dir=tmp_path / "cache") as client:
            await client.log()  # the store exists
            blocker = sqlite3.connect(tmp_path / "cache" / "meta.db", isolation_level=None)
            loop = asyncio.get_running_loop()
            try:
                if where == "claim":
                    blocker.execute("BEGIN IMMEDIATE")  # the claim waits for this writer
                    task = asyncio.ensure_future(client.submit(hang, 7))
                    await asyncio.sleep(0.5)  # it is waiting in the claim now
                    assert runs == []
                else:
                    task = asyncio.ensure_future(client.submit(hang, 7))
                    while not runs:
                        await asyncio.sleep(0.01)
                    blocker.execute("BEGIN IMMEDIATE")  # the release will wait for this
                loop.call_later(0.6, blocker.execute, "ROLLBACK")
                await _cancel_until_done(task, 1.0)
            finally:
                if blocker.in_transaction:
                    blocker.execute("ROLLBACK")
                blocker.close()
            with SQLiteStore(tmp_path / "cache") as other:  # another connection, at once
                assert other.get_claim(fp) is None
            assert await client.store.get_claim(fp) is None  # after what was queued
            # And the same call runs again at once.
            again = asyncio.ensure_future(client.submit(hang, 7))
            while len(runs) < (2 if where == "release" else 1):
                await asyncio.sleep(0.01)
            again.cancel()
            with pytest.raises(asyncio.CancelledError):
                await again

    asyncio.run(main())


def _claims_rows(db: Path) -> list[str]:
    """The owners in ``meta.db``'s lease table, as any other process reads them."""
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT owner FROM claims")]
    finally:
        conn.close()


def _submit_within(client: Client, seconds: float, func: Any, *args: Any) -> Any:
    """``client.submit(func, *args)`` in a daemon thread: what it returned or raised, or
    ``"stuck"`` when it is still waiting after ``seconds`` (for a lease, presumably)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(client.submit(func, *args))
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return box[0] if box else "stuck"


def _can_mount_tmpfs(where: Path) -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)])
    if done.returncode != 0:
        return False
    subprocess.run(["umount", str(where)], check=True)
    return True


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs mounted for the test (root only), unmounted after it."""
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("mounting a tmpfs needs root on Linux")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def _disk_filler(filler: Path) -> Any:
    def fill_the_disk(x: int) -> bytes:
        with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 65536)
        return os.urandom(100_000)  # a blob file: there is no room for it

    return fill_the_disk


@pytest.mark.slow
def test_a_lease_whose_release_fails_on_a_full_disk_is_released_later(tmpfs: Path) -> None:
    """Item 3, disk full at the commit: the store lives on a real 8 MiB tmpfs that the task
    fills. Recording the result fails, and so does releasing the lease (SQLite: "database or
    disk is full"). This process must not wait for its own leaked lease, and once space is
    freed the release goes through: nobody waits out ``running_ttl``."""
    filler, db = tmpfs / "filler", tmpfs / "cache" / "meta.db"
    fill_the_disk = _disk_filler(filler)
    executor = LocalExecutor(running_ttl=timedelta(seconds=90))
    with Client(store_dir=tmpfs / "cache", executor=executor) as client:
        client.submit(_square, 2)  # the store works
        # The error is the real failure (writing the result), not the failed release's.
        with pytest.raises(StoreError, match=r"cannot write blob file .*No space left"):
            client.submit(fill_the_disk, 1)
        assert len(_claims_rows(db)) == 1  # the lease leaked
        # This process does not wait for the lease it leaked (the disk is still full).
        again = _submit_within(client, 30, fill_the_disk, 1)
        assert isinstance(again, StoreError), again
        filler.unlink()  # space again: the release goes through, long before running_ttl
        deadline = time.monotonic() + 30
        while _claims_rows(db):
            assert time.monotonic() < deadline, "the leaked lease was never released"
            time.sleep(0.1)
        assert client.submit(_square, 3).load() == 9


@pytest.mark.slow
def test_an_async_lease_whose_release_fails_on_a_full_disk_is_released_later(
    tmpfs: Path,
) -> None:
    """Item 3 with the ``AsyncClient`` (the retries run as a task on its loop)."""
    filler, db = tmpfs / "filler", tmpfs / "cache" / "meta.db"
    fill_the_disk = _disk_filler(filler)

    async def main() -> None:
        executor = AsyncLocalExecutor(running_ttl=timedelta(seconds=90))
        async with AsyncClient(store_dir=tmpfs / "cache", executor=executor) as client:
            await client.submit(_square, 2)
            with pytest.raises(StoreError, match=r"cannot write blob file .*No space left"):
                await client.submit(fill_the_disk, 1)
            assert len(_claims_rows(db)) == 1
            with pytest.raises(StoreError):  # not a TimeoutError: it does not wait
                await asyncio.wait_for(client.submit(fill_the_disk, 1), 30)
            filler.unlink()
            deadline = time.monotonic() + 30
            while _claims_rows(db):
                assert time.monotonic() < deadline, "the leaked lease was never released"
                await asyncio.sleep(0.1)
            assert await (await client.submit(_square, 3)).load() == 9

    asyncio.run(main())


def _persistent_redis(folder: Path) -> tuple[list[str], str]:
    """The command line and URL of a private redis-server that keeps every write in its
    append-only file (``appendfsync always``), so that a lease survives a SIGKILL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH: this test needs a server it may kill")
    sock = folder / "redis.sock"
    args = [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
    args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
    args += ["--dir", str(folder)]
    return args, f"unix://{sock}"


def _start_redis(args: list[str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while ping(url) is not None:
        assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.02)
    return proc


@pytest.mark.slow
@pytest.mark.redis
def test_a_lease_survives_no_redis_restart(tmp_path: Path) -> None:
    """Item 3, Redis killed and restarted mid-task (a real private server with an
    append-only file, SIGKILLed by the task and started again 3 s later): recording the
    result and releasing the lease fail while it is down. The lease was persisted, so it
    is back with the server; it must be released once the server is, not left to expire,
    and this process must not wait for it meanwhile."""
    pytest.importorskip("redis")
    import redis

    from cashet.redis_store import RedisStore

    folder = tmp_path / "redis"
    folder.mkdir()
    args, url = _persistent_redis(folder)
    procs = [_start_redis(args, url)]
    restarted = threading.Event()
    killed: list[int] = []

    def restart_later() -> None:
        time.sleep(3)
        procs.append(_start_redis(args, url))
        restarted.set()

    store = RedisStore(url, prefix="faults:")
    client = Client(store=store, executor=LocalExecutor(running_ttl=timedelta(seconds=120)))
    raw = redis.Redis.from_url(url)
    try:

        def kill_redis(x: int) -> int:
            if not killed:  # once (a closure is no part of the key)
                killed.append(x)
                procs[0].kill()
                procs[0].wait()
                threading.Thread(target=restart_later, daemon=True).start()
            return x

        fp = _fingerprint(kill_redis, 1)
        with pytest.raises(StoreError, match=r"(?i)redis|connect"):
            client.submit(kill_redis, 1)
        assert restarted.wait(30)
        # The lease came back with the server (append-only file) and is released now, by
        # the retries in the background: another process would not wait for it.
        lock = store._ops.keys.lock(fp)
        deadline = time.monotonic() + 30
        while raw.exists(lock):
            assert time.monotonic() < deadline, "the lease was never released"
            time.sleep(0.1)
        assert client.submit(kill_redis, 1).load() == 1
        assert killed == [1]
    finally:
        raw.close()
        client.close()
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("host", ["vm", "a host name with spaces", "", "x boot=y"])
def test_a_lease_holder_round_trips_through_its_stored_form(host: str) -> None:
    lease = Lease("o", host, 7, utcnow(), boot_id="b-1", pid_ns="4026531836")
    assert leases.parse_holder(leases.holder_text(lease)) == (host, "b-1", "4026531836")
    old = Lease("o", host, 7, utcnow())  # no identity (an older cashet): the bare host name
    assert leases.holder_text(old) == host
    if " boot=" not in host:
        assert leases.parse_holder(host) == (host, "", "")
