"""The check-up of a SQLite store (``client.check()``, ``cashet doctor``): find and repair.

A mixin of :class:`~cashet.stores.sqlite.store.SQLiteStore`. :meth:`DoctorMixin.check` looks
at the whole store, in this order, and with ``repair=True`` fixes what it can:

1. ``PRAGMA integrity_check`` of ``meta.db`` (indexes included); repair: ``REINDEX``, then
   the check again (what is still wrong is reported: only a restore can fix a damaged table);
   then the indexes and triggers against the ones this version makes (``schema_check``);
   repair: made again.
2. every commit row verified (its body hashes to its hash, its indexed columns agree with
   its body); repair: the damaged rows are quarantined (:mod:`cashet.stores.quarantine`).
3. the entries quarantined before, listed (information, not a problem).
4. blob files no row knows (``objects/``): one a commit references is *adopted* (verified,
   then indexed again); any other is reclaimed (unlinked under the write lock, so a
   concurrent ``put_blob`` of the same bytes rewrites it). Temporary files of a write
   older than ``orphan_grace`` are reclaimed too. This is how the space of a ``meta.db``
   that was deleted or truncated comes back (``gc`` never walks the files).
5. blobs that are gone (an indexed file missing or of the wrong size, inline bytes that do
   not verify, a result no row knows); repair: the blob row and the commits that need it
   are removed, so those calls are misses and recompute. Blob files are checked by size,
   not read: ``get_blob`` verifies content on every read.
6. reference counts and the ``stats`` counters, recomputed; repair: rewritten.
7. leases whose holder is dead or that expired; repair: removed.

Nothing is written without ``repair``; a read-only store reports what it would repair.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cashet._humanize import format_size
from cashet._log import log
from cashet.core import leases as _lease
from cashet.errors import BlobError, DamagedStoreWarning, StoreError
from cashet.models import Commit
from cashet.protocols import CheckReport
from cashet.stores.blobs import decode_blob, verify_blob
from cashet.stores.objects.base import BlobStore
from cashet.stores.objects.files import FileBlobStore
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.claims import _lease_of
from cashet.stores.sqlite.connection import DB_ERRORS, Database, tolerant_text
from cashet.stores.sqlite.lean import FunctionBooks, fp_key, func_digest
from cashet.stores.sqlite.schema_check import remake, schema_drift
from cashet.stores.sqlite.schema_v8 import BLOB_BY_KEY, BLOB_KEY, TINY_BYTES, TINY_OBJECTS
from cashet.stores.sqlite.tiny import HELD_DATA

__all__ = ["COUNTED", "DoctorMixin", "count_blob_files", "warn_files_left"]

_HEX = frozenset("0123456789abcdef")
#: Findings of one kind listed at most (the rest are counted).
_LIST_MAX = 1000
_ROWS = (
    "SELECT rowid, hash, body, fp, status, cache, fn, result_hash FROM commits"
    " WHERE rowid > ? ORDER BY rowid LIMIT ?"
)
# Rows are named by rowid (blob rows by their hash's bytes, schema_v8.BLOB_KEY): a damaged
# hash (text that is not UTF-8) cannot be a parameter.
_FILE_BLOBS = f"SELECT {BLOB_KEY}, hash, stored_size FROM blobs WHERE inline IS NULL"
_INLINE_BLOBS = f"SELECT {BLOB_KEY}, hash, inline FROM blobs WHERE inline IS NOT NULL"
_UNKNOWN_RESULTS = (
    "SELECT c.rowid, c.result_hash FROM commits AS c LEFT JOIN blobs AS b"
    " ON b.hash = c.result_hash WHERE c.result_hash IS NOT NULL AND b.hash IS NULL"
    " AND c.result_data IS NULL"  # (a tiny result kept in its row: verified apart)
)
_USERS = f"SELECT hash FROM commits WHERE {sql.RESULT_IS}"
_USERS_OF_ROW = (
    "SELECT c.rowid FROM commits AS c JOIN blobs AS b ON c.result_hash = b.hash"
    " AND substr(c.result_hash, 1, 16) = substr(b.hash, 1, 16)"
    " WHERE (b.hash = CAST(?1 AS TEXT) OR b.hash = ?1)"
)
_DELETE_BLOB_ROW = f"DELETE FROM blobs WHERE {BLOB_BY_KEY}"
_REFCOUNTS = (
    "SELECT CAST(b.hash AS BLOB), b.hash, b.refcount,"
    " (SELECT count(*) FROM commits AS c WHERE c.result_hash = b.hash"
    " AND substr(c.result_hash, 1, 16) = substr(b.hash, 1, 16)) FROM blobs AS b"
)
_SET_REFCOUNT = f"UPDATE blobs SET refcount = ?2 WHERE {BLOB_BY_KEY}"
#: The ``stats`` counters computed from the tables (``counters`` row order).
COUNTED = (
    "SELECT (SELECT count(*) FROM commits),"
    " (SELECT count(*) FROM commits WHERE status = 'completed'),"
    " (SELECT count(*) FROM blobs WHERE inline IS NULL),"
    " (SELECT coalesce(sum(stored_size), 0) FROM blobs WHERE inline IS NULL),"
    " (SELECT count(*) FROM blobs WHERE inline IS NOT NULL)"
    f" + ({TINY_OBJECTS}),"
    " (SELECT coalesce(sum(stored_size), 0) FROM blobs WHERE inline IS NOT NULL)"
    f" + ({TINY_BYTES})"
)
_COUNTERS = (
    "total_commits",
    "completed_commits",
    "blob_objects",
    "blob_bytes",
    "inline_objects",
    "inline_bytes",
)
_SET_COUNTERS = (
    "INSERT INTO counters (id, total_commits, completed_commits, blob_objects,"
    " blob_bytes, inline_objects, inline_bytes) VALUES (0, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET total_commits = excluded.total_commits,"
    " completed_commits = excluded.completed_commits, blob_objects = excluded.blob_objects,"
    " blob_bytes = excluded.blob_bytes, inline_objects = excluded.inline_objects,"
    " inline_bytes = excluded.inline_bytes"
)
_ALL_CLAIMS = sql.LIVE_CLAIMS
_FUNCS = "SELECT id, body, digest FROM funcs"
_DROP_FUNC = "DELETE FROM funcs WHERE id = ?"


def _walk(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """Every file under ``objects/``: ``(shard, name, stat)``."""
    try:
        shards = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for shard in shards:
        if not shard.is_dir(follow_symlinks=False):
            continue
        try:
            entries = sorted(os.scandir(shard.path), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    yield shard.name, entry.name, entry.stat(follow_symlinks=False)
            except OSError:
                continue


def count_blob_files(objects: str) -> tuple[int, int]:
    """How many files ``objects/`` holds, and their bytes (for the warning at open)."""
    n = size = 0
    for _, _, st in _walk(objects):
        n += 1
        size += st.st_size
    return n, size


def warn_files_left(path: object, objects: str) -> None:
    """A store opened with no (or an empty) ``meta.db``: say so, once, if blob files
    outlived it (a ``DamagedStoreWarning`` and a log line naming the way out)."""
    files, size = count_blob_files(objects)
    if not files:
        return
    message = (
        f"the cashet store {path} had no meta.db (it was missing or empty) but its objects/"
        f" directory holds {files} blob file(s), {format_size(size)}, that no commit knows"
        " any more: run `cashet doctor --repair` (or client.check(repair=True)) to reclaim"
        " the space"
    )
    log.warning("%s", message)
    warnings.warn(DamagedStoreWarning(message), stacklevel=4)


class DoctorMixin:
    """``check`` of ``SQLiteStore`` (its ``_db``, ``_blobs``, ``_files``, ``_host`` and
    settings)."""

    _db: Database
    _books: FunctionBooks
    _blobs: BlobStore
    _files: FileBlobStore | None
    _host: str
    orphan_grace: float
    readonly: bool

    if TYPE_CHECKING:  # the other mixins' (a stub here would shadow them)

        def _quarantine_row(self, rowid: Any, h: Any, body: Any, reason: str) -> None: ...
        def quarantined(self) -> list[Any]: ...
        def _delete(self, conn: Any, hash: str) -> bool: ...
        def _verified(
            self, h: Any, body: Any, fn: Any, result: Any, decode: Any = ...
        ) -> Commit: ...

    def check(self, repair: bool = False) -> CheckReport:
        """Check the whole store, and with ``repair`` fix what can be fixed (see the module
        docstring for what is checked and what a repair does).

        Returns:
            The report: every finding, and what was done about each.

        Raises:
            StoreError: ``meta.db`` cannot be read at all.
        """
        report = CheckReport(repr(self), repair)
        if repair and self.readonly:
            report.add(
                "readonly",
                os.path.dirname(self._db.file),
                "the store is read-only: nothing was repaired (run the doctor where the"
                " store can be written)",
            )
            repair = False
        self._check_integrity(report, repair)
        self._check_schema(report, repair)
        self._check_commits(report, repair)
        for entry in self.quarantined():
            finding = report.add("quarantined", entry.hash, f"{entry.kind}: {entry.reason}")
            finding.problem = False
        self._check_files(report, repair)
        self._check_blobs(report, repair)
        self._check_counts(report, repair)
        self._check_leases(report, repair)
        return report

    def _write(self, report: CheckReport, what: str) -> Any:
        """A write transaction for a repair; a failure is reported, not raised."""
        return _Repair(self._db, report, what)

    def _check_integrity(self, report: CheckReport, repair: bool) -> None:
        problems = self._integrity()
        if not problems:
            return
        fixed = False
        if repair:
            try:
                self._db.conn().execute("REINDEX")
                fixed = not self._integrity()
            except DB_ERRORS as exc:
                report.add("integrity", self._db.file, f"REINDEX failed: {exc}")
        for message in problems[:_LIST_MAX]:
            report.add(
                "integrity",
                self._db.file,
                message,
                "reindexed" if fixed else "",
            )
        if not fixed and repair:
            report.add(
                "integrity",
                self._db.file,
                "still damaged after REINDEX: the damaged table cannot be repaired in place"
                " (restore it, or move the store away and let it be rebuilt)",
            )

    def _check_schema(self, report: CheckReport, repair: bool) -> None:
        """Indexes and triggers not as this version makes them (``schema_check``)."""
        try:
            conn = self._db.conn()
            with tolerant_text(conn):
                drift = schema_drift(conn)
        except DB_ERRORS as exc:
            report.add("schema", self._db.file, f"cannot read the schema: {exc}")
            return
        action = ""
        if drift and repair:
            with self._write(report, "make the indexes and triggers again") as conn:
                if conn is not None:
                    remake(conn, drift)
                    action = "made again"
        for kind, name, why in drift:
            report.add("schema", f"{kind} {_shown(name)}", why, action)

    def _integrity(self) -> list[str]:
        try:
            conn = self._db.conn()
            with tolerant_text(conn):
                rows = conn.execute("PRAGMA integrity_check").fetchall()
        except DB_ERRORS as exc:
            return [f"integrity_check failed: {exc}"]
        messages = [_shown(row[0]) for row in rows]
        return [] if messages == ["ok"] else messages

    def _check_commits(self, report: CheckReport, repair: bool) -> None:
        lost = self._damaged_functions()
        after, seen = -math.inf, 0
        while True:
            rows = self._db.all(_ROWS, (after, 256))
            for rowid, h, body, fp, status, cache, fn, result in rows:
                seen += 1
                if fn in lost:
                    lost[fn] += 1
                    if repair:  # its content cannot be recovered: recomputed when called
                        self._quarantine_row(
                            rowid, h, body, f"its function row {fn} is damaged: unreadable"
                        )
                    continue
                try:
                    reason = _damage(self._verified(h, body, fn, result), fp, status, cache)
                except ValueError as exc:
                    reason = f"the stored commit is damaged: {exc}"
                if reason is None:
                    continue
                action = ""
                if repair:
                    self._quarantine_row(rowid, h, body, reason)
                    action = "quarantined"
                report.add("damaged_commit", _shown(h), _shown(reason), action)
            if len(rows) < 256:
                break
            after = rows[-1][0]
        report.counts["commits"] = seen
        for fn, users in lost.items():
            action = ""
            if repair:
                with self._write(report, f"drop damaged function row {fn}") as conn:
                    if conn is not None:
                        conn.execute(_DROP_FUNC, (fn,))
                        action = "removed"
                self._books.clear()
            detail = (
                f"it does not hash to its digest: the {users} commit(s) stored against it"
                " cannot be read" + (" (quarantined; recomputed when called)" if repair else "")
            )
            report.add("damaged_function_row", f"function row {fn}", detail, action)

    def _damaged_functions(self) -> dict[int, int]:
        """The ``funcs`` rows (schema v6) that do not hash to their digest, each with a
        count of the commits found stored against it (filled by ``_check_commits``)."""
        lost: dict[int, int] = {}
        for fn, body, digest in self._db.all(_FUNCS, ()):
            if not isinstance(body, str) or func_digest(body) != digest:
                lost[fn] = 0
        return lost

    def _check_objects(self, report: CheckReport, repair: bool) -> None:
        """The blobs of an object store (``blobs=``) that no row indexes."""
        n = 0
        try:
            for h, size in self._blobs.iter_blobs():
                n += 1
                row = self._db.one(sql.BLOB_INFO, (h,))
                if row is not None and row[1]:
                    continue
                where = f"{self._blobs!r}: {h}"
                users = self._db.all(_USERS, (h,)) if row is None else []
                if users:
                    self._adopt(report, repair, h, where, size, len(users))
                else:
                    self._reclaim(report, repair, h, where, size, row is not None)
        except StoreError as exc:
            report.add("unreachable", repr(self._blobs), f"cannot list its blobs: {exc}")
        report.counts["objects"] = n

    def _check_files(self, report: CheckReport, repair: bool) -> None:
        if self._files is None:
            self._check_objects(report, repair)
            return
        files = 0
        stale_tmp = time.time() - self.orphan_grace
        for shard, name, st in _walk(self._files.root):
            files += 1
            path = os.path.join(self._files.root, shard, name)
            if name.startswith(".tmp-"):
                if st.st_mtime < stale_tmp:
                    action = ""
                    if repair and _unlink(path):
                        report.reclaimed_bytes += st.st_size
                        action = "reclaimed"
                    report.add("orphan_file", path, "a write that never finished", action)
                continue
            h = shard + name
            if len(shard) != 2 or len(h) != 64 or not set(h) <= _HEX:
                report.add("orphan_file", path, "not a blob file (its name is no blob hash)")
                continue
            row = self._db.one(sql.BLOB_INFO, (h,))
            if row is not None and row[1]:
                continue  # an indexed file (its size is checked with the rows)
            users = self._db.all(_USERS, (h,)) if row is None else []
            if users:
                self._adopt(report, repair, h, path, st.st_size, len(users))
            else:
                self._reclaim(report, repair, h, path, st.st_size, row is not None)
        report.counts["files"] = files

    def _adopt(
        self, report: CheckReport, repair: bool, h: str, path: str, size: int, n: int
    ) -> None:
        detail = f"no row indexes this blob file, which {n} commit(s) use"
        if not repair:
            report.add("orphan_file", path, detail)
            return
        try:
            data = self._blobs.get(h)  # verified (a corrupt copy is removed)
        except BlobError as exc:
            report.add("orphan_file", path, f"{detail}; it does not verify: {exc}", "removed")
            report.reclaimed_bytes += size
            return
        except StoreError as exc:
            report.add("orphan_file", path, f"{detail}; it cannot be read: {exc}")
            return
        with self._write(report, f"adopt {path}") as conn:
            if conn is not None:
                conn.execute(sql.BLOB_UPSERT, (h, len(data), size, None, time.time()))
                report.add("orphan_file", path, detail, "adopted")

    def _reclaim(
        self,
        report: CheckReport,
        repair: bool,
        h: str,
        path: str,
        size: int,
        inline: bool,
    ) -> None:
        detail = (
            "a leftover copy of a blob now stored inline"
            if inline
            else "no row indexes this blob file and no commit uses it"
        )
        if not repair:
            report.add("orphan_file", path, detail)
            return
        with self._write(report, f"reclaim {path}") as conn:
            if conn is None:
                return
            # Under the write lock: a put_blob of these bytes that indexed it meanwhile
            # keeps it; one still to come finds it gone and writes it again.
            row = conn.execute(sql.BLOB_INFO, (h,)).fetchone()
            if row is not None and row[1]:
                return
            if self._remove_copy(h, path):
                report.reclaimed_bytes += size
                report.add("orphan_file", path, detail, "reclaimed")

    def _remove_copy(self, h: str, path: str) -> bool:
        if self._files is not None:
            return _unlink(path)
        try:
            self._blobs.delete(h)
        except StoreError:
            return False
        return True

    def _check_blobs(self, report: CheckReport, repair: bool) -> None:
        # what is lost: its hash -> (why, the blob row's rowid or None, its users' rowids)
        lost: dict[str, tuple[str, Any, list[Any]]] = {}
        n = 0
        for rowid, h, stored_size in self._db.all(_FILE_BLOBS, ()):
            n += 1
            where = self._where(str(h))
            try:
                have = self._blobs.stored_size(str(h))
            except StoreError as exc:
                report.add("unreachable", repr(self._blobs), f"cannot check blobs: {exc}")
                break
            if have != stored_size:
                lost[h] = (f"its {where} is missing or not {stored_size} bytes", rowid, [])
        for rowid, h, inline in self._db.all(_INLINE_BLOBS, ()):
            n += 1
            try:
                if not isinstance(inline, bytes):
                    raise ValueError(f"stored as {type(inline).__name__}")
                verify_blob(decode_blob(inline, h), h)
            except (BlobError, ValueError, TypeError) as exc:
                lost[h] = (f"its inline bytes do not verify ({exc})", rowid, [])
        report.counts["blobs"] = n
        for _, rowid, users in lost.values():
            users.extend(row[0] for row in self._db.all(_USERS_OF_ROW, (rowid,)))
        for user, h, data in self._db.all(HELD_DATA, ()):  # tiny results in commit rows
            try:
                if not isinstance(data, bytes) or not isinstance(h, str):
                    raise ValueError(f"stored as {type(data).__name__}")
                verify_blob(decode_blob(data, h), h)
            except (BlobError, ValueError, TypeError) as exc:
                why = f"its bytes in a commit row do not verify ({exc})"
                lost.setdefault(h, (why, None, []))[2].append(user)
        for user, result in self._db.all(_UNKNOWN_RESULTS, ()):
            lost.setdefault(result, ("no blob row has it", None, []))[2].append(user)
        for h, (why, rowid, users) in list(lost.items())[:_LIST_MAX]:
            shown = _shown(h)
            detail = f"result blob {shown[:16]}... is gone: {why}; {len(users)} commit(s) use it"
            action = ""
            if repair:
                with self._write(report, f"remove the commits of lost blob {shown[:16]}") as conn:
                    if conn is not None:
                        for user in users:
                            conn.execute(sql.DELETE_ROW, (user,))  # triggers: counts, tags
                        if rowid is not None:
                            conn.execute(_DELETE_BLOB_ROW, (rowid,))
                        action = f"removed {len(users)} commit(s): their calls will recompute"
            report.add("missing_blob", shown, detail, action)

    def _where(self, h: str) -> str:
        if self._files is not None:
            return f"file {self._files.path(h)}"
        return f"object {h[:16]}… in {self._blobs!r}"

    def _check_counts(self, report: CheckReport, repair: bool) -> None:
        wrong = [row for row in self._db.all(_REFCOUNTS, ()) if row[2] != row[3]]
        for rowid, h, stored, actual in wrong[:_LIST_MAX]:
            action = ""
            if repair:
                with self._write(report, f"recount blob {_shown(h)[:16]}") as conn:
                    if conn is not None:
                        conn.execute(_SET_REFCOUNT, (rowid, actual))
                        action = "recounted"
            report.add(
                "refcount", _shown(h), f"reference count {stored!r}, {actual} commit(s)", action
            )
        counted = self._db.one(COUNTED, ())
        stored_row = self._db.one(f"SELECT {', '.join(_COUNTERS)} FROM counters WHERE id = 0", ())
        if stored_row is None or tuple(stored_row) != tuple(counted):
            action = ""
            if repair:
                with self._write(report, "rewrite the counters") as conn:
                    if conn is not None:
                        conn.execute(_SET_COUNTERS, tuple(counted))
                        action = "recounted"
            found: Any = "missing"
            if stored_row is not None:
                found = dict(zip(_COUNTERS, stored_row, strict=True))
            report.add(
                "counters",
                self._db.file,
                f"the stats counters are {found}, the store holds"
                f" {dict(zip(_COUNTERS, counted, strict=True))}",
                action,
            )

    def _check_leases(self, report: CheckReport, repair: bool) -> None:
        now = datetime.now(UTC)
        rows = self._db.all(_ALL_CLAIMS, (-1e300,))
        report.counts["leases"] = len(rows)
        for row in rows:
            try:
                lease = _lease_of(row[1:])
                dead = _lease.lease_is_dead(lease, now, self._host)
            except (TypeError, ValueError, OverflowError, OSError):
                lease, dead = None, True
            if not dead:
                continue
            detail = (
                "an unreadable lease row"
                if lease is None
                else f"lease of {lease.func_name} held by pid {lease.pid} on {lease.host}:"
                " its holder is gone or it expired"
            )
            action = ""
            if repair:
                with self._write(report, "drop a stale lease") as conn:
                    if conn is not None:
                        conn.execute(sql.RELEASE_CLAIM, (row[0], row[1]))
                        action = "removed"
            report.add("stale_lease", _shown(row[0]), _shown(detail), action)


def _damage(commit: Commit, fp: Any, status: Any, cache: Any) -> str | None:
    """Why the row of a verified commit is damaged (its columns), or ``None``."""
    td = commit.task_def
    if fp != fp_key(td.fingerprint) or status != commit.status.value or cache != int(td.cache):
        return "its indexed columns contradict its verified content"
    return None


def _shown(value: Any) -> str:
    """A value read from a damaged row as printable text (bad bytes as escapes)."""
    text = value if isinstance(value, str) else repr(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _unlink(path: str) -> bool:
    """Remove ``path``; whether it was removed."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


class _Repair:
    """``with`` a write transaction for one repair: yields the connection, or ``None``
    (and reports why) when the transaction cannot start or fails."""

    def __init__(self, db: Database, report: CheckReport, what: str) -> None:
        self._db = db
        self._report = report
        self._what = what
        self._cm: Any = None

    def __enter__(self) -> Any:
        self._cm = self._db.transact()
        try:
            return self._cm.__enter__()
        except StoreError as exc:
            self._cm = None
            self._report.add("repair_failed", self._db.file, f"cannot {self._what}: {exc}")
            return None

    def __exit__(self, *exc_info: Any) -> bool:
        if self._cm is None:
            return False
        try:
            self._cm.__exit__(*exc_info)
        except (StoreError, UnicodeEncodeError) as exc:
            self._report.add("repair_failed", self._db.file, f"cannot {self._what}: {exc}")
            return True
        return False
