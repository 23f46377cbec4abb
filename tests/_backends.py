"""Registry of the store backends that the store contract suite runs against.

A backend is a factory ``(tmp_path, request) -> context manager yielding a Store`` with the
*sync* ``Store`` API (an async store is wrapped in a thread-driven adapter). Adding a backend
to the whole contract suite is one ``@backend("name")`` factory here.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from cashet.protocols import Store

Factory = Callable[[Path, pytest.FixtureRequest], AbstractContextManager[Store]]
BACKENDS: dict[str, Factory] = {}


def backend(name: str) -> Callable[[Any], Factory]:
    def register(fn: Any) -> Factory:
        BACKENDS[name] = contextmanager(fn)
        return BACKENDS[name]

    return register


@backend("sqlite")
def _sqlite(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.store import SQLiteStore

    store = SQLiteStore(tmp_path / ".cashet")
    try:
        yield store
    finally:
        store.close()


@backend("sqlite-async")
def _sqlite_async(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.store import AsyncSQLiteStore

    with SyncAdapter(lambda: AsyncSQLiteStore(tmp_path / ".cashet")) as store:
        try:
            yield store  # type: ignore[misc]
        finally:
            store.close()


@backend("sqlite-s3")
def _sqlite_s3(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.store import SQLiteStore

    server = request.getfixturevalue("s3_server")
    store = SQLiteStore(tmp_path / ".cashet", blobs=server.blob_store(server.make_bucket()))
    try:
        yield store
    finally:
        store.close()


@backend("sqlite-s3-async")
def _sqlite_s3_async(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.store import AsyncSQLiteStore

    server = request.getfixturevalue("s3_server")
    blobs = server.blob_store(server.make_bucket())
    with SyncAdapter(lambda: AsyncSQLiteStore(tmp_path / ".cashet", blobs=blobs)) as store:
        try:
            yield store  # type: ignore[misc]
        finally:
            store.close()


@backend("redis")
def _redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.redis_store import RedisStore
    from tests._redis import check_invariants, drop_prefix, fresh_prefix

    url = request.getfixturevalue("redis_url")
    prefix = fresh_prefix()
    store = RedisStore(url, prefix=prefix)
    try:
        yield store
        check_invariants(url, prefix)  # whatever the test did, the keys stay consistent
    finally:
        store.close()
        drop_prefix(url, prefix)


@backend("redis-async")
def _redis_async(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.redis_store import AsyncRedisStore
    from tests._redis import check_invariants, drop_prefix, fresh_prefix

    url = request.getfixturevalue("redis_url")
    prefix = fresh_prefix()
    with SyncAdapter(lambda: AsyncRedisStore(url, prefix=prefix)) as store:
        try:
            yield store  # type: ignore[misc]
            check_invariants(url, prefix)
        finally:
            store.close()
            drop_prefix(url, prefix)


@backend("postgres")
def _postgres(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.postgres_store import PostgresStore
    from tests._postgres import drop_schema, fresh_schema

    dsn = request.getfixturevalue("postgres_dsn")
    schema = fresh_schema()
    store = PostgresStore(dsn, schema=schema)
    try:
        yield store
    finally:
        store.close()
        drop_schema(dsn, schema)


@backend("postgres-async")
def _postgres_async(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.postgres_store import AsyncPostgresStore
    from tests._postgres import drop_schema, fresh_schema

    dsn = request.getfixturevalue("postgres_dsn")
    schema = fresh_schema()
    with SyncAdapter(lambda: AsyncPostgresStore(dsn, schema=schema)) as store:
        try:
            yield store  # type: ignore[misc]
        finally:
            store.close()
            drop_schema(dsn, schema)


@backend("redis-s3")
def _redis_s3(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.redis_store import RedisStore
    from tests._redis import check_invariants, drop_prefix, fresh_prefix

    url = request.getfixturevalue("redis_url")
    server = request.getfixturevalue("s3_server")
    prefix = fresh_prefix()
    store = RedisStore(url, prefix=prefix, blobs=server.blob_store(server.make_bucket()))
    try:
        yield store
        check_invariants(url, prefix)
    finally:
        store.close()
        drop_prefix(url, prefix)


@backend("redis-s3-async")
def _redis_s3_async(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.redis_store import AsyncRedisStore
    from tests._redis import check_invariants, drop_prefix, fresh_prefix

    url = request.getfixturevalue("redis_url")
    server = request.getfixturevalue("s3_server")
    blobs = server.blob_store(server.make_bucket())
    prefix = fresh_prefix()
    with SyncAdapter(lambda: AsyncRedisStore(url, prefix=prefix, blobs=blobs)) as store:
        try:
            yield store  # type: ignore[misc]
            check_invariants(url, prefix)
        finally:
            store.close()
            drop_prefix(url, prefix)


@backend("postgres-s3")
def _postgres_s3(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.postgres_store import PostgresStore
    from tests._postgres import drop_schema, fresh_schema

    dsn = request.getfixturevalue("postgres_dsn")
    server = request.getfixturevalue("s3_server")
    schema = fresh_schema()
    store = PostgresStore(dsn, schema=schema, blobs=server.blob_store(server.make_bucket()))
    try:
        yield store
    finally:
        store.close()
        drop_schema(dsn, schema)


@backend("postgres-s3-async")
def _postgres_s3_async(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.postgres_store import AsyncPostgresStore
    from tests._postgres import drop_schema, fresh_schema

    dsn = request.getfixturevalue("postgres_dsn")
    blobs = request.getfixturevalue("s3_server").blob_store(
        request.getfixturevalue("s3_server").make_bucket()
    )
    schema = fresh_schema()
    with SyncAdapter(lambda: AsyncPostgresStore(dsn, schema=schema, blobs=blobs)) as store:
        try:
            yield store  # type: ignore[misc]
        finally:
            store.close()
            drop_schema(dsn, schema)


class SyncAdapter:
    """The sync ``Store`` API over an ``AsyncStore``, so one contract suite tests both.

    The async store lives in a private event loop in a thread; every method call is sent
    there with ``asyncio.run_coroutine_threadsafe`` and waited for. Async iterators
    (``iter_commits``) are drained there into a list.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="async-store-loop", daemon=True
        )
        self._thread.start()
        self._store = self._call(self._make(make))

    @staticmethod
    async def _make(make: Callable[[], Any]) -> Any:
        return make()  # constructed inside the loop, as an async app would

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if inspect.isasyncgenfunction(attr):

            def drain(*args: Any, **kwargs: Any) -> Iterator[Any]:
                async def collect() -> list[Any]:
                    return [item async for item in attr(*args, **kwargs)]

                return iter(self._call(collect()))

            return drain
        if inspect.iscoroutinefunction(attr):
            return lambda *args, **kwargs: self._call(attr(*args, **kwargs))
        return attr

    def __enter__(self) -> SyncAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop.is_running():
            self._call(self._store.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()
