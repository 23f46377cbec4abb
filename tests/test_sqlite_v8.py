"""Schema v8 (issue 18): the blob index is a WITHOUT ROWID table keyed by the blob's hash
(each hash kept once, one b-tree page written per new blob); a v7 store migrates in place,
its commits, blobs, counts and reference counts as they were."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from cashet import Client
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.lean import register_functions

CALLS: list[int] = []
BIG = os.urandom(4000)  # a result kept as a file (over the inline threshold)


def plus_one(x: int) -> int:
    CALLS.append(x)
    return x + 1


def four(_: str) -> int:
    CALLS.append(-1)
    return 4  # the same result blob as plus_one(3)


def big(n: int) -> bytes:
    CALLS.append(n)
    return BIG


def db(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path / "meta.db", isolation_level=None))


@pytest.fixture
def store_dir(tmp_path: Path) -> Iterator[Path]:
    CALLS.clear()
    yield tmp_path / "store"


def _tables(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT name, coalesce(sql, '') FROM sqlite_master").fetchall())


def _v7_store(store_dir: Path) -> list[str]:
    """A meta.db at schema v7 holding what this cashet writes for a few calls (a shared
    result, a file result, a chained call with tags); returns the commit hashes."""
    scratch = store_dir.parent / "scratch"
    with Client(scratch) as c:
        first = c.submit(plus_one, 3)
        refs = [first, c.submit(four, "x"), c.submit(big, 1)]
        refs.append(c.submit(plus_one, first, _tags={"stage": "two"}))
        assert all(r.load() is not None for r in refs)
    os.makedirs(store_dir)
    os.rename(scratch / "objects", store_dir / "objects")
    tables = ("funcs", "blobs", "commits", "commit_tags", "commit_inputs")
    with db(scratch) as old, db(store_dir) as conn:
        register_functions(conn)
        for step in sql.MIGRATIONS[:7]:
            for statement in step:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 7")
        assert "WITHOUT ROWID" not in _tables(conn)["blobs"]
        for table in tables:
            rows = old.execute(f"SELECT * FROM {table}").fetchall()
            if table == "blobs":  # counted again by the commits' insert triggers
                rows = [(*r[:4], 0, r[5]) for r in rows]
                rows += old.execute(  # v7 kept tiny results in blob rows too
                    "SELECT DISTINCT result_hash, result_size, length(result_data),"
                    " result_data, 0, 0 FROM commits WHERE result_data IS NOT NULL"
                ).fetchall()
            if table == "commits":  # without v8's result_data
                rows = [r[:13] for r in rows]
            marks = ", ".join("?" * len(rows[0])) if rows else ""
            conn.executemany(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", rows)
        refcounts = dict(conn.execute("SELECT hash, refcount FROM blobs").fetchall())
    assert sorted(refcounts.values()) == [1, 1, 2]
    return [r.commit_hash for r in refs]


def test_a_v7_store_migrates_its_blob_index_in_place(store_dir: Path) -> None:
    hashes = _v7_store(store_dir)
    CALLS.clear()
    with Client(store_dir) as c:
        before = c.stats()
        assert c.check().ok
        assert c.submit(plus_one, 3).commit_hash == hashes[0]
        assert c.submit(four, "x").load() == 4 and c.submit(big, 1).load() == BIG
        assert [x.hash for x in c.log(tags={"stage": "two"})] == [hashes[3]]
        assert CALLS == []
    with db(store_dir) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sql.SCHEMA_VERSION == 8
        tables = _tables(conn)
        assert "WITHOUT ROWID" in tables["blobs"] and "sqlite_autoindex_blobs_1" not in tables
        assert {"blobs_orphans", "blobs_after_insert", "commits_after_delete"} <= set(tables)
        refcounts = sorted(r[0] for r in conn.execute("SELECT refcount FROM blobs"))
    assert refcounts == [1, 1, 2]
    with Client(store_dir) as c:
        after = c.stats()
        assert {k: after[k] for k in before if "hit" not in k and "saved" not in k} == {
            k: v for k, v in before.items() if "hit" not in k and "saved" not in k
        }
        # the triggers were made again: a removal frees a blob with its last commit only
        assert c.store.delete_commit(hashes[1])
        assert c.stats()["total_commits"] == 3 and c.stats()["inline_objects"] == 2
        assert c.store.delete_commit(hashes[2])
        assert c.stats()["blob_objects"] == 0
        assert not [p for p in (store_dir / "objects").rglob("*") if p.is_file()]
        assert c.check().ok
        assert c.submit(big, 1).load() == BIG and CALLS == [1]  # recomputed, stored again


def medium(x: int) -> str:
    return "m" * 200 + str(x)  # an inline blob row: over tiny.TINY_MAX, under 1 KiB


def test_the_doctor_names_blob_rows_by_their_hash(store_dir: Path) -> None:
    """Without rowids, ``cashet doctor`` finds and repairs blob rows by their hash's bytes:
    a damaged inline blob, a wrong reference count, and a row whose hash is a BLOB."""
    with Client(store_dir) as c:
        before = {c.submit(medium, x).commit_hash for x in (3, 5)}
    with db(store_dir) as conn:
        (a, inline), (b, _) = conn.execute("SELECT hash, inline FROM blobs").fetchall()
        conn.execute("UPDATE blobs SET refcount = 9 WHERE hash = ?", (b,))
        conn.execute("UPDATE blobs SET inline = ? WHERE hash = ?", (inline[:-1] + b"\x00", a))
        # damage: a hash that is not text
        conn.execute("INSERT INTO blobs VALUES (CAST('ab' AS BLOB), 1, 1, x'00', 0, 0)")
    with Client(store_dir) as c:
        report = c.check()
        kinds = sorted(f.kind for f in report.findings)
        assert "refcount" in kinds and kinds.count("missing_blob") == 2, report.findings
        c.check(repair=True)
        assert c.check().ok
        assert {c.submit(medium, x).load() for x in (3, 5)} == {"m" * 200 + "3", "m" * 200 + "5"}
    with db(store_dir) as conn:
        damaged = conn.execute("SELECT count(*) FROM blobs WHERE typeof(hash) = 'blob'")
        assert damaged.fetchone() == (0,)
        hashes = {r[0] for r in conn.execute("SELECT hash FROM commits")}
    assert len(hashes) == 2 and len(hashes & before) == 1  # the damaged one recomputed


def test_a_tiny_result_is_kept_in_its_commit_row_and_verified(store_dir: Path) -> None:
    """A tiny result is no blob row: its bytes are in its commit's row, read with the hit,
    by ``get_blob`` and by a doctor, verified against the result hash; damaged, they are
    never served, the doctor finds them, and a re-run stores them again."""
    with Client(store_dir) as c:
        ref = c.submit(plus_one, 3)
        assert ref.load() == 4 and c.store.has_blob(ref.hash)
        assert c.stats()["inline_objects"] == 1 and c.check().ok
    with db(store_dir) as conn:
        assert conn.execute("SELECT count(*) FROM blobs").fetchone() == (0,)
        (data,) = conn.execute("SELECT result_data FROM commits").fetchone()
        assert len(data) <= 64
        conn.execute("UPDATE commits SET result_data = ?", (data[:-1] + b"\x00",))
    CALLS.clear()
    with Client(store_dir) as c:
        report = c.check()
        assert [f.kind for f in report.findings] == ["missing_blob"], report.findings
        assert c.check(repair=True).findings and c.check().ok
        assert c.submit(plus_one, 3).load() == 4 and CALLS == [3]  # recomputed
        assert c.submit(plus_one, 3).cached and c.stats()["inline_objects"] == 1
        with pytest.raises(Exception, match="not found"):
            c.store.get_blob(type(ref.commit.result)("0" * 64, 1))  # type: ignore[union-attr]


def test_the_tiny_result_queries_are_index_reads(store_dir: Path) -> None:
    from cashet.stores.sqlite import tiny

    with Client(store_dir) as c:
        h = c.submit(plus_one, 3).hash
    with db(store_dir) as conn:
        for query in (tiny.COMMIT_DATA, tiny.FORGET_DATA):
            plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {query}", (h,))]
            assert plan == ["SEARCH commits USING INDEX commits_result (<expr>=?)"], plan
        hit = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql.FIND_HIT}", (0, 0))]
        assert hit[0] == "SEARCH c USING INDEX commits_fp (fp=?)", hit
        assert hit[1].startswith("SEARCH b USING PRIMARY KEY (hash=?)"), hit


def _recount(store_dir: Path) -> tuple[dict[str, int], tuple[int, ...]]:
    """The stats the triggers kept, and cashet doctor's recount of them."""
    from cashet.stores.sqlite.doctor import COUNTED

    with Client(store_dir) as c:
        stats = c.stats()
    with db(store_dir) as conn:
        counted = conn.execute(COUNTED).fetchone()
    return stats, tuple(counted)


def test_a_tiny_result_is_one_stored_object_however_many_rows_hold_it(store_dir: Path) -> None:
    """Content-addressed counting: a tiny result kept in the rows of several commits (and
    maybe in a blob row too) is one object; the counts follow it through removals, a blob
    row of the same bytes coming and going, and a damaged copy forgotten."""
    from cashet.stores.blobs import encode_blob

    with Client(store_dir) as c:
        a, b, d = c.submit(plus_one, 3), c.submit(four, "x"), c.submit(four, "y")
        assert a.load() == b.load() == d.load() == 4  # one result, three commits
        before = c.stats()
        assert before["stored_objects"] == before["inline_objects"] == 1
        one = before["inline_bytes"]
        c.rm(a.commit_hash)
        assert c.stats()["inline_objects"] == 1 and c.stats()["inline_bytes"] == one
    stats, counted = _recount(store_dir)
    assert (stats["inline_objects"], stats["inline_bytes"]) == counted[4:] == (1, one)

    # A blob row of the same bytes: still one object (the row's), and again the rows' once
    # the blob row goes.
    result_hash = b.commit.result.hash
    with db(store_dir) as conn:
        (held,) = conn.execute(
            "SELECT result_data FROM commits WHERE result_data IS NOT NULL LIMIT 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO blobs (hash, size, stored_size, inline, refcount, created_at)"
            " VALUES (?, ?, ?, ?, 2, 0)",
            (result_hash, b.commit.result.size, len(held), held),
        )
    stats, counted = _recount(store_dir)
    assert stats["stored_objects"] == 1 and counted[4] == 1
    assert held == encode_blob(pickle_dumps(4)) or len(held) == one
    with db(store_dir) as conn:
        conn.execute("DELETE FROM blobs WHERE hash = ?", (result_hash,))
    stats, counted = _recount(store_dir)
    assert (stats["inline_objects"], stats["inline_bytes"]) == counted[4:] == (1, one)

    # The last commits go: nothing left.
    with Client(store_dir) as c:
        c.rm(b.commit_hash)
        assert c.stats()["inline_objects"] == 1
        c.rm(d.commit_hash)
        assert c.stats()["stored_objects"] == c.stats()["inline_bytes"] == 0


def test_forgetting_a_damaged_tiny_result_uncounts_it_once(store_dir: Path) -> None:
    from cashet.stores.sqlite.tiny import FORGET_DATA

    with Client(store_dir) as c:
        b, d = c.submit(four, "x"), c.submit(four, "y")
        assert c.stats()["inline_objects"] == 1
    with db(store_dir) as conn:
        conn.execute(FORGET_DATA, (b.commit.result.hash,))
    stats, counted = _recount(store_dir)
    assert stats["inline_objects"] == stats["inline_bytes"] == 0
    assert counted[4:] == (0, 0) and d.commit.result.hash == b.commit.result.hash


def pickle_dumps(value: object) -> bytes:
    import pickle

    return pickle.dumps(value)


def test_inserting_a_commit_does_not_scan_the_commits_sharing_its_result(
    store_dir: Path,
) -> None:
    """The commit triggers' check "is this row the only holder of its tiny result" must
    not read every commit of a result that many commits share (it did: an ``AND`` runs its
    subqueries anyway, and a 1M-commit store with shared blobs took an hour to fill).
    Counted in SQLite VM steps (progress handler), not timed."""
    with Client(store_dir):
        pass
    shared = "ab" * 32
    cols = (
        "hash, fp, func_name, status, created_at, expires_at, last_accessed, cache,"
        " result_hash, result_size, parent_hash, fn, body, result_data"
    )
    with db(store_dir) as conn:
        register_functions(conn)
        conn.execute(
            "INSERT INTO blobs (hash, size, stored_size, inline, refcount, created_at)"
            " VALUES (?, 1, 1, x'00', 0, 0)",
            (shared,),
        )
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        def insert(k: int, data: bytes | None, result: str = shared) -> int:
            steps[0] = 0
            conn.set_progress_handler(count, 1)
            conn.execute(
                f"INSERT INTO commits ({cols}) VALUES (?, ?, 'f', 'completed', 0, NULL, 0,"
                " 1, ?, 1, NULL, NULL, '{}', ?)",
                (f"{k:064x}", k, result, data),
            )
            conn.set_progress_handler(None, 1)
            return steps[0]

        conn.execute("BEGIN")
        early = [insert(k, None) for k in range(10)]
        for k in range(10, 3000):
            insert(k, None)
        late = [insert(k, None) for k in range(3000, 3010)]
        # a tiny result shared by as many rows (no blob row): the same
        tiny = "cd" * 32
        early_tiny = [insert(k, b"\x01", tiny) for k in range(5000, 5010)]
        for k in range(5010, 8000):
            insert(k, b"\x01", tiny)
        late_tiny = [insert(k, b"\x01", tiny) for k in range(8000, 8010)]
        conn.execute("COMMIT")
    assert max(late) < 2 * max(early), (early, late)
    assert max(late_tiny) < 2 * max(early_tiny), (early_tiny, late_tiny)
