"""The PostgreSQL schema of :class:`~cashet.stores.postgres.store.PostgresStore`, its
migrations and the SQL of its queries.

Every table lives in one PostgreSQL schema of the store's own (``cashet`` unless told:
several caches may share a database). Its ``meta`` table holds the schema version under
``schema_version``; ``MIGRATIONS[i]`` is the list of statements that takes a schema from
version ``i`` to ``i + 1`` (version 0: nothing there yet). A future change appends one entry
and never edits an old one. Migrations run under a transaction-scoped advisory lock, so two
processes opening a new store at once create it once.

The SQL is written with ``{s}`` for the quoted schema name; :class:`Sql` fills it in once
per store. Times are UTC epoch seconds (``double precision``), as in the SQLite store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cashet.models import Commit

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Sql", "commit_row", "from_epoch", "to_epoch"]

_V1: tuple[str, ...] = (
    "CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL)",
    # A commit's columns exist for the indexes; ``body`` (stored_json) is what is returned
    # once verified. ``last_accessed`` is the one mutable field: the column is its truth.
    # The hit path reads this one row: ``inline`` is a copy of a small result's encoded
    # bytes (verified when read; the blob index stays the truth) and ``result_lost`` says
    # the result blob is not stored (kept by every write that adds or drops a blob).
    """
    CREATE TABLE {s}.commits (
        hash          text PRIMARY KEY,
        fingerprint   text NOT NULL,
        func_name     text NOT NULL,
        status        text NOT NULL,
        cacheable     boolean NOT NULL,
        created_at    double precision NOT NULL,
        expires_at    double precision,
        last_accessed double precision,
        result_hash   text,
        body          text NOT NULL,
        seq           bigserial NOT NULL,
        inline        bytea,
        result_lost   boolean NOT NULL DEFAULT false
    )
    """,
    # The hit path: one index probe (completed, cacheable runs of a fingerprint, newest first).
    """CREATE INDEX commits_hit ON {s}.commits (fingerprint, created_at DESC)
       WHERE status = 'completed' AND cacheable""",
    "CREATE INDEX commits_fingerprint ON {s}.commits (fingerprint, created_at)",
    "CREATE INDEX commits_created ON {s}.commits (created_at, seq)",
    "CREATE INDEX commits_func ON {s}.commits (func_name, created_at)",
    "CREATE INDEX commits_status ON {s}.commits (status, created_at)",
    "CREATE INDEX commits_used ON {s}.commits ((coalesce(last_accessed, created_at)))",
    "CREATE INDEX commits_expires ON {s}.commits (expires_at) WHERE expires_at IS NOT NULL",
    "CREATE INDEX commits_result ON {s}.commits (result_hash, created_at)"
    " WHERE result_hash IS NOT NULL",
    "CREATE INDEX commits_prefix ON {s}.commits (hash text_pattern_ops)",
    """
    CREATE TABLE {s}.tags (
        hash       text NOT NULL REFERENCES {s}.commits (hash) ON DELETE CASCADE,
        key        text NOT NULL,
        value      text NOT NULL,
        created_at double precision NOT NULL,
        PRIMARY KEY (hash, key)
    )
    """,
    "CREATE INDEX tags_kv ON {s}.tags (key, value, created_at)",
    # The blob index: one row per stored blob, with the number of commits whose result it
    # is. ``inline`` holds a small blob's encoded bytes; NULL: they are in the blob store.
    """
    CREATE TABLE {s}.blobs (
        hash    text PRIMARY KEY,
        size    bigint NOT NULL,
        stored  bigint NOT NULL,
        inline  bytea,
        refs    bigint NOT NULL DEFAULT 0,
        created double precision NOT NULL
    )
    """,
    "CREATE INDEX blobs_orphans ON {s}.blobs (created) WHERE refs <= 0",
    # The default blob store: the encoded bytes of the blobs not kept inline.
    "CREATE TABLE {s}.blob_data (hash text PRIMARY KEY, data bytea NOT NULL)",
    """
    CREATE TABLE {s}.claims (
        fingerprint text PRIMARY KEY,
        owner       text NOT NULL,
        holder      text NOT NULL,
        pid         integer NOT NULL,
        expires_at  double precision NOT NULL,
        func_name   text NOT NULL,
        claimed_at  double precision NOT NULL
    )
    """,
    "CREATE INDEX claims_expires ON {s}.claims (expires_at)",
    """
    CREATE TABLE {s}.hits (
        hash     text PRIMARY KEY REFERENCES {s}.commits (hash) ON DELETE CASCADE,
        count    bigint NOT NULL,
        last_hit double precision NOT NULL,
        saved    double precision NOT NULL
    )
    """,
    """
    CREATE TABLE {s}.quarantine (
        id       bigserial PRIMARY KEY,
        hash     text NOT NULL,
        kind     text NOT NULL,
        reason   text NOT NULL,
        found_at double precision NOT NULL,
        record   text
    )
    """,
)

#: ``MIGRATIONS[i]`` upgrades a schema from version i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)

_COMMIT_COLS = "c.hash, c.body, c.last_accessed"

_QUERIES: dict[str, str] = {
    "create_schema": "CREATE SCHEMA IF NOT EXISTS {s}",
    "has_meta": "SELECT to_regclass(%s)",
    "version": "SELECT value FROM {s}.meta WHERE key = 'schema_version'",
    "set_version": "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', %s)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    "migrate_lock": "SELECT pg_advisory_xact_lock(hashtext(%s))",
    # commits
    "insert_commit": "INSERT INTO {s}.commits (hash, fingerprint, func_name, status,"
    " cacheable, created_at, expires_at, last_accessed, result_hash, body, inline,"
    " result_lost) SELECT u.*, b.inline, u.result_hash IS NOT NULL AND b.hash IS NULL"
    " FROM (VALUES (%s, %s, %s, %s, %s::boolean, %s::float8, %s::float8, %s::float8,"
    " %s, %s)) AS u (hash, fingerprint, func_name, status, cacheable, created_at,"
    " expires_at, last_accessed, result_hash, body)"
    " LEFT JOIN {s}.blobs b ON b.hash = u.result_hash ON CONFLICT (hash) DO NOTHING",
    "insert_tag": "INSERT INTO {s}.tags (hash, key, value, created_at) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING",
    "ref_blob": "UPDATE {s}.blobs SET refs = refs + 1 WHERE hash = %s",
    "get_commit": f"SELECT {_COMMIT_COLS} FROM {{s}}.commits c WHERE c.hash = %s",
    "find_hit": "SELECT hash, body, last_accessed, inline FROM {s}.commits"
    " WHERE fingerprint = %s AND status = 'completed' AND cacheable AND NOT result_lost"
    " AND (expires_at IS NULL OR expires_at > %s) ORDER BY created_at DESC LIMIT 1",
    "blob_found": "UPDATE {s}.commits SET result_lost = false, inline = %s"
    " WHERE result_hash = %s AND result_lost",
    "blobs_found": "UPDATE {s}.commits c SET result_lost = false, inline = b.inline"
    " FROM {s}.blobs b WHERE b.hash = ANY(%s) AND c.result_hash = b.hash AND c.result_lost",
    "blob_lost": "UPDATE {s}.commits SET result_lost = true, inline = NULL WHERE result_hash = %s",
    "latest": f"SELECT {_COMMIT_COLS} FROM {{s}}.commits c WHERE c.fingerprint = %s"
    " ORDER BY c.created_at DESC LIMIT 1",
    "history": f"SELECT {_COMMIT_COLS} FROM {{s}}.commits c WHERE c.fingerprint ="
    " (SELECT fingerprint FROM {s}.commits WHERE hash = %s)"
    " AND (c.expires_at IS NULL OR c.expires_at > %s) ORDER BY c.created_at, c.seq",
    "by_result": f"SELECT {_COMMIT_COLS} FROM {{s}}.commits c WHERE c.result_hash = %s"
    " ORDER BY c.created_at DESC LIMIT %s",
    "iter": f"SELECT {_COMMIT_COLS}, c.created_at, c.seq FROM {{s}}.commits c"
    " WHERE (c.created_at, c.seq) > (%s, %s) ORDER BY c.created_at, c.seq LIMIT %s",
    "prefix": "SELECT hash FROM {s}.commits WHERE hash LIKE %s ORDER BY hash LIMIT %s",
    "have_commits": "SELECT hash FROM {s}.commits WHERE hash = ANY(%s)",
    "touch": "UPDATE {s}.commits SET last_accessed = %s WHERE hash = %s",
    "fix_columns": "UPDATE {s}.commits SET fingerprint = %s, func_name = %s, status = %s,"
    " cacheable = %s, created_at = %s, expires_at = %s, result_hash = %s WHERE hash = %s",
    # many at once (push and pull); arrays sent in binary (%b): no text escaping
    "many_blobs": "INSERT INTO {s}.blobs (hash, size, stored, inline, refs, created)"
    " SELECT x.hash, x.size, x.stored, x.inline,"
    " (SELECT count(*) FROM {s}.commits c WHERE c.result_hash = x.hash), %s"
    " FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bytea[])"
    " AS x(hash, size, stored, inline) ON CONFLICT (hash) DO NOTHING",
    "many_commits": "WITH ins AS (INSERT INTO {s}.commits (hash, fingerprint, func_name,"
    " status, cacheable, created_at, expires_at, last_accessed, result_hash, body, inline,"
    " result_lost) SELECT u.*, b.inline, u.result_hash IS NOT NULL AND b.hash IS NULL"
    " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::boolean[],"
    " %b::float8[], %b::float8[], %b::float8[], %b::text[], %b::text[])"
    " AS u (hash, fingerprint, func_name, status, cacheable, created_at, expires_at,"
    " last_accessed, result_hash, body) LEFT JOIN {s}.blobs b ON b.hash = u.result_hash"
    " ON CONFLICT (hash) DO NOTHING RETURNING hash, result_hash, created_at),"
    " tagged AS (INSERT INTO {s}.tags (hash, key, value, created_at)"
    " SELECT t.hash, t.key, t.value, ins.created_at"
    " FROM unnest(%b::text[], %b::text[], %b::text[]) AS t(hash, key, value)"
    " JOIN ins ON ins.hash = t.hash ON CONFLICT DO NOTHING)"
    " UPDATE {s}.blobs b SET refs = b.refs + x.n FROM (SELECT result_hash, count(*) AS n"
    " FROM ins WHERE result_hash IS NOT NULL GROUP BY result_hash) x"
    " WHERE b.hash = x.result_hash",
    "have_blobs": "SELECT hash FROM {s}.blobs WHERE hash = ANY(%s)",
    # blobs
    "blob_info": "SELECT inline, stored FROM {s}.blobs WHERE hash = %s",
    "has_blob": "SELECT 1 FROM {s}.blobs WHERE hash = %s",
    "insert_blob": "INSERT INTO {s}.blobs (hash, size, stored, inline, refs, created)"
    " VALUES (%s, %s, %s, %s, (SELECT count(*) FROM {s}.commits WHERE result_hash = %s), %s)"
    " ON CONFLICT (hash) DO NOTHING",
    "forget_blob": "DELETE FROM {s}.blobs WHERE hash = %s RETURNING inline IS NULL",
    "unref_blob": "UPDATE {s}.blobs SET refs = refs - 1 WHERE hash = %s RETURNING refs,"
    " inline IS NULL",
    "data_put": "INSERT INTO {s}.blob_data (hash, data) VALUES (%s, %s)"
    " ON CONFLICT (hash) DO UPDATE SET data = excluded.data",
    "data_get": "SELECT data FROM {s}.blob_data WHERE hash = %s",
    "data_has": "SELECT 1 FROM {s}.blob_data WHERE hash = %s",
    "data_delete": "DELETE FROM {s}.blob_data WHERE hash = %s",
    "data_iter": "SELECT hash FROM {s}.blob_data WHERE hash > %s ORDER BY hash LIMIT %s",
    # removal
    "delete_commit": "DELETE FROM {s}.commits WHERE hash = %s RETURNING result_hash",
    "old_commits": "SELECT hash FROM {s}.commits WHERE coalesce(last_accessed, created_at) < %s"
    " OR expires_at <= %s LIMIT %s",
    "lru": "SELECT c.hash, coalesce(b.stored, 0), coalesce(b.refs, 0) FROM {s}.commits c"
    " LEFT JOIN {s}.blobs b ON b.hash = c.result_hash"
    " ORDER BY coalesce(c.last_accessed, c.created_at), c.seq LIMIT %s",
    "orphan_blobs": "SELECT hash, inline IS NULL FROM {s}.blobs WHERE refs <= 0 AND created < %s"
    " LIMIT %s",
    "drop_orphan": "DELETE FROM {s}.blobs WHERE hash = %s AND refs <= 0",
    "stored_bytes": "SELECT coalesce(sum(stored), 0) FROM {s}.blobs",
    "orphan_bytes": "SELECT coalesce(sum(stored), 0) FROM {s}.blobs WHERE refs <= 0",
    "tagged": "SELECT c.hash FROM {s}.commits c WHERE c.hash IN (SELECT hash FROM {s}.tags"
    " WHERE key = %s AND (%s::text IS NULL OR value = %s))",
    "stale_claims": "DELETE FROM {s}.claims WHERE expires_at < %s",
    # leases
    "new_claim": "INSERT INTO {s}.claims (fingerprint, owner, holder, pid, expires_at,"
    " func_name, claimed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (fingerprint) DO NOTHING",
    "lock_claim": "SELECT owner, holder, pid, expires_at, func_name, claimed_at"
    " FROM {s}.claims WHERE fingerprint = %s FOR UPDATE",
    "put_claim": "INSERT INTO {s}.claims (fingerprint, owner, holder, pid, expires_at,"
    " func_name, claimed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (fingerprint) DO UPDATE SET owner = excluded.owner,"
    " holder = excluded.holder, pid = excluded.pid, expires_at = excluded.expires_at,"
    " func_name = excluded.func_name, claimed_at = excluded.claimed_at",
    "get_claim": "SELECT owner, holder, pid, expires_at, func_name, claimed_at"
    " FROM {s}.claims WHERE fingerprint = %s",
    "live_claims": "SELECT fingerprint, owner, holder, pid, expires_at, func_name, claimed_at"
    " FROM {s}.claims WHERE expires_at > %s ORDER BY claimed_at DESC",
    "renew_claim": "UPDATE {s}.claims SET expires_at = %s WHERE fingerprint = %s AND owner = %s",
    "release_claim": "DELETE FROM {s}.claims WHERE fingerprint = %s AND owner = %s"
    " RETURNING pg_notify(%s, fingerprint)",
    # hits
    "add_hits": "INSERT INTO {s}.hits (hash, count, last_hit, saved)"
    " SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM {s}.commits WHERE hash = %s)"
    " ON CONFLICT (hash) DO UPDATE SET count = hits.count + excluded.count,"
    " last_hit = greatest(hits.last_hit, excluded.last_hit),"
    " saved = hits.saved + excluded.saved",
    "hit_access": "UPDATE {s}.commits SET last_accessed = %s WHERE hash = %s"
    " AND coalesce(last_accessed, 0) < %s",
    "hit_counts": "SELECT hash, count, last_hit FROM {s}.hits WHERE hash = ANY(%s)",
    "hit_totals": "SELECT coalesce(sum(count), 0), coalesce(sum(saved), 0) FROM {s}.hits",
    # stats and damage
    "stats": "SELECT (SELECT count(*) FROM {s}.commits),"
    " (SELECT count(*) FROM {s}.commits WHERE status = 'completed'),"
    " count(*) FILTER (WHERE inline IS NULL),"
    " coalesce(sum(stored) FILTER (WHERE inline IS NULL), 0),"
    " count(*) FILTER (WHERE inline IS NOT NULL),"
    " coalesce(sum(stored) FILTER (WHERE inline IS NOT NULL), 0) FROM {s}.blobs",
    "quarantine": "INSERT INTO {s}.quarantine (hash, kind, reason, found_at, record)"
    " VALUES (%s, %s, %s, %s, %s)",
    "quarantined": "SELECT hash, kind, reason, found_at, record FROM {s}.quarantine ORDER BY id",
    "delete_raw": "DELETE FROM {s}.commits WHERE hash = %s RETURNING result_hash, body",
}


class Sql:
    """The store's SQL with its schema filled in: ``sql.get_commit`` and so on."""

    def __init__(self, schema: str) -> None:
        quoted = '"' + schema.replace('"', '""') + '"'
        self.schema = schema
        self.quoted = quoted
        self.channel = f"cashet_release:{schema}"[:63]
        for name, text in _QUERIES.items():
            setattr(self, name, text.replace("{s}", quoted))
        self.migrations = [[q.replace("{s}", quoted) for q in step] for step in MIGRATIONS]

    def __getattr__(self, name: str) -> str:  # for the type checker: every query is a str
        raise AttributeError(name)


def to_epoch(when: datetime) -> float:
    """An aware (or UTC-naive) datetime as UTC epoch seconds."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def from_epoch(value: float) -> datetime:
    """UTC epoch seconds as an aware datetime."""
    return datetime.fromtimestamp(value, UTC)


def commit_row(commit: Commit, body: str) -> tuple[Any, ...]:
    """The ``insert_commit`` parameters of ``commit`` stored as ``body``."""
    td = commit.task_def
    result = commit.result
    return (
        commit.hash,
        td.fingerprint,
        td.func_name,
        commit.status.value,
        bool(td.cache),
        to_epoch(commit.created_at),
        None if commit.expires_at is None else to_epoch(commit.expires_at),
        None if commit.last_accessed is None else to_epoch(commit.last_accessed),
        None if result is None else result.hash,
        body,
    )
