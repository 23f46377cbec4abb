"""Every Redis store operation once, free of IO, shared by the sync and the async store.

Each operation is a generator that *yields* the Redis commands it needs (:class:`RedisCall`) and
receives their replies; :class:`~cashet.stores.redis.store.RedisStore` answers them with blocking
``redis`` calls and :class:`~cashet.stores.redis.store.AsyncRedisStore` with awaited
``redis.asyncio`` ones. So every decision lives here and each store method is one line. The
key layout and the Lua scripts are in :mod:`cashet.stores.redis.keys`.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from cashet import _process
from cashet._log import log
from cashet._process import BoundedCache
from cashet.errors import (
    BlobCorruptedError,
    BlobMissingError,
    StoreError,
    StoreUnavailableError,
)
from cashet.hashing.commits import check_commit_hash, stored_json, verified_commit
from cashet.hashing.lazy import decode_lazily
from cashet.models import Commit, ObjectRef, TaskStatus
from cashet.protocols import Hit, TagQuery
from cashet.stores.base import copy_commit, unique_prefix
from cashet.stores.blobs import blob_hash, decode_blob, encode_blob, verify_blob
from cashet.stores.quarantine import INDEX, hit_fingerprint
from cashet.stores.redis.calls import OpFlow, RedisCall, text
from cashet.stores.redis.calls import run_script as _run
from cashet.stores.redis.claim_ops import ClaimOps
from cashet.stores.redis.damage_ops import DamageOps
from cashet.stores.redis.doctor_ops import DoctorOps
from cashet.stores.redis.external import EXTERNAL, get_external, put_external, reap
from cashet.stores.redis.hit_ops import HitOps
from cashet.stores.redis.keys import (
    BATCH,
    BLOB_CACHE,
    BLOB_FRESH_S,
    CHUNK_TTL_MS,
    DELETE,
    DELETE_RANGE,
    DELETE_TAGS,
    DISCARD_BLOB,
    FIND,
    GC_ORPHANS,
    GET_BLOB,
    HAVE_BLOB,
    HISTORY,
    ITER,
    LATEST,
    LIST,
    PUBLISH_CHUNKED,
    PUT_BLOB,
    PUT_COMMIT,
    PUT_RESULT,
    SCRIPT_READ_MAX,
    SHRINK,
    SMALL_PUT,
    STATS,
    TEMPLATE_CACHE,
    TOUCH,
    Keys,
    from_us,
    mask_url,
    now_us,
    to_us,
)
from cashet.stores.stats import store_stats

if TYPE_CHECKING:
    from cashet.stores.objects.base import BlobStore

__all__ = ["IterCursor", "Ops", "check_options"]

T = TypeVar("T")

_HEX = "0123456789abcdef"


def _token() -> str:
    return secrets.token_hex(8)


def _remember(cache: BoundedCache[str, T], key: str, value: T) -> None:
    """``cache.put``, tolerating another thread evicting or inserting at the same time."""
    try:
        cache.put(key, value)
    except (KeyError, RuntimeError, StopIteration):  # lost a race on the eviction: harmless
        cache[key] = value


def _last_access(la: Any) -> datetime | None:
    """A commit's last access from its field; a damaged value reads as never accessed."""
    if la is None:
        return None
    try:
        return from_us(int(la))
    except (TypeError, ValueError, OverflowError):
        return None


def _commit(body: Any, la: Any, h: str | None = None) -> Commit | None:
    """The verified commit of a stored body (against ``h`` when known, else the hash it
    records), or ``None`` when it is damaged (logged; see ``Ops.quarantine``)."""
    try:
        commit = verified_commit(body, h)
    except ValueError as exc:
        log.warning("a commit %s in Redis is damaged and left out: %s", h or "", exc)
        return None
    commit.last_accessed = _last_access(la)
    return commit


def _commits(flat: list[Any]) -> list[Commit]:
    return [
        c
        for i in range(0, len(flat), 2)
        if flat[i] is not None and (c := _commit(flat[i], flat[i + 1])) is not None
    ]


class IterCursor:
    """Where ``iter_commits`` is: pages of ``index:created`` by (score, rank within score)."""

    __slots__ = ("done", "min", "offset")

    def __init__(self) -> None:
        self.min = "-inf"
        self.offset = 0
        self.done = False


# --- operations -----------------------------------------------------------------------------


class Ops(ClaimOps, DamageOps, DoctorOps, HitOps):
    """Every store operation as a flow of :class:`RedisCall`; shared by the sync and async store.

    Holds the per-process caches of the hit path: commits recently found (immutable but
    for their last access, so the lookup can skip resending their JSON) and the stored
    form of small result blobs, which serve ``get_blob`` only for ``BLOB_FRESH_S`` after a
    lookup saw the blob in Redis, decoded and verified each time.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        inline_threshold: int,
        chunk_size: int,
        blob_store: BlobStore | None = None,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        self.url = mask_url(url)
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.inline_threshold = inline_threshold
        self.chunk_size = chunk_size
        self.blob_store = blob_store  # (blobs=: see cashet.stores.redis.external)
        self.host = _process.hostname()
        self._templates: BoundedCache[str, Commit] = BoundedCache(TEMPLATE_CACHE)
        self._hints: BoundedCache[str, str] = BoundedCache(TEMPLATE_CACHE)
        self._blobs: BoundedCache[str, tuple[bytes, float]] = BoundedCache(BLOB_CACHE)

    # errors

    def where(self) -> str:
        return f"Redis at {self.url} (prefix {self.prefix!r})"

    def unavailable(self, op: str, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"cannot {op}: {self.where()} is unreachable: {exc}")

    def failed(self, op: str, exc: BaseException) -> StoreError:
        return StoreError(f"cannot {op}: {self.where()} answered: {exc}")

    # blobs

    def put_blob(self, data: bytes) -> OpFlow[ObjectRef]:
        if self.blob_store is not None:
            return (yield from put_external(self, self.blob_store, [data]))
        h = blob_hash(data)
        ref = ObjectRef(h, len(data))
        op = f"store blob {h[:16]}"
        k = self.keys
        now = now_us()
        if len(data) > SMALL_PUT and (yield _run(op, HAVE_BLOB, (), k.prefix, h, now, "1")) == 1:
            return ref
        encoded = encode_blob(data)
        inline = "1" if len(encoded) < self.inline_threshold else "0"
        gen = secrets.token_hex(6)
        meta = (k.prefix, h, len(data), len(encoded), inline, now, gen)
        if len(encoded) <= self.chunk_size:
            yield RedisCall(op, (0, *meta, encoded), PUT_BLOB, bulky=True)
            return ref
        view = memoryview(encoded)
        size = self.chunk_size
        n = math.ceil(len(encoded) / size)
        for i in range(n):
            chunk = view[i * size : (i + 1) * size]
            yield RedisCall(
                op, ("SET", k.blob_chunk(h, gen, i), chunk, "PX", CHUNK_TTL_MS), bulky=True
            )
        if (yield _run(op, PUBLISH_CHUNKED, (), *meta, n)) == -1:
            raise StoreError(f"cannot {op}: its chunks vanished before they were published")
        return ref

    def get_blob(self, ref: ObjectRef) -> OpFlow[bytes]:
        h = ref.hash
        cached = self._blobs.get(h)
        if cached is not None and time.monotonic() - cached[1] < BLOB_FRESH_S:
            try:
                data = decode_blob(cached[0], h)
                verify_blob(data, h)
                return data
            except BlobCorruptedError:  # read it from Redis, which reports and drops it
                self._blobs.pop(h, None)
        op = f"read blob {h[:16]}"
        k = self.keys
        seen_gen = None
        while True:
            meta = yield _run(op, GET_BLOB, (), k.prefix, h, SCRIPT_READ_MAX)
            if meta is None:
                raise BlobMissingError(f"blob {h} not found in the store ({self.where()})", h)
            stored_size, n, gen = int(meta[0]), int(meta[1]), text(meta[2])
            stored: bytes | None = meta[3]
            if n == EXTERNAL and self.blob_store is not None:
                return (yield from get_external(self, self.blob_store, h, gen))
            if n == 0:
                if stored is None and stored_size > SCRIPT_READ_MAX:
                    stored = yield RedisCall(op, ("GET", k.blob_data(h)))
            else:
                parts = []
                for i in range(n):
                    part = yield RedisCall(op, ("GET", k.blob_chunk(h, gen, i)))
                    if part is None:
                        break
                    parts.append(part)
                stored = b"".join(parts) if len(parts) == n else None
            if stored is None:
                if n and gen != seen_gen:  # rewritten while we read: read the new copy
                    seen_gen = gen
                    continue
                raise BlobMissingError(
                    f"blob {h} is missing: its data key is gone ({self.where()})", h
                )
            try:
                data = decode_blob(stored, h)
                verify_blob(data, h)
            except BlobCorruptedError as exc:
                # Dropped, so that the next put_blob of these bytes stores them afresh.
                yield _run(op, DISCARD_BLOB, (), k.prefix, h, gen)
                raise BlobCorruptedError(f"{exc} (in {self.where()}; dropped)", h) from exc
            return data

    def has_blob(self, hash: str) -> OpFlow[bool]:
        reply = yield _run(f"check blob {hash[:16]}", HAVE_BLOB, (), self.prefix, hash, 0, "0")
        return bool(reply == 1)

    # commits

    def put_commit(self, commit: Commit) -> OpFlow[None]:
        check_commit_hash(commit)
        yield _run(
            f"record commit {commit.hash[:12]}",
            PUT_COMMIT,
            (),
            self.prefix,
            *self._commit_args(commit),
        )

    def _commit_args(self, commit: Commit) -> tuple[Any, ...]:
        """The arguments of the Lua ``put_commit_at``."""
        if not commit.hash:
            raise ValueError("a commit needs its hash (see cashet.hashing.commits.seal_commit)")
        k = self.keys
        td = commit.task_def
        completed = commit.status is TaskStatus.COMPLETED
        index = [k.fp(td.fingerprint), k.func(td.func_name), k.status(commit.status)]
        if completed and td.cache:
            index.append(k.hit(td.fingerprint))
        for key, value in commit.tags.items():
            index += [k.tag(key), k.tag(key, str(value))]
        created = to_us(commit.created_at)
        la = None if commit.last_accessed is None else to_us(commit.last_accessed)
        return (
            commit.hash,
            created,
            created if la is None else la,
            "" if commit.expires_at is None else to_us(commit.expires_at),
            "1" if completed else "0",
            "" if commit.result is None else commit.result.hash,
            commit.sealed_json or stored_json(commit),
            "" if la is None else la,
            json.dumps(index, ensure_ascii=False),
            *index,
        )

    def put_result(
        self,
        data: bytes | Sequence[bytes | memoryview],
        build: Callable[[ObjectRef], Commit],
        release: tuple[str, str] | None,
    ) -> OpFlow[Commit]:
        """Store a result, record ``build(ref)`` and release the lease: a small result in
        one script, so one round trip and all or nothing; a large one is stored first."""
        blob: tuple[Any, ...] = ("",) * 7
        parts = [data] if isinstance(data, bytes) else data
        size = sum(memoryview(p).nbytes for p in parts)
        encoded = encode_blob(b"".join(parts)) if size <= SMALL_PUT else b""
        outside = self.blob_store is not None and len(encoded) >= self.inline_threshold
        if self.blob_store is not None and (size > SMALL_PUT or outside):
            ref = yield from put_external(self, self.blob_store, parts)  # stored first
        elif size > SMALL_PUT:
            ref = yield from self.put_blob(b"".join(parts))
        else:
            h = blob_hash(b"".join(parts))
            ref = ObjectRef(h, size)
            inline = "1" if len(encoded) < self.inline_threshold else "0"
            blob = (h, size, len(encoded), inline, now_us(), secrets.token_hex(6), encoded)
        commit = build(ref)
        k = self.keys
        lease: tuple[str, ...] = ("", "", "")
        if release is not None:
            fp, owner = release
            lease = (k.lock(fp), owner, k.channel(fp))
        args = (0, k.prefix, *lease, *blob, *self._commit_args(commit))
        yield RedisCall(f"record commit {commit.hash[:12]}", args, PUT_RESULT)
        return commit

    def get_commit(self, hash: str) -> OpFlow[Commit | None]:
        row = yield RedisCall(
            f"read commit {hash[:12]}", ("HMGET", self.keys.commit(hash), "b", "la")
        )
        if row[0] is None:
            return None
        try:
            commit = verified_commit(row[0], hash)
        except ValueError as exc:
            yield from self.quarantine(hash, row[0], f"the stored commit is damaged: {exc}")
            return None
        commit.last_accessed = _last_access(row[1])
        return commit

    def find_by_fingerprint(self, fingerprint: str) -> OpFlow[Commit | None]:
        hint = self._hints.get(fingerprint, "")
        known = self._templates.get(hint) if hint else None
        have = ""
        if known is None:
            hint = ""
        elif known.result is not None and known.result.hash in self._blobs:
            have = known.result.hash
        op = f"look up fingerprint {fingerprint[:16]}"
        key = self.keys.hit(fingerprint)
        if known is not None and (have or known.result is None):
            # A repeat hit: three plain reads in one round trip confirm that the commit we
            # know is still the newest, unexpired, with its blob; cheaper for Redis than the
            # script (a tenth of the work). Anything else: the script decides.
            found = yield from self._confirm(op, key, known, have)
            if found is not None:
                return found
        reply = yield _run(op, FIND, (key,), self.prefix, now_us(), hint, have)
        if reply is None:
            return None
        nl = reply.index(b"\n")
        h_, la_, size_ = reply[:nl].split(b" ")
        h = h_.decode()
        end = nl + 1 + int(size_)
        template = self._templates.get(h) if end == nl + 1 else None
        if template is None:
            body = reply[nl + 1 : end]
            if not body:  # forgotten meanwhile by another thread: fetch it
                body = (yield RedisCall(op, ("HGET", self.keys.commit(h), "b"))) or b""
                if not body:
                    return None
            try:  # verified once per commit per process, like a blob
                template = verified_commit(body, h, decode_lazily)  # the tail: later
            except ValueError as exc:
                yield from self.quarantine(h, body, f"the stored commit is damaged: {exc}")
                return None
            _remember(self._templates, h, template)
        if hit_fingerprint(template) != fingerprint or template.is_expired():
            # Another call's commit (or one that is no hit): whatever the index said, a miss.
            if template.task_def.fingerprint != fingerprint:
                reason = (
                    f"the hit index of fingerprint {fingerprint[:24]}... held this commit of"
                    f" another call ({template.task_def.fingerprint[:24]}...); removed from it"
                )
                yield from self.quarantine(h, None, reason, INDEX)
                # Its own verified content says it is no hit of this fingerprint: never.
                with suppress(StoreError):  # best effort, as the quarantine
                    yield RedisCall(op, ("ZREM", key, h))
            return None
        if hint != h:
            _remember(self._hints, fingerprint, h)
        result = template.result
        if result is not None:
            self._remember_blob(result.hash, reply[end:] if len(reply) > end else None, have)
        return copy_commit(template, None if la_ == b"-" else _last_access(la_))

    def lookup(self, fingerprint: str) -> OpFlow[Hit | None]:
        """``find_by_fingerprint``, with the result's bytes when the lookup brought them."""
        commit = yield from self.find_by_fingerprint(fingerprint)
        if commit is None:
            return None
        data = None
        if commit.result is not None:
            h = commit.result.hash
            cached = self._blobs.get(h)
            if cached is not None:
                with suppress(BlobCorruptedError):  # get_blob reads, reports and drops it
                    decoded = decode_blob(cached[0], h)
                    verify_blob(decoded, h)
                    data = decoded  # only once verified
        return Hit(commit, data)

    def _confirm(self, op: str, key: str, known: Commit, have: str) -> OpFlow[Commit | None]:
        k = self.keys
        batch: list[tuple[Any, ...]] = [
            ("ZREVRANGE", key, 0, 0),
            ("HMGET", k.commit(known.hash), "c", "la"),
        ]
        if have:
            batch.append(("EXISTS", k.blob_meta(have), k.blob_data(have)))
        replies = yield RedisCall(op, (), batch=tuple(batch))
        newest, (exists, la) = replies[0], replies[1]
        if (
            not newest
            or text(newest[0]) != known.hash
            or exists is None
            or known.is_expired()
            or (have and replies[2] != 2)
        ):
            return None
        if have:
            self._remember_blob(have, None, have)
        return copy_commit(known, _last_access(la))

    def _remember_blob(self, h: str, stored: bytes | None, have: str) -> None:
        # The stored form is kept (at most HIT_BLOB_MAX bytes each, whatever it decodes
        # to), and decoded and verified when get_blob serves it.
        now = time.monotonic()
        if stored is not None:
            _remember(self._blobs, h, (stored, now))
        elif h == have:
            cached = self._blobs.get(h)
            if cached is not None:
                self._blobs[h] = (cached[0], now)

    def latest_for_fingerprint(self, fingerprint: str) -> OpFlow[Commit | None]:
        op = f"look up fingerprint {fingerprint[:16]}"
        row = yield _run(op, LATEST, (self.keys.fp(fingerprint),), self.prefix)
        return None if row is None or row[0] is None else _commit(row[0], row[1])

    def list_commits(
        self,
        func_name: str | None,
        limit: int | None,
        status: TaskStatus | str | None,
        tags: TagQuery | None,
    ) -> OpFlow[list[Commit]]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        k = self.keys
        index = [] if func_name is None else [k.func(func_name)]
        if status is not None:
            index.append(k.status(TaskStatus.parse(status)))
        index += self._tag_keys(tags)
        keys = tuple(index) or (k.created,)
        flat = yield _run("list commits", LIST, keys, k.prefix, -1 if limit is None else limit)
        return _commits(flat)

    def _tag_keys(self, tags: TagQuery | None) -> list[str]:
        k = self.keys
        return [k.tag(key, None if v is None else str(v)) for key, v in (tags or {}).items()]

    def iter_page(self, cursor: IterCursor) -> OpFlow[list[Commit]]:
        flat = yield _run("list commits", ITER, (), self.prefix, cursor.min, cursor.offset, BATCH)
        out = []
        for i in range(0, len(flat), 3):
            score = text(flat[i])
            if score == cursor.min:
                cursor.offset += 1
            else:
                cursor.min, cursor.offset = score, 1
            if flat[i + 1] is not None and (c := _commit(flat[i + 1], flat[i + 2])) is not None:
                out.append(c)
        cursor.done = len(flat) < 3 * BATCH
        return out

    def get_history(self, hash: str) -> OpFlow[list[Commit]]:
        flat = yield _run(f"read history of {hash[:12]}", HISTORY, (), self.prefix, hash, now_us())
        return _commits(flat)

    def resolve_prefix(self, prefix: str, limit: int) -> OpFlow[list[str]]:
        p = prefix.strip().lower()
        if not p or len(p) > 64 or p.strip(_HEX):
            raise ValueError(f"{prefix!r} is not a hash prefix (1-64 hex digits)")
        if limit == 0:
            return []
        args = ("ZRANGEBYLEX", self.keys.hashes, f"[{p}", f"({p}g", "LIMIT", 0, max(limit, -1))
        found = yield RedisCall(f"resolve hash prefix {p}", args)
        return [text(h) for h in found]

    def touch(self, hash: str, when: datetime) -> OpFlow[None]:
        yield _run(f"record access to {hash[:12]}", TOUCH, (), self.prefix, hash, to_us(when))

    # lifecycle

    def stats(self) -> OpFlow[dict[str, int]]:
        reply = yield _run("read stats", STATS, (), self.prefix)
        total, completed, files, file_bytes, inline, inline_bytes = (int(v or 0) for v in reply)
        return store_stats(total, completed, files, file_bytes, inline, inline_bytes)

    def evict(
        self, older_than: datetime, max_size_bytes: int | None, orphan_grace: float
    ) -> OpFlow[int]:
        k = self.keys
        now = now_us()
        removed = 0
        for index, bound in ((k.last_accessed, f"({to_us(older_than)}"), (k.expires, str(now))):
            while True:
                deleted, seen = yield _run(
                    "evict", DELETE_RANGE, (index,), k.prefix, _token(), bound, BATCH
                )
                removed += int(deleted)
                if int(seen) < BATCH:
                    break
        bound = str(now - int(orphan_grace * 1e6))
        while int((yield _run("evict", GC_ORPHANS, (), k.prefix, _token(), bound, BATCH))) >= BATCH:
            pass
        while max_size_bytes is not None:
            deleted, done = yield _run(
                "evict", SHRINK, (), k.prefix, _token(), max_size_bytes, BATCH
            )
            removed += int(deleted)
            if int(done):
                break
        yield from self._dropped()
        return removed

    def _dropped(self) -> OpFlow[None]:
        """After blobs may have been dropped: forget the cached ones, delete the objects of
        those kept in the blob store."""
        self._blobs.clear()
        if self.blob_store is not None:
            yield from reap(self, self.blob_store)

    def delete_commit(self, hash: str) -> OpFlow[bool]:
        if len(hash) < 64:  # a unique prefix, as the published stores took it
            found = unique_prefix(hash, (yield from self.resolve_prefix(hash, 21)))
            if found is None:
                return False
            hash = found
        op = f"delete commit {hash[:12]}"
        n = yield _run(op, DELETE, (), self.prefix, _token(), hash)
        yield from self._dropped()
        return bool(n)

    def delete_by_tags(self, tags: TagQuery) -> OpFlow[int]:
        if not tags:
            raise ValueError("refusing to delete everything: no tags given")
        keys = tuple(self._tag_keys(tags))
        n = yield _run("delete commits by tags", DELETE_TAGS, keys, self.prefix, _token())
        yield from self._dropped()
        return int(n)


def check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The extra ``redis`` connection options, without those the stores must set."""
    out = dict(options or {})
    for forbidden in ("decode_responses", "retry"):
        if forbidden in out:
            raise ValueError(f"{forbidden!r} is set by the store and cannot be overridden")
    return out
