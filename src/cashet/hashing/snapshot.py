"""Display text of a call's arguments, for people: bounded, readable, never hashed."""

from __future__ import annotations

import reprlib
import sys
from collections.abc import Mapping
from typing import Any

from cashet.models import AsyncResultRef, ResultRef

__all__ = ["args_snapshot"]

#: Arrays with more elements than this are shown by shape and dtype only.
_ARRAY_SHOWN = 20


class _SnapshotRepr(reprlib.Repr):
    """``reprlib`` with bounded containers, short ResultRefs and summarized arrays/frames."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 4
        self.maxtuple = self.maxlist = self.maxarray = self.maxdeque = 20
        self.maxdict = self.maxset = self.maxfrozenset = 20
        self.maxstring = 160
        self.maxlong = 60
        self.maxother = 120

    def repr1(self, x: Any, level: int) -> str:
        try:
            if isinstance(x, (ResultRef, AsyncResultRef)):
                return f"<{type(x).__name__} {x.hash[:12]}>"
            module = type(x).__module__ or ""
            if module.startswith(("numpy", "pandas")):
                summary = _summarize(x)
                if summary is not None:
                    return summary
            return super().repr1(x, level)
        except Exception:
            return f"<{type(x).__name__}>"

    def repr_bytes(self, x: Any, level: int) -> str:
        # slice first: repr() of a 100 MB payload would build a 400 MB string
        more = "..." if len(x) > self.maxstring else ""
        return f"{bytes(x[: self.maxstring])!r}{more}"

    repr_bytearray = repr_bytes

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            s = repr(x)
        except Exception:
            return f"<{type(x).__name__}>"
        if len(s) > self.maxother:
            i = max(0, (self.maxother - 3) // 2)
            j = max(0, self.maxother - 3 - i)
            s = s[:i] + "..." + s[len(s) - j :]
        return s


def _summarize(x: Any) -> str | None:
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray) and x.size > _ARRAY_SHOWN:
        return f"array(shape={tuple(x.shape)}, dtype={x.dtype})"
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(x, (pd.DataFrame, pd.Series, pd.Index)):
        return f"{type(x).__name__}(shape={tuple(x.shape)})"
    return None


_REPR = _SnapshotRepr()
_PLAIN = frozenset({int, float, bool, str, type(None)})


def args_snapshot(args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int = 2000) -> str:
    """Return bounded, readable display text of a call's arguments.

    The text looks like ``(('2024-01-01',), {'model': 'v3'})``: long containers and strings
    are truncated reprlib-style, ``ResultRef``s shown as ``<ResultRef ab12cd34ef56>``, big
    NumPy arrays and pandas objects by shape. It is for people, never hashed.

    Args:
        args: the positional arguments.
        kwargs: the keyword arguments.
        limit: the maximum length of the result.

    Returns:
        The text; it never raises (an unprintable value shows as ``<TypeName>``).
    """
    try:
        if all(type(a) in _PLAIN for a in args) and all(type(v) in _PLAIN for v in kwargs.values()):
            # Fast path for the common call with a few scalars: plain repr gives the same
            # text as the bounded one while everything fits under its limits.
            s = repr((tuple(args), dict(kwargs)))
            if len(s) <= _REPR.maxlong:
                return s
        s = _REPR.repr((tuple(args), dict(kwargs)))
    except Exception:
        s = f"<{type(args).__name__}>"
    if len(s) > limit:
        s = s[: max(0, limit - 3)] + "..."
    return s
