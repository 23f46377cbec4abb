"""An ``AsyncSQLiteStore`` hit is answered on the event loop, without its worker thread
(issue 18: "AsyncClient hits without a thread hop"), and stays as safe as the sync one: a
damaged row is still quarantined (that write goes to the worker), a result written by
another process is seen at once, and nothing stale is served.

The worker thread is held busy for real (a ``run_sync`` call waiting on an event): a lookup
that needed it could not finish until released. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest

from cashet import Client
from cashet.async_client import AsyncClient
from cashet.hashing import function_identity, hash_call
from cashet.store import AsyncSQLiteStore
from cashet.stores.quarantine import COMMIT
from cashet.stores.sqlite.lean import fp_key

CALLS: list[int] = []
#: Generous: only a broken implementation waits this long.
PATIENCE = 30.0


def times_ten(x: int) -> int:
    CALLS.append(x)
    return x * 10


def big_result(x: int) -> bytes:
    CALLS.append(x)
    return bytes([x]) * 100_000  # a blob file, not inline in meta.db


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro_fn())


def fingerprint(func: Any, *args: Any) -> str:
    return f"{function_identity(func).hash}:{hash_call(func, args, {})}"


@asynccontextmanager
async def worker_held(store: AsyncSQLiteStore) -> AsyncIterator[None]:
    """Keep the store's worker thread busy for the duration of the block."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(PATIENCE * 2)

    held = asyncio.ensure_future(store.run_sync(hold))
    await asyncio.to_thread(entered.wait, PATIENCE)
    try:
        yield
    finally:
        release.set()
        await held


def test_an_async_hit_needs_no_worker_thread(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path) as client:
            assert await (await client.submit(times_ten, 4)).load() == 40
            store = client.store
            assert isinstance(store, AsyncSQLiteStore)
            async with worker_held(store):
                ref = await asyncio.wait_for(client.submit(times_ten, 4), PATIENCE)
                assert ref.cached
                assert await asyncio.wait_for(ref.load(), PATIENCE) == 40  # bytes came along
                peek = await asyncio.wait_for(client.lookup(times_ten, 4), PATIENCE)
                assert peek is not None and await peek.load() == 40
            assert CALLS == [4]

    run(main)


def test_an_async_hit_is_answered_on_the_loop_thread_in_its_own_connection(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path) as client:
            await client.submit(times_ten, 2)
            store = client.store
            assert isinstance(store, AsyncSQLiteStore)
            worker_conn = await store.run_sync(store.sync_store._conn)
            hit = await store.lookup(fingerprint(times_ten, 2))
            assert hit is not None and hit.data is not None  # the small result, verified
            loop_conn = store.sync_store._conn()
            assert loop_conn is not worker_conn

    run(main)


def test_a_large_result_still_loads_through_the_worker(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path) as client:
            await client.submit(big_result, 7)
            ref = await client.submit(big_result, 7)
            assert ref.cached and await ref.load() == bytes([7]) * 100_000
            assert CALLS == [7]

    run(main)


def test_a_result_written_elsewhere_is_a_hit_at_once(tmp_path: Path) -> None:
    """The loop's connection reads the latest committed state, not a snapshot it kept."""

    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path) as client:
            store = client.store
            assert isinstance(store, AsyncSQLiteStore)
            fp = fingerprint(times_ten, 5)
            assert await store.lookup(fp) is None  # the loop's connection is open now
            with Client(tmp_path) as other:  # another writer (a process would do the same)
                other.submit(times_ten, 5)
            hit = await store.lookup(fp)
            assert hit is not None and hit.data is not None
            ref = await client.submit(times_ten, 5)
            assert ref.cached and await ref.load() == 50
            with Client(tmp_path) as other:
                other.rm(ref.commit_hash)
            assert await store.lookup(fp) is None  # removed elsewhere: no stale hit
            assert not (await client.submit(times_ten, 5)).cached
            assert CALLS == [5, 5]

    run(main)


def test_a_damaged_row_is_still_quarantined_by_an_async_hit(tmp_path: Path) -> None:
    with Client(tmp_path) as c:
        bad = c.submit(times_ten, 1).commit_hash
        c.submit(times_ten, 0)
    with closing(sqlite3.connect(tmp_path / "meta.db", isolation_level=None)) as conn:
        conn.execute("UPDATE commits SET body = '{not json' WHERE hash = ?", (bad,))
    CALLS.clear()

    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path) as client:
            store = client.store
            assert isinstance(store, AsyncSQLiteStore)
            assert store.sync_store.lookup_nowait(fingerprint(times_ten, 1)) is False
            ref = await client.submit(times_ten, 1)
            assert await ref.load() == 10 and not ref.cached and CALLS == [1]
            assert (await client.submit(times_ten, 1)).cached
            assert (await client.submit(times_ten, 0)).cached
            (entry,) = await store.quarantined()
            assert entry.hash == bad and entry.kind == COMMIT

    run(main)


def test_a_row_contradicting_its_body_is_settled_by_the_worker(tmp_path: Path) -> None:
    """Swapped fingerprint columns: the loop leaves it to ``lookup``, which quarantines."""
    with Client(tmp_path) as c:
        h0, h1 = c.submit(times_ten, 0).commit_hash, c.submit(times_ten, 1).commit_hash
    fp0, fp1 = fingerprint(times_ten, 0), fingerprint(times_ten, 1)
    with closing(sqlite3.connect(tmp_path / "meta.db", isolation_level=None)) as conn:
        # (schema v6: the column holds the fingerprint's 64-bit key)
        conn.execute("UPDATE commits SET fp = ? WHERE hash = ?", (fp_key(fp1), h0))
        conn.execute("UPDATE commits SET fp = ? WHERE hash = ?", (fp_key(fp0), h1))
    CALLS.clear()

    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path) as client:
            store = client.store
            assert isinstance(store, AsyncSQLiteStore)
            assert store.sync_store.lookup_nowait(fp0) is False
            r0, r1 = await client.submit(times_ten, 0), await client.submit(times_ten, 1)
            assert (await r0.load(), await r1.load()) == (0, 10)
            assert not r0.cached and not r1.cached and CALLS == [0, 1]
            assert {e.hash for e in await store.quarantined()} == {h0, h1}

    run(main)


def test_a_closed_store_refuses_a_lookup(tmp_path: Path) -> None:
    async def main() -> None:
        store = AsyncSQLiteStore(tmp_path)
        await store.close()
        from cashet.errors import StoreError

        with pytest.raises(StoreError, match="closed"):
            await store.lookup(fingerprint(times_ten, 1))

    run(main)
