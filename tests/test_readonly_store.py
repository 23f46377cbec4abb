"""Read-only stores (issue 13, item 8): a store that cannot be written still serves hits.

A cache restored in CI on a read-only mount, or a shared cache directory a user may read but
not write, used to be unusable (``Client()`` failed to open it). Now such a store opens
read-only, automatically and saying so once (a ``ReadOnlyStoreWarning``), or when asked
(``readonly=True``, silently): hits and loads are served, misses are computed and returned
but not stored, nothing is written (no lease row, no access time), and writes that cannot be
skipped (``gc``, ``rm``, ``import``) raise ``ReadOnlyStoreError``.

Unwritable for real: the tests run as root here, which ``chmod`` does not stop, so

* a *read-only bind mount* of the store directory, in a private mount namespace
  (``unshare -m``: ``mount --bind D D`` then ``mount -o remount,ro,bind D``), for the CI
  cache restored on a read-only mount (writes fail with ``EROFS`` even for root);
* a child process that drops its privileges to ``nobody`` (``setpriv``) over a directory
  owned by root with mode 755, for the shared directory a user may read but not write.

Each child runs ``_CHILD`` (below) and prints what it saw as JSON. A test skips when the
machine refuses the namespace or the privilege drop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cashet import Client
from cashet.async_client import AsyncClient
from cashet.cli import main
from cashet.errors import ReadOnlyStoreError, StoreError
from cashet.store import SQLiteStore

_CHILD = textwrap.dedent(
    """
    import hashlib, json, sys, warnings
    from cashet import Client
    from cashet.errors import ReadOnlyStoreError

    CALLS = []

    def double(x):
        CALLS.append(x)
        return x * 2

    def block(n):  # a result big enough for a blob file of its own (incompressible)
        CALLS.append(n)
        return b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(8 * n))

    store, mode = sys.argv[1], sys.argv[2]
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Client(store, readonly=mode == "explicit") as c:
            if mode == "populate":
                c.submit(double, 1).load()
                c.submit(block, 64).load()
            else:
                hit, big = c.submit(double, 1), c.submit(block, 64)
                out["hit"] = [hit.load(), hit.cached, len(big.load()), big.cached]
                miss = c.submit(double, 2)
                out["miss"] = [miss.load(), miss.cached]
                again = c.submit(double, 2)
                out["again"] = [again.load(), again.cached]
                out["chained"] = c.submit(double, miss).load()
                out["bigmiss"] = len(c.submit(block, 65).load())
                out["log"] = len(c.log())
                out["total"] = c.stats()["total_commits"]
                out["show"] = c.show(hit.commit_hash) is not None
                out["get"] = c.get(hit.commit_hash)
                try:
                    c.gc()
                    out["gc"] = "no error"
                except ReadOnlyStoreError as exc:
                    out["gc"] = str(exc)
                out["readonly"] = c.store.readonly
    out["calls"] = CALLS
    out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    print(json.dumps(out))
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), *sys.path])
    return env


def _run(argv: list[str], what: str) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user may read (``tmp_path`` is private to root): mode 755."""
    root = Path(tempfile.mkdtemp(prefix="cashet-ro-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _populate(root: Path) -> tuple[Path, Path]:
    script = root / "child.py"
    script.write_text(_CHILD)
    script.chmod(0o644)
    store = root / "store"
    out = _run([sys.executable, str(script), str(store), "populate"], "populating")
    assert out["calls"] == [1, 64] and out["warnings"] == []
    return script, store


def _snapshot(store: Path) -> dict[str, str]:
    """Every file of the store by content; SQLite's shared-memory index (``-shm``, which a
    reader in a writable directory creates to lock) and an empty ``-wal`` hold no data."""
    files = {}
    for path in sorted(store.rglob("*")):
        if path.name.endswith("-shm") or (path.name.endswith("-wal") and not path.stat().st_size):
            continue
        if path.is_file():
            files[str(path.relative_to(store))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _check_served(out: dict[str, Any], warned: bool) -> None:
    assert out["hit"] == [2, True, 256 * 64, True]  # hits load
    assert out["miss"] == [4, False] and out["again"] == [4, False]  # computed, not stored
    assert out["chained"] == 8 and out["bigmiss"] == 256 * 65
    assert out["calls"] == [2, 2, 4, 65]  # the misses ran; the hits did not
    assert out["log"] == 2 and out["total"] == 2 and out["show"] and out["get"] == 2
    assert "read-only" in out["gc"]
    assert out["readonly"] is True
    ours = [w for w in out["warnings"] if w.startswith("ReadOnlyStoreWarning")]
    assert out["warnings"] == ours
    assert len(ours) == (1 if warned else 0), out["warnings"]


def _ro_mount(store: Path, script: Path, *args: str) -> list[str]:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    mount = f"mount --bind {store} {store} && mount -o remount,ro,bind {store} {store}"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"{mount} && touch {store}/probe"],
        capture_output=True,
        text=True,
    )
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {probe.stderr.strip()}")
    return ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh", *args]


def test_read_only_mount_serves_hits_and_computes_misses(shared_dir: Path) -> None:
    """A cache restored on a read-only mount: hits load, misses compute and are not stored,
    one warning. (Reproduced first: ``Client()`` raised ``StoreError``.)"""
    script, store = _populate(shared_dir)
    before = _snapshot(store)
    assert not (store / "meta.db-wal").exists()  # closed cleanly: immutable=1 is the way in
    out = _run(_ro_mount(store, script, sys.executable, str(script), str(store), "auto"), "ro")
    _check_served(out, warned=True)
    assert "is opened read-only" in out["warnings"][0] and str(store) in out["warnings"][0]
    assert _snapshot(store) == before


def test_read_only_mount_with_a_live_writers_wal(shared_dir: Path) -> None:
    """The -wal and -shm files of a writer still open are there (a snapshot of a live
    cache): ``mode=ro`` reads through them, committed rows in the WAL included."""
    script, store = _populate(shared_dir)
    holder = sqlite3.connect(store / "meta.db", isolation_level=None)
    try:
        holder.execute("PRAGMA wal_autocheckpoint = 0")
        holder.execute("SELECT count(*) FROM commits").fetchone()
        assert (store / "meta.db-wal").exists() and (store / "meta.db-shm").exists()
        out = _run(_ro_mount(store, script, sys.executable, str(script), str(store), "auto"), "ro")
    finally:
        holder.close()
    _check_served(out, warned=True)


def test_directory_a_user_may_read_but_not_write(shared_dir: Path) -> None:
    """A shared cache directory owned by another user (root, mode 755): a process of
    ``nobody`` (``setpriv``) opens it read-only, with one warning."""
    script, store = _populate(shared_dir)
    before = _snapshot(store)
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("no setpriv to drop root's privileges")
        drop = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    else:
        subprocess.run(["chmod", "-R", "a-w", str(store)], check=True)
        drop = []
    try:
        out = _run([*drop, sys.executable, str(script), str(store), "auto"], "as nobody")
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=True)
    _check_served(out, warned=True)
    assert _snapshot(store) == before


def test_readonly_true_writes_nothing_and_does_not_warn(shared_dir: Path) -> None:
    """``readonly=True`` on a writable store: served the same, silently, nothing written."""
    script, store = _populate(shared_dir)
    before = _snapshot(store)
    out = _run([sys.executable, str(script), str(store), "explicit"], "readonly=True")
    _check_served(out, warned=False)
    assert _snapshot(store) == before


CALLS: list[int] = []


def triple(x: int) -> int:
    CALLS.append(x)
    return x * 3


def _claims(store: Path) -> int:
    uri = f"file:{store / 'meta.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        n: int = conn.execute("SELECT count(*) FROM claims").fetchone()[0]
    return n


def lease_count(x: int, store: str) -> int:
    """A task that reports how many lease rows the store holds while it runs."""
    return _claims(Path(store)) + x * 0


def test_no_lease_row_no_access_time(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with Client(store) as c:
        commit = c.submit(triple, 1).commit_hash
    with closing(sqlite3.connect(store / "meta.db")) as conn:
        conn.execute("UPDATE commits SET last_accessed = NULL")
        conn.commit()
    with Client(store, readonly=True) as c:
        assert c.submit(triple, 1).cached
        assert c.submit(lease_count, 0, str(store)).load() == 0  # the miss took no lease row
        assert c.show(commit).last_accessed is None  # the hit recorded no access
        with pytest.raises(ReadOnlyStoreError, match="read-only"):
            c.rm(commit)
        with pytest.raises(ReadOnlyStoreError, match="read-only"):
            c.invalidate({"k": None})
        archive = tmp_path / "a.tar.gz"
        c.export(archive)
        with pytest.raises(ReadOnlyStoreError, match="cannot import"):
            c.import_archive(archive)
    assert Client(store).stats()["total_commits"] == 1


def test_readonly_never_creates_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no cashet store"):
        SQLiteStore(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()


def test_async_client_readonly(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with Client(store) as c:
        c.submit(triple, 5)

    async def go() -> tuple[Any, ...]:
        async with AsyncClient(store, readonly=True) as c:
            hit = await c.submit(triple, 5)
            miss = await c.submit(triple, 6)
            return hit.cached, await hit.load(), miss.cached, await miss.load(), await c.stats()

    CALLS.clear()
    cached, value, miss_cached, miss_value, stats = asyncio.run(go())
    assert (cached, value, miss_cached, miss_value) == (True, 15, False, 18)
    assert CALLS == [6] and stats["total_commits"] == 1


def test_cli_reads_a_read_only_store(shared_dir: Path) -> None:
    """``cashet log/show/get/stats`` on a read-only mount work; ``rm`` and ``gc`` say why
    they cannot."""
    script, store = _populate(shared_dir)
    with Client(store) as c:
        commit = c.log(func_name="double")[0].hash
    cli = [sys.executable, "-m", "cashet", "--store-dir", str(store)]
    reads = " && ".join(
        f"{' '.join(cli)} {cmd}"
        for cmd in ("log", f"show {commit}", f"get {commit[:12]}", "stats --json")
    )
    inner = f"{reads} && echo READS-OK && {' '.join(cli)} gc; {' '.join(cli)} rm {commit}"
    argv = _ro_mount(store, script, "sh", "-c", inner)
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=120)
    assert "READS-OK" in done.stdout, done.stderr
    assert '"total_commits": 2' in done.stdout and '"blob_objects": 1' in done.stdout
    assert done.stderr.count("is read-only: cannot") == 2, done.stderr
    assert "Traceback" not in done.stderr


def test_cli_readonly_in_process(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with Client(store) as c:
        c.submit(triple, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = CliRunner().invoke(main, ["--store-dir", str(store), "log"])
    assert result.exit_code == 0, result.output


def big(n: int) -> bytes:
    CALLS.append(n)
    return b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(32 * n))


def test_readonly_damage_is_a_miss_never_a_write(tmp_path: Path) -> None:
    """A damaged row and a lost blob file in a read-only store: misses (recomputed), never
    an exception other than the lost blob's own, and nothing written."""
    from cashet.errors import BlobMissingError

    store = tmp_path / "s"
    with Client(store) as c:
        damaged = c.submit(triple, 1).commit_hash
        c.submit(triple, 2)
        lost = c.submit(big, 40)
    with closing(sqlite3.connect(store / "meta.db")) as conn:
        conn.execute("UPDATE commits SET body = '{not json' WHERE hash = ?", (damaged,))
        conn.commit()
    (store / "objects" / lost.hash[:2] / lost.hash[2:]).unlink()
    before = _snapshot(store)
    CALLS.clear()
    with Client(store, readonly=True) as c:
        assert len(c.log()) == 2 and c.submit(triple, 2).cached
        assert c.submit(triple, 1).load() == 3 and CALLS == [1]
        with pytest.raises(BlobMissingError):
            c.submit(big, 40).load()
        assert len(c.submit(big, 40).load()) == 40 * 1024 and CALLS == [1, 40]
        assert c.store.quarantined() == []  # type: ignore[attr-defined]
    assert _snapshot(store) == before
