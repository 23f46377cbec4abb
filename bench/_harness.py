"""Shared machinery of the benchmark harness: timing, outcomes, targets and the suite registry.

Standard library only: ``peer_*.py`` scripts import this module from interpreters that have
neither this package nor ``rich`` installed.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import timeit
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SUITES",
    "Config",
    "Outcome",
    "Scenario",
    "Suite",
    "Target",
    "Unavailable",
    "faster",
    "fmt_ns",
    "info",
    "measure",
    "suite",
    "throughput",
    "within",
]

NOT_AVAILABLE_YET = "cashet: not available yet"


class Unavailable(Exception):
    """A peer cannot be measured here (not installed, not built yet, PyPI unreachable...)."""


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """How hard to measure. ``quick`` shrinks data sizes and budgets for a smoke run."""

    quick: bool = False
    budget_s: float = 1.5  # timed seconds per (scenario, peer) once min_samples are in
    min_samples: int = 7
    max_samples: int = 2000
    warmup: int = 3

    @classmethod
    def make(cls, quick: bool, budget_s: float | None = None) -> Config:
        if quick:
            return cls(quick=True, budget_s=budget_s or 0.05, min_samples=3, warmup=1)
        return cls(quick=False, budget_s=budget_s or cls.budget_s)

    def pick(self, full: int, quick: int) -> int:
        """A size or count: ``full`` normally, ``quick`` in a smoke run."""
        return quick if self.quick else full

    def to_json(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "budget_s": self.budget_s,
            "min_samples": self.min_samples,
            "max_samples": self.max_samples,
            "warmup": self.warmup,
        }


# --- outcomes -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one peer did in one scenario: timings per operation, or why there are none."""

    status: str = "ok"  # ok | unavailable | error
    median_ns: float | None = None
    p90_ns: float | None = None
    min_ns: float | None = None
    samples: int = 0
    ops_per_sample: int = 1
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    raw_ns: list[float] = field(default_factory=list, repr=False)  # not serialized

    @classmethod
    def from_samples(cls, samples_ns: list[float], ops_per_sample: int = 1) -> Outcome:
        ordered = sorted(samples_ns)
        return cls(
            median_ns=statistics.median(ordered),
            p90_ns=_quantile(ordered, 0.9),
            min_ns=ordered[0],
            samples=len(ordered),
            ops_per_sample=ops_per_sample,
            raw_ns=ordered,
        )

    @classmethod
    def unavailable(cls, why: str) -> Outcome:
        return cls(status="unavailable", note=why)

    @classmethod
    def error(cls, exc: BaseException) -> Outcome:
        return cls(status="error", note=f"{type(exc).__name__}: {exc}"[:300])

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.median_ns is not None

    def merged(self, other: Outcome) -> Outcome:
        """Pool the samples of two measurements of the same thing (interleaved rounds)."""
        if not (self.ok and other.ok):
            return self if not self.ok else other
        pooled = Outcome.from_samples(self.raw_ns + other.raw_ns, self.ops_per_sample)
        pooled.extra = {**self.extra, **other.extra}
        pooled.note = self.note or other.note
        return pooled

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.ok:
            out |= {
                "median_ns": round(self.median_ns or 0.0, 1),
                "p90_ns": round(self.p90_ns or 0.0, 1),
                "min_ns": round(self.min_ns or 0.0, 1),
                "samples": self.samples,
                "ops_per_sample": self.ops_per_sample,
            }
        if self.note:
            out["note"] = self.note
        if self.extra:
            out["extra"] = self.extra
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(
            status=data.get("status", "error"),
            median_ns=data.get("median_ns"),
            p90_ns=data.get("p90_ns"),
            min_ns=data.get("min_ns"),
            samples=data.get("samples", 0),
            ops_per_sample=data.get("ops_per_sample", 1),
            note=data.get("note"),
            extra=dict(data.get("extra") or {}),
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of an already sorted list."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- timing ---------------------------------------------------------------------------------

#: Operations faster than this are timed in batches so the clock's own cost stays negligible.
_MIN_SAMPLE_NS = 20_000


def measure(
    op: Callable[..., Any] | str,
    cfg: Config,
    *,
    prepare: Callable[[], Any] | None = None,
    globals: dict[str, Any] | None = None,
    min_samples: int | None = None,
    max_samples: int | None = None,
    warmup: int | None = None,
) -> Outcome:
    """Time ``op`` and return per-operation median/p90 in nanoseconds.

    Without ``prepare``, fast operations run in batches (``timeit`` with
    ``time.perf_counter_ns``, gc disabled) sized to take at least ~20 µs. ``op`` may be a
    statement string compiled against ``globals`` (to time e.g. ``lf(1)`` with no wrapper).
    With ``prepare``, each sample calls ``prepare()`` untimed and times ``op(prepared)`` once.
    Samples are taken until ``min_samples`` are in and ``cfg.budget_s`` has passed.
    """
    min_n = cfg.min_samples if min_samples is None else min_samples
    max_n = max(min_n, cfg.max_samples if max_samples is None else max_samples)
    warm = cfg.warmup if warmup is None else warmup
    clock = time.perf_counter_ns
    samples: list[float] = []

    if prepare is None:
        timer = timeit.Timer(op, globals=globals, timer=clock)  # type: ignore[arg-type]
        timer.timeit(max(1, warm))
        estimate = max(1, timer.timeit(1))
        inner = max(1, min(1_000_000, _MIN_SAMPLE_NS // estimate))
        deadline = clock() + int(cfg.budget_s * 1e9)
        while len(samples) < max_n and (len(samples) < min_n or clock() < deadline):
            samples.append(timer.timeit(inner) / inner)
        return Outcome.from_samples(samples, inner)

    assert callable(op)
    for _ in range(warm):
        op(prepare())
    deadline = clock() + int(cfg.budget_s * 1e9)
    was_enabled = gc.isenabled()
    try:
        while len(samples) < max_n and (len(samples) < min_n or clock() < deadline):
            arg = prepare()
            gc.disable()
            t0 = clock()
            op(arg)
            t1 = clock()
            if was_enabled:
                gc.enable()
            samples.append(float(t1 - t0))
    finally:
        if was_enabled:
            gc.enable()
    return Outcome.from_samples(samples, 1)


def fmt_ns(ns: float | None) -> str:
    """``1234.5`` -> ``'1.23 µs'``; three significant digits."""
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{_sig3(ns / scale)} {unit}"
    return f"{_sig3(ns)} ns"


def _sig3(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


# --- targets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A comparison of ``subject`` against ``peer`` in one scenario, with an optional goal.

    ``kind``: ``faster`` (peer time / subject time >= factor), ``within`` (subject time /
    peer time <= factor), ``throughput`` (peer time / subject time, as a percentage,
    >= factor), ``info`` (the ``faster`` ratio, reported without a goal).
    """

    peer: str
    kind: str
    factor: float = 1.0
    subject: str = "ours"
    label: str | None = None  # how to name ``peer`` in the text (default: its column name)

    def evaluate(
        self, results: Mapping[str, Outcome], baseline: str | None = None
    ) -> dict[str, Any]:
        """Compare medians. ``baseline`` names the ``baseline`` peer when no label is set."""
        name = self.label or (baseline if self.peer == "baseline" and baseline else self.peer)
        who = "" if self.subject == "ours" else f"{self.subject} "
        goal = self.goal()
        mine, theirs = results.get(self.subject), results.get(self.peer)
        base: dict[str, Any] = {
            "subject": self.subject,
            "peer": self.peer,
            "kind": self.kind,
            "factor": self.factor,
            "goal": goal,
        }
        if mine is None or theirs is None or not (mine.ok and theirs.ok):
            missing = self.subject if mine is None or not mine.ok else name
            text = f"{who}vs {name}: n/a ({missing} not measured)"
            return base | {"status": "n/a", "ratio": None, "text": _with_goal(text, goal)}
        assert mine.median_ns and theirs.median_ns
        if self.kind == "within":
            ratio = mine.median_ns / theirs.median_ns
            text = f"{who}vs {name}: {ratio:.2f}x its time"
            met = ratio <= self.factor
        elif self.kind == "throughput":
            ratio = 100.0 * theirs.median_ns / mine.median_ns
            text = f"{who}vs {name}: {ratio:.0f}% of its throughput"
            met = ratio >= self.factor
        else:
            ratio = theirs.median_ns / mine.median_ns
            text = f"{who}vs {name}: " + _speed_words(ratio)
            met = ratio > 1.0 if self.factor == 1.0 else ratio >= self.factor
        status = "info" if self.kind == "info" else ("met" if met else "missed")
        return base | {"status": status, "ratio": round(ratio, 3), "text": _with_goal(text, goal)}

    def goal(self) -> str | None:
        if self.kind == "info":
            return None
        if self.kind == "within":
            return f"≤{self.factor:g}x"
        if self.kind == "throughput":
            return f"≥{self.factor:g}%"
        return "faster" if self.factor == 1.0 else f"≥{self.factor:g}x faster"


def _speed_words(ratio: float) -> str:
    if ratio >= 1.0:
        return f"{ratio:.3g}x faster"
    return f"{1.0 / ratio:.3g}x slower"


def _with_goal(text: str, goal: str | None) -> str:
    return f"{text} (target {goal})" if goal else text


def faster(peer: str, factor: float = 1.0, label: str | None = None) -> Target:
    """Ours must be at least ``factor`` times faster than ``peer`` (1.0: simply faster)."""
    return Target(peer, "faster", factor, label=label)


def within(peer: str, factor: float, label: str | None = None) -> Target:
    """Ours must take at most ``factor`` times ``peer``'s time."""
    return Target(peer, "within", factor, label=label)


def throughput(peer: str, percent: float, label: str | None = None) -> Target:
    """Ours must reach ``percent`` % of ``peer``'s throughput (same bytes)."""
    return Target(peer, "throughput", percent, label=label)


def info(peer: str, label: str | None = None) -> Target:
    """Report how ours compares to ``peer`` without a goal."""
    return Target(peer, "info", label=label)


# --- registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One row of the table. ``run(ctx)`` returns an outcome per in-process peer.

    ``external`` names peers measured by a ``peer_<name>.py`` script in their own venv;
    their outcomes are merged in under that name. ``baseline`` labels the ``baseline``
    column when the scenario has one (raw BLAKE3, plain file IO...). ``annotate`` sees
    every peer's outcome once all are in (external ones too) and may add notes.
    """

    suite: str
    name: str
    title: str
    run: Callable[[Any], dict[str, Outcome]]
    targets: tuple[Target, ...] = ()
    external: tuple[str, ...] = ()
    baseline: str | None = None
    annotate: Callable[[dict[str, Outcome]], None] | None = None


class Suite:
    """A named group of scenarios, registered on creation; ``bench/run.py --suite NAME``."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.scenarios: dict[str, Scenario] = {}

    def scenario(
        self,
        name: str,
        title: str,
        *,
        targets: Iterable[Target] = (),
        external: Iterable[str] = (),
        baseline: str | None = None,
        annotate: Callable[[dict[str, Outcome]], None] | None = None,
    ) -> Callable[[Callable[[Any], dict[str, Outcome]]], Callable[[Any], dict[str, Outcome]]]:
        """Register the decorated ``run(ctx)`` as a scenario of this suite."""

        def register(
            run: Callable[[Any], dict[str, Outcome]],
        ) -> Callable[[Any], dict[str, Outcome]]:
            if name in self.scenarios:
                raise ValueError(f"scenario {name!r} registered twice in suite {self.name!r}")
            self.scenarios[name] = Scenario(
                self.name, name, title, run, tuple(targets), tuple(external), baseline, annotate
            )
            return run

        return register


SUITES: dict[str, Suite] = {}


def suite(name: str, description: str) -> Suite:
    """Create and register a suite (one per ``bench/suites/<name>.py``)."""
    if name in SUITES:
        raise ValueError(f"suite {name!r} registered twice")
    SUITES[name] = Suite(name, description)
    return SUITES[name]
