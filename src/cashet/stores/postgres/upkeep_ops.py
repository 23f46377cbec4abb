"""The decisions of the PostgreSQL stores about leases, hits, removal and counts (no IO).

Leases are rows of the ``claims`` table judged by the rule every store shares
(:func:`cashet.core.leases.lease_is_dead`: expired, disowned, or a dead process of this
process space): a new claim is one ``INSERT ... ON CONFLICT DO NOTHING``; taking over a held
one locks its row (``SELECT ... FOR UPDATE``) in a transaction, so two takers never both
win. A release deletes the row and notifies the store's channel (``pg_notify``), which
waiters ``LISTEN`` on. Removal deletes commits in short transactions (:class:`Tx` steps),
frees a blob when its last reference goes, and finds its work by indexed queries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cashet.core import leases as _lease
from cashet.models import Commit, Lease, TaskDef, TaskStatus
from cashet.protocols import HitCounts, TagQuery
from cashet.stores.base import unique_prefix
from cashet.stores.hits import HitBatch
from cashet.stores.postgres.calls import Flow, Q, Tx
from cashet.stores.postgres.ops import CommitOps, check_prefix
from cashet.stores.postgres.schema import from_epoch, to_epoch
from cashet.stores.stats import store_stats

__all__ = ["UpkeepOps", "lease_of"]


#: The lease of a leases row (shared with the SQLite store).
lease_of = _lease.lease_from_row


class UpkeepOps(CommitOps):
    """Leases, hits, removal and stats, beside the commits and blobs of :class:`CommitOps`."""

    #: ``evict`` drops leases unrenewed for this long: no heartbeat is left to renew them.
    STALE_LEASE_SECONDS = 3600.0

    host: str = ""

    # leases

    def _live(self, row: Any, now: datetime) -> Lease | None:
        if row is None:
            return None
        lease = lease_of(row)
        return None if _lease.lease_is_dead(lease, now, self.host) else lease

    def try_claim(self, fingerprint: str, lease: Lease) -> Flow[bool]:
        """Take the lease unless another owner holds a live one (run as a transaction)."""
        now = datetime.now(UTC)
        params = (fingerprint, *_lease.lease_row(lease), now.timestamp())
        if (yield Q(self.sql.new_claim, params, "count")) == 1:
            return True
        row = yield Q(self.sql.lock_claim, (fingerprint,), "one")
        if row is not None and row[0] != lease.owner and self._live(row, now) is not None:
            return False
        yield Q(self.sql.put_claim, params, "count")
        return True

    def get_claim(self, fingerprint: str) -> Flow[Lease | None]:
        row = yield Q(self.sql.get_claim, (fingerprint,), "one")
        return self._live(row, datetime.now(UTC))

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> Flow[bool]:
        done = yield Q(self.sql.renew_claim, (to_epoch(expires_at), fingerprint, owner), "count")
        return bool(done == 1)

    def release_claim(self, fingerprint: str, owner: str) -> Flow[None]:
        yield Q(self.sql.release_claim, (fingerprint, owner, self.sql.channel), "count")

    def record(self, commit: Commit, release: tuple[str, str] | None) -> Flow[None]:
        """The end of a miss: record ``commit``, drop the lease (run as a transaction)."""
        yield from self.put_commit(commit)
        if release is not None:
            yield from self.release_claim(*release)

    def running_claims(self) -> Flow[list[tuple[str, Lease, datetime]]]:
        now = datetime.now(UTC)
        rows = yield Q(self.sql.live_claims, (now.timestamp(),))
        out = []
        for row in rows:
            lease = self._live(row[1:], now)
            if lease is not None:
                out.append((row[0], lease, from_epoch(row[6])))
        return out

    def running_commit(self, fingerprint: str) -> Flow[Commit | None]:
        """The live lease on ``fingerprint`` as a running commit (see the Store protocol)."""
        row = yield Q(self.sql.get_claim, (fingerprint,), "one")
        lease = self._live(row, datetime.now(UTC))
        if lease is None:
            return None
        func_hash, _, args_hash = fingerprint.partition(":")
        return Commit(
            hash="",
            task_def=TaskDef(func_name=lease.func_name, func_hash=func_hash, args_hash=args_hash),
            status=TaskStatus.RUNNING,
            created_at=from_epoch(row[5]),
        )

    def pause(self, lease: Lease, left: float) -> float:
        """How long a waiter may sleep before it looks at ``lease`` again: until the
        release is notified, the lease expires, or the timeout; a lease of this process
        space is looked at every 0.25 s (its holder may die), any other every 2 s."""
        local = _lease.same_process_space(lease, self.host)
        until_expiry = (lease.expires_at - datetime.now(UTC)).total_seconds() + 0.001
        return max(0.0, min(left, until_expiry, 0.25 if local else 2.0))

    # hits

    def add_hits(self, batch: HitBatch) -> Flow[None]:
        """Write one batch of hits and access times (run as a transaction)."""
        counts = [(h, n, last, saved, h) for h, (n, last, saved) in batch.items()]
        yield Q(self.sql.add_hits, counts, "many")
        access = [(last, h, last) for h, (_, last, _) in batch.items()]
        yield Q(self.sql.hit_access, access, "many")

    def hit_counts(self, hashes: Sequence[str]) -> Flow[dict[str, HitCounts]]:
        found: dict[str, HitCounts] = {}
        wanted = list(dict.fromkeys(hashes))
        for i in range(0, len(wanted), 1000):
            rows = yield Q(self.sql.hit_counts, (wanted[i : i + 1000],))
            for h, n, ts in rows:
                found[h] = HitCounts(int(n), None if ts is None else from_epoch(ts))
        return found

    def hit_totals(self) -> Flow[tuple[int, float]]:
        rows = yield Q(self.sql.hit_totals)
        return int(rows[0][0]), float(rows[0][1])

    # counts and removal

    def stats(self) -> Flow[dict[str, int]]:
        rows = yield Q(self.sql.stats)
        total, completed, files, file_bytes, inline, inline_bytes = (int(v) for v in rows[0])
        return store_stats(total, completed, files, file_bytes, inline, inline_bytes)

    def delete_one(self, h: str) -> Flow[bool]:
        """Delete commit ``h`` (a full hash) and free its blob at its last reference (run
        as a transaction)."""
        row = yield Q(self.sql.delete_commit, (h,), "one")
        if row is None:
            return False
        if row[0] is not None:
            yield from self.unref(row[0])
        self._decoded.pop(h, None)
        return True

    def delete_commit(self, hash: str) -> Flow[bool]:
        """Delete the commit ``hash`` names (a unique prefix will do)."""
        h: str | None = hash
        if len(hash) < 64:
            found = yield from self.resolve_prefix(check_prefix(hash), 2)
            h = unique_prefix(hash, found)
            if h is None:
                return False
        return bool((yield Tx(self.delete_one(str(h)))))

    def delete_by_tags(self, tags: TagQuery) -> Flow[int]:
        if not tags:
            raise ValueError("refusing to delete everything: no tags given")
        doomed: set[str] | None = None
        for key, value in tags.items():
            rows = yield Q(self.sql.tagged, (key, value, value))
            these = {r[0] for r in rows}
            doomed = these if doomed is None else doomed & these
        removed = 0
        for h in sorted(doomed or ()):
            removed += bool((yield Tx(self.delete_one(h))))
        return removed

    def evict(self, older_than: datetime, max_size: int | None, grace: float) -> Flow[int]:
        """Remove commits unused since ``older_than`` or expired; blobs unreferenced for
        ``grace`` seconds; then, over ``max_size`` stored bytes, least recently used
        commits; and leases left unrenewed for an hour. Returns the commits removed."""
        now = time.time()
        removed = 0
        while True:
            rows = yield Q(self.sql.old_commits, (to_epoch(older_than), now, self._BATCH))
            for (h,) in rows:
                removed += bool((yield Tx(self.delete_one(h))))
            if len(rows) < self._BATCH:
                break
        while True:
            rows = yield Q(self.sql.orphan_blobs, (now - grace, self._BATCH))
            for h, external in rows:
                gone = yield Q(self.sql.drop_orphan, (h,), "count")
                if gone and external:
                    yield from self.blobs.delete(h)
            if len(rows) < self._BATCH:
                break
        if max_size is not None:
            removed += yield from self._shrink(max_size)
        yield Q(self.sql.stale_claims, (now - self.STALE_LEASE_SECONDS,), "count")
        return removed

    def _shrink(self, max_size: int) -> Flow[int]:
        removed = 0
        while True:
            # Young unreferenced blobs (their commits may be on the way) cannot be freed by
            # removing commits; counting them would remove every commit in vain.
            orphans = (yield Q(self.sql.orphan_bytes))[0][0]
            stored = (yield Q(self.sql.stored_bytes))[0][0]
            if stored <= max_size + orphans:
                return removed
            rows = yield Q(self.sql.lru, (self._BATCH,))
            if not rows:
                return removed
            over = stored - max_size - orphans
            for h, size, refs in rows:
                removed += bool((yield Tx(self.delete_one(h))))
                over -= size if refs <= 1 else 0
                if over <= 0:
                    break
