"""Benchmark cashet against its peers and print one table: ``make bench`` (or this script).

    python bench/run.py                      # every registered suite, every peer
    python bench/run.py --suite core         # one suite
    python bench/run.py --only hit_f1        # one scenario (comma-separate several)
    python bench/run.py --quick --no-peers   # smoke run: small data, no external venv
    python bench/run.py --list               # what is registered

Peers in other venvs (cashet 0.5.0 from PyPI) run as ``bench/peer_NAME.py`` subprocesses in
``.bench/NAME``, created on first use. Results go to ``bench/results/latest.json`` plus a
timestamped copy. Exits 1 if a measurement of ours or of a baseline raised, or a suite
failed to import; a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # run as a script or imported from tests
    sys.path.insert(0, str(BENCH))

import _peers  # noqa: E402
import _report  # noqa: E402
from _context import Context  # noqa: E402
from _harness import Config, Scenario, fmt_ns  # noqa: E402
from suites import discover  # noqa: E402

#: Seconds one external-peer subprocess may take for one scenario: (full, quick).
EXTERNAL_TIMEOUT_S = (180.0, 90.0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    suites, broken = discover()
    for name, why in broken.items():
        _report.stderr(f"bench: suite {name!r} failed to import: {why}")
    if args.list:
        for suite in suites.values():
            print(f"{suite.name}: {suite.description}")
            for sc in suite.scenarios.values():
                print(f"  {sc.name:24} {sc.title}")
        return 1 if broken else 0

    scenarios = select(suites, args.suite, args.only)
    cfg = Config.make(args.quick, args.budget)
    ctx = Context(cfg, _report.stderr)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "config": cfg.to_json(),
        "machine": _report.machine_info(),
        "peers": {"local": _report.local_versions()},
        "suite_import_errors": broken,
    }
    externals = setup_externals(scenarios, args.no_peers, ctx)
    if ctx.ours_problem:
        _report.stderr(f"bench: {ctx.ours_problem}; measuring the peers only")

    suites_out: dict[str, Any] = {}
    for sc in scenarios:
        row = run_scenario(sc, ctx, externals)
        suites_out.setdefault(sc.suite, {"scenarios": {}})["scenarios"][sc.name] = row

    report["peers"]["ours"] = {"available": ctx.ours_problem is None, "note": ctx.ours_problem}
    for name, peer in externals.items():
        report["peers"][name] = {"available": peer.problem is None, "note": peer.problem}
        report["peers"][name] |= peer.info
    report["suites"] = suites_out
    report["targets_summary"] = tally(suites_out)
    report["errors"] = ctx.errors
    report["duration_s"] = round(time.perf_counter() - started, 1)
    report["json_path"] = str(_report.write_json(report, args.results_dir))
    _report.print_table(report)
    return 1 if ctx.errors or broken else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", help="run this suite (repeatable)")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--quick", action="store_true", help="small data, tiny budgets (smoke)")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip peers that need their own venv"
    )
    parser.add_argument("--budget", type=float, help="timed seconds per scenario and peer")
    parser.add_argument(
        "--results-dir", type=Path, default=BENCH / "results", help="where the JSON goes"
    )
    parser.add_argument("--list", action="store_true", help="list suites and scenarios")
    return parser.parse_args(argv)


def select(suites: dict[str, Any], wanted: list[str] | None, only: str | None) -> list[Scenario]:
    names = [n for w in wanted or [] for n in w.split(",")] or list(suites)
    unknown = [n for n in names if n not in suites]
    if unknown:
        sys.exit(f"bench: unknown suite(s) {unknown}; registered: {sorted(suites)}")
    scenarios = [sc for n in names for sc in suites[n].scenarios.values()]
    if only:
        picked = only.split(",")
        missing = set(picked) - {sc.name for sc in scenarios}
        if missing:
            sys.exit(f"bench: unknown scenario(s) {sorted(missing)} in suites {names}")
        scenarios = [sc for sc in scenarios if sc.name in picked]
    return scenarios


def setup_externals(
    scenarios: list[Scenario], skip: bool, ctx: Context
) -> dict[str, _peers.ExternalPeer]:
    needed = sorted({peer for sc in scenarios for peer in sc.external})
    if skip:
        return {p: _peers.ExternalPeer(p, problem="skipped (--no-peers)") for p in needed}
    peers = {p: _peers.setup(p, ctx.log) for p in needed}
    for peer in peers.values():
        if peer.problem:
            ctx.log(f"bench: {peer.name} unavailable: {peer.problem}")
    return peers


def run_scenario(
    sc: Scenario, ctx: Context, externals: dict[str, _peers.ExternalPeer]
) -> dict[str, Any]:
    ctx.log(f"[{sc.suite}] {sc.name}: {sc.title}")
    t0 = time.perf_counter()
    with ctx.scenario_dir(sc.name):
        results = sc.run(ctx)
        notes = list(ctx.notes)
    timeout = EXTERNAL_TIMEOUT_S[1] if ctx.cfg.quick else EXTERNAL_TIMEOUT_S[0]
    for name in sc.external:
        results[name] = externals[name].run(sc.name, ctx.cfg, timeout)
    if sc.annotate is not None:
        sc.annotate(results)
    for peer, out in results.items():
        shown = f"{fmt_ns(out.median_ns)} (p90 {fmt_ns(out.p90_ns)})" if out.ok else out.status
        ctx.log(f"    {peer:10} {shown}" + (f"  [{out.note}]" if out.note else ""))
    ctx.log(f"    ({time.perf_counter() - t0:.1f} s)")
    return {
        "title": sc.title,
        "baseline": sc.baseline,
        "notes": notes,
        "results": {peer: out.to_json() for peer, out in results.items()},
        "targets": [t.evaluate(results, sc.baseline) for t in sc.targets],
    }


def tally(suites_out: dict[str, Any]) -> dict[str, int]:
    counts = {"met": 0, "missed": 0, "n/a": 0}
    for suite in suites_out.values():
        for row in suite["scenarios"].values():
            for verdict in row["targets"]:
                if verdict["status"] in counts:
                    counts[verdict["status"]] += 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
