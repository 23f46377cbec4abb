"""Cluster suite (issue 14): misses shipped to workers, hits answered on the driver.

A sweep of N distinct 50 ms tasks (``_workloads.nap``) on a ``distributed.LocalCluster`` of
4 single-thread worker processes through ``DaskExecutor``, against the ideal N x 50 ms / 4
and a bare ``client.map`` of the same function on the same cluster; the same sweep re-run
(all hits: nothing may reach the cluster); the per-task overhead of one miss through
``DaskExecutor`` against a bare ``client.submit(...).result()``; and the same sweep through
``ProcessExecutor(4)`` and (when RabbitMQ answers at ``$CASHET_BENCH_BROKER``, default
``amqp://guest:guest@127.0.0.1:5672//``) ``CeleryExecutor`` with a ``celery worker``
subprocess of 4 processes. Every store is a ``SQLiteStore`` in the scenario's temp dir.

Each sweep is ``client.submit_many`` with 16 driver threads, timed after a warm-up sweep
(workers import cashet and open the store), with fresh arguments per timed sweep. With
``--quick``: 8 tasks, 2 workers, one timed sweep.

    python bench/run.py --suite cluster
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _workloads as w
from _context import Context
from _harness import Outcome, Target, Unavailable, info, measure, suite, within

from suites.core import rounds

cluster = suite("cluster", "misses on a Dask LocalCluster, Celery and worker processes")

BENCH = Path(__file__).resolve().parents[1]
TASK_S = 0.05  # what w.nap sleeps
TASKS = (200, 8)  # per sweep: (full, quick)
WORKERS = (4, 2)
SWEEPS = (2, 1)  # timed sweeps per peer
WARMUP_TASKS = 8
DRIVER_THREADS = 16
HIT_BUDGET_NS = 20e6
OVERHEAD_BUDGET_NS = 2e6
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def fixed(ns: float) -> Outcome:
    """A budget shown as a column (the ideal sweep time, the 20 ms for all hits...)."""
    return Outcome(median_ns=ns, p90_ns=ns, min_ns=ns, samples=1)


def sizes(ctx: Context) -> tuple[int, int]:
    """(tasks per sweep, worker processes)."""
    return ctx.cfg.pick(*TASKS), ctx.cfg.pick(*WORKERS)


def ideal_ns(ctx: Context) -> float:
    n, workers = sizes(ctx)
    return n * TASK_S * 1e9 / workers


class CountingDask:
    """Counts what a ``DaskExecutor`` sends to the cluster (made lazily: ``distributed``
    is an optional dependency)."""

    @staticmethod
    def make(dask_client: Any) -> Any:
        from cashet.executor import DaskExecutor

        class Counting(DaskExecutor):
            def __init__(self, client: Any) -> None:
                super().__init__(client)
                self.sent = 0
                self._lock = threading.Lock()

            def _start(self, shipment: Any, store: Any) -> Any:
                with self._lock:
                    self.sent += 1
                return super()._start(shipment, store)

        return Counting(dask_client)


@contextmanager
def local_cluster(ctx: Context) -> Iterator[Any]:
    """A ``LocalCluster`` of single-thread worker processes and a client on it."""
    distributed = ctx.require("distributed")
    ctx.require("cloudpickle")
    _, workers = sizes(ctx)
    t0 = time.perf_counter()
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as lc,
        distributed.Client(lc) as dask,
    ):
        dask.wait_for_workers(workers, timeout=120)
        ctx.note(
            f"LocalCluster: {workers} worker processes x 1 thread, up in "
            f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs on this machine"
        )
        yield dask


def sweep_calls(first: int, n: int) -> list[Any]:
    return [(w.nap, (i,)) for i in range(first, first + n)]


def timed_sweeps(ctx: Context, client: Any, label: str) -> Outcome:
    """Warm up, then time ``SWEEPS`` sweeps of fresh misses; one sample per sweep."""
    n, _ = sizes(ctx)
    client.submit_many(sweep_calls(-WARMUP_TASKS, WARMUP_TASKS), max_workers=DRIVER_THREADS)
    samples: list[float] = []
    for k in range(ctx.cfg.pick(*SWEEPS)):
        calls = sweep_calls(k * n, n)
        t0 = time.perf_counter_ns()
        refs = client.submit_many(calls, max_workers=DRIVER_THREADS)
        samples.append(float(time.perf_counter_ns() - t0))
        if any(r.cached for r in refs):
            raise RuntimeError(f"{label}: a sweep of fresh arguments had hits")
    out = Outcome.from_samples(samples)
    out.extra = {"tasks": n, "sweeps": len(samples)}
    return out


def bare_dask_sweeps(ctx: Context, dask: Any) -> Outcome:
    """The same sweeps as plain ``client.map(nap, ...)`` + ``gather`` on the same cluster."""
    n, _ = sizes(ctx)
    dask.gather(dask.map(w.nap, range(-WARMUP_TASKS, 0), pure=False))
    samples: list[float] = []
    for k in range(ctx.cfg.pick(*SWEEPS)):
        t0 = time.perf_counter_ns()
        dask.gather(dask.map(w.nap, range(k * n, k * n + n), pure=False))
        samples.append(float(time.perf_counter_ns() - t0))
    return Outcome.from_samples(samples)


def ideal_title() -> str:
    return f"N x {TASK_S * 1000:.0f} ms / workers (ideal)"


# --- Dask -----------------------------------------------------------------------------------


@cluster.scenario(
    "dask_sweep",
    "sweep of N distinct 50 ms tasks (misses) via DaskExecutor on a 4-worker LocalCluster",
    targets=[
        within("baseline", 1.15, label="the ideal"),
        info("dask", label="bare client.map on the same cluster"),
    ],
    baseline=ideal_title(),
)
def dask_sweep(ctx: Context) -> dict[str, Outcome]:
    n, workers = sizes(ctx)
    ctx.note(
        f"{n} tasks of {TASK_S * 1000:.0f} ms sleep, {workers} workers: ideal "
        f"{ideal_ns(ctx) / 1e9:.2f} s; client.submit_many(max_workers={DRIVER_THREADS}); "
        f"median of {ctx.cfg.pick(*SWEEPS)} timed sweeps (fresh arguments) after a warm-up "
        f"of {WARMUP_TASKS}; dask: client.gather(client.map(nap, ..., pure=False))"
    )
    results: dict[str, Outcome] = {"baseline": fixed(ideal_ns(ctx))}
    try:
        with local_cluster(ctx) as dask:
            executor = CountingDask.make(dask)

            def ours() -> Outcome:
                store = ctx.tmpdir("ours")
                with ctx.ours()(store_dir=str(store), executor=executor) as client:
                    out = timed_sweeps(ctx, client, "DaskExecutor")
                expected = WARMUP_TASKS + n * out.samples
                if executor.sent != expected:
                    raise RuntimeError(f"{executor.sent} tasks sent to the cluster, not {expected}")
                return out

            results["ours"] = ctx.attempt("ours", ours)
            results["dask"] = ctx.attempt("dask", lambda: bare_dask_sweeps(ctx, dask))
    except Unavailable as exc:
        results |= {"ours": Outcome.unavailable(str(exc)), "dask": Outcome.unavailable(str(exc))}
    except Exception as exc:
        results["ours"] = ctx.failed("ours", exc)
    return results


@cluster.scenario(
    "dask_sweep_hits",
    "the same sweep re-run via DaskExecutor, all hits: total wall time",
    targets=[
        within("baseline", 1.0),
        info("loop", label="the same hits submitted one by one on the calling thread"),
    ],
    baseline="20 ms budget",
)
def dask_sweep_hits(ctx: Context) -> dict[str, Outcome]:
    n, _ = sizes(ctx)
    ctx.note(
        f"the {n}-task sweep (client.submit_many, {DRIVER_THREADS} driver threads), filled "
        "once through the cluster, then re-run: every call a hit answered on the driver; "
        "the run fails if any task is sent to the cluster; loop: the same hits, "
        "client.submit(nap, i) one after the other on one thread (submit_many answers the "
        "hits of tasks without inputs on the calling thread too, before it starts any)"
    )

    def ours() -> dict[str, Outcome]:
        with local_cluster(ctx) as dask:
            executor = CountingDask.make(dask)
            store = ctx.tmpdir("ours")
            with ctx.ours()(store_dir=str(store), executor=executor) as client:
                calls = sweep_calls(0, n)
                client.submit_many(calls, max_workers=DRIVER_THREADS)
                filled = executor.sent

                def rerun() -> None:
                    refs = client.submit_many(calls, max_workers=DRIVER_THREADS)
                    if not all(r.cached for r in refs):
                        raise RuntimeError("a re-run of the sweep had misses")

                def loop() -> None:
                    if not all(client.submit(w.nap, i).cached for i in range(n)):
                        raise RuntimeError("a re-run of the sweep had misses")

                timed = rounds(
                    ctx.cfg,
                    {
                        "ours": lambda cfg: measure(rerun, cfg),
                        "loop": lambda cfg: measure(loop, cfg),
                    },
                )
                if executor.sent != filled:
                    raise RuntimeError(
                        f"{executor.sent - filled} tasks sent to the cluster by all-hit re-runs"
                    )
                timed["ours"].extra = {"tasks": n, "sent_by_reruns": 0}
                return timed

    try:
        results = ours()
    except Unavailable as exc:
        results = {"ours": Outcome.unavailable(str(exc))}
    except Exception as exc:
        results = {"ours": ctx.failed("ours", exc)}
    return results | {"baseline": fixed(HIT_BUDGET_NS)}


def add_overhead(results: dict[str, Outcome]) -> None:
    """The ``overhead`` column: ours less bare Dask, per task (medians; p90s likewise)."""
    mine, bare = results.get("ours"), results.get("dask")
    if mine is None or bare is None or not (mine.ok and bare.ok):
        results["overhead"] = Outcome.unavailable("ours or bare Dask not measured")
        return
    assert mine.median_ns and bare.median_ns and mine.p90_ns and bare.p90_ns
    diff = mine.median_ns - bare.median_ns
    out = fixed(diff)
    out.p90_ns = mine.p90_ns - bare.p90_ns
    out.extra = {"ratio": round(mine.median_ns / bare.median_ns, 3), "diff_ns": round(diff)}
    results["overhead"] = out


@cluster.scenario(
    "dask_miss_overhead",
    "one miss of trivial(i) via DaskExecutor, submit to result (dask: bare submit().result())",
    targets=[
        info("dask", label="bare client.submit(trivial, i).result()"),
        Target("baseline", "within", 1.0, subject="overhead", label="2 ms budget"),
    ],
    baseline="2 ms budget (for overhead)",
    annotate=add_overhead,
)
def dask_miss_overhead(ctx: Context) -> dict[str, Outcome]:
    ctx.note(
        "one call at a time, fresh argument each: ours = client.submit(trivial, i) through "
        "DaskExecutor (key, lease, ship, run on a worker, store, commit back); dask = "
        "dask.submit(trivial, i, pure=False).result(); overhead = ours - dask (medians, "
        "p90s), per task"
    )
    counter = iter(range(10**9))

    def run() -> dict[str, Outcome]:
        with local_cluster(ctx) as dask:
            executor = CountingDask.make(dask)
            with ctx.ours()(store_dir=str(ctx.tmpdir("ours")), executor=executor) as client:

                def mine(cfg: Any) -> Outcome:
                    return measure(
                        lambda i: client.submit(w.trivial, i), cfg, prepare=lambda: next(counter)
                    )

                def bare(cfg: Any) -> Outcome:
                    return measure(
                        lambda i: dask.submit(w.trivial, i, pure=False).result(),
                        cfg,
                        prepare=lambda: next(counter),
                    )

                return rounds(ctx.cfg, {"ours": mine, "dask": bare}, n=3)

    try:
        results = run()
    except Unavailable as exc:
        results = {"ours": Outcome.unavailable(str(exc)), "dask": Outcome.unavailable(str(exc))}
    except Exception as exc:
        results = {"ours": ctx.failed("ours", exc)}
    results["baseline"] = fixed(OVERHEAD_BUDGET_NS)
    return results


# --- worker processes and Celery ------------------------------------------------------------


@cluster.scenario(
    "process_sweep",
    "the same sweep via ProcessExecutor(4) (local worker processes)",
    targets=[info("baseline", label="the ideal")],
    baseline=ideal_title(),
)
def process_sweep(ctx: Context) -> dict[str, Outcome]:
    n, workers = sizes(ctx)
    ctx.note(
        f"{n} tasks, ProcessExecutor({workers}) (spawned processes, the flow and the lease "
        f"in the driver), as dask_sweep: submit_many(max_workers={DRIVER_THREADS}), after "
        f"a warm-up of {WARMUP_TASKS}"
    )

    def ours() -> Outcome:
        from cashet.executor import ProcessExecutor

        with ProcessExecutor(workers) as executor:
            store = ctx.tmpdir("ours")
            with ctx.ours()(store_dir=str(store), executor=executor) as client:
                return timed_sweeps(ctx, client, "ProcessExecutor")

    return {"ours": ctx.attempt("ours", ours), "baseline": fixed(ideal_ns(ctx))}


def broker_url(ctx: Context) -> str:
    """The RabbitMQ to use, or ``Unavailable`` saying why there is none."""
    ctx.require("celery")
    kombu_url = ctx.require("kombu.utils.url")
    url = os.environ.get("CASHET_BENCH_BROKER") or DEFAULT_BROKER
    parts = kombu_url.url_to_parts(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    try:
        socket.create_connection((host, port), 2).close()
    except OSError as exc:
        raise Unavailable(f"no RabbitMQ at {host}:{port} ({exc})") from exc
    return str(url)


@contextmanager
def celery_worker(ctx: Context, broker: str, concurrency: int) -> Iterator[Any]:
    """A ``celery -A _celery_bench_app worker`` subprocess on a fresh queue; yields the
    driver's ``CeleryExecutor`` for that queue."""
    queue = f"cashet-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    settings = {"CASHET_BENCH_BROKER": broker, "CASHET_BENCH_QUEUE": queue}
    path = os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, **settings, "PYTHONPATH": path}
    ready = threading.Event()
    tail: list[str] = []
    t0 = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "_celery_bench_app", "worker",
         "-n", f"cashet-bench-{os.getpid()}@%h",
         f"--concurrency={concurrency}", "--pool=prefork", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--loglevel=INFO", "-Q", queue],
        cwd=BENCH,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip

    def watch() -> None:
        assert worker.stderr is not None
        for line in worker.stderr:
            tail[:] = [*tail[-20:], line]
            if " ready." in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    old = {k: os.environ.get(k) for k in settings}
    try:
        deadline = time.monotonic() + 120
        while not ready.wait(0.1):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the celery worker did not start:\n" + "".join(tail[-10:]))
        ctx.note(
            f"celery worker: {concurrency} prefork processes, up in "
            f"{time.perf_counter() - t0:.1f} s; broker {broker.split('@')[-1]}; the driver "
            "polls the store every 50 ms per call in flight (CeleryExecutor(poll=0.05))"
        )
        os.environ.update(settings)
        import _celery_bench_app as app_module

        yield importlib.reload(app_module).executor  # built for this worker's queue
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        # Cold shutdown (SIGQUIT): the sweeps are over, and a warm one takes ~6 s here.
        worker.send_signal(getattr(signal, "SIGQUIT", signal.SIGTERM))
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def bounded(thunk: Callable[[], Outcome], seconds: float) -> Outcome:
    """Run ``thunk`` in a daemon thread; fail if it takes longer than ``seconds`` (a
    ``CeleryExecutor`` waits for as long as no worker consumes its messages)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(thunk())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if not box:
        raise RuntimeError(f"no answer from the celery worker in {seconds:.0f} s")
    if isinstance(box[0], BaseException):
        raise box[0]
    result: Outcome = box[0]
    return result


@cluster.scenario(
    "celery_sweep",
    "the same sweep via CeleryExecutor (RabbitMQ, a celery worker of 4 processes)",
    targets=[info("baseline", label="the ideal")],
    baseline=ideal_title(),
)
def celery_sweep(ctx: Context) -> dict[str, Outcome]:
    n, workers = sizes(ctx)

    def ours() -> Outcome:
        broker = broker_url(ctx)
        with celery_worker(ctx, broker, workers) as executor:
            store = ctx.tmpdir("ours")
            with ctx.ours()(store_dir=str(store), executor=executor) as client:
                return bounded(lambda: timed_sweeps(ctx, client, "CeleryExecutor"), 300)

    ctx.note(
        f"{n} tasks, as dask_sweep: submit_many(max_workers={DRIVER_THREADS}), after a "
        f"warm-up of {WARMUP_TASKS}"
    )
    return {"ours": ctx.attempt("ours", ours), "baseline": fixed(ideal_ns(ctx))}
