"""Issue 13, item 6: errors that say what happened.

Each test reproduced its finding before the fix: a task's ``SystemExit`` or
``KeyboardInterrupt`` under a timeout, an unpicklable result, a store that dies while a task
runs, arguments nested thousands deep, a blackholed Redis link.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cashet import Client, ResultSerializationError, TaskError, TaskTimeoutError

pytestmark = pytest.mark.filterwarnings("ignore::cashet.errors.ClosureWarning")


# --- SystemExit / KeyboardInterrupt under a timeout -------------------------------------


def _exits(code: int) -> int:
    raise SystemExit(code)


def _interrupted() -> int:
    raise KeyboardInterrupt


@pytest.mark.parametrize("timeout", [None, 5])
def test_system_exit_under_timeout_leaves_as_itself(client: Any, timeout: float | None) -> None:
    start = time.monotonic()
    with pytest.raises(SystemExit) as info:
        client.submit(_exits, 3, _timeout=timeout)
    assert info.value.code == 3 and not isinstance(info.value, TaskTimeoutError)
    assert time.monotonic() - start < 4  # never waited out the timeout
    # Nothing recorded as a timeout, and the lease is free: a second call runs at once.
    assert not any("timed out" in (c.error or "") for c in client.log())
    with pytest.raises(SystemExit):
        client.submit(_exits, 3, _timeout=timeout)


@pytest.mark.parametrize("timeout", [None, 5])
def test_keyboard_interrupt_under_timeout_stops_the_program(
    client: Any, timeout: float | None
) -> None:
    with pytest.raises(KeyboardInterrupt):
        client.submit(_interrupted, _timeout=timeout)
    assert not any("timed out" in (c.error or "") for c in client.log())


def test_a_real_timeout_is_still_a_timeout(client: Any) -> None:
    def slow() -> int:
        time.sleep(0.5)
        return 1

    with pytest.raises(TaskTimeoutError, match=r"timed out after 0\.05s"):
        client.submit(slow, _timeout=0.05)


# --- a result that cannot be serialized -------------------------------------------------


def _returns_lock() -> Any:
    return threading.Lock()


def test_unpicklable_result_names_the_task_and_the_type(client: Any) -> None:
    with pytest.raises(ResultSerializationError) as info:
        client.submit(_returns_lock)
    err = info.value
    assert "_returns_lock" in str(err) and "lock" in str(err).lower()
    assert isinstance(err, TaskError) and isinstance(err, TypeError)
    assert err.func_name is not None and "_returns_lock" in err.func_name
    assert err.__cause__ is not None  # the serializer's own error
    assert client.log() == []  # nothing stored
    # The lease was released: the next call runs (and fails the same way) at once.
    start = time.monotonic()
    with pytest.raises(ResultSerializationError):
        client.submit(_returns_lock)
    assert time.monotonic() - start < 10


def test_unpicklable_result_sync_client_message(tmp_path: Any) -> None:
    with Client(store_dir=tmp_path) as c:
        with pytest.raises(ResultSerializationError, match=r"_returns_lock .*\(a _thread\.lock"):
            c.submit(_returns_lock)


# --- the store fails while a task runs: its failure is the error --------------------------


@pytest.mark.redis
def test_redis_killed_during_task_reports_the_failed_write(tmp_path: Any) -> None:
    """A real Redis stopped while the task runs: storing the result fails, and so does the
    release of the lease; the error is the failed write, the release is a note."""
    from cashet import StoreUnavailableError
    from cashet.redis_store import RedisStore
    from tests._redis import start_private_server

    server = start_private_server(tmp_path)
    try:
        store = RedisStore(server.url, socket_timeout=2, socket_connect_timeout=1)
        with Client(store=store) as c:

            def task() -> int:
                server.stop()
                return 41

            with pytest.raises(StoreUnavailableError) as info:
                c.submit(task)
        err = info.value
        assert not str(err).startswith("cannot release"), str(err)
        assert "release" not in str(err)
        notes = getattr(err, "__notes__", [])
        assert any("lease" in n and "released" in n for n in notes), notes
    finally:
        server.stop()


def test_disk_full_during_a_miss_reports_the_failed_write(tmp_path: Any) -> None:
    """A real resource limit (RLIMIT_FSIZE, in a child process) makes the blob write fail:
    the error is the write that failed, a StoreError naming the file, and the lease is free."""
    import subprocess
    import sys

    code = (
        "import os, resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from cashet import Client, StoreError\n"
        "with Client(store_dir=sys.argv[1]) as c:\n"
        "    c.submit(len, 'warm')\n"
        "    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))\n"
        "    def big():\n"
        "        return os.urandom(4 << 20)\n"
        "    try:\n"
        "        c.submit(big)\n"
        "    except StoreError as e:\n"
        "        print('ERR', e)\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))\n"
        "    print('AGAIN', len(c.submit(big, _timeout=30).load()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "ERR cannot write blob file" in out.stdout and "AGAIN 4194304" in out.stdout


# --- a blackholed Redis link: socket_timeout bounds the operation ------------------------


class _Blackhole:
    """A TCP server that accepts connections and never answers (nor closes them)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[Any] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)  # read nothing, answer nothing

    def close(self) -> None:
        import socket
        from contextlib import suppress

        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_blackholed_redis_fails_within_socket_timeout(mode: str) -> None:
    """Before: three sends, each waiting socket_timeout (3x the documented bound)."""
    pytest.importorskip("redis")
    import asyncio

    from cashet import StoreUnavailableError
    from cashet.redis_store import AsyncRedisStore, RedisStore

    hole = _Blackhole()
    url = f"redis://127.0.0.1:{hole.port}/0"
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="unreachable"):
            if mode == "sync":
                with RedisStore(url, socket_timeout=1.5, socket_connect_timeout=1.5) as s:
                    s.lookup("ab" * 32 + ":" + "cd" * 32)
            else:

                async def go() -> None:
                    s = AsyncRedisStore(url, socket_timeout=1.5, socket_connect_timeout=1.5)
                    try:
                        await s.lookup("ab" * 32 + ":" + "cd" * 32)
                    finally:
                        await s.close()

                asyncio.run(go())
        elapsed = time.monotonic() - start
        assert elapsed < 3.2, f"failed after {elapsed:.1f}s, socket_timeout=1.5"
    finally:
        hole.close()


# --- arguments nested thousands deep ----------------------------------------------------


def _nested(depth: int, leaf: Any = 0, kinds: str = "l") -> Any:
    value = leaf
    for i in range(depth):
        kind = kinds[i % len(kinds)]
        value = [value] if kind == "l" else (value,) if kind == "t" else {"k": value, "z": i}
    return value


def _first(x: Any) -> int:
    return 1


@pytest.mark.parametrize("kinds", ["l", "ltd"])
def test_arguments_nested_10000_deep_hash_and_hit(client: Any, kinds: str) -> None:
    """Before: a bare RecursionError from 249 lists deep on."""
    deep = _nested(10_000, kinds=kinds)
    first = client.submit(_first, deep)
    assert first.load() == 1 and not first.cached
    assert client.submit(_first, _nested(10_000, kinds=kinds)).cached
    other = client.submit(_first, _nested(10_000, leaf=1, kinds=kinds))
    assert not other.cached  # a different leaf is a different key
    assert client.submit(_first, x=_nested(10_000, kinds=kinds)).load() == 1


def test_deep_encoding_is_the_recursive_encoding() -> None:
    """The stack-walked encoding writes the same bytes as the recursive one: checked on
    mixed values (cycles, shared parts, packed runs, unsortable keys) and, in a child
    process with a large stack and recursion limit, on values 10,000 deep."""
    import subprocess
    import sys

    from cashet.hashing.values import _hash_args_deep, hash_args

    shared = [1, 2]
    cyc: list[Any] = [1]
    cyc.append(cyc)
    samples: list[Any] = [
        _nested(50, kinds="ltd"),
        [shared, shared, (shared,), {"a": shared}],
        cyc,
        {"x": cyc, "y": [cyc, (cyc,)]},
        [list(range(20)), [1.5] * 20, ["s"] * 20, tuple(range(30))],
        {1: "a", "b": 2, (3,): [4]},  # unsortable keys: digests of entries
        [{1, 2}, frozenset({"a"}), b"bytes", None, 3.5, "text"],
        [],
        {},
    ]
    for value in samples:
        assert _hash_args_deep((value,), {"k": value}, None) == hash_args((value,), {"k": value})

    code = (
        "import sys, threading\n"
        "sys.setrecursionlimit(1_000_000)\n"
        "threading.stack_size(512 << 20)\n"
        "from cashet.hashing.values import hash_args\n"
        "from tests.test_faults_errors import _nested\n"
        "out = []\n"
        "t = threading.Thread(target=lambda: out.append(hash_args("
        "(_nested(10_000, kinds='ltd'),), {})))\n"
        "t.start(); t.join()\n"
        "print(out[0])\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert child.stdout.strip() == hash_args((_nested(10_000, kinds="ltd"),), {})


class _Node:
    def __init__(self, child: Any) -> None:
        self.child = child


def test_too_deep_inside_an_object_names_the_argument(client: Any) -> None:
    node: Any = None
    for _ in range(10_000):
        node = _Node(node)
    with pytest.raises(TypeError, match=r"argument 1 \(args\[1\]\) of type .*_Node is nested"):
        client.submit(_first2, 0, node)
    with pytest.raises(TypeError, match=r"argument 'z' \(kwargs\['z'\]\) of type .*_Node"):
        client.submit(_any_kw, z=node)


def _first2(x: Any, y: Any) -> int:
    return 1


def _any_kw(**kw: Any) -> int:
    return 1


def _deep_result() -> Any:
    return _nested(100_000)


def test_result_too_deep_to_pickle_names_the_task(client: Any) -> None:
    with pytest.raises(ResultSerializationError, match="_deep_result"):
        client.submit(_deep_result)
    assert client.log() == []


def test_deep_argument_snapshot_and_manifest_are_bounded(tmp_path: Any) -> None:
    from cashet.hashing import args_snapshot, hash_value
    from cashet.hashing.manifest import preview

    deep = _nested(10_000)
    text = args_snapshot((deep,), {"k": deep})
    assert len(text) < 2_100 and "[[[...]]]" in text
    assert len(preview(deep)) < 200
    assert hash_value(deep) == hash_value(_nested(10_000))
    assert hash_value(deep) != hash_value(_nested(10_000, leaf=1))
    with Client(store_dir=tmp_path) as c:
        c.submit(_first, deep)
        (commit,) = c.log()
        manifest = commit.task_def.manifest
        (arg,) = manifest["arguments"]
        assert arg["name"] == "x" and arg["digest"] and len(arg["preview"]) < 200
