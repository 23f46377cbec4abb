"""Is the cache paying off? (issue 15 "Observe", issue 18 "no write on the hit path").

Hits are counted in memory and written in batches; these tests run real interpreters on one
store (a module written to a temp folder, ``PYTHONDONTWRITEBYTECODE=1``) and read the counts
back through the real CLI: counts add up across processes, a normal exit writes them, a
SIGKILL loses at most the unwritten ones and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cashet import Client
from cashet.async_client import AsyncClient
from cashet.models import utcnow
from cashet.protocols import HitCounter, supports

MODULE = """
import time

def slow(x):
    time.sleep(0.02)
    return x * 2

def fast(x):
    return x + 1

def noisy(x):
    import random
    return random.random() + x

def listed(x):
    return [x, x]

def chained(v):
    return sum(v) if isinstance(v, list) else v + 100
"""

PRELUDE = """
import json, os, sys, time
sys.path.insert(0, {folder!r})
from cashet import Client
import obs_mod
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "obs_mod.py").write_text(MODULE)
    return tmp_path


def store_of(folder: Path) -> Path:
    return folder / ".cashet"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def python(folder: Path, body: str, timeout: float = 60) -> str:
    code = PRELUDE.format(folder=str(folder)) + textwrap.dedent(body).replace(
        "STORE", repr(str(store_of(folder)))
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cashet = Path(sys.executable).with_name("cashet")
    return subprocess.run(
        [str(cashet), "--store-dir", str(store_of(folder)), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env(), "COLUMNS": "120"},
    )


def cli_json(folder: Path, *args: str) -> Any:
    proc = cli(folder, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- hits counted, without a write per hit -------------------------------------------------


def test_hits_add_up_across_processes_and_survive(folder: Path) -> None:
    body = """
    with Client(store_dir=STORE) as c:
        for _ in range({n}):
            c.submit(obs_mod.slow, 1)
        c.submit(obs_mod.fast, 5)
    """
    python(folder, body.format(n=4))  # 1 miss + 3 hits of slow, 1 miss of fast
    python(folder, body.format(n=3))  # 3 hits of slow, 1 hit of fast
    stats = cli_json(folder, "stats")
    assert (stats["hits"], stats["misses"], stats["total_commits"]) == (7, 2, 2)
    log = {c["func_name"]: c for c in cli_json(folder, "log")}
    assert log["slow"]["hits"] == 6 and log["fast"]["hits"] == 1
    assert log["slow"]["last_hit"] is not None and log["slow"]["last_accessed"] is not None
    slow_seconds = log["slow"]["compute_seconds"]
    assert stats["seconds_saved"] == pytest.approx(
        6 * slow_seconds + log["fast"]["compute_seconds"], rel=1e-6, abs=1e-6
    )
    shown = cli_json(folder, "show", log["slow"]["hash"])
    assert shown["hits"] == 6 and shown["last_hit"] == log["slow"]["last_hit"]
    plain = cli(folder, "log").stdout.splitlines()
    assert sorted(line.split("\t")[5] for line in plain) == ["1", "6"]


def test_a_normal_exit_writes_the_hits_of_a_client_never_closed(folder: Path) -> None:
    python(
        folder,
        """
        c = Client(store_dir=STORE)  # never closed: the hits are written at exit
        for _ in range(5):
            c.submit(obs_mod.fast, 1)
        """,
    )
    assert cli_json(folder, "stats")["hits"] == 4


def test_sigkill_loses_at_most_the_unwritten_hits_and_nothing_else(folder: Path) -> None:
    code = PRELUDE.format(folder=str(folder)) + textwrap.dedent(
        f"""
        import cashet.stores.hits as hits
        hits.FLUSH_EVERY = 3600.0  # no background flush: only the explicit one below
        c = Client(store_dir={str(store_of(folder))!r})
        for k in range(3):
            c.submit(obs_mod.listed, k)
        for _ in range(5):
            c.submit(obs_mod.listed, 0)
        c.store.flush_hits()  # 5 hits written
        for _ in range(3):
            c.submit(obs_mod.listed, 1)  # 3 hits not written yet
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env()
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    stats = cli_json(folder, "stats")
    assert stats["hits"] == 5 and stats["total_commits"] == 3  # the 3 unwritten are lost
    with Client(store_dir=store_of(folder)) as c:
        sys.path.insert(0, str(folder))
        try:
            import obs_mod  # type: ignore[import-not-found]

            for k in range(3):  # every result is still there and right
                ref = c.submit(obs_mod.listed, k)
                assert ref.cached and ref.load() == [k, k]
        finally:
            sys.path.remove(str(folder))
            sys.modules.pop("obs_mod", None)
        assert c.check().ok


def test_a_running_process_writes_its_hits_in_the_background(folder: Path) -> None:
    code = PRELUDE.format(folder=str(folder)) + textwrap.dedent(
        f"""
        c = Client(store_dir={str(store_of(folder))!r})
        for _ in range(4):
            c.submit(obs_mod.fast, 2)
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env()
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while cli_json(folder, "stats")["hits"] != 3:  # written every couple of seconds
            assert time.monotonic() < deadline, "the hits were never written"
            time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_hit_not_yet_written_still_keeps_its_commit_from_gc(tmp_path: Path) -> None:
    def old(x: int) -> int:
        return x

    with Client(store_dir=tmp_path) as c:
        ref = c.submit(old, 1)
        c.store.touch(ref.commit_hash, utcnow() - timedelta(days=40))
        assert c.submit(old, 1).cached  # recorded in memory only
        assert c.gc(timedelta(days=30)) == 0  # gc writes the hits first: just used
        shown = c.show(ref.commit_hash)
        assert shown is not None and shown.hits == 1
        assert shown.last_accessed is not None
        assert shown.last_accessed > utcnow() - timedelta(minutes=5)


def test_close_waits_for_a_batch_being_written_in_another_thread(tmp_path: Path) -> None:
    # The background flusher takes a batch and writes it while the program closes the
    # store: the close must wait for that write, never close the connection under it
    # (it crashed the interpreter in SQLite). The write is slowed by a wrapper, to hold
    # the window open: the race itself cannot be timed for real.
    import threading

    def f(x: int) -> int:
        return x

    c = Client(store_dir=tmp_path)
    ref = c.submit(f, 1)
    assert c.submit(f, 1).cached  # one hit, in memory
    store: Any = c.store
    recorder = store._hits
    writing = threading.Event()
    real = recorder._write

    def slow_write(batch: Any) -> None:
        writing.set()
        time.sleep(0.3)
        real(batch)

    recorder._write = slow_write
    flusher = threading.Thread(target=recorder.flush)
    flusher.start()
    assert writing.wait(5)
    c.close()  # while the batch is being written
    flusher.join(5)
    with Client(store_dir=tmp_path) as again:
        shown = again.show(ref.commit_hash)
        assert shown is not None and shown.hits == 1


def test_stats_by_function_through_the_cli(folder: Path) -> None:
    python(
        folder,
        """
        with Client(store_dir=STORE) as c:
            for _ in range(3):
                for k in range(2):
                    c.submit(obs_mod.slow, k)
            c.submit(obs_mod.fast, 1)
        """,
    )
    rows = {r["func_name"]: r for r in cli_json(folder, "stats", "--by-function")}
    assert set(rows) == {"slow", "fast"}
    slow, fast = rows["slow"], rows["fast"]
    assert (slow["runs"], slow["hits"], slow["hit_rate"]) == (2, 4, pytest.approx(4 / 6, 1e-3))
    assert (fast["runs"], fast["hits"], fast["hit_rate"]) == (1, 0, 0)
    assert slow["compute_seconds"] >= 0.04 and slow["seconds_saved"] >= 0.08
    assert slow["bytes_stored"] > 0 and fast["seconds_saved"] == 0
    plain = cli(folder, "stats", "--by-function").stdout.splitlines()
    assert plain[0].split("\t") == [
        "func_name",
        "runs",
        "hits",
        "hit_rate",
        "compute_seconds",
        "seconds_saved",
        "bytes_stored",
    ]
    assert plain[1].split("\t")[:3] == ["slow", "2", "4"]  # most time saved first
    text = cli(folder, "stats").stdout
    assert "hits: 4" in text and "misses: 3" in text and "seconds_saved:" in text


def test_async_client_counts_hits(tmp_path: Path) -> None:
    def f(x: int) -> int:
        return x * 3

    async def main() -> dict[str, Any]:
        async with AsyncClient(store_dir=tmp_path) as c:
            for _ in range(4):
                await c.submit(f, 1)
            rows = await c.stats_by_function()
            assert [(r.func_name.split(".")[-1], r.runs, r.hits) for r in rows] == [("f", 1, 3)]
            log = await c.log()
            assert [x.hits for x in log] == [3]
            return await c.stats()

    stats = asyncio.run(main())
    assert stats["hits"] == 3 and stats["misses"] == 1
    with Client(store_dir=tmp_path) as c:
        assert c.stats()["hits"] == 3


class OnlyTheSpec:
    """A third-party store: the spec's methods only (delegated), no ``HitCounter``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in ("record_hit", "flush_hits", "hit_counts", "hit_totals", "lookup"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_a_store_without_the_capability_keeps_its_touch(tmp_path: Path) -> None:
    from cashet.stores.sqlite.store import SQLiteStore

    def f(x: int) -> int:
        return x

    store = OnlyTheSpec(SQLiteStore(tmp_path))
    assert not supports(store, HitCounter)
    with Client(store=store) as c:  # type: ignore[arg-type]
        ref = c.submit(f, 1)
        old = utcnow() - timedelta(days=3)
        store.inner.touch(ref.commit_hash, old)
        for _ in range(3):
            assert c.submit(f, 1).cached
        # touched (a write, at most once a second per commit, as before); nothing counted
        assert store.inner.get_commit(ref.commit_hash).last_accessed > old
        assert c.stats()["hits"] == 0
        assert store.inner.hit_totals() == (0, 0.0)


# --- cashet graph ----------------------------------------------------------------------------


def make_pipeline(folder: Path) -> dict[str, str]:
    out = python(
        folder,
        """
        with Client(store_dir=STORE) as c:
            a = c.submit(obs_mod.listed, 3)
            b = c.submit(obs_mod.chained, a)
            d = c.submit(obs_mod.chained, b)
            other = c.submit(obs_mod.fast, 9)
        print(json.dumps({"a": a.commit_hash, "b": b.commit_hash, "d": d.commit_hash,
                          "other": other.commit_hash}))
        """,
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_graph_shows_upstream_and_downstream(folder: Path) -> None:
    h = make_pipeline(folder)
    data = json.loads(cli(folder, "graph", h["b"][:10], "--format", "json").stdout)
    sides = {n["hash"]: n["side"] for n in data["nodes"]}
    assert sides == {h["a"]: "upstream", h["b"]: "root", h["d"]: "downstream"}
    assert {(e["from"], e["to"]) for e in data["edges"]} == {(h["a"], h["b"]), (h["b"], h["d"])}
    assert data["truncated"] is False and data["unknown_inputs"] == []
    mermaid = cli(folder, "graph", h["b"]).stdout
    assert mermaid.startswith("flowchart LR")
    assert f"c{h['a'][:12]} -->" in mermaid and "--> |" not in mermaid
    assert mermaid.count("-->") == 2
    dot = cli(folder, "graph", h["d"], "-f", "dot").stdout
    assert dot.startswith("digraph lineage {") and dot.count("->") == 2  # a -> b -> d
    shallow = cli(folder, "graph", h["d"], "-f", "json", "--depth", "1")
    assert json.loads(shallow.stdout)["truncated"] is True
    assert len(json.loads(shallow.stdout)["nodes"]) == 2
    alone = json.loads(cli(folder, "graph", h["other"], "-f", "json").stdout)
    assert [n["hash"] for n in alone["nodes"]] == [h["other"]] and alone["edges"] == []


def test_graph_of_an_unknown_hash_fails_clearly(folder: Path) -> None:
    make_pipeline(folder)
    proc = cli(folder, "graph", "ffff0000")
    assert proc.returncode != 0 and "ffff0000" in proc.stderr + proc.stdout
    bad = cli(folder, "graph", "ffff0000", "--format", "png")
    assert bad.returncode == 2 and "png" in bad.stderr


# --- cashet verify ---------------------------------------------------------------------------


def test_verify_reruns_what_it_can_and_names_the_nondeterministic(folder: Path) -> None:
    python(
        folder,
        """
        with Client(store_dir=STORE) as c:
            c.submit(obs_mod.noisy, 1)
            c.submit(obs_mod.fast, 2)
            c.submit(obs_mod.listed, "x" * 500)  # snapshot abbreviated: not recoverable
            a = c.submit(obs_mod.listed, 4)
            c.submit(obs_mod.chained, a)  # a ResultRef argument: not recoverable
            c.submit(lambda v: v, 1)  # a lambda: not importable
        """,
    )
    db = store_of(folder) / "meta.db"
    before = db.read_bytes()
    cashet = Path(sys.executable).with_name("cashet")
    proc = subprocess.run(
        [str(cashet), "--store-dir", str(store_of(folder)), "verify", "-n", "20", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
        cwd=folder,  # the project's modules import from the current directory
    )
    assert proc.returncode == 1, proc.stderr  # a function is not deterministic
    report = json.loads(proc.stdout)
    verdicts = {(o["func_name"].split(".")[-1], o["verdict"]) for o in report["outcomes"]}
    assert ("noisy", "different") in verdicts
    assert ("fast", "same") in verdicts and ("listed", "same") in verdicts
    assert report["nondeterministic"] == ["noisy"] and report["candidates"] == 6
    skipped = {
        (o["func_name"].split(".")[-1], o["reason"])
        for o in report["outcomes"]
        if o["verdict"] == "skipped"
    }
    assert {name for name, _ in skipped} == {"listed", "chained", "<lambda>"}
    why = dict(skipped)
    assert "abbreviated" in why["listed"] and "ResultRef" in why["chained"]
    assert "cannot be imported" in why["<lambda>"]
    assert report["rerun"] == 3  # noisy, fast, listed(4): nothing else can re-run
    assert db.read_bytes() == before  # the cache is never changed
    plain = subprocess.run(
        [str(cashet), "--store-dir", str(store_of(folder)), "verify", "-n", "1", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(),
        cwd=folder,
    )
    assert "re-run" in plain.stdout and plain.returncode in (0, 1)


def test_verify_shows_progress_on_a_terminal(folder: Path) -> None:
    """On a pseudo-terminal, verify draws a progress bar on stderr."""
    import pty

    python(
        folder,
        """
        with Client(store_dir=STORE) as c:
            for k in range(3):
                c.submit(obs_mod.slow, k)
        """,
    )
    cashet = Path(sys.executable).with_name("cashet")
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [str(cashet), "--store-dir", str(store_of(folder)), "verify", "-n", "3"],
        stdin=child_fd,
        stdout=subprocess.PIPE,
        stderr=child_fd,
        env={**env(), "COLUMNS": "100", "TERM": "xterm"},
        cwd=folder,
    )
    os.close(child_fd)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        out = proc.communicate(timeout=60)[0]
        os.close(main_fd)
    assert proc.returncode == 0, (out, seen)
    assert b"verifying" in seen  # the bar, on the terminal
    assert b"3 re-run, 0 skipped" in out  # the report, on stdout


# --- Redis: one script call per batch ---------------------------------------------------------


@pytest.mark.redis
def test_redis_counts_hits_across_processes(folder: Path, redis_url: str) -> None:
    import uuid

    url = f"{redis_url.rstrip('/')}?prefix=obs{uuid.uuid4().hex[:8]}:"
    body = f"""
    c = Client(store={url!r})  # written at exit
    for _ in range(4):
        c.submit(obs_mod.slow, 1)
    c.submit(obs_mod.fast, 1)
    """
    python(folder, body)  # slow: 1 miss, 3 hits; fast: 1 miss
    python(folder, body)  # slow: 4 hits; fast: 1 hit
    cashet = Path(sys.executable).with_name("cashet")

    def run(*args: str) -> Any:
        proc = subprocess.run(
            [str(cashet), "--store", url, *args, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env(),
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    stats = run("stats")
    assert (stats["hits"], stats["misses"]) == (8, 2)
    log = {c["func_name"]: c for c in run("log")}
    assert log["slow"]["hits"] == 7 and log["fast"]["hits"] == 1
    assert log["slow"]["last_hit"] is not None
    assert stats["seconds_saved"] == pytest.approx(
        7 * log["slow"]["compute_seconds"] + log["fast"]["compute_seconds"], rel=1e-6, abs=1e-6
    )
    rows = {r["func_name"]: r for r in run("stats", "--by-function")}
    assert (rows["slow"]["runs"], rows["slow"]["hits"]) == (1, 7)
    # a deleted commit's hits leave the totals with it
    subprocess.run([str(cashet), "--store", url, "rm", log["slow"]["hash"]], check=True, env=env())
    assert run("stats")["hits"] == 1


@pytest.mark.redis
def test_redis_gc_writes_pending_hits_first(redis_url: str) -> None:
    import uuid

    from cashet.redis_store import RedisStore

    def old(x: int) -> int:
        return x

    store = RedisStore(redis_url, prefix=f"obs{uuid.uuid4().hex[:8]}:")
    with Client(store=store) as c:
        ref = c.submit(old, 1)
        store.touch(ref.commit_hash, utcnow() - timedelta(days=40))
        assert c.submit(old, 1).cached  # in memory only
        assert c.gc(timedelta(days=30)) == 0
        shown = c.show(ref.commit_hash)
        assert shown is not None and shown.hits == 1


@pytest.mark.redis
def test_async_redis_counts_hits(redis_url: str) -> None:
    import uuid

    from cashet.redis_store import AsyncRedisStore, RedisStore

    prefix = f"obs{uuid.uuid4().hex[:8]}:"

    def f(x: int) -> int:
        return x + 7

    async def main() -> None:
        async with AsyncClient(store=AsyncRedisStore(redis_url, prefix=prefix)) as c:
            for _ in range(5):
                await c.submit(f, 1)
            assert (await c.stats())["hits"] == 4  # its queries write the batch first
            assert [x.hits for x in await c.log()] == [4]
            assert [(r.runs, r.hits) for r in await c.stats_by_function()] == [(1, 4)]

    asyncio.run(main())  # closing wrote the hits
    with Client(store=RedisStore(redis_url, prefix=prefix)) as c:
        assert c.stats()["hits"] == 4 and [x.hits for x in c.log()] == [4]
