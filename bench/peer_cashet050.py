"""Measure the published cashet 0.5.0 wheel: run in ``.bench/cashet050``, never in ``.venv``.

    .bench/cashet050/bin/python bench/peer_cashet050.py --json --only hit_f1

Prints one JSON object: the peer's versions and an outcome per scenario. Uses only the
README's public API (``Client(store_dir=...)``, ``submit``, ``load``) through
``_cashet_api``, exactly as ``bench/suites/core.py`` measures this package.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

import _cashet_api as api
import _workloads as w
from _harness import Config, Outcome

PEER = "cashet050"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="small sizes and budgets")
    parser.add_argument("--budget", type=float, default=None, help="seconds per scenario")
    parser.add_argument(
        "--only", default=",".join(api.SHARED), help="comma-separated scenario names"
    )
    args = parser.parse_args(argv)
    cfg = Config.make(args.quick, args.budget)

    report: dict[str, Any] = {"peer": PEER, "python": platform.python_version()}
    report["versions"] = {name: _version(name) for name in ("cashet", "numpy")}
    results: dict[str, Any] = {}
    try:
        from cashet import Client
    except Exception as exc:
        for name in args.only.split(","):
            results[name] = Outcome.unavailable(f"import cashet failed: {exc}").to_json()
        Client = None
    if Client is not None:
        for name in args.only.split(","):
            results[name] = run_one(Client, name, cfg).to_json()
    report["results"] = results

    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        for name, res in results.items():
            print(f"{name:24} {res}")
    return 0


def run_one(client_cls: Any, name: str, cfg: Config) -> Outcome:
    scenario = api.SHARED.get(name)
    if scenario is None:
        return Outcome.unavailable(f"{PEER} has no scenario {name!r}")
    try:
        with tempfile.TemporaryDirectory(prefix=f"cashet-bench-{PEER}-") as tmp:
            store = Path(tmp) / "store"
            if name == "hit_numpy_100mib":
                arr = w.make_array(cfg.pick(*api.NUMPY_ARG_BYTES))
                return scenario(client_cls, store, cfg, arr)
            return scenario(client_cls, store, cfg)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return Outcome.error(exc)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
