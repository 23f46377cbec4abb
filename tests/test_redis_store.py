"""What only the Redis stores have: key layout and prefixes, chunked blobs, atomic writes,
repair of lost or corrupt blobs, round trips of the hit path, and a Redis that goes away.

The behaviour every store shares is in ``test_store_contract.py``. Faults are real: a
private ``redis-server`` that a test stops or pauses, a port nothing listens on, a client
SIGKILLed mid-write. No mocks.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cashet.errors import BlobCorruptedError, BlobMissingError, StoreError, StoreUnavailableError
from cashet.models import ObjectRef, utcnow
from cashet.stores.blobs import blob_hash
from tests._redis import (
    RedisServer,
    check_invariants,
    drop_prefix,
    fresh_prefix,
    start_private_server,
)
from tests.test_store_contract import FP, make_commit, make_lease

redis = pytest.importorskip("redis")

from cashet.redis_store import AsyncRedisStore, RedisStore  # noqa: E402

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    p = fresh_prefix()
    yield p
    drop_prefix(redis_url, p)


@pytest.fixture
def rstore(redis_url: str, prefix: str) -> Iterator[RedisStore]:
    with RedisStore(redis_url, prefix=prefix) as store:
        yield store


@pytest.fixture
def raw(redis_url: str) -> Iterator[Any]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop, pause or flush."""
    srv = start_private_server(tmp_path)
    yield srv
    srv.stop()


def keys_of(raw: Any, prefix: str) -> set[str]:
    return {k.decode()[len(prefix) :] for k in raw.scan_iter(match=prefix + "*", count=1000)}


def call_name(call: Any) -> str:
    """What a store call is: a script's name, "pipeline", or a command's name."""
    if call.script is not None:
        return str(call.script.name)
    return "pipeline" if call.batch else str(call.args[0])


def left_behind(raw: Any, prefix: str) -> set[str]:
    """The keys under ``prefix`` but the counters and the kept replies of counting calls
    (``done:*``, which expire by themselves)."""
    counters = {"stats:blob", "stats:commit"}
    return {k for k in keys_of(raw, prefix) if k not in counters and not k.startswith("done:")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- packaging ------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_import_cashet_does_not_import_redis() -> None:
    proc = run_python(
        """
        import sys
        import cashet, cashet.store, cashet.client
        assert "redis" not in sys.modules, "import cashet pulled in redis"
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_missing_redis_extra_says_how_to_install() -> None:
    # sys.modules[name] = None makes "import redis" fail exactly as when it is not installed.
    proc = run_python(
        """
        import sys
        sys.modules["redis"] = None
        try:
            from cashet.redis_store import RedisStore
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without redis")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "cashet[redis]"' in proc.stdout


def test_public_names() -> None:
    import cashet.redis_store as public
    from cashet.protocols import AsyncStore, Store

    assert public.__all__ == ["AsyncRedisStore", "RedisStore"]
    assert public.RedisStore is RedisStore and public.AsyncRedisStore is AsyncRedisStore
    # Constructing connects to nothing yet.
    assert isinstance(RedisStore("redis://127.0.0.1:1/0"), Store)
    assert isinstance(AsyncRedisStore("redis://127.0.0.1:1/0"), AsyncStore)


def test_no_warning_on_construction(redis_url: str, prefix: str) -> None:
    """Each client gets the retry object of its own kind and redis-py warns about nothing.

    redis-py 8 converts a sync ``Retry`` given to an asyncio client, with a ``UserWarning``
    that ``-W error`` (and this suite) turns into a crash (issue 9).
    """
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.retry import Retry

    async def go() -> None:
        async with AsyncRedisStore(redis_url, prefix=prefix) as store:
            retry = store._r.get_retry()
            assert isinstance(retry, AsyncRetry)
            assert retry._retries == 0  # resending is ours, per call (see _exec)
            assert await store.stats() is not None

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(go())
        with RedisStore(redis_url, prefix=prefix) as sync_store:
            retry = sync_store._r.get_retry()
            assert isinstance(retry, Retry) and retry._retries == 0
            assert sync_store.stats() is not None


def test_async_twin_matches_sync_store() -> None:
    """Every public method of the async store is a coroutine (or async iterator) with the
    same signature as its sync twin."""
    sync_methods = {n for n, _ in inspect.getmembers(RedisStore) if not n.startswith("_")}
    async_methods = {n for n, _ in inspect.getmembers(AsyncRedisStore) if not n.startswith("_")}
    assert sync_methods == async_methods
    for name in sorted(sync_methods):
        sync_attr, async_attr = getattr(RedisStore, name), getattr(AsyncRedisStore, name)
        if not callable(sync_attr) or isinstance(sync_attr, type):
            continue
        if name == "iter_commits":
            assert inspect.isasyncgenfunction(async_attr)
        elif name == "record_hit":  # AsyncHitCounter: in memory, no IO, a plain call
            assert not inspect.iscoroutinefunction(async_attr)
        else:
            assert inspect.iscoroutinefunction(async_attr), name
        sync_sig, async_sig = inspect.signature(sync_attr), inspect.signature(async_attr)
        assert list(sync_sig.parameters) == list(async_sig.parameters), name


# --- keys and prefixes ----------------------------------------------------------------------


def test_key_layout(rstore: RedisStore, raw: Any, prefix: str) -> None:
    ref = rstore.put_blob(b"result bytes")
    commit = make_commit(result=ref, tags={"env": "prod"}, expires_in=3600)
    rstore.put_commit(commit)
    assert rstore.try_claim(FP, make_lease("me"))
    h, fp = commit.hash, commit.fingerprint
    assert keys_of(raw, prefix) == {
        f"commit:{h}",
        "index:created",
        f"index:fp:{fp}",
        f"index:hit:{fp}",
        "index:func:f",
        "index:status:completed",
        "index:tag:3:env",
        "index:tagv:3:env:prod",
        "index:last_accessed",
        "index:expires",
        "index:hashes",
        f"blob:meta:{ref.hash}",
        f"blob:data:{ref.hash}",
        f"blob:ref:{ref.hash}",
        "stats:blob",
        "stats:commit",
        f"lock:{FP}",
        "leases:running",  # the calls in flight (log status=running)
    }
    assert raw.get(f"{prefix}blob:ref:{ref.hash}") == b"1"
    # The lock key outlives its lease a little; expiry is judged from the lease itself.
    assert 60_000 < raw.pttl(f"{prefix}lock:{FP}") <= 120_000
    rstore.release_claim(FP, "me")
    assert rstore.delete_commit(h)
    assert left_behind(raw, prefix) == set()


def test_prefixes_isolate_caches(redis_url: str, raw: Any) -> None:
    p1, p2 = fresh_prefix(), fresh_prefix()
    others = _others(raw, p1, p2)
    try:
        with RedisStore(redis_url, prefix=p1) as a, RedisStore(redis_url, prefix=p2) as b:
            ref = a.put_blob(b"only in a")
            commit = make_commit(result=ref, tags={"k": "v"})
            a.put_commit(commit)
            assert a.try_claim(FP, make_lease("a"))
            assert b.get_commit(commit.hash) is None
            assert b.find_by_fingerprint(commit.fingerprint) is None
            assert not b.has_blob(ref.hash)
            assert b.list_commits() == [] and b.stats()["total_commits"] == 0
            assert b.try_claim(FP, make_lease("b"))  # its own lock
            assert b.delete_by_tags({"k": "v"}) == 0
            assert b.evict(utcnow() + timedelta(days=1), max_size_bytes=0) == 0
            assert a.find_by_fingerprint(commit.fingerprint) == commit
            assert a.stats()["total_commits"] == 1
        assert _others(raw, p1, p2) == others  # no key outside the two prefixes touched
    finally:
        drop_prefix(redis_url, p1)
        drop_prefix(redis_url, p2)


def _others(raw: Any, *prefixes: str) -> dict[bytes, bytes | None]:
    """Every key of the database outside ``prefixes``, with its dumped value."""
    keys = [k for k in raw.scan_iter(count=1000) if not k.decode().startswith(prefixes)]
    return {k: raw.dump(k) for k in keys}


def test_sync_and_async_stores_share_one_cache(redis_url: str, prefix: str) -> None:
    with RedisStore(redis_url, prefix=prefix) as sync_store:
        ref = sync_store.put_blob(b"shared")
        commit = make_commit(result=ref)
        sync_store.put_commit(commit)

    async def read() -> tuple[Any, bytes]:
        async with AsyncRedisStore(redis_url, prefix=prefix) as store:
            found = await store.find_by_fingerprint(commit.fingerprint)
            again = await store.find_by_fingerprint(commit.fingerprint)  # the repeat path
            assert again == found
            return found, await store.get_blob(ref)

    found, data = asyncio.run(read())
    assert found == commit and data == b"shared"


def test_invariant_checker_notices_damage(
    rstore: RedisStore, raw: Any, prefix: str, redis_url: str
) -> None:
    ref = rstore.put_blob(b"x")
    rstore.put_commit(make_commit(result=ref))
    check_invariants(redis_url, prefix)
    raw.incr(f"{prefix}blob:ref:{ref.hash}")
    with pytest.raises(AssertionError, match="reference counts"):
        check_invariants(redis_url, prefix)
    raw.decr(f"{prefix}blob:ref:{ref.hash}")


# --- large blobs ----------------------------------------------------------------------------


def test_chunked_blob(redis_url: str, prefix: str, raw: Any) -> None:
    data = os.urandom(10_000)  # incompressible: stored as 10,001 bytes in 11 chunks
    with RedisStore(redis_url, prefix=prefix, chunk_size=1000) as store:
        ref = store.put_blob(data)
        chunks = sorted(k for k in keys_of(raw, prefix) if k.startswith(f"blob:data:{ref.hash}:"))
        assert len(chunks) == 11
        assert all(raw.pttl(prefix + k) == -1 for k in chunks)  # published: no expiry
        assert store.get_blob(ref) == data
        assert store.put_blob(data) == ref  # deduplicated
        stats = store.stats()
        assert (stats["blob_objects"], stats["blob_bytes"]) == (1, 10_001)
        commit = make_commit(result=ref)
        store.put_commit(commit)
        check_invariants(redis_url, prefix)
        assert store.find_by_fingerprint(commit.fingerprint) == commit
        raw.delete(prefix + chunks[3])  # a chunk lost: reported, never wrong bytes
        assert not store.has_blob(ref.hash)
        assert store.find_by_fingerprint(commit.fingerprint) is None
        with pytest.raises(BlobMissingError):
            store.get_blob(ref)
        assert store.put_blob(data) == ref  # rewritten under a new generation
        assert store.get_blob(ref) == data
        assert store.delete_commit(commit.hash)
        assert left_behind(raw, prefix) == set()


@pytest.mark.slow
def test_blob_larger_than_default_chunk(rstore: RedisStore, redis_url: str, prefix: str) -> None:
    data = os.urandom(33 << 20)  # over the 32 MiB default chunk size
    ref = rstore.put_blob(data)
    assert rstore.get_blob(ref) == data
    assert rstore.stats()["blob_bytes"] == len(data) + 1
    check_invariants(redis_url, prefix)


def test_interrupted_chunked_write_leaves_no_visible_blob(
    redis_url: str, prefix: str, raw: Any
) -> None:
    """A writer that dies between its chunks and their publication leaves nothing visible,
    and its chunks expire by themselves."""
    data = os.urandom(5000)
    with RedisStore(redis_url, prefix=prefix, chunk_size=1000) as store:
        flow = store._ops.put_blob(data)
        call = next(flow)
        while call.script is None:  # the chunk writes; stop before the publishing script
            call = flow.send(store._exec(call))
        flow.close()
        from cashet.stores.blobs import blob_hash

        h = blob_hash(data)
        chunks = [k for k in keys_of(raw, prefix) if k.startswith(f"blob:data:{h}:")]
        assert len(chunks) == 6
        assert all(raw.pttl(prefix + k) > 0 for k in chunks)
        assert not store.has_blob(h)
        assert store.stats()["stored_objects"] == 0
        check_invariants(redis_url, prefix)
        ref = store.put_blob(data)  # a later writer publishes its own generation
        assert store.get_blob(ref) == data


def test_every_retried_call_is_safe_to_resend(redis_url: str, prefix: str, raw: Any) -> None:
    """Every call is sent twice, as when its reply was lost and it was resent: the data,
    the counters and the replies are exactly as if it had been sent once."""
    with RedisStore(redis_url, prefix=prefix, chunk_size=1000) as store:
        real = store._exec
        resent: set[str] = set()

        def twice(call: Any) -> Any:
            real(call)
            resent.add(call_name(call))
            return real(call)

        store._exec = twice  # type: ignore[method-assign]
        small, large = store.put_blob(b"small"), store.put_blob(os.urandom(5000))
        big = store.put_blob(os.urandom(100_000))
        commits = [make_commit("f", str(i), result=r) for i, r in enumerate((small, large, big))]
        for c in commits:
            store.put_commit(c)
        store.touch(commits[0].hash, utcnow())
        assert store.try_claim(FP, make_lease("me"))
        assert store.renew_claim(FP, "me", utcnow() + timedelta(minutes=1))
        store.release_claim(FP, "me")
        assert store.try_claim(FP, make_lease("me"))
        ended = store.put_result(b"end", lambda r: make_commit("g", "1", result=r), (FP, "me"))
        assert store.get_claim(FP) is None and store.get_commit(ended.hash) == ended
        assert store.find_by_fingerprint(commits[1].fingerprint) == commits[1]
        assert store.get_blob(large) == store.get_blob(large)
        stats = store.stats()
        assert (stats["total_commits"], stats["stored_objects"]) == (4, 4)
        check_invariants(redis_url, prefix)
        assert store.delete_commit(commits[0].hash)
        assert store.delete_by_tags({"nope": None}) == 0
        assert store.evict(utcnow() + timedelta(days=1)) == 3
        check_invariants(redis_url, prefix)
    assert {"put_blob", "publish_chunked", "put_commit", "put_result", "delete"} <= resent
    assert left_behind(raw, prefix) == set()


# --- repair ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [100, 200_000], ids=["inline", "large"])
def test_corrupt_blob_is_reported_then_repaired(
    rstore: RedisStore, raw: Any, prefix: str, redis_url: str, size: int
) -> None:
    data = os.urandom(size)
    ref = rstore.put_blob(data)
    commit = make_commit(result=ref)
    rstore.put_commit(commit)
    key = f"{prefix}blob:data:{ref.hash}"
    stored = raw.get(key)
    raw.set(key, stored[:-1] + bytes([stored[-1] ^ 1]))  # same length, one bit flipped
    rstore._ops._blobs.clear()
    found = rstore.find_by_fingerprint(commit.fingerprint)  # brings the small one along
    assert found == commit
    with pytest.raises(BlobCorruptedError):
        rstore.get_blob(ref)
    assert not rstore.has_blob(ref.hash)
    assert rstore.find_by_fingerprint(commit.fingerprint) is None  # recompute, don't serve
    check_invariants(redis_url, prefix)
    assert rstore.put_blob(data) == ref
    assert rstore.get_blob(ref) == data
    assert rstore.find_by_fingerprint(commit.fingerprint) == commit
    check_invariants(redis_url, prefix)


def test_lost_blob_data_is_reported_then_repaired(
    rstore: RedisStore, raw: Any, prefix: str
) -> None:
    ref = rstore.put_blob(b"will be lost")
    old = make_commit(ago=10, result=rstore.put_blob(b"older result"))
    new = make_commit(ago=5, result=ref)
    rstore.put_commit(old)
    rstore.put_commit(new)
    raw.delete(f"{prefix}blob:data:{ref.hash}")  # e.g. evicted by a maxmemory policy
    rstore._ops._blobs.clear()
    with pytest.raises(BlobMissingError):
        rstore.get_blob(ref)
    assert rstore.find_by_fingerprint(new.fingerprint) == old  # the newest one readable
    rstore.put_blob(b"will be lost")
    assert rstore.find_by_fingerprint(new.fingerprint) == new


# --- atomicity ------------------------------------------------------------------------------

WRITER = """
import os, sys
sys.path[:0] = {paths!r}
from tests.test_store_contract import make_commit
from cashet.redis_store import RedisStore

store = RedisStore({url!r}, prefix={prefix!r}, chunk_size=4096)
print("ready", flush=True)
i = 0
while True:
    ref = store.put_blob(os.urandom(1000 + (i % 3) * 5000))
    store.put_commit(make_commit("f", str(i), result=ref, tags={{"n": str(i % 5)}}))
    if i % 4 == 3:
        store.delete_commit(make_commit("f", str(i - 2)).hash)
    i += 1
"""


@pytest.mark.slow
def test_writer_killed_mid_write_leaves_consistent_keys(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """SIGKILL a client writing as fast as it can, several times: never a half commit, a
    wrong reference count or a visible half blob."""
    paths = [str(Path(__file__).resolve().parents[1]), *sys.path]
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(paths=paths, url=redis_url, prefix=prefix))
    for delay in (0.3, 0.45, 0.6):
        with subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, text=True
        ) as proc:
            try:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
                time.sleep(delay)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        counts = check_invariants(redis_url, prefix)
    assert counts["commits"] > 0


# --- threads and processes ----------------------------------------------------------------


def test_threads_share_one_store(rstore: RedisStore, redis_url: str, prefix: str) -> None:
    """Each thread gets its own connection, handed back to the pool when the thread ends."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                ref = rstore.put_blob(f"{n}-{i}".encode())
                commit = make_commit("f", f"{n}-{i}", result=ref)
                rstore.put_commit(commit)
                assert rstore.find_by_fingerprint(commit.fingerprint) == commit
                assert rstore.get_blob(ref) == f"{n}-{i}".encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert rstore.stats()["total_commits"] == 160
    del threads
    gc.collect()
    pool = rstore._r.connection_pool
    assert len(pool._in_use_connections) <= 1  # only this thread's is still held
    check_invariants(redis_url, prefix)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_store_works_in_a_forked_child(rstore: RedisStore) -> None:
    commit = make_commit()
    rstore.put_commit(commit)
    assert rstore.get_commit(commit.hash) == commit  # the parent's connection is open
    with warnings.catch_warnings():  # 3.12+ warns when other threads exist; none use Redis
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its own connection, the parent's left alone
        ok = rstore.get_commit(commit.hash) == commit and rstore.stats()["total_commits"] == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert rstore.get_commit(commit.hash) == commit  # and the parent's still works


# --- the hit path ---------------------------------------------------------------------------


def count_calls(store: RedisStore) -> list[str]:
    calls: list[str] = []
    real = store._exec

    def spy(call: Any) -> Any:
        calls.append(call_name(call))
        return real(call)

    store._exec = spy  # type: ignore[method-assign]
    return calls


def test_hit_is_one_round_trip(rstore: RedisStore) -> None:
    ref = rstore.put_blob(b"small result")
    commit = make_commit(result=ref)
    rstore.put_commit(commit)
    calls = count_calls(rstore)
    for _ in range(3):
        found = rstore.find_by_fingerprint(commit.fingerprint)
        assert found == commit and found is not commit
        assert rstore.get_blob(ref) == b"small result"
    # The first lookup runs the script, which brings the JSON and the bytes along; later
    # ones confirm what this process has with three plain reads in one round trip.
    assert calls == ["find", "pipeline", "pipeline"]


def test_repeat_hit_notices_every_change(rstore: RedisStore, raw: Any, prefix: str) -> None:
    """What the repeat-hit check must see: a newer commit, the commit deleted or expired,
    its blob lost. Each time the script decides, as on a first lookup."""
    ref = rstore.put_blob(b"v1")
    first = make_commit(ago=30, result=ref)
    rstore.put_commit(first)
    calls = count_calls(rstore)

    def lookup() -> Any:
        rstore.find_by_fingerprint(first.fingerprint)  # remember it
        calls.clear()
        return rstore.find_by_fingerprint(first.fingerprint)

    assert lookup() == first and calls == ["pipeline"]
    newer = make_commit(ago=20, result=rstore.put_blob(b"v2"))
    rstore.put_commit(newer)
    assert lookup() == newer and calls == ["pipeline"]  # the first look saw the change
    rstore.find_by_fingerprint(first.fingerprint)
    calls.clear()
    raw.delete(f"{prefix}blob:data:{newer.result.hash}")  # type: ignore[union-attr]
    assert rstore.find_by_fingerprint(first.fingerprint) == first
    assert calls == ["pipeline", "find"]
    rstore.put_blob(b"v2")  # repaired
    short = make_commit(ago=10, result=rstore.put_blob(b"v3"), expires_in=3600)
    rstore.put_commit(short)
    assert lookup() == short and calls == ["pipeline"]
    template = rstore._ops._templates[short.hash]
    template.expires_at = utcnow()  # as if its hour had passed, for this process's check
    calls.clear()
    rstore.find_by_fingerprint(first.fingerprint)
    assert calls == ["pipeline", "find"]
    template.expires_at = short.expires_at
    assert rstore.delete_commit(short.hash)  # forgets this process's blob copies too
    calls.clear()
    assert rstore.find_by_fingerprint(first.fingerprint) == newer
    assert calls == ["find"]


def _with(ref: Any, **fields: Any) -> Any:
    def build(r: Any) -> Any:
        assert r == ref
        return make_commit(result=r, **fields)

    return build


@pytest.mark.parametrize("size", [10, 5000, 200_000], ids=["inline", "blob", "large"])
def test_put_result_ends_a_miss(rstore: RedisStore, redis_url: str, prefix: str, size: int) -> None:
    """Blob, commit and lease release in one go: as put_blob + put_commit + release_claim,
    in a single round trip unless the result is large."""
    data = os.urandom(size)
    ref = ObjectRef(blob_hash(data), size)
    assert rstore.try_claim(FP, make_lease("me"))
    calls = count_calls(rstore)
    commit = rstore.put_result(data, _with(ref), (FP, "me"))
    assert calls[-1] == "put_result" and (len(calls) == 1) == (size <= 64 << 10)
    assert rstore.get_claim(FP) is None
    assert rstore.find_by_fingerprint(FP) == commit
    assert rstore.get_blob(ref) == data
    check_invariants(redis_url, prefix)
    again = rstore.put_result([data[:3], memoryview(data)[3:]], _with(ref, args="other"))
    assert again.result == ref and rstore.stats()["stored_objects"] == 1
    check_invariants(redis_url, prefix)


def test_put_result_leaves_a_lease_it_does_not_hold(rstore: RedisStore) -> None:
    assert rstore.try_claim(FP, make_lease("someone else"))
    rstore.put_result(b"x", _with(ObjectRef(blob_hash(b"x"), 1)), (FP, "me"))
    claim = rstore.get_claim(FP)
    assert claim is not None and claim.owner == "someone else"


def test_returned_commits_are_independent(rstore: RedisStore) -> None:
    commit = make_commit(tags={"a": "1"})
    rstore.put_commit(commit)
    first = rstore.find_by_fingerprint(commit.fingerprint)
    assert first is not None
    first.tags["a"] = "changed"
    first.from_cache = True
    second = rstore.find_by_fingerprint(commit.fingerprint)
    assert second == commit and not second.from_cache


DOUBLED: list[int] = []


def double(x: int) -> int:
    DOUBLED.append(x)
    return 2 * x


def test_client_round_trip_and_cache_hit(redis_url: str, prefix: str) -> None:
    from cashet import Client

    DOUBLED.clear()
    with Client(store=RedisStore(redis_url, prefix=prefix)) as client:
        assert client.submit(double, 21).load() == 42
        ref = client.submit(double, 21)
        assert ref.cached and ref.load() == 42
    assert DOUBLED == [21]


def test_async_client_over_redis(redis_url: str, prefix: str) -> None:
    from cashet.async_client import AsyncClient

    async def go() -> tuple[int, bool, int, int]:
        async with AsyncClient(store=AsyncRedisStore(redis_url, prefix=prefix)) as client:
            first = await client.submit(double, 5)
            again = await client.submit(double, 5)
            log = await client.log()
            stats = await client.stats()
            return (
                await again.load(),
                again.cached and not first.cached,
                len(log),
                stats["total_commits"],
            )

    DOUBLED.clear()
    assert asyncio.run(go()) == (10, True, 1, 1)
    assert DOUBLED == [5]
    check_invariants(redis_url, prefix)


def test_export_to_and_import_from_sqlite(redis_url: str, prefix: str, tmp_path: Path) -> None:
    from cashet import Client

    def square(x: int) -> int:
        return x * x

    with Client(store_dir=tmp_path / "a") as local:
        for i in range(5):
            local.submit(square, i)
        local.export(tmp_path / "a.tar.gz")
    with Client(store=RedisStore(redis_url, prefix=prefix, chunk_size=64)) as shared:
        assert shared.import_archive(tmp_path / "a.tar.gz") == 5
        assert shared.submit(square, 3).cached
        shared.export(tmp_path / "b.tar.gz")
    check_invariants(redis_url, prefix)
    with Client(store_dir=tmp_path / "b") as again:
        assert again.import_archive(tmp_path / "b.tar.gz") == 5
        assert again.submit(square, 4).load() == 16


# --- errors ---------------------------------------------------------------------------------


def test_unreachable_redis_is_a_clear_error() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with RedisStore(url, socket_connect_timeout=1) as store:
        with pytest.raises(StoreUnavailableError) as info:
            store.find_by_fingerprint(FP)
    text = str(info.value)
    assert "127.0.0.1" in text and "look up fingerprint" in text
    assert "s3cret" not in text and "***" in text
    assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)


def test_async_unreachable_redis_is_a_clear_error() -> None:
    async def go() -> None:
        async with AsyncRedisStore(f"redis://127.0.0.1:{free_port()}/0") as store:
            await store.stats()

    with pytest.raises(StoreUnavailableError, match="read stats"):
        asyncio.run(go())


def test_closed_store_refuses_work(redis_url: str, prefix: str) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.stats()


def test_server_stopped_then_back(server: RedisServer) -> None:
    store = RedisStore(server.url, prefix="t:")
    ref = store.put_blob(b"before")
    server.stop()
    with pytest.raises(StoreUnavailableError, match="store blob"):
        store.put_blob(b"during")
    with pytest.raises(StoreUnavailableError, match=r"wait for the lease|read the lease"):
        store.wait_for_release(FP, timeout=5)
    server.start()  # a fresh, empty server on the same socket: the pool reconnects
    assert not store.delete_commit(make_commit().hash)  # resent on a fresh connection
    assert not store.has_blob(ref.hash)
    assert store.get_blob(store.put_blob(b"after")) == b"after"
    store.close()


def test_scripts_reload_after_script_flush(server: RedisServer) -> None:
    with RedisStore(server.url, prefix="t:") as store:
        commit = make_commit()
        store.put_commit(commit)
        redis.Redis.from_url(server.url).script_flush()
        assert store.find_by_fingerprint(commit.fingerprint) == commit


def test_stalled_server_fails_in_socket_timeout_then_recovers(server: RedisServer) -> None:
    """A server that stops answering (CLIENT PAUSE, a real stall): the call times out once and
    is not sent again, since ``socket_timeout`` bounds the whole operation (issue 13: it was
    sent three times, three times the bound); once the server answers, calls succeed. (A
    resent call's safety is covered by test_every_retried_call_is_safe_to_resend.)"""
    admin = redis.Redis.from_url(server.url)
    with RedisStore(server.url, prefix="t:", socket_timeout=0.3) as store:
        commit = make_commit()
        store.put_commit(commit)
        admin.client_pause(2000)
        with pytest.raises(StoreUnavailableError, match="unreachable"):
            store.get_commit(commit.hash)
        admin.client_unpause()
        assert store.get_commit(commit.hash) == commit
        assert store.delete_commit(commit.hash)
        assert store.stats()["total_commits"] == 0
    admin.close()


def test_stall_longer_than_the_retries_is_an_error(server: RedisServer) -> None:
    admin = redis.Redis.from_url(server.url)
    with RedisStore(server.url, prefix="t:", socket_timeout=0.1) as store:
        store.stats()
        admin.client_pause(3000)
        with pytest.raises(StoreUnavailableError, match="read stats"):
            store.stats()
        admin.client_unpause()
        assert store.stats()["total_commits"] == 0
    admin.close()


def test_lua_scripts_are_package_data_fully_filled_in() -> None:
    from importlib import resources

    from cashet.stores.redis import keys

    shipped = {
        f.name.removesuffix(".lua")
        for f in (resources.files("cashet.stores.redis") / "scripts").iterdir()
        if f.name.endswith(".lua")
    }
    used = {s.name for s in keys.SCRIPTS}
    assert shipped == used | {"_prelude", "_once"}  # no file unused, none missing
    for script in keys.SCRIPTS:
        assert "${" not in script.source, script.name  # every placeholder filled in
        assert keys.PUT_COMMIT.source.startswith(keys._PRELUDE)


def test_default_prefix_is_one_no_published_cashet_uses(redis_url: str, raw: Any) -> None:
    """Issue 12: the published cashet writes under ``cashet:`` (other key types than ours);
    our default prefix is another, and foreign keys beside ours never make a call fail."""
    foreign = {
        b"cashet:commit:abc": "hash",
        b"cashet:index:created": "zset",
        b"cashet:blob:abc": "string",
        b"cashet:tags:x": "set",
    }
    raw.hset(b"cashet:commit:abc", "x", "1")
    raw.zadd(b"cashet:index:created", {"abc": 1})
    raw.set(b"cashet:blob:abc", b"old bytes")
    raw.sadd(b"cashet:tags:x", "abc")
    try:
        with RedisStore(redis_url) as store:
            assert store.prefix == "cashet2:" and not store.prefix.startswith("cashet:")
            ref = store.put_blob(b"ours")
            commit = make_commit(result=ref)
            store.put_commit(commit)
            assert store.find_by_fingerprint(commit.fingerprint) == commit
            assert [c.hash for c in store.list_commits()] == [commit.hash]
            assert store.stats()["total_commits"] == 1
            assert store.evict(utcnow() + timedelta(days=1)) == 1
        for key, kind in foreign.items():  # untouched
            assert raw.type(key).decode() == kind
    finally:
        raw.delete(*foreign)
        drop_prefix(redis_url, "cashet2:")
