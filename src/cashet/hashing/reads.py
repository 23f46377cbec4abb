"""What a function does with the values it names: reads them, or only writes into them.

A value the task's code can *read* is part of the cache key; a value it only writes into
cannot change its result, and keying on it would make every call a miss (the call counter
``CALLS.append(x)``, a memo ``SEEN[k] = v``, ``global N; N += 1``). From the function's AST,
an occurrence of a name (or a dotted path ``cfg.LOG``) is a *write* when it is

* the receiver of a mutating method called as a statement (``CALLS.append(x)``, whose
  result is discarded; see :data:`MUTATORS`),
* the container of an item or attribute assignment or deletion (``D[k] = v``, ``o.a = 1``,
  ``del D[k]``, ``D[k] += 1``),

and everything else is a read. Without source (bytecode only) every use is a read.

Immutable values (numbers, strings, bytes, ``None``, enums, and tuples/frozensets of them)
are hashed once per binding; anything else is re-hashed on every call (:func:`is_immutable`).
"""

from __future__ import annotations

import ast
import datetime as _dt
import decimal
import enum
import fractions
import pathlib
import uuid
from typing import Any

__all__ = ["MUTATORS", "Uses", "is_immutable", "uses_of"]

#: Methods that only put something into their receiver: called as a statement, the
#: receiver's state cannot reach the result (``remove``/``pop`` can raise: they are reads).
MUTATORS = frozenset(
    {
        "append", "appendleft", "extend", "extendleft", "add", "update", "insert",
        "discard", "clear", "setdefault", "put", "put_nowait",
        "debug", "info", "warning", "error", "exception", "critical", "log",
    }
)  # fmt: skip

_SCALARS = (
    type(None), bool, int, float, complex, str, bytes, range, slice,
    decimal.Decimal, fractions.Fraction, uuid.UUID, _dt.date, _dt.time, _dt.timedelta,
    pathlib.PurePath,
)  # fmt: skip


def is_immutable(v: Any, depth: int = 0) -> bool:
    """Whether ``v`` cannot change in place: hashed once, then re-validated by identity."""
    if isinstance(v, _SCALARS) and type(v).__module__ in (
        "builtins",
        "decimal",
        "fractions",
        "uuid",
        "datetime",
        "pathlib",
    ):
        return True
    if isinstance(v, enum.Enum):
        return depth < 8 and is_immutable(v._value_, depth + 1)
    if type(v) in (tuple, frozenset):
        return depth < 8 and all(is_immutable(x, depth + 1) for x in v)
    return False


class Uses:
    """The dotted paths a function's AST names, and which of them are only written into."""

    __slots__ = ("occurrences",)

    def __init__(self, occurrences: list[tuple[tuple[str, ...], bool]] | None) -> None:
        #: (path, is_write) per occurrence; ``None`` without source: everything is a read
        self.occurrences = occurrences

    def write_only(self, path: tuple[str, ...]) -> bool:
        """Whether every use of the value at ``path`` (``("cfg", "LOG")``) is a write."""
        occ = self.occurrences
        if occ is None:
            return False
        n = len(path)
        for p, write in occ:
            if p[:n] == path:
                if not write or len(p) != n:
                    return False
            elif path[: len(p)] == p and not write:
                return False  # ``helper(cfg)`` may read ``cfg.LOG``
        return True


def _occurrence(node: ast.Name, parents: dict[int, ast.AST]) -> tuple[tuple[str, ...], bool]:
    path = [node.id]
    top: ast.AST = node
    parent = parents.get(id(top))
    while isinstance(parent, ast.Attribute) and isinstance(parent.ctx, ast.Load):
        path.append(parent.attr)
        top = parent
        parent = parents.get(id(top))
    if (
        isinstance(parent, (ast.Subscript, ast.Attribute))
        and parent.value is top
        and isinstance(parent.ctx, (ast.Store, ast.Del))
    ):
        return tuple(path), True
    if (
        len(path) > 1
        and path[-1] in MUTATORS
        and isinstance(parent, ast.Call)
        and parent.func is top
        and isinstance(parents.get(id(parent)), ast.Expr)
    ):
        return tuple(path[:-1]), True
    return tuple(path), False


def uses_of(node: ast.AST | None) -> Uses:
    """Return the :class:`Uses` of a function's AST node (``None``: no source)."""
    if node is None:
        return Uses(None)
    parents: dict[int, ast.AST] = {}
    names: list[ast.Name] = []
    for parent in ast.walk(node):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load):
                names.append(child)
    return Uses([_occurrence(n, parents) for n in names])
