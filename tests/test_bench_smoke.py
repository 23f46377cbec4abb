"""The benchmark harness still runs: a quick core pass, no external venv, valid JSON out.

Timings are never asserted here (ARCHITECTURE.md: measured in ``bench/``, never asserted
with a timer in tests); this only keeps ``make bench`` from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CORE_SCENARIOS = {
    "hit_f1",
    "miss_trivial",
    "hit_numpy_100mib",
    "hit_reads_globals",
    "hit_numpy_global_100mib",
    "hit_dataframe_40mb",
    "result_100mib_store",
    "result_100mib_load",
    "hit_20k_vs_100",
    "pipeline_3step_rerun",
}


@pytest.mark.slow
def test_quick_core_run_writes_every_scenario(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--suite",
            "core",
            "--no-peers",
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "comparison (target)" in proc.stdout

    report = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    dated = [p for p in tmp_path.glob("*.json") if p.name != "latest.json"]
    assert len(dated) == 1
    assert json.loads(dated[0].read_text(encoding="utf-8")) == report

    assert report["config"]["quick"] is True
    assert report["machine"]["cpu_count"] >= 1
    assert report["peers"]["ours"]["available"] is True
    assert report["peers"]["cashet050"]["available"] is False  # --no-peers
    assert report["errors"] == []

    scenarios = report["suites"]["core"]["scenarios"]
    assert set(scenarios) == CORE_SCENARIOS
    for name, row in scenarios.items():
        ours = row["results"]["ours"]
        assert ours["status"] == "ok", (name, ours)
        assert ours["median_ns"] > 0 and ours["p90_ns"] >= ours["median_ns"], (name, ours)
        assert row["targets"], name
        for verdict in row["targets"]:
            assert verdict["status"] in {"met", "missed", "n/a", "info"}, (name, verdict)
        if row["baseline"]:
            assert row["results"]["baseline"]["status"] == "ok", (name, row["results"])


CLUSTER_SCENARIOS = {
    "dask_sweep",
    "dask_sweep_hits",
    "dask_miss_overhead",
    "process_sweep",
    "celery_sweep",
}


@pytest.mark.slow
def test_quick_cluster_run_measures_every_engine(tmp_path: Path) -> None:
    """The cluster suite (issue 14) in quick mode: a 2-worker LocalCluster, 8-task sweeps.

    ``celery_sweep`` may be "unavailable" (no RabbitMQ at 127.0.0.1:5672); everything else
    must have measured. ``dask_sweep_hits`` errors if a re-run of hits sends anything to
    the cluster, so ``errors == []`` also says that nothing was sent.
    """
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--suite",
            "cluster",
            "--no-peers",
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert report["errors"] == []
    scenarios = report["suites"]["cluster"]["scenarios"]
    assert set(scenarios) == CLUSTER_SCENARIOS
    for name, row in scenarios.items():
        ours = row["results"]["ours"]
        allowed = {"ok", "unavailable"} if name == "celery_sweep" else {"ok"}
        assert ours["status"] in allowed, (name, ours)
        assert row["targets"], name
    assert scenarios["dask_sweep"]["results"]["dask"]["status"] == "ok"
    assert scenarios["dask_sweep_hits"]["results"]["ours"]["extra"]["sent_by_reruns"] == 0
    overhead = scenarios["dask_miss_overhead"]["results"]["overhead"]
    assert overhead["status"] == "ok" and set(overhead["extra"]) == {"ratio", "diff_ns"}
