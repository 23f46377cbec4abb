"""The ``meta.db`` schema of :class:`~cashet.stores.sqlite.store.SQLiteStore`, its migrations and
the constant SQL of its queries (constant strings: each is prepared once per connection).

``PRAGMA user_version`` holds the schema version. ``MIGRATIONS[i]`` is the list of
statements that takes a database from version ``i`` to ``i + 1``; version 0 is an empty file.
A future schema change appends one entry and never edits an old one.

Derived state lives in the database itself, kept by triggers so that no code path can forget
it: the ``counters`` row (what ``stats()`` reports, O(1)), each blob's ``refcount`` (the
number of commits whose result it is), the removal of a deleted commit's tags, the totals
per function; the inputs index (v7) is written with each commit (lean bodies are deflated).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from cashet.models import TaskStatus
from cashet.protocols import TagQuery
from cashet.stores.sqlite.schema_v7 import V7
from cashet.stores.sqlite.schema_v8 import v8

_V1: tuple[str, ...] = (
    # A commit's columns exist for the indexes; ``body`` (commit_to_json) is what is
    # returned. ``last_accessed`` is the one mutable field, so the column, not the body,
    # is the truth for it. Times are UTC epoch seconds.
    """
    CREATE TABLE commits (
        hash          TEXT PRIMARY KEY,
        fingerprint   TEXT NOT NULL,
        func_name     TEXT NOT NULL,
        status        TEXT NOT NULL,
        created_at    REAL NOT NULL,
        expires_at    REAL,
        last_accessed REAL,
        cache         INTEGER NOT NULL,
        result_hash   TEXT,
        result_size   INTEGER NOT NULL,
        parent_hash   TEXT,
        body          TEXT NOT NULL
    )
    """,
    "CREATE INDEX commits_fingerprint ON commits (fingerprint, created_at)",
    "CREATE INDEX commits_func ON commits (func_name, created_at)",
    "CREATE INDEX commits_status ON commits (status, created_at)",
    "CREATE INDEX commits_created ON commits (created_at)",
    # Age and LRU eviction order by last use, which is the creation time until first touch.
    "CREATE INDEX commits_used ON commits (coalesce(last_accessed, created_at))",
    "CREATE INDEX commits_expires ON commits (expires_at) WHERE expires_at IS NOT NULL",
    # Lets a re-created blob row count its references (see the blobs INSERT in sqlite.py).
    "CREATE INDEX commits_result ON commits (result_hash) WHERE result_hash IS NOT NULL",
    """
    CREATE TABLE commit_tags (
        commit_hash TEXT NOT NULL,
        key         TEXT NOT NULL,
        value       TEXT NOT NULL,
        PRIMARY KEY (commit_hash, key)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX commit_tags_kv ON commit_tags (key, value)",
    # ``inline`` holds the encoded bytes of a small blob; NULL means objects/ab/cdef….
    # Sizes: ``size`` is the serialized length, ``stored_size`` the encoded one.
    """
    CREATE TABLE blobs (
        hash        TEXT PRIMARY KEY,
        size        INTEGER NOT NULL,
        stored_size INTEGER NOT NULL,
        inline      BLOB,
        refcount    INTEGER NOT NULL,
        created_at  REAL NOT NULL
    )
    """,
    # Garbage collection reads only unreferenced blobs, never all of them.
    "CREATE INDEX blobs_orphans ON blobs (created_at) WHERE refcount = 0",
    """
    CREATE TABLE claims (
        fingerprint TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,
        host        TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        expires_at  REAL NOT NULL,
        func_name   TEXT NOT NULL,
        claimed_at  REAL NOT NULL
    )
    """,
    "CREATE INDEX claims_expires ON claims (expires_at)",
    """
    CREATE TABLE counters (
        id                INTEGER PRIMARY KEY CHECK (id = 0),
        total_commits     INTEGER NOT NULL DEFAULT 0,
        completed_commits INTEGER NOT NULL DEFAULT 0,
        blob_objects      INTEGER NOT NULL DEFAULT 0,
        blob_bytes        INTEGER NOT NULL DEFAULT 0,
        inline_objects    INTEGER NOT NULL DEFAULT 0,
        inline_bytes      INTEGER NOT NULL DEFAULT 0
    )
    """,
    "INSERT INTO counters (id) VALUES (0)",
    # Triggers fire only for rows really inserted or deleted (INSERT OR IGNORE of a known
    # commit changes nothing), which is exactly when counts and refcounts must move.
    """
    CREATE TRIGGER commits_after_insert AFTER INSERT ON commits BEGIN
        UPDATE counters SET
            total_commits = total_commits + 1,
            completed_commits = completed_commits + (NEW.status = 'completed')
        WHERE id = 0;
        UPDATE blobs SET refcount = refcount + 1 WHERE hash = NEW.result_hash;
    END
    """,
    """
    CREATE TRIGGER commits_after_delete AFTER DELETE ON commits BEGIN
        UPDATE counters SET
            total_commits = total_commits - 1,
            completed_commits = completed_commits - (OLD.status = 'completed')
        WHERE id = 0;
        UPDATE blobs SET refcount = refcount - 1 WHERE hash = OLD.result_hash;
        DELETE FROM commit_tags WHERE commit_hash = OLD.hash;
    END
    """,
    """
    CREATE TRIGGER blobs_after_insert AFTER INSERT ON blobs BEGIN
        UPDATE counters SET
            blob_objects = blob_objects + (NEW.inline IS NULL),
            blob_bytes = blob_bytes + (NEW.inline IS NULL) * NEW.stored_size,
            inline_objects = inline_objects + (NEW.inline IS NOT NULL),
            inline_bytes = inline_bytes + (NEW.inline IS NOT NULL) * NEW.stored_size
        WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER blobs_after_delete AFTER DELETE ON blobs BEGIN
        UPDATE counters SET
            blob_objects = blob_objects - (OLD.inline IS NULL),
            blob_bytes = blob_bytes - (OLD.inline IS NULL) * OLD.stored_size,
            inline_objects = inline_objects - (OLD.inline IS NOT NULL),
            inline_bytes = inline_bytes - (OLD.inline IS NOT NULL) * OLD.stored_size
        WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER blobs_after_update AFTER UPDATE OF stored_size, inline ON blobs BEGIN
        UPDATE counters SET
            blob_objects = blob_objects - (OLD.inline IS NULL) + (NEW.inline IS NULL),
            blob_bytes = blob_bytes - (OLD.inline IS NULL) * OLD.stored_size
                + (NEW.inline IS NULL) * NEW.stored_size,
            inline_objects = inline_objects - (OLD.inline IS NOT NULL)
                + (NEW.inline IS NOT NULL),
            inline_bytes = inline_bytes - (OLD.inline IS NOT NULL) * OLD.stored_size
                + (NEW.inline IS NOT NULL) * NEW.stored_size
        WHERE id = 0;
    END
    """,
)

# Version 2: filters that stay O(rows returned) at any store size (bench/suites/maintenance.py).
# A tag row carries its commit's creation time, so a tag filter walks that tag's commits
# newest first and stops at the limit, instead of sorting every commit with a common tag.
_V2: tuple[str, ...] = (
    "ALTER TABLE commit_tags ADD COLUMN created_at REAL NOT NULL DEFAULT 0",
    "UPDATE commit_tags SET created_at ="
    " (SELECT created_at FROM commits WHERE hash = commit_tags.commit_hash)",
    "DROP INDEX commit_tags_kv",
    "CREATE INDEX commit_tags_kv ON commit_tags (key, value, created_at)",
    "CREATE INDEX commit_tags_key ON commit_tags (key, created_at)",
    "CREATE INDEX commits_func_status ON commits (func_name, status, created_at)",
)

# Version 3: a leaner lease table. Every miss inserts and deletes one lease row, so each
# page it touches is written to the WAL twice per miss: WITHOUT ROWID keeps the row in its
# primary-key b-tree alone, and the expiry index goes (the table only ever holds the leases
# of tasks running right now, so the stale-lease sweep in evict may scan it).
_V3: tuple[str, ...] = (
    """
    CREATE TABLE claims_v3 (
        fingerprint TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,
        host        TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        expires_at  REAL NOT NULL,
        func_name   TEXT NOT NULL,
        claimed_at  REAL NOT NULL
    ) WITHOUT ROWID
    """,
    "INSERT INTO claims_v3 SELECT fingerprint, owner, host, pid, expires_at, func_name,"
    " claimed_at FROM claims",
    "DROP TABLE claims",
    "ALTER TABLE claims_v3 RENAME TO claims",
)

# Version 4: quarantine. Metadata is verified like blobs: a commit row whose body does not
# decode, does not hash to the row's hash, or contradicts the row's indexed columns is moved
# here (``kind`` 'commit', ``row`` its columns as found, as JSON), and a lookup that an index
# led to another call's commit is noted (``kind`` 'index', ``row`` NULL: the commit stays).
# Nothing reads this table on a normal path; ``quarantined()`` lists it for a doctor.
_V4: tuple[str, ...] = (
    """
    CREATE TABLE quarantine (
        hash     TEXT NOT NULL,
        kind     TEXT NOT NULL,
        reason   TEXT NOT NULL,
        found_at REAL NOT NULL,
        row      TEXT,
        PRIMARY KEY (hash, kind)
    )
    """,
)

# Version 5: hits counted (issue 15). Hits are kept in memory and written in batches
# (stores/hits.py), one row per commit ever hit: how many, the last one (epoch seconds) and
# the compute seconds they saved. A small table of its own, so a batch rewrites these rows
# and the commits' ``last_accessed``, never a commit body; a trigger drops a deleted
# commit's row (every removal path, the quarantine's included).
_V5: tuple[str, ...] = (
    """
    CREATE TABLE hits (
        hash     TEXT PRIMARY KEY,
        count    INTEGER NOT NULL,
        last_hit REAL NOT NULL,
        saved    REAL NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TRIGGER commits_hits_after_delete AFTER DELETE ON commits BEGIN
        DELETE FROM hits WHERE hash = OLD.hash;
    END
    """,
    # The totals ``stats()`` reports stay O(1): kept in the counters row by triggers.
    "ALTER TABLE counters ADD COLUMN hits INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE counters ADD COLUMN hits_saved REAL NOT NULL DEFAULT 0",
    """
    CREATE TRIGGER hits_after_insert AFTER INSERT ON hits BEGIN
        UPDATE counters SET hits = hits + NEW.count, hits_saved = hits_saved + NEW.saved
        WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER hits_after_update AFTER UPDATE ON hits BEGIN
        UPDATE counters SET hits = hits + NEW.count - OLD.count,
            hits_saved = hits_saved + NEW.saved - OLD.saved
        WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER hits_after_delete AFTER DELETE ON hits BEGIN
        UPDATE counters SET hits = hits - OLD.count, hits_saved = hits_saved - OLD.saved
        WHERE id = 0;
    END
    """,
)

# Version 6: lean commits (issue 18; see stores/sqlite/lean.py). A function's source and its
# part of the manifest are kept once, in ``funcs`` (per identity hash: the content text of
# its first commit here, and that text's digest); a commit row keeps its content deflated
# against it (``fn`` its id; NULL: ``body`` is the whole JSON, as every row before v6 and
# every caller-named commit). The fingerprint column becomes ``fp``, a 64-bit key
# (``lean.fp_key``; ``cashet_fp`` in SQL, for the migration): the lookup checks the verified
# content, so a shared key is no wrong answer. A function row is never changed; ``cashet
# doctor --repair`` removes one that does not hash to its digest, with its commits
# (AUTOINCREMENT: an id is never reused). Indexes that did not earn their keep go: the
# status indexes only cover the statuses that are not 'completed' (a filter on 'completed'
# finds a match at nearly every row of the others), and the result index keys on 16 of the
# result hash's 64 digits. Versions 7 (the web UI) and 8 (blobs WITHOUT ROWID): schema_v7/8.py.
#: The result index's key (v6), and a commit whose result is the blob ``?1``, by that index.
RESULT_KEY = "substr(result_hash, 1, 16)"
# (``+``: a plain ``result_hash = ?1`` lets SQLite propagate the constant into the key's
# expression, which then no longer matches the index.)
RESULT_IS = f"{RESULT_KEY} = substr(?1, 1, 16) AND +result_hash = ?1"
_COMMIT_TRIGGERS = ("commits_after_insert", "commits_after_delete", "commits_hits_after_delete")


def _trigger(name: str) -> str:
    """The statement of an earlier version that made trigger ``name``."""
    (found,) = (s for s in (*_V1, *_V5) if f"CREATE TRIGGER {name} " in s)
    return found


_COMMITS_V6 = """
    CREATE TABLE commits_v6 (
        hash          TEXT PRIMARY KEY,
        fp            INTEGER NOT NULL,
        func_name     TEXT NOT NULL,
        status        TEXT NOT NULL,
        created_at    REAL NOT NULL,
        expires_at    REAL,
        last_accessed REAL,
        cache         INTEGER NOT NULL,
        result_hash   TEXT,
        result_size   INTEGER NOT NULL,
        parent_hash   TEXT,
        fn            INTEGER,
        body          NOT NULL
    )
"""
_V6: tuple[str, ...] = (
    """
    CREATE TABLE funcs (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        func_hash TEXT NOT NULL UNIQUE,
        digest    TEXT NOT NULL,
        body      TEXT NOT NULL
    )
    """,
    _COMMITS_V6,
    # The triggers go first and are made again: dropping the table must not fire them.
    *(f"DROP TRIGGER {name}" for name in _COMMIT_TRIGGERS),
    "INSERT INTO commits_v6 (rowid, hash, fp, func_name, status, created_at, expires_at,"
    " last_accessed, cache, result_hash, result_size, parent_hash, fn, body)"
    " SELECT rowid, hash, cashet_fp(fingerprint), func_name, status, created_at, expires_at,"
    " last_accessed, cache, result_hash, result_size, parent_hash, NULL, body FROM commits",
    "DROP TABLE commits",
    "ALTER TABLE commits_v6 RENAME TO commits",
    "CREATE INDEX commits_fp ON commits (fp, created_at)",
    "CREATE INDEX commits_func ON commits (func_name, created_at)",
    "CREATE INDEX commits_func_status ON commits (func_name, status, created_at)"
    " WHERE status <> 'completed'",
    "CREATE INDEX commits_status ON commits (status, created_at) WHERE status <> 'completed'",
    "CREATE INDEX commits_created ON commits (created_at)",
    "CREATE INDEX commits_used ON commits (coalesce(last_accessed, created_at))",
    "CREATE INDEX commits_expires ON commits (expires_at) WHERE expires_at IS NOT NULL",
    # The result index keys on 16 of the 64 digits (a query names both: the prefix finds,
    # the whole hash decides): a third of the bytes for the same reads.
    f"CREATE INDEX commits_result ON commits ({RESULT_KEY}) WHERE result_hash IS NOT NULL",
    *(_trigger(name) for name in _COMMIT_TRIGGERS),
)

#: ``MIGRATIONS[i]`` upgrades a database from ``user_version`` i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5, _V6, V7, v8(_trigger))
SCHEMA_VERSION = len(MIGRATIONS)


# Queries

# Every commit read returns (body, last_accessed, hash, rowid, fn, result_hash): the body
# (inflated with function row ``fn`` and the result's hash, see lean.py) is verified against
# the hash, and a damaged row is quarantined by its rowid (its hash may be the damage).
SELECT_COMMIT = "SELECT body, last_accessed, hash, rowid, fn, result_hash FROM commits"
GET_COMMIT = f"{SELECT_COMMIT} WHERE hash = ?"
# The cache lookup: one range of the (fp, created_at) index, newest first. The
# unary + keeps the planner off the (status, created_at) index, which it would otherwise
# pick to avoid a sort and then walk every completed commit.
FIND = (
    f"{SELECT_COMMIT} WHERE fp = ? AND +status = 'completed' AND +cache = 1"
    " AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC, rowid DESC LIMIT 1"
)
# The hit path: the cache lookup joined with the result's blob row, so a commit whose blob
# was found missing or corrupt (and forgotten, see SQLiteStore._forget_blob) is a miss, and
# a small result's bytes come back in the same query. A completed commit without a result
# (written through the published store protocol) is found, as by the published stores; the
# call flow does not take it for a hit.
FIND_HIT = (
    "SELECT c.hash, c.body, c.last_accessed, coalesce(c.result_data, b.inline), c.rowid,"
    " c.fn, c.result_hash FROM commits AS c"  # (result_data: a tiny result, v8)
    " LEFT JOIN blobs AS b ON c.result_data IS NULL AND b.hash = c.result_hash"
    " WHERE c.fp = ? AND +c.status = 'completed' AND +c.cache = 1"
    " AND (c.expires_at IS NULL OR c.expires_at > ?)"
    " AND (b.hash IS NOT NULL OR c.result_data IS NOT NULL OR c.result_hash IS NULL)"
    " ORDER BY c.created_at DESC, c.rowid DESC"
)
# The fingerprint key is 64 bits of a hash: two fingerprints may share it (about once in
# 2**64), so the first row is the answer only when its content says so; else the rest.
FIND_HIT_ONE = f"{FIND_HIT} LIMIT 1"
LATEST = f"{SELECT_COMMIT} WHERE fp = ? ORDER BY created_at DESC, rowid DESC"
HISTORY = (
    f"{SELECT_COMMIT} WHERE fp = (SELECT fp FROM commits WHERE hash = ?)"
    " AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at, rowid"
)
ITER = (
    "SELECT body, last_accessed, hash, rowid, fn, result_hash, created_at FROM commits"
    " WHERE (created_at, rowid) > (?, ?) ORDER BY created_at, rowid LIMIT ?"
)
PREFIX = "SELECT hash FROM commits WHERE hash >= ? AND hash < ? ORDER BY hash LIMIT ?"
INSERT_COMMIT = (
    "INSERT OR IGNORE INTO commits (hash, fp, func_name, status, created_at,"
    " expires_at, last_accessed, cache, result_hash, result_size, parent_hash, fn, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
FUNC_OF = "SELECT id, digest, body FROM funcs WHERE func_hash = ?"
FUNC_BY_ID = "SELECT func_hash, digest, body FROM funcs WHERE id = ?"
NEW_FUNC = "INSERT OR IGNORE INTO funcs (func_hash, digest, body) VALUES (?, ?, ?)"
INSERT_TAG = (
    "INSERT OR IGNORE INTO commit_tags (commit_hash, key, value, created_at) VALUES (?, ?, ?, ?)"
)
FIND_BY_RESULT = f"{SELECT_COMMIT} WHERE {RESULT_IS} ORDER BY created_at DESC, rowid DESC LIMIT ?2"
TOUCH = "UPDATE commits SET last_accessed = ? WHERE hash = ?"
# One hit batch: (count, last hit, saved, hash) for ADD_HITS, (last hit, hash, last hit) for
# HIT_ACCESS; a hash no longer in commits adds nothing.
ADD_HITS = (
    "INSERT INTO hits (hash, count, last_hit, saved, func_name)"
    " SELECT hash, ?, ?, ?, func_name FROM commits"
    " WHERE hash = ? ON CONFLICT (hash) DO UPDATE SET count = count + excluded.count,"
    " last_hit = max(last_hit, excluded.last_hit), saved = saved + excluded.saved"
)
HIT_ACCESS = (
    "UPDATE commits SET last_accessed = ? WHERE hash = ?"
    " AND (last_accessed IS NULL OR last_accessed < ?)"
)
HIT_TOTALS = "SELECT hits, hits_saved FROM counters WHERE id = 0"
RESULT_OF = "SELECT result_hash FROM commits WHERE hash = ?"
DELETE_COMMIT = "DELETE FROM commits WHERE hash = ?"
LEAST_USED = (
    "SELECT hash FROM commits WHERE coalesce(last_accessed, created_at) < ?"
    " ORDER BY coalesce(last_accessed, created_at) LIMIT ?"
)
EXPIRED = "SELECT hash FROM commits WHERE expires_at <= ? LIMIT ?"
BLOB_READ = "SELECT inline FROM blobs WHERE hash = ?"
BLOB_STATE = "SELECT stored_size, inline, refcount, created_at FROM blobs WHERE hash = ?"
BLOB_INFO = "SELECT stored_size, inline IS NULL, refcount FROM blobs WHERE hash = ?"
# A new row counts the commits already pointing at it, so a blob re-created after it was
# lost (see put_blob) gets its true reference count back.
BLOB_UPSERT = (
    "INSERT INTO blobs (hash, size, stored_size, inline, refcount, created_at)"
    f" VALUES (?1, ?2, ?3, ?4, (SELECT count(*) FROM commits WHERE {RESULT_IS}), ?5)"
    " ON CONFLICT (hash) DO UPDATE SET stored_size = excluded.stored_size,"
    " inline = excluded.inline, created_at = excluded.created_at"
)
DELETE_BLOB = "DELETE FROM blobs WHERE hash = ?"
ORPHANS = "SELECT hash, inline IS NULL FROM blobs WHERE refcount = 0 AND created_at < ? LIMIT ?"
STATS = (
    "SELECT total_commits, completed_commits, blob_objects, blob_bytes, inline_objects,"
    " inline_bytes FROM counters WHERE id = 0"
)
STORED_BYTES = "SELECT blob_bytes + inline_bytes FROM counters WHERE id = 0"
ORPHAN_BYTES = "SELECT coalesce(sum(stored_size), 0) FROM blobs WHERE refcount = 0"
LIVE_CLAIMS = (
    "SELECT fingerprint, owner, host, pid, expires_at, func_name, claimed_at FROM claims"
    " WHERE expires_at > ? ORDER BY claimed_at DESC"
)
GET_CLAIM = (
    "SELECT owner, host, pid, expires_at, func_name, claimed_at FROM claims WHERE fingerprint = ?"
)
PUT_CLAIM = (
    "INSERT INTO claims (fingerprint, owner, host, pid, expires_at, func_name, claimed_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET"
    " owner = excluded.owner, host = excluded.host, pid = excluded.pid,"
    " expires_at = excluded.expires_at, func_name = excluded.func_name,"
    " claimed_at = excluded.claimed_at"
)
RENEW_CLAIM = "UPDATE claims SET expires_at = ? WHERE fingerprint = ? AND owner = ?"
NEW_CLAIM = (
    "INSERT OR IGNORE INTO claims (fingerprint, owner, host, pid, expires_at, func_name,"
    " claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
RELEASE_CLAIM = "DELETE FROM claims WHERE fingerprint = ? AND owner = ?"
STALE_CLAIMS = "DELETE FROM claims WHERE expires_at < ?"
COMMIT_COLUMNS = (
    "hash",
    "fp",
    "func_name",
    "status",
    "created_at",
    "expires_at",
    "last_accessed",
    "cache",
    "result_hash",
    "result_size",
    "parent_hash",
    "fn",
    "body",
)
ROW_BY_ID = f"SELECT {', '.join(COMMIT_COLUMNS)} FROM commits WHERE rowid = ?"
DELETE_ROW = "DELETE FROM commits WHERE rowid = ?"
QUARANTINE = (
    "INSERT OR REPLACE INTO quarantine (hash, kind, reason, found_at, row) VALUES (?, ?, ?, ?, ?)"
)
LIST_QUARANTINE = "SELECT hash, kind, reason, found_at, row FROM quarantine ORDER BY found_at"


#: Filter counts stop here: enough to tell a selective filter from a common one, cheap.
SELECTIVITY_CAP = 512
# Counted by fetching (``len(rows)``): one index range read, never a scan of a subquery.
COUNT_TAG = "SELECT 1 FROM commit_tags WHERE key = ? AND value = ? LIMIT ?"
COUNT_KEY = "SELECT 1 FROM commit_tags WHERE key = ? LIMIT ?"


def count_commits(func_name: str | None, status: str | None) -> tuple[str, list[Any]]:
    """Up to ``LIMIT ?`` rows of the commits with this function and/or status (indexed)."""
    clauses, params = _commit_clauses(func_name, status)
    return f"SELECT 1 FROM commits AS c WHERE {' AND '.join(clauses)} LIMIT ?", params


def _commit_clauses(func_name: str | None, status: str | None) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if func_name is not None:
        clauses.append("c.func_name = ?")
        params.append(func_name)
    if status is not None:
        value = TaskStatus.parse(status).value
        clauses.append("c.status = ?")
        params.append(value)
        if value != TaskStatus.COMPLETED.value:  # the status indexes hold only these (v6)
            clauses.append("c.status <> 'completed'")
    return clauses, params


def select_commits(
    columns: str,
    func_name: str | None,
    status: TaskStatus | str | None,
    tags: TagQuery | None,
    driver: int | None = None,
    limit: int | None = None,
    before: tuple[float, int] | None = None,
) -> tuple[str, list[Any]]:
    """Build a commit query (``c`` is the commits table), newest first.

    Args:
        columns: what to select, e.g. ``"c.body, c.last_accessed"``.
        func_name, status, tags: the filters (ANDed; a ``None`` tag value = key present).
        driver: the index in ``tags`` of the tag whose (time-ordered) index drives the
            query, so it reads that tag's commits newest first and stops at ``limit``;
            ``None`` lets the commits indexes drive (function, status, creation time).
            Every other tag is a primary-key probe per candidate row, never a scan.
        limit: at most this many rows.
        before: only rows older than this ``(created_at, rowid)`` (a page's cursor).
    """
    items = list((tags or {}).items())
    clauses: list[str] = []
    params: list[Any] = []
    if driver is None:
        source = "commits AS c"
        order = "c.created_at DESC, c.rowid DESC"
    else:
        key, value = items[driver]
        # CROSS JOIN fixes the join order: the tag index first, then commits by hash.
        source = "commit_tags AS t CROSS JOIN commits AS c ON c.hash = t.commit_hash"
        order = "t.created_at DESC, c.rowid DESC"
        clauses.append("t.key = ?" if value is None else "t.key = ? AND t.value = ?")
        params += [key] if value is None else [key, value]
    if before is not None:
        # The first test is a range of the driving index; the second breaks ties.
        at = "c.created_at" if driver is None else "t.created_at"
        clauses.append(f"{at} <= ? AND ({at} < ? OR c.rowid < ?)")
        params += [before[0], before[0], before[1]]
    more, more_params = _commit_clauses(func_name, None if status is None else str(status))
    clauses += more
    params += more_params
    for i, (key, value) in enumerate(items):
        if i != driver:
            value_test = "" if value is None else " AND value = ?"
            clauses.append(
                "EXISTS (SELECT 1 FROM commit_tags"
                f" WHERE commit_hash = c.hash AND key = ?{value_test})"
            )
            params += [key] if value is None else [key, value]
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    query = f"SELECT {columns} FROM {source}{where} ORDER BY {order}"
    if limit is not None:
        query += " LIMIT ?"
        params.append(limit)
    return query, params


def choose_driver(
    conn: sqlite3.Connection,
    func_name: str | None,
    status: TaskStatus | str | None,
    tags: TagQuery | None,
) -> int | None:
    """Pick the most selective filter to drive a commit query (see ``select_commits``).

    Each filter's matches are counted up to ``SELECTIVITY_CAP`` on its index: a query
    driven by a filter under the cap reads at most that many rows. Returns the index of
    the driving tag, or ``None`` when the commits indexes (function, status) should drive.
    """
    items = list((tags or {}).items())
    if not items:
        return None
    if len(items) == 1 and func_name is None and status is None:
        return 0
    cap = SELECTIVITY_CAP
    best: int | None = None
    best_count = cap + 1
    if func_name is not None or status is not None:
        query, params = count_commits(func_name, None if status is None else str(status))
        best_count = len(conn.execute(query, [*params, cap]).fetchall())
    for i, (key, value) in enumerate(items):
        if best_count == 0:
            break
        if value is None:
            count = len(conn.execute(COUNT_KEY, (key, cap)).fetchall())
        else:
            count = len(conn.execute(COUNT_TAG, (key, value, cap)).fetchall())
        if count < best_count:
            best, best_count = i, count
    return best


def to_epoch(dt: datetime) -> float:
    """The column form of a time: UTC epoch seconds (a naive datetime is taken to be UTC)."""
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()


def from_epoch(ts: float) -> datetime:
    """Invert :func:`to_epoch` (an aware UTC datetime)."""
    return datetime.fromtimestamp(ts, UTC)
