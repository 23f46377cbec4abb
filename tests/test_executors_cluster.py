"""Misses on a cluster (issue 14): hits on the driver, misses shipped to real workers.

Real parts: one ``distributed.LocalCluster`` per module (2 worker processes, 1 thread
each), real spawned worker processes for ``ProcessExecutor`` and ``FuturesExecutor``, the
SQLite store on this host and the suite's private Redis. Runs are counted in a file the
tasks append to (``tests/_cluster_tasks.py``), never through the cache under test.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from distributed import Client as DaskClient
from distributed import LocalCluster

from cashet import Client, TaskRef
from cashet.async_client import AsyncClient
from cashet.errors import ExecutorError, TaskError, TaskTimeoutError
from cashet.executor import DaskExecutor, FuturesExecutor, ProcessExecutor
from cashet.executors.remote import Shipment
from cashet.store import SQLiteStore
from cashet.stores.shipping import open_store, store_config
from tests._cluster_tasks import counted_square, die_first_time, runs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dask_client() -> Iterator[DaskClient]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        DaskClient(cluster) as client,
    ):
        yield client


class CountingDask(DaskExecutor):
    """A DaskExecutor that counts what it sends to the cluster."""

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.sent = 0

    def _start(self, shipment: Shipment, store: Any) -> Any:
        self.sent += 1
        return super()._start(shipment, store)


def test_miss_runs_on_a_worker_hit_never_leaves_the_driver(
    dask_client: DaskClient, tmp_path: Path
) -> None:
    executor = CountingDask(dask_client)
    with Client(store_dir=tmp_path / "s", executor=executor) as client:
        base = 10

        def where(x: int) -> tuple[int, int]:  # a closure: shipped by value
            return x + base, os.getpid()

        ref = client.submit(where, 1)
        value, pid = ref.load()
        assert value == 11 and pid != os.getpid() and not ref.cached
        assert executor.sent == 1
        again = client.submit(where, 1)
        assert again.cached and again.load() == (11, pid)
        assert executor.sent == 1  # the hit never reached the cluster


def test_chain_map_and_batch_on_the_cluster(dask_client: DaskClient, tmp_path: Path) -> None:
    log = str(tmp_path / "runs")
    with Client(store_dir=tmp_path / "s", executor=DaskExecutor(dask_client)) as client:
        first = client.submit(counted_square, log, 3)
        second = client.submit(counted_square, log, first)  # loaded on the worker
        assert second.load() == 81
        batch = client.submit_many([(counted_square, (log, i)) for i in range(4)], max_workers=2)
        assert [r.load() for r in batch] == [0, 1, 4, 9]
        assert batch[3].cached  # (log, 3) ran above
        assert len(runs(log)) == 5
        mapped = client.map(lambda i: counted_square(log, i) + 1, range(2))
        assert [(r.load(), r.cached) for r in mapped] == [(1, False), (2, False)]


def test_two_drivers_run_each_call_once(dask_client: DaskClient, tmp_path: Path) -> None:
    """Two driver processes submit the same calls to the same cluster at once."""
    log = str(tmp_path / "runs")
    store = tmp_path / "s"
    SQLiteStore(store).close()
    address = dask_client.scheduler.address
    code = textwrap.dedent(
        f"""
        from cashet import Client
        from cashet.executor import DaskExecutor
        from tests._cluster_tasks import counted_square
        ex = DaskExecutor({address!r})
        with Client(store_dir={str(store)!r}, executor=ex) as c:
            refs = c.submit_many([(counted_square, ({log!r}, i, 0.3)) for i in range(4)],
                                 max_workers=4)
            print(sorted(r.load() for r in refs))
        ex.close()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for p in drivers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        assert out.decode().strip() == "[0, 1, 4, 9]"
    assert sorted(line.split()[0] for line in runs(log)) == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_worker_killed_mid_task_is_rerun_to_one_commit(
    dask_client: DaskClient, tmp_path: Path
) -> None:
    log, marker = str(tmp_path / "runs"), str(tmp_path / "marker")
    with Client(store_dir=tmp_path / "s", executor=DaskExecutor(dask_client)) as client:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.submit, die_first_time, log, marker, 5)
            deadline = time.monotonic() + 60
            while not os.path.exists(marker):
                assert time.monotonic() < deadline, "the task never started"
                time.sleep(0.05)
            os.kill(int(Path(marker).read_text()), signal.SIGKILL)
            ref = pending.result(timeout=120)
        assert ref.load() == 6 and not ref.cached
        assert len(runs(log)) == 2  # the killed attempt and the rerun
        commits = client.log(func_name="die_first_time")
        assert [c.status.value for c in commits] == ["completed"]
        assert client.submit(die_first_time, log, marker, 5).cached


def test_store_without_config_fails_at_once(dask_client: DaskClient, tmp_path: Path) -> None:
    class Wrapped:  # a third-party store: works locally, cannot be reopened on a worker
        def __init__(self, inner: SQLiteStore) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    inner = SQLiteStore(tmp_path / "s")
    client = Client(store=Wrapped(inner), executor=DaskExecutor(dask_client))  # type: ignore[arg-type]
    with pytest.raises(ExecutorError, match=r"cannot be reopened in worker processes.*RedisStore"):
        client.submit(counted_square, str(tmp_path / "runs"), 2)
    assert runs(str(tmp_path / "runs")) == []
    assert inner.running_claims() == []
    inner.close()


def test_sqlite_refused_for_remote_workers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s")
    with pytest.raises(ExecutorError, match=r"other hosts.*use RedisStore"):
        store_config(store, remote=True)
    assert store_config(store).kind == "sqlite"
    store.close()


def test_unpicklable_call_fails_on_the_driver_and_releases(
    dask_client: DaskClient, tmp_path: Path
) -> None:
    with Client(store_dir=tmp_path / "s", executor=DaskExecutor(dask_client)) as client:

        class Local:  # hashable for the key, but its instances refuse to be pickled
            def __init__(self, v: int) -> None:
                self.v = v

            def __cashet_hash__(self) -> int:
                return self.v

            def __reduce__(self) -> Any:
                raise TypeError("no pickling here")

        with pytest.raises(ExecutorError, match=r"task .*cannot be sent to a worker"):
            client.submit(lambda o: o.v, Local(3))
        assert client.store.running_claims() == []  # type: ignore[attr-defined]


def test_sqlite_config_reopens_once_per_process(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s", inline_threshold=10)
    config = pickle.loads(pickle.dumps(store_config(store)))
    opened = open_store(config)
    assert opened is open_store(config)
    assert opened.path == store.path.resolve()  # type: ignore[attr-defined]
    store.close()


@pytest.mark.redis
def test_dask_with_redis_store(dask_client: DaskClient, redis_url: str, tmp_path: Path) -> None:
    from cashet.redis_store import RedisStore
    from tests._redis import check_invariants, drop_prefix, fresh_prefix

    log = str(tmp_path / "runs")
    prefix = fresh_prefix()
    try:
        store = RedisStore(redis_url, prefix=prefix)
        with Client(store=store, executor=DaskExecutor(dask_client)) as client:
            refs = client.submit_many([(counted_square, (log, i)) for i in range(3)], max_workers=3)
            assert [r.load() for r in refs] == [0, 1, 4]
            assert all(client.submit(counted_square, log, i).cached for i in range(3))
        assert len(runs(log)) == 3
        check_invariants(redis_url, prefix)
    finally:
        drop_prefix(redis_url, prefix)


@pytest.mark.postgres
def test_dask_and_processes_with_a_postgres_store(
    dask_client: DaskClient, processes: ProcessExecutor, pg_url: str, tmp_path: Path
) -> None:
    # The store travels by its configuration; each worker process connects on its own.
    log = str(tmp_path / "runs")
    with Client(store=pg_url, executor=DaskExecutor(dask_client)) as client:
        refs = client.submit_many([(counted_square, (log, i)) for i in range(3)], max_workers=3)
        assert [r.load() for r in refs] == [0, 1, 4]
    with Client(store=pg_url, executor=processes) as client:
        assert all(client.submit(counted_square, log, i).cached for i in range(3))
        assert client.submit(counted_square, log, 3).load() == 9
    with Client(store=pg_url) as client:
        assert client.check().ok
    lines = [line.split() for line in runs(log)]
    assert sorted(x for x, _ in lines) == ["0", "1", "2", "3"]  # each call ran once
    assert str(os.getpid()) not in {pid for _, pid in lines}  # all in worker processes


# --- ProcessExecutor: local processes, hard timeouts ------------------------------------


@pytest.fixture(scope="module")
def processes() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(max_workers=2, running_ttl=timedelta(seconds=30)) as executor:
        yield executor


def test_process_executor_runs_misses_in_other_processes(
    processes: ProcessExecutor, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs")
    with Client(store_dir=tmp_path / "s", executor=processes) as client:
        offset = 100

        def plus(x: int) -> tuple[int, int]:  # a closure: sent by value
            return x + offset, os.getpid()

        value, pid = client.submit(plus, 1).load()
        assert value == 101 and pid != os.getpid()
        refs = client.submit_many(
            [(counted_square, (log, 2)), (counted_square, (log, TaskRef(0)))], max_workers=2
        )
        assert [r.load() for r in refs] == [4, 16]
        assert client.submit(counted_square, log, 2).cached
        assert len(runs(log)) == 2


@pytest.mark.slow
def test_hard_timeout_kills_the_process_and_the_pool_keeps_serving(
    processes: ProcessExecutor, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs")
    with Client(store_dir=tmp_path / "s", executor=processes) as client:
        with pytest.raises(TaskTimeoutError, match="worker process was killed"):
            client.submit(counted_square, log, 7, 60.0, _timeout=1.0)
        (line,) = runs(log)
        pid = int(line.split()[1])
        deadline = time.monotonic() + 10
        while _alive(pid):  # killed, not left running
            assert time.monotonic() < deadline, "the timed-out process still runs"
            time.sleep(0.05)
        assert client.store.running_claims() == []  # type: ignore[attr-defined]
        assert client.submit(counted_square, log, 8).load() == 64  # the pool serves on
        failed = client.log(func_name="counted_square", status="failed")
        assert len(failed) == 1 and "timed out" in (failed[0].error or "")


@pytest.mark.slow
def test_process_killed_mid_task_leaves_the_call_to_retry(
    processes: ProcessExecutor, tmp_path: Path
) -> None:
    log, marker = str(tmp_path / "runs"), str(tmp_path / "marker")
    with Client(store_dir=tmp_path / "s", executor=processes) as client:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.submit, die_first_time, log, marker, 1)
            deadline = time.monotonic() + 60
            while not os.path.exists(marker):
                assert time.monotonic() < deadline, "the task never started"
                time.sleep(0.05)
            os.kill(int(Path(marker).read_text()), signal.SIGKILL)
            with pytest.raises(TaskError, match=r"worker process died mid-attempt.*signal 9"):
                pending.result(timeout=60)
        assert client.log(func_name="die_first_time", status="completed") == []
        ref = client.submit(die_first_time, log, marker, 1)  # not a hit: runs again
        assert ref.load() == 2 and not ref.cached


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- FuturesExecutor: any concurrent.futures pool ---------------------------------------


def test_futures_executor_with_a_process_pool(tmp_path: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    log = str(tmp_path / "runs")
    ctx = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(2, mp_context=ctx) as pool,
        Client(store_dir=tmp_path / "s", executor=FuturesExecutor(pool)) as client,
    ):
        first = client.submit(counted_square, log, 3)
        assert client.submit(counted_square, log, first).load() == 81
        assert client.submit(counted_square, log, 3).cached
        assert {int(line.split()[1]) for line in runs(log)} - {os.getpid()} != set()
        assert len(runs(log)) == 2


# --- AsyncClient ------------------------------------------------------------------------


def test_async_client_awaits_the_cluster(dask_client: DaskClient, tmp_path: Path) -> None:
    log = str(tmp_path / "runs")

    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path / "s", executor=DaskExecutor(dask_client)) as c:
            first = await c.submit(counted_square, log, 4)
            second = await c.submit(counted_square, log, first)
            assert await second.load() == 256
            refs = await c.submit_many([(counted_square, (log, i)) for i in range(3)])
            assert [await r.load() for r in refs] == [0, 1, 4]
            assert (await c.submit(counted_square, log, 4)).cached

    asyncio.run(main())
    assert len(runs(log)) == 5


def test_async_client_with_processes(processes: ProcessExecutor, tmp_path: Path) -> None:
    log = str(tmp_path / "runs")

    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path / "s", executor=processes) as c:
            first = await c.submit(counted_square, log, 5)
            assert await first.load() == 25 and not first.cached
            with pytest.raises(TaskTimeoutError, match="hard timeout"):
                await c.submit(counted_square, log, 6, 60.0, _timeout=0.5)
            assert (await c.submit(counted_square, log, 5)).cached

    asyncio.run(main())
    assert len(runs(log)) == 2


@pytest.mark.slow
def test_dask_sweep_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "dask_sweep.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    assert first.startswith("first run (on the cluster): 12 calls")
    assert second.startswith("second run (all cached): 12 calls")


class DeliveredTwice(FuturesExecutor):
    """Sends every shipment twice, to two worker processes at once (as a broker's
    redelivery would, or an engine's rerun)."""

    def _start(self, shipment: Shipment, store: Any) -> Any:
        from cashet.executors.remote import run_shipped

        self.duplicate = self.pool.submit(run_shipped, shipment)
        return super()._start(shipment, store)


def test_duplicate_delivery_runs_once(tmp_path: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    log = str(tmp_path / "runs")
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        executor = DeliveredTwice(pool)
        with Client(store_dir=tmp_path / "s", executor=executor) as client:
            ref = client.submit(counted_square, log, 6, 0.5)
            assert ref.load() == 36
            other = executor.duplicate.result(timeout=60)
            assert other is not None and other.hash == ref.commit_hash
            assert len(runs(log)) == 1
            assert len(client.log(func_name="counted_square")) == 1
            assert client.store.running_claims() == []  # type: ignore[attr-defined]


# --- CeleryExecutor: a real worker subprocess, RabbitMQ as the broker ---------------------

BROKER = os.environ.get("CASHET_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture(scope="module")
def celery_worker() -> Iterator[dict[str, str]]:
    """A ``celery -A tests._celery_app worker`` (2 processes) on a queue of this module's."""
    import socket

    from kombu.utils.url import url_to_parts

    parts = url_to_parts(BROKER)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 5).close()
    except OSError as exc:
        pytest.fail(f"the Celery tests need RabbitMQ at {parts.hostname}:{parts.port}: {exc}")
    queue = f"cashet-test-{os.getpid()}-{time.monotonic_ns()}"
    env = {
        **os.environ,
        "CASHET_TEST_BROKER": BROKER,
        "CASHET_TEST_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests._celery_app", "worker",
         "-n", f"cashet-test-{os.getpid()}@%h",
         "--concurrency=2", "--pool=prefork", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel=INFO"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    old = {k: os.environ.get(k) for k in ("CASHET_TEST_BROKER", "CASHET_TEST_QUEUE")}
    os.environ.update(CASHET_TEST_BROKER=BROKER, CASHET_TEST_QUEUE=queue)
    try:
        yield env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        worker.terminate()
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()


def _celery_executor() -> Any:
    import importlib

    import tests._celery_app as module

    module = importlib.reload(module)  # the environment of this module's worker
    return module.executor


@pytest.mark.slow
def test_celery_runs_misses_on_its_workers(celery_worker: dict[str, str], tmp_path: Path) -> None:
    log = str(tmp_path / "runs")
    executor = _celery_executor()
    with Client(store_dir=tmp_path / "s", executor=executor) as client:
        first = client.submit(counted_square, log, 3)
        assert first.load() == 9 and not first.cached
        refs = client.submit_many(
            [(counted_square, (log, i)) for i in range(3)] + [(counted_square, (log, TaskRef(2)))],
            max_workers=3,
        )
        assert [r.load() for r in refs] == [0, 1, 4, 16]
        assert client.submit(counted_square, log, 3).cached
        pids = {int(line.split()[1]) for line in runs(log)}
        assert len(runs(log)) == 5 and os.getpid() not in pids
        with pytest.raises(TaskError, match="failed on a Celery worker: ZeroDivisionError"):
            client.submit(_divide, 1, 0)
        assert client.store.running_claims() == []  # type: ignore[attr-defined]


def _divide(a: int, b: int) -> float:
    return a / b


@pytest.mark.slow
def test_celery_worker_process_killed_mid_task_is_redelivered(
    celery_worker: dict[str, str], tmp_path: Path
) -> None:
    log, marker = str(tmp_path / "runs"), str(tmp_path / "marker")
    executor = _celery_executor()
    with Client(store_dir=tmp_path / "s", executor=executor) as client:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.submit, die_first_time, log, marker, 9)
            deadline = time.monotonic() + 60
            while not os.path.exists(marker):
                assert time.monotonic() < deadline, "the task never started"
                time.sleep(0.05)
            os.kill(int(Path(marker).read_text()), signal.SIGKILL)
            ref = pending.result(timeout=120)
        assert ref.load() == 10
        assert len(runs(log)) == 2
        assert [c.status.value for c in client.log(func_name="die_first_time")] == ["completed"]


def test_two_sqlite_stores_in_one_process_see_another_process_release(tmp_path: Path) -> None:
    from cashet.core.flow import new_lease

    first, second = SQLiteStore(tmp_path / "s"), SQLiteStore(tmp_path / "s")
    lease = new_lease(timedelta(seconds=60), "f")
    assert first.try_claim("a:b", lease)
    assert second.get_claim("a:b") is not None
    release = (
        f"from cashet.store import SQLiteStore; "
        f"SQLiteStore({str(tmp_path / 's')!r}).release_claim('a:b', {lease.owner!r})"
    )
    subprocess.run([sys.executable, "-c", release], check=True, timeout=60)
    try:
        assert first.get_claim("a:b") is None
    finally:
        first.close()
        second.close()


def test_importable_functions_travel_by_reference_local_ones_by_value() -> None:
    from cashet.executors.remote import pack_call, unpack_call
    from tests import _cluster_tasks

    raw = _cluster_tasks.wrapped_cube.__wrapped__  # what a @client.task's submit runs
    pickler, data = pack_call((raw, counted_square), "t")
    assert b"wrapped_cube" in data and b"x**3" not in data and len(data) < 400
    back_raw, back_plain = unpack_call(pickler, data)
    assert back_raw is raw and back_plain is counted_square

    def local(x: int) -> int:
        return x * 7

    pickler, data = pack_call(local, "t")
    assert unpack_call(pickler, data)(3) == 21


def test_import_cashet_executor_pulls_no_engine() -> None:
    code = (
        "import sys, cashet, cashet.executor\n"
        "print(' '.join(m for m in ('dask', 'distributed', 'celery', 'cloudpickle', 'kombu')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_celery_under_async_client(celery_worker: dict[str, str], tmp_path: Path) -> None:
    log = str(tmp_path / "runs")
    executor = _celery_executor()

    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path / "s", executor=executor) as client:
            first = await client.submit(counted_square, log, 4)
            assert await first.load() == 16 and not first.cached
            refs = await client.submit_many(
                [(counted_square, (log, i)) for i in range(2)]
                + [(counted_square, (log, TaskRef(1)))],
                max_workers=2,
            )
            assert [await r.load() for r in refs] == [0, 1, 1]
            assert not any(r.cached for r in refs)
            assert (await client.submit(counted_square, log, 4)).cached
            with pytest.raises(TaskError, match="failed on a Celery worker: ZeroDivisionError"):
                await client.submit(_divide, 1, 0)

    asyncio.run(main())
    pids = {int(line.split()[1]) for line in runs(log)}
    assert len(runs(log)) == 4 and os.getpid() not in pids


@pytest.mark.slow
def test_celery_message_nobody_takes_times_out(tmp_path: Path) -> None:
    """No worker consumes the app's queue: the driver gives up after ``start_timeout``,
    says so, and gives its lease back (the next submit runs the call)."""
    from celery import Celery

    from cashet.executor import CeleryExecutor

    queue = f"cashet-nobody-{os.getpid()}-{time.monotonic_ns()}"
    app = Celery("cashet_unconsumed", broker=BROKER)
    app.conf.update(task_default_queue=queue)
    executor = CeleryExecutor(app, remote=False, poll=0.05, start_timeout=1.0)
    try:
        with Client(store_dir=tmp_path / "s", executor=executor) as client:
            with pytest.raises(ExecutorError, match="no Celery worker took task counted_square"):
                client.submit(counted_square, str(tmp_path / "runs"), 2)
            assert client.store.running_claims() == []  # type: ignore[attr-defined]
            assert runs(str(tmp_path / "runs")) == []
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
