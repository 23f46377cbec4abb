"""``cashet doctor`` compares the indexes and triggers of ``meta.db`` with the ones this
version makes (stores/sqlite/schema_check.py): a damaged definition that the integrity
check does not see (a trigger naming a column that does not exist: every ``DELETE`` of a
commit fails) is reported, and the repair makes it again."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from cashet import Client
from cashet.errors import StoreError


def plus_one(x: int) -> int:
    return x + 1


def _damage_trigger(meta: Path, name: str, old: str, new: str) -> None:
    with closing(sqlite3.connect(meta, isolation_level=None)) as conn:
        (text,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)
        ).fetchone()
        assert old in text
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'trigger' AND name = ?",
            (text.replace(old, new), name),
        )
        conn.execute("PRAGMA writable_schema = OFF")
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_damaged_trigger_is_found_and_made_again(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Client(store) as c:
        refs = [c.submit(plus_one, i) for i in range(3)]
    _damage_trigger(store / "meta.db", "commits_after_delete", "OLD.status", "OLD.ztatus")
    with Client(store) as c:
        with pytest.raises(StoreError, match="ztatus"):
            c.rm(refs[0].commit_hash)  # every delete of a commit fails
        found = c.check()
        assert not found.ok
        assert [(f.kind, f.subject) for f in found.findings if f.kind == "schema"] == [
            ("schema", "trigger commits_after_delete")
        ]
        repaired = c.check(repair=True)
        assert {f.action for f in repaired.findings if f.kind == "schema"} == {"made again"}
        assert c.check().ok
        assert c.rm(refs[0].commit_hash) is True
        assert c.stats()["total_commits"] == 2
        assert c.submit(plus_one, 1).cached and c.submit(plus_one, 1).load() == 2


def test_an_unknown_trigger_is_reported_and_dropped_on_repair(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Client(store) as c:
        c.submit(plus_one, 1)
    with closing(sqlite3.connect(store / "meta.db", isolation_level=None)) as conn:
        conn.execute(
            "CREATE TRIGGER commits_aftes_insert AFTER INSERT ON commits BEGIN"
            " UPDATE counters SET total_commits = total_commits + 100; END"
        )
    with Client(store) as c:
        found = [f for f in c.check().findings if f.kind == "schema"]
        assert [(f.subject, f.detail) for f in found] == [
            ("trigger commits_aftes_insert", "unknown (not one this version makes)")
        ]
        c.check(repair=True)
        assert c.check().ok
        c.submit(plus_one, 2)
        assert c.stats()["total_commits"] == 2
