"""SQLiteStore specifics: files on disk, corruption and repair, schema, threads, fork, processes."""

from __future__ import annotations

import multiprocessing
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

import cashet.stores.sqlite.schema as sql_module
from cashet.errors import BlobCorruptedError, BlobMissingError, StoreError
from cashet.hashing.commits import compute_commit_hash
from cashet.models import ObjectRef, TaskStatus, utcnow
from cashet.store import SQLiteStore
from tests.test_store_contract import LONG_AGO, make_commit, make_lease

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(root) as s:
        yield s


@contextmanager
def raw_db(root: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection to meta.db, in autocommit mode, closed afterwards."""
    with closing(
        sqlite3.connect(root / "meta.db", isolation_level=None, check_same_thread=False)
    ) as conn:
        yield conn


def blob_file(root: Path, hash: str) -> Path:
    return root / "objects" / hash[:2] / hash[2:]


def object_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file())


# layout


def test_layout_on_disk(store: SQLiteStore, root: Path) -> None:
    assert (root / "meta.db").is_file()
    assert (root / "objects").is_dir()
    assert store.path == root
    small = store.put_blob(b"tiny")
    large = store.put_blob(os.urandom(10_000))
    assert object_files(root) == [blob_file(root, large.hash)]
    assert len(blob_file(root, large.hash).name) == 62
    assert not blob_file(root, small.hash).exists()


def test_accepts_str_and_path_and_defaults_to_dot_cashet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(5000)
    with SQLiteStore(str(tmp_path / "a")) as a:
        ref = a.put_blob(data)
    with SQLiteStore(tmp_path / "a") as again:
        assert again.get_blob(ref) == data
    monkeypatch.chdir(tmp_path)
    with SQLiteStore() as default:
        default.put_blob(b"x")
    assert (tmp_path / ".cashet" / "meta.db").is_file()


def test_inline_threshold(root: Path) -> None:
    with SQLiteStore(root, inline_threshold=100) as store:
        inline = store.put_blob(os.urandom(50))
        filed = store.put_blob(os.urandom(200))
        assert object_files(root) == [blob_file(root, filed.hash)]
        stats = store.stats()
        assert (stats["inline_objects"], stats["inline_bytes"]) == (1, 51)
        assert (stats["blob_objects"], stats["blob_bytes"]) == (1, 201)
        assert store.get_blob(inline) == store.get_blob(inline)


def hex_text(n: int) -> bytes:
    """Random hex digits: compress to about half, never small enough to go inline."""
    return os.urandom(n // 2).hex().encode()


def test_compressible_blob_is_stored_smaller(store: SQLiteStore, root: Path) -> None:
    data = hex_text(100_000)
    ref = store.put_blob(data)
    size = blob_file(root, ref.hash).stat().st_size
    assert size < len(data) * 0.9
    assert store.stats()["blob_bytes"] == size
    assert store.get_blob(ref) == data


def test_incompressible_blob_is_stored_raw(store: SQLiteStore, root: Path) -> None:
    data = os.urandom(100_000)
    ref = store.put_blob(data)
    stored = blob_file(root, ref.hash).read_bytes()
    assert stored == b"\x00" + data
    assert store.stats()["blob_bytes"] == len(data) + 1


def test_writes_leave_no_temp_files(store: SQLiteStore, root: Path) -> None:
    for i in range(20):
        store.put_blob(os.urandom(2000 + i))
        store.put_blob(hex_text(5000 + 2 * i))
    for path in object_files(root):
        assert re.fullmatch("[0-9a-f]{2}", path.parent.name)
        assert re.fullmatch("[0-9a-f]{62}", path.name)
    assert len(object_files(root)) == 40


# corruption and repair


def test_corrupt_file_is_detected_and_repaired(store: SQLiteStore, root: Path) -> None:
    data = os.urandom(10_000)
    ref = store.put_blob(data)
    path = blob_file(root, ref.hash)
    stored = bytearray(path.read_bytes())
    stored[5000] ^= 0xFF  # same size: only the hash can tell
    path.write_bytes(bytes(stored))
    with pytest.raises(BlobCorruptedError) as caught:
        store.get_blob(ref)
    assert caught.value.blob_hash == ref.hash
    assert str(path) in str(caught.value)
    assert store.put_blob(data) == ref
    assert store.get_blob(ref) == data


@pytest.mark.parametrize("data", [os.urandom(10_000), hex_text(10_000)])
def test_truncated_file_is_corrupt_and_repaired(
    store: SQLiteStore, root: Path, data: bytes
) -> None:
    ref = store.put_blob(data)
    path = blob_file(root, ref.hash)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(BlobCorruptedError):
        store.get_blob(ref)
    store.put_blob(data)
    assert store.get_blob(ref) == data


def test_empty_file_is_corrupt(store: SQLiteStore, root: Path) -> None:
    data = os.urandom(4000)
    ref = store.put_blob(data)
    blob_file(root, ref.hash).write_bytes(b"")
    with pytest.raises(BlobCorruptedError):
        store.get_blob(ref)
    store.put_blob(data)
    assert store.get_blob(ref) == data


def test_missing_file_is_reported_and_repaired(store: SQLiteStore, root: Path) -> None:
    data = os.urandom(10_000)
    ref = store.put_blob(data)
    path = blob_file(root, ref.hash)
    path.unlink()
    assert not store.has_blob(ref.hash)
    with pytest.raises(BlobMissingError) as caught:
        store.get_blob(ref)
    assert caught.value.blob_hash == ref.hash
    assert str(path) in str(caught.value)
    store.put_blob(data)
    assert store.has_blob(ref.hash)
    assert store.get_blob(ref) == data
    assert store.stats()["blob_objects"] == 1


def test_file_of_unknown_format_is_kept(store: SQLiteStore, root: Path) -> None:
    ref = store.put_blob(os.urandom(3000))
    path = blob_file(root, ref.hash)
    path.write_bytes(b"\x07" + os.urandom(3000))  # perhaps a newer cashet's format
    with pytest.raises(BlobCorruptedError, match="header"):
        store.get_blob(ref)
    assert path.exists()


def test_corrupt_inline_row_is_detected_and_repaired(store: SQLiteStore, root: Path) -> None:
    data = b"a small result"
    ref = store.put_blob(data)
    with raw_db(root) as db:
        db.execute("UPDATE blobs SET inline = substr(inline, 1, 4) WHERE hash = ?", (ref.hash,))
    with pytest.raises(BlobCorruptedError) as caught:
        store.get_blob(ref)
    assert caught.value.blob_hash == ref.hash
    store.put_blob(data)
    assert store.get_blob(ref) == data


def test_lost_blob_row_is_recreated_with_its_references(store: SQLiteStore, root: Path) -> None:
    data = os.urandom(3000)
    ref = store.put_blob(data)
    commit = make_commit(result=ref)
    store.put_commit(commit)
    with raw_db(root) as db:  # as if a concurrent delete had freed it
        db.execute("DELETE FROM blobs WHERE hash = ?", (ref.hash,))
    with pytest.raises(BlobMissingError):
        store.get_blob(ref)
    store.put_blob(data)
    with raw_db(root) as db:
        assert db.execute("SELECT refcount FROM blobs").fetchall() == [(1,)]
    assert store.delete_commit(commit.hash)
    assert not store.has_blob(ref.hash)


# garbage collection


def test_unreferenced_blob_collected_after_grace(store: SQLiteStore, root: Path) -> None:
    kept = store.put_blob(os.urandom(3000))
    store.put_commit(make_commit(result=kept))
    store.orphan_grace = 0.0
    orphan = store.put_blob(os.urandom(3000))
    inline_orphan = store.put_blob(b"tiny")
    assert store.evict(LONG_AGO) == 0
    assert not store.has_blob(orphan.hash)
    assert not store.has_blob(inline_orphan.hash)
    assert object_files(root) == [blob_file(root, kept.hash)]
    assert store.stats()["stored_objects"] == 1


def test_put_blob_refreshes_an_old_orphan(store: SQLiteStore, root: Path) -> None:
    data = os.urandom(3000)
    ref = store.put_blob(data)
    with raw_db(root) as db:
        db.execute("UPDATE blobs SET created_at = 0")
    store.put_blob(data)  # about to be committed again: must survive evict
    store.evict(LONG_AGO)
    assert store.get_blob(ref) == data


def test_size_limit_does_not_count_blobs_of_pending_commits(store: SQLiteStore) -> None:
    commits = [make_commit("f", str(i), result=store.put_blob(os.urandom(3000))) for i in range(2)]
    for c in commits:
        store.put_commit(c)
    held = store.stats()["disk_bytes"]
    store.put_blob(os.urandom(100_000))  # its commit is not recorded yet
    assert store.evict(LONG_AGO, max_size_bytes=held) == 0
    assert store.evict(LONG_AGO, max_size_bytes=held - 1) == 1


def test_evict_and_iter_work_in_batches(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_BATCH", 3)
    old = [make_commit("f", str(i), ago=5 * 86400 + i) for i in range(10)]
    for c in old:
        store.put_commit(c)
    assert [c.hash for c in store.iter_commits()] == [c.hash for c in reversed(old)]
    assert store.evict(utcnow()) == 10
    assert list(store.iter_commits()) == []


def test_iter_commits_orders_equal_times_by_insertion(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_BATCH", 2)
    base = make_commit()
    same = [make_commit("f", str(i)) for i in range(5)]
    for c in same:
        c.created_at = base.created_at
        c.hash = compute_commit_hash(c)  # a stored commit must hash to its hash
        store.put_commit(c)
    assert [c.hash for c in store.iter_commits()] == [c.hash for c in same]


def test_counters_match_a_recount(store: SQLiteStore, root: Path) -> None:
    refs = [store.put_blob(os.urandom(n)) for n in (10, 500, 2000, 5000)]
    refs.append(store.put_blob(b"q" * 50_000))
    commits = [make_commit("f", str(i), ago=i, result=refs[i % 5]) for i in range(12)]
    for c in commits:
        store.put_commit(c)
    store.put_commit(make_commit("g", status=TaskStatus.FAILED))
    store.delete_commit(commits[0].hash)
    store.delete_commit(commits[5].hash)
    store.evict(LONG_AGO, max_size_bytes=store.stats()["disk_bytes"] // 2)
    stats = store.stats()
    with raw_db(root) as db:
        count = db.execute(
            "SELECT count(*), coalesce(sum(status = 'completed'), 0) FROM commits"
        ).fetchone()
        files = db.execute(
            "SELECT count(*), coalesce(sum(stored_size), 0) FROM blobs WHERE inline IS NULL"
        ).fetchone()
        inline = db.execute(
            "SELECT count(*), coalesce(sum(length(inline)), 0) FROM blobs WHERE inline IS NOT NULL"
        ).fetchone()
        refcounts = db.execute(
            "SELECT b.refcount, (SELECT count(*) FROM commits c WHERE c.result_hash = b.hash)"
            " FROM blobs b"
        ).fetchall()
    assert (stats["total_commits"], stats["completed_commits"]) == count
    assert (stats["blob_objects"], stats["blob_bytes"]) == files
    assert (stats["inline_objects"], stats["inline_bytes"]) == inline
    assert sum(p.stat().st_size for p in object_files(root)) == stats["blob_bytes"]
    assert all(stored == actual for stored, actual in refcounts)


#: Constants of the schema module that are parts of queries, not queries.
FRAGMENTS = ("SELECT_COMMIT", "RESULT_KEY", "RESULT_IS")


def test_queries_never_scan_a_whole_table(store: SQLiteStore) -> None:
    conn = store._conn()
    for name in dir(sql_module):
        sql = getattr(sql_module, name)
        if name.isupper() and isinstance(sql, str) and name not in FRAGMENTS:
            numbered = [int(n) for n in re.findall(r"\?(\d)", sql)]
            params = [None] * (max(numbered) if numbered else sql.count("?"))
            for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params):
                # Walking the partial index of unreferenced blobs is fine: only they are in it.
                # The lease table holds only the leases of tasks running right now (schema
                # v3 dropped its expiry index to make every miss cheaper). The quarantine
                # holds only damaged entries, and is read whole by a doctor alone.
                assert (
                    "SCAN" not in row[3]
                    or "INDEX blobs_orphans" in row[3]
                    or row[3] in ("SCAN claims", "SCAN quarantine")
                ), (name, row[3])
    find = conn.execute("EXPLAIN QUERY PLAN " + sql_module.FIND, [0, 0])
    assert [row[3] for row in find] == ["SEARCH commits USING INDEX commits_fp (fp=?)"]
    hit = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql_module.FIND_HIT, [0, 0])]
    assert hit[0] == "SEARCH c USING INDEX commits_fp (fp=?)", hit
    assert hit[1].startswith("SEARCH b USING PRIMARY KEY (hash=?)"), hit


# schema


def test_wal_mode_and_schema_version(store: SQLiteStore, root: Path) -> None:
    assert sql_module.SCHEMA_VERSION == len(sql_module.MIGRATIONS) == 8
    with raw_db(root) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (sql_module.SCHEMA_VERSION,)
    assert store._conn().execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL


def test_empty_database_file_is_migrated(root: Path) -> None:
    root.mkdir()
    with raw_db(root):
        pass
    with SQLiteStore(root) as store:
        store.put_commit(make_commit())
        assert store.stats()["total_commits"] == 1


def test_a_version_1_store_is_migrated_with_its_data(root: Path) -> None:
    # Build a store the way version 1 of the schema left it, then open it with this code.
    root.mkdir()
    (root / "objects").mkdir()
    with raw_db(root) as db:
        db.execute("PRAGMA journal_mode = WAL")
        for statement in sql_module.MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        held = make_lease("holder", seconds=600)
        db.execute(
            "INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("held-fp", held.owner, held.host, held.pid, held.expires_at.timestamp(), "f", 0.0),
        )
        db.commit()
    with SQLiteStore(root) as store:  # migrates 1 -> latest on open
        assert store.get_claim("held-fp") == held  # a live lease survives the migration
        ref = store.put_blob(b"result")
        commit = make_commit(result=ref, tags={"env": "prod"})
        store.put_commit(commit)
        lease = make_lease("me")
        assert store.try_claim("fp", lease)
        assert not store.try_claim("fp", make_lease("other"))
        assert store.find_by_fingerprint(commit.fingerprint) == commit
        assert store.list_commits(tags={"env": "prod"}) == [commit]
        store.release_claim("fp", lease.owner)
        assert store.get_claim("fp") is None
    with raw_db(root) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (sql_module.SCHEMA_VERSION,)


def test_newer_schema_is_refused(root: Path) -> None:
    with SQLiteStore(root) as store:
        store.put_commit(make_commit())
    with raw_db(root) as db:
        db.execute(f"PRAGMA user_version = {sql_module.SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(root)


def test_not_a_database_is_a_store_error(root: Path) -> None:
    root.mkdir()
    (root / "meta.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        SQLiteStore(root)


def test_data_survives_reopening(root: Path) -> None:
    data = os.urandom(5000)
    commit = None
    with SQLiteStore(root) as store:
        ref = store.put_blob(data)
        commit = make_commit(result=ref)
        store.put_commit(commit)
    with SQLiteStore(root) as store:
        assert store.find_by_fingerprint(commit.fingerprint) == commit
        assert store.get_blob(ref) == data


# connections, threads, processes


def test_close_then_use_raises(root: Path) -> None:
    store = SQLiteStore(root)
    store.put_commit(make_commit())
    store.close()
    store.close()
    for call in (
        lambda: store.stats(),
        lambda: store.put_blob(b"x"),
        lambda: store.get_blob(ObjectRef("0" * 64, 1)),
        lambda: store.find_by_fingerprint("f:a"),
        lambda: store.put_commit(make_commit()),
        lambda: store.try_claim("f:a", make_lease("me")),
    ):
        with pytest.raises(StoreError, match="closed"):
            call()


def test_close_closes_every_threads_connection(root: Path) -> None:
    store = SQLiteStore(root)
    ready = threading.Barrier(5)
    done = threading.Event()
    errors: list[BaseException] = []

    def use() -> None:
        store.stats()
        ready.wait()
        done.wait()
        try:
            store.stats()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    ready.wait()
    conns = [conn for _, conn in store._db._conns]
    assert len(conns) == 5
    store.close()
    done.set()
    for t in threads:
        t.join()
    assert len(errors) == 4 and all(isinstance(e, StoreError) for e in errors)
    for conn in conns:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")


def test_threads_write_concurrently(store: SQLiteStore) -> None:
    start = threading.Barrier(8)
    conns: list[sqlite3.Connection] = []  # kept referenced, so no id is reused
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            start.wait()
            conns.append(store._conn())
            for i in range(25):
                # Compressible and large enough to compress: zstd contexts are per thread.
                ref = store.put_blob(hex_text(1000 * i) + f"{n}-{i}".encode())
                store.put_commit(make_commit("t", f"{n}-{i}", result=ref))
                assert store.try_claim("shared", make_lease(f"owner-{n}-{i}")) in (True, False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({id(c) for c in conns}) == 8
    assert store.stats()["total_commits"] == 200
    assert store.stats()["stored_objects"] == 200
    assert all(
        store.find_by_fingerprint(make_commit("t", f"{n}-{i}").fingerprint) is not None
        for n in range(8)
        for i in range(25)
    )


def test_connections_of_finished_threads_are_closed(store: SQLiteStore) -> None:
    for _ in range(10):
        t = threading.Thread(target=store.stats)
        t.start()
        t.join()
    store.stats()
    assert len(store._db._conns) <= 2


def _write_in_child(store: SQLiteStore, data: bytes) -> None:
    # Compress and hash large blobs in the child too (see the parent's side).
    store.get_blob(store.put_blob(hex_text(3_000_000)))
    store.get_blob(store.put_blob(os.urandom(9 << 20)))
    ref = store.put_blob(data)
    store.put_commit(make_commit("child", result=ref))
    assert store.try_claim("child-fp", make_lease("child", seconds=600, pid=os.getppid()))
    store.close()


def _check_a_forked_child_writes(store: SQLiteStore) -> None:
    data = hex_text(20_000)
    child = multiprocessing.get_context("fork").Process(target=_write_in_child, args=(store, data))
    child.start()
    child.join(60)
    if child.exitcode is None:
        child.kill()
        child.join()
    assert child.exitcode == 0
    found = store.find_by_fingerprint(make_commit("child").fingerprint)
    assert found is not None and found.result is not None
    assert store.get_blob(found.result) == data
    claim = store.get_claim("child-fp")
    assert claim is not None and claim.owner == "child"


def test_store_works_in_a_forked_child(store: SQLiteStore) -> None:
    # The parent first starts the thread pools of zstd and BLAKE3 (large blobs): their
    # threads stay behind in a fork, so the child must not use them, nor the parent's
    # connection.
    store.get_blob(store.put_blob(os.urandom(9 << 20)))
    store.put_commit(make_commit("parent", result=store.put_blob(hex_text(3_000_000))))
    _check_a_forked_child_writes(store)
    # The parent's own connection was left alone by the child.
    store.put_commit(make_commit("parent", "after"))
    assert store.stats()["total_commits"] == 3


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_fork_while_another_thread_uses_the_store(store: SQLiteStore) -> None:
    # The child discards the states of the parent's other threads: the connection and the
    # multithreaded zstd context such a thread holds must not be closed or freed there.
    ready, finish = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            store.get_blob(store.put_blob(hex_text(3_000_000)))
            ready.set()
            finish.wait()
            store.put_commit(make_commit("thread"))
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait()
    try:
        _check_a_forked_child_writes(store)
    finally:
        finish.set()
        thread.join()
    assert errors == []
    assert store.stats()["total_commits"] == 2


_WRITER = textwrap.dedent(
    """
    import os, sys
    from cashet.store import SQLiteStore
    from tests.test_store_contract import make_commit, make_lease

    root, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with SQLiteStore(root) as store:
        won = []
        for i in range(n):
            ref = store.put_blob(f"{tag}-{i}".encode() * (1 + 40 * (i % 3)))
            store.put_commit(make_commit(tag, str(i), result=ref))
            shared = store.put_blob(b"same result " * 200)
            store.put_commit(make_commit("shared", f"{tag}-{i}", result=shared))
            # The lease names the (living) test process, so the winner's exit does not
            # make its leases look dead to the other writer.
            if store.try_claim(f"fp-{i}", make_lease(tag, seconds=600, pid=os.getppid())):
                won.append(i)
        print(" ".join(map(str, won)))
    """
)


@pytest.mark.slow
def test_two_processes_write_concurrently(store: SQLiteStore, root: Path) -> None:
    n = 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), tag, str(n)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    won = [set(map(int, out.split())) for out, _ in outputs]
    assert won[0] | won[1] == set(range(n))
    assert not won[0] & won[1]  # each lease went to exactly one process
    stats = store.stats()
    assert stats["total_commits"] == 4 * n
    assert stats["stored_objects"] == 2 * n + 1
    assert len(store.list_commits(func_name="shared", limit=None)) == 2 * n


def test_busy_writer_times_out_with_store_error(root: Path) -> None:
    with SQLiteStore(root, busy_timeout=0.05) as store, raw_db(root) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked"):
                store.put_commit(make_commit())
        finally:
            db.execute("ROLLBACK")
        store.put_commit(make_commit())
        assert store.stats()["total_commits"] == 1


def test_writer_waits_for_the_lock(root: Path) -> None:
    with SQLiteStore(root, busy_timeout=60) as store, raw_db(root) as db:
        db.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.2, db.execute, args=("COMMIT",))
        timer.start()
        store.put_commit(make_commit())
        timer.join()
        assert store.stats()["total_commits"] == 1


def test_put_result_keeps_reference_counts_and_orphan_index_exact(root: Path) -> None:
    # put_result inserts the commit before the blob row; shared, new and file blobs alike
    # must end with refcount == commits pointing at them, and no live blob counted orphan.
    from cashet import Client

    def same(x: int) -> str:
        return "shared result"

    def big(x: int) -> bytes:
        return os.urandom(4096) if x < 0 else bytes([x % 256]) * 5000 + os.urandom(2000)

    with Client(store=SQLiteStore(root)) as client:
        for i in range(5):
            client.submit(same, i)
            client.submit(big, i)
        client.submit(same, 0, _force=True)
        stats = client.stats()
    with raw_db(root) as db:
        rows = db.execute(
            "SELECT b.refcount, (SELECT count(*) FROM commits c WHERE c.result_hash = b.hash)"
            " FROM blobs b"
        ).fetchall()
        orphans = db.execute("SELECT count(*) FROM blobs WHERE refcount = 0").fetchone()[0]
        # a tiny result is kept in its commit's row (schema v8), one copy per commit
        (held,) = db.execute("SELECT count(*) FROM commits WHERE result_data IS NOT NULL")
        db_lone = db.execute(
            "SELECT count(DISTINCT result_hash) FROM commits WHERE result_data IS NOT NULL"
        ).fetchone()
    assert rows and all(stored == actual for stored, actual in rows)
    assert orphans == 0 and held == (6,)
    # (one object per result hash however many rows hold it; none also has a blob row)
    (lone,) = db_lone
    assert lone == 1  # "shared result", six commits
    assert stats["total_commits"] == 11 and stats["stored_objects"] == len(rows) + lone


def test_a_second_store_in_one_process_keeps_the_first_reading_fresh(tmp_path: Path) -> None:
    """Opening a store once read meta.db's header with open()/close(): closing any
    descriptor of a file drops every POSIX lock the process holds on it, SQLite's included,
    and the first store then read a stale snapshot (a lease released by another process
    stayed visible). Found by the CeleryExecutor work (issue 14)."""
    import subprocess
    import sys
    from datetime import timedelta

    from cashet.core.flow import new_lease

    first = SQLiteStore(tmp_path / "s")
    second = SQLiteStore(tmp_path / "s")
    try:
        lease = new_lease(timedelta(seconds=60), "f")
        assert first.try_claim("a:b", lease)
        release = (
            "from cashet.store import SQLiteStore; "
            f"SQLiteStore({str(tmp_path / 's')!r}).release_claim('a:b', {lease.owner!r})"
        )
        subprocess.run([sys.executable, "-c", release], check=True, timeout=60)
        assert first.get_claim("a:b") is None and second.get_claim("a:b") is None
        third = SQLiteStore(tmp_path / "s")  # opening another must not disturb the others
        assert first.try_claim("c:d", lease) and third.get_claim("c:d") is not None
        third.close()
    finally:
        first.close()
        second.close()
