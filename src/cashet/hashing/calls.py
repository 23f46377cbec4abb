"""The argument key of one call: arguments bound to the signature, defaults applied.

``f(10, 2)``, ``f(10, k=2)``, ``f(x=10, k=2)`` and ``f(10)`` (with ``k=2`` the default) are
one call, so they hash alike: named parameters are written in order as positional values,
keyword-only ones by name, and extra ``*args``/``**kwargs`` as given. A call that does not
bind (a missing or unexpected argument: it will fail when run) is hashed as given.

The instance of a bound method (``Scaler(2).mul``) and the class of a classmethod are the
first argument: they are in the key, hashed by value (a class by its name and code).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

from cashet._process import BoundedCache
from cashet.hashing.kept import KeptDigests
from cashet.hashing.keyparts import warn
from cashet.hashing.values import hash_args, hash_value

__all__ = ["bind", "binds_as_given", "hash_call"]

_VARARGS, _VARKW = 0x04, 0x08
_Binder = tuple[int, int, tuple[str, ...], tuple[str, ...], bool, bool]
_BINDERS: BoundedCache[types.CodeType, _Binder] = BoundedCache(20_000)


def _binder(code: types.CodeType) -> _Binder:
    b = _BINDERS.get(code)
    if b is None:
        argc, kwc = code.co_argcount, code.co_kwonlyargcount
        names = code.co_varnames
        b = (
            argc,
            code.co_posonlyargcount,
            names[:argc],
            names[argc : argc + kwc],
            bool(code.co_flags & _VARARGS),
            bool(code.co_flags & _VARKW),
        )
        _BINDERS.put(code, b)
    return b


def bind(
    func: types.FunctionType, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], frozenset[int]] | None:
    """Bind a call to ``func``'s signature with defaults applied.

    Returns:
        ``(positional, keywords, defaulted)``: named parameters in order, then extra
        ``*args``; keyword-only parameters and extra ``**kwargs`` by name; the positions
        whose values came from defaults. ``None`` when the call does not bind.
    """
    argc, posonly, names, kwnames, has_var, has_varkw = _binder(func.__code__)
    n = len(args)
    if n > argc and not has_var:
        return None
    kw = dict(kwargs)
    pos = list(args[:argc])
    defaults = func.__defaults__ or ()
    first_default = argc - len(defaults)
    defaulted: list[int] = []
    for i in range(n, argc):
        name = names[i]
        if i >= posonly and name in kw:
            pos.append(kw.pop(name))
        elif i >= first_default:
            defaulted.append(i)
            pos.append(defaults[i - first_default])
        else:
            return None
    for i in range(min(n, argc)):
        if i >= posonly and names[i] in kw:
            return None  # given twice: a TypeError when it runs
    kwdefaults = func.__kwdefaults__ or {}
    for name in kwnames:
        if name not in kw:
            if name not in kwdefaults:
                return None
            kw[name] = kwdefaults[name]
    if not has_varkw:
        known = set(kwnames)
        if any(k not in known for k in kw):
            return None
    return (*pos, *args[argc:]), kw, frozenset(defaulted)


def _plain(func: Any) -> tuple[types.FunctionType | None, Any]:
    """The function to bind against, and the bound instance/class (``None`` when none)."""
    if type(func) is types.FunctionType:
        return func, None
    if type(func) is types.MethodType and type(func.__func__) is types.FunctionType:
        return func.__func__, func.__self__
    return None, None


_NO_SELF: Any = object()


def binds_as_given(code: types.CodeType, owner: Any, args: tuple[Any, ...], kwargs: Any) -> bool:
    """Whether a call of a plain function binds as given: no bound instance, no keywords,
    exactly its positional parameters (each argument is then its parameter's, by position)."""
    return (
        owner is None
        and not kwargs
        and len(args) == code.co_argcount
        and not code.co_kwonlyargcount
    )


def hash_call(
    func: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    refs: list[Any] | None = None,
    kept: KeptDigests | None = None,
) -> str:
    """Return the argument digest of ``func(*args, **kwargs)``, bound to its signature.

    Args:
        func: the task callable (a bound method's instance becomes the first argument).
        args: the positional arguments.
        kwargs: the keyword arguments.
        refs: as for :func:`~cashet.hashing.hash_args`.
        kept: as for :func:`~cashet.hashing.hash_args`.

    Returns:
        64 lowercase hex characters.

    Raises:
        TypeError: an argument the caller passed cannot be hashed (its position is named).
            An unhashable default or bound instance is left out and warned about instead.
    """
    f, owner = _plain(func)
    if f is None:
        return hash_args(args, kwargs, refs, kept)
    code = f.__code__
    if binds_as_given(code, owner, args, kwargs):
        return hash_args(args, kwargs, refs, kept)  # the common call: nothing to bind
    full = args if owner is None else (owner, *args)
    bound = bind(f, full, kwargs)
    if bound is None:
        return hash_args(full, kwargs, refs, kept)
    pos, kw, defaulted = bound
    try:
        return hash_args(pos, kw, refs, kept)
    except TypeError:
        pass
    # something unhashable: if the caller passed it, say so; a default or the bound instance
    # the caller did not pass is left out (and named) instead: the call must still work
    left_out: list[str] = []
    names = _binder(code)[2]
    keep_pos: list[Any] = []
    for i, v in enumerate(pos):
        given = (i > 0 or owner is None) and i not in defaulted
        if not given and not _hashable(v):
            what = "the bound instance" if i == 0 and owner is not None else "the default of"
            label = names[i] if i < len(names) else f"args[{i}]"
            left_out.append(f"{what} {label} ({type(v).__qualname__})")
            keep_pos.append(_NO_SELF)
        else:
            keep_pos.append(v)
    keep_kw = dict(kw)
    for k in list(keep_kw):
        if k not in kwargs and not _hashable(keep_kw[k]):
            left_out.append(f"the default of {k} ({type(keep_kw[k]).__qualname__})")
            del keep_kw[k]
    if not left_out:
        return hash_args(pos, kw, refs, kept)  # raises the caller's own TypeError
    warn(f, f"{f.__module__}.{f.__qualname__}", left_out)
    marked = tuple(("<left out>",) if v is _NO_SELF else v for v in keep_pos)
    return hash_args(marked, keep_kw, refs, kept)


def _hashable(v: Any) -> bool:
    try:
        hash_value(v)
    except Exception:
        return False
    return True
