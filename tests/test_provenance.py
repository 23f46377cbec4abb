"""Provenance and lifecycle through ``Client``: log, show, get, diff, history, rm, gc, TTL,
tags, stats, clear — the README's API section run as written, then the edges."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cashet import (
    AmbiguousHashError,
    Client,
    CommitNotFoundError,
    TaskError,
    TaskStatus,
)
from cashet.hashing import ignore
from cashet.hashing.commits import compute_commit_hash
from cashet.models import Commit, Lease, ObjectRef, TaskDef
from cashet.provenance.diff import diff_args

CALLS: list[Any] = []


def preprocess(raw: list[int], scale: int = 1) -> list[int]:
    CALLS.append(("preprocess", raw))
    return [x * scale for x in raw]


def train(data: list[int], lr: float = 0.01) -> dict[str, Any]:
    CALLS.append(("train", lr))
    return {"loss": 0.05, "lr": lr, "samples": len(data)}


def flaky(x: int) -> int:
    raise ValueError(f"bad input {x}")


def stamp(x: int) -> float:
    CALLS.append(("stamp", x))
    return time.time()


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(store_dir=tmp_path / ".cashet") as c:
        yield c


def put_commit(
    client: Client,
    func_name: str = "old",
    *,
    value: bytes = b"value",
    created: datetime | None = None,
    accessed: datetime | None = None,
    expires: datetime | None = None,
    tags: dict[str, str] | None = None,
    args_hash: str = "a" * 64,
) -> Commit:
    """Record a commit directly in the store, with chosen times."""
    store = client.store
    ref = store.put_blob(value)
    created = created or datetime.now(UTC)
    commit = Commit(
        hash="",
        task_def=TaskDef(func_name=func_name, func_hash="f" * 64, args_hash=args_hash),
        status=TaskStatus.COMPLETED,
        created_at=created,
        result=ref,
        tags=dict(tags or {}),
        expires_at=expires,
        last_accessed=accessed,
        salt=f"{func_name}{value!r}{created.isoformat()}",
    )
    commit.hash = compute_commit_hash(commit)
    store.put_commit(commit)
    return commit


# --- the README's API section, as written ---------------------------------------------------


def test_readme_api_section(client: Client) -> None:
    preprocess([1, 2, 3])  # plain call, not cached
    ref = client.submit(preprocess, [1, 2, 3], scale=2)
    hash = ref.commit_hash
    client.submit(train, ref, lr=0.01, _tags={"experiment": "v1"})
    with pytest.raises(TaskError):
        client.submit(flaky, 1)

    # List commits
    commits = client.log(func_name="preprocess", limit=10)
    assert [c.hash for c in commits] == [hash]

    # Filter by status
    commits = client.log(status="failed")
    assert [c.func_name for c in commits] == ["flaky"]

    # Filter by tags
    commits = client.log(tags={"experiment": "v1"})
    assert [c.func_name for c in commits] == ["train"]

    # Get commit details
    commit = client.show(hash)
    assert "def preprocess" in commit.task_def.func_source  # the source code
    assert commit.task_def.args_snapshot == "(([1, 2, 3],), {'scale': 2})"  # the args
    assert commit.parent_hash is None  # previous commit for same func+args
    assert commit.created_at <= datetime.now(UTC)

    # Load a result by commit hash
    result = client.get(hash)
    assert result == [2, 4, 6]

    # Diff two commits
    other = client.submit(preprocess, [1, 2, 3], scale=3)
    diff = client.diff(hash, other.commit_hash)
    assert diff["func_changed"] is False
    assert diff["args_changed"] is True
    assert diff["output_changed"] is True

    # Get lineage (all runs of same func+args)
    history = client.history(hash)
    assert [c.hash for c in history] == [hash]

    # Evict old entries (default: 30 days)
    evicted = client.gc()
    assert evicted == 0
    # Evict entries older than 7 days
    evicted = client.gc(older_than=timedelta(days=7))
    assert evicted == 0
    # Evict oldest entries until under size limit
    evicted = client.gc(max_size_bytes=1024 * 1024 * 1024)  # 1GB
    assert evicted == 0

    # Invalidate commits by tags
    deleted = client.invalidate(tags={"experiment": "v1"})
    assert deleted == 1
    deleted = client.invalidate(tags={"experiment": None})  # any commit with 'experiment' tag
    assert deleted == 0

    # Storage stats
    stats = client.stats()
    assert set(stats) == {
        "total_commits",
        "completed_commits",
        "stored_objects",
        "disk_bytes",
        "blob_objects",
        "blob_bytes",
        "inline_objects",
        "inline_bytes",
        "hits",
        "misses",
        "seconds_saved",
    }
    assert stats["total_commits"] == 3 and stats["completed_commits"] == 2
    assert stats["misses"] == 3 and stats["hits"] == 0 and stats["seconds_saved"] == 0
    assert stats["stored_objects"] == stats["blob_objects"] + stats["inline_objects"]
    assert stats["disk_bytes"] == stats["blob_bytes"] + stats["inline_bytes"]

    # client.clear(): remove all cache entries and orphaned blobs
    client.clear()
    assert client.stats()["total_commits"] == 0
    assert client.stats()["stored_objects"] == 0


# --- log ------------------------------------------------------------------------------------


def test_log_is_newest_first_and_limited(client: Client) -> None:
    hashes = [client.submit(preprocess, [i]).commit_hash for i in range(5)]
    assert [c.hash for c in client.log()] == hashes[::-1]
    assert [c.hash for c in client.log(limit=2)] == hashes[:-3:-1]
    assert client.log(limit=0) == []
    assert len(client.log(limit=None)) == 5


def test_log_status_accepts_enum_and_string(client: Client) -> None:
    client.submit(preprocess, [1])
    with pytest.raises(TaskError):
        client.submit(flaky, 1)
    assert [c.func_name for c in client.log(status=TaskStatus.FAILED)] == ["flaky"]
    assert [c.func_name for c in client.log(status="COMPLETED")] == ["preprocess"]
    assert client.log(status="running") == []
    with pytest.raises(ValueError, match="running, completed, failed"):
        client.log(status="done")


def test_log_tags_are_anded_and_none_means_present(client: Client) -> None:
    a = client.submit(preprocess, [1], _tags={"env": "prod", "team": "ml"}).commit_hash
    b = client.submit(preprocess, [2], _tags={"env": "dev", "team": "ml"}).commit_hash
    c = client.submit(preprocess, [3], _tags={"env": "prod"}).commit_hash
    client.submit(preprocess, [4])

    def hashes(tags: Any) -> set[str]:
        return {x.hash for x in client.log(tags=tags)}

    assert hashes({"env": "prod"}) == {a, c}
    assert hashes({"env": "prod", "team": "ml"}) == {a}
    assert hashes({"team": None}) == {a, b}
    assert hashes({"env": None, "team": None}) == {a, b}
    assert hashes({"env": "staging"}) == set()
    assert len(client.log(tags={})) == 4  # an empty query filters nothing
    assert {x.hash for x in client.log(func_name="preprocess", tags={"env": "dev"})} == {b}


def test_log_rejects_bad_arguments(client: Client) -> None:
    with pytest.raises(ValueError, match="limit"):
        client.log(limit=-1)
    with pytest.raises(ValueError, match="limit"):
        client.log(limit=True)
    with pytest.raises(TypeError, match="tags"):
        client.log(tags={"env": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="tags"):
        client.log(tags=["env"])  # type: ignore[arg-type]


# --- show and get ---------------------------------------------------------------------------


def test_show_carries_the_provenance(client: Client) -> None:
    ref = client.submit(preprocess, [1, 2], scale=3, _tags={"run": "a"})
    commit = client.show(ref.commit_hash)
    assert commit.hash == ref.commit_hash
    assert commit.func_name == "preprocess"
    assert commit.task_def.func_source.startswith("def preprocess(")
    assert commit.task_def.args_snapshot == "(([1, 2],), {'scale': 3})"
    assert commit.tags == {"run": "a"}
    assert commit.status is TaskStatus.COMPLETED and commit.error is None
    assert commit.result == ObjectRef(ref.hash, ref.size) and ref.size > 0
    assert commit.compute_seconds is not None and commit.compute_seconds >= 0
    assert commit.created_at.tzinfo is not None


def test_show_of_a_failed_run_has_the_error(client: Client) -> None:
    with pytest.raises(TaskError):
        client.submit(flaky, 7)
    (commit,) = client.log(status="failed")
    shown = client.show(commit.hash)
    assert shown.result is None
    assert shown.error is not None and "ValueError: bad input 7" in shown.error


def test_show_takes_a_unique_prefix_case_and_space_insensitively(client: Client) -> None:
    h = client.submit(preprocess, [1]).commit_hash
    assert client.show(h[:8]).hash == h
    assert client.show(f"  {h[:10].upper()} ").hash == h


def test_ambiguous_prefix_lists_the_candidates(client: Client) -> None:
    hashes = [client.submit(preprocess, [i]).commit_hash for i in range(17)]
    first = {}
    for h in hashes:  # 17 hashes, 16 hex digits: two share their first digit
        first.setdefault(h[0], []).append(h)
    prefix, group = next((p, g) for p, g in first.items() if len(g) > 1)
    with pytest.raises(AmbiguousHashError) as info:
        client.show(prefix)
    assert isinstance(info.value, ValueError)
    assert sorted(info.value.candidates) == sorted(group)
    assert group[0] in str(info.value)
    for method in (client.get, client.rm, client.history):
        with pytest.raises(AmbiguousHashError):
            method(prefix)
    assert client.stats()["total_commits"] == 17  # nothing removed


def test_unknown_and_malformed_hashes(client: Client) -> None:
    client.submit(preprocess, [1])
    # As the spec's store and the published client: an unknown hash is None, not an error
    # (issue 12); get() still raises, and its error is a KeyError.
    assert client.show("0" * 64) is None
    assert client.show("0000000000") is None
    assert client.rm("0" * 64) is False
    with pytest.raises(KeyError):
        client.get("0" * 64)
    with pytest.raises(ValueError, match="not a commit hash"):
        client.show("xyz")
    with pytest.raises(ValueError):
        client.show("")
    with pytest.raises(ValueError):
        client.show("a" * 65)
    with pytest.raises(TypeError):
        client.show(None)  # type: ignore[arg-type]


def test_get_by_commit_prefix_and_by_result_blob_hash(client: Client) -> None:
    ref = client.submit(train, [1, 2], lr=0.5)
    expected = {"loss": 0.05, "lr": 0.5, "samples": 2}
    assert client.get(ref.commit_hash) == expected
    assert client.get(ref.commit_hash[:9]) == expected
    assert client.get(ref.hash) == expected  # what ``print(ref.hash)`` shows
    with pytest.raises(CommitNotFoundError):
        client.get(ref.hash[:12])  # blobs are named by full hash only


def test_get_of_a_failed_run_says_why(client: Client) -> None:
    with pytest.raises(TaskError):
        client.submit(flaky, 3)
    (commit,) = client.log()
    with pytest.raises(CommitNotFoundError, match=r"no result .*bad input 3"):
        client.get(commit.hash)


# --- history, forced runs and TTL -----------------------------------------------------------


def test_forced_runs_are_new_commits_chained_by_parent(client: Client) -> None:
    first = client.submit(stamp, 1)
    second = client.submit(stamp, 1, _force=True)
    third = client.submit(stamp, 1, _force=True)
    assert len(CALLS) == 3
    history = client.history(second.commit_hash[:10])
    assert [c.hash for c in history] == [first.commit_hash, second.commit_hash, third.commit_hash]
    assert [c.parent_hash for c in history] == [None, first.commit_hash, second.commit_hash]
    # no run overwrote another: each still loads its own value
    assert [client.get(c.hash) for c in history] == [
        first.load(),
        second.load(),
        third.load(),
    ]
    assert client.submit(stamp, 1).commit_hash == third.commit_hash  # newest wins


def test_uncached_runs_are_recorded_too(client: Client) -> None:
    refs = [client.submit(stamp, 2, _cache=False) for _ in range(3)]
    assert len({r.commit_hash for r in refs}) == 3
    assert [c.hash for c in client.history(refs[0].commit_hash)] == [r.commit_hash for r in refs]


def test_ttl_expiry_rerun_parent_history_and_gc(client: Client) -> None:
    first = client.submit(stamp, 5, _ttl=0.2)
    assert client.submit(stamp, 5, _ttl=0.2).cached
    time.sleep(0.3)
    again = client.submit(stamp, 5, _ttl=60)
    assert not again.cached and len(CALLS) == 2
    rerun = client.show(again.commit_hash)
    assert rerun.parent_hash == first.commit_hash  # the re-run descends from the expired run

    expired = client.show(first.commit_hash)  # still inspectable until gc
    assert expired.is_expired()
    assert [c.hash for c in client.history(again.commit_hash)] == [again.commit_hash]
    assert [c.hash for c in client.history(first.commit_hash)] == [again.commit_hash]
    assert {c.hash for c in client.log()} == {first.commit_hash, again.commit_hash}

    assert client.gc() == 1  # expired commits go, however recently used
    assert client.show(first.commit_hash) is None
    assert client.get(again.commit_hash) == again.load()


# --- diff -----------------------------------------------------------------------------------


def test_diff_source_and_args(client: Client) -> None:
    @client.task(name="scale")
    def v1(xs: list[int], factor: int = 2) -> list[int]:
        return [x * factor for x in xs]

    @client.task(name="scale")
    def v2(xs: list[int], factor: int = 2) -> list[int]:
        return [x * factor + 1 for x in xs]

    a = v1([1, 2, 3], factor=2)
    b = v2([1, 5, 3], factor=3)
    d = client.diff(a.commit_hash, b.commit_hash[:12])
    assert d["func_changed"] and d["args_changed"] and d["output_changed"]
    assert not d["status_changed"]
    assert (d["hash_a"], d["hash_b"]) == (a.commit_hash, b.commit_hash)
    assert (d["output_a"], d["output_b"]) == (a.hash, b.hash)
    assert "-    return [x * factor for x in xs]" in d["source_diff"]
    assert "+    return [x * factor + 1 for x in xs]" in d["source_diff"]
    assert d["args_diff"] == [
        {"path": "args[0][1]", "change": "changed", "a": "2", "b": "5"},
        {"path": "kwargs['factor']", "change": "changed", "a": "2", "b": "3"},
    ]


def test_diff_of_identical_and_failed_commits(client: Client) -> None:
    a = client.submit(preprocess, [1])
    d = client.diff(a.commit_hash, a.commit_hash)
    assert not any(d[k] for k in ("func_changed", "args_changed", "output_changed"))
    assert d["source_diff"] == "" and d["args_diff"] == []
    with pytest.raises(TaskError):
        client.submit(flaky, 1)
    (failed,) = client.log(status="failed")
    d = client.diff(a.commit_hash, failed.hash)
    assert d["output_changed"] and d["status_changed"]
    assert d["output_b"] is None and d["status_b"] == "failed"


def test_diff_args_is_structural() -> None:
    a = "(([1, 2, 3], {'lr': 0.1, 'layers': [64, 32]}), {'seed': 1, 'name': 'a, b'})"
    b = "(([1, 2, 3, 4], {'lr': 0.2, 'layers': [64, 32]}), {'name': 'a, b', 'debug': True})"
    assert diff_args(a, b) == [
        {"path": "args[0][3]", "change": "added", "a": None, "b": "4"},
        {"path": "args[1]['lr']", "change": "changed", "a": "0.1", "b": "0.2"},
        {"path": "kwargs['seed']", "change": "removed", "a": "1", "b": None},
        {"path": "kwargs['debug']", "change": "added", "a": None, "b": "True"},
    ]
    # commas and brackets inside strings are not structure; objects compare as text
    assert diff_args("(('x, [y',), {})", "(('x, [z',), {})") == [
        {"path": "args[0]", "change": "changed", "a": "'x, [y'", "b": "'x, [z'"}
    ]
    assert diff_args("((Point(x=1, y=2),), {})", "((Point(x=1, y=3),), {})") == [
        {"path": "args[0].y", "change": "changed", "a": "2", "b": "3"}
    ]
    # truncated or unparseable snapshots never raise
    assert diff_args("(([1, 2, 3, ...", "(([1, 2, 4, ...") == [
        {"path": "args[0][2]", "change": "changed", "a": "3", "b": "4"}
    ]
    assert diff_args("((<obj>,), {})", "((<obj>,), {})") == []
    assert diff_args("))((", "]][[")[0]["change"] == "changed"


# --- rm -------------------------------------------------------------------------------------


def test_rm_deletes_the_commit_and_frees_its_blob(client: Client) -> None:
    ref = client.submit(preprocess, [9, 9])
    shared = client.submit(train, [1], lr=0.1)
    same_value = client.submit(train, [1], lr=0.1, _force=True)  # same blob, two commits
    # one object per result, however many commits hold it (tiny results are kept in
    # their commits' rows, schema v8, and still counted once)
    assert client.stats()["stored_objects"] == 2
    assert client.rm(ref.commit_hash[:10]) is True
    assert client.show(ref.commit_hash) is None
    assert client.stats()["stored_objects"] == 1
    client.rm(shared.commit_hash)
    assert client.get(same_value.commit_hash) == same_value.load()  # blob still referenced
    client.rm(same_value.commit_hash)
    assert client.stats() == dict.fromkeys(client.stats(), 0)
    assert client.rm(ref.commit_hash) is False
    assert not client.submit(preprocess, [9, 9]).cached  # gone from the cache too


# --- gc, clear, invalidate ------------------------------------------------------------------


def test_gc_evicts_by_last_access(client: Client) -> None:
    now = datetime.now(UTC)
    stale = put_commit(client, "stale", value=b"1", created=now - timedelta(days=40))
    used = put_commit(
        client,
        "used",
        value=b"2",
        created=now - timedelta(days=40),
        accessed=now - timedelta(days=1),
    )
    mid = put_commit(client, "mid", value=b"3", created=now - timedelta(days=10))
    fresh = client.submit(preprocess, [1])
    assert client.gc() == 1
    assert {c.hash for c in client.log()} == {used.hash, mid.hash, fresh.commit_hash}
    assert client.gc(older_than=timedelta(days=7)) == 1
    assert {c.hash for c in client.log()} == {used.hash, fresh.commit_hash}
    assert client.gc(older_than=timedelta(hours=12)) == 1
    assert [c.hash for c in client.log()] == [fresh.commit_hash]
    assert client.show(stale.hash) is None


def test_a_cache_hit_counts_as_access(client: Client) -> None:
    old = datetime.now(UTC) - timedelta(days=40)
    ref = client.submit(preprocess, [3])
    # make the entry look 40 days unused, then hit it
    client.store.touch(ref.commit_hash, old)
    assert client.submit(preprocess, [3]).cached
    assert client.gc() == 0
    assert client.show(ref.commit_hash).last_accessed is not None


def test_gc_removes_expired_and_orphaned_blobs(client: Client) -> None:
    now = datetime.now(UTC)
    put_commit(client, "gone", value=b"x" * 50, expires=now - timedelta(seconds=1))
    keep = put_commit(client, "kept", value=b"y" * 50, expires=now + timedelta(days=1))
    client.store.put_blob(b"orphan blob, no commit")
    client.store.orphan_grace = 0  # type: ignore[attr-defined]
    time.sleep(0.01)
    assert client.stats()["stored_objects"] == 3
    assert client.gc() == 1
    assert [c.hash for c in client.log()] == [keep.hash]
    assert client.stats()["stored_objects"] == 1


def test_gc_max_size_evicts_least_recently_used(client: Client) -> None:
    now = datetime.now(UTC)
    commits = [
        put_commit(
            client,
            f"c{i}",
            value=bytes([i]) * 4000,
            created=now - timedelta(hours=10 - i),
            args_hash=f"{i:064x}",
        )
        for i in range(5)
    ]
    client.store.touch(commits[0].hash, now)  # the oldest is the most recently used
    per_blob = client.stats()["disk_bytes"] // 5
    evicted = client.gc(max_size_bytes=per_blob * 3)
    assert evicted == 2
    assert {c.hash for c in client.log()} == {commits[0].hash, commits[3].hash, commits[4].hash}
    assert client.stats()["disk_bytes"] <= per_blob * 3
    assert client.gc(max_size_bytes=0) == 3
    assert client.stats()["total_commits"] == 0


def test_gc_validates_its_arguments(client: Client) -> None:
    with pytest.raises(TypeError):
        client.gc(older_than=30)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.gc(older_than=timedelta(days=-1))
    with pytest.raises(ValueError):
        client.gc(max_size_bytes=-1)
    with pytest.raises(ValueError):
        client.gc(max_size_bytes=1.5)  # type: ignore[arg-type]


STARTED, FINISH = threading.Event(), threading.Event()


@ignore("STARTED", "FINISH")  # handles, not inputs: opted out of the key, no warning
def slow(x: int) -> int:
    STARTED.set()
    assert FINISH.wait(10)
    return x + 1


def test_gc_and_clear_never_evict_a_running_claim(client: Client) -> None:
    started, finish = STARTED, FINISH
    started.clear()
    finish.clear()
    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.setdefault("ref", client.submit(slow, 1)))
    worker.start()
    assert started.wait(10)
    fingerprint = next(iter(_claims(client)))
    assert client.clear() == 0
    assert client.gc(max_size_bytes=0) == 0
    assert client.store.get_claim(fingerprint) is not None  # the lease survived
    finish.set()
    worker.join(10)
    assert box["ref"].load() == 2
    assert client.submit(slow, 1).cached  # recorded after the clear, and a hit


def _claims(client: Client) -> list[str]:
    conn = client.store._conn()  # type: ignore[attr-defined]
    return [row[0] for row in conn.execute("SELECT fingerprint FROM claims")]


def test_gc_keeps_a_foreign_live_lease(client: Client) -> None:
    lease = Lease(
        owner="other",
        host="elsewhere",
        pid=1,
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
        func_name="x",
    )
    assert client.store.try_claim("f" * 64 + ":" + "a" * 64, lease)
    client.clear()
    assert client.store.get_claim("f" * 64 + ":" + "a" * 64) == lease


def test_clear_removes_everything(client: Client) -> None:
    for i in range(3):
        client.submit(preprocess, [i])
    with pytest.raises(TaskError):
        client.submit(flaky, 0)
    assert client.clear() == 4
    assert client.log() == []
    assert client.stats() == dict.fromkeys(client.stats(), 0)


def test_invalidate(client: Client) -> None:
    a = client.submit(preprocess, [1], _tags={"experiment": "v1", "team": "ml"})
    b = client.submit(preprocess, [2], _tags={"experiment": "v2", "team": "ml"})
    c = client.submit(preprocess, [3], _tags={"team": "data"})
    assert client.invalidate({"experiment": "v1", "team": "data"}) == 0  # ANDed
    assert client.invalidate({"experiment": "v1"}) == 1
    assert client.invalidate({"experiment": None}) == 1
    assert [x.hash for x in client.log()] == [c.commit_hash]
    assert not client.submit(preprocess, [1]).cached
    assert a.commit_hash != b.commit_hash


@pytest.mark.parametrize("tags", [{}, None, "experiment", ["experiment"], {"k": 1}])
def test_invalidate_never_deletes_everything(client: Client, tags: Any) -> None:
    client.submit(preprocess, [1], _tags={"k": "v"})
    with pytest.raises((ValueError, TypeError)):
        client.invalidate(tags)
    assert client.stats()["total_commits"] == 1


def test_stats_counts(client: Client) -> None:
    assert client.stats() == dict.fromkeys(client.stats(), 0)
    small = client.submit(preprocess, [1])
    big = client.submit(preprocess, list(range(5000)))
    stats = client.stats()
    assert stats["total_commits"] == stats["completed_commits"] == 2
    assert stats["inline_objects"] == 1 and stats["blob_objects"] == 1
    assert 0 < stats["inline_bytes"] < stats["blob_bytes"]
    assert small.size < big.size


# --- store support: indexed filters, result lookup, the schema-2 migration -----------------


def test_show_and_history_accept_a_result_blob_hash(client: Client) -> None:
    first = client.submit(preprocess, [4])
    again = client.submit(preprocess, [4], _force=True)  # same result blob, newer commit
    assert client.show(first.hash).hash == again.commit_hash  # the newest producer
    assert [c.hash for c in client.history(first.hash)] == [
        first.commit_hash,
        again.commit_hash,
    ]
    assert client.rm(first.hash) is False  # deleting stays explicit: commit hashes only


def test_combined_filters_pick_an_index_and_agree_with_a_recount(client: Client) -> None:
    from cashet.stores.sqlite import schema as sql

    _driver = sql.choose_driver

    now = datetime.now(UTC)
    commits = [
        put_commit(
            client,
            f"f{i % 3}",
            value=bytes([i % 7]),
            created=now - timedelta(seconds=600 - i),
            tags={"team": "ab"[i % 2], "run": f"r{i // 50}", **({"rare": "1"} if i == 7 else {})},
            args_hash=f"{i:064x}",
        )
        for i in range(600)
    ]
    newest_first = commits[::-1]
    queries: list[tuple[str | None, dict[str, str | None]]] = [
        (None, {"team": "a"}),
        (None, {"run": "r3"}),
        (None, {"team": "b", "run": "r3"}),
        (None, {"rare": None}),
        (None, {"rare": None, "team": None}),
        ("f1", {"team": "b"}),
        ("f2", {"run": "r11", "team": None}),
    ]
    conn = client.store._conn()  # type: ignore[attr-defined]
    for func, tags in queries:
        expected = [
            c.hash
            for c in newest_first
            if (func is None or c.func_name == func)
            and all(k in c.tags and (v is None or c.tags[k] == v) for k, v in tags.items())
        ]
        for limit in (None, 5):
            got = [c.hash for c in client.log(func_name=func, tags=tags, limit=limit)]
            assert got == expected[:limit], (func, tags, limit)
        driver = _driver(conn, func, None, tags)
        query, params = sql.select_commits("c.hash", func, None, tags, driver, 5)
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, params)]
        assert not any(step.startswith("SCAN") for step in plan), (tags, plan)
    assert _driver(conn, None, None, {"team": "a", "run": "r3"}) == 1  # the rarer tag drives
    assert client.invalidate({"team": "b", "run": "r3"}) == 25
    assert len(client.log(tags={"run": "r3"}, limit=None)) == 25


def test_tags_of_a_schema_1_store_are_migrated(tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    from cashet.hashing.commits import stored_json
    from cashet.stores.sqlite import schema as sql

    with Client(store_dir=tmp_path / "scratch") as scratch:
        commits = [
            scratch.submit(preprocess, [i], _tags={"team": "ab"[i % 2]}).commit for i in range(6)
        ]
    hashes = [c.hash for c in commits if c is not None]
    (tmp_path / "old").mkdir()
    # A store as the first schema wrote it: its tables, its commit and tag columns.
    with closing(sqlite3.connect(tmp_path / "old" / "meta.db", isolation_level=None)) as conn:
        for statement in sql.MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        for c in commits:
            assert c is not None and c.result is not None
            conn.execute(
                "INSERT INTO commits (hash, fingerprint, func_name, status, created_at,"
                " expires_at, last_accessed, cache, result_hash, result_size, parent_hash,"
                " body) VALUES (?, ?, ?, 'completed', ?, NULL, NULL, 1, ?, ?, NULL, ?)",
                (
                    c.hash,
                    c.fingerprint,
                    c.func_name,
                    sql.to_epoch(c.created_at),
                    c.result.hash,
                    c.result.size,
                    stored_json(c),
                ),
            )
            for k, v in c.tags.items():
                conn.execute(
                    "INSERT INTO commit_tags (commit_hash, key, value) VALUES (?, ?, ?)",
                    (c.hash, k, v),
                )
    with Client(store_dir=tmp_path / "old") as new:
        version = new.store._conn().execute("PRAGMA user_version").fetchone()  # type: ignore[attr-defined]
        assert version == (sql.SCHEMA_VERSION,)
        assert [c.hash for c in new.log(tags={"team": "a"})] == hashes[::2][::-1]
        assert [c.hash for c in new.log(tags={"team": None}, limit=2)] == hashes[:-3:-1]
