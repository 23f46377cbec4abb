"""The check-up of a PostgreSQL store (``client.check()``, ``cashet doctor``), free of IO like
the rest of the store's operations. With ``repair`` it fixes what it can:

* every commit's body verifies against its hash, and its columns agree with it; repair: a
  damaged one is quarantined (moved out, as a read would), wrong columns are rewritten;
* every completed commit's result blob is stored, with its bytes; repair: the blob's index
  row is dropped and the commits that need it are removed (their calls recompute);
* every blob's reference count is the number of commits using it; repair: recounted;
* the default blob table holds no bytes that no index row names; repair: deleted;
* every lease whose holder is dead or that expired; repair: released.

Reads go a page at a time; a doctor is never on a normal path. A repair removes only what is
still wrong when it acts (each fix is one idempotent statement or a short transaction).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cashet.core import leases as _lease
from cashet.hashing.commits import verified_commit
from cashet.protocols import CheckReport
from cashet.stores.postgres.blob_table import BlobTable
from cashet.stores.postgres.calls import Flow, Q, Tx
from cashet.stores.postgres.schema import commit_row
from cashet.stores.postgres.upkeep_ops import UpkeepOps, lease_of

__all__ = ["DoctorOps"]

_PAGE = 1000


class DoctorOps(UpkeepOps):
    """``check`` beside every other operation of the store."""

    def check(self, repair: bool, where: str) -> Flow[CheckReport]:
        report = CheckReport(where=where, repair=repair)
        s = self.sql.quoted
        yield from self._commits(report, repair, s)
        for entry in (yield from self.quarantined()):
            report.add("quarantined", entry.hash, f"{entry.kind}: {entry.reason}").problem = False
        yield from self._blobs(report, repair, s)
        yield from self._leases(report, repair)
        return report

    def _commits(self, report: CheckReport, repair: bool, s: str) -> Flow[None]:
        after, seen = "", 0
        query = (
            f"SELECT hash, body, fingerprint, status, cacheable, result_hash FROM {s}.commits"
            " WHERE hash > %s ORDER BY hash LIMIT %s"
        )
        while True:
            rows = yield Q(query, (after, _PAGE))
            for h, body, fingerprint, status, cacheable, result_hash in rows:
                seen += 1
                try:
                    commit = verified_commit(body, h)
                except ValueError as exc:
                    reason = f"the stored commit is damaged: {exc}"
                    action = ""
                    if repair:
                        yield Tx(self.quarantine(h, body, reason))
                        action = "quarantined"
                    report.add("damaged_commit", h, reason, action)
                    continue
                row = commit_row(commit, "")
                want = (row[1], row[3], row[4], row[8])
                if (fingerprint, status, cacheable, result_hash) != want:
                    action = ""
                    if repair:
                        fix = (*row[1:7], row[8], h)
                        yield Q(self.sql.fix_columns, fix, "count")
                        action = "rewritten from the verified body"
                    report.add("damaged_commit", h, "its columns contradict its body", action)
            if len(rows) < _PAGE:
                break
            after = rows[-1][0]
        report.counts["commits"] = seen

    def _blobs(self, report: CheckReport, repair: bool, s: str) -> Flow[None]:
        missing = yield Q(
            f"SELECT DISTINCT c.result_hash FROM {s}.commits c LEFT JOIN {s}.blobs b"
            " ON b.hash = c.result_hash WHERE c.result_hash IS NOT NULL AND b.hash IS NULL"
            " AND c.status = 'completed'"
        )
        table = isinstance(self.blobs, BlobTable)
        if table:
            lost = yield Q(
                f"SELECT b.hash FROM {s}.blobs b LEFT JOIN {s}.blob_data d ON d.hash = b.hash"
                " WHERE b.inline IS NULL AND d.hash IS NULL"
            )
        else:  # a blob store: asked blob by blob
            lost = []
            for (h,) in (yield Q(f"SELECT hash FROM {s}.blobs WHERE inline IS NULL")):
                if not (yield from self.blobs.exists(h)):
                    lost.append((h,))
        for (h,) in [*missing, *lost]:
            action = ""
            if repair:
                yield Q(self.sql.forget_blob, (h,), "one")
                yield Q(self.sql.blob_lost, (h,), "count")
                doomed = yield Q(f"SELECT hash FROM {s}.commits WHERE result_hash = %s", (h,))
                for (commit,) in doomed:
                    yield Tx(self.delete_one(commit))
                action = f"removed the {len(doomed)} commit(s) that need it"
            report.add("missing_blob", h, "a commit's result blob is not stored", action)
        wrong = yield Q(
            f"SELECT b.hash, b.refs, (SELECT count(*) FROM {s}.commits c"
            f" WHERE c.result_hash = b.hash) FROM {s}.blobs b"
        )
        report.counts["blobs"] = len(wrong)
        for h, refs, actual in wrong:
            if refs != actual:
                action = ""
                if repair:
                    yield Q(f"UPDATE {s}.blobs SET refs = %s WHERE hash = %s", (actual, h), "count")
                    action = "recounted"
                report.add("refcount", h, f"counted {refs} references, {actual} exist", action)
        if not table:
            return  # a blob store's stray objects: its own listing (not checked here)
        stray = yield Q(
            f"SELECT d.hash FROM {s}.blob_data d LEFT JOIN {s}.blobs b ON b.hash = d.hash"
            " WHERE b.hash IS NULL"
        )
        for (h,) in stray:
            action = ""
            if repair:
                yield from self.blobs.delete(h)
                action = "deleted"
            report.add("orphan_blob", h, "blob bytes no index row names", action)

    def _leases(self, report: CheckReport, repair: bool) -> Flow[None]:
        s = self.sql.quoted
        rows: list[Any] = yield Q(
            f"SELECT fingerprint, owner, holder, pid, expires_at, func_name FROM {s}.claims"
        )
        report.counts["leases"] = len(rows)
        now = datetime.now(UTC)
        for row in rows:
            lease = lease_of(row[1:])
            if not _lease.lease_is_dead(lease, now, self.host):
                continue
            action = ""
            if repair:
                yield from self.release_claim(row[0], lease.owner)
                action = "released"
            detail = "expired" if lease.expires_at <= now else "its holder's process is gone"
            report.add("stale_lease", row[0], detail, action)
