"""Maintenance suite: rm, invalidate, gc, prefix lookup, tag filters, stats on a big store.

Every row times one ``Client`` call against a store of 1,000,000 commits (``ours``) and the
same call against a store of 1,000 (``baseline``). The paths are indexed, so both columns
should be about equal (O(affected rows), not O(store): issue 18 asks ≤ 1.5x) and each under
5 ms; a row whose median goes over that budget is annotated. For scale: the published cashet
0.5.0 takes ~119 ms per ``rm`` at 50,000 commits.

The stores are built through the ``Store`` API (commits with spread-out timestamps, tags,
TTLs, failures and forced re-runs). The small one is built once per run and copied fresh for
every scenario, so a destructive operation never sees another's leftovers. The big one takes
minutes to build: it is kept under ``.bench/maintenance-v<FORMAT>-s<schema>/`` between runs
(a new format or schema version builds it again), copied once per run, and its scenarios
share that copy, each taking its hashes from a slice of its own (what ``rm`` deletes is
never what ``history`` asks for).

    python bench/run.py --suite maintenance [--quick]
    python bench/suites/maintenance.py [--quick]     # the same
"""

from __future__ import annotations

import atexit
import itertools
import json
import pickle
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
if str(BENCH) not in sys.path:  # ``python bench/suites/maintenance.py``
    sys.path.insert(0, str(BENCH))

from _context import Context  # noqa: E402
from _harness import Config, Outcome, fmt_ns, info, measure, suite, within  # noqa: E402

maintenance = suite(
    "maintenance", "rm, invalidate, gc, prefix lookup, tag filters and stats at 1M commits"
)

BIG = (1_000_000, 5_000)  # (full, quick)
KEPT_FROM = 100_000  # stores this big are kept under .bench/ and shared by the scenarios
FORMAT = 2  # bump when what build() writes changes: kept stores are built again
#: Each scenario's slice of the shuffled hashes (in thousands) on a shared store.
SLICES = {"rm": 0, "rm_prefix": 1, "show_prefix": 2, "history": 3}
#: The first commits built (their runs are what ``invalidate`` deletes) are in no slice.
INVALIDATED = 1_000
#: The rows issue 18 asks to cost at most 1.5x at 1M what they cost at 1k (O(rows affected)).
AT_SCALE = ("rm", "gc_noop", "history", "log", "stats")
SMALL = 1_000
BUDGET_NS = 5_000_000  # each maintenance call: under 5 ms median
FUNCS = 20
BLOBS = 500
RUN_SIZE = 5  # commits per ``run`` tag value: what one ``invalidate`` deletes
RARE_EVERY = 5_000  # one commit in this many carries the ``rare`` tag key
FAILED_EVERY = 100
TTL_EVERY = 10
SOURCE = "def step(x, scale=1.0):\n    # a few lines of realistic source\n    return x * scale\n"


@dataclass
class Built:
    """A template store on disk and what the scenarios need to know about it."""

    path: Path
    n: int
    hashes: list[str]  # every commit hash, shuffled
    fill_ns: float  # per commit
    shared: bool = False  # one working copy for every scenario (a kept big store)

    def mine(self, scenario: str) -> list[str]:
        """The hashes a scenario may use: all of them on a store of its own, else its slice."""
        if not self.shared:
            return self.hashes
        start = SLICES[scenario] * 1000
        return self.hashes[start : start + 1000]


_templates: dict[int, Built] = {}
_root: Path | None = None


def _template_root() -> Path:
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="cashet-bench-maintenance-"))
        atexit.register(shutil.rmtree, _root, True)
    return _root


def _kept_dir(n: int) -> Path:
    from cashet.stores.sqlite.schema import SCHEMA_VERSION

    return BENCH.parent / ".bench" / f"maintenance-v{FORMAT}-s{SCHEMA_VERSION}" / f"store-{n}"


def build(n: int) -> Built:
    """Fill (once per run, or once for all runs when kept) a store with ``n`` commits."""
    if n in _templates:
        return _templates[n]
    if n < KEPT_FROM:
        _templates[n] = _build(_template_root() / f"store-{n}", n)
        return _templates[n]
    kept = _kept_dir(n)
    meta = kept.parent / f"store-{n}.json"
    if not meta.exists():
        shutil.rmtree(kept, ignore_errors=True)
        partial = kept.parent / f"store-{n}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        made = _build(partial, n)
        partial.rename(kept)
        meta.write_text(json.dumps({"n": n, "fill_ns": made.fill_ns}))
    import sqlite3

    with sqlite3.connect(f"file:{kept / 'meta.db'}?mode=ro", uri=True) as conn:
        ordered = conn.execute("SELECT hash FROM commits ORDER BY created_at, rowid")
        hashes = [h for (h,) in ordered][INVALIDATED:]
    random.Random(n).shuffle(hashes)
    # One working copy per run, shared by the scenarios (each takes its own hashes).
    work = _template_root() / f"work-{n}"
    shutil.copytree(kept, work)
    fill_ns = json.loads(meta.read_text())["fill_ns"]
    _templates[n] = Built(work, n, hashes, fill_ns, shared=True)
    return _templates[n]


def _build(path: Path, n: int) -> Built:
    """Fill a store at ``path`` with ``n`` commits through the Store API."""
    from cashet.hashing.commits import seal_commit
    from cashet.models import Commit, TaskDef, TaskStatus
    from cashet.store import SQLiteStore

    rng = random.Random(n)
    now = datetime.now(UTC)
    hashes: list[str] = []
    t0 = time.perf_counter_ns()
    with SQLiteStore(path) as store:
        values: list[Any] = [{"step": i, "loss": i / BLOBS} for i in range(BLOBS)]
        values.append(rng.randbytes(64 << 10))  # one blob file
        refs = [store.put_blob(pickle.dumps(v)) for v in values]
        parent: dict[str, str] = {}
        batch: list[Any] = []
        for i in range(n):
            # one call in ten is a forced re-run of an earlier call: same fingerprint
            key = i - 1 if i % 10 == 9 else i
            fingerprint_args = f"{key:064x}"
            failed = i % FAILED_EVERY == 7
            tags = {"team": "abcd"[i % 4], "run": f"r{i // RUN_SIZE}"}
            if i % RARE_EVERY == 3:
                tags["rare"] = "yes"
            created = now - timedelta(days=10) + timedelta(seconds=i * 864_000 / n)
            commit = Commit(
                hash="",
                task_def=TaskDef(
                    func_name=f"step{i % FUNCS}",
                    func_hash=f"{i % FUNCS:064x}",
                    args_hash=fingerprint_args,
                    func_source=SOURCE,
                    args_snapshot=f"(({key}, [1, 2, 3]), {{'scale': {key % 7}}})",
                    module="pipeline",
                    ttl=86_400.0 if i % TTL_EVERY == 5 else None,
                    tags=tags,
                ),
                status=TaskStatus.FAILED if failed else TaskStatus.COMPLETED,
                created_at=created,
                result=None if failed else refs[-1 if i == 0 else i % BLOBS],
                parent_hash=parent.get(fingerprint_args),
                error="Traceback ...\nValueError: bad input\n" if failed else None,
                tags=tags,
                compute_seconds=0.25,
                expires_at=created + timedelta(days=40) if i % TTL_EVERY == 5 else None,
                salt=f"{i:016x}",
                last_accessed=created,
            )
            commit.sealed_json = seal_commit(commit)  # sets its hash; stored as sealed
            if i < FUNCS:
                store.put_commit(commit)  # each function's first: its function row
            else:
                batch.append(commit)
                if len(batch) == BATCH:
                    _put_batch(store, batch)
            parent[fingerprint_args] = commit.hash
            hashes.append(commit.hash)
        _put_batch(store, batch)
    fill_ns = (time.perf_counter_ns() - t0) / n
    rng.shuffle(hashes)
    return Built(path, n, hashes, fill_ns)


BATCH = 2_000  # commits written per transaction while building


def _put_batch(store: Any, batch: list[Any]) -> None:
    """``put_commit`` of each commit, in one transaction (a million in minutes, not a
    quarter of an hour). Uses the SQLite store's own row and insert code."""
    rows = [(c, store._commit_row(c)) for c in batch]
    with store._db.transact() as conn:
        for commit, row in rows:
            store._insert_commit(conn, commit, row)
    batch.clear()


def sizes(cfg: Config) -> tuple[int, int]:
    return cfg.pick(*BIG), SMALL


def over_budget(results: dict[str, Outcome]) -> None:
    """Annotate a row whose median is over the 5 ms budget."""
    for out in results.values():
        if out.ok and (out.median_ns or 0) > BUDGET_NS:
            out.note = f"over the {fmt_ns(BUDGET_NS)} budget"


Op = Callable[[Any, Built, Config], Outcome]


def scenario(name: str, title: str) -> Callable[[Op], Op]:
    """Register ``op(client, built, cfg) -> Outcome`` as a scenario: big store vs small."""

    def register(op: Op) -> Op:
        @maintenance.scenario(
            name,
            title,
            targets=[
                within("baseline", 1.5, f"≤ 1.5x at {SMALL:,} commits")
                if name in AT_SCALE
                else info("baseline", label=f"{SMALL:,} commits")
            ],
            baseline=f"{SMALL:,} commits",
            annotate=over_budget,
        )
        def run(ctx: Context) -> dict[str, Outcome]:
            big, small = sizes(ctx.cfg)
            out: dict[str, Outcome] = {}
            for peer, n in (("ours", big), ("baseline", small)):
                out[peer] = ctx.attempt(peer, lambda n=n: _on_copy(ctx, n, op))
            built = _templates.get(big)
            if built is not None:
                ctx.note(
                    f"ours: {big:,} commits (filled at {fmt_ns(built.fill_ns)} each); "
                    f"baseline: {small:,}"
                )
            return out

        return op

    return register


def _on_copy(ctx: Context, n: int, op: Op) -> Outcome:
    client_cls = ctx.ours()
    built = build(n)
    store_dir = built.path
    if not built.shared:
        store_dir = ctx.tmpdir(f"store-{n}") / "store"
        shutil.copytree(built.path, store_dir)
    with client_cls(store_dir=str(store_dir)) as client:
        client.stats()  # open the store outside the timing
        return op(client, built, ctx.cfg)


def cycling(items: list[Any]) -> Callable[[], Any]:
    it = itertools.cycle(items)
    return lambda: next(it)


# --- scenarios ------------------------------------------------------------------------------


@scenario("rm", "rm <full hash> (one commit)")
def rm(client: Any, built: Built, cfg: Config) -> Outcome:
    victims = iter(built.mine("rm"))
    return measure(client.rm, cfg, prepare=lambda: next(victims), max_samples=300)


@scenario("rm_prefix", "rm <10-digit prefix> (resolve + delete)")
def rm_prefix(client: Any, built: Built, cfg: Config) -> Outcome:
    victims = iter(h[:10] for h in built.mine("rm_prefix"))
    return measure(client.rm, cfg, prepare=lambda: next(victims), max_samples=300)


@scenario("invalidate", f"invalidate(tags={{'run': ...}}) ({RUN_SIZE} commits)")
def invalidate(client: Any, built: Built, cfg: Config) -> Outcome:
    runs = iter({"run": f"r{i}"} for i in range(built.n // RUN_SIZE))
    return measure(client.invalidate, cfg, prepare=lambda: next(runs), max_samples=150)


@scenario("gc_noop", "gc() with nothing to evict")
def gc_noop(client: Any, built: Built, cfg: Config) -> Outcome:
    return measure(client.gc, cfg)


@scenario("gc_max_size_noop", "gc(max_size_bytes=1GB) with the store under the limit")
def gc_max_size_noop(client: Any, built: Built, cfg: Config) -> Outcome:
    return measure(lambda: client.gc(max_size_bytes=1 << 30), cfg)


@scenario("show_prefix", "show <8-digit prefix>")
def show_prefix(client: Any, built: Built, cfg: Config) -> Outcome:
    return measure(
        client.show, cfg, prepare=cycling([h[:8] for h in built.mine("show_prefix")[:1000]])
    )


@scenario("get", "get <full hash> (load the result)")
def get(client: Any, built: Built, cfg: Config) -> Outcome:
    ok = [c.hash for c in client.log(status="completed", limit=1000)]
    return measure(client.get, cfg, prepare=cycling(ok))


@scenario("history", "history <hash> (a call run twice)")
def history(client: Any, built: Built, cfg: Config) -> Outcome:
    return measure(client.history, cfg, prepare=cycling(built.mine("history")[:1000]))


@scenario("log_tag_value", f"log(tags={{'run': ...}}) ({RUN_SIZE} matches)")
def log_tag_value(client: Any, built: Built, cfg: Config) -> Outcome:
    runs = [{"run": f"r{i}"} for i in range(0, built.n // RUN_SIZE, 7)]
    return measure(lambda t: client.log(tags=t), cfg, prepare=cycling(runs))


@scenario("log_tag_present", "log(tags={'rare': None}) (key on 1 in 5,000)")
def log_tag_present(client: Any, built: Built, cfg: Config) -> Outcome:
    return measure(lambda: client.log(tags={"rare": None}), cfg)


@scenario("log_tag_common", "log(tags={'team': 'a'}) (1 in 4 match; limit 50)")
def log_tag_common(client: Any, built: Built, cfg: Config) -> Outcome:
    return measure(lambda: client.log(tags={"team": "a"}), cfg)


@scenario("log_func_status", "log(func_name=..., status='failed') (limit 50)")
def log_func_status(client: Any, built: Built, cfg: Config) -> Outcome:
    return measure(lambda: client.log(func_name="step7", status="failed"), cfg)


@scenario("log", "log() (newest 50)")
def log(client: Any, built: Built, cfg: Config) -> Outcome:
    return measure(client.log, cfg)


@scenario("stats", "stats()")
def stats(client: Any, built: Built, cfg: Config) -> Outcome:
    return measure(client.stats, cfg)


if __name__ == "__main__":
    import run  # bench/run.py: the shared driver and table
    from _harness import SUITES

    del SUITES["maintenance"]  # run.py registers it again as ``suites.maintenance``
    sys.exit(run.main(["--suite", "maintenance", "--no-peers", *sys.argv[1:]]))
