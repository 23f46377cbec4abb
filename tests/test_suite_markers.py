"""The suite's own promises: ``-m "not redis"`` selects no test that needs a Redis server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_not_redis_deselects_every_redis_backend_and_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not redis"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    kept = [line for line in out.stdout.splitlines() if "::" in line]
    deselected = re.search(r"(\d+) deselected", out.stdout)
    assert kept and deselected and int(deselected.group(1)) > 100, out.stdout[-500:]
    for node in kept:
        # Backend parameters (store contract, clients) and the Redis-only modules.
        assert "[redis" not in node and "-redis" not in node, node
        assert not node.startswith(("tests/test_redis_store", "tests/test_redis_processes")), node
