"""A real Redis for the tests: the session fixture ``redis_server_url``.

``$CASHET_TEST_REDIS_URL`` when set (any Redis you name: the tests write only under their own
key prefixes, ``cashet-test:<random>:``, and delete those keys afterwards); otherwise a
private ``redis-server`` started for the session (no TCP port: a unix socket in a temp dir,
no persistence) and stopped at its end. A Redis nobody named, such as one on
``127.0.0.1:6379``, is never touched. Without either, Redis tests are skipped with the
reason, except in CI (``CI=true``), where that fails the run. Only tests marked ``redis`` may
use it (``redis_url``), so ``pytest -m "not redis"`` runs none of them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Redis is required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def ping(url: str, timeout: float = 0.5) -> str | None:
    """Return ``None`` when Redis at ``url`` answers PING, else why not."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


class RedisServer:
    """A private ``redis-server`` on a unix socket in ``folder`` that tests may stop.

    No TCP port and no persistence: nothing else can reach it and nothing is left behind.
    """

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.sock = folder / "redis.sock"
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        args = [self.binary, "--port", "0", "--unixsocket", str(self.sock)]
        args += ["--unixsocketperm", "700", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.folder)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.sock.exists() and ping(self.url) is None:
                return self
            time.sleep(0.02)
        code = self.stop()
        raise RuntimeError(f"{self.binary} did not start (exit code {code})")

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL) and return its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        proc.terminate()
        try:
            return proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def start_private_server(folder: Path) -> RedisServer:
    """Start a :class:`RedisServer`, or skip (fail in CI) when ``redis-server`` is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not on PATH: this test needs a server it may stop")
    assert binary is not None
    try:
        return RedisServer(binary, folder).start()
    except RuntimeError as exc:
        _unavailable(str(exc))
        raise


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of a Redis this test may write to (under its own key prefix).

    Only tests marked ``redis`` may use it, so that ``pytest -m "not redis"`` runs none that
    needs a Redis: a test that reaches Redis without the marker fails here, naming itself.
    """
    if request.node.get_closest_marker("redis") is None:
        pytest.fail(
            f"{request.node.nodeid} uses Redis but is not marked: add @pytest.mark.redis "
            "(or a redis-marked parameter) so that -m 'not redis' deselects it",
            pytrace=False,
        )
    url: str = request.getfixturevalue("redis_server_url")
    return url


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis of the whole session: see the module docstring for which one."""
    pytest.importorskip("redis", reason='the redis package is missing: pip install "cashet[redis]"')
    env = os.environ.get("CASHET_TEST_REDIS_URL")
    if env:
        why = ping(env, timeout=2.0)
        if why is not None:
            _unavailable(f"CASHET_TEST_REDIS_URL={env} does not answer: {why}")
        yield env
        return
    if shutil.which("redis-server") is None:
        _unavailable(
            "no Redis: redis-server is not on PATH (apt-get install redis-server) and "
            "CASHET_TEST_REDIS_URL is not set"
        )
    server = start_private_server(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


def fresh_prefix() -> str:
    """A key prefix no other test uses."""
    return f"cashet-test:{uuid.uuid4().hex[:12]}:"


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (tests only: SCAN is fine here)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


def check_invariants(url: str, prefix: str) -> dict[str, int]:
    """Assert that the keys under ``prefix`` are consistent; return a few counts.

    Every commit is in the global indexes and counted once; every reference count equals
    the number of commits pointing at the blob; the blob counters add up the meta keys;
    every published blob has all of its bytes; unpublished chunks all carry an expiry;
    unreferenced blobs are in the orphan index. This is what "no half commit and no
    orphan count" means, checked by scanning (fine in tests, never in the store).
    """
    import redis

    r = redis.Redis.from_url(url)
    try:
        p = prefix

        def scan(pattern: str) -> list[str]:
            n = len(p) + len(pattern) - 1
            return sorted(k.decode()[n:] for k in r.scan_iter(match=p + pattern, count=1000))

        commits = scan("commit:*")
        fields = {h: r.hmget(p + "commit:" + h, "r", "c", "x", "b") for h in commits}
        for index in ("index:created", "index:hashes", "index:last_accessed"):
            members = sorted(m.decode() for m in r.zrange(p + index, 0, -1))
            assert members == commits, f"{index} disagrees with the commit keys"
        stats_c = r.hgetall(p + "stats:commit")
        assert int(stats_c.get(b"total_commits", 0)) == len(commits)
        completed = sum(1 for f in fields.values() if f[1] == b"1")
        assert int(stats_c.get(b"completed_commits", 0)) == completed
        for h, (_, _, index_keys, body) in fields.items():
            assert body, f"commit {h} has no body"
            for key in json.loads(index_keys):
                assert r.zscore(key, h) is not None, f"commit {h} missing from {key}"
        uses: dict[str, int] = {}
        for res, *_ in fields.values():
            if res is not None:
                uses[res.decode()] = uses.get(res.decode(), 0) + 1
        refs = {h: int(r.get(p + "blob:ref:" + h) or 0) for h in scan("blob:ref:*")}
        assert refs == uses, "blob reference counts disagree with the commits"
        metas = scan("blob:meta:*")
        totals = {"blob_objects": 0, "blob_bytes": 0, "inline_objects": 0, "inline_bytes": 0}
        published_chunks = set()
        orphans = {m.decode() for m in r.zrange(p + "index:orphans", 0, -1)}
        for h in metas:
            z, n, g, i = (v.decode() for v in r.hmget(p + "blob:meta:" + h, "z", "n", "g", "i"))
            kind = "inline" if i == "1" else "blob"
            totals[kind + "_objects"] += 1
            totals[kind + "_bytes"] += int(z)
            if n == "0":
                assert r.strlen(p + "blob:data:" + h) == int(z), f"blob {h} lost its bytes"
            elif n == "-1":  # its bytes in the blob store (blobs=): none here
                assert i == "e" and not r.exists(p + "blob:data:" + h), f"blob {h} is half in"
            else:
                for k in range(int(n)):
                    key = f"{p}blob:data:{h}:{g}:{k}"
                    assert r.exists(key) and r.pttl(key) == -1, f"chunk {key} missing"
                    published_chunks.add(key)
            if h not in uses:
                assert h in orphans, f"unreferenced blob {h} is not in the orphan index"
        stats_b = {k.decode(): int(v) for k, v in r.hgetall(p + "stats:blob").items()}
        assert {k: stats_b.get(k, 0) for k in totals} == totals, "blob counters disagree"
        for key in r.scan_iter(match=p + "blob:data:*:*", count=1000):
            if key.decode() not in published_chunks:
                assert r.pttl(key) > 0, f"unpublished chunk {key!r} would never expire"
        return {"commits": len(commits), "blobs": len(metas), "completed": completed}
    finally:
        r.close()
