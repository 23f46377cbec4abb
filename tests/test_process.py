"""cashet._process: the one home of pid, host, fork hooks and bounded caches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cashet import _process


def test_bounded_cache_drops_the_oldest_insertion() -> None:
    cache: _process.BoundedCache[str, int] = _process.BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)  # an update does not evict
    assert dict(cache) == {"a": 10, "b": 2}
    cache.put("c", 3)
    assert dict(cache) == {"b": 2, "c": 3}
    assert cache.get("a") is None and len(cache) == 2


def test_bounded_cache_needs_room() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _process.BoundedCache(0)


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_forked_child_gets_its_own_pid_and_runs_the_hooks() -> None:
    seen: list[int] = []
    hook = _process.after_fork_in_child(lambda: seen.append(os.getpid()))
    try:
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            ok = _process.current_pid() == os.getpid() and seen == [os.getpid()]
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
        os.close(write)
        assert os.read(read, 1) == b"1"
        os.waitpid(child, 0)
        assert _process.current_pid() == os.getpid() and seen == []
    finally:
        _process._child_hooks.remove(hook)


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_a_fork_waits_for_the_threads_inside_the_fork_gate() -> None:
    inside, left = threading.Event(), threading.Event()

    def hold() -> None:
        with _process.fork_gate:
            with _process.fork_gate:  # re-entrant
                inside.set()
                time.sleep(0.3)
            left.set()  # still inside the outer entry

    thread = threading.Thread(target=hold)
    thread.start()
    inside.wait(10)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        with _process.fork_gate:  # the child's gate is open
            os.write(write, b"1" if left.is_set() else b"0")
        os._exit(0)
    os.close(write)
    thread.join()
    assert os.read(read, 1) == b"1"  # the fork happened after the thread left the gate
    os.waitpid(child, 0)
    with _process.fork_gate:  # and the parent's gate is open again
        pass


def test_bounded_cache_put_is_safe_beside_other_threads() -> None:
    """Threads putting into one full cache at once: never an error (dict iteration raced
    with another thread's insert raised RuntimeError), and the bound holds loosely."""
    import threading

    cache: _process.BoundedCache[int, int] = _process.BoundedCache(64)
    errors: list[BaseException] = []

    def fill(base: int) -> None:
        try:
            for i in range(20_000):
                cache.put(base + i, i)
        except BaseException as exc:  # pragma: no cover - the defect this test guards
            errors.append(exc)

    threads = [threading.Thread(target=fill, args=(n * 1_000_000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(cache) <= 64 + 4


def test_closing_a_store_never_pulls_a_connection_from_under_another_thread(
    tmp_path: Path,
) -> None:
    """Threads writing hits (as the flusher does) while the store is closed: the close
    waits for them to leave SQLite (closing a connection in use crashed the process).
    In a child process: the defect was a segmentation fault."""
    code = textwrap.dedent(
        f"""
        import threading, time
        from cashet.store import SQLiteStore
        d = {str(tmp_path / "s")!r}
        SQLiteStore(d).close()
        for i in range(200):
            s = SQLiteStore(d)
            stop = []
            def hammer():
                while not stop:
                    try:
                        s.record_hit("ab" * 32, time.time(), 0.1)
                        s.flush_hits()
                        s.stats()
                    except Exception:  # closed: StoreError
                        return
            ts = [threading.Thread(target=hammer) for _ in range(3)]
            for t in ts:
                t.start()
            time.sleep(0.002)
            s.close()
            stop.append(1)
            for t in ts:
                t.join()
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
