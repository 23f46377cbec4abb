"""Blob stores (issue 16): the ``BlobStore`` contract on ``FileBlobStore`` and ``S3BlobStore``
(a real S3-protocol server: moto's ``ThreadedMotoServer`` on loopback, tests/_s3.py), the
SQLite store keeping its blobs in a bucket, faults in the bucket, credentials kept quiet.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cashet import Client
from cashet.blob_store import BlobStoreConfig, CachedBlobStore, FileBlobStore, S3BlobStore
from cashet.errors import BlobCorruptedError, BlobMissingError, StoreError
from cashet.store import AsyncSQLiteStore, SQLiteStore
from cashet.stores.blobs import blob_hash, encode_blob
from cashet.stores.objects.opening import open_blob_store
from cashet.stores.shipping import open_store, store_config
from tests._s3 import ACCESS_KEY, SECRET_KEY, S3Server, start_server


def noise(n: int, seed: int = 0) -> bytes:
    """Incompressible bytes (stored raw)."""
    return random.Random(n * 7 + seed).randbytes(n)


def text(n: int) -> bytes:
    """Compressible bytes (stored zstd)."""
    return (b"cashet stores blobs in buckets " * (n // 31 + 1))[:n]


@pytest.fixture(params=["file", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "file":
        yield FileBlobStore(tmp_path / "objects")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    store = server.blob_store(server.make_bucket())
    yield store
    store.close()


def put(store: Any, data: bytes) -> str:
    h = blob_hash(data)
    store.put(h, [data], len(data))
    return h


# the contract


@pytest.mark.parametrize("data", [b"", b"x", noise(5000), text(50_000), noise(3 << 20)])
def test_put_get_roundtrip(blobs: Any, data: bytes) -> None:
    h = put(blobs, data)
    assert blobs.exists(h)
    assert bytes(blobs.get(h)) == data
    with blobs.open(h, len(data)) as f:
        assert f.read() == data
    assert (h, blobs.stored_size(h)) in list(blobs.iter_blobs())


def test_large_blob_streamed_in_parts(blobs: Any) -> None:
    parts = [noise(3 << 20, 1), memoryview(noise(7 << 20, 2)), text(2 << 20)]
    joined = b"".join(bytes(p) for p in parts)
    h = blob_hash(joined)
    stored, inline = blobs.put(h, parts, len(joined))
    assert inline is None and stored == blobs.stored_size(h)
    got = blobs.get(h)
    assert isinstance(got, bytearray) and got == joined  # large: one buffer, writable


def test_compressible_blob_is_stored_compressed(blobs: Any) -> None:
    data = text(2 << 20)
    h = put(blobs, data)
    size = blobs.stored_size(h)
    assert size is not None and size < len(data) // 10
    assert blobs.get(h) == data


def test_tiny_stored_form_is_handed_back_to_keep_inline(blobs: Any) -> None:
    data = bytes(2 << 20)  # compresses to almost nothing
    h = blob_hash(data)
    stored, inline = blobs.put(h, [data], len(data), inline_below=1024)
    assert inline is not None and len(inline) == stored < 1024
    assert not blobs.exists(h)


def test_put_is_put_if_absent_unless_replace(blobs: Any) -> None:
    data = noise(4000)
    h = put(blobs, data)
    wrong = encode_blob(noise(4000, 9))
    blobs.put_encoded(h, wrong)  # already there: kept
    assert blobs.get(h) == data
    blobs.put_encoded(h, wrong, replace=True)
    with pytest.raises(BlobCorruptedError):
        blobs.get(h)
    assert not blobs.exists(h)  # a corrupt copy is deleted: the next put repairs it
    put(blobs, data)
    assert blobs.get(h) == data


def test_missing_and_deleted(blobs: Any) -> None:
    h = put(blobs, noise(3000))
    blobs.delete(h)
    blobs.delete(h)  # idempotent
    assert not blobs.exists(h) and blobs.stored_size(h) is None
    with pytest.raises(BlobMissingError):
        blobs.get(h)
    with pytest.raises(BlobMissingError), blobs.open(h, 3000):
        pass


def test_corrupt_stream_raises_and_deletes(blobs: Any) -> None:
    data = noise(2 << 20)
    h = put(blobs, data)
    blobs.put_encoded(h, encode_blob(noise(2 << 20, 5)), replace=True)
    with pytest.raises(BlobCorruptedError), blobs.open(h, len(data)) as f:
        f.read()
    assert not blobs.exists(h)


def test_config_reopens_the_same_store(blobs: Any) -> None:
    h = put(blobs, noise(2000))
    config = pickle.loads(pickle.dumps(blobs.config))
    again = open_blob_store(config)
    assert again.get(h) == noise(2000)


# S3 specifics


def test_s3_layout_matches_the_file_layout(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    import obstore
    from obstore.store import S3Store

    s3 = s3_server.blob_store(s3_bucket, prefix="team/cache")
    files = FileBlobStore(tmp_path)
    for data in (noise(5000), text(100_000)):
        h = put(s3, data)
        put(files, data)
        raw = S3Store(
            s3_bucket,
            endpoint=s3_server.endpoint,
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            client_options={"allow_http": True},
        )
        got = bytes(obstore.get(raw, f"team/cache/{h[:2]}/{h[2:]}").bytes())
        assert got == Path(files.path(h)).read_bytes()  # the same bytes, the same names


def test_credentials_never_shown(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_server.blob_store(s3_bucket)
    shown = [repr(store), repr(store.config), str(store.config), store.url]
    assert all(SECRET_KEY not in s and ACCESS_KEY not in s for s in shown)
    down = S3BlobStore(
        s3_bucket,
        endpoint=f"http://127.0.0.1:{_closed_port()}",
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        allow_http=True,
    )
    h = blob_hash(b"x" * 3000)
    for call in (
        lambda: down.get(h),
        lambda: down.exists(h),
        lambda: down.put_encoded(h, encode_blob(b"x" * 3000)),
        lambda: list(down.iter_blobs()),
    ):
        with pytest.raises(StoreError) as info:
            call()
        message = str(info.value)
        assert "cannot" in message and "127.0.0.1" in message
        assert SECRET_KEY not in message and ACCESS_KEY not in message


def _closed_port() -> int:
    from tests._s3 import free_port

    return free_port()  # nothing listens there


def test_credentials_from_the_environment(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    store = S3BlobStore(s3_bucket, endpoint=s3_server.endpoint, allow_http=True)
    h = put(store, noise(3000))
    assert store.get(h) == noise(3000)
    assert dict(store.config.options)["secret_access_key"] is None  # read again where opened


# the SQLite store with its blobs in a bucket


@pytest.fixture
def s3_store(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "meta", blobs=s3_server.blob_store(s3_bucket)) as store:
        yield store


def test_sqlite_keeps_small_blobs_inline_and_the_rest_in_the_bucket(s3_store: SQLiteStore) -> None:
    small = s3_store.put_blob(b"tiny")
    large = s3_store.put_blob(noise(10_000))
    big = s3_store.put_blob_parts([noise(2 << 20), noise(1 << 20, 3)])
    assert not (s3_store.path / "objects").exists()
    in_bucket = {h for h, _ in s3_store.blobs.iter_blobs()}
    assert in_bucket == {large.hash, big.hash} and small.hash not in in_bucket
    assert s3_store.get_blob(small) == b"tiny" and s3_store.get_blob(large) == noise(10_000)
    with s3_store.open_blob(big) as f:  # type: ignore[union-attr]
        assert f.read() == noise(2 << 20) + noise(1 << 20, 3)
    stats = s3_store.stats()
    assert (stats["blob_objects"], stats["inline_objects"]) == (2, 1)


def test_sqlite_config_carries_the_blob_store_without_credentials(s3_store: SQLiteStore) -> None:
    config = store_config(s3_store)
    assert SECRET_KEY not in repr(config) and ACCESS_KEY not in repr(config)
    ref = s3_store.put_blob(noise(5000))
    reopened = open_store(pickle.loads(pickle.dumps(config)))
    assert reopened.get_blob(ref) == noise(5000)
    assert "S3BlobStore" in repr(reopened) and SECRET_KEY not in repr(reopened)


def test_evict_and_delete_remove_objects(s3_store: SQLiteStore) -> None:
    from tests.test_store_contract import make_commit

    ref = s3_store.put_blob(noise(6000))
    commit = make_commit(result=ref)
    s3_store.put_commit(commit)
    assert s3_store.blobs.exists(ref.hash)
    s3_store.delete_commit(commit.hash)
    assert not s3_store.blobs.exists(ref.hash)


def big_result(n: int) -> bytes:
    return noise(n)


def test_lost_object_is_a_miss_that_recomputes_and_repairs(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    blobs = s3_server.blob_store(s3_bucket)
    with Client(store=SQLiteStore(tmp_path / "meta", blobs=blobs)) as client:
        ref = client.submit(big_result, 50_000)
        assert ref.load() == noise(50_000)
        blobs.delete(ref.hash)
        report = client.check()
        assert [f.kind for f in report.remaining] == ["missing_blob"]
        with pytest.raises(BlobMissingError):
            client.submit(big_result, 50_000).load()
        again = client.submit(big_result, 50_000)
        assert not again.cached and again.load() == noise(50_000)
        assert blobs.exists(ref.hash) and client.check().ok


@pytest.mark.parametrize("size", [50_000, 3 << 20])
def test_corrupt_object_is_a_miss_that_recomputes_and_repairs(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, size: int
) -> None:
    blobs = s3_server.blob_store(s3_bucket)
    with Client(store=SQLiteStore(tmp_path / "meta", blobs=blobs)) as client:
        ref = client.submit(big_result, size)
        blobs.put_encoded(ref.hash, encode_blob(noise(size, 1)), replace=True)  # same size
        with pytest.raises(BlobCorruptedError):
            client.submit(big_result, size).load()
        assert not blobs.exists(ref.hash)
        again = client.submit(big_result, size)
        assert not again.cached and again.load() == noise(size)
        final = client.submit(big_result, size)
        assert final.cached and final.load() == noise(size)


def test_server_stopped_is_a_clear_error(tmp_path: Path) -> None:
    server = start_server()
    try:
        blobs = server.blob_store(server.make_bucket())
        client = Client(store=SQLiteStore(tmp_path / "meta", blobs=blobs))
        client.submit(big_result, 20_000)
        server.server.stop()
        with pytest.raises(StoreError) as info:
            client.submit(big_result, 20_000).load()
        assert "cannot read blob" in str(info.value) and SECRET_KEY not in str(info.value)
        with pytest.raises(StoreError):
            client.submit(big_result, 30_000)  # a miss cannot store its result
        client.close()
    finally:
        server.server.stop()


def test_async_store_takes_blobs(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    import asyncio

    async def run() -> bytes:
        store = AsyncSQLiteStore(tmp_path / "meta", blobs=s3_server.blob_store(s3_bucket))
        ref = await store.put_blob(noise(9000))
        data = await store.get_blob(ref)
        await store.close()
        return data

    assert asyncio.run(run()) == noise(9000)


# the local cache


def test_local_cache_fetches_once_then_serves_from_disk(tmp_path: Path) -> None:
    server = start_server()
    try:
        remote = server.blob_store(server.make_bucket())
        with Client(store=SQLiteStore(tmp_path / "meta", blobs=remote)) as writer:
            small = writer.submit(big_result, 40_000)
            large = writer.submit(big_result, 3 << 20)
        cache = tmp_path / "cache"
        store = SQLiteStore(tmp_path / "meta", blobs=server.blob_store(remote.bucket))
        with Client(store=store, local_cache=cache) as reader:
            assert isinstance(store.blobs, CachedBlobStore)
            assert reader.submit(big_result, 40_000).load() == noise(40_000)
            assert reader.submit(big_result, 3 << 20).load() == noise(3 << 20)
            local = FileBlobStore(cache)
            assert {h for h, _ in local.iter_blobs()} == {small.hash, large.hash}
            server.server.stop()  # from now on only the local copies can answer
            assert reader.submit(big_result, 40_000).load() == noise(40_000)
            assert reader.submit(big_result, 3 << 20).load() == noise(3 << 20)
            # a damaged local copy is never served
            Path(local.path(small.hash)).write_bytes(encode_blob(noise(40_000, 4)))
            with pytest.raises(StoreError):
                reader.submit(big_result, 40_000).load()  # refetched: the server is down
    finally:
        server.server.stop()


def test_local_cache_on_local_files_is_a_no_op(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "s", local_cache=tmp_path / "cache") as client:
        assert client.submit(big_result, 5000).load() == noise(5000)
    assert not (tmp_path / "cache").exists()


def test_blob_store_config_repr_hides_options() -> None:
    config = BlobStoreConfig("s3", "s3://b/p", (("secret_access_key", SECRET_KEY),))
    assert SECRET_KEY not in repr(config)


# blob stores named by URL


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")


def s3_url(server: S3Server, bucket: str, prefix: str = "p") -> str:
    return f"s3://{bucket}/{prefix}?endpoint={server.endpoint}&allow_http=1"


@pytest.mark.usefixtures("aws_env")
def test_store_url_names_its_blob_store(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    url = f"sqlite://{tmp_path / 'meta'}?blobs={s3_url(s3_server, s3_bucket, 'team/x')}"
    with Client(store=url) as client:
        blobs = client.store.blobs  # type: ignore[attr-defined]
        assert isinstance(blobs, S3BlobStore) and blobs.url == f"s3://{s3_bucket}/team/x"
        ref = client.submit(big_result, 9000)
        assert blobs.exists(ref.hash)
    assert (tmp_path / "meta" / "meta.db").is_file()


@pytest.mark.usefixtures("aws_env")
def test_cashet_blobs_names_the_blob_store_of_stores_the_client_opens(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASHET_BLOBS", s3_url(s3_server, s3_bucket))
    with Client(store_dir=tmp_path / "meta") as client:
        ref = client.submit(big_result, 9000)
        assert client.store.blobs.exists(ref.hash)  # type: ignore[attr-defined]
    with SQLiteStore(tmp_path / "other") as given:  # a store object is taken as it is
        assert isinstance(given.blobs, FileBlobStore)


def test_blob_urls_refused(tmp_path: Path) -> None:
    from cashet.stores.urls import open_blob_url

    with pytest.raises(ValueError, match="no credentials"):
        open_blob_url(f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/p")
    with pytest.raises(ValueError, match="unknown s3:// blob store parameter"):
        open_blob_url("s3://bucket/p?secret_access_key=x")
    with pytest.raises(ValueError, match="unknown blob store URL scheme 'gs'"):
        open_blob_url("gs://bucket/p")
    assert isinstance(open_blob_url(f"file://{tmp_path}"), FileBlobStore)
    assert isinstance(open_blob_url(str(tmp_path)), FileBlobStore)


def test_cli_output_never_shows_the_secret(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests._s3 import free_port

    url = f"sqlite://{tmp_path / 'm'}?blobs=s3://b/p?endpoint=http://127.0.0.1:{free_port()}&allow_http=1"
    env = {
        **__import__("os").environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
    }
    exe = Path(sys.executable).with_name("cashet")
    for args in (["--store", url, "doctor"], ["--store", url, "stats"]):
        done = subprocess.run(
            [str(exe), *args], capture_output=True, text=True, timeout=120, env=env
        )
        out = done.stdout + done.stderr
        assert SECRET_KEY not in out and ACCESS_KEY not in out, out
        if args[-1] == "doctor":  # the bucket cannot be reached: said, with the endpoint
            assert done.returncode == 1 and "unreachable" in out and "127.0.0.1" in out, out


# the Redis store with its blobs in a bucket


@pytest.fixture
def redis_s3(
    redis_url: str, s3_server: S3Server, s3_bucket: str
) -> Iterator[tuple[Any, Any, str, str]]:
    from cashet.redis_store import RedisStore
    from tests._redis import check_invariants, drop_prefix, fresh_prefix

    prefix = fresh_prefix()
    blobs = s3_server.blob_store(s3_bucket)
    store = RedisStore(redis_url, prefix=prefix, blobs=blobs)
    try:
        yield store, blobs, redis_url, prefix
        check_invariants(redis_url, prefix)
    finally:
        store.close()
        drop_prefix(redis_url, prefix)


@pytest.mark.redis
def test_redis_keeps_large_blobs_in_the_bucket(redis_s3: tuple[Any, Any, str, str]) -> None:
    store, blobs, _, prefix = redis_s3
    small = store.put_blob(b"tiny")
    large = store.put_blob(noise(10_000))
    big = store.put_blob(noise(3 << 20))
    assert {h for h, _ in blobs.iter_blobs()} == {large.hash, big.hash}
    r = store.redis
    assert r.exists(f"{prefix}blob:data:{small.hash}")
    assert not r.exists(f"{prefix}blob:data:{large.hash}")
    assert store.get_blob(large) == noise(10_000) and store.get_blob(small) == b"tiny"
    with store.open_blob(big) as f:
        assert f.read() == noise(3 << 20)
    assert store.open_blob(small) is None  # kept in Redis: get_blob reads it
    assert "S3BlobStore" in repr(store) and SECRET_KEY not in repr(store)
    assert SECRET_KEY not in repr(store_config(store))


@pytest.mark.redis
def test_redis_deletes_the_objects_of_dropped_blobs(redis_s3: tuple[Any, Any, str, str]) -> None:
    from tests.test_store_contract import make_commit

    store, blobs, _, _ = redis_s3
    ref = store.put_blob(noise(7000))
    commit = make_commit(result=ref)
    store.put_commit(commit)
    assert store.delete_commit(commit.hash)
    assert not blobs.exists(ref.hash)


@pytest.mark.redis
def test_redis_lost_or_corrupt_object_recomputes_and_repairs(
    redis_s3: tuple[Any, Any, str, str],
) -> None:
    store, blobs, _, _ = redis_s3
    with Client(store=store) as client:
        ref = client.submit(big_result, 60_000)
        blobs.delete(ref.hash)
        assert [f.kind for f in client.check().remaining] == ["missing_blob"]
        with pytest.raises(BlobMissingError):
            client.submit(big_result, 60_000).load()
        again = client.submit(big_result, 60_000)
        assert not again.cached and again.load() == noise(60_000)
        assert blobs.exists(ref.hash) and client.check().ok
        blobs.put_encoded(ref.hash, encode_blob(noise(60_000, 2)), replace=True)
        with pytest.raises(BlobCorruptedError):
            client.submit(big_result, 60_000).load()
        assert client.submit(big_result, 60_000).load() == noise(60_000)
        assert client.submit(big_result, 60_000).cached


@pytest.mark.redis
def test_redis_url_names_its_blob_store_and_a_local_cache(
    redis_url: str, s3_server: S3Server, s3_bucket: str, tmp_path: Path, aws_env: None
) -> None:
    from tests._redis import drop_prefix, fresh_prefix

    prefix = fresh_prefix()
    url = f"{redis_url}?prefix={prefix}&blobs={s3_url(s3_server, s3_bucket)}"
    if "?" in redis_url:
        url = f"{redis_url}&prefix={prefix}&blobs={s3_url(s3_server, s3_bucket)}"
    try:
        with Client(store=url, local_cache=tmp_path / "cache") as client:
            assert isinstance(client.store.blobs, CachedBlobStore)  # type: ignore[attr-defined]
            ref = client.submit(big_result, 3 << 20)
            assert client.submit(big_result, 3 << 20).load() == noise(3 << 20)
        assert ref.hash in {h for h, _ in FileBlobStore(tmp_path / "cache").iter_blobs()}
    finally:
        drop_prefix(redis_url, prefix)


@pytest.mark.redis
def test_local_cache_refused_for_blobs_kept_in_redis(redis_url: str) -> None:
    from tests._redis import drop_prefix, fresh_prefix

    prefix = fresh_prefix()
    try:
        with pytest.raises(ValueError, match="keeps its blobs in Redis"):
            Client(
                store=f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={prefix}",
                local_cache="x",
            )
    finally:
        drop_prefix(redis_url, prefix)


def test_async_client_local_cache(tmp_path: Path) -> None:
    import asyncio

    from cashet.async_client import AsyncClient

    server = start_server()
    try:
        bucket = server.make_bucket()
        with Client(store=SQLiteStore(tmp_path / "meta", blobs=server.blob_store(bucket))) as c:
            c.submit(big_result, 3 << 20)

        async def run() -> bytes:
            store = AsyncSQLiteStore(tmp_path / "meta", blobs=server.blob_store(bucket))
            async with AsyncClient(store=store, local_cache=tmp_path / "cache") as client:
                first = await (await client.submit(big_result, 3 << 20)).load()
                server.server.stop()  # the local copy answers from now on
                again = await (await client.submit(big_result, 3 << 20)).load()
                assert first == again
                return bytes(again)

        assert asyncio.run(run()) == noise(3 << 20)
    finally:
        server.server.stop()


def test_a_broken_download_is_a_store_error_not_a_corrupt_blob() -> None:
    """The download's chunks are a plain generator here that fails half-way (a connection
    dropped mid-object cannot be produced on demand against a real server)."""
    from cashet.stores.objects.streams import ChunkReader, download_raw, verified_reader

    data = noise(3 << 20)
    h = blob_hash(data)
    stored = encode_blob(data)

    def chunks() -> Iterator[bytes]:
        yield stored[: 1 << 20]
        raise ConnectionResetError("connection reset by peer")

    def fail(exc: Exception) -> StoreError:
        return StoreError(f"cannot read: {exc}")

    with pytest.raises(StoreError, match="reset") as info:
        with verified_reader(ChunkReader(chunks(), fail), h, len(data)) as f:  # type: ignore[arg-type]
            f.read()
    assert not isinstance(info.value, BlobCorruptedError)
    source = chunks()
    first = memoryview(next(source))
    with pytest.raises(StoreError, match="reset") as info:
        download_raw(source, first[1:], len(data), h, fail)
    assert not isinstance(info.value, BlobCorruptedError)


def test_signed_store_with_blobs_in_a_bucket(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    key = "team-key-0123456789abcdef"
    store = SQLiteStore(tmp_path / "meta", blobs=s3_server.blob_store(s3_bucket))
    with Client(store=store, signing_key=key, local_cache=tmp_path / "cache") as client:
        ref = client.submit(big_result, 3 << 20)
        assert client.submit(big_result, 3 << 20).cached
        assert client.submit(big_result, 3 << 20).load() == noise(3 << 20)
        assert store.blobs.exists(ref.hash)
        config = store_config(client.store)
        assert SECRET_KEY not in repr(config) and key not in repr(config)
