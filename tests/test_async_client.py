"""What only the ``AsyncClient`` has: coroutine tasks, real cancellation, the loop kept free.

Everything both clients share (caching, chaining, options, batches, provenance) runs for
both in ``tests/test_client.py`` (the ``client`` fixture, parametrized over sync/async x
SQLite/Redis). Timings are never asserted: the loop's lag is measured in
``bench/suites/async_.py``.
"""

from __future__ import annotations

import asyncio
import pickle
import runpy
import textwrap
import threading
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cashet import AsyncResultRef, Client, TaskError, TaskRef, TaskTimeoutError
from cashet.async_client import AsyncClient
from cashet.executor import AsyncLocalExecutor
from cashet.executors.async_local import is_big
from cashet.hashing import function_identity, hash_call
from cashet.store import AsyncSQLiteStore

# Task functions here close over events and lists on purpose (not part of any cache key).
pytestmark = pytest.mark.filterwarnings("ignore::cashet.errors.ClosureWarning")

RUNS: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro_fn())


def fingerprint(func: Any, *args: Any, **kwargs: Any) -> str:
    return f"{function_identity(func).hash}:{hash_call(func, args, kwargs)}"


# --- the spec's async examples, as written -------------------------------------------------

QUICK_START_ASYNC = """
import asyncio
from cashet.async_client import AsyncClient

async def main():
    client = AsyncClient()

    def compute(x: int) -> int:
        return x * 2

    ref = await client.submit(compute, 21)
    result = await ref.load()
    print(result)  # 42

asyncio.run(main())
"""

API_ASYNC_CLIENT = """
import asyncio
from cashet.async_client import AsyncClient

async def main():
    client = AsyncClient(
        store_dir=".cashet",   # defaults to AsyncSQLiteStore
        store=None,            # or AsyncRedisStore, or any AsyncStore
        executor=None,         # defaults to AsyncLocalExecutor
        serializer=None,       # defaults to PickleSerializer
        max_workers=1,         # max parallelism for submit_many (default: 1, sequential)
    )

    def square(x: int) -> int:
        return x * x

    ref = await client.submit(square, 5)
    result = await ref.load()  # 25
    await client.close()

asyncio.run(main())
"""

REDIS_ASYNC = """
from cashet.async_client import AsyncClient
from cashet.redis_store import AsyncRedisStore

client = AsyncClient(store=AsyncRedisStore("redis://localhost:6379/0"))
"""


def run_example(source: str, folder: Path) -> dict[str, Any]:
    script = folder / "example.py"
    script.write_text(textwrap.dedent(source))
    return runpy.run_path(str(script), run_name="__main__")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CASHET_DIR", raising=False)
    return tmp_path


# The Quick Start example never closes its client (nor does the spec): its store's
# connection is left to the garbage collector, which may say so.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_spec_quick_start_async(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_example(QUICK_START_ASYNC, in_tmp)
    run_example(QUICK_START_ASYNC, in_tmp)  # the second run is a hit
    assert capsys.readouterr().out.splitlines() == ["42", "42"]
    assert (in_tmp / ".cashet" / "meta.db").exists()
    with Client() as sync:  # same store: the async client's commit is there
        assert [c.func_name for c in sync.log()] == ["main.<locals>.compute"]


def test_spec_api_async_client(in_tmp: Path) -> None:
    run_example(API_ASYNC_CLIENT, in_tmp)
    with Client() as sync:
        (commit,) = sync.log()
        assert sync.get(commit.hash) == 25


def test_spec_redis_async(in_tmp: Path) -> None:
    pytest.importorskip("redis")
    ns = run_example(REDIS_ASYNC, in_tmp)
    client = ns["client"]
    from cashet.redis_store import AsyncRedisStore

    assert isinstance(client, AsyncClient) and isinstance(client.store, AsyncRedisStore)
    asyncio.run(client.close())  # constructing connects to nothing yet


# --- coroutine tasks and threads ------------------------------------------------------------


def test_async_def_is_awaited_on_the_loop_plain_function_runs_in_a_thread(tmp_path: Path) -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()

        async def coro(x: int) -> int:
            RUNS.append(("coro", threading.get_ident()))
            await asyncio.sleep(0)
            return x + 1

        def plain(x: int) -> int:
            RUNS.append(("plain", threading.get_ident()))
            return x * 2

        async with AsyncClient(store_dir=tmp_path) as client:
            a = await client.submit(coro, 1)
            b = await client.submit(plain, a)  # chained: plain receives the loaded 2
            assert isinstance(a, AsyncResultRef) and await b.load() == 4
            assert (await client.submit(coro, 1)).cached
        assert RUNS[0] == ("coro", loop_thread)
        assert RUNS[1][0] == "plain" and RUNS[1][1] != loop_thread

    run(main)


def test_task_decorator_returns_awaitable_task(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path) as client:

            @client.task(tags={"team": "ml"})
            async def triple(x: int) -> int:
                RUNS.append(x)
                return 3 * x

            ref = await triple(5)
            assert await ref.load() == 15 and (await triple.submit(5)).cached
            assert (await client.show(ref.commit_hash)).tags == {"team": "ml"}
            assert triple.__name__ == "triple" and "triple" in str(client.tasks)
        assert RUNS == [5]

    run(main)


# --- timeouts and cancellation --------------------------------------------------------------


def test_timeout_really_cancels_a_coroutine_task(tmp_path: Path) -> None:
    cancelled: list[int] = []

    async def main() -> None:
        async def slow() -> int:
            RUNS.append(1)
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(1)
                raise
            return 1

        async with AsyncClient(store_dir=tmp_path) as client:
            with pytest.raises(TaskTimeoutError, match=r"timed out after 0\.05s") as info:
                await client.submit(slow, _timeout=0.05, _retries=1)
            assert info.value.attempts == 2
            assert (await client.log(status="failed"))[0].func_name.endswith("slow")

    run(main)
    assert RUNS == [1, 1] and cancelled == [1, 1]


def test_a_task_raising_timeout_error_itself_is_not_a_task_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        async def gives_up() -> None:
            raise TimeoutError("upstream")

        async with AsyncClient(store_dir=tmp_path) as client:
            with pytest.raises(TaskError, match="upstream") as info:
                await client.submit(gives_up, _timeout=10)
            assert "timed out after" not in str(info.value)

    run(main)


@pytest.mark.parametrize("kind", ["coroutine", "thread"])
def test_cancel_releases_lease(tmp_path: Path, kind: str) -> None:
    async def main() -> None:
        started = asyncio.Event()
        release = threading.Event()
        loop = asyncio.get_running_loop()

        async def hang_async(x: int) -> int:
            RUNS.append(x)
            started.set()
            await asyncio.sleep(30)
            return x

        def hang_thread(x: int) -> int:
            RUNS.append(x)
            loop.call_soon_threadsafe(started.set)
            release.wait(30)
            return x

        func: Any = hang_async if kind == "coroutine" else hang_thread
        async with AsyncClient(store_dir=tmp_path) as client:
            task = asyncio.ensure_future(client.submit(func, 7))
            await asyncio.wait_for(started.wait(), 10)
            fp = fingerprint(func, 7)
            assert await client.store.get_claim(fp) is not None
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await client.store.get_claim(fp) is None  # released, not left to expire
            release.set()
            # The same call runs again at once (a held lease would block it for minutes).
            if kind == "coroutine":
                RUNS.clear()
                started.clear()
                other = asyncio.ensure_future(client.submit(func, 7))
                await asyncio.wait_for(started.wait(), 10)
                other.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await other
                assert RUNS == [7]

    run(main)


def test_concurrent_submits_of_one_call_run_it_once(tmp_path: Path) -> None:
    async def main() -> None:
        async def slow(x: int) -> int:
            RUNS.append(x)
            await asyncio.sleep(0.05)
            return x

        async with AsyncClient(store_dir=tmp_path) as client:
            refs = await asyncio.gather(*[client.submit(slow, 3) for _ in range(20)])
        assert RUNS == [3]
        assert len({r.commit_hash for r in refs}) == 1
        assert sum(not r.cached for r in refs) == 1

    run(main)


def test_heartbeat_keeps_a_long_task_from_running_twice(tmp_path: Path) -> None:
    async def main() -> None:
        async def long(x: int) -> int:
            RUNS.append(x)
            await asyncio.sleep(0.6)  # twice the lease
            return x

        executor = AsyncLocalExecutor(running_ttl=timedelta(seconds=0.3))
        async with AsyncClient(store_dir=tmp_path, executor=executor) as client:
            first = asyncio.ensure_future(client.submit(long, 1))
            await asyncio.sleep(0.4)  # the lease would have expired without renewal
            second = await client.submit(long, 1)
            assert (await first).commit_hash == second.commit_hash
        assert RUNS == [1]

    run(main)


def test_gather_of_many_distinct_submits(tmp_path: Path) -> None:
    async def main() -> None:
        def double(x: int) -> int:
            return 2 * x

        async with AsyncClient(store_dir=tmp_path) as client:
            refs = await asyncio.gather(*[client.submit(double, i) for i in range(200)])
            assert [await r.load() for r in refs] == [2 * i for i in range(200)]
            again = await asyncio.gather(*[client.submit(double, i) for i in range(200)])
            assert all(r.cached for r in again)
            assert (await client.stats())["total_commits"] == 200

    run(main)


def test_submit_many_failure_cancels_the_running_tasks_and_releases_them(tmp_path: Path) -> None:
    async def main() -> None:
        async def hang(x: int) -> int:
            RUNS.append(x)
            await asyncio.sleep(30)
            return x

        async def bad() -> int:
            await asyncio.sleep(0.05)
            raise KeyError("missing")

        def after(x: int) -> int:
            RUNS.append(("after", x))
            return x

        async with AsyncClient(store_dir=tmp_path) as client:
            with pytest.raises(TaskError, match="missing"):
                await client.submit_many([(hang, (1,)), bad, (after, (TaskRef(1),))], max_workers=3)
            assert RUNS == [1]  # the dependent never ran
            assert await client.store.get_claim(fingerprint(hang, 1)) is None

    run(main)


# --- big values off the loop ----------------------------------------------------------------


class RecordingSerializer:
    """Pickle, recording the thread every dumps/loads runs in."""

    def __init__(self) -> None:
        self.threads: list[tuple[str, int]] = []

    def dumps(self, obj: Any) -> bytes:
        self.threads.append(("dumps", threading.get_ident()))
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> Any:
        self.threads.append(("loads", threading.get_ident()))
        return pickle.loads(data)


def make_bytes(n: int) -> bytes:
    return b"x" * n


def test_small_values_stay_on_the_loop_big_ones_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cashet.async_client as ac

    hashed_in: list[int] = []

    def recording_hash_call(func: Any, args: Any, kwargs: Any, *more: Any) -> str:
        hashed_in.append(threading.get_ident())
        return hash_call(func, args, kwargs, *more)

    monkeypatch.setattr(ac, "hash_call", recording_hash_call)
    serializer = RecordingSerializer()

    async def main() -> None:
        loop_thread = threading.get_ident()
        async with AsyncClient(store_dir=tmp_path, serializer=serializer) as client:
            small = await client.submit(make_bytes, 10)
            assert await small.load() == b"x" * 10
            assert hashed_in == [loop_thread]
            assert serializer.threads == [("dumps", loop_thread), ("loads", loop_thread)]
            serializer.threads.clear()

            big = await client.submit(make_bytes, 2 << 20)
            assert len(await big.load()) == 2 << 20
            assert [what for what, _ in serializer.threads] == ["dumps", "loads"]
            assert all(t != loop_thread for _, t in serializer.threads)

            await client.submit(len, b"y" * (2 << 20))
            assert hashed_in[-1] != loop_thread

    run(main)


class _BigGlobal:
    """A big value a task reads (``nbytes`` says so); records where it is hashed."""

    nbytes = 4 << 20

    def __cashet_hash__(self) -> Any:
        HASHED_IN.append(threading.get_ident())
        return "big"


HASHED_IN: list[int] = []


BIG_GLOBAL = _BigGlobal()


def reads_a_big_global(x: int) -> int:
    return x + len(type(BIG_GLOBAL).__name__)


def test_a_big_global_is_rehashed_off_the_loop(tmp_path: Path) -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        async with AsyncClient(store_dir=tmp_path) as client:
            await client.submit(reads_a_big_global, 1)  # the first identity: on the loop
            HASHED_IN.clear()
            ref = await client.submit(reads_a_big_global, 1)
            assert ref.cached and await ref.load() == 11
            assert HASHED_IN and loop_thread not in HASHED_IN
            HASHED_IN.clear()
            assert await client.lookup(reads_a_big_global, 1) is not None
            assert HASHED_IN and loop_thread not in HASHED_IN

    run(main)


def test_size_estimate() -> None:
    np = pytest.importorskip("numpy")
    assert not is_big((1, "a", 2.5, None, {"k": [1, 2, 3]}))
    assert not is_big(b"x" * 1000)
    assert is_big(b"x" * (1 << 20))
    assert is_big(["x" * (600 << 10), "y" * (600 << 10)])
    assert is_big(np.zeros(1 << 18))  # 2 MiB
    assert not is_big(np.zeros(10))
    assert is_big(list(range(20_000)))
    assert is_big([str(i) for i in range(500)])  # too many objects to bound: off the loop


# --- stores, sharing, archive ---------------------------------------------------------------


def test_sync_and_async_clients_share_one_store(tmp_path: Path) -> None:
    def add(x: int, y: int) -> int:
        RUNS.append((x, y))
        return x + y

    with Client(store_dir=tmp_path) as sync:
        sync.submit(add, 1, 2)

    async def main() -> None:
        async with AsyncClient(store=AsyncSQLiteStore(tmp_path)) as client:
            ref = await client.submit(add, 1, 2)
            assert ref.cached and await ref.load() == 3
            await client.submit(add, 2, 2)

    run(main)
    with Client(store_dir=tmp_path) as sync:
        assert sync.submit(add, 2, 2).cached
    assert RUNS == [(1, 2), (2, 2)]


def square(x: int) -> int:
    return x * x


def test_export_and_import_archive(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path / "a") as a:
            refs = await a.map(square, range(5))
            written = await a.export(tmp_path / "backup.tar.gz")
            assert written == 5
        async with AsyncClient(store_dir=tmp_path / "b") as b:
            assert await b.import_archive(tmp_path / "backup.tar.gz") == 5
            assert await b.get(refs[3].commit_hash) == 9
            assert (await b.submit(square, 4)).cached

    run(main)


@pytest.mark.redis
def test_export_from_async_redis_and_import_into_async_sqlite(
    tmp_path: Path, redis_url: str
) -> None:
    from cashet.redis_store import AsyncRedisStore
    from tests._redis import drop_prefix, fresh_prefix

    prefix = fresh_prefix()

    async def main() -> None:
        store = AsyncRedisStore(redis_url, prefix=prefix)
        async with AsyncClient(store=store) as r:
            refs = await r.map(square, range(3))
            assert await r.export(tmp_path / "r.tar.gz") == 3
            assert (await r.show(refs[1].commit_hash[:10])).hash == refs[1].commit_hash
        async with AsyncClient(store_dir=tmp_path / "s") as s:
            assert await s.import_archive(tmp_path / "r.tar.gz") == 3
            assert await s.get(refs[2].commit_hash) == 4

    try:
        run(main)
    finally:
        drop_prefix(redis_url, prefix)


def test_closed_store_and_client_refuse(tmp_path: Path) -> None:
    async def main() -> None:
        client = AsyncClient(store_dir=tmp_path)
        await client.close()
        await client.close()
        with pytest.raises(Exception, match="closed"):
            await client.submit(square, 1)
        with pytest.raises(Exception, match="closed"):
            await client.stats()

    run(main)


# --- the benchmark suite still runs ----------------------------------------------------------


@pytest.mark.slow
def test_quick_async_bench_run(tmp_path: Path) -> None:
    """``bench/run.py --suite async`` works (timings are not asserted, only produced)."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    args = ["--quick", "--suite", "async", "--no-peers", "--results-dir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, str(root / "bench" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    scenarios = report["suites"]["async"]["scenarios"]
    assert "async_hit_f1" in scenarios and "async_gather1000_miss" in scenarios
    for name, row in scenarios.items():
        assert row["results"]["ours"]["status"] == "ok", (name, row["results"]["ours"])
