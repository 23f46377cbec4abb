"""Web UI suite: the server time of each ``/ui/`` page on a store of 1,000,000 commits.

Issue 17: every page renders in at most 200 ms of server time on a store of a million
commits. Each row times one page, requested in process through the ASGI app (the
Starlette app ``create_app`` makes, over a real ``Client``; no socket, so the time is the
server's own: routing, the client's reads, rendering), against the same page on a store of
1,000 commits (``baseline``). A row whose median passes 200 ms is annotated.

The big store is built once through the store's own write path (``SQLiteStore``'s commit
insert, many commits per transaction) and kept under
``.bench/ui-store-v<FORMAT>-s<schema>-<n>`` (keyed by its shape and the SQLite schema
version) between runs (it takes a minute or two to build); scenarios only read it.
Commits: 20 functions, tags, one in 100 failed with a traceback, chains of four commits
each computed from the previous one's result (``ResultRef`` inputs, for the lineage), a
key manifest, and hits on one commit in 50.

    python bench/run.py --suite ui [--quick]
"""

from __future__ import annotations

import itertools
import os
import pickle
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _context import Context  # noqa: E402
from _harness import Outcome, fmt_ns, info, measure, suite  # noqa: E402

ui = suite("ui", "web UI pages: server time at 1,000,000 commits (budget 200 ms each)")

BIG = (1_000_000, 20_000)  # (full, quick)
SMALL = 1_000
BUDGET_NS = 200_000_000
FUNCS = 20
BLOBS = 500
CHAIN = 50  # in every 50 commits, the first four form a chain (each the next one's input)
FAILED_EVERY = 100
HIT_EVERY = 50
FORMAT = 2  # bump when the built store's shape changes (a cached one is rebuilt)
SOURCE = (
    "def step{n}(x, scale=1.0):\n"
    '    """One step of a pipeline."""\n'
    "    y = [v * scale for v in x]\n"
    "    return sum(y) / len(y)\n"
)


@dataclass
class Built:
    path: Path
    n: int
    sample: list[str]  # hashes of commits spread over the store
    chain: str  # a commit in the middle of a chain (upstream and downstream)
    pair: tuple[str, str]  # two commits of one function with different arguments


_built: dict[int, Built] = {}


def _cache_root() -> Path:
    root = Path(os.environ.get("CASHET_BENCH_CACHE", BENCH.parent / ".bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _commit(i: int, n: int, now: datetime, refs: list[Any], chain_refs: dict[int, Any]) -> Any:
    from cashet.models import Commit, TaskDef, TaskStatus

    f = i % FUNCS
    failed = i % FAILED_EVERY == 7
    pos = i % CHAIN
    inputs: tuple[str, ...] = ()
    args = f"(([{i}, {i + 1}, {i + 2}],), {{'scale': {i % 7}}})"
    if 1 <= pos <= 3:
        inputs = (chain_refs[i - 1].hash,)
        args = f"((<ResultRef {inputs[0][:12]}>,), {{'scale': {i % 7}}})"
    result = None if failed else chain_refs.get(i, refs[i % BLOBS])
    created = now - timedelta(days=30) + timedelta(seconds=i * 2_592_000 / n)
    tags = {"team": "abcd"[i % 4], "run": f"r{i // 10}"}
    manifest = {
        "function": {"name": f"pipeline.step{f}", "digest": f"{f:064x}"},
        "code": [{"name": f"pipeline.step{f}", "digest": f"{f + 1:064x}"}],
        "arguments": [
            {"name": "x", "preview": args[:60], "digest": f"{i:064x}"},
            {"name": "scale", "preview": str(i % 7), "digest": f"{i % 7:064x}"},
        ],
        "python": "3.11.7 (CPython)",
        "packages": {"numpy": "2.1.0"},
    }
    return Commit(
        hash="",
        task_def=TaskDef(
            func_name=f"step{f}",
            func_hash=f"{f:064x}",
            args_hash=f"{i:064x}",
            func_source=SOURCE.format(n=f),
            args_snapshot=args,
            module="pipeline",
            tags=tags,
            manifest=manifest,
        ),
        status=TaskStatus.FAILED if failed else TaskStatus.COMPLETED,
        created_at=created,
        result=result,
        error=(
            'Traceback (most recent call last):\n  File "pipeline.py", line 3, in step\n'
            "ZeroDivisionError: division by zero\n"
            if failed
            else None
        ),
        tags=tags,
        compute_seconds=0.25 + (i % 13) / 10,
        input_hashes=inputs,
        salt=f"{i:016x}",
    )


def build(n: int) -> Built:
    """The store of ``n`` commits: built once, kept under ``.bench/`` between runs."""
    if n in _built:
        return _built[n]
    from cashet.hashing.commits import compute_commit_hash
    from cashet.store import SQLiteStore
    from cashet.stores.sqlite.schema import SCHEMA_VERSION

    path = _cache_root() / f"ui-store-v{FORMAT}-s{SCHEMA_VERSION}-{n}"
    hashes_file = path / "bench-hashes.txt"
    if not hashes_file.exists():
        shutil.rmtree(path, ignore_errors=True)
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        now = datetime(2026, 1, 1, tzinfo=UTC)
        hashes: list[str] = []
        t0 = time.perf_counter()
        with SQLiteStore(partial) as store:
            refs = [store.put_blob(pickle.dumps({"step": i})) for i in range(BLOBS)]
            chain_refs: dict[int, Any] = {}
            batch = 5000
            for start in range(0, n, batch):
                commits = []
                for i in range(start, min(n, start + batch)):
                    if i % CHAIN <= 3 and i % FAILED_EVERY != 7:
                        chain_refs[i] = store.put_blob(pickle.dumps(("chain", i)))
                    c = _commit(i, n, now, refs, chain_refs)
                    c.hash = compute_commit_hash(c)
                    commits.append(c)
                    hashes.append(c.hash)
                    if i % CHAIN > 3:
                        chain_refs.pop(i - CHAIN, None)
                # The store's own commit insert, many per transaction (put_commit makes
                # one transaction per commit: minutes more for a million).
                # Rows first: a function's first commit writes its function row (its own
                # transaction), and lean rows are deflated outside the write lock.
                rows = [store._commit_row(c) for c in commits]
                with store._db.transact() as conn:
                    for c, row in zip(commits, rows, strict=True):
                        store._insert_commit(conn, c, row)
        (partial / "bench-hashes.txt").write_text("\n".join(hashes))
        partial.rename(path)
        print(f"bench ui: built {n:,} commits in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    hashes = hashes_file.read_text().split()
    _add_hits(path, hashes)
    step = max(1, len(hashes) // 200)
    sample = hashes[::step]
    middle = (len(hashes) // 2) // CHAIN * CHAIN
    built = Built(path, n, sample, hashes[middle + 1], (hashes[middle + 8], hashes[middle + 28]))
    _built[n] = built
    return built


def _add_hits(path: Path, hashes: list[str]) -> None:
    """Hits on one commit in 50 (the stats page sums them), through the store's recorder."""
    marker = path / "bench-hits.txt"
    if marker.exists():
        return
    from cashet.store import SQLiteStore

    with SQLiteStore(path) as store:
        for k, h in enumerate(hashes[::HIT_EVERY]):
            store.record_hit(h, time.time(), 0.25 * (1 + k % 3))
        store.flush_hits()
    marker.write_text("hits recorded\n")


def over_budget(results: dict[str, Outcome]) -> None:
    for out in results.values():
        if out.ok and (out.median_ns or 0) > BUDGET_NS:
            out.note = f"over the {fmt_ns(BUDGET_NS)} budget"


Paths = Callable[[Built], list[str]]


def page(name: str, title: str, paths: Paths) -> None:
    """Register a scenario timing ``GET`` of ``paths(built)`` (cycled), big vs small."""

    @ui.scenario(
        name,
        title,
        targets=[info("baseline", label=f"{SMALL:,} commits")],
        baseline=f"{SMALL:,} commits",
        annotate=over_budget,
    )
    def run(ctx: Context) -> dict[str, Outcome]:
        big = ctx.cfg.pick(*BIG)
        out: dict[str, Outcome] = {}
        for peer, n in (("ours", big), ("baseline", SMALL)):
            out[peer] = ctx.attempt(peer, lambda n=n: _time(ctx, build(n), paths))
        ctx.note(f"ours: {big:,} commits; baseline: {SMALL:,}")
        return out


def _time(ctx: Context, built: Built, paths: Paths) -> Outcome:
    from starlette.testclient import TestClient

    from cashet.server.app import create_app

    client_cls = ctx.ours()
    with client_cls(store_dir=str(built.path)) as client:
        app = create_app(client, read_only=True)
        with TestClient(app) as http:
            todo = paths(built)
            for p in todo[:3]:  # warm: and fail here, loudly, on a broken page
                response = http.get(p, follow_redirects=False)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {p}: {response.status_code} {response.text[:300]}")
            it = itertools.cycle(todo)
            return measure(
                lambda p: http.get(p), ctx.cfg, prepare=lambda: next(it), max_samples=200
            )


def _cfg_pages(built: Built) -> list[str]:
    return ["/ui/"]


def _second_cursor(built: Built) -> list[str]:
    # A deep page: follow the cursor 20 pages down once, then time that page.
    from starlette.testclient import TestClient

    from cashet import Client
    from cashet.server.app import create_app

    with Client(store_dir=str(built.path)) as client:
        cursor = None
        for _ in range(20):
            cursor = client.log_page(cursor=cursor).cursor
    return [f"/ui/?cursor={cursor}"] if cursor else ["/ui/"]
    del TestClient, create_app


page("list", "/ui/ (newest 50)", _cfg_pages)
page("list_deep", "/ui/?cursor=… (the 21st page)", _second_cursor)
page("list_func", "/ui/?func=step7", lambda b: ["/ui/?func=step7"])
page(
    "list_tag",
    "/ui/?tags=run=r<k> (10 matches)",
    lambda b: [f"/ui/?tags=run%3Dr{k}" for k in range(0, b.n // 10, max(1, b.n // 1000))],
)
page("list_status", "/ui/?status=failed&func=step7", lambda b: ["/ui/?status=failed&func=step7"])
page("list_text", "/ui/?q=<absent text> (a full search window)", lambda b: ["/ui/?q=no-such-text"])
page("commit", "/ui/commit/<hash>", lambda b: [f"/ui/commit/{h}" for h in b.sample])
page("diff", "/ui/diff/<a>/<b>", lambda b: [f"/ui/diff/{b.pair[0]}/{b.pair[1]}"])
page("why", "/ui/why/<hash>", lambda b: [f"/ui/why/{h}" for h in b.sample[:20]])
page("lineage", "/ui/lineage/<hash> (a chain of four)", lambda b: [f"/ui/lineage/{b.chain}"])
page("stats", "/ui/stats", lambda b: ["/ui/stats"])


if __name__ == "__main__":
    import run
    from _harness import SUITES

    del SUITES["ui"]
    sys.exit(run.main(["--suite", "ui", "--no-peers", *sys.argv[1:]]))
