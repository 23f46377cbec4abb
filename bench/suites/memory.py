"""Memory suite: peak RSS of a large NumPy result on a miss and on a hit (issue 13).

Each row runs a fresh child process (``ru_maxrss`` is per process and only grows) that
calls one task returning a NumPy array of ``CASHET_BENCH_MEMORY_MIB`` MiB (default 1024;
32 with ``--quick``): first on an empty store (the miss: compute, serialize, store), then
in a second child on the same store (the hit: read, verify, unpickle). The row's time is
that call's; the note gives the peak RSS over the child's baseline as a multiple of the
result's size, against the targets: at most 2.2x on a miss, 1.2x on a hit. Three results:
``random`` floats (incompressible, stored raw), small ``uint8`` values (compressible,
stored zstd-compressed), and a ``bytes`` object (pickled in band: on a miss the value and
its pickle are both in memory, 2x; on a hit it is read from the file straight into the
``bytes``).

    python bench/run.py --suite memory [--quick]
    CASHET_BENCH_MEMORY_MIB=256 python bench/run.py --suite memory
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:  # ``python bench/suites/memory.py``
    sys.path.insert(0, str(BENCH))

from _context import Context  # noqa: E402
from _harness import Outcome, Unavailable, suite  # noqa: E402

memory = suite("memory", "peak RSS of a large NumPy result on a miss and on a hit")

MiB = 2**20
TARGETS = {"miss": 2.2, "hit": 1.2}

_CHILD = r"""
import gc, json, resource, sys, time
import numpy as np
from cashet import Client

kind, size, store_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def make(kind, size):
    if kind == "random":
        return np.random.default_rng(0).random(size // 8)
    if kind == "bytes":
        return np.random.default_rng(0).bytes(size)
    return np.random.default_rng(0).integers(0, 16, size, dtype=np.uint8)

with Client(store_dir=store_dir) as client:
    task = client.task(make)
    gc.collect()
    base = peak()
    t0 = time.perf_counter_ns()
    ref = task(kind, size)
    value = ref.load()
    took = time.perf_counter_ns() - t0
    assert len(memoryview(value).cast("B")) == size
    print(json.dumps({"base": base, "peak": peak(), "ns": took, "cached": ref.cached}))
"""

_runs: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}


def _size(ctx: Context) -> int:
    env = os.environ.get("CASHET_BENCH_MEMORY_MIB")
    return int(env) * MiB if env else ctx.cfg.pick(1024, 32) * MiB


def _child(kind: str, size: int, store: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(size), str(store)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _measured(ctx: Context, kind: str) -> dict[str, dict[str, Any]]:
    """The miss and the hit of one result, run once per size for both rows."""
    ctx.require("numpy")
    ctx.ours()  # Unavailable when our Client cannot be imported
    size = _size(ctx)
    key = (kind, size)
    if key not in _runs:
        store = ctx.tmpdir("ours")
        miss = _child(kind, size, store)
        hit = _child(kind, size, store)
        if miss["cached"] or not hit["cached"]:
            raise RuntimeError(f"expected a miss then a hit, got {miss} then {hit}")
        _runs[key] = {"miss": miss, "hit": hit}
    return _runs[key]


def _row(ctx: Context, kind: str, what: str) -> dict[str, Outcome]:
    def ours() -> Outcome:
        run = _measured(ctx, kind)[what]
        size = _size(ctx)
        ratio = (run["peak"] - run["base"]) / size
        goal = TARGETS[what]
        verdict = "met" if ratio <= goal else "MISSED"
        ctx.note(
            f"peak RSS +{ratio:.2f}x the {size // MiB} MiB result "
            f"(target ≤{goal:g}x: {verdict}); baseline {run['base'] // MiB} MiB"
        )
        out = Outcome.from_samples([float(run["ns"])])
        out.extra = {"peak_ratio": round(ratio, 3), "target": goal, "size": size}
        return out

    try:
        return {"ours": ctx.attempt("ours", ours)}
    except Unavailable as exc:
        return {"ours": Outcome.unavailable(str(exc))}


@memory.scenario("memory_miss_random", "peak RSS, miss, incompressible NumPy result")
def memory_miss_random(ctx: Context) -> dict[str, Outcome]:
    return _row(ctx, "random", "miss")


@memory.scenario("memory_hit_random", "peak RSS, hit, incompressible NumPy result")
def memory_hit_random(ctx: Context) -> dict[str, Outcome]:
    return _row(ctx, "random", "hit")


@memory.scenario("memory_miss_compressible", "peak RSS, miss, compressible NumPy result")
def memory_miss_compressible(ctx: Context) -> dict[str, Outcome]:
    return _row(ctx, "compressible", "miss")


@memory.scenario("memory_hit_compressible", "peak RSS, hit, compressible NumPy result")
def memory_hit_compressible(ctx: Context) -> dict[str, Outcome]:
    return _row(ctx, "compressible", "hit")


@memory.scenario("memory_miss_bytes", "peak RSS, miss, a bytes result")
def memory_miss_bytes(ctx: Context) -> dict[str, Outcome]:
    return _row(ctx, "bytes", "miss")


@memory.scenario("memory_hit_bytes", "peak RSS, hit, a bytes result")
def memory_hit_bytes(ctx: Context) -> dict[str, Outcome]:
    return _row(ctx, "bytes", "hit")


if __name__ == "__main__":
    sys.exit(
        subprocess.call([sys.executable, str(BENCH / "run.py"), "--suite", "memory", *sys.argv[1:]])
    )
