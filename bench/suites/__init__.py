"""Benchmark suites: each module here registers one with ``_harness.suite(NAME, ...)``.

Add a suite by adding a module (``maintenance.py``, ``redis.py``...): ``bench/run.py`` imports
every module in this package, so nothing else needs editing. Import optional dependencies
inside the scenarios (``ctx.require("redis")``), not at module level, so a missing one makes
that peer "unavailable" instead of breaking every suite.
"""

from __future__ import annotations

import importlib
import pkgutil

from _harness import SUITES, Suite

__all__ = ["discover"]


def discover() -> tuple[dict[str, Suite], dict[str, str]]:
    """Import every suite module; return the registry and the modules that failed to import."""
    failed: dict[str, str] = {}
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "core", m.name)):
        try:
            importlib.import_module(f"{__name__}.{mod.name}")
        except Exception as exc:
            failed[mod.name] = f"{type(exc).__name__}: {exc}"
    return SUITES, failed
