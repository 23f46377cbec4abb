"""Metadata is verified like blobs (issue 13, items 1 and 5): a damaged commit record or a
damaged index is a miss and recomputes, never another call's value, and never an exception
other than a clear cashet error from any public call. Damaged records are set aside in the
store's quarantine (``quarantined()``), for a doctor to report.
"""

from __future__ import annotations

import itertools
import sqlite3
import tarfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cashet import Client
from cashet.cli import main
from cashet.errors import CashetError, CommitNotFoundError
from cashet.hashing.commits import stored_json, verified_commit
from cashet.stores.quarantine import COMMIT, INDEX, QuarantineLog

CALLS: list[int] = []


def times_ten(x: int) -> int:
    CALLS.append(x)
    return x * 10


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / ".cashet"


def populate(store_dir: Path, xs: range = range(2)) -> dict[int, str]:
    """Commits of ``times_ten(x)``; returns each x's commit hash."""
    with Client(store_dir) as c:
        return {x: c.submit(times_ten, x).commit_hash for x in xs}


def db(store_dir: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(store_dir / "meta.db", isolation_level=None))


def fingerprint_of(store_dir: Path, commit_hash: str) -> int:
    """The fingerprint key of a commit's row (schema v6: ``lean.fp_key``)."""
    with db(store_dir) as conn:
        row = conn.execute("SELECT fp FROM commits WHERE hash = ?", (commit_hash,))
        fp: int = row.fetchone()[0]
    return fp


def fp_bytes(fp: int) -> bytes:
    """How a fingerprint key is written in a record (a 64-bit big-endian integer)."""
    return fp.to_bytes(8, "big", signed=True)


def checkpoint(store_dir: Path) -> None:
    """Fold the WAL into meta.db, so that its bytes are all in the one file."""
    with db(store_dir) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# --- item 1: an index or a column pointing a lookup at another call's commit -----------------


def test_swapped_fingerprint_columns_recompute_the_right_values(store_dir: Path) -> None:
    hashes = populate(store_dir)
    fp0, fp1 = fingerprint_of(store_dir, hashes[0]), fingerprint_of(store_dir, hashes[1])
    with db(store_dir) as conn:
        conn.execute("UPDATE commits SET fp = ? WHERE hash = ?", (fp1, hashes[0]))
        conn.execute("UPDATE commits SET fp = ? WHERE hash = ?", (fp0, hashes[1]))
    CALLS.clear()
    with Client(store_dir) as c:
        r0, r1 = c.submit(times_ten, 0), c.submit(times_ten, 1)
        assert (r0.load(), r1.load()) == (0, 10)  # was (10, 0): the other call's value
        assert not r0.cached and not r1.cached and CALLS == [0, 1]
        assert c.submit(times_ten, 0).cached and c.submit(times_ten, 1).load() == 10
        store = c.store
        assert issubclass(type(store), QuarantineLog)
        entries = store.quarantined()  # type: ignore[attr-defined]
        assert {e.hash for e in entries} == set(hashes.values())
        assert all(e.kind == COMMIT and "contradict" in e.reason for e in entries)
        assert all(e.record and hashes[0][:8] in str(entries) for e in entries)
        # Set aside, not lost: log shows the new commits only, the old bodies are kept.
        assert len(c.log()) == 2 and not set(hashes.values()) & {x.hash for x in c.log()}


def _sorted_adjacent_pair(store_dir: Path) -> tuple[int, int]:
    """Two commits whose fingerprints are neighbours in the index, the smaller created
    first: re-pointing the later one's index entry at the smaller fingerprint keeps the
    index sorted (a silent corruption, as a flipped bit can make)."""
    with db(store_dir) as conn:
        rows = conn.execute("SELECT fp, created_at, hash FROM commits ORDER BY fp").fetchall()
    for (fa, ta, _), (fb, tb, _) in itertools.pairwise(rows):
        if ta < tb:
            return fa, fb
    raise AssertionError("no such pair")  # 1 chance in 720 with 6 commits: fixed by their hashes


def _index_pages_holding(data: bytes, needle: bytes, page_size: int) -> list[int]:
    """Offsets of ``needle`` on index b-tree pages (not in the table's rows)."""
    found, at = [], data.find(needle)
    while at >= 0:
        page = at // page_size
        header = page * page_size + (100 if page == 0 else 0)
        if data[header] in (0x02, 0x0A):  # interior or leaf index page
            found.append(at)
        at = data.find(needle, at + 1)
    return found


def test_a_damaged_fingerprint_index_is_a_miss_not_another_calls_value(store_dir: Path) -> None:
    hashes = populate(store_dir, range(6))
    small, large = _sorted_adjacent_pair(store_dir)
    checkpoint(store_dir)
    with db(store_dir) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray((store_dir / "meta.db").read_bytes())
    (at,) = _index_pages_holding(bytes(data), fp_bytes(large), page_size)
    data[at : at + 8] = fp_bytes(small)  # the entry of `large` now says `small`
    (store_dir / "meta.db").write_bytes(bytes(data))
    x_small = next(x for x, h in hashes.items() if fingerprint_of(store_dir, h) == small)
    CALLS.clear()
    with Client(store_dir) as c:
        ref = c.submit(times_ten, x_small)
        assert ref.load() == x_small * 10 and not ref.cached and [x_small] == CALLS
        assert c.submit(times_ten, x_small).cached
        entries = c.store.quarantined()  # type: ignore[attr-defined]
        assert [e.kind for e in entries] == [INDEX]
        assert "another call" in entries[0].reason
        # The commit the damaged entry pointed at is intact: it stays, log shows it.
        assert entries[0].hash in {x.hash for x in c.log()}


def test_a_column_saying_cacheable_or_completed_does_not_make_a_hit(store_dir: Path) -> None:
    with Client(store_dir) as c:
        h = c.submit(times_ten, 3, _cache=False).commit_hash
    with db(store_dir) as conn:  # one flipped bit: cache 0 -> 1
        conn.execute("UPDATE commits SET cache = 1 WHERE hash = ?", (h,))
    CALLS.clear()
    with Client(store_dir) as c:
        assert c.submit(times_ten, 3).load() == 30 and CALLS == [3]


# --- item 5: a damaged commit row, for every public call ------------------------------------


@pytest.fixture
def damaged(store_dir: Path) -> Iterator[tuple[Path, str, str]]:
    """A store whose commit of times_ten(1) holds invalid JSON; yields it, that hash and the
    intact commit of times_ten(0)."""
    hashes = populate(store_dir)
    with db(store_dir) as conn:
        conn.execute("UPDATE commits SET body = '{not json' WHERE hash = ?", (hashes[1],))
    yield store_dir, hashes[1], hashes[0]


def test_damaged_row_submit_recomputes(damaged: tuple[Path, str, str]) -> None:
    store_dir, bad, _ = damaged
    CALLS.clear()
    with Client(store_dir) as c:
        ref = c.submit(times_ten, 1)
        assert ref.load() == 10 and not ref.cached and CALLS == [1]
        assert c.submit(times_ten, 1).cached and c.submit(times_ten, 0).cached
        (entry,) = c.store.quarantined()  # type: ignore[attr-defined]
        assert (
            entry.hash == bad and entry.kind == COMMIT and "not a readable commit" in entry.reason
        )
        assert entry.record is not None and "{not json" in entry.record  # kept as found


def test_damaged_row_log_show_history_rm_skip_it(damaged: tuple[Path, str, str]) -> None:
    store_dir, bad, good = damaged
    with Client(store_dir) as c:
        assert [x.hash for x in c.log()] == [good]
        assert [x.hash for x in c.log(limit=1)] == [good]
        assert c.show(good).hash == good
        assert c.show(bad) is None  # set aside: not a commit any more (issue 12: None)
        assert c.rm(bad) is False  # already out of the commits
        with pytest.raises(CommitNotFoundError, match=r"damaged.*quarantine"):
            c.get(bad)  # the errors that name a hash say why it is gone
        assert [x.hash for x in c.history(good)] == [good]
        assert c.stats()["total_commits"] == 1
        assert c.rm(good) and c.log() == []


def test_damaged_row_log_with_a_limit_fills_up(store_dir: Path) -> None:
    hashes = populate(store_dir, range(5))
    with db(store_dir) as conn:
        for x in (3, 4):  # the two newest
            conn.execute("UPDATE commits SET body = 'x' || body WHERE hash = ?", (hashes[x],))
    with Client(store_dir) as c:
        assert [x.hash for x in c.log(limit=3)] == [hashes[2], hashes[1], hashes[0]]


def test_damaged_row_export_leaves_it_out(damaged: tuple[Path, str, str], tmp_path: Path) -> None:
    store_dir, bad, good = damaged
    with Client(store_dir) as c:
        c.export(tmp_path / "out.tar.gz")
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        names = tar.getnames()
    assert any(good in n for n in names) and not any(bad in n for n in names)


def test_damaged_row_cli_log_and_show(damaged: tuple[Path, str, str]) -> None:
    store_dir, bad, good = damaged
    runner = CliRunner()
    out = runner.invoke(main, ["--store-dir", str(store_dir), "log"])
    assert out.exit_code == 0, out.output
    assert good[:8] in out.output and bad[:8] not in out.output
    for command in ("show", "rm"):
        out = runner.invoke(main, ["--store-dir", str(store_dir), command, bad])
        assert out.exit_code == 1 and "no commit" in out.output, out.output
        assert "Traceback" not in out.output
    out = runner.invoke(main, ["--store-dir", str(store_dir), "get", bad])
    assert out.exit_code == 1 and "quarantine" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE commits SET body = replace(body, '\"x * 10', '\"x * 11')",  # verifies no more
        "UPDATE commits SET body = CAST(body AS BLOB) || x'ff'",  # not text
        "UPDATE commits SET body = 42",  # another type
        "UPDATE commits SET hash = 'f' || substr(hash, 2)",  # the key, not the body
        "UPDATE commits SET last_accessed = 'soon'",  # not a time: reads as never accessed
    ],
)
def test_any_damaged_row_is_a_miss_or_a_hit_never_an_error(store_dir: Path, damage: str) -> None:
    populate(store_dir, range(1))
    with db(store_dir) as conn:
        conn.execute(damage)
    with Client(store_dir) as c:
        assert c.submit(times_ten, 0).load() == 0
        assert all(x.task_def.args_snapshot for x in c.log())
        for commit in c.log():
            assert c.show(commit.hash) == commit


def test_verified_commit_names_what_is_wrong(store_dir: Path) -> None:
    h = populate(store_dir, range(1))[0]
    with Client(store_dir) as c:
        body = stored_json(c.show(h))  # what Redis and archives keep (v6 rows are leaner)
    assert verified_commit(body, h).hash == h
    assert verified_commit(body.encode()).hash == h
    with pytest.raises(ValueError, match="records the hash"):
        verified_commit(body, "0" * 64)
    with pytest.raises(ValueError, match="content hashes to"):
        verified_commit(body.replace("x * 10", "x * 11"), h)
    with pytest.raises(ValueError, match="not a readable commit"):
        verified_commit(None, h)


# --- the same on Redis ----------------------------------------------------------------------


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[tuple[Client, Any, str]]:
    import redis

    from cashet.redis_store import RedisStore
    from tests._redis import check_invariants, drop_prefix, fresh_prefix

    prefix = fresh_prefix()
    raw = redis.Redis.from_url(redis_url)
    try:
        with Client(store=RedisStore(redis_url, prefix=prefix)) as c:
            yield c, raw, prefix
        check_invariants(redis_url, prefix)  # a commit set aside leaves the keys consistent
    finally:
        raw.close()
        drop_prefix(redis_url, prefix)


def fresh_client(c: Client) -> Client:
    """Another process's view: no commit decoded yet."""
    from cashet.redis_store import RedisStore

    store = c.store
    assert isinstance(store, RedisStore)
    return Client(store=RedisStore(store._ops.url, prefix=store.prefix))


@pytest.mark.redis
def test_redis_a_body_of_another_commit_is_a_miss(redis_client: tuple[Client, Any, str]) -> None:
    c, raw, p = redis_client
    h0, h1 = c.submit(times_ten, 0).commit_hash, c.submit(times_ten, 1).commit_hash
    raw.hset(f"{p}commit:{h0}", "b", raw.hget(f"{p}commit:{h1}", "b"))  # h0 holds h1's body
    CALLS.clear()
    with fresh_client(c) as other:
        ref = other.submit(times_ten, 0)
        assert ref.load() == 0 and not ref.cached and CALLS == [0]
        assert other.submit(times_ten, 0).cached and other.submit(times_ten, 1).load() == 10
        (entry,) = other.store.quarantined()  # type: ignore[attr-defined]
        assert entry.hash == h0 and entry.kind == COMMIT and "records the hash" in entry.reason
        assert h0 not in {x.hash for x in other.log()}


@pytest.mark.redis
def test_redis_a_hit_index_pointing_at_another_call_is_a_miss(
    redis_client: tuple[Client, Any, str],
) -> None:
    c, raw, p = redis_client
    r0, r1 = c.submit(times_ten, 0), c.submit(times_ten, 1)
    fp0 = c.show(r0.commit_hash).task_def.fingerprint
    assert c.submit(times_ten, 1).cached  # this process decoded (and keeps) that commit
    # The newest entry of fp0's hit index is now the commit of times_ten(1).
    raw.zadd(f"{p}index:hit:{fp0}", {r1.commit_hash: 1e18})
    CALLS.clear()
    for client in (c, fresh_client(c)):  # whether the commit was decoded here before or not
        # A miss (the run found, once leased, may be the one recomputed before): right value
        assert client.submit(times_ten, 0).load() == 0 and CALLS in ([0], [])
        assert client.submit(times_ten, 0).cached  # the stray entry was dropped
        CALLS.clear()
        raw.zadd(f"{p}index:hit:{fp0}", {r1.commit_hash: 1e18})
    entries = c.store.quarantined()  # type: ignore[attr-defined]
    assert entries and {e.kind for e in entries} == {INDEX}


@pytest.mark.redis
def test_redis_invalid_json_every_public_call(
    redis_client: tuple[Client, Any, str], tmp_path: Path
) -> None:
    c, raw, p = redis_client
    h0, h1 = c.submit(times_ten, 0).commit_hash, c.submit(times_ten, 1).commit_hash
    raw.hset(f"{p}commit:{h1}", "b", b"{not json")
    CALLS.clear()
    with fresh_client(c) as other:
        assert [x.hash for x in other.log()] == [h0]
        c.export(tmp_path / "out.tar.gz")
        assert other.show(h1) is None
        with pytest.raises(CommitNotFoundError, match="quarantine"):
            other.get(h1)
        assert other.submit(times_ten, 1).load() == 10 and CALLS == [1]
        assert other.submit(times_ten, 1).cached
        assert len(other.log()) == 2 and h1 not in {x.hash for x in other.log()}


# --- a small result's bytes read along with the hit ----------------------------------------


def test_inline_result_bytes_that_do_not_verify_are_never_served(store_dir: Path) -> None:
    import pickle

    with Client(store_dir) as c:
        c.submit(times_ten, 3)
    right, wrong = pickle.dumps(30, 5), pickle.dumps(31, 5)  # one bit apart
    with db(store_dir) as conn:
        # a tiny result, kept in its commit's row (schema v8)
        (inline,) = conn.execute("SELECT result_data FROM commits").fetchone()
        assert inline.endswith(right)
        conn.execute("UPDATE commits SET result_data = ?", (inline[: -len(right)] + wrong,))
    with Client(store_dir) as c:
        try:
            value = c.submit(times_ten, 3).load()
        except CashetError:  # BlobCorruptedError: reported, and forgotten
            value = 30
        assert value == 30  # was 31: the damaged bytes, decoded but not verified
        assert c.submit(times_ten, 3).load() == 30


def test_verified_commit_fast_and_slow_forms(store_dir: Path) -> None:
    from cashet.hashing.commits import commit_to_json, stored_json

    with Client(store_dir) as c:
        h = c.submit(times_ten, 5, _tags={"hash": "x", "a": ',"hash":"'}).commit_hash
        commit = c.show(h)
    sealed, plain = stored_json(commit), commit_to_json(commit)
    assert sealed != plain  # the plain form (archives, older stores) is checked the slow way
    for body in (sealed, plain):
        got = verified_commit(body, h)
        assert got.hash == h and got.tags == commit.tags and got.task_def == commit.task_def
        assert verified_commit(body).hash == h
    # Only the verified content is used: a damaged recorded hash in the tail is no matter
    # when the store knows the hash, and fails when it does not.
    damaged_tail = sealed.replace(f'"hash":"{h}"', f'"hash":"{"0" * 64}"')
    assert verified_commit(damaged_tail, h) == verified_commit(sealed, h)
    with pytest.raises(ValueError):
        verified_commit(damaged_tail)
    with pytest.raises(ValueError):
        verified_commit(sealed.replace("x * 10", "x * 12"), h)


@pytest.mark.redis
def test_redis_a_store_refusing_the_quarantine_write_still_misses(
    redis_client: tuple[Client, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from cashet.stores.redis import damage_ops
    from cashet.stores.redis.keys import Script

    source = "return redis.error_reply('READONLY You can not write against a read only replica')"
    refusing = Script("quarantine", source, hashlib.sha1(source.encode()).hexdigest())
    monkeypatch.setattr(damage_ops, "QUARANTINE_COMMIT", refusing)
    c, raw, p = redis_client
    h = c.submit(times_ten, 4).commit_hash
    body = raw.hget(f"{p}commit:{h}", "b")
    raw.hset(f"{p}commit:{h}", "b", b"{not json")
    CALLS.clear()
    with fresh_client(c) as other:
        assert other.submit(times_ten, 4).load() == 40 and CALLS == [4]
        assert other.store.quarantined() == []  # type: ignore[attr-defined]
    raw.hset(f"{p}commit:{h}", "b", body)  # consistent again, for the invariant check
