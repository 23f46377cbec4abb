"""The check-up of a Redis store (``client.check()``, ``cashet doctor``), free of IO like the
rest of :mod:`cashet.stores.redis.ops`.

It scans the keys under the store's prefix (``SCAN``, never ``KEYS``) and checks the
invariants every script keeps (see :mod:`cashet.stores.redis.keys`), with ``repair`` fixing
what it can:

* every commit has a body that verifies against its hash and columns that agree with it;
  repair: quarantined (moved out, as a lookup would);
* every commit is in the global indexes (``index:created``, ``index:hashes``,
  ``index:last_accessed``) and in each index its ``x`` list names; repair: added back;
* every index entry names a commit (a *dangling index* entry); repair: removed;
* every result blob has its meta key and all its bytes; repair: the blob and the commits
  that need it are removed (the calls recompute);
* every reference count equals the commits using the blob; every unreferenced blob is in
  the orphan index (so ``gc`` collects it); blob bytes without a meta key and without an
  expiry are orphans; repair: recounted, indexed, deleted;
* the ``stats`` counters add up; repair: rewritten;
* every lease whose holder is dead or that expired; repair: released.

Scanning is O(keys): fine for a doctor, never done on a normal path. Writes made by other
clients during a check may be reported as findings; a repair only ever removes what is
still wrong when it acts (each fix is one idempotent command or script).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from cashet.core import leases as _lease
from cashet.hashing.commits import verified_commit
from cashet.protocols import CheckReport
from cashet.stores.quarantine import COMMIT, QuarantineEntry
from cashet.stores.redis.calls import OpFlow, RedisCall, text
from cashet.stores.redis.claim_ops import _lease_of
from cashet.stores.redis.keys import Keys, now_us, to_us

if TYPE_CHECKING:
    from cashet.stores.objects.base import BlobStore

__all__ = ["DoctorOps"]

_LIST_MAX = 1000
_COMMIT_INDEXES = ("created", "hashes", "last_accessed")


def _pairs(flat: Any) -> Iterator[tuple[str, Any]]:
    items = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2], strict=True)
    for k, v in items:
        yield text(k), v


def _counters(flat: Any, wanted: dict[str, int]) -> dict[str, int | str]:
    """The counters of a stats hash that the check recounts (the hash holds others too:
    the hit totals, ``hits_saved`` a float); a value that is no integer is kept as text,
    so it differs from the count and is reported."""
    out: dict[str, int | str] = {}
    for name, value in _pairs(flat):
        if name in wanted:
            try:
                out[name] = int(value)
            except (TypeError, ValueError):
                out[name] = text(value)
    return out


class DoctorOps:
    """``check`` of :class:`~cashet.stores.redis.ops.Ops`."""

    keys: Keys
    prefix: str
    host: str
    _blobs: Any
    blob_store: BlobStore | None

    if TYPE_CHECKING:  # the other mixins' (a stub here would shadow them)

        def quarantine(
            self, h: str, body: Any, reason: str, kind: str = COMMIT
        ) -> OpFlow[None]: ...
        def quarantined(self) -> OpFlow[list[QuarantineEntry]]: ...
        def delete_commit(self, hash: str) -> OpFlow[bool]: ...
        def release_claim(self, fingerprint: str, owner: str) -> OpFlow[None]: ...
        def where(self) -> str: ...

    def _scan(self, pattern: str) -> OpFlow[list[str]]:
        """Every key under the prefix matching ``pattern``, without the prefix."""
        found: list[str] = []
        cursor = "0"
        n = len(self.prefix)
        while True:
            reply = yield RedisCall(
                f"scan {pattern}", ("SCAN", cursor, "MATCH", self.prefix + pattern, "COUNT", 1000)
            )
            cursor = text(reply[0])
            found.extend(text(k)[n:] for k in reply[1])
            if cursor == "0":
                return sorted(set(found))

    def check(self, repair: bool) -> OpFlow[CheckReport]:
        """Check the store's invariants (the module docstring); with ``repair``, fix."""
        k = self.keys
        report = CheckReport(self.where(), repair)
        names = yield from self._scan("commit:*")
        commits: dict[str, list[Any]] = {}
        for name in names:
            h = name.partition(":")[2]
            commits[h] = yield RedisCall(
                "read a commit", ("HMGET", self.prefix + name, "b", "r", "c", "x", "la")
            )
        report.counts["commits"] = len(commits)
        good: dict[str, Any] = {}
        for h, (body, result, completed, index_list, la) in commits.items():
            reason = _damage(h, body, completed)
            if reason is None:
                good[h] = (verified_commit(body, h), result, index_list, la)
                continue
            action = ""
            if repair:
                yield from self.quarantine(h, body, reason)
                action = "quarantined"
            report.add("damaged_commit", h, reason, action)
        for entry in (yield from self.quarantined()):
            report.add("quarantined", entry.hash, f"{entry.kind}: {entry.reason}").problem = False

        # indexes: every commit in its indexes, every entry a commit
        for h, (commit, _, index_list, la) in good.items():
            created = to_us(commit.created_at)
            wanted = {k.created: created, k.hashes: 0, k.last_accessed: int(la or created)}
            try:
                for key in json.loads(index_list or "[]"):
                    wanted.setdefault(text(key), created)
            except ValueError:
                pass
            for key, score in wanted.items():
                if (yield RedisCall("read an index", ("ZSCORE", key, h))) is not None:
                    continue
                action = ""
                if repair:
                    yield RedisCall("index a commit", ("ZADD", key, score, h))
                    action = "indexed"
                report.add("missing_index", h, f"commit missing from {key}", action)
        index_names = yield from self._scan("index:*")
        for name in index_names:
            if name == "index:orphans":
                continue
            key = self.prefix + name
            members = yield RedisCall("read an index", ("ZRANGE", key, 0, -1))
            for m in members:
                h = text(m)
                if h in commits:
                    continue
                action = ""
                if repair:
                    yield RedisCall("drop a dangling index entry", ("ZREM", key, m))
                    action = "removed"
                report.add("dangling_index", f"{name}:{h}", "names no commit", action)
        yield from self._check_blobs(report, repair, good)
        yield from self._check_stats(report, repair)
        yield from self._check_leases(report, repair)
        return report

    def _check_blobs(self, report: CheckReport, repair: bool, good: dict[str, Any]) -> OpFlow[None]:
        k = self.keys
        uses: dict[str, list[str]] = {}
        for h, (_, result, _, _) in good.items():
            if result:  # (b"" when the run has no result)
                uses.setdefault(text(result), []).append(h)
        metas = [
            n.partition(":")[2].partition(":")[2] for n in (yield from self._scan("blob:meta:*"))
        ]
        report.counts["blobs"] = len(metas)
        lost: dict[str, str] = {}
        for h in metas:
            z, n, g = yield RedisCall("read a blob", ("HMGET", k.blob_meta(h), "z", "n", "g"))
            try:
                if n is None or text(n) == "0":
                    size = yield RedisCall("read a blob", ("STRLEN", k.blob_data(h)))
                    if int(size) != int(z):
                        lost[h] = f"its bytes are gone ({size} of {int(z)} bytes)"
                elif int(n) < 0:  # in the blob store (blobs=): its object's size
                    blobs = self.blob_store
                    assert blobs is not None
                    check = partial(blobs.stored_size, h)
                    if (yield RedisCall("check a blob", (), io=check)) != int(z):
                        lost[h] = f"its object in {blobs!r} is missing or not {int(z)} bytes"
                else:
                    for i in range(int(n)):
                        key = k.blob_chunk(h, text(g), i)
                        if not (yield RedisCall("read a blob", ("EXISTS", key))):
                            lost[h] = f"chunk {i} is gone"
                            break
            except (TypeError, ValueError):
                lost[h] = "its meta key is damaged"
        for h in uses:
            if h not in metas:
                lost.setdefault(h, "no meta key")
        for h, why in list(lost.items())[:_LIST_MAX]:
            users = uses.get(h, [])
            action = ""
            if repair:
                for user in users:
                    yield from self.delete_commit(user)
                yield RedisCall("drop a lost blob", ("DEL", k.blob_meta(h), k.blob_data(h)))
                yield RedisCall("drop a lost blob", ("ZREM", k.orphans, h))
                self._blobs.clear()
                action = f"removed {len(users)} commit(s): their calls will recompute"
            report.add(
                "missing_blob",
                h,
                f"result blob {h[:16]}... is gone: {why}; {len(users)} commit(s) use it",
                action,
            )
        refs = yield from self._scan("blob:ref:*")
        counted = {name.rpartition(":")[2]: name for name in refs}
        orphans = {text(m) for m in (yield RedisCall("read", ("ZRANGE", k.orphans, 0, -1)))}
        for h in sorted(set(metas) | set(counted)):
            if h in lost:
                continue
            stored = yield RedisCall("read a refcount", ("GET", k.blob_ref(h)))
            actual = len(uses.get(h, []))
            if int(stored or 0) != actual:
                action = ""
                if repair:  # (no key at zero, as the scripts keep it)
                    count = ("SET", k.blob_ref(h), actual) if actual else ("DEL", k.blob_ref(h))
                    yield RedisCall("recount", count)
                    action = "recounted"
                report.add(
                    "refcount", h, f"reference count {text(stored)}, {actual} commit(s)", action
                )
            if not actual and h in metas and h not in orphans:
                action = ""
                if repair:
                    yield RedisCall("index an orphan", ("ZADD", k.orphans, now_us(), h))
                    action = "indexed for gc"
                report.add("orphan_blob", h, "no commit uses it and gc does not know it", action)
        for name in (yield from self._scan("blob:data:*")):
            h = name[len("blob:data:") :].partition(":")[0]
            if h in metas:
                continue
            ttl = yield RedisCall("read a ttl", ("PTTL", self.prefix + name))
            if int(ttl) > 0:
                continue  # a chunk being written (it expires by itself if never published)
            action = ""
            if repair:
                yield RedisCall("drop orphan bytes", ("DEL", self.prefix + name))
                action = "reclaimed"
            report.add("orphan_blob", name, "blob bytes no meta key publishes", action)

    def _check_stats(self, report: CheckReport, repair: bool) -> OpFlow[None]:
        k = self.keys
        # Counted afresh: the repairs above moved the counters with what they removed.
        names = yield from self._scan("commit:*")
        completed = 0
        for name in names:
            flag = yield RedisCall("read a commit", ("HGET", self.prefix + name, "c"))
            completed += flag is not None and text(flag) == "1"
        want_c = {"total_commits": len(names), "completed_commits": completed}
        have_c = _counters((yield RedisCall("read", ("HGETALL", k.stats_commit))), want_c)
        want_b = {"blob_objects": 0, "blob_bytes": 0, "inline_objects": 0, "inline_bytes": 0}
        for name in (yield from self._scan("blob:meta:*")):
            z, i = yield RedisCall("read a blob", ("HMGET", self.prefix + name, "z", "i"))
            kind = "inline" if text(i) == "1" else "blob"
            want_b[kind + "_objects"] += 1
            want_b[kind + "_bytes"] += int(z or 0)
        have_b = _counters((yield RedisCall("read", ("HGETALL", k.stats_blob))), want_b)
        for key, want, have in ((k.stats_commit, want_c, have_c), (k.stats_blob, want_b, have_b)):
            if {n: have.get(n, 0) for n in want} == want:
                continue
            action = ""
            if repair:
                flat = [x for pair in want.items() for x in pair]
                yield RedisCall("rewrite the counters", ("HSET", key, *flat))
                action = "recounted"
            report.add("counters", key, f"the counters say {have}, the store holds {want}", action)

    def _check_leases(self, report: CheckReport, repair: bool) -> OpFlow[None]:
        now = datetime.now(UTC)
        names = yield from self._scan("lock:*")
        report.counts["leases"] = len(names)
        for name in names:
            fingerprint = name[len("lock:") :]
            row = yield RedisCall(
                "read a lease", ("HMGET", self.prefix + name, "o", "e", "h", "p", "f")
            )
            if row[0] is None:
                continue  # released meanwhile
            try:
                lease = _lease_of(row)
                dead = _lease.lease_is_dead(lease, now, self.host)
            except (TypeError, ValueError, OverflowError):
                lease, dead = None, True
            if not dead:
                continue
            action = ""
            if repair:
                yield from self.release_claim(fingerprint, text(row[0]))
                action = "removed"
            detail = (
                "an unreadable lease"
                if lease is None
                else f"lease of {lease.func_name} held by pid {lease.pid} on {lease.host}:"
                " its holder is gone or it expired"
            )
            report.add("stale_lease", fingerprint, detail, action)


def _damage(h: str, body: Any, completed: Any) -> str | None:
    if body is None:
        return "the commit has no body"
    try:
        commit = verified_commit(body, h)
    except ValueError as exc:
        return f"the stored commit is damaged: {exc}"
    is_completed = commit.status.value == "completed"
    if completed is not None and (text(completed) == "1") != is_completed:
        return "its completed flag contradicts its verified content"
    return None
