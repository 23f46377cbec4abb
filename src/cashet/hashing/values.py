"""Canonical, type-tagged encoding of call arguments, hashed with BLAKE3.

This module puts the encoder together (the handlers of ``scalars``, ``containers``,
``objects`` and ``arrays`` in the dispatch table of ``encoder``, and the order in which any
other type finds its handler) and offers it as :func:`hash_args` and :func:`hash_value`.
The format is pinned by golden digests in ``tests/test_hashing_args.py``: changing any byte
of it changes every cache key, so bump ``_ARGS_HEADER``/``_VALUE_HEADER`` when it must
change.

Encoding decisions (documented here because cache keys depend on them):

* ``True``, ``1`` and ``1.0`` differ; ``(1,)`` and ``[1]`` differ; a namedtuple carries its
  class (module + qualname); a ``dict``/``set``/``frozenset`` is order-insensitive.
* Floats are encoded bit-exactly, so ``-0.0`` and ``0.0`` are *distinct* (a function may
  tell them apart: ``math.copysign``, ``1 / x``, ``atan2``), except that every NaN is one
  canonical NaN. NumPy arrays are hashed as raw bytes, so there NaN payloads and the sign
  of zero are compared bitwise.
* Self-referencing containers and objects do not raise: a value met again while it is still
  being encoded is written as a back-reference (its distance up the stack of open mutable
  containers), so ``a = []; a.append(a)`` has a stable digest.
* Data of 8 MiB or more (bytes-likes, array buffers) is hashed on its own, multithreaded,
  and its 32-byte digest stands in for the data in the stream; the switch depends only on
  the length, so it is as canonical as inlining.
* Functions are written as their identity digest (see ``objects`` for how it is bound).
"""

from __future__ import annotations

import collections
import copyreg
import dataclasses
import datetime as _dt
import decimal
import enum
import fractions
import functools
import pathlib
import types
import uuid
from collections.abc import Mapping
from typing import Any

from blake3 import blake3

from cashet.hashing.arrays import array_handler
from cashet.hashing.containers import (
    enc_ddict,
    enc_dict,
    enc_frozenset,
    enc_list,
    enc_odict,
    enc_set,
    enc_tuple,
    encode_deep,
)
from cashet.hashing.encoder import (
    BIG,
    DISPATCH,
    TAGS,
    Handler,
    Stream,
    Unhashable,
    big_digest,
    const,
    encode,
    finish,
    index_of,
    install,
    pack_tQ,
    resolve,
)
from cashet.hashing.kept import KeptDigests
from cashet.hashing.objects import (
    enc_builtin,
    enc_class,
    enc_descriptor,
    enc_enum,
    enc_function,
    enc_funcwrap,
    enc_hook,
    enc_method,
    enc_partial,
    enc_ref,
    make_dataclass,
    make_reduce,
    make_subclass,
)
from cashet.hashing.scalars import (
    enc_bool,
    enc_bytearray,
    enc_bytes,
    enc_complex,
    enc_date,
    enc_datetime,
    enc_decimal,
    enc_float,
    enc_fraction,
    enc_int,
    enc_memoryview,
    enc_module,
    enc_none,
    enc_path,
    enc_range,
    enc_slice,
    enc_str,
    enc_time,
    enc_timedelta,
    enc_uuid,
)
from cashet.models import AsyncResultRef, ResultRef

__all__ = ["hash_args", "hash_bytes", "hash_value"]

_ARGS_HEADER = b"\xcaA1"
_VALUE_HEADER = b"\xcaV1"

# --- dispatch --------------------------------------------------------------------------

_BASE: dict[type, Handler] = {
    type(None): enc_none,
    bool: enc_bool,
    int: enc_int,
    float: enc_float,
    complex: enc_complex,
    str: enc_str,
    bytes: enc_bytes,
    bytearray: enc_bytearray,
    memoryview: enc_memoryview,
    tuple: enc_tuple,
    list: enc_list,
    dict: enc_dict,
    set: enc_set,
    frozenset: enc_frozenset,
    type(...): const(TAGS["ellipsis"]),
    type(NotImplemented): const(TAGS["notimpl"]),
    fractions.Fraction: enc_fraction,
    decimal.Decimal: enc_decimal,
    uuid.UUID: enc_uuid,
    _dt.date: enc_date,
    _dt.datetime: enc_datetime,
    _dt.time: enc_time,
    _dt.timedelta: enc_timedelta,
    pathlib.PurePosixPath: enc_path,
    pathlib.PureWindowsPath: enc_path,
    pathlib.PosixPath: enc_path,
    pathlib.WindowsPath: enc_path,
    range: enc_range,
    slice: enc_slice,
    type: enc_class,
    types.ModuleType: enc_module,
    types.FunctionType: enc_function,
    types.MethodType: enc_method,
    types.BuiltinFunctionType: enc_builtin,
    functools.partial: enc_partial,
    ResultRef: enc_ref,
    AsyncResultRef: enc_ref,
}

_BUILTIN_BASES: tuple[type, ...] = (
    int, float, complex, str, bytes, bytearray, tuple, list, dict, set, frozenset,
    _dt.datetime, _dt.date, _dt.time, _dt.timedelta, decimal.Decimal, fractions.Fraction,
)  # fmt: skip
_DESCRIPTORS = (
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)
# checked in order, after the hook, ResultRefs, NumPy and pandas
_BY_BASE: tuple[tuple[Any, Handler], ...] = (
    (enum.Enum, enc_enum),
    (types.MethodType, enc_method),
    (types.BuiltinFunctionType, enc_builtin),
    (functools.partial, enc_partial),
    (_DESCRIPTORS, enc_descriptor),
    ((staticmethod, classmethod), enc_funcwrap),
    (types.ModuleType, enc_module),
    (pathlib.PurePath, enc_path),
    (collections.OrderedDict, enc_odict),
    (collections.defaultdict, enc_ddict),
)


def _handler_for(tp: type) -> Handler:
    if callable(getattr(tp, "__cashet_hash__", None)):
        return enc_hook
    if issubclass(tp, type):
        return enc_class
    if issubclass(tp, (ResultRef, AsyncResultRef)):
        return enc_ref
    h = array_handler(tp)
    if h is not None:
        return h
    for base, handler in _BY_BASE:
        if issubclass(tp, base):
            return handler
    for builtin in _BUILTIN_BASES:
        if issubclass(tp, builtin):
            return make_subclass(tp, _BASE[builtin])
    if dataclasses.is_dataclass(tp):
        return make_dataclass(tp)
    return make_reduce(copyreg.dispatch_table.get(tp))


install(_BASE, _handler_for)


# --- errors ----------------------------------------------------------------------------


def _render_path(root: str, path: list[tuple[str, Any]]) -> str:
    out = [root]
    for kind, key in reversed(path):
        if kind == "attr":
            out.append(f".{key}")
        elif kind == "member":
            out.append("{…}")
        elif kind == "column":
            out.append(f".iloc[:, {key}]")
        else:
            try:
                shown = repr(key)  # display only, never hashed
            except Exception:
                shown = f"<{type(key).__name__}>"
            out.append(f"[{shown}]")
    return "".join(out)


def _type_error(what: str, root: str, e: Unhashable) -> TypeError:
    tp = type(e.obj)
    tname = tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    msg = (
        f"{what} ({_render_path(root, e.path)}) of type {tname} cannot be hashed; "
        "give it a __cashet_hash__ method or pass a hashable value"
    )
    return TypeError(msg if e.cause is None else f"{msg} ({e.cause})")


def _too_deep(what: str, root: str, obj: Any) -> TypeError:
    tp = type(obj)
    tname = tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return TypeError(
        f"{what} ({root}) of type {tname} is nested too deeply to hash (deeper than the "
        "recursion limit inside a type other than list, tuple or dict); flatten it, or give "
        "it a __cashet_hash__ method"
    )


# --- public ----------------------------------------------------------------------------


def hash_args(
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    refs: list[Any] | None = None,
    kept: KeptDigests | None = None,
) -> str:
    """Return the BLAKE3 hex digest of a call's arguments.

    Args:
        args: the positional arguments.
        kwargs: the keyword arguments (order-insensitive).
        refs: when given, every ``ResultRef``/``AsyncResultRef`` met anywhere in the
            arguments (also nested in containers) is appended to it.
        kept: when given, the digests of big buffers are kept there, for the call's
            manifest to reuse (see :mod:`cashet.hashing.kept`).

    Returns:
        64 lowercase hex characters.

    Raises:
        TypeError: an argument (or something inside it) cannot be hashed exactly; the
            message names its position or keyword path and its type.
    """
    st = Stream(refs, _ARGS_HEADER, kept)
    st.buf += pack_tQ(b"(", len(args))
    a = None
    try:
        try:
            for a in args:
                f = DISPATCH.get(type(a))
                if f is None:
                    f = resolve(type(a))
                f(a, st)
        except Unhashable as e:
            i = index_of(args, a)
            raise _type_error(f"argument {i}", f"args[{i}]", e) from e.cause
        st.buf += pack_tQ(b"{", len(kwargs))
        if kwargs:
            for k in sorted(kwargs):
                enc_str(k, st)
                v = kwargs[k]
                try:
                    f = DISPATCH.get(type(v))
                    if f is None:
                        f = resolve(type(v))
                    f(v, st)
                except Unhashable as e:
                    raise _type_error(f"argument {k!r}", f"kwargs[{k!r}]", e) from e.cause
    except RecursionError:
        # Nested deeper than the call stack allows: the same bytes, walked on a stack.
        if refs is not None:
            del refs[:]
        return _hash_args_deep(args, kwargs, refs)
    h = st.hasher
    if h is None:
        return blake3(st.buf).hexdigest()
    h.update(st.buf)
    return h.hexdigest()  # type: ignore[no-any-return]


def _hash_args_deep(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], refs: list[Any] | None
) -> str:
    """:func:`hash_args` with lists, tuples and dicts walked without recursion."""
    st = Stream(refs, _ARGS_HEADER)
    st.buf += pack_tQ(b"(", len(args))
    for i, a in enumerate(args):
        try:
            encode_deep(a, st)
        except Unhashable as e:
            raise _type_error(f"argument {i}", f"args[{i}]", e) from e.cause
        except RecursionError as e:
            raise _too_deep(f"argument {i}", f"args[{i}]", a) from e
    st.buf += pack_tQ(b"{", len(kwargs))
    for k in sorted(kwargs):
        enc_str(k, st)
        v = kwargs[k]
        try:
            encode_deep(v, st)
        except Unhashable as e:
            raise _type_error(f"argument {k!r}", f"kwargs[{k!r}]", e) from e.cause
        except RecursionError as e:
            raise _too_deep(f"argument {k!r}", f"kwargs[{k!r}]", v) from e
    h = st.hasher
    if h is None:
        return blake3(st.buf).hexdigest()
    h.update(st.buf)
    return h.hexdigest()  # type: ignore[no-any-return]


def hash_value(obj: Any, kept: KeptDigests | None = None) -> str:
    """Return the BLAKE3 hex digest of one value, with the argument encoding.

    Args:
        obj: any value ``hash_args`` accepts as an argument.
        kept: digests of big buffers that ``hash_args`` kept for this call (taken with
            :func:`cashet.hashing.kept.take`): reused instead of hashing them again.

    Returns:
        64 lowercase hex characters (another domain than ``hash_args``: a different header).

    Raises:
        TypeError: ``obj`` (or something inside it) cannot be hashed exactly.
    """
    st = Stream(None, _VALUE_HEADER, kept, True)
    try:
        encode(obj, st)
    except Unhashable as e:
        raise _type_error("value", "value", e) from e.cause
    except RecursionError:
        st = Stream(None, _VALUE_HEADER)
        try:
            encode_deep(obj, st)
        except Unhashable as e:
            raise _type_error("value", "value", e) from e.cause
        except RecursionError as e:
            raise _too_deep("value", "value", obj) from e
    return finish(st).hex()


def hash_bytes(data: bytes | memoryview) -> str:
    """Return the plain BLAKE3 hex digest of ``data`` (multithreaded from 8 MiB).

    Args:
        data: the bytes to hash.

    Returns:
        64 lowercase hex characters, as ``blake3(data).hexdigest()``.
    """
    if len(data) >= BIG:
        return str(big_digest(data, True))
    return blake3(data).hexdigest()
