"""Data of the published cashet 0.4.3 and 0.5.0 (issue 12): their stores open, migrated in
place, and their export archives import. Fixtures: tests/compat_data (make_fixtures.py)."""

from __future__ import annotations

import json
import logging
import sqlite3
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cashet import Client
from cashet.cli import main
from cashet.errors import ArchiveError, StoreError
from cashet.models import TaskStatus
from cashet.stores.sqlite import legacy

DATA = Path(__file__).parent / "compat_data"
VERSIONS = ["v0.4.3", "v0.5.0"]


def expected(version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / version / "expected.json").read_text())
    return data


def old_store(tmp_path: Path, version: str) -> Path:
    with tarfile.open(DATA / version / "store.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / ".cashet"


def check_values(client: Client, version: str) -> None:
    for name, want in expected(version).items():
        if "commit" not in want:
            continue
        value = client.get(want["commit"])
        if name == "big_list":
            assert len(value) == want["value"]["len"] and value[-1] == want["value"]["last"]
        else:
            assert value == want["value"], name


@pytest.mark.parametrize("version", VERSIONS)
def test_an_old_store_opens_migrated_with_every_commit(
    tmp_path: Path, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = old_store(tmp_path, version)
    with caplog.at_level(logging.WARNING, logger="cashet"), Client(store_dir=store) as client:
        check_values(client, version)
        commits = client.log()
        assert len(commits) == 5
        by_name = {c.task_def.func_name: c for c in commits}
        assert set(by_name) == {"double", "add", "big_list", "fails"}
        failed = by_name["fails"]
        assert failed.status is TaskStatus.FAILED and "ValueError: bad 3" in (failed.error or "")
        double = client.show(expected(version)["double"]["commit"])
        assert double is not None and double.tags == {"team": "ml", "run": "1"}
        assert double.created_at.year == 2026
        assert [c.hash for c in client.history(double.hash)] == [double.hash]
        assert len(client.log(tags={"team": "ml"})) == 1
    warnings = [r for r in caplog.records if "not cache hits" in r.getMessage()]
    assert len(warnings) == 1 and "migrated 5 commit(s)" in warnings[0].getMessage()
    assert not (store / "meta.db.migrating").exists()

    caplog.clear()  # idempotent: a second open finds our schema, says nothing, loses nothing
    with caplog.at_level(logging.WARNING, logger="cashet"), Client(store_dir=store) as client:
        check_values(client, version)
        assert len(client.log()) == 5
    assert not [r for r in caplog.records if "not cache hits" in r.getMessage()]


def test_migrated_commits_are_not_cache_hits(tmp_path: Path) -> None:
    def double(x: int) -> int:
        return x * 2

    with Client(store_dir=old_store(tmp_path, "v0.5.0")) as client:
        ref = client.submit(double, 21)
        assert ref.load() == 42
        assert ref.commit_hash != expected("v0.5.0")["double"]["commit"]
        assert len(client.log()) == 6


@pytest.mark.parametrize("version", VERSIONS)
def test_the_cli_lists_and_clears_an_old_store(tmp_path: Path, version: str) -> None:
    store = old_store(tmp_path, version)
    runner = CliRunner()
    log = runner.invoke(main, ["--store-dir", str(store), "log"])
    assert log.exit_code == 0, log.output
    assert "big_list" in log.output and "double" in log.output
    cleared = runner.invoke(main, ["--store-dir", str(store), "clear", "--yes"])
    assert cleared.exit_code == 0, cleared.output
    with Client(store_dir=store) as client:
        assert client.log() == []


def test_clear_works_on_an_old_store_that_cannot_be_migrated(tmp_path: Path) -> None:
    store = old_store(tmp_path, "v0.4.3")
    conn = sqlite3.connect(store / "meta.db")
    conn.execute("UPDATE commits SET created_at = 'not a time'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as info:
        Client(store_dir=store)
    message = str(info.value)
    assert "cashet 0.4.x/0.5.x" in message and "cashet clear" in message
    assert "new store directory" in message and "sqlite" not in message.lower()
    assert legacy.is_legacy(store)  # left as it was
    result = CliRunner().invoke(main, ["--store-dir", str(store), "clear", "--yes"])
    assert result.exit_code == 0, result.output
    with Client(store_dir=store) as client:
        assert client.log() == []


def test_a_corrupted_old_blob_is_left_out_never_loaded(tmp_path: Path) -> None:
    store = old_store(tmp_path, "v0.5.0")
    want = expected("v0.5.0")
    big = want["big_list"]["blob"]
    # The blob file holds the zlib of other bytes; an inline blob is altered too.
    (store / "objects" / big[:2] / big[2:]).write_bytes(zlib.compress(b"\x80\x05K\x07."))
    conn = sqlite3.connect(store / "meta.db")
    conn.execute(
        "UPDATE inline_objects SET data = ? WHERE hash = ?",
        (b"\x80\x05K\x07.", want["add"]["blob"]),
    )
    conn.commit()
    conn.close()
    with Client(store_dir=store) as client:
        for name in ("big_list", "add"):
            commit = client.show(want[name]["commit"])
            assert commit is not None and commit.result is None
            assert commit.status is TaskStatus.FAILED
            assert "does not match its hash" in (commit.error or "")
            with pytest.raises(Exception) as info:
                client.get(want[name]["commit"])
            assert not isinstance(info.value, AssertionError)
        assert client.get(want["double"]["commit"]) == 42
        assert client.get(want["add_chained"]["commit"]) == 50


def test_a_crash_mid_migration_leaves_the_old_store_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = old_store(tmp_path, "v0.4.3")

    def crash(*args: Any) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(legacy.os, "replace", crash)
    with pytest.raises(StoreError, match="cashet clear"):
        Client(store_dir=store)
    monkeypatch.undo()
    assert legacy.is_legacy(store)
    conn = sqlite3.connect(store / "meta.db")
    assert conn.execute("SELECT count(*) FROM commits").fetchone()[0] == 5
    conn.close()
    assert not (store / "meta.db.migrating").exists()
    with Client(store_dir=store) as client:
        check_values(client, "v0.4.3")


@pytest.mark.parametrize("version", VERSIONS)
def test_an_old_export_archive_imports(tmp_path: Path, version: str) -> None:
    with Client(store_dir=tmp_path / "new") as client:
        result = client.import_archive(str(DATA / version / "export.tar.gz"))
        assert int(result) == 5
        check_values(client, version)
        assert len(client.log()) == 5
        again = client.import_archive(str(DATA / version / "export.tar.gz"))
        assert int(again) == 0


def _rewrite_archive(src: Path, dst: Path, change: Any) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for member in tin.getmembers():
            f = tin.extractfile(member)
            data = f.read() if f is not None else b""
            member, data = change(member, data)
            if member is None:
                continue
            member.size = len(data)
            import io

            tout.addfile(member, io.BytesIO(data))


def test_an_old_archive_with_a_forged_blob_is_refused_whole(tmp_path: Path) -> None:
    blob = expected("v0.5.0")["add"]["blob"]

    def forge(member: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        return member, (b"\x80\x05K\x07." if member.name.endswith(blob[2:]) else data)

    bad = tmp_path / "bad.tar.gz"
    _rewrite_archive(DATA / "v0.5.0" / "export.tar.gz", bad, forge)
    with Client(store_dir=tmp_path / "new") as client:
        with pytest.raises(ArchiveError, match="hash"):
            client.import_archive(str(bad))
        assert client.log() == [] and client.stats()["stored_objects"] == 0


def test_an_old_archive_never_writes_outside_the_store(tmp_path: Path) -> None:
    def escape(member: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if member.name.endswith("manifest.json"):
            member.name = "cashet-export/../../evil.json"
        return member, data

    bad = tmp_path / "bad.tar.gz"
    _rewrite_archive(DATA / "v0.4.3" / "export.tar.gz", bad, escape)
    with Client(store_dir=tmp_path / "new") as client:
        with pytest.raises(ArchiveError, match="unsafe"):
            client.import_archive(str(bad))
        assert client.log() == []
    assert not (tmp_path.parent / "evil.json").exists()


def test_a_migrated_store_exports_and_imports_again(tmp_path: Path) -> None:
    archive = tmp_path / "again.tar.gz"
    with Client(store_dir=old_store(tmp_path, "v0.4.3")) as client:
        assert int(client.export(str(archive))) == 5
    with Client(store_dir=tmp_path / "other") as other:
        assert int(other.import_archive(str(archive))) == 5
        check_values(other, "v0.4.3")


def test_an_ordinary_commit_with_a_wrong_hash_is_still_refused(tmp_path: Path) -> None:
    def triple(x: int) -> int:
        return x * 3

    archive = tmp_path / "ours.tar.gz"
    with Client(store_dir=tmp_path / "a") as client:
        client.submit(triple, 2)
        client.export(str(archive))

    def forge(member: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if "/commits/" in member.name:
            data = data.replace(b'"retries":0', b'"retries":1')
        return member, data

    bad = tmp_path / "bad.tar.gz"
    _rewrite_archive(archive, bad, forge)
    with Client(store_dir=tmp_path / "b") as client, pytest.raises(ArchiveError, match="forged"):
        client.import_archive(str(bad))


def test_an_old_store_open_elsewhere_is_refused_with_the_reason(tmp_path: Path) -> None:
    store = old_store(tmp_path, "v0.5.0")
    elsewhere = sqlite3.connect(store / "meta.db")  # as an old cashet would hold it
    elsewhere.execute("SELECT count(*) FROM commits").fetchone()
    try:
        with pytest.raises(StoreError, match="another process"):
            Client(store_dir=store)
    finally:
        elsewhere.close()
    assert legacy.is_legacy(store)
    with Client(store_dir=store) as client:
        check_values(client, "v0.5.0")


def test_two_processes_opening_an_old_store_migrate_it_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = old_store(tmp_path, "v0.4.3")
    code = (
        "import sys; from cashet import Client; c = Client(store_dir=sys.argv[1]);"
        "print(len(c.log())); c.close()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(store)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0] and outs == ["5", "5", "5"]
    with Client(store_dir=store) as client:
        check_values(client, "v0.4.3")


def test_the_async_client_opens_an_old_store(tmp_path: Path) -> None:
    import asyncio

    from cashet.async_client import AsyncClient

    store = old_store(tmp_path, "v0.5.0")
    want = expected("v0.5.0")

    async def main() -> None:
        async with AsyncClient(store_dir=store) as client:
            assert await client.get(want["double"]["commit"]) == 42
            assert len(await client.log()) == 5

    asyncio.run(main())


def test_an_old_archive_missing_a_blob_is_refused_whole(tmp_path: Path) -> None:
    blob = expected("v0.4.3")["big_list"]["blob"]

    def drop(member: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo | None, bytes]:
        return (None if member.name.endswith(blob[2:]) else member), data

    bad = tmp_path / "bad.tar.gz"
    _rewrite_archive(DATA / "v0.4.3" / "export.tar.gz", bad, drop)
    with Client(store_dir=tmp_path / "new") as client:
        with pytest.raises(ArchiveError, match="not in the archive"):
            client.import_archive(str(bad))
        assert client.log() == [] and client.stats()["stored_objects"] == 0


def test_an_unknown_old_layout_is_refused_never_a_raw_sql_error(tmp_path: Path) -> None:
    store = tmp_path / ".cashet"
    store.mkdir()
    conn = sqlite3.connect(store / "meta.db")
    conn.execute("CREATE TABLE commits (hash TEXT PRIMARY KEY, result TEXT)")
    conn.execute("INSERT INTO commits VALUES ('ab', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as info:
        Client(store_dir=store)
    message = str(info.value)
    assert "unknown layout" in message and "cashet clear" in message
    assert "already exists" not in message
    result = CliRunner().invoke(main, ["--store-dir", str(store), "clear", "--yes"])
    assert result.exit_code == 0, result.output
    with Client(store_dir=store) as client:
        assert client.log() == []
