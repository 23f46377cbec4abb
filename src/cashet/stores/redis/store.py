"""RedisStore and AsyncRedisStore: one cache shared by many processes and machines.

Both are thin drivers of the operations in :mod:`cashet.stores.redis.ops` (the decisions;
key layout and Lua scripts in :mod:`cashet.stores.redis.keys`): the sync store answers
each :class:`~cashet.stores.redis.ops.Call` with a blocking ``redis`` call on a connection
of the calling thread's own, the async store with an awaited ``redis.asyncio`` one.

Errors: a dropped or refused connection becomes ``StoreUnavailableError`` naming the URL
(password masked) and what was being done, after the call was sent again twice with a short
backoff (every call is safe to resend: see :class:`~cashet.stores.redis.ops.Call`). Any
other Redis error becomes ``StoreError``.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import suppress
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

try:
    import redis
    import redis.asyncio
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        'the Redis stores need the redis package: pip install "cashet[redis]"'
    ) from exc

from cashet._process import current_pid
from cashet.errors import StoreError
from cashet.models import Commit, Lease, ObjectRef, TaskStatus
from cashet.protocols import Hit, ResultData, TagQuery
from cashet.stores.base import AsyncStoreBase, StoreBase
from cashet.stores.redis.ops import Call, Flow, IterCursor, Ops, check_options

__all__ = ["AsyncRedisStore", "RedisStore"]

T = TypeVar("T")
_DOWN = (RedisConnectionError, RedisTimeoutError)
#: Pauses before resending a call that is safe to repeat, after a dropped connection.
BACKOFF = (0.05, 0.25)

# redis-py 5 requires a command name for ``get_connection``; from 6 on it is deprecated
# (a warning when given). Both ends of ``redis>=5.0`` are tested (``make test``).
_CONNECTION_ARGS: tuple[str, ...] = (
    ("PING",)
    if inspect.signature(redis.ConnectionPool.get_connection).parameters["command_name"].default
    is inspect.Parameter.empty
    else ()
)


class _Held:
    """A connection a thread keeps; it goes back to the pool when the thread ends."""

    __slots__ = ("conn", "pid", "pool")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.pid = -1  # until the connection is ours (get_connection may raise)
        self.conn = pool.get_connection(*_CONNECTION_ARGS)
        self.pid = current_pid()

    def __del__(self) -> None:
        if self.pid == current_pid():
            with suppress(Exception):
                self.pool.release(self.conn)


def _pack(args: tuple[Any, ...]) -> bytes:
    """The RESP form of a command of small str, int and bytes arguments.

    A third of redis-py's general packer's cost, which matters on the hit path (bench
    redis_hit_f1); commands carrying blob bytes still go through redis-py's, which sends
    large arguments without copying them.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _command(conn: Any, call: Call, *args: Any) -> Any:
    if call.bulky:
        conn.send_command(*args)
    else:
        conn.send_packed_command([_pack(args)])
    return conn.read_response()


def _send(conn: Any, call: Call) -> Any:
    if call.batch:
        conn.send_packed_command([b"".join(_pack(cmd) for cmd in call.batch)])
        replies, error = [], None
        for _ in call.batch:  # read every reply, or the connection is out of step
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                error = error or exc
        if error is not None:
            raise error
        return replies
    script = call.script
    if script is None:
        return _command(conn, call, *call.args)
    try:
        return _command(conn, call, "EVALSHA", script.sha, *call.args)
    except NoScriptError:  # first use on this server, or SCRIPT FLUSH
        _command(conn, call, "SCRIPT", "LOAD", script.source)
        return _command(conn, call, "EVALSHA", script.sha, *call.args)


class _Base:
    """Options and helpers shared by both stores."""

    #: Seconds an unreferenced blob is kept before ``evict`` removes it (as SQLiteStore).
    orphan_grace: float = 3600.0

    def __init__(
        self,
        url: str,
        prefix: str,
        max_connections: int | None,
        socket_timeout: float | None,
        socket_connect_timeout: float | None,
        chunk_size: int,
        inline_threshold: int,
        options: Mapping[str, Any] | None,
    ) -> None:
        self._ops = Ops(url, prefix, inline_threshold, chunk_size)
        self._closed = False
        self._kwargs: dict[str, Any] = {
            **check_options(options),
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "decode_responses": False,
        }
        if max_connections is not None:
            self._kwargs["max_connections"] = max_connections

    @property
    def url(self) -> str:
        """The Redis URL, password masked."""
        return self._ops.url

    @property
    def prefix(self) -> str:
        """The prefix of every key of this store."""
        return self._ops.prefix

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._ops.url!r}, prefix={self._ops.prefix!r})"

    def _closed_error(self) -> StoreError:
        return StoreError(f"{self!r} is closed")

    def _down(self, call: Call, exc: Exception, tries: int) -> float:
        """Seconds to wait before resending ``call``; raise when it is time to give up."""
        if isinstance(exc, _DOWN):
            if tries < len(BACKOFF):
                return BACKOFF[tries]
            raise self._ops.unavailable(call.op, exc) from exc
        raise self._ops.failed(call.op, exc) from exc


_DOC_ARGS = """
    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://`` (TLS) or
            ``unix:///path/redis.sock``.
        prefix: prepended to every key, so that several caches can share one Redis.
        max_connections: size limit of the connection pool (default: unbounded).
        socket_timeout: seconds a command may take before ``StoreUnavailableError``.
        socket_connect_timeout: seconds to wait for a connection.
        chunk_size: blobs whose stored form is larger are split into keys of this size.
        inline_threshold: blobs stored smaller than this count as ``inline`` in ``stats()``.
        options: further ``redis`` connection options (``ssl_ca_certs``, ``username``...).
"""


class RedisStore(_Base, StoreBase):
    """A ``Store`` in Redis, shared by every process and machine that uses the same URL.

    Safe to share between threads and across ``fork``. Each thread that uses the store
    keeps one connection of the pool (returned when the thread ends; a forked child opens
    its own), so ``max_connections`` also bounds the threads. Needs one Redis server (or a
    primary with replicas), not a Redis Cluster: its scripts touch keys they compute.
    Leases compare expiry times taken from the clocks of the machines involved: keep them
    in sync (NTP), as for any lease.
    """

    __doc__ = (__doc__ or "") + _DOC_ARGS

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "cashet:",
        max_connections: int | None = None,
        socket_timeout: float | None = 30.0,
        socket_connect_timeout: float | None = 5.0,
        chunk_size: int = 32 << 20,
        inline_threshold: int = 1024,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            url,
            prefix,
            max_connections,
            socket_timeout,
            socket_connect_timeout,
            chunk_size,
            inline_threshold,
            options,
        )
        # Retries are ours (see _exec): redis-py's would resend any command blindly.
        self._r: Any = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **self._kwargs)
        self._local = threading.local()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # driver

    def _conn(self) -> Any:
        """This thread's connection (one per thread, as the SQLite store; new after fork)."""
        local = self._local
        try:
            if local.held.pid == current_pid():
                return local.held.conn
        except AttributeError:
            pass
        if self._closed:
            raise self._closed_error()
        local.held = _Held(self._r.connection_pool)
        return local.held.conn

    def _exec(self, call: Call) -> Any:
        # Straight on this thread's connection: redis-py's execute_command would check a
        # connection out of the pool and back in, wrapped in retries and metrics, for each
        # call; that costs as much as the round trip itself (bench: redis_hit_f1).
        tries = 0
        while True:
            if self._closed:
                raise self._closed_error()
            try:
                return _send(self._conn(), call)
            except RedisError as exc:
                time.sleep(self._down(call, exc, tries))
                tries += 1

    def _run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                call = flow.send(self._exec(call))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # blobs

    def put_blob(self, data: bytes) -> ObjectRef:
        """Store ``data`` once by content hash; a damaged or lost copy is rewritten."""
        return self._run(self._ops.put_blob(data))

    def get_blob(self, ref: ObjectRef) -> bytes:
        """Return the blob's bytes, verified against its hash.

        Raises:
            BlobMissingError: the blob is not stored.
            BlobCorruptedError: the stored bytes do not match; the copy is dropped, so
                that storing the same bytes again repairs it.
        """
        return self._run(self._ops.get_blob(ref))

    def has_blob(self, hash: str) -> bool:
        """Return whether the blob is stored with all of its bytes."""
        return self._run(self._ops.has_blob(hash))

    # commits

    def put_commit(self, commit: Commit) -> None:
        """Record ``commit`` (idempotent by hash) and count a reference to its result."""
        self._run(self._ops.put_commit(commit))

    def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """Store a result, record ``build(ref)`` and release the lease ``(fingerprint,
        owner)``: the end of a miss, in one round trip for a small result.

        Same effect as ``put_blob`` + ``put_commit(build(ref))`` + ``release_claim``.
        """
        return self._run(self._ops.put_result(data, build, release))

    def get_commit(self, hash: str) -> Commit | None:
        """Return the commit with this full hash, or ``None``."""
        return self._run(self._ops.get_commit(hash))

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest completed, cacheable, unexpired commit whose result is stored."""
        return self._run(self._ops.find_by_fingerprint(fingerprint))

    def lookup(self, fingerprint: str) -> Hit | None:
        """Return what ``find_by_fingerprint`` finds, with a small result's verified bytes."""
        return self._run(self._ops.lookup(fingerprint))

    def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return the commits whose result is this blob, newest first.

        Redis keeps no index by result: this scans ``iter_commits`` (a page of commits per
        round trip), which is what ``show``/``get`` by a result's hash need, rarely.
        """
        return StoreBase.find_by_result(self, blob_hash, limit)

    def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Describe the live lease on ``fingerprint`` as a running commit, or ``None``."""
        return self._run(self._ops.find_running_by_fingerprint(fingerprint))

    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest commit of ``fingerprint`` whatever its status or expiry."""
        return self._run(self._ops.latest_for_fingerprint(fingerprint))

    def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """Return commits newest first, filtered by function, status and tags."""
        return self._run(self._ops.list_commits(func_name, limit, status, tags))

    def iter_commits(self) -> Iterator[Commit]:
        """Yield every commit, oldest first, a page at a time."""
        cursor = IterCursor()
        while not cursor.done:
            yield from self._run(self._ops.iter_page(cursor))

    def get_history(self, hash: str) -> list[Commit]:
        """Return every unexpired commit with the same fingerprint as ``hash``, oldest first."""
        return self._run(self._ops.get_history(hash))

    def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Return up to ``limit`` full commit hashes starting with ``prefix``, sorted."""
        return self._run(self._ops.resolve_prefix(prefix, limit))

    def touch(self, hash: str, when: datetime) -> None:
        """Set the commit's ``last_accessed`` to ``when`` (an unknown hash is ignored)."""
        self._run(self._ops.touch(hash, when))

    # lifecycle

    def stats(self) -> dict[str, int]:
        """Return commit and blob counts and stored sizes (counters, O(1))."""
        return self._run(self._ops.stats())

    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        """Remove old, expired and (over ``max_size_bytes``) least recently used commits.

        Returns:
            The number of commits removed.
        """
        return self._run(self._ops.evict(older_than, max_size_bytes, self.orphan_grace))

    def delete_commit(self, hash: str) -> bool:
        """Delete one commit; free its blob if nothing else references it."""
        return self._run(self._ops.delete_commit(hash))

    def delete_by_tags(self, tags: TagQuery) -> int:
        """Delete every commit matching ``tags``; return how many."""
        return self._run(self._ops.delete_by_tags(tags))

    # leases

    def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        """Take the lease on ``fingerprint`` unless another owner holds a live one."""
        return self._run(self._ops.try_claim(fingerprint, lease))

    def get_claim(self, fingerprint: str) -> Lease | None:
        """Return the live lease on ``fingerprint``, or ``None``."""
        return self._run(self._ops.get_claim(fingerprint))

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        """Extend ``owner``'s lease; ``False`` when it no longer holds it."""
        return self._run(self._ops.renew_claim(fingerprint, owner, expires_at))

    def release_claim(self, fingerprint: str, owner: str) -> None:
        """Drop the lease if ``owner`` holds it, and wake the waiters."""
        self._run(self._ops.release_claim(fingerprint, owner))

    def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """Block until nobody holds a live lease on ``fingerprint``, or ``timeout`` seconds.

        Woken by the release message; also when the lease expires (its holder may be dead).
        """
        deadline = time.monotonic() + timeout
        if self.get_claim(fingerprint) is None:
            return
        op = Call(f"wait for the lease on {fingerprint[:16]}", ())
        try:
            pubsub = self._r.pubsub()
            try:
                pubsub.subscribe(self._ops.keys.channel(fingerprint))
                # Re-checked only once subscribed, so no release can fall in between.
                while pubsub.get_message(timeout=max(deadline - time.monotonic(), 0)) is None:
                    if time.monotonic() >= deadline:
                        return
                while (lease := self.get_claim(fingerprint)) is not None:
                    pause = self._ops.pause(lease, deadline - time.monotonic())
                    if pause <= 0:
                        return
                    pubsub.get_message(timeout=pause)
            finally:
                pubsub.close()
        except RedisError as exc:
            self._down(op, exc, len(BACKOFF))

    def close(self) -> None:
        """Close the connection pool. Idempotent; any later use raises ``StoreError``."""
        self._closed = True
        self._r.close()


#: Blobs at least this large are hashed, compressed and verified off the event loop.
_OFF_LOOP_BYTES = 1 << 20


def _step(flow: Flow[Any], value: Any) -> tuple[bool, Any]:
    # StopIteration cannot cross a Future (asyncio turns it into a TypeError): report it.
    try:
        return False, flow.send(value)
    except StopIteration as stop:
        return True, stop.value


class AsyncRedisStore(_Base, AsyncStoreBase):
    """An ``AsyncStore`` in Redis (``redis.asyncio``): the same data and semantics as
    :class:`RedisStore`, so sync and async clients can share one cache.
    """

    __doc__ = (__doc__ or "") + _DOC_ARGS

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "cashet:",
        max_connections: int | None = None,
        socket_timeout: float | None = 30.0,
        socket_connect_timeout: float | None = 5.0,
        chunk_size: int = 32 << 20,
        inline_threshold: int = 1024,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            url,
            prefix,
            max_connections,
            socket_timeout,
            socket_connect_timeout,
            chunk_size,
            inline_threshold,
            options,
        )
        # An asyncio client needs the asyncio Retry: given the sync one, redis-py 8 converts
        # it with a warning (issue 9; tests/test_redis_store.py::test_no_warning_on_construction).
        self._r: Any = redis.asyncio.Redis.from_url(
            url, retry=AsyncRetry(NoBackoff(), 0), **self._kwargs
        )

    async def __aenter__(self) -> AsyncRedisStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # driver

    async def _exec(self, call: Call) -> Any:
        if self._closed:
            raise self._closed_error()
        tries = 0
        while True:
            try:
                if call.batch:
                    pipe = self._r.pipeline(transaction=False)
                    for cmd in call.batch:
                        pipe.execute_command(*cmd)
                    return await pipe.execute()
                script = call.script
                if script is None:
                    return await self._r.execute_command(*call.args)
                try:
                    return await self._r.execute_command("EVALSHA", script.sha, *call.args)
                except NoScriptError:
                    await self._r.execute_command("SCRIPT", "LOAD", script.source)
                    return await self._r.execute_command("EVALSHA", script.sha, *call.args)
            except RedisError as exc:
                await asyncio.sleep(self._down(call, exc, tries))
                tries += 1

    async def _run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                call = flow.send(await self._exec(call))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _run_off_loop(self, flow: Flow[T]) -> T:
        """Like ``_run``, but the flow's own steps (hashing, zstd, verification of a large
        blob) run in a worker thread; only the Redis calls are awaited on the loop."""
        done, value = await asyncio.to_thread(_step, flow, None)
        while not done:
            done, value = await asyncio.to_thread(_step, flow, await self._exec(value))
        return value  # type: ignore[no-any-return]

    # blobs

    async def put_blob(self, data: bytes) -> ObjectRef:
        """Store ``data`` once by content hash; a damaged or lost copy is rewritten."""
        if len(data) >= _OFF_LOOP_BYTES:
            return await self._run_off_loop(self._ops.put_blob(data))
        return await self._run(self._ops.put_blob(data))

    async def get_blob(self, ref: ObjectRef) -> bytes:
        """Return the blob's bytes, verified (see :meth:`RedisStore.get_blob`)."""
        if ref.size >= _OFF_LOOP_BYTES:
            return await self._run_off_loop(self._ops.get_blob(ref))
        return await self._run(self._ops.get_blob(ref))

    async def has_blob(self, hash: str) -> bool:
        """Return whether the blob is stored with all of its bytes."""
        return await self._run(self._ops.has_blob(hash))

    # commits

    async def put_commit(self, commit: Commit) -> None:
        """Record ``commit`` (idempotent by hash) and count a reference to its result."""
        await self._run(self._ops.put_commit(commit))

    async def put_result(
        self,
        data: ResultData,
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None = None,
    ) -> Commit:
        """Store a result, record ``build(ref)`` and release the lease (see
        :meth:`RedisStore.put_result`)."""
        size = len(data) if isinstance(data, bytes) else sum(memoryview(p).nbytes for p in data)
        if size >= _OFF_LOOP_BYTES:
            return await self._run_off_loop(self._ops.put_result(data, build, release))
        return await self._run(self._ops.put_result(data, build, release))

    async def get_commit(self, hash: str) -> Commit | None:
        """Return the commit with this full hash, or ``None``."""
        return await self._run(self._ops.get_commit(hash))

    async def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest completed, cacheable, unexpired commit whose result is stored."""
        return await self._run(self._ops.find_by_fingerprint(fingerprint))

    async def lookup(self, fingerprint: str) -> Hit | None:
        """Return what ``find_by_fingerprint`` finds, with a small result's verified bytes."""
        return await self._run(self._ops.lookup(fingerprint))

    async def find_by_result(self, blob_hash: str, limit: int = 20) -> list[Commit]:
        """Return the commits whose result is this blob, newest first (a scan, as
        :meth:`RedisStore.find_by_result`)."""
        return await AsyncStoreBase.find_by_result(self, blob_hash, limit)

    async def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Describe the live lease on ``fingerprint`` as a running commit, or ``None``."""
        return await self._run(self._ops.find_running_by_fingerprint(fingerprint))

    async def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        """Return the newest commit of ``fingerprint`` whatever its status or expiry."""
        return await self._run(self._ops.latest_for_fingerprint(fingerprint))

    async def list_commits(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """Return commits newest first, filtered by function, status and tags."""
        return await self._run(self._ops.list_commits(func_name, limit, status, tags))

    async def iter_commits(self) -> AsyncIterator[Commit]:
        """Yield every commit, oldest first, a page at a time (``async for``)."""
        cursor = IterCursor()
        while not cursor.done:
            for commit in await self._run(self._ops.iter_page(cursor)):
                yield commit

    async def get_history(self, hash: str) -> list[Commit]:
        """Return every unexpired commit with the same fingerprint as ``hash``, oldest first."""
        return await self._run(self._ops.get_history(hash))

    async def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        """Return up to ``limit`` full commit hashes starting with ``prefix``, sorted."""
        return await self._run(self._ops.resolve_prefix(prefix, limit))

    async def touch(self, hash: str, when: datetime) -> None:
        """Set the commit's ``last_accessed`` to ``when`` (an unknown hash is ignored)."""
        await self._run(self._ops.touch(hash, when))

    # lifecycle

    async def stats(self) -> dict[str, int]:
        """Return commit and blob counts and stored sizes (counters, O(1))."""
        return await self._run(self._ops.stats())

    async def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        """Remove old, expired and (over ``max_size_bytes``) least recently used commits."""
        return await self._run(self._ops.evict(older_than, max_size_bytes, self.orphan_grace))

    async def delete_commit(self, hash: str) -> bool:
        """Delete one commit; free its blob if nothing else references it."""
        return await self._run(self._ops.delete_commit(hash))

    async def delete_by_tags(self, tags: TagQuery) -> int:
        """Delete every commit matching ``tags``; return how many."""
        return await self._run(self._ops.delete_by_tags(tags))

    # leases

    async def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        """Take the lease on ``fingerprint`` unless another owner holds a live one."""
        return await self._run(self._ops.try_claim(fingerprint, lease))

    async def get_claim(self, fingerprint: str) -> Lease | None:
        """Return the live lease on ``fingerprint``, or ``None``."""
        return await self._run(self._ops.get_claim(fingerprint))

    async def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        """Extend ``owner``'s lease; ``False`` when it no longer holds it."""
        return await self._run(self._ops.renew_claim(fingerprint, owner, expires_at))

    async def release_claim(self, fingerprint: str, owner: str) -> None:
        """Drop the lease if ``owner`` holds it, and wake the waiters."""
        await self._run(self._ops.release_claim(fingerprint, owner))

    async def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """Wait until nobody holds a live lease on ``fingerprint``, or ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if await self.get_claim(fingerprint) is None:
            return
        op = Call(f"wait for the lease on {fingerprint[:16]}", ())
        try:
            pubsub = self._r.pubsub()
            try:
                await pubsub.subscribe(self._ops.keys.channel(fingerprint))
                while await pubsub.get_message(timeout=max(deadline - loop.time(), 0)) is None:
                    if loop.time() >= deadline:
                        return
                while (lease := await self.get_claim(fingerprint)) is not None:
                    pause = self._ops.pause(lease, deadline - loop.time())
                    if pause <= 0:
                        return
                    await pubsub.get_message(timeout=pause)
            finally:
                await pubsub.aclose()
        except RedisError as exc:
            self._down(op, exc, len(BACKOFF))

    async def close(self) -> None:
        """Close the connection pool. Idempotent; any later use raises ``StoreError``."""
        self._closed = True
        await self._r.aclose()
