"""Leases on fingerprints in ``meta.db`` (the ``claims`` table): who computes what now.

A mixin of :class:`~cashet.stores.sqlite.store.SQLiteStore`: the lease methods of the
``Store`` protocol, over the store's :class:`~cashet.stores.sqlite.connection.Database`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from cashet.core import leases as _lease
from cashet.models import Commit, Lease, TaskDef, TaskStatus
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.connection import Database
from cashet.stores.sqlite.lean import fp_key
from cashet.stores.sqlite.schema import from_epoch, to_epoch

__all__ = ["ClaimsMixin"]


_lease_of = _lease.lease_from_row

#: ``NEW_CLAIM``, taken only while no commit of the fingerprint's key could be a hit (the
#: columns ``FIND_HIT`` filters on, the blob's presence left out): then the lookup that
#: follows a claim can only miss, and is answered without a query (issue 18: a faster miss).
NEW_CLAIM_UNCACHED = (
    "INSERT OR IGNORE INTO claims (fingerprint, owner, host, pid, expires_at, func_name,"
    " claimed_at) SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM commits"
    " WHERE fp = ? AND status = 'completed' AND cache = 1"
    " AND (expires_at IS NULL OR expires_at > ?))"
)


class ClaimsMixin:
    """The lease methods of ``SQLiteStore`` (``_db`` and ``_host`` are the store's)."""

    _db: Database
    _host: str
    #: ``(owner, fingerprint, expires_at)`` of the last lease taken while no commit could
    #: answer its fingerprint (see :meth:`known_miss`).
    _uncached: tuple[str, str, float] | None = None

    def known_miss(self, fingerprint: str, owner: str) -> bool:
        """Whether the lookup of ``fingerprint`` right after ``owner`` took its lease can
        only miss: the lease was granted (:meth:`try_claim`, in one statement) while no
        commit could answer it, and its holder is the only one to record one. Answered
        once per lease; ``False`` when unknown (then look)."""
        known = self._uncached
        if known is None or known[0] != owner or known[1] != fingerprint:
            return False
        self._uncached = None
        return time.time() < known[2]  # unexpired: nobody could have taken it over

    def _live_claim(self, fingerprint: str) -> tuple[Lease, float] | None:
        row = self._db.one(sql.GET_CLAIM, (fingerprint,))
        if row is None:
            return None
        lease = _lease_of(row)
        if _lease.lease_is_dead(lease, datetime.now(UTC), self._host):
            return None
        return lease, row[5]

    def running_claims(self) -> list[tuple[str, Lease, datetime]]:
        """Return ``(fingerprint, lease, claimed_at)`` of every live lease, newest first."""
        now = datetime.now(UTC)
        out = []
        for row in self._db.all(sql.LIVE_CLAIMS, (to_epoch(now),)):
            lease = _lease_of(row[1:])
            if not _lease.lease_is_dead(lease, now, self._host):
                out.append((row[0], lease, from_epoch(row[6])))
        return out

    def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        """Take the lease on ``fingerprint`` unless another owner holds a live one.

        A held lease is dead once expired, or at once when its holder was a process on
        this host that no longer exists; re-claiming one's own lease renews it.

        Returns:
            Whether ``lease`` now holds the fingerprint.
        """
        now = datetime.now(UTC)
        ts = now.timestamp()
        held = _lease.lease_row(lease)
        params = (fingerprint, *held, ts)
        self._uncached = None
        # Fast path, one autocommit statement: nobody holds the fingerprint, and no commit
        # could answer it (the lookup that follows is then answered without a query).
        if self._db.run(NEW_CLAIM_UNCACHED, (*params, fp_key(fingerprint), ts)) == 1:
            self._uncached = (lease.owner, fingerprint, held[3])  # (its expiry)
            return True
        with self._db.transact() as conn:
            row = conn.execute(sql.GET_CLAIM, (fingerprint,)).fetchone()
            if (
                row is not None
                and row[0] != lease.owner
                and not _lease.lease_is_dead(_lease_of(row), now, self._host)
            ):
                return False
            conn.execute(sql.PUT_CLAIM, params)
            return True

    def get_claim(self, fingerprint: str) -> Lease | None:
        """Return the live lease on ``fingerprint``, or ``None`` (a dead one counts as none)."""
        found = self._live_claim(fingerprint)
        return None if found is None else found[0]

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        """Extend ``owner``'s lease to ``expires_at``.

        Returns:
            ``False`` when ``owner`` no longer holds the lease (someone took it over).
        """
        with self._db.transact() as conn:
            cur = conn.execute(sql.RENEW_CLAIM, (to_epoch(expires_at), fingerprint, owner))
            return cur.rowcount == 1

    def release_claim(self, fingerprint: str, owner: str) -> None:
        """Drop the lease on ``fingerprint`` if ``owner`` holds it; otherwise do nothing."""
        self._db.run(sql.RELEASE_CLAIM, (fingerprint, owner))  # one autocommit statement

    def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """Block until nobody holds a live lease on ``fingerprint``, or ``timeout`` seconds.

        SQLite cannot notify, so this polls one indexed row, backing off from 2 ms to 50 ms.
        """
        deadline = time.monotonic() + timeout
        delay = 0.002
        while self._live_claim(fingerprint) is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)

    def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        """Describe the live lease on ``fingerprint`` as a running commit, or ``None``.

        Returns:
            ``Commit(hash="", status=RUNNING, created_at=<when the lease was taken>)``
            whose ``task_def`` has the lease's ``func_name`` and the ``func_hash`` and
            ``args_hash`` of the fingerprint; nothing else is set. ``None`` when nobody
            holds a live lease.
        """
        found = self._live_claim(fingerprint)
        if found is None:
            return None
        lease, claimed_at = found
        func_hash, _, args_hash = fingerprint.partition(":")
        return Commit(
            hash="",
            task_def=TaskDef(func_name=lease.func_name, func_hash=func_hash, args_hash=args_hash),
            status=TaskStatus.RUNNING,
            created_at=from_epoch(claimed_at),
        )
