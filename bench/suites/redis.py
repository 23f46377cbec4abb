"""Redis suite: the hit path over Redis against a bare redis-py GET, and multi-process throughput.

Needs a Redis: ``$CASHET_BENCH_REDIS_URL``, else ``redis://127.0.0.1:6379/0``; without one
(or without the ``redis`` package) the scenarios report "unavailable". Every run writes
under a fresh key prefix and deletes it afterwards.

    python bench/run.py --suite redis
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _workloads as w
from _context import Context
from _harness import Config, Outcome, Unavailable, info, measure, suite, within

from suites.core import rounds

redis_suite = suite("redis", "hit latency over Redis vs a bare GET, 4-process throughput")

BENCH = Path(__file__).resolve().parents[1]
PROCESSES = 4
TASKS = (1000, 100)  # per process: (full, quick)
DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_url(ctx: Context) -> str:
    """The Redis to measure against, or ``Unavailable`` saying why there is none."""
    redis = ctx.require("redis")
    url = os.environ.get("CASHET_BENCH_REDIS_URL") or DEFAULT_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except Exception as exc:
        raise Unavailable(f"no Redis at {url} ({type(exc).__name__}: {exc})") from exc
    finally:
        client.close()
    return url


@contextmanager
def scratch_prefix(url: str) -> Iterator[str]:
    """A fresh key prefix, deleted with everything under it afterwards."""
    import redis

    prefix = f"cashet-bench:{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()


def store_class() -> Any:
    try:
        from cashet.redis_store import RedisStore
    except ImportError as exc:
        raise Unavailable(f"cashet.redis_store: {exc}") from exc
    return RedisStore


@redis_suite.scenario(
    "redis_hit_f1",
    "hit of f(1) over Redis: submit + load (baseline: one redis-py GET)",
    targets=[
        within("baseline", 2.5, label="bare redis-py GET"),
        info("raw_get", label="GET on a held redis-py connection"),
    ],
    baseline="redis-py GET",
)
def redis_hit_f1(ctx: Context) -> dict[str, Outcome]:
    def run() -> dict[str, Outcome]:
        url = redis_url(ctx)
        redis = ctx.require("redis")
        ctx.note(
            f"Redis at {url}; baseline: redis.Redis.get() of a 20-byte value (client "
            "defaults); raw_get: the same GET sent on a connection held out of the pool, as "
            "the store sends its calls"
        )
        with scratch_prefix(url) as prefix:
            bare = redis.Redis.from_url(url)
            bare.set(prefix + "bare", b"x" * 20)
            key = prefix + "bare"
            with ctx.ours()(store=store_class()(url, prefix=prefix)) as client:
                client.submit(w.f, 1).load()

                def hit(cfg: Config) -> Outcome:
                    return measure(lambda: client.submit(w.f, 1).load(), cfg)

                def get(cfg: Config) -> Outcome:
                    return measure(lambda: bare.get(key), cfg)

                # The store sends on a connection its thread holds, skipping redis-py's
                # per-command pool checkout: this GET does the same, for transparency.
                conn = bare.connection_pool.get_connection()

                def raw_get_once() -> Any:
                    conn.send_command("GET", key)
                    return conn.read_response()

                def raw_get(cfg: Config) -> Outcome:
                    return measure(raw_get_once, cfg)

                try:
                    return rounds(ctx.cfg, {"ours": hit, "baseline": get, "raw_get": raw_get}, n=4)
                finally:
                    bare.connection_pool.release(conn)
                    bare.close()

    try:
        return run()
    except Unavailable as exc:
        return {"ours": Outcome.unavailable(str(exc)), "baseline": Outcome.unavailable(str(exc))}
    except Exception as exc:
        return {"ours": ctx.failed("ours", exc)}


# --- throughput -----------------------------------------------------------------------------

WORKER = """
import json, sys, time
sys.path.insert(0, {bench!r})
import _workloads as w
from cashet import Client

kind, target, prefix, first, count = sys.argv[1:6]
first, count = int(first), int(count)
if kind == "redis":
    from cashet.redis_store import RedisStore
    store = RedisStore(target, prefix=prefix)
else:
    from cashet.store import SQLiteStore
    store = SQLiteStore(target)
with Client(store=store) as client:
    client.submit(w.trivial, -1 - first)  # connect and hash the function, untimed
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    for i in range(first, first + count):
        client.submit(w.trivial, i)
    print(json.dumps({{"seconds": time.perf_counter() - t0}}), flush=True)
"""


def farm_run(script: Path, kind: str, target: str, prefix: str, per: int) -> float:
    """Run PROCESSES workers of ``per`` distinct misses each; return the wall seconds."""
    procs = []
    try:
        for k in range(PROCESSES):
            args = [sys.executable, str(script), kind, target, prefix, str(k * per), str(per)]
            procs.append(
                subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {kind} worker failed to start")
        t0 = time.perf_counter()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, _ = p.communicate(timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"a {kind} worker exited {p.returncode}")
            json.loads(out.strip().splitlines()[-1])
        return time.perf_counter() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def farm_outcome(samples: int, per: int, once: Callable[[], float]) -> Outcome:
    seconds = [once() for _ in range(samples)]
    total = PROCESSES * per
    out = Outcome.from_samples([s * 1e9 / total for s in seconds], 1)
    best = min(seconds)
    out.extra = {"tasks": total, "tasks_per_s": round(total / best), "wall_s": round(best, 3)}
    out.note = f"{total / best:,.0f} tasks/s ({PROCESSES} processes x {per:,} misses)"
    return out


@redis_suite.scenario(
    "redis_throughput_4x1000",
    "4 processes x 1,000 distinct tasks (misses) on one store: wall time per task",
    targets=[info("sqlite", label="SQLiteStore, same workload")],
)
def redis_throughput(ctx: Context) -> dict[str, Outcome]:
    per = ctx.cfg.pick(*TASKS)
    samples = ctx.cfg.pick(3, 1)
    folder = Path(tempfile.mkdtemp(prefix="farm-", dir=ctx.tmpdir("farm")))
    script = folder / "worker.py"
    script.write_text(textwrap.dedent(WORKER.format(bench=str(BENCH))))
    ctx.note(
        f"{PROCESSES} worker processes, each with its own Client, submit {per:,} distinct "
        "w.trivial(i) (all misses: lookup, lease, run, store, record); timed from 'go' to "
        "the last worker done; median of per-task wall time"
    )

    def ours() -> Outcome:
        url = redis_url(ctx)
        store_class()

        def once() -> float:
            with scratch_prefix(url) as prefix:
                return farm_run(script, "redis", url, prefix, per)

        return farm_outcome(samples, per, once)

    def sqlite() -> Outcome:
        def once() -> float:
            return farm_run(script, "sqlite", str(ctx.tmpdir("sqlite")), "", per)

        return farm_outcome(samples, per, once)

    return {"ours": ctx.attempt("ours", ours), "sqlite": ctx.attempt("sqlite", sqlite)}
