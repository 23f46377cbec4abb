"""Lean commit rows (schema v6, issue 18): a function's source and manifest kept once per
function version, each commit row deflated against it, verified as before; v5 stores
migrate in place and their commits keep their hashes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from cashet import Client
from cashet.hashing.commits import compute_commit_hash, stored_json
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.lean import fp_key

CALLS: list[int] = []


def plus_one(x: int) -> int:
    CALLS.append(x)
    return x + 1


def db(store_dir: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(store_dir / "meta.db", isolation_level=None))


@pytest.fixture
def store_dir(tmp_path: Path) -> Iterator[Path]:
    CALLS.clear()
    yield tmp_path / "store"


def test_source_and_manifest_are_kept_once_per_function(store_dir: Path) -> None:
    with Client(store_dir) as c:
        hashes = [c.submit(plus_one, x).commit_hash for x in range(50)]
        shown = c.show(hashes[7])
    with db(store_dir) as conn:
        (funcs,) = conn.execute("SELECT count(*) FROM funcs").fetchone()
        rows = conn.execute("SELECT fn, body, fp FROM commits").fetchall()
    assert funcs == 1
    assert all(fn == rows[0][0] and isinstance(body, bytes) for fn, body, _ in rows)
    # What a call adds to its function's record, deflated: a fraction of the ~1.3 KB JSON.
    assert max(len(body) for _, body, _ in rows) < 200
    assert b"return x + 1" not in b"".join(body for _, body, _ in rows)
    # The commit callers see is whole: source, manifest, arguments, and its hash is its own.
    assert shown is not None and "return x + 1" in shown.task_def.func_source
    assert shown.task_def.manifest["arguments"][0]["preview"] == "7"
    assert shown.task_def.manifest["function"]["name"].endswith("plus_one")
    assert compute_commit_hash(shown) == shown.hash == hashes[7]
    keys = [fp for _, _, fp in rows]
    assert len(set(keys)) == 50 and fp_key(shown.fingerprint) in keys


def test_lean_rows_hit_and_answer_every_query(store_dir: Path) -> None:
    with Client(store_dir) as c:
        first = [c.submit(plus_one, x) for x in range(5)]
        assert [r.load() for r in first] == [1, 2, 3, 4, 5]
    CALLS.clear()
    with Client(store_dir) as c:  # a fresh process's view: nothing decoded yet
        again = [c.submit(plus_one, x) for x in range(5)]
        assert all(r.cached for r in again) and CALLS == []
        assert [r.load() for r in again] == [1, 2, 3, 4, 5]
        assert len(c.log()) == 5 and len(c.log(func_name="plus_one")) == 5
        assert [h.hash for h in c.history(first[2].commit_hash)] == [first[2].commit_hash]
        assert c.check().ok
        exported = c.store.get_commit(first[0].commit_hash)
        assert exported is not None and stored_json(exported)  # whole again, for archives


def test_a_damaged_function_row_is_not_blamed_on_its_commits(store_dir: Path) -> None:
    with Client(store_dir) as c:
        c.submit(plus_one, 1)
        c.submit(plus_one, 2)
    with db(store_dir) as conn:
        conn.execute("UPDATE funcs SET body = replace(body, 'x + 1', 'x + 2')")
    CALLS.clear()
    with Client(store_dir) as c:
        # Its commits cannot be verified: a miss (never the other source's value) ...
        assert c.submit(plus_one, 1).load() == 2 and CALLS == [1]
        # ... and they are not quarantined as damaged: the damage is the function row's.
        assert c.store.quarantined() == []  # type: ignore[attr-defined]
        report = c.check()
        (finding,) = [f for f in report.findings if f.kind == "damaged_function_row"]
        assert "2 commit(s)" in finding.detail
        repaired = c.check(repair=True)
        assert any(f.kind == "damaged_function_row" for f in repaired.findings)
        assert len(c.store.quarantined()) == 2  # type: ignore[attr-defined]
        assert c.check().ok
    CALLS.clear()
    with Client(store_dir) as c:  # a new function row is made; hits again
        assert c.submit(plus_one, 2).load() == 3 and CALLS == [2]
        assert c.submit(plus_one, 2).cached


def test_fingerprints_sharing_a_key_each_find_their_own(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two fingerprints with one 64-bit key cannot be found for real (about once in 2**64):
    every key is made the same here, the one way to produce it."""
    from cashet.stores.sqlite import lean, store

    monkeypatch.setattr(store, "fp_key", lambda fp: 42)
    monkeypatch.setattr(lean, "fp_key", lambda fp: 42)
    with Client(store_dir) as c:
        for x in range(4):
            assert c.submit(plus_one, x).load() == x + 1
    CALLS.clear()
    with Client(store_dir) as c:
        got = [c.submit(plus_one, x) for x in range(4)]
        assert [r.load() for r in got] == [1, 2, 3, 4]
        assert all(r.cached for r in got) and CALLS == []
        assert c.store.quarantined() == []  # type: ignore[attr-defined]
        latest = c.store.latest_for_fingerprint(got[1].commit.fingerprint)  # type: ignore[union-attr]
        assert latest is not None and latest.hash == got[1].commit_hash


def _v5_store(store_dir: Path, chained: bool = False) -> str:
    """A meta.db at schema v5 (the layout before lean rows) holding one commit of
    ``plus_one(3)``, as v5 wrote it; returns that commit's hash. ``chained``: also
    ``plus_one(<that result>)``, a commit with an input, and one of ``plus_one(<its>)``."""
    scratch = store_dir.parent / "scratch"
    with Client(scratch) as c:
        first = c.submit(plus_one, 3)
        commits = [first.commit]
        if chained:
            second = c.submit(plus_one, first)
            commits += [second.commit, c.submit(plus_one, second).commit]
        with db(scratch) as conn:
            blobs = conn.execute(
                "SELECT hash, size, inline FROM blobs UNION SELECT result_hash, result_size,"
                " result_data FROM commits WHERE result_data IS NOT NULL"  # (v8: tiny)
            ).fetchall()
    store_dir.mkdir()
    with db(store_dir) as conn:
        for step in sql.MIGRATIONS[:5]:
            for statement in step:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 5")
        for h, size, inline in blobs:
            conn.execute(
                "INSERT OR IGNORE INTO blobs (hash, size, stored_size, inline, refcount,"
                " created_at) VALUES (?, ?, ?, ?, 0, 0)",
                (h, size, len(inline), inline),
            )
        for commit in commits:
            assert commit is not None and commit.result is not None
            td = commit.task_def
            conn.execute(
                "INSERT INTO commits (hash, fingerprint, func_name, status, created_at,"
                " expires_at, last_accessed, cache, result_hash, result_size, parent_hash,"
                " body) VALUES (?, ?, ?, 'completed', ?, NULL, ?, 1, ?, ?, NULL, ?)",
                (
                    commit.hash,
                    td.fingerprint,
                    td.func_name,
                    sql.to_epoch(commit.created_at),
                    sql.to_epoch(commit.created_at),
                    commit.result.hash,
                    commit.result.size,
                    stored_json(commit),
                ),
            )
    assert commits[0] is not None
    return commits[0].hash


def test_a_v5_store_migrates_and_its_commits_keep_their_hashes(store_dir: Path) -> None:
    old = _v5_store(store_dir)
    CALLS.clear()
    with Client(store_dir) as c:
        ref = c.submit(plus_one, 3)
        assert ref.cached and ref.commit_hash == old and ref.load() == 4 and CALLS == []
        assert [x.hash for x in c.log()] == [old]
        assert c.stats()["total_commits"] == 1
        assert c.check().ok
        new = c.submit(plus_one, 4)  # a new commit beside it is a lean row
        assert new.load() == 5 and not new.cached
        assert [x.hash for x in c.history(old)] == [old]
    with db(store_dir) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sql.SCHEMA_VERSION == 8
        rows = dict(conn.execute("SELECT hash, fn FROM commits").fetchall())
    assert rows[old] is None and rows[new.commit_hash] is not None
    assert "fingerprint" not in {
        r[1] for r in sqlite3.connect(store_dir / "meta.db").execute("PRAGMA table_info(commits)")
    }


def test_a_signed_commit_keeps_its_signature_in_a_lean_row(store_dir: Path) -> None:
    key = "team-key-0123456789abcdef"
    with Client(store_dir, signing_key=key) as c:
        h = c.submit(plus_one, 5).commit_hash
    CALLS.clear()
    with Client(store_dir, signing_key=key) as c:  # read back: signed, so a hit
        ref = c.submit(plus_one, 5)
        assert ref.cached and ref.commit_hash == h and ref.load() == 6 and CALLS == []
        shown = c.show(h)
        assert shown is not None and shown.signature
    with db(store_dir) as conn:
        (fn,) = conn.execute("SELECT fn FROM commits WHERE hash = ?", (h,)).fetchone()
    assert fn is not None
    with Client(store_dir, signing_key="another-key-0123456789abcdef") as c:
        assert not c.submit(plus_one, 5).cached  # another team's key: not this signature


def test_a_store_at_the_ui_step_once_numbered_6_opens_and_migrates(store_dir: Path) -> None:
    """Main numbered the web UI's step (inputs index, totals per function) 6 before the
    lean rows took that number: a store it migrated is brought to 7 (lean rows, then the
    UI's step again, its derived state rebuilt from the commits, whole JSON bodies)."""
    from cashet.stores.sqlite.schema_v7 import V7

    old = _v5_store(store_dir, chained=True)
    with db(store_dir) as conn:
        for statement in V7:  # as main's step 6 made it, with its trigger on the body
            conn.execute(
                statement.replace(
                    "cashet_content(c.body, f.body, c.result_hash)", "c.body"
                ).replace("LEFT JOIN funcs AS f ON f.id = c.fn", "")
            )
        conn.execute(
            "CREATE TRIGGER commits_inputs_after_insert AFTER INSERT ON commits"
            " WHEN json_valid(NEW.body) BEGIN INSERT OR IGNORE INTO commit_inputs"
            " SELECT value, NEW.hash FROM json_each(NEW.body, '$.input_hashes'); END"
        )
        conn.execute("PRAGMA user_version = 6")
        inputs = conn.execute("SELECT blob_hash, commit_hash FROM commit_inputs").fetchall()
    assert len(inputs) == 2  # the two chained commits
    CALLS.clear()
    with Client(store_dir) as c:
        ref = c.submit(plus_one, 3)
        assert ref.cached and ref.commit_hash == old and CALLS == []
        downstream = c.lineage(old).downstream()
        assert len(downstream) == 2
        c.submit(plus_one, 3)
        totals = {r["func_name"]: (r["runs"], r["hits"]) for r in c.savings_by_function()}
        assert list(totals.values()) == [(3, 2)]
        new = c.submit(plus_one, c.submit(plus_one, 40))  # lean rows, one with an input
        assert new.load() == 42
        produced = c.show(c.submit(plus_one, 40).commit_hash)
        assert produced is not None and produced.result is not None
        found = c.store.find_by_input(produced.result.hash)  # type: ignore[attr-defined]
        assert [x.hash for x in found] == [new.commit_hash]
    with db(store_dir) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sql.SCHEMA_VERSION == 8
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "commits_inputs_after_insert" not in names and "funcs" in names
        assert (
            conn.execute("SELECT fn FROM commits WHERE hash = ?", (new.commit_hash,)).fetchone()[0]
            is not None
        )
        assert sorted(
            conn.execute("SELECT blob_hash, commit_hash FROM commit_inputs").fetchall()
        ) == sorted([*inputs, (produced.result.hash, new.commit_hash)])


def label(text: str) -> str:
    return text.upper()


def test_a_text_search_reads_each_lean_commit_own_content(store_dir: Path) -> None:
    """The web UI's search (``log_page(text=...)``) matches inside lean bodies: a commit's
    own arguments, not those of the first commit its function row was made from."""
    with Client(store_dir) as c:
        alpha = c.submit(label, "alpha-Unique").commit_hash
        beta = c.submit(label, "beta-unique").commit_hash
        with db(store_dir) as conn:
            fns = conn.execute("SELECT fn FROM commits").fetchall()
        assert len(fns) == 2 and None not in {fn for (fn,) in fns}
        assert [x.hash for x in c.log_page(text="ALPHA-unique").commits] == [alpha]
        assert [x.hash for x in c.log_page(text="beta-UNIQUE").commits] == [beta]
        assert {x.hash for x in c.log_page(text="-unique").commits} == {alpha, beta}
        assert c.log_page(text="gamma-unique").commits == []
        assert {x.hash for x in c.log_page(text="return text.upper()").commits} == {alpha, beta}
