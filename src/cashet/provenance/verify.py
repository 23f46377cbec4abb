"""``cashet verify --sample N``: re-run cached calls and compare, to find non-deterministic
functions. The cache is never changed (results are computed here, never stored).

What can be re-run: a commit records its function's module and name and a readable
snapshot of its arguments, not the arguments themselves. So a call is re-run only when

* its function can be imported (``module`` + qualified name; not ``__main__``, not a
  function defined inside another or a lambda, not a task renamed with ``name=``) and its
  code is the one the commit recorded (its identity hashes to the commit's ``func_hash``);
* its arguments snapshot parses back with :func:`ast.literal_eval` and the values hash to
  the commit's ``args_hash`` (so an abbreviated snapshot, or one showing a ``ResultRef``, an
  array or an object, is never taken for the arguments).

Every other commit is reported as skipped, with why. Outputs are compared by their
content digest (:func:`cashet.hashing.hash_value`), else by ``==``.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cashet.hashing import function_identity, hash_call, hash_value
from cashet.models import Commit, TaskStatus
from cashet.protocols import Serializer, Store
from cashet.stores.base import full_store

__all__ = ["VerifyOutcome", "VerifyReport", "recover_call", "verify_sample"]


@dataclass(slots=True)
class VerifyOutcome:
    """One commit's verdict.

    Attributes:
        hash: the commit.
        func_name: its function.
        verdict: ``"same"``, ``"different"`` (not deterministic), ``"error"`` (the re-run
            raised) or ``"skipped"``.
        reason: why skipped, or what differed or was raised.
        seconds: the re-run's duration (0 when skipped).
    """

    hash: str
    func_name: str
    verdict: str
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-able data."""
        return {
            "hash": self.hash,
            "func_name": self.func_name,
            "verdict": self.verdict,
            "reason": self.reason,
            "seconds": self.seconds,
        }


@dataclass(slots=True)
class VerifyReport:
    """What ``verify`` found: every outcome, re-run or skipped."""

    outcomes: list[VerifyOutcome] = field(default_factory=list)
    candidates: int = 0

    @property
    def rerun(self) -> list[VerifyOutcome]:
        """The outcomes of the calls re-run."""
        return [o for o in self.outcomes if o.verdict != "skipped"]

    @property
    def skipped(self) -> list[VerifyOutcome]:
        """The calls that could not be re-run, each with why."""
        return [o for o in self.outcomes if o.verdict == "skipped"]

    @property
    def nondeterministic(self) -> list[str]:
        """The functions whose re-run gave another output, sorted."""
        return sorted({o.func_name for o in self.outcomes if o.verdict == "different"})

    @property
    def ok(self) -> bool:
        """Whether every re-run gave the cached output."""
        return all(o.verdict in ("same", "skipped") for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (``cashet verify --json``)."""
        return {
            "ok": self.ok,
            "candidates": self.candidates,
            "rerun": len(self.rerun),
            "nondeterministic": self.nondeterministic,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def _import(commit: Commit) -> Callable[..., Any] | str:
    """The commit's function, or why it cannot be had."""
    td = commit.task_def
    module, name = td.module, td.func_name
    if not module:
        return "the commit records no module"
    if module == "__main__":
        return "defined in __main__ (a script): cannot be imported"
    if "<locals>" in name or "<lambda>" in name:
        return "defined inside a function (or a lambda): cannot be imported"
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        return f"cannot import {module}.{name}: {type(exc).__name__}: {exc}"
    inner = getattr(obj, "func", None)
    if not inspect.isfunction(obj) and callable(inner):
        obj = inner  # a task (@client.task): the function it wraps
    if not callable(obj):
        return f"{module}.{name} is not callable"
    if function_identity(obj).hash != td.func_hash:
        return "its code changed since (or it was keyed with versions): not the same call"
    return obj  # type: ignore[no-any-return]


def recover_call(
    commit: Commit, func: Callable[..., Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | str:
    """The arguments of the commit's call, recovered from its snapshot, or why they cannot be.

    Recovered only when the snapshot is a literal that hashes back to ``args_hash``.
    """
    text = commit.task_def.args_snapshot
    if "<ResultRef " in text or "<AsyncResultRef " in text:
        return "it takes an upstream result (a ResultRef): the snapshot shows only its hash"
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "its arguments are not recorded in full (the snapshot is not a literal)"
    if (
        not isinstance(parsed, tuple)
        or len(parsed) != 2
        or not isinstance(parsed[0], tuple)
        or not isinstance(parsed[1], dict)
    ):
        return "its arguments snapshot has an unexpected form"
    args, kwargs = parsed
    try:
        digest = hash_call(func, args, kwargs)
    except Exception as exc:
        return f"its arguments do not bind: {type(exc).__name__}: {exc}"
    if digest != commit.task_def.args_hash:
        return "its arguments are not recorded in full (the snapshot is abbreviated)"
    return args, kwargs


def _same(new: Any, old: Any) -> bool:
    try:
        return hash_value(new) == hash_value(old)
    except Exception:
        try:
            return bool(new == old)
        except Exception:
            return False


def _rerun(
    commit: Commit, func: Callable[..., Any], store: Store, serializer: Serializer
) -> VerifyOutcome:
    call = recover_call(commit, func)
    name = commit.func_name
    if isinstance(call, str):
        return VerifyOutcome(commit.hash, name, "skipped", call)
    args, kwargs = call
    assert commit.result is not None
    started = time.perf_counter()
    try:
        value = func(*args, **kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_wait(value))
    except Exception as exc:
        seconds = time.perf_counter() - started
        return VerifyOutcome(commit.hash, name, "error", f"{type(exc).__name__}: {exc}", seconds)
    seconds = time.perf_counter() - started
    try:
        cached = serializer.loads(store.get_blob(commit.result))
    except Exception as exc:
        return VerifyOutcome(
            commit.hash, name, "skipped", f"the cached result cannot be read: {exc}", seconds
        )
    if _same(value, cached):
        return VerifyOutcome(commit.hash, name, "same", "", seconds)
    shown_new, shown_old = repr(value)[:60], repr(cached)[:60]
    return VerifyOutcome(
        commit.hash, name, "different", f"cached {shown_old}, now {shown_new}", seconds
    )


async def _wait(awaitable: Any) -> Any:
    return await awaitable


def verify_sample(
    store: Store,
    serializer: Serializer,
    sample: int,
    seed: int | None = None,
    advance: Callable[[VerifyOutcome], None] | None = None,
) -> VerifyReport:
    """Re-run up to ``sample`` randomly chosen cached calls; see the module docstring.

    Raises:
        ValueError: ``sample`` is not positive.
    """
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ValueError(f"sample must be a positive integer, not {sample!r}")
    candidates = [
        c
        for c in full_store(store).iter_commits()
        if c.status is TaskStatus.COMPLETED and c.result is not None
    ]
    random.Random(seed).shuffle(candidates)
    report = VerifyReport(candidates=len(candidates))
    funcs: dict[tuple[str, str, str], Callable[..., Any] | str] = {}
    rerun = 0
    for commit in candidates:
        if rerun >= sample:
            break
        td = commit.task_def
        key = (td.module, td.func_name, td.func_hash)
        if key not in funcs:
            funcs[key] = _import(commit)
        func = funcs[key]
        if isinstance(func, str):
            outcome = VerifyOutcome(commit.hash, commit.func_name, "skipped", func)
        else:
            outcome = _rerun(commit, func, store, serializer)
        if outcome.verdict != "skipped":
            rerun += 1
        report.outcomes.append(outcome)
        if advance is not None:
            advance(outcome)
    return report
