"""What the PostgreSQL stores do beyond the store contract (tests/test_store_contract.py runs
that on them): URLs, secrets kept out of messages, workers and forks, migrations, damage,
hits, and waits woken by NOTIFY across store objects. A real PostgreSQL (tests/_postgres.py).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cashet import Client
from cashet.async_client import AsyncClient
from cashet.cli import main
from cashet.errors import BlobMissingError, StoreError, StoreUnavailableError
from cashet.postgres_store import AsyncPostgresStore, PostgresStore
from cashet.stores.shipping import open_store, store_config
from tests.test_blob_stores import aws_env  # noqa: F401  (a fixture)
from tests.test_store_contract import FP, make_commit, make_lease

pytestmark = pytest.mark.postgres

RUNS: list[Any] = []


def double(x: int) -> int:
    RUNS.append(x)
    return 2 * x


def noise(n: int) -> bytes:
    RUNS.append(n)
    return random.Random(n).randbytes(n)


def _schema(url: str) -> str:
    return url.rpartition("schema=")[2]


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    dsn, _, _ = pg_url.partition("?")
    with PostgresStore(dsn, schema=_schema(pg_url)) as s:
        yield s


def raw(store: PostgresStore, query: str, *params: Any) -> Any:
    """Run ``query`` (``{s}``: the store's schema) straight on the database."""
    with psycopg.connect(store._dsn, autocommit=True) as conn:
        cur = conn.execute(query.replace("{s}", f'"{store.schema}"'), params or None)
        return cur.fetchall() if cur.description else cur.rowcount


def test_client_by_url_runs_once_and_hits(pg_url: str) -> None:
    RUNS.clear()
    with Client(store=pg_url) as c:
        assert isinstance(c.store, PostgresStore)
        assert c.submit(double, 21).load() == 42
        again = c.submit(double, 21)
        assert again.cached and again.load() == 42
    with Client(store=pg_url) as c:  # another client: the same cache
        assert c.submit(double, 21).cached
    assert RUNS == [21]


def test_cashet_store_environment_and_async_client(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    RUNS.clear()
    monkeypatch.setenv("CASHET_STORE", pg_url)

    async def main_() -> tuple[int, bool]:
        async with AsyncClient() as c:
            assert isinstance(c.store, AsyncPostgresStore)
            first = await c.submit(double, 5)
            second = await c.submit(double, 5)
            return await first.load(), second.cached

    assert asyncio.run(main_()) == (10, True)
    with Client() as c:  # the sync client reads what the async one wrote
        assert c.submit(double, 5).cached
    assert RUNS == [5]


def test_a_password_never_appears(postgres_dsn: str, pg_url: str) -> None:
    # Trust auth ignores the password, so a real store can be opened with one.
    secret = "s3cr3t-pw"
    with_password = pg_url.replace("://postgres@", f"://postgres:{secret}@").replace(
        "://root@", f"://root:{secret}@"
    )
    assert secret in with_password
    with Client(store=with_password) as c:
        assert secret not in repr(c.store) and "***" in repr(c.store)
        assert secret not in repr(c.store.config)  # type: ignore[attr-defined]
        assert secret in c.store.config.location  # type: ignore[attr-defined]
    unreachable = f"postgresql://postgres:{secret}@127.0.0.1:1/nowhere"
    with pytest.raises(StoreUnavailableError) as caught:
        PostgresStore(unreachable, connect_timeout=1)
    assert secret not in str(caught.value) and "127.0.0.1" in str(caught.value)
    with pytest.raises(StoreUnavailableError) as caught:
        PostgresStore(f"host=127.0.0.1 port=1 password={secret}", connect_timeout=1)
    assert secret not in str(caught.value)
    result = CliRunner().invoke(main, ["--store", unreachable, "log"])
    assert result.exit_code != 0
    assert secret not in result.output and "could not open the store" in result.output


def test_pickled_and_shipped_stores_reconnect(store: PostgresStore) -> None:
    ref = store.put_blob(b"travels")
    commit = make_commit(result=ref)
    store.put_commit(commit)
    copy = pickle.loads(pickle.dumps(store))
    try:
        assert copy is not store and copy.get_commit(commit.hash) == commit
    finally:
        copy.close()
    config = store_config(store, remote=True)  # workers anywhere may reach the database
    assert config.kind == "postgres"
    shipped = open_store(pickle.loads(pickle.dumps(config)))
    assert shipped.get_blob(ref) == b"travels"
    assert open_store(config) is shipped  # once per process


def _in_child(store: PostgresStore, fingerprint: str, queue: Any) -> None:
    found = store.find_by_fingerprint(fingerprint)
    other = make_commit(args="from the child", result=store.put_blob(b"child"))
    store.put_commit(other)
    queue.put((found is not None, other.hash))


def test_a_forked_child_opens_its_own_connections(store: PostgresStore) -> None:
    commit = make_commit(result=store.put_blob(b"parent"))
    store.put_commit(commit)  # the parent's pool is open and in use
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_in_child, args=(store, FP, queue))
    child.start()
    found, child_commit = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0 and found
    # The parent's connections survived the child (its exit closed none of them).
    assert store.get_commit(child_commit) is not None
    assert store.find_by_fingerprint(FP) == commit


def test_a_newer_schema_is_refused_and_migration_runs_once(store: PostgresStore) -> None:
    dsn = store._dsn
    opened = []

    def open_new() -> None:
        with PostgresStore(dsn, schema=store.schema + "_b") as s:
            opened.append(s.stats()["total_commits"])

    threads = [threading.Thread(target=open_new) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == [0, 0, 0, 0]  # four stores created one schema, without a clash
    raw(store, "DROP SCHEMA {s}_b CASCADE".replace("{s}_b", f'"{store.schema}_b"'))
    raw(store, "UPDATE {s}.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer cashet"):
        PostgresStore(dsn, schema=store.schema)


def test_a_damaged_commit_is_quarantined_and_recomputed(pg_url: str) -> None:
    RUNS.clear()
    with Client(store=pg_url) as c:
        ref = c.submit(double, 4)
        store = c.store
        assert isinstance(store, PostgresStore)
        raw(store, "UPDATE {s}.commits SET body = replace(body, '\"status\"', '\"stat\"')")
        store._ops._decoded.clear()  # as in a new process
        assert store.get_commit(ref.commit_hash) is None
        [entry] = store.quarantined()
        assert entry.hash == ref.commit_hash and "damaged" in entry.reason
        again = c.submit(double, 4)
        assert not again.cached and again.load() == 8
    assert RUNS == [4, 4]


def test_a_lost_blob_is_a_clear_error_then_repaired(pg_url: str) -> None:
    RUNS.clear()
    with Client(store=pg_url) as c:
        ref = c.submit(noise, 20_000)
        store = c.store
        assert isinstance(store, PostgresStore)
        assert raw(store, "DELETE FROM {s}.blob_data") == 1  # large: not inline
        with pytest.raises(BlobMissingError):
            c.submit(noise, 20_000).load()
        again = c.submit(noise, 20_000)
        assert not again.cached and again.load() == noise(20_000)
        assert again.hash == ref.hash and store.has_blob(ref.hash)


def test_a_corrupt_blob_is_dropped_and_repaired(store: PostgresStore) -> None:
    data = os.urandom(5000)
    ref = store.put_blob(data)
    raw(store, "UPDATE {s}.blob_data SET data = '\\x0041'::bytea")
    from cashet.errors import BlobCorruptedError

    with pytest.raises(BlobCorruptedError):
        store.get_blob(ref)
    assert not store.has_blob(ref.hash)
    assert store.put_blob(data) == ref and store.get_blob(ref) == data


def test_hits_are_counted_in_batches(pg_url: str) -> None:
    with Client(store=pg_url) as c:
        ref = c.submit(double, 8)
        for _ in range(3):
            assert c.submit(double, 8).cached
        store = c.store
        assert isinstance(store, PostgresStore)
        store.flush_hits()
        counts = store.hit_counts([ref.commit_hash])
        assert counts[ref.commit_hash].hits == 3
        assert store.hit_totals()[0] == 3
        got = store.get_commit(ref.commit_hash)
        assert got is not None and got.last_accessed is not None


def test_a_release_wakes_a_waiter_on_another_store(store: PostgresStore) -> None:
    other = pickle.loads(pickle.dumps(store))  # another store object: its own pool
    try:
        assert store.try_claim(FP, make_lease("holder", seconds=300))
        assert other.running_claims()[0][0] == FP
        timer = threading.Timer(0.3, store.release_claim, (FP, "holder"))
        timer.start()
        started = time.monotonic()
        other.wait_for_release(FP, timeout=120)  # a live lease of a live process: no poll
        waited = time.monotonic() - started
        timer.join()
        assert other.get_claim(FP) is None
        assert waited < 60  # woken by the notification, not by the timeout
    finally:
        other.close()


def test_lease_of_a_foreign_host_blocks_until_expiry(store: PostgresStore) -> None:
    foreign = make_lease("far", seconds=300, host="elsewhere.invalid", pid=1)
    assert store.try_claim(FP, foreign)
    assert not store.try_claim(FP, make_lease("me"))
    expired = make_lease("old", seconds=-1, host="elsewhere.invalid", pid=1)
    fp2 = make_commit(args="2").fingerprint
    assert store.try_claim(fp2, expired)
    assert store.try_claim(fp2, make_lease("me"))  # taken over at expiry


def test_doctor_reports_and_repairs(pg_url: str) -> None:
    with Client(store=pg_url) as c:
        big = c.submit(noise, 20_000)
        small = c.submit(double, 3)
        store = c.store
        assert isinstance(store, PostgresStore)
        assert c.check().ok
        raw(store, "DELETE FROM {s}.blob_data")  # the big result's bytes are lost
        raw(store, "UPDATE {s}.blobs SET refs = 7")  # counts gone wrong
        raw(store, "INSERT INTO {s}.blob_data VALUES ('ff', '\\x00'::bytea)")  # a stray
        assert store.try_claim(FP, make_lease("gone", seconds=-1))
        report = c.check()
        kinds = sorted({f.kind for f in report.remaining})
        assert kinds == ["missing_blob", "orphan_blob", "refcount", "stale_lease"]
        repaired = c.check(repair=True)
        assert repaired.ok and not repaired.remaining
        assert c.check().ok
        assert c.show(big.commit_hash) is None  # removed: the call recomputes
        assert c.show(small.commit_hash) is not None
    result = CliRunner().invoke(main, ["--store", pg_url, "doctor"])
    assert result.exit_code == 0, result.output


@pytest.mark.usefixtures("aws_env")
def test_blobs_in_a_bucket_by_url_with_a_local_cache(
    pg_url: str, s3_server: Any, s3_bucket: str, tmp_path: Path
) -> None:
    from cashet.blob_store import FileBlobStore
    from cashet.stores.objects.cached import CachedBlobStore
    from tests._s3 import SECRET_KEY
    from tests.test_blob_stores import s3_url

    url = f"{pg_url}&blobs={s3_url(s3_server, s3_bucket)}"
    with Client(store=url, local_cache=tmp_path / "cache") as client:
        store = client.store
        assert isinstance(store, PostgresStore)
        assert isinstance(store.blobs, CachedBlobStore)
        ref = client.submit(noise, 200_000)
        again = client.submit(noise, 200_000)
        assert again.cached and again.load() == noise(200_000)
        assert store.stats()["blob_objects"] == 1
        assert raw(store, "SELECT count(*) FROM {s}.blob_data") == [(0,)]  # in the bucket
        config = store_config(store, remote=True)
        assert SECRET_KEY not in repr(store) + repr(config)
    assert ref.hash in {h for h, _ in FileBlobStore(tmp_path / "cache").iter_blobs()}
    shipped = open_store(pickle.loads(pickle.dumps(config)))  # a worker: its own blob store
    assert pickle.loads(shipped.get_blob(ref.commit.result)) == noise(200_000)  # type: ignore[arg-type]


def test_local_cache_refused_for_blobs_kept_in_postgres(pg_url: str) -> None:
    with pytest.raises(ValueError, match="keeps its blobs in PostgreSQL"):
        Client(store=pg_url, local_cache="x")
