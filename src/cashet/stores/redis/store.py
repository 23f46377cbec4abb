"""RedisStore: one cache shared by many processes and machines (its asyncio twin,
``AsyncRedisStore``, is in :mod:`cashet.stores.redis.async_store`; what they share, in
:mod:`cashet.stores.redis.common`).

Both are thin drivers of the operations in :mod:`cashet.stores.redis.ops` (the decisions;
key layout and Lua scripts in :mod:`cashet.stores.redis.keys`): the sync store answers
each :class:`~cashet.stores.redis.ops.RedisCall` with a blocking ``redis`` call on a connection
of the calling thread's own, the async store with an awaited ``redis.asyncio`` one.

Errors: a dropped or refused connection becomes ``StoreUnavailableError`` naming the URL
(password masked) and what was being done, after the call was sent again twice with a short
backoff (every call is safe to resend: see :class:`~cashet.stores.redis.ops.RedisCall`) as
long as that fits in ``socket_timeout``; a call that timed out is not resent (it has used
``socket_timeout`` up), so a server that stops answering fails a call in ``socket_timeout``.
Any other Redis error becomes ``StoreError``.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from datetime import datetime
from types import TracebackType
from typing import IO, Any, TypeVar

from cashet._process import current_pid
from cashet.errors import StoreError
from cashet.models import Commit, Lease, ObjectRef, TaskStatus
from cashet.protocols import CheckReport, Hit, HitCounts, ResultData, TagQuery
from cashet.stores.base import StoreBase
from cashet.stores.hits import HitBatch, HitRecorder
from cashet.stores.objects.base import BlobStore, BlobStoreConfig
from cashet.stores.quarantine import QuarantineEntry
from cashet.stores.redis.calls import OpFlow, RedisCall, text
from cashet.stores.redis.common import (
    BACKOFF,
    DOC_ARGS,
    NoBackoff,
    NoScriptError,
    RedisError,
    RedisStoreBase,
    ResponseError,
    Retry,
    redis,
)
from cashet.stores.redis.external import EXTERNAL, discard, opened
from cashet.stores.redis.keys import DEFAULT_PREFIX
from cashet.stores.redis.ops import IterCursor

__all__ = ["RedisStore"]

T = TypeVar("T")

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


def _command(conn: Any, call: RedisCall, *args: Any) -> Any:
    if call.bulky:
        conn.send_command(*args)
    else:
        conn.send_packed_command([_pack(args)])
    return conn.read_response()


def _send(conn: Any, call: RedisCall) -> Any:
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


class RedisStore(RedisStoreBase, StoreBase):
    """A ``Store`` in Redis, shared by every process and machine that uses the same URL.

    Safe to share between threads and across ``fork``. Each thread that uses the store
    keeps one connection of the pool (returned when the thread ends; a forked child opens
    its own), so ``max_connections`` also bounds the threads. Needs one Redis server (or a
    primary with replicas), not a Redis Cluster: its scripts touch keys they compute.
    Leases compare expiry times taken from the clocks of the machines involved: keep them
    in sync (NTP), as for any lease.
    """

    __doc__ = (__doc__ or "") + DOC_ARGS

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        max_connections: int | None = None,
        socket_timeout: float | None = 30.0,
        socket_connect_timeout: float | None = 5.0,
        chunk_size: int = 32 << 20,
        inline_threshold: int = 1024,
        options: Mapping[str, Any] | None = None,
        blobs: BlobStore | BlobStoreConfig | None = None,
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
            blobs,
        )
        # Retries are ours (see _exec): redis-py's would resend any command blindly.
        self._r: Any = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **self._kwargs)
        self._local = threading.local()
        self._hits = HitRecorder(self.add_hits, repr(self))
        self.record_hit = self._hits.record  # type: ignore[method-assign]

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

    def _exec(self, call: RedisCall) -> Any:
        # Straight on this thread's connection: redis-py's execute_command would check a
        # connection out of the pool and back in, wrapped in retries and metrics, for each
        # call; that costs as much as the round trip itself (bench: redis_hit_f1).
        if call.io is not None:  # the blob store's (blobs=), not Redis
            return call.io()
        tries = 0
        started = time.monotonic()
        while True:
            if self._closed:
                raise self._closed_error()
            try:
                return _send(self._conn(), call)
            except RedisError as exc:
                time.sleep(self._down(call, exc, tries, started))
                tries += 1

    def _run(self, flow: OpFlow[T]) -> T:
        try:
            call = next(flow)
            while True:
                try:
                    reply = self._exec(call)
                except StoreError as exc:  # the flow may handle it (a best-effort write)
                    call = flow.throw(exc)
                    continue
                call = flow.send(reply)
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

    def open_blob(self, ref: ObjectRef) -> AbstractContextManager[IO[bytes]] | None:
        """A blob kept in the blob store (``blobs=``) as a file verified as it is read;
        ``None`` for one kept in Redis (``get_blob`` reads it). One found missing or
        corrupt is dropped, as by ``get_blob``."""
        blobs = self._ops.blob_store
        if blobs is None:
            return None
        h = ref.hash
        meta = self._ops.keys.blob_meta(h)
        n, gen = self._exec(RedisCall("read blob", ("HMGET", meta, "n", "g")))
        if n is None or int(n) != EXTERNAL:
            return None

        def drop() -> None:
            with suppress(StoreError):
                self._run(discard(self._ops, h, text(gen)))

        return opened(blobs, ref, drop)

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

    # hits (the HitCounter capability: counted in memory, one script call per batch)

    def record_hit(self, hash: str, when: float, seconds: float) -> None:
        """Count one hit of commit ``hash`` (no IO; written with the next batch)."""
        self._hits.record(hash, when, seconds)

    def flush_hits(self) -> None:
        """Write the hits this process recorded and has not written yet (one script call)."""
        self._hits.flush()

    def add_hits(self, batch: HitBatch) -> None:
        """Write one batch of hits (one script call, safe to resend)."""
        self._run(self._ops.add_hits(batch))

    def hit_counts(self, hashes: Sequence[str]) -> dict[str, HitCounts]:
        """The written hits of the commits ``hashes`` that have any."""
        return self._run(self._ops.hit_counts(list(dict.fromkeys(hashes))))

    def hit_totals(self) -> tuple[int, float]:
        """``(hits, compute seconds saved)`` over every commit (written hits)."""
        return self._run(self._ops.hit_totals())

    def check(self, repair: bool = False) -> CheckReport:
        """Check the store's invariants; with ``repair``, fix what can be fixed (see
        :mod:`cashet.stores.redis.doctor_ops`)."""
        return self._run(self._ops.check(repair))

    def quarantined(self) -> list[QuarantineEntry]:
        """Every damaged entry set aside, oldest first (see :mod:`cashet.stores.quarantine`)."""
        return self._run(self._ops.quarantined())

    # lifecycle

    def stats(self) -> dict[str, int]:
        """Return commit and blob counts and stored sizes (counters, O(1))."""
        return self._run(self._ops.stats())

    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        """Remove old, expired and (over ``max_size_bytes``) least recently used commits.

        Returns:
            The number of commits removed.
        """
        self._hits.flush()  # access times decide what goes
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

    def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        """The calls in flight: ``(fingerprint, lease, claimed at)`` of each live lease."""
        return self._run(self._ops.running_claims())

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
        op = RedisCall(f"wait for the lease on {fingerprint[:16]}", ())
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
        """Close the connection pool, after writing the hits not written yet. Idempotent;
        any later use raises ``StoreError``."""
        if not self._closed:
            self._hits.close()
        self._closed = True
        self._r.close()
