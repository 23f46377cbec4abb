"""Finding and substituting upstream result handles inside call arguments (pure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cashet.models import ResultRefBase

__all__ = ["find_refs", "has_refs", "replace_refs"]

_REF_TYPES = ResultRefBase


def _children(obj: Any) -> Any:
    t = type(obj)
    if t is list or t is tuple or t is set or t is frozenset:
        return obj
    if t is dict:
        return obj.values()
    if isinstance(obj, tuple):  # namedtuple
        return obj
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        return obj.values()
    return None


def find_refs(obj: Any, out: list[Any] | None = None) -> list[Any]:
    """Collect every ``ResultRef``/``AsyncResultRef`` in ``obj`` and its containers.

    Walked on an explicit stack (in order, each container once), so arguments nested
    thousands deep, or containing themselves, are searched without a ``RecursionError``.
    """
    if out is None:
        out = []
    if isinstance(obj, _REF_TYPES):
        out.append(obj)
        return out
    kids = _children(obj)
    if kids is None:
        return out
    seen = {id(obj)}
    stack = [iter(kids)]
    while stack:
        for kid in stack[-1]:
            if isinstance(kid, _REF_TYPES):
                out.append(kid)
                continue
            inner = _children(kid)
            if inner is not None and id(kid) not in seen:
                seen.add(id(kid))
                stack.append(iter(inner))
                break
        else:
            stack.pop()
    return out


def has_refs(obj: Any) -> bool:
    """Whether ``obj`` holds any result handle."""
    return bool(find_refs(obj))


def replace_refs(obj: Any, load: Callable[[Any], Any]) -> Any:
    """Return ``obj`` with every result handle replaced by ``load(handle)``.

    Containers without handles are returned as they are (no copy).
    """
    if isinstance(obj, _REF_TYPES):
        return load(obj)
    t = type(obj)
    if t is list or (isinstance(obj, list) and t is not str):
        if not has_refs(obj):
            return obj
        return [replace_refs(x, load) for x in obj]
    if isinstance(obj, tuple):
        if not has_refs(obj):
            return obj
        items = [replace_refs(x, load) for x in obj]
        return t(*items) if hasattr(obj, "_fields") else t(items)
    if isinstance(obj, dict):
        if not has_refs(obj):
            return obj
        return {k: replace_refs(v, load) for k, v in obj.items()}
    if t is set or t is frozenset:
        if not has_refs(obj):
            return obj
        return t(replace_refs(x, load) for x in obj)
    return obj
