"""Peers that live in their own venv under ``.bench/``: create it on demand, run its script.

Each external peer ``NAME`` has a ``bench/peer_NAME.py`` script and a venv
``.bench/NAME`` holding ``EXTERNAL[NAME]``'s requirements. The venv is created once (a stamp
file records what was installed) and reused by later runs. A failure to create it (PyPI
unreachable, no ``venv`` module...) is reported in the table, never fatal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import Config, Outcome

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = ROOT / ".bench"

#: External peer -> the lock of its venv (``make lock`` writes it from ``requirements/NAME.in``).
EXTERNAL: dict[str, Path] = {
    "cashet050": ROOT / "requirements" / "cashet050.lock",
}


@dataclass
class ExternalPeer:
    name: str
    python: Path | None = None
    problem: str | None = None  # why it cannot run, shown in the table
    info: dict[str, Any] = field(default_factory=dict)  # versions reported by the script

    def run(self, scenario: str, cfg: Config, timeout_s: float) -> Outcome:
        """Run one scenario in a fresh subprocess (a hang or crash costs only that row)."""
        if self.python is None:
            return Outcome.unavailable(self.problem or f"{self.name} not set up")
        cmd = [str(self.python), str(BENCH / f"peer_{self.name}.py"), "--json"]
        cmd += ["--only", scenario, "--budget", str(cfg.budget_s)]
        if cfg.quick:
            cmd.append("--quick")
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, env=_clean_env()
            )
        except subprocess.TimeoutExpired:
            return Outcome.unavailable(f"timed out after {timeout_s:.0f} s (killed)")
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            return Outcome(status="error", note=f"peer script failed: {tail[0]}"[:300])
        try:
            report = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            return Outcome(status="error", note=f"peer script printed no JSON: {exc}")
        self.info = {"python": report.get("python"), **report.get("versions", {})}
        result = report.get("results", {}).get(scenario)
        if result is None:
            return Outcome(status="error", note=f"peer script reported no {scenario!r}")
        return Outcome.from_json(result)


def setup(name: str, log: Callable[[str], None]) -> ExternalPeer:
    """Return the peer with its venv ready, creating it on first use."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".bench-installed"
    lock = EXTERNAL[name]
    wanted = lock.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return ExternalPeer(name, python)
    base = os.environ.get("BENCH_PYTHON", "python3")
    steps = []
    if not python.exists():
        steps.append([base, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--quiet", "--retries", "2", "--timeout", "20"]
    steps.append([*pip, "--require-hashes", "-r", str(lock)])
    log(f"setting up {venv} from {lock.relative_to(ROOT)} ...")
    for cmd in steps:
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=600, env=_clean_env()
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return ExternalPeer(name, problem=f"could not set up its venv: {exc}")
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit {proc.returncode}"
            if cmd[1:3] == ["-m", "pip"]:
                why = f"PyPI unreachable or install failed: {why}"
            return ExternalPeer(name, problem=why[:300])
    stamp.write_text(wanted)
    return ExternalPeer(name, python)


def _clean_env() -> dict[str, str]:
    """The environment minus anything that would leak this venv into the peer's."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(var, None)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != bindir)
    return env
