"""The behaviour every ``Store`` backend must have.

Only the ``store`` fixture (parametrized over ``tests/_backends.py``) and the ``Store``
protocol are used here: no files, no SQL, so that every backend runs this same file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from blake3 import blake3

from cashet import _process
from cashet.errors import BlobMissingError
from cashet.hashing.commits import compute_commit_hash
from cashet.models import Commit, Lease, ObjectRef, TaskDef, TaskStatus, utcnow
from cashet.protocols import (
    AsyncStore,
    BlobPartsWriter,
    Hit,
    HitLookup,
    ResultIndex,
    ResultWriter,
    Store,
    protocol_members,
    supports,
)
from cashet.stores.base import StoreBase, full_store
from cashet.stores.blobs import blob_hash

pytestmark = pytest.mark.contract

COMPLETED, FAILED = TaskStatus.COMPLETED, TaskStatus.FAILED
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
STATS_KEYS = {
    "total_commits",
    "completed_commits",
    "stored_objects",
    "disk_bytes",
    "blob_objects",
    "blob_bytes",
    "inline_objects",
    "inline_bytes",
}


def digest(text: str) -> str:
    return blake3(text.encode()).hexdigest()


def make_commit(
    func: str = "f",
    args: str = "a",
    *,
    ago: float = 0.0,
    status: TaskStatus = COMPLETED,
    result: ObjectRef | None = None,
    cache: bool = True,
    expires_in: float | None = None,
    tags: dict[str, str] | None = None,
    **fields: Any,
) -> Commit:
    """A commit of ``func(args)`` created ``ago`` seconds ago, hashed like the real ones."""
    created = utcnow() - timedelta(seconds=ago)
    commit = Commit(
        hash="",
        task_def=TaskDef(
            func_name=func,
            func_hash=digest("func " + func),
            args_hash=digest("args " + args),
            cache=cache,
        ),
        status=status,
        created_at=created,
        result=result,
        tags=dict(tags or {}),
        expires_at=None if expires_in is None else created + timedelta(seconds=expires_in),
        **fields,
    )
    commit.hash = compute_commit_hash(commit)
    return commit


def put(store: Store, *commits: Commit) -> None:
    for commit in commits:
        store.put_commit(commit)


def hashes(commits: list[Commit]) -> list[str]:
    return [c.hash for c in commits]


def make_lease(
    owner: str, *, seconds: float = 60.0, host: str | None = None, pid: int | None = None
) -> Lease:
    return Lease(
        owner=owner,
        host=_process.hostname() if host is None else host,
        pid=os.getpid() if pid is None else pid,
        expires_at=utcnow() + timedelta(seconds=seconds),
        func_name="f",
    )


def dead_pid() -> int:
    """The pid of a real process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


FP = make_commit().fingerprint


# blobs


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"x",
        bytes(range(256)) * 4,
        b"abc" * 100_000,
        os.urandom(300_000),
        os.urandom(3 << 20),  # large: async stores hash and verify it off the event loop
    ],
    ids=["empty", "one-byte", "1KiB", "compressible", "random", "random-3MiB"],
)
def test_blob_roundtrip(store: Store, data: bytes) -> None:
    ref = store.put_blob(data)
    assert ref == ObjectRef(blob_hash(data), len(data))
    assert store.has_blob(ref.hash)
    assert store.get_blob(ref) == data


def test_unknown_blob(store: Store) -> None:
    ref = ObjectRef(digest("never stored"), 3)
    assert not store.has_blob(ref.hash)
    with pytest.raises(BlobMissingError):
        store.get_blob(ref)


@pytest.mark.parametrize("size", [10, 100_000])
def test_blob_dedup(store: Store, size: int) -> None:
    data = os.urandom(size)
    first = store.put_blob(data)
    once = store.stats()
    assert store.put_blob(data) == first
    assert store.stats() == once
    assert once["stored_objects"] == 1


# commits


def test_commit_roundtrip(store: Store) -> None:
    ref = store.put_blob(b"result")
    td = TaskDef(
        func_name="mod.fn",
        func_hash=digest("func"),
        args_hash=digest("args"),
        func_source="def fn(x):\n    return x\n",
        args_snapshot="fn(1)",
        module="mod",
        cache=True,
        retries=2,
        timeout=1.5,
        ttl=3600.0,
        tags={"env": "prod"},
    )
    created = datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    commit = Commit(
        hash="",
        task_def=td,
        status=COMPLETED,
        created_at=created,
        result=ref,
        parent_hash=digest("parent"),
        tags={"env": "prod", "team": "ml"},
        compute_seconds=0.25,
        expires_at=created + timedelta(days=3650),
        input_hashes=(digest("in1"), digest("in2")),
        salt="s4lt",
        last_accessed=created + timedelta(seconds=1),
    )
    commit.hash = compute_commit_hash(commit)
    store.put_commit(commit)
    got = store.get_commit(commit.hash)
    assert got == commit
    assert got is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.expires_at is not None and got.expires_at.tzinfo is not None
    assert compute_commit_hash(got) == commit.hash


def test_failed_commit_roundtrip(store: Store) -> None:
    commit = make_commit(status=FAILED, error="Traceback ...\nValueError: no")
    store.put_commit(commit)
    assert store.get_commit(commit.hash) == commit


def test_unknown_commit(store: Store) -> None:
    assert store.get_commit(digest("nope")) is None


def test_put_commit_is_idempotent(store: Store) -> None:
    ref = store.put_blob(b"r")
    commit = make_commit(result=ref, tags={"k": "v"})
    put(store, commit, commit)
    assert store.stats()["total_commits"] == 1
    assert hashes(store.list_commits(tags={"k": "v"})) == [commit.hash]
    # One reference only: a single delete frees the blob.
    assert store.delete_commit(commit.hash)
    assert not store.has_blob(ref.hash)


def test_a_commit_named_by_its_caller_is_kept_and_verified(store: Store) -> None:
    # The published store protocol lets a caller choose a commit's hash (its tests store
    # Commit(hash="c" * 64, ...)): such a commit is kept with its content's digest beside,
    # so it is verified on read like any other (issue 12 and 13).
    commit = make_commit(result=store.put_blob(b"r"))
    commit.tags["added"] = "after hashing"
    store.put_commit(commit)
    assert store.get_commit(commit.hash) == commit
    assert store.find_by_fingerprint(FP) == commit
    named = make_commit(ago=1)
    named.hash = "c" * 64
    store.put_commit(named)
    assert store.get_commit("c" * 64) == named
    assert hashes(store.list_commits()) == [commit.hash, "c" * 64]
    nameless = make_commit(ago=2)
    nameless.hash = ""
    with pytest.raises(ValueError, match="needs its hash"):
        store.put_commit(nameless)


def test_find_by_fingerprint_skips_a_commit_whose_blob_is_gone(store: Store) -> None:
    # A completed commit is only a hit while its result blob exists: a lost blob makes
    # the next submit recompute (and so repair) it.
    lost = make_commit(ago=10, result=ObjectRef(digest("never stored"), 3))
    put(store, lost)
    assert store.find_by_fingerprint(FP) is None
    ref = store.put_blob(b"kept")
    kept = make_commit(ago=5, result=ref)
    put(store, kept)
    assert store.find_by_fingerprint(FP) == kept


def test_find_by_fingerprint(store: Store) -> None:
    ref = store.put_blob(b"r")
    old = make_commit(ago=400, result=ref)
    best = make_commit(ago=300, result=ref)
    failed = make_commit(ago=200, status=FAILED)
    uncached = make_commit(ago=150, result=ref, cache=False)
    expired = make_commit(ago=100, result=ref, expires_in=10)
    other = make_commit(args="other", ago=50, result=ref)
    put(store, old, best, failed, uncached, expired, other)
    assert store.find_by_fingerprint(FP) == best
    assert store.find_by_fingerprint(other.fingerprint) == other
    assert store.find_by_fingerprint(make_commit(args="none").fingerprint) is None


def test_find_by_fingerprint_ignores_all_expired(store: Store) -> None:
    ref = store.put_blob(b"r")
    put(
        store,
        make_commit(ago=100, expires_in=50, result=ref),
        make_commit(ago=90, expires_in=80, result=ref),
    )
    assert store.find_by_fingerprint(FP) is None
    alive = make_commit(ago=80, expires_in=3600, result=ref)
    put(store, alive)
    assert store.find_by_fingerprint(FP) == alive


def test_latest_for_fingerprint(store: Store) -> None:
    assert store.latest_for_fingerprint(FP) is None
    completed = make_commit(ago=30)
    failed = make_commit(ago=20, status=FAILED)
    put(store, completed, failed)
    assert store.latest_for_fingerprint(FP) == failed
    expired = make_commit(ago=10, expires_in=1)
    put(store, expired)
    assert store.latest_for_fingerprint(FP) == expired


def test_list_commits(store: Store) -> None:
    f1 = make_commit("f", "1", ago=50, tags={"env": "prod", "team": "a"})
    g1 = make_commit("g", "1", ago=40, tags={"env": "dev"})
    f2 = make_commit("f", "2", ago=30, status=FAILED, tags={"env": "prod"})
    g2 = make_commit("g", "2", ago=20, tags={"team": "a"})
    f3 = make_commit("f", "3", ago=10)
    put(store, f1, g1, f2, g2, f3)
    assert hashes(store.list_commits()) == hashes([f3, g2, f2, g1, f1])
    assert hashes(store.list_commits(limit=2)) == hashes([f3, g2])
    assert hashes(store.list_commits(limit=None)) == hashes([f3, g2, f2, g1, f1])
    assert store.list_commits(limit=0) == []
    assert hashes(store.list_commits(func_name="f")) == hashes([f3, f2, f1])
    assert hashes(store.list_commits(func_name="f", limit=1)) == [f3.hash]
    assert hashes(store.list_commits(status=FAILED)) == [f2.hash]
    assert hashes(store.list_commits(func_name="g", status=COMPLETED)) == hashes([g2, g1])
    assert hashes(store.list_commits(tags={"env": "prod"})) == hashes([f2, f1])
    assert hashes(store.list_commits(tags={"env": None})) == hashes([f2, g1, f1])
    assert hashes(store.list_commits(tags={"env": "prod", "team": None})) == [f1.hash]
    assert hashes(store.list_commits(tags={"team": "a", "env": None})) == [f1.hash]
    assert store.list_commits(tags={"env": "staging"}) == []
    assert hashes(store.list_commits(func_name="f", tags={"env": "prod"}, limit=1)) == [f2.hash]
    assert store.list_commits(func_name="h") == []
    assert store.list_commits()[0] == f3


def test_iter_commits_oldest_first(store: Store) -> None:
    commits = [make_commit("f", str(i), ago=100 - i) for i in range(7)]
    put(store, *reversed(commits))
    assert hashes(list(store.iter_commits())) == hashes(commits)


def test_get_history(store: Store) -> None:
    first = make_commit(ago=40)
    second = make_commit(ago=30, status=FAILED)
    expired = make_commit(ago=20, expires_in=1)
    third = make_commit(ago=10)
    other = make_commit(args="b", ago=5)
    put(store, third, other, first, expired, second)
    assert hashes(store.get_history(second.hash)) == hashes([first, second, third])
    assert hashes(store.get_history(other.hash)) == [other.hash]
    assert store.get_history(digest("unknown")) == []


def test_resolve_prefix(store: Store) -> None:
    commits = [make_commit("f", str(i)) for i in range(17)]
    put(store, *commits)
    target = commits[0].hash
    assert store.resolve_prefix(target) == [target]
    assert store.resolve_prefix(target[:10]) == [target]
    assert store.resolve_prefix(target[:10].upper()) == [target]
    # 17 hashes over 16 first digits: some first digit is shared.
    by_digit: dict[str, list[str]] = {}
    for c in commits:
        by_digit.setdefault(c.hash[0], []).append(c.hash)
    digit, shared = max(by_digit.items(), key=lambda kv: len(kv[1]))
    assert len(shared) >= 2
    assert store.resolve_prefix(digit) == sorted(shared)
    assert store.resolve_prefix(digit, limit=1) == sorted(shared)[:1]
    assert store.resolve_prefix(target[:-1] + ("0" if target[-1] != "0" else "1")) == []


@pytest.mark.parametrize("bad", ["", "xyz", "12 34", "g", "0" * 65])
def test_resolve_prefix_rejects_non_hex(store: Store, bad: str) -> None:
    with pytest.raises(ValueError):
        store.resolve_prefix(bad)


def test_touch(store: Store) -> None:
    commit = make_commit()
    put(store, commit)
    when = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    store.touch(commit.hash, when)
    got = store.get_commit(commit.hash)
    assert got is not None and got.last_accessed == when
    store.touch(digest("unknown"), when)  # ignored


# lifecycle


def test_stats_keys_of_empty_store(store: Store) -> None:
    stats = store.stats()
    assert set(stats) >= STATS_KEYS
    assert all(isinstance(v, int) for v in stats.values())
    assert {k: stats[k] for k in STATS_KEYS} == dict.fromkeys(STATS_KEYS, 0)


def test_stats_add_up(store: Store) -> None:
    small = store.put_blob(b"small")
    large = store.put_blob(os.urandom(50_000))
    put(store, make_commit("f", "1", result=small), make_commit("f", "2", status=FAILED))
    put(store, make_commit("f", "3", result=large))
    stats = store.stats()
    assert stats["total_commits"] == 3
    assert stats["completed_commits"] == 2
    assert stats["stored_objects"] == stats["blob_objects"] + stats["inline_objects"] == 2
    assert stats["disk_bytes"] == stats["blob_bytes"] + stats["inline_bytes"]
    assert stats["disk_bytes"] >= 50_000


def test_shared_blob_refcount(store: Store) -> None:
    ref = store.put_blob(os.urandom(5000))
    a = make_commit("f", "1", result=ref)
    b = make_commit("g", "1", result=ref)
    put(store, a, b)
    before = store.stats()
    assert store.delete_commit(a.hash)
    assert store.has_blob(ref.hash)
    assert store.get_commit(a.hash) is None
    assert len(store.get_blob(ref)) == 5000
    assert store.stats()["stored_objects"] == before["stored_objects"] == 1
    assert store.delete_commit(b.hash)
    assert not store.has_blob(ref.hash)
    with pytest.raises(BlobMissingError):
        store.get_blob(ref)
    stats = store.stats()
    assert (stats["stored_objects"], stats["disk_bytes"], stats["total_commits"]) == (0, 0, 0)
    assert not store.delete_commit(b.hash)


def test_delete_commit_removes_its_tags(store: Store) -> None:
    commit = make_commit(tags={"env": "prod"})
    put(store, commit)
    assert store.delete_commit(commit.hash)
    assert store.list_commits(tags={"env": None}) == []
    assert store.list_commits() == []


def test_evict_by_age(store: Store) -> None:
    old_ref = store.put_blob(os.urandom(3000))
    old = make_commit("f", "old", ago=10 * 86400, result=old_ref)
    used = make_commit("f", "used", ago=10 * 86400)
    new = make_commit("f", "new")
    put(store, old, used, new)
    store.touch(used.hash, utcnow())
    assert store.evict(utcnow() - timedelta(days=1)) == 1
    assert hashes(store.list_commits()) == hashes([new, used])
    assert not store.has_blob(old_ref.hash)
    assert store.evict(utcnow() - timedelta(days=1)) == 0


def test_evict_expired(store: Store) -> None:
    expired = make_commit("f", "1", expires_in=-1)
    fresh = make_commit("f", "2", expires_in=3600)
    put(store, expired, fresh)
    assert store.evict(LONG_AGO) == 1
    assert hashes(store.list_commits()) == [fresh.hash]


def test_evict_by_size_drops_least_recently_used(store: Store) -> None:
    commits = []
    for i in range(4):
        ref = store.put_blob(os.urandom(4000))
        commits.append(make_commit("f", str(i), ago=100 - i, result=ref))
    put(store, *commits)
    # Use order, least recent first: 2, 0, 3, 1.
    for i, c in enumerate([commits[2], commits[0], commits[3], commits[1]]):
        store.touch(c.hash, utcnow() - timedelta(seconds=50 - i))
    total = store.stats()["disk_bytes"]
    assert store.evict(LONG_AGO, max_size_bytes=total - 1) == 1
    assert store.get_commit(commits[2].hash) is None
    each = total // 4
    assert store.evict(LONG_AGO, max_size_bytes=2 * each + 10) == 1
    assert hashes(store.list_commits()) == hashes([commits[3], commits[1]])
    assert store.stats()["disk_bytes"] <= 2 * each + 10
    assert store.evict(LONG_AGO, max_size_bytes=10**12) == 0
    assert store.evict(LONG_AGO, max_size_bytes=0) == 2
    assert store.stats()["disk_bytes"] == 0


def test_evict_spares_live_claims_and_fresh_blobs(store: Store) -> None:
    lease = make_lease("holder")
    assert store.try_claim(FP, lease)
    pending = store.put_blob(os.urandom(2000))  # its commit is not recorded yet
    put(store, make_commit())
    assert store.evict(utcnow() + timedelta(days=1), max_size_bytes=0) == 1
    assert store.get_claim(FP) == lease
    assert store.has_blob(pending.hash)
    assert len(store.get_blob(pending)) == 2000


def test_delete_by_tags(store: Store) -> None:
    a = make_commit("f", "1", tags={"exp": "v1", "env": "prod"})
    b = make_commit("f", "2", tags={"exp": "v1"})
    c = make_commit("f", "3", tags={"exp": "v2"})
    d = make_commit("f", "4")
    put(store, a, b, c, d)
    assert store.delete_by_tags({"exp": "v1", "env": "prod"}) == 1
    assert store.delete_by_tags({"exp": "v1"}) == 1
    assert store.delete_by_tags({"exp": "v9"}) == 0
    assert store.delete_by_tags({"exp": None}) == 1
    assert hashes(store.list_commits()) == [d.hash]
    with pytest.raises(ValueError, match="everything"):
        store.delete_by_tags({})
    assert hashes(store.list_commits()) == [d.hash]


# leases


def test_try_claim_is_exclusive(store: Store) -> None:
    first, second = make_lease("first"), make_lease("second")
    assert store.get_claim(FP) is None
    assert store.try_claim(FP, first)
    assert not store.try_claim(FP, second)
    assert store.get_claim(FP) == first
    assert store.try_claim(make_commit(args="b").fingerprint, second)


def test_same_owner_claims_again(store: Store) -> None:
    assert store.try_claim(FP, make_lease("me", seconds=10))
    longer = make_lease("me", seconds=600)
    assert store.try_claim(FP, longer)
    assert store.get_claim(FP) == longer


def test_expired_lease_is_taken_over(store: Store) -> None:
    assert store.try_claim(FP, make_lease("gone", seconds=-1))
    assert store.get_claim(FP) is None
    assert store.find_running_by_fingerprint(FP) is None
    taker = make_lease("taker")
    assert store.try_claim(FP, taker)
    assert store.get_claim(FP) == taker


def test_dead_holder_is_taken_over_at_once(store: Store) -> None:
    crashed = make_lease("crashed", seconds=3600, pid=dead_pid())
    assert store.try_claim(FP, crashed)
    assert store.get_claim(FP) is None
    store.wait_for_release(FP, timeout=60)  # returns at once: the holder is gone
    taker = make_lease("taker")
    assert store.try_claim(FP, taker)
    assert store.get_claim(FP) == taker


def test_lease_of_another_host_is_judged_by_expiry(store: Store) -> None:
    remote = make_lease("remote", host="another-host.invalid", pid=dead_pid())
    assert store.try_claim(FP, remote)
    assert not store.try_claim(FP, make_lease("local"))
    assert store.get_claim(FP) == remote


def test_renew_claim(store: Store) -> None:
    assert store.try_claim(FP, make_lease("me", seconds=5))
    later = utcnow() + timedelta(minutes=10)
    assert store.renew_claim(FP, "me", later)
    claim = store.get_claim(FP)
    assert claim is not None and claim.owner == "me" and claim.expires_at == later
    assert not store.renew_claim(FP, "someone else", later)
    store.release_claim(FP, "me")
    assert not store.renew_claim(FP, "me", later)


def test_renew_fails_after_takeover(store: Store) -> None:
    assert store.try_claim(FP, make_lease("slow", seconds=-1))
    assert store.try_claim(FP, make_lease("fast"))
    assert not store.renew_claim(FP, "slow", utcnow() + timedelta(minutes=1))
    claim = store.get_claim(FP)
    assert claim is not None and claim.owner == "fast"


def test_release_claim(store: Store) -> None:
    store.release_claim(FP, "nobody")  # nothing held: no error
    lease = make_lease("me")
    assert store.try_claim(FP, lease)
    store.release_claim(FP, "someone else")
    assert store.get_claim(FP) == lease
    store.release_claim(FP, "me")
    assert store.get_claim(FP) is None
    assert store.try_claim(FP, make_lease("next"))


def test_find_running_by_fingerprint(store: Store) -> None:
    assert store.find_running_by_fingerprint(FP) is None
    before = utcnow() - timedelta(seconds=1)
    assert store.try_claim(FP, make_lease("me"))
    running = store.find_running_by_fingerprint(FP)
    assert running is not None
    assert running.status is TaskStatus.RUNNING
    assert running.fingerprint == FP
    assert running.func_name == "f"
    assert running.result is None
    assert running.created_at >= before
    store.release_claim(FP, "me")
    assert store.find_running_by_fingerprint(FP) is None


def test_wait_for_release_wakes_on_release(store: Store) -> None:
    assert store.try_claim(FP, make_lease("holder"))
    released = threading.Event()

    def release_soon() -> None:
        time.sleep(0.2)
        store.release_claim(FP, "holder")
        released.set()

    thread = threading.Thread(target=release_soon)
    thread.start()
    started = time.monotonic()
    store.wait_for_release(FP, timeout=120)
    waited = time.monotonic() - started
    thread.join()
    assert released.is_set()
    assert store.get_claim(FP) is None
    assert waited < 120  # woken by the release, not by the timeout


def test_wait_for_release_times_out(store: Store) -> None:
    lease = make_lease("holder")
    assert store.try_claim(FP, lease)
    started = time.monotonic()
    store.wait_for_release(FP, timeout=0.1)
    assert time.monotonic() - started >= 0.1
    assert store.get_claim(FP) == lease


def test_wait_for_release_of_nothing_returns(store: Store) -> None:
    store.wait_for_release(FP, timeout=120)


def test_close_is_idempotent(store: Store) -> None:
    store.close()
    store.close()


# --- capabilities (cashet.protocols) on every backend, native and defaulted ------------------


class SpecOnly:
    """A third-party store that implements exactly the spec's ``Store`` methods, nothing more
    (each forwards to a real backend), as a user would write one."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def put_blob(self, data: bytes) -> ObjectRef:
        return self.inner.put_blob(data)  # type: ignore[no-any-return]

    def get_blob(self, ref: ObjectRef) -> bytes:
        return self.inner.get_blob(ref)  # type: ignore[no-any-return]

    def has_blob(self, hash: str) -> bool:
        return self.inner.has_blob(hash)  # type: ignore[no-any-return]

    def put_commit(self, commit: Commit) -> None:
        self.inner.put_commit(commit)

    def get_commit(self, hash: str) -> Commit | None:
        return self.inner.get_commit(hash)  # type: ignore[no-any-return]

    def find_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return self.inner.find_by_fingerprint(fingerprint)  # type: ignore[no-any-return]

    def find_running_by_fingerprint(self, fingerprint: str) -> Commit | None:
        return self.inner.find_running_by_fingerprint(fingerprint)  # type: ignore[no-any-return]

    def latest_for_fingerprint(self, fingerprint: str) -> Commit | None:
        return self.inner.latest_for_fingerprint(fingerprint)  # type: ignore[no-any-return]

    def list_commits(self, *args: Any, **kwargs: Any) -> list[Commit]:
        return self.inner.list_commits(*args, **kwargs)  # type: ignore[no-any-return]

    def iter_commits(self) -> Iterator[Commit]:
        return iter(self.inner.iter_commits())

    def get_history(self, hash: str) -> list[Commit]:
        return self.inner.get_history(hash)  # type: ignore[no-any-return]

    def resolve_prefix(self, prefix: str, limit: int = 20) -> list[str]:
        return self.inner.resolve_prefix(prefix, limit)  # type: ignore[no-any-return]

    def touch(self, hash: str, when: datetime) -> None:
        self.inner.touch(hash, when)

    def stats(self) -> dict[str, int]:
        return self.inner.stats()  # type: ignore[no-any-return]

    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        return self.inner.evict(older_than, max_size_bytes)  # type: ignore[no-any-return]

    def delete_commit(self, hash: str) -> bool:
        return self.inner.delete_commit(hash)  # type: ignore[no-any-return]

    def delete_by_tags(self, tags: Any) -> int:
        return self.inner.delete_by_tags(tags)  # type: ignore[no-any-return]

    def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        return self.inner.try_claim(fingerprint, lease)  # type: ignore[no-any-return]

    def get_claim(self, fingerprint: str) -> Lease | None:
        return self.inner.get_claim(fingerprint)  # type: ignore[no-any-return]

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        return self.inner.renew_claim(fingerprint, owner, expires_at)  # type: ignore[no-any-return]

    def release_claim(self, fingerprint: str, owner: str) -> None:
        self.inner.release_claim(fingerprint, owner)

    def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        self.inner.wait_for_release(fingerprint, timeout)

    def close(self) -> None:
        """The backend fixture closes the inner store."""


class Delegating:
    """A logging wrapper as users write them: its own ``put_blob``/``put_commit``, everything
    else forwarded with ``__getattr__`` (so the instance *seems* to have ``put_result``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def put_blob(self, data: bytes) -> ObjectRef:
        self.calls.append("put_blob")
        return self.inner.put_blob(data)  # type: ignore[no-any-return]

    def put_commit(self, commit: Commit) -> None:
        self.calls.append("put_commit")
        self.inner.put_commit(commit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(params=["native", "defaults"])
def capable(request: pytest.FixtureRequest, store: Store) -> Any:
    """Every capability of ``store``: its own methods, or full_store's defaults over the
    spec methods alone."""
    if request.param == "native":
        return store
    full = full_store(SpecOnly(store))
    assert not isinstance(full, SpecOnly)
    return full


def test_full_store_is_the_store_itself_for_a_complete_class(store: Store) -> None:
    from cashet.store import SQLiteStore

    assert full_store(SQLiteStore.__new__(SQLiteStore)) is not None
    if "SyncAdapter" not in type(store).__name__:  # the built-in sync stores: no adapter
        assert full_store(store) is store
        for capability in (ResultWriter, BlobPartsWriter, ResultIndex, HitLookup):
            assert supports(store, capability)


def test_capabilities_are_read_on_the_class_never_the_instance(store: Store) -> None:
    wrapper = Delegating(store)
    assert hasattr(wrapper, "put_result")  # the instance forwards it...
    for capability in (ResultWriter, BlobPartsWriter, ResultIndex, HitLookup):
        assert not supports(wrapper, capability)  # ...the class does not have it
    assert isinstance(full_store(wrapper), StoreBase)


@pytest.mark.parametrize("size", [5, 200_000])
def test_put_blob_parts(capable: Any, size: int) -> None:
    data = os.urandom(size)
    parts = [data[:2], memoryview(data)[2 : size // 2], data[size // 2 :]]
    ref = capable.put_blob_parts(parts)
    assert ref == ObjectRef(blob_hash(data), size)
    assert capable.get_blob(ref) == data


@pytest.mark.parametrize("as_parts", [False, True], ids=["bytes", "parts"])
def test_put_result_stores_records_and_releases(capable: Any, as_parts: bool) -> None:
    data = b"result " * 50
    lease = make_lease("me")
    assert capable.try_claim(FP, lease)
    built: list[Commit] = []

    def build(ref: ObjectRef) -> Commit:
        built.append(make_commit(result=ref))
        return built[-1]

    payload: Any = [data[:3], memoryview(data)[3:]] if as_parts else data
    commit = capable.put_result(payload, build, (FP, "me"))
    assert commit is built[0]
    assert commit.result == ObjectRef(blob_hash(data), len(data))
    assert capable.get_blob(commit.result) == data
    assert capable.get_commit(commit.hash) == commit
    assert capable.get_claim(FP) is None
    assert capable.find_by_fingerprint(FP) == commit
    assert capable.stats()["completed_commits"] == 1


def test_put_result_without_a_lease(capable: Any) -> None:
    other = make_lease("other")
    assert capable.try_claim(FP, other)
    ref = ObjectRef(blob_hash(b"x"), 1)
    capable.put_result(b"x", lambda r: make_commit(result=r), None)
    assert capable.get_claim(FP) == other  # a lease it was not told to drop stays
    assert capable.get_blob(ref) == b"x"


def test_find_by_result_newest_first(capable: Any) -> None:
    ref = capable.put_blob(b"shared result")
    other = capable.put_blob(b"another")
    old = make_commit("f", "1", ago=30, result=ref)
    new = make_commit("g", "2", ago=10, result=ref)
    unrelated = make_commit("h", "3", ago=5, result=other)
    put(capable, old, new, unrelated, make_commit("k", "4", status=FAILED))
    assert hashes(capable.find_by_result(ref.hash)) == [new.hash, old.hash]
    assert hashes(capable.find_by_result(ref.hash, limit=1)) == [new.hash]
    assert capable.find_by_result(digest("no such blob")) == []


@pytest.mark.parametrize("size", [10, 300_000])
def test_lookup_returns_the_hit_with_its_bytes_or_none(capable: Any, size: int) -> None:
    assert capable.lookup(FP) is None
    data = os.urandom(size)
    ref = capable.put_blob(data)
    commit = make_commit(result=ref)
    put(capable, commit)
    hit = capable.lookup(FP)
    assert isinstance(hit, Hit)
    assert hit.commit == commit
    assert hit.data is None or hit.data == data  # small results may come along
    assert capable.get_blob(ref) == data


def test_every_returned_commit_is_the_callers_own(capable: Any) -> None:
    ref = capable.put_blob(b"r")
    commit = make_commit(result=ref, tags={"team": "a"})
    put(capable, commit)
    readers = {
        "get_commit": lambda: capable.get_commit(commit.hash),
        "find_by_fingerprint": lambda: capable.find_by_fingerprint(FP),
        "lookup": lambda: capable.lookup(FP).commit,
        "latest_for_fingerprint": lambda: capable.latest_for_fingerprint(FP),
        "list_commits": lambda: capable.list_commits()[0],
        "list_commits(tags)": lambda: capable.list_commits(tags={"team": "a"})[0],
        "iter_commits": lambda: next(iter(capable.iter_commits())),
        "get_history": lambda: capable.get_history(commit.hash)[0],
        "find_by_result": lambda: capable.find_by_result(ref.hash)[0],
    }
    for name, read in readers.items():
        first, second = read(), read()
        assert first == commit and first is not second, name
        first.tags["team"] = "mutated"
        first.tags["new"] = "x"
        first.last_accessed = LONG_AGO
        assert second.tags == {"team": "a"}, name
        again = read()
        assert again.tags == {"team": "a"} and again.last_accessed != LONG_AGO, name


SQUARED: list[int] = []


def square(x: int) -> int:
    SQUARED.append(x)
    return x * x


def test_client_over_a_spec_only_store(store: Store) -> None:
    """A third-party store with only the spec's methods works end to end."""
    from cashet import Client

    SQUARED.clear()
    client = Client(store=SpecOnly(store))  # type: ignore[arg-type]
    ref = client.submit(square, 7)
    assert ref.load() == 49
    again = client.submit(square, 7)
    assert again.load() == 49 and again.commit_hash == ref.commit_hash
    assert SQUARED == [7]  # the second was a hit
    assert [c.hash for c in client.log()] == [ref.commit_hash]
    assert client.show(ref.commit_hash).hash == ref.commit_hash
    assert client.show(ref.hash).hash == ref.commit_hash  # by the result blob's hash
    assert client.get(ref.hash) == 49
    client.close()


def test_client_calls_a_delegating_wrappers_own_writes(tmp_path: Any) -> None:
    """The wrapper's put_blob/put_commit run: its forwarded put_result is not used."""
    from cashet import Client
    from cashet.store import SQLiteStore

    inner = SQLiteStore(tmp_path / ".cashet")
    wrapper = Delegating(inner)
    client = Client(store=wrapper)  # type: ignore[arg-type]
    ref = client.submit(pow, 2, 10)
    assert wrapper.calls == ["put_blob", "put_commit"]
    assert ref.load() == 1024
    assert client.submit(pow, 2, 10).commit_hash == ref.commit_hash
    assert wrapper.calls == ["put_blob", "put_commit"]  # a hit writes nothing
    assert client.show(ref.hash).hash == ref.commit_hash
    client.close()


def test_async_defaults_over_a_spec_only_async_store(tmp_path: Any) -> None:
    """full_async_store fills in every async capability from the AsyncStore methods."""
    import asyncio

    from cashet.store import AsyncSQLiteStore
    from cashet.stores.base import full_async_store

    class AsyncSpecOnly:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            if name in protocol_members(AsyncStore):
                return getattr(self.inner, name)
            raise AttributeError(name)

    async def main() -> None:
        inner = AsyncSQLiteStore(tmp_path / ".cashet")
        try:
            full = full_async_store(AsyncSpecOnly(inner))  # type: ignore[arg-type]
            assert full_async_store(inner) is inner
            data = b"payload" * 100
            ref = await full.put_blob_parts([data[:5], memoryview(data)[5:]])
            assert await full.get_blob(ref) == data
            assert await full.try_claim(FP, make_lease("me"))
            commit = await full.put_result(data, lambda r: make_commit(result=r), (FP, "me"))
            assert await full.get_claim(FP) is None
            assert [c.hash async for c in full.iter_commits()] == [commit.hash]
            assert hashes(await full.find_by_result(ref.hash)) == [commit.hash]
            hit = await full.lookup(FP)
            assert hit is not None and hit.commit == commit
            assert (await inner.lookup(FP)).data == data  # type: ignore[union-attr]
        finally:
            await inner.close()

    asyncio.run(main())


def test_two_hits_share_no_commit(store: Store) -> None:
    from cashet import Client

    client = Client(store=store)
    client.submit(square, 3)
    r1, r2 = client.submit(square, 3), client.submit(square, 3)
    assert r1.commit is not r2.commit and r1.commit == r2.commit
    r1.commit.tags["mutated"] = "yes"
    assert "mutated" not in r2.commit.tags
    assert "mutated" not in client.submit(square, 3).commit.tags


def test_a_completed_commit_without_a_result_is_found(store: Store) -> None:
    # As the published stores do (their protocol tests store one); the call flow does not
    # take it for a hit (tests/test_client.py::test_a_result_less_commit_is_no_hit).
    bare = make_commit()
    put(store, bare)
    assert store.find_by_fingerprint(FP) == bare


def test_delete_commit_takes_a_unique_prefix(store: Store) -> None:
    from cashet.errors import AmbiguousHashError

    a, b = make_commit("f", "1"), make_commit("f", "2")
    a.hash, b.hash = "ab1" + "0" * 61, "ab2" + "0" * 61
    put(store, a, b)
    with pytest.raises(AmbiguousHashError):
        store.delete_commit("ab")
    assert store.delete_commit("ff") is False
    assert store.delete_commit("ab1") is True
    assert store.get_commit(a.hash) is None and store.get_commit(b.hash) is not None
