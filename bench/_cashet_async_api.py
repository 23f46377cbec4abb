"""Async scenarios written against cashet's public ``AsyncClient`` API, for every version.

``bench/suites/async_.py`` runs them with this package; ``peer_cashet050.py`` runs them with
the published 0.5.0 wheel in its own venv (they are in ``_cashet_api.SHARED``). Each takes
the (sync) ``Client`` class the caller has, to stay call-compatible with the sync scenarios,
and uses the ``AsyncClient`` of the same ``cashet``.

Measured: the latency of an awaited hit; the wall time of 1,000 concurrent submits
(``asyncio.gather``), misses and hits; and while they run, how late a 1 ms ticker fires
(loop lag) and how long the longest single event-loop step takes (every
``asyncio.Handle._run`` timed: the time the loop was blocked by any one callback), in wall
time and in the loop thread's CPU time less garbage-collector passes (reported apart).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _workloads as w
from _harness import Config, Outcome

#: Concurrent submits per gather round.
GATHER = (1000, 200)  # (full, quick)
#: Seconds one gather round may take before it counts as not finishing (0.5.0 deadlocks
#: with ~100 or more concurrent misses).
ROUND_TIMEOUT_S = (30.0, 10.0)
#: Interval of the lag ticker.
TICK_S = 0.001
#: What "never blocked for more than a millisecond" is measured against.
ONE_MS_NS = 1e6


def async_client_cls(client_cls: Any) -> Any:
    """The ``AsyncClient`` of the ``cashet`` that ``client_cls`` (its ``Client``) comes from."""
    package = client_cls.__module__.split(".")[0]
    return importlib.import_module(f"{package}.async_client").AsyncClient


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _close(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        result = close()
        if asyncio.iscoroutine(result):
            await result


# --- one awaited hit ------------------------------------------------------------------------


def hit_f1(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    """Time ``await (await client.submit(f, 1)).load()`` once ``f(1)`` is cached."""
    acls = async_client_cls(client_cls)

    async def main() -> Outcome:
        client = acls(store_dir=str(store))
        try:
            await (await client.submit(w.f, 1)).load()

            async def op() -> None:
                await (await client.submit(w.f, 1)).load()

            return await _sample(op, cfg, batch=20)
        finally:
            await _close(client)

    return asyncio.run(main())


async def _sample(op: Callable[[], Awaitable[Any]], cfg: Config, batch: int) -> Outcome:
    """Per-operation times of ``op``, ``batch`` sequential awaits per sample, gc off."""
    for _ in range(max(1, cfg.warmup) * batch):
        await op()
    clock = time.perf_counter_ns
    samples: list[float] = []
    deadline = clock() + int(cfg.budget_s * 1e9)
    was = gc.isenabled()
    gc.disable()
    try:
        while len(samples) < cfg.max_samples and (
            len(samples) < cfg.min_samples or clock() < deadline
        ):
            t0 = clock()
            for _ in range(batch):
                await op()
            samples.append((clock() - t0) / batch)
    finally:
        if was:
            gc.enable()
    return Outcome.from_samples(samples, batch)


# --- 1,000 concurrent submits ---------------------------------------------------------------


class _StepTimer:
    """Times every event-loop callback (``Handle._run``) while installed.

    ``steps``: wall time, which on a busy machine also counts waiting for the GIL (held by
    worker threads) and for a CPU; ``cpu``: the loop thread's own CPU time in the step,
    less the cyclic garbage collector's passes that ran in it (``gc``: those passes, which
    any allocation may trigger, whoever made the garbage).
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.cpu: list[int] = []
        self.gc: list[int] = []
        self._orig: Any = None
        self._gc_total = [0]
        self._gc_start = [0]

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        now = time.thread_time_ns()
        if phase == "start":
            self._gc_start[0] = now
        else:
            took = now - self._gc_start[0]
            self._gc_total[0] += took
            self.gc.append(took)

    def __enter__(self) -> _StepTimer:
        handle = asyncio.events.Handle
        orig = handle._run
        steps, cpu, gc_total = self.steps, self.cpu, self._gc_total
        clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns

        def timed(h: Any) -> None:
            g0 = gc_total[0]
            c0 = cpu_clock()
            t0 = clock()
            orig(h)
            steps.append(clock() - t0)
            cpu.append(cpu_clock() - c0 - (gc_total[0] - g0))

        self._orig = orig
        handle._run = timed  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._orig  # type: ignore[method-assign]
        gc.callbacks.remove(self._on_gc)


async def _gather_round(client: Any, func: Any, args: list[int], timeout: float) -> dict[str, Any]:
    """One round: submit ``func(a)`` for every ``a`` at once; time it, the lag, the steps."""
    lags: list[int] = []
    running = True

    async def ticker() -> None:
        clock = time.perf_counter_ns
        while running:
            t0 = clock()
            await asyncio.sleep(TICK_S)
            lags.append(max(0, clock() - t0 - int(TICK_S * 1e9)))

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(TICK_S * 3)  # ticker running before the burst
    done = 0

    async def one(a: int) -> None:
        nonlocal done
        await client.submit(func, a)
        done += 1

    with _StepTimer() as timer:
        t0 = time.perf_counter_ns()
        # Started 100 at a time: creating 1,000 tasks in one step is asyncio's cost, not
        # the client's, and would be the longest step of every round.
        tasks: list[asyncio.Future[None]] = []
        for i in range(0, len(args), 100):
            tasks += [asyncio.ensure_future(one(a)) for a in args[i : i + 100]]
            await asyncio.sleep(0)
        finished, pending = await asyncio.wait(tasks, timeout=timeout)
        elapsed = time.perf_counter_ns() - t0
    running = False
    await tick
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    for t in finished:
        if t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    return {
        "ns": elapsed,
        "done": done,
        "lags": lags,
        "steps": timer.steps,
        "cpu": timer.cpu,
        "gc": timer.gc,
    }


def _gather(client_cls: Any, store: Path, cfg: Config, kind: str, report: str) -> Outcome:
    """Rounds of 1,000 concurrent submits (``kind``: ``miss`` or ``hit``).

    ``report``: ``time`` (wall time of a round), ``lag`` (each round's worst ticker lag)
    or ``step`` (each round's longest loop step). Extras hold p99/max over every round.
    """
    acls = async_client_cls(client_cls)
    n = cfg.pick(*GATHER)
    timeout = cfg.pick(*ROUND_TIMEOUT_S)  # type: ignore[arg-type]
    rounds = 3 if cfg.quick else 5

    async def main() -> Outcome:
        client = acls(store_dir=str(store))
        # Objects alive now are frozen out of the collector, so a full collection (several
        # ms, whoever triggers it) does not land in one round and not in another.
        gc.collect()
        gc.freeze()
        try:
            await (await client.submit(w.f, 0)).load()  # the store is open
            fresh = itertools.count(10**9)
            results = []
            for r in range(rounds + 1):  # round 0 warms up
                if kind == "hit":
                    args = list(range(n))
                    if r == 0:
                        for a in args:  # filled one by one: 0.5.0 stalls on a burst of misses
                            await client.submit(w.trivial, a)
                else:
                    args = [next(fresh) for _ in range(n)]
                res = await _gather_round(client, w.trivial, args, timeout)
                if res["done"] < n:
                    stalled = Outcome.unavailable(
                        f"{n} concurrent {kind}es did not finish in {timeout:.0f} s "
                        f"({res['done']} done): stalled"
                    )
                    _exit_if_peer(f"{kind}:{report}", stalled)
                    return stalled
                if r:
                    results.append(res)
            return _summarize(results, report, n)
        finally:
            gc.unfreeze()
            await _close(client)

    return asyncio.run(main())


def _exit_if_peer(key: str, outcome: Outcome) -> None:
    """In a ``peer_*.py`` process, report a stalled client and end the process at once.

    A client that stalled keeps worker threads blocked for good: closing it, or the
    interpreter's exit, would wait for them until the runner's timeout kills the process
    and the row says only "timed out".
    """
    if not Path(sys.argv[0]).name.startswith("peer_"):
        return
    name = next(n for n, fn in SHARED.items() if _KEYS.get(fn) == key)
    print(json.dumps({"results": {name: outcome.to_json()}}), flush=True)
    os._exit(0)


def _summarize(results: list[dict[str, Any]], report: str, n: int) -> Outcome:
    lags = [x for r in results for x in r["lags"]]
    steps = [x for r in results for x in r["steps"]]
    cpu = [x for r in results for x in r["cpu"]]
    gcs = [x for r in results for x in r["gc"]] or [0]
    extra = {
        "submits_per_round": n,
        "lag_p99_ns": _quantile(lags, 0.99) if lags else None,
        "lag_max_ns": max(lags) if lags else None,
        "step_p99_ns": _quantile(steps, 0.99),
        "step_max_ns": max(steps),
        "steps_over_1ms": sum(1 for s in steps if s > ONE_MS_NS),
        "step_cpu_p99_ns": _quantile(cpu, 0.99),
        "step_cpu_max_ns": max(cpu),
        "steps_cpu_over_1ms": sum(1 for s in cpu if s > ONE_MS_NS),
        "steps": len(steps),
        "gc_passes": len(gcs),
        "gc_pause_max_ns": max(gcs),
    }
    if report == "time":
        out = Outcome.from_samples([float(r["ns"]) for r in results])
        per_s = n / (statistics.median(r["ns"] for r in results) / 1e9)
        extra["submits_per_s"] = round(per_s)
    elif report == "lag":
        out = Outcome.from_samples([float(max(r["lags"] or [0])) for r in results])
    elif report == "step":
        out = Outcome.from_samples([float(max(r["steps"])) for r in results])
    else:  # step_cpu
        out = Outcome.from_samples([float(max(r["cpu"])) for r in results])
    out.extra = extra
    return out


def gather_miss(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    return _gather(client_cls, store, cfg, "miss", "time")


def gather_hit(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    return _gather(client_cls, store, cfg, "hit", "time")


def lag_miss(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    return _gather(client_cls, store, cfg, "miss", "lag")


def lag_hit(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    return _gather(client_cls, store, cfg, "hit", "lag")


def step_miss(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    return _gather(client_cls, store, cfg, "miss", "step")


def step_hit(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    return _gather(client_cls, store, cfg, "hit", "step")


def step_cpu_miss(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    return _gather(client_cls, store, cfg, "miss", "step_cpu")


def step_cpu_hit(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    return _gather(client_cls, store, cfg, "hit", "step_cpu")


_KEYS: dict[Any, str] = {
    gather_miss: "miss:time",
    gather_hit: "hit:time",
    lag_miss: "miss:lag",
    lag_hit: "hit:lag",
    step_miss: "miss:step",
    step_hit: "hit:step",
    step_cpu_miss: "miss:step_cpu",
    step_cpu_hit: "hit:step_cpu",
}

#: Scenario name -> how to run it (merged into ``_cashet_api.SHARED`` for the peer scripts).
SHARED: dict[str, Callable[..., Outcome]] = {
    "async_hit_f1": hit_f1,
    "async_gather1000_miss": gather_miss,
    "async_gather1000_hit": gather_hit,
    "async_lag_gather1000_miss": lag_miss,
    "async_lag_gather1000_hit": lag_hit,
    "async_step_gather1000_miss": step_miss,
    "async_step_gather1000_hit": step_hit,
    "async_stepcpu_gather1000_miss": step_cpu_miss,
    "async_stepcpu_gather1000_hit": step_cpu_hit,
}
