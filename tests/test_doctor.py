"""``cashet doctor`` and ``client.check(repair=False)`` (issue 13): find the damage a store
holds, and with ``repair`` fix what can be fixed and report the rest.

Every fault here is made for real on the files of a store (a flipped index entry in
``meta.db``'s bytes, a deleted or truncated ``meta.db``, a deleted blob file or row, a lease
left by a process that exited, broken counters), then found, repaired, and found repaired.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cashet import Client
from cashet._process import hostname
from cashet.async_client import AsyncClient
from cashet.cli import main
from cashet.errors import DamagedStoreWarning
from cashet.models import Lease
from cashet.protocols import CheckReport, Checkup
from cashet.store import SQLiteStore
from tests.test_damaged_metadata import (
    CALLS,
    _index_pages_holding,
    _sorted_adjacent_pair,
    checkpoint,
    fingerprint_of,
    fp_bytes,
    populate,
    times_ten,
)

BIG: list[int] = []


def block(n: int) -> bytes:
    """An incompressible result of ``n`` KiB: a blob file of its own."""
    BIG.append(n)
    return b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(32 * n))


def db(store_dir: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(store_dir / "meta.db", isolation_level=None))


def blob_files(store_dir: Path) -> list[Path]:
    return sorted(p for p in (store_dir / "objects").rglob("*") if p.is_file())


def kinds(report: CheckReport, problems_only: bool = True) -> list[str]:
    return [f.kind for f in report.findings if f.problem or not problems_only]


def doctor(store_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--store-dir", str(store_dir), "doctor", *args])
    return result.exit_code, result.output


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / ".cashet"


def test_a_clean_store_is_ok(store_dir: Path) -> None:
    populate(store_dir, range(3))
    with Client(store_dir) as c:
        assert isinstance(c.store, Checkup)
        report = c.check()
    assert report.ok and report.findings == [] and report.counts["commits"] == 3
    code, out = doctor(store_dir)
    assert code == 0 and "OK: nothing wrong is left" in out
    code, out = doctor(store_dir, "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["counts"]["commits"] == 3
    assert data["findings"] == [] and data["repair"] is False


def test_doctor_without_a_store(tmp_path: Path) -> None:
    code, out = doctor(tmp_path / "none")
    assert code == 1 and "no cashet store" in out


def test_a_damaged_index_is_found_and_rebuilt(store_dir: Path) -> None:
    """The flipped index entry of item 1: ``integrity_check`` finds it, ``REINDEX`` fixes
    it, and lookups answer from the rebuilt index."""
    hashes = populate(store_dir, range(6))
    small, large = _sorted_adjacent_pair(store_dir)
    checkpoint(store_dir)
    with db(store_dir) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray((store_dir / "meta.db").read_bytes())
    (at,) = _index_pages_holding(bytes(data), fp_bytes(large), page_size)
    data[at : at + 8] = fp_bytes(small)
    (store_dir / "meta.db").write_bytes(bytes(data))
    code, out = doctor(store_dir)
    assert code == 1 and "[problem] integrity" in out and "commits_fp" in out
    code, out = doctor(store_dir, "--repair")
    assert code == 0 and "[reindexed] integrity" in out, out
    assert doctor(store_dir)[0] == 0
    CALLS.clear()
    with Client(store_dir) as c:
        for x, h in hashes.items():
            ref = c.submit(times_ten, x)
            assert ref.cached and ref.commit_hash == h and ref.load() == x * 10
        assert fingerprint_of(store_dir, hashes[0])
    assert CALLS == []


def test_a_damaged_row_is_listed_then_quarantined(store_dir: Path) -> None:
    hashes = populate(store_dir)
    with db(store_dir) as conn:
        conn.execute("UPDATE commits SET body = '{not json' WHERE hash = ?", (hashes[1],))
    with Client(store_dir) as c:
        report = c.check()
        assert kinds(report) == ["damaged_commit"] and report.findings[0].subject == hashes[1]
        assert c.store.quarantined() == []  # type: ignore[attr-defined]  # check wrote nothing
        repaired = c.check(repair=True)
        assert [f.action for f in repaired.findings if f.problem] == ["quarantined"]
        assert repaired.ok and kinds(repaired, problems_only=False)[-1] == "quarantined"
        after = c.check()
        assert after.ok and kinds(after, problems_only=False) == ["quarantined"]
        # rm of a quarantined commit: it is not there as far as the user can see.
        assert c.rm(hashes[1]) is False
        assert c.stats()["total_commits"] == 1
        CALLS.clear()
        assert c.submit(times_ten, 1).load() == 10 and CALLS == [1]


@pytest.mark.parametrize("how", ["deleted", "zero-length"])
def test_a_lost_meta_db_is_said_and_its_blobs_reclaimed(store_dir: Path, how: str) -> None:
    """Item 5: a deleted or truncated ``meta.db`` used to reopen empty, silently, and its
    ``objects/`` files were never reclaimed, even by gc of everything."""
    with Client(store_dir) as c:
        for n in (40, 41, 42):
            c.submit(block, n)
    files = blob_files(store_dir)
    assert len(files) == 3
    size = sum(p.stat().st_size for p in files)
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        (store_dir / name).unlink(missing_ok=True)
    if how == "zero-length":
        (store_dir / "meta.db").write_bytes(b"")
    with pytest.warns(DamagedStoreWarning, match=r"3 blob file\(s\).*cashet doctor --repair"):
        c = Client(store_dir)
    with c:
        assert c.clear() == 0 and len(blob_files(store_dir)) == 3  # gc does not walk files
        report = c.check()
        assert kinds(report) == ["orphan_file"] * 3 and not report.ok
    with Client(store_dir) as c:  # said once: the store has a database again
        pass
    code, out = doctor(store_dir, "--repair", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["reclaimed_bytes"] == size
    assert [f["action"] for f in data["findings"]] == ["reclaimed"] * 3
    assert blob_files(store_dir) == []


def test_doctor_repairs_a_store_whose_meta_db_is_gone(store_dir: Path) -> None:
    with Client(store_dir) as c:
        c.submit(block, 40)
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        (store_dir / name).unlink(missing_ok=True)
    code, out = doctor(store_dir, "--repair")
    assert code == 0 and "[reclaimed] orphan_file" in out and "Reclaimed" in out
    assert blob_files(store_dir) == []


def test_a_blob_file_a_commit_uses_is_adopted(store_dir: Path) -> None:
    """A blob row lost (the file is there, a commit uses it): adopted, and the hit serves."""
    with Client(store_dir) as c:
        ref = c.submit(block, 40)
    with db(store_dir) as conn:
        conn.execute("DELETE FROM blobs WHERE hash = ?", (ref.hash,))
    with Client(store_dir) as c:
        report = c.check()
        assert sorted(kinds(report)) == ["missing_blob", "orphan_file"]
        repaired = c.check(repair=True)
        assert [f.action for f in repaired.findings] == ["adopted"] and repaired.ok
        BIG.clear()
        again = c.submit(block, 40)
        assert again.cached and len(again.load()) == 40 * 1024 and BIG == []
        assert c.check().ok


def test_a_commit_whose_blob_file_is_gone_is_removed(store_dir: Path) -> None:
    with Client(store_dir) as c:
        ref = c.submit(block, 40)
        kept = c.submit(times_ten, 4)
    (store_dir / "objects" / ref.hash[:2] / ref.hash[2:]).unlink()
    with Client(store_dir) as c:
        (finding,) = c.check().findings
        assert finding.kind == "missing_blob" and "missing" in finding.detail
        repaired = c.check(repair=True)
        assert repaired.ok and "removed 1 commit" in repaired.findings[0].action
        assert c.show(ref.commit_hash) is None and c.show(kept.commit_hash) is not None
        BIG.clear()
        assert not c.submit(block, 40).cached and BIG == [40]
        assert c.check().ok


def _exited_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)


def test_stale_leases_are_found_and_removed(store_dir: Path) -> None:
    populate(store_dir)
    soon = datetime.now(UTC) + timedelta(minutes=5)
    with SQLiteStore(store_dir) as s:
        dead = Lease(
            owner="dead", host=hostname(), pid=_exited_pid(), expires_at=soon, func_name="gone"
        )
        live = Lease(
            owner="live", host=hostname(), pid=os.getpid(), expires_at=soon, func_name="running"
        )
        assert s.try_claim("f:dead", dead) and s.try_claim("f:live", live)
        report = s.check()
        assert kinds(report) == ["stale_lease"] and report.findings[0].subject == "f:dead"
        assert report.counts["leases"] == 2
        assert [f.action for f in s.check(repair=True).findings] == ["removed"]
        assert s.check().ok and s.get_claim("f:live") is not None


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE counters SET total_commits = 'x'",
        "DELETE FROM counters",
        "UPDATE counters SET blob_bytes = -5",
        # (a tiny result is kept in its commit's row: a blob row of it, miscounted)
        "INSERT INTO blobs SELECT result_hash, result_size, length(result_data), result_data,"
        " 7, 0 FROM commits WHERE result_data IS NOT NULL LIMIT 1",
    ],
)
def test_damaged_counters_stats_never_crashes(store_dir: Path, damage: str) -> None:
    populate(store_dir)
    with db(store_dir) as conn:
        conn.execute(damage)
    with Client(store_dir) as c:
        stats = c.stats()
        assert isinstance(stats["total_commits"], int)
        report = c.check()
        assert not report.ok and set(kinds(report)) <= {"counters", "refcount"}
        assert c.check(repair=True).ok and c.check().ok
        assert c.stats()["total_commits"] == 2
    code, out = doctor(store_dir)
    assert code == 0, out
    result = CliRunner().invoke(main, ["--store-dir", str(store_dir), "stats", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["total_commits"] == 2


def test_a_read_only_store_reports_and_repairs_nothing(store_dir: Path) -> None:
    hashes = populate(store_dir)
    with db(store_dir) as conn:
        conn.execute("UPDATE commits SET body = '{not json' WHERE hash = ?", (hashes[1],))
    with Client(store_dir, readonly=True) as c:
        report = c.check(repair=True)
        assert kinds(report) == ["readonly", "damaged_commit"] and not report.ok
    with Client(store_dir) as c:
        assert kinds(c.check()) == ["damaged_commit"]


def test_check_rejects_a_non_bool_and_async_client_checks(store_dir: Path) -> None:
    populate(store_dir)
    with Client(store_dir) as c, pytest.raises(TypeError, match="repair must be a bool"):
        c.check(repair="yes")  # type: ignore[arg-type]

    async def go() -> dict[str, Any]:
        async with AsyncClient(store_dir) as c:
            return (await c.check()).to_dict()

    data = asyncio.run(go())
    assert data["ok"] and data["counts"]["commits"] == 2


def test_temporary_files_of_a_dead_write_are_reclaimed(store_dir: Path) -> None:
    populate(store_dir)
    shard = store_dir / "objects" / "ab"
    shard.mkdir(parents=True)
    tmp = shard / ".tmp-abcdef01-0123456789ab"
    tmp.write_bytes(b"half a blob")
    young = shard / ".tmp-abcdef02-0123456789ab"
    young.write_bytes(b"being written")
    old = datetime.now().timestamp() - 2 * SQLiteStore.orphan_grace
    os.utime(tmp, (old, old))
    with Client(store_dir) as c:
        assert kinds(c.check()) == ["orphan_file"]
        assert c.check(repair=True).ok
    assert not tmp.exists() and young.exists()


# --- the same on Redis ----------------------------------------------------------------------


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[tuple[Client, Any, str]]:
    import redis

    from cashet.redis_store import RedisStore
    from tests._redis import drop_prefix, fresh_prefix

    prefix = fresh_prefix()
    raw = redis.Redis.from_url(redis_url)
    try:
        with Client(store=RedisStore(redis_url, prefix=prefix)) as c:
            yield c, raw, prefix
    finally:
        raw.close()
        drop_prefix(redis_url, prefix)


@pytest.mark.redis
def test_redis_a_clean_store_is_ok(redis_store: tuple[Client, Any, str], redis_url: str) -> None:
    from tests._redis import check_invariants

    c, _, p = redis_store
    populate_client(c)
    report = c.check()
    assert report.ok and report.findings == [], report.findings
    assert report.counts["commits"] == 3 and report.counts["blobs"] == 3
    check_invariants(redis_url, p)


def populate_client(c: Client) -> dict[int, Any]:
    refs = {x: c.submit(times_ten, x) for x in range(2)}
    refs[40] = c.submit(block, 40)
    return refs


@pytest.mark.redis
def test_redis_invariants_broken_then_repaired(
    redis_store: tuple[Client, Any, str], redis_url: str
) -> None:
    """Each invariant of tests/_redis.py check_invariants broken by hand: found, repaired,
    and the invariants hold again."""
    from tests._redis import check_invariants

    c, raw, p = redis_store
    refs = populate_client(c)
    h0, h1 = refs[0].commit_hash, refs[1].commit_hash
    raw.zadd(f"{p}index:created", {"f" * 64: 1})  # a dangling index entry
    raw.zadd(f"{p}index:func:gone", {"e" * 64: 1})
    raw.zrem(f"{p}index:hashes", h0)  # a commit missing from an index
    raw.set(f"{p}blob:ref:{refs[1].hash}", 5)  # a wrong reference count
    raw.set(f"{p}blob:data:{'d' * 64}", b"stray")  # bytes no meta key publishes
    raw.hset(f"{p}commit:{h1}", "b", b"{not json")  # a damaged commit
    raw.hincrby(f"{p}stats:commit", "total_commits", 3)  # wrong counters
    report = c.check()
    found = sorted(set(kinds(report)))
    assert found == [
        "counters",
        "damaged_commit",
        "dangling_index",
        "missing_index",
        "orphan_blob",
        "refcount",
    ], report.findings
    with pytest.raises(AssertionError):
        check_invariants(redis_url, p)
    repaired = c.check(repair=True)
    assert repaired.ok, repaired.remaining
    assert c.check().ok
    check_invariants(redis_url, p)
    CALLS.clear()
    assert c.submit(times_ten, 0).cached and c.submit(times_ten, 1).load() == 10
    assert CALLS == [1]


@pytest.mark.redis
def test_redis_a_lost_blob_and_a_stale_lease(redis_store: tuple[Client, Any, str]) -> None:
    c, raw, p = redis_store
    refs = populate_client(c)
    raw.delete(f"{p}blob:data:{refs[40].hash}")
    soon = datetime.now(UTC) + timedelta(minutes=5)
    dead = Lease(
        owner="dead", host=hostname(), pid=_exited_pid(), expires_at=soon, func_name="gone"
    )
    assert c.store.try_claim("f:dead", dead)  # type: ignore[attr-defined]
    report = c.check()
    assert sorted(kinds(report)) == ["missing_blob", "stale_lease"], report.findings
    repaired = c.check(repair=True)
    assert repaired.ok and c.check().ok
    assert c.show(refs[40].commit_hash) is None
    BIG.clear()
    assert not c.submit(block, 40).cached and BIG == [40]


@pytest.mark.redis
def test_redis_async_check(redis_url: str) -> None:
    import redis

    from cashet.redis_store import AsyncRedisStore
    from tests._redis import drop_prefix, fresh_prefix

    prefix = fresh_prefix()

    async def go() -> tuple[CheckReport, CheckReport]:
        async with AsyncClient(store=AsyncRedisStore(redis_url, prefix=prefix)) as c:
            await c.submit(times_ten, 7)
            raw = redis.Redis.from_url(redis_url)
            try:
                raw.zadd(f"{prefix}index:created", {"f" * 64: 1})
            finally:
                raw.close()
            return await c.check(), await c.check(repair=True)

    try:
        found, repaired = asyncio.run(go())
    finally:
        drop_prefix(redis_url, prefix)
    assert kinds(found) == ["dangling_index"] and repaired.ok


def listed(x: int) -> list[Any]:
    return [x] * (x % 7) + [str(x)]


def test_fuzz_the_doctor_over_flipped_bits(tmp_path: Path) -> None:
    """Random bit flips in ``meta.db`` (seeded): the doctor never raises anything but a
    ``CashetError``, its report is JSON-able, after ``--repair`` only damage a REINDEX cannot
    fix is left, and the cache never serves a wrong value."""
    import random
    import shutil

    from cashet.errors import CashetError

    base = tmp_path / "base"
    with Client(base) as c:
        for i in range(40):
            c.submit(listed, i, _tags={"k": str(i % 3)})
        c.submit(block, 40)
    checkpoint(base)
    rng = random.Random(13)
    errors, left = 0, 0
    for trial in range(60):
        d = tmp_path / f"t{trial % 2}"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(base, d)
        data = bytearray((d / "meta.db").read_bytes())
        for _ in range(rng.choice([1, 1, 2, 8])):
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
        (d / "meta.db").write_bytes(bytes(data))
        try:
            with Client(d) as c:
                json.dumps(c.check().to_dict())
                repaired = c.check(repair=True)
                json.dumps(repaired.to_dict())
                after = c.check()
                if not after.ok:
                    left += 1
                    # Left: damage a REINDEX cannot fix, and what its repair could not reach
                    # because of it (a repair that failed on the malformed file).
                    blocked = any(
                        f.kind == "repair_failed" and "malformed" in f.detail
                        for f in repaired.findings
                    )
                    kinds = {f.kind for f in after.remaining}
                    assert "integrity" in kinds, after.remaining
                    assert kinds == {"integrity"} or blocked, after.remaining
                for i in range(0, 40, 7):
                    assert c.submit(listed, i).load() == listed(i)
            if trial % 10 == 0:
                code, out = doctor(d, "--json")
                assert code in (0, 1) and json.loads(out)["store"]
        except CashetError:
            errors += 1
    assert left < 10 and errors < 30


def test_a_read_command_on_a_store_that_lost_its_database_points_at_the_doctor(
    store_dir: Path,
) -> None:
    with Client(store_dir) as c:
        c.submit(block, 40)
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        (store_dir / name).unlink(missing_ok=True)
    result = CliRunner().invoke(main, ["--store-dir", str(store_dir), "log"])
    assert result.exit_code == 1 and "cashet doctor --repair" in result.output


@pytest.mark.redis
def test_redis_doctor_after_hits_were_counted(redis_store: tuple[Client, Any, str]) -> None:
    """The commit counters' hash also holds the hit totals (``hits_saved`` a float): the
    check compares only what it counts, and a damaged counter is reported, not a crash."""
    client, raw, prefix = redis_store
    client.submit(times_ten, 4)
    assert client.submit(times_ten, 4).cached
    client.store.flush_hits()  # type: ignore[attr-defined]
    assert client.stats()["hits"] == 1
    report = client.check()
    assert report.ok, report.findings
    raw.hset(f"{prefix}stats:commit", "total_commits", "garbage")
    damaged = client.check(repair=True)
    assert [f.kind for f in damaged.findings if f.problem] == ["counters"]
    assert damaged.findings[-1].action == "recounted"
    assert client.check().ok and client.stats()["hits"] == 1
