"""Scenarios written against cashet's public API (README), run the same way for every version.

``bench/suites/core.py`` runs them with this package's ``Client``; ``peer_cashet050.py`` with
the published 0.5.0 wheel's, in its own venv. Each takes the ``Client`` class and a fresh
empty directory for the store.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _workloads as w
from _harness import Config, Outcome, measure


def hit(client_cls: Any, store: Path, cfg: Config, func: Any, arg: Any, **kw: Any) -> Outcome:
    """Time ``client.submit(func, arg).load()`` once ``func(arg)`` is cached."""
    with client_cls(store_dir=str(store)) as client:
        client.submit(func, arg).load()
        return measure(lambda: client.submit(func, arg).load(), cfg, **kw)


def hit_f1(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    return hit(client_cls, store, cfg, w.f, 1)


def miss_trivial(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    with client_cls(store_dir=str(store)) as client:
        client.submit(w.f, 0).load()  # open the store outside the timing
        args = itertools.count()
        return measure(lambda: client.submit(w.trivial, next(args)).load(), cfg)


def hit_numpy(client_cls: Any, store: Path, cfg: Config, arr: Any) -> Outcome:
    """Hit with a large array argument; also checks a changed middle element misses."""
    with client_cls(store_dir=str(store)) as client:
        client.submit(w.first_value, arr).load()
        out = measure(lambda: client.submit(w.first_value, arr).load(), cfg, min_samples=5)
        out.extra["distinguishes_arrays"] = distinguishes_arrays(
            lambda a: client.submit(w.middle_value, a).load(), arr
        )
        if not out.extra["distinguishes_arrays"]:
            out.note = "WRONG: a different array hit the cached result"
        return out


def distinguishes_arrays(call: Callable[[Any], float], arr: Any) -> bool:
    """Whether a cached ``middle_value`` sees a change to one element in the middle."""
    other = arr.copy()
    other[len(other) // 2] += 1.0
    return bool(call(arr) == w.middle_value(arr) and call(other) == w.middle_value(other))


def pipeline_rerun(client_cls: Any, store: Path, cfg: Config) -> Outcome:
    with client_cls(store_dir=str(store)) as client:
        expected = w.run_pipeline(client)
        out = measure(lambda: w.run_pipeline(client), cfg)
        if w.run_pipeline(client) != expected:
            out.note = "WRONG: re-run returned a different result"
        return out


#: Scenario name -> how to run it, for ``peer_*.py`` scripts (array-taking ones get the array).
SHARED: dict[str, Callable[..., Outcome]] = {
    "hit_f1": hit_f1,
    "miss_trivial": miss_trivial,
    "hit_numpy_100mib": hit_numpy,
    "pipeline_3step_rerun": pipeline_rerun,
}

#: Size of the array argument of ``hit_numpy_100mib``: (full, quick).
NUMPY_ARG_BYTES = (100 * 2**20, 4 * 2**20)

# The AsyncClient scenarios (bench/suites/async_.py) run through the same peer scripts.
from _cashet_async_api import SHARED as _ASYNC_SHARED  # noqa: E402

SHARED.update(_ASYNC_SHARED)
