"""The results table (rich, on stdout) and the JSON record (``bench/results/``)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from _harness import Outcome, fmt_ns

#: Column order; peers a later suite adds go after these, in order of appearance.
PEER_ORDER = ("ours", "cashet050", "joblib", "diskcache", "lru_cache", "baseline")
STATUS_MARK = {"met": "✓ met", "missed": "✗ MISSED", "n/a": "? n/a", "info": "·"}
STATUS_STYLE = {"met": "green", "missed": "bold red", "n/a": "yellow", "info": "dim"}
LOCAL_DISTS = ("cashet", "numpy", "pandas", "blake3", "joblib", "diskcache", "rich")


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "memory_total": _proc_field("/proc/meminfo", "MemTotal"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def local_versions() -> dict[str, str | None]:
    """Versions of every in-process peer (and the libraries the scenarios use)."""
    versions: dict[str, str | None] = {}
    for dist in LOCAL_DISTS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["git_commit"] = _git_head()
    return versions


def _proc_field(path: str, key: str) -> str | None:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git_head() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def write_json(report: dict[str, Any], results_dir: Path) -> Path:
    """Write ``latest.json`` and a timestamped copy; return the latter."""
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    dated = results_dir / f"{stamp}.json"
    dated.write_text(text, encoding="utf-8")
    (results_dir / "latest.json").write_text(text, encoding="utf-8")
    return dated


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=170)
    rows = [(suite, sc) for suite, s in report["suites"].items() for sc in s["scenarios"].items()]
    peers = _columns(row["results"] for _, (_, row) in rows)

    mode = " (quick: smaller data, tiny budgets)" if report["config"]["quick"] else ""
    table = Table(
        title=f"cashet benchmarks{mode}: median per operation, p90 below",
        show_lines=True,
        title_justify="left",
    )
    table.add_column("scenario", no_wrap=True)
    for peer in peers:
        table.add_column(peer, justify="right", no_wrap=True)
    table.add_column("comparison (target)", overflow="fold")

    for suite_name, (name, row) in rows:
        head = Text(f"{suite_name}/{name}" if len(report["suites"]) > 1 else name, "bold")
        if row.get("baseline"):
            head.append(f"\nbaseline: {row['baseline']}", "dim")
        cells = [_cell(row["results"].get(p)) for p in peers]
        comparison = Text()
        for i, verdict in enumerate(row["targets"]):
            if i:
                comparison.append("\n")
            status = verdict["status"]
            comparison.append(STATUS_MARK[status] + " ", STATUS_STYLE[status])
            comparison.append(verdict["text"])
        table.add_row(head, *cells, comparison)
    console.print(table)

    notes = _notes(rows)
    if notes:
        console.print("notes:", style="bold")
        for line in notes:
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    tally = report["targets_summary"]
    machine = report["machine"]
    load = machine.get("load_avg_at_start") or ["?"]
    console.print(
        f"targets: {tally['met']} met, {tally['missed']} missed, {tally['n/a']} not measured"
        f" — {machine['cpu_count']} CPUs, load avg {load[0]} at start,"
        f" {report['duration_s']} s — JSON: {report.get('json_path', '-')}",
        highlight=False,
    )


def _columns(results: Any) -> list[str]:
    seen: list[str] = []
    for res in results:
        seen.extend(p for p in res if p not in seen)
    known = [p for p in PEER_ORDER if p in seen]
    return known + [p for p in seen if p not in PEER_ORDER]


def _cell(data: dict[str, Any] | None) -> Any:
    from rich.text import Text

    if data is None:
        return Text("")
    out = Outcome.from_json(data)
    if out.ok:
        cell = Text(fmt_ns(out.median_ns))
        cell.append(f"\np90 {fmt_ns(out.p90_ns)}", "dim")
        if out.note:
            cell.append(" *", "bold yellow")
        return cell
    if out.status == "error":
        return Text("error *", "bold red")
    return Text("n/a *", "yellow")


def _notes(rows: list[tuple[str, tuple[str, dict[str, Any]]]]) -> list[str]:
    """Scenario notes, then each peer's notes (identical ones across rows said once)."""
    lines: list[str] = []
    said: dict[str, list[str]] = {}
    for _, (name, row) in rows:
        lines.extend(f"{name}: {note}" for note in row.get("notes", []))
        for peer, data in row["results"].items():
            note = data.get("note")
            if note:
                said.setdefault(f"{peer}: {note}", []).append(name)
    for text, where in said.items():
        peer, _, note = text.partition(": ")
        scope = "all rows" if len(where) == len(rows) and len(rows) > 1 else ", ".join(where)
        lines.append(f"* {peer} ({scope}): {note}")
    return lines


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
