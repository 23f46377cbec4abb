"""Batch planning for ``submit_many``: parse items, wire ``TaskRef``s, order topologically.

Pure: every malformed batch is rejected here, before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cashet.models import TaskRef

__all__ = ["BatchItem", "plan_batch", "substitute_task_refs", "wired_args"]


@dataclass(slots=True)
class BatchItem:
    """One task of a batch: its key (list index or dict key), call and dependencies."""

    key: Hashable
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    deps: list[Hashable] = field(default_factory=list)


def _collect_task_refs(obj: Any, out: list[TaskRef]) -> None:
    if isinstance(obj, TaskRef):
        out.append(obj)
    elif isinstance(obj, list | tuple | set | frozenset):
        for x in obj:
            _collect_task_refs(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _collect_task_refs(x, out)


def substitute_task_refs(obj: Any, results: Mapping[Hashable, Any]) -> Any:
    """Replace every ``TaskRef(k)`` in ``obj`` (and nested containers) with ``results[k]``."""
    if isinstance(obj, TaskRef):
        return results[obj.index]
    if isinstance(obj, tuple):
        items = [substitute_task_refs(x, results) for x in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, list):
        return [substitute_task_refs(x, results) for x in obj]
    if isinstance(obj, dict):
        return {k: substitute_task_refs(v, results) for k, v in obj.items()}
    if isinstance(obj, set | frozenset):
        return type(obj)(substitute_task_refs(x, results) for x in obj)
    return obj


def wired_args(
    item: BatchItem, results: Mapping[Hashable, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``item``'s arguments with each ``TaskRef(k)`` replaced by ``results[k]``."""
    return substitute_task_refs(item.args, results), substitute_task_refs(item.kwargs, results)


def _parse_item(key: Hashable, item: Any) -> BatchItem:
    where = f"task {key!r}"
    if callable(item) and not isinstance(item, tuple | list):
        return BatchItem(key, item, (), {})
    if not isinstance(item, tuple | list) or not 1 <= len(item) <= 3:
        raise TypeError(f"{where}: expected f, (f,), (f, args) or (f, args, kwargs), got {item!r}")
    func = item[0]
    if not callable(func):
        raise TypeError(f"{where}: first element must be callable, got {func!r}")
    args: Any = item[1] if len(item) > 1 else ()
    kwargs: Any = item[2] if len(item) > 2 else {}
    if not isinstance(args, tuple | list):
        raise TypeError(
            f"{where}: args must be a tuple or list, got {type(args).__name__} "
            "(write (f, (x,)) for a single argument)"
        )
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(f"{where}: kwargs must be a dict with str keys, got {kwargs!r}")
    return BatchItem(key, func, tuple(args), dict(kwargs))


def _in_batch(index: Any, tasks: Any, size: int) -> bool:
    if isinstance(tasks, Mapping):
        try:
            return index in tasks
        except TypeError:  # an unhashable index cannot name a task
            return False
    return isinstance(index, int) and not isinstance(index, bool) and 0 <= index < size


def plan_batch(tasks: Sequence[Any] | Mapping[Hashable, Any]) -> list[BatchItem]:
    """Parse and validate a batch; return its items in a topological order.

    Raises:
        TypeError: a malformed item, or ``tasks`` is neither a list/tuple nor a dict.
        ValueError: a ``TaskRef`` to a missing task, to itself, or a dependency cycle.
    """
    if isinstance(tasks, Mapping):
        pairs = list(tasks.items())
    elif isinstance(tasks, list | tuple):
        pairs = list(enumerate(tasks))
    else:
        raise TypeError(f"submit_many takes a list or a dict of tasks, not {type(tasks).__name__}")

    items: dict[Hashable, BatchItem] = {}
    for key, raw in pairs:
        item = _parse_item(key, raw)
        refs: list[TaskRef] = []
        _collect_task_refs(item.args, refs)
        _collect_task_refs(item.kwargs, refs)
        for ref in refs:
            if ref.index == key:
                raise ValueError(f"task {key!r} refers to its own output (TaskRef({key!r}))")
            if not _in_batch(ref.index, tasks, len(pairs)):
                raise ValueError(
                    f"task {key!r} refers to TaskRef({ref.index!r}), which is not in the batch"
                )
            if ref.index not in item.deps:
                item.deps.append(ref.index)
        items[key] = item

    # Kahn's algorithm, keeping the caller's order among ready tasks.
    indegree = {k: len(it.deps) for k, it in items.items()}
    dependents: dict[Hashable, list[Hashable]] = {k: [] for k in items}
    for k, it in items.items():
        for d in it.deps:
            dependents[d].append(k)
    ready = [k for k, n in indegree.items() if n == 0]
    order: list[BatchItem] = []
    while ready:
        k = ready.pop(0)
        order.append(items[k])
        for child in dependents[k]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(order) != len(items):
        stuck = [k for k, n in indegree.items() if n > 0]
        raise ValueError(f"submit_many: dependency cycle among tasks {stuck!r}")
    return order
