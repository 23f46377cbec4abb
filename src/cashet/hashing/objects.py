"""Handlers for code and objects: functions, methods, partials, hooks, enums, dataclasses,
subclasses of builtins and any other object as pickle sees it (``__reduce_ex__``).

A function is written as the digest of its identity (``cashet.hashing.functions``), which is
itself computed with this encoding: a default value or a constant of the function goes
through :func:`~cashet.hashing.encoder.encode`, and may be a function again. That mutual
recursion happens at run time only, so it is a late binding instead of an import: the
function-identity module, which imports the value encoding, hands its digest to
:func:`set_function_digest` when it is imported (``cashet.hashing`` imports it, so it is set
before anything can be hashed). Nothing here imports the module that computes identities.
"""

from __future__ import annotations

import copyreg
import dataclasses
import enum
import functools
import types
from collections.abc import Callable
from typing import Any

from cashet.hashing.encoder import (
    NONE,
    TAGS,
    Handler,
    Stream,
    Unhashable,
    encode,
    encode_at,
    encode_state,
    pack_Q,
    qualname_of,
    tracked,
    type_tag,
)
from cashet.hashing.scalars import enc_str

__all__ = [
    "enc_builtin",
    "enc_descriptor",
    "enc_enum",
    "enc_function",
    "enc_funcwrap",
    "enc_hook",
    "enc_method",
    "enc_partial",
    "enc_ref",
    "make_dataclass",
    "make_reduce",
    "enc_class",
    "make_subclass",
    "set_code_digests",
    "set_function_digest",
]

_NEWOBJ = copyreg.__newobj__  # type: ignore[attr-defined]
_FUNCTION, _METHOD = TAGS["function"], TAGS["method"]


def enc_ref(obj: Any, st: Stream) -> None:
    # the blob hash *is* the content: never load the value
    st.buf += TAGS["ref"]
    enc_str(obj.hash, st)
    if st.refs is not None:
        st.refs.append(obj)


def _no_function_digest(func: Any) -> bytes:
    raise RuntimeError("cashet.hashing.functions has not set the function digest")


def _no_class_digest(cls: type) -> bytes:
    return b""


_function_digest: Callable[[Any], bytes] = _no_function_digest
_class_digest: Callable[[type], bytes] = _no_class_digest


def set_function_digest(digest: Callable[[Any], bytes]) -> None:
    """Encode functions by ``digest(func)``: the 32 bytes of their identity.

    Args:
        digest: called with a plain function; returns its identity digest.
    """
    global _function_digest
    _function_digest = digest


def set_code_digests(function: Callable[[Any], bytes], cls: Callable[[type], bytes]) -> None:
    """Encode functions by their identity, and user classes by name *and* code.

    Args:
        function: called with a plain function; returns its identity digest.
        cls: called with a class; returns the digest of its code (methods, class-level
            values), or ``b""`` for a library class, which stays known by name only.
    """
    global _class_digest
    set_function_digest(function)
    _class_digest = cls


def class_tag(tp: type) -> bytes:
    """The class of a value: ``module.qualname``, and for a user class its code digest too
    (editing a method of the class of an argument must change the key)."""
    d = _class_digest(tp)
    return type_tag(tp) + (TAGS["class_code"] + d if d else b"")


def enc_class(obj: type, st: Stream) -> None:
    """A class passed as data: by name, and by code when the user wrote it."""
    st.buf += class_tag(obj)


def enc_function(obj: Any, st: Stream) -> None:
    st.buf += _FUNCTION + _function_digest(obj)


def enc_method(obj: types.MethodType, st: Stream) -> None:
    st.buf += _METHOD + _function_digest(obj.__func__)
    encode_at(obj.__self__, st, "attr", "__self__")  # a method whose instance changed misses


def enc_builtin(obj: Any, st: Stream) -> None:
    st.buf += TAGS["builtin"]
    owner = getattr(obj, "__self__", None)
    if owner is None or isinstance(owner, types.ModuleType):
        enc_str(qualname_of(obj), st)
        st.buf += NONE
    else:  # a bound builtin method, e.g. ``d.get``: its instance is part of it
        enc_str(f"{type(owner).__module__}.{obj.__qualname__}", st)
        encode_at(owner, st, "attr", "__self__")


def enc_descriptor(obj: Any, st: Stream) -> None:
    st.buf += TAGS["descriptor"] + type_tag(type(obj))
    encode(getattr(obj, "__objclass__", None), st)
    enc_str(getattr(obj, "__name__", ""), st)
    if isinstance(obj, types.MethodWrapperType):
        encode_at(obj.__self__, st, "attr", "__self__")


def enc_funcwrap(obj: Any, st: Stream) -> None:
    st.buf += TAGS["funcwrap"] + type_tag(type(obj))
    encode(obj.__func__, st)


@tracked
def enc_partial(obj: functools.partial[Any], st: Stream) -> None:
    st.buf += TAGS["partial"] + type_tag(type(obj))
    encode_at(obj.func, st, "attr", "func")
    encode_at(obj.args, st, "attr", "args")
    encode_at(obj.keywords, st, "attr", "keywords")
    encode_state(getattr(obj, "__dict__", None) or None, st)


@tracked
def enc_hook(obj: Any, st: Stream) -> None:
    st.buf += TAGS["hook"] + class_tag(type(obj))
    encode_at(obj.__cashet_hash__(), st, "attr", "__cashet_hash__()")


def enc_enum(obj: enum.Enum, st: Stream) -> None:
    st.buf += TAGS["enum"] + class_tag(type(obj))
    encode(obj._value_, st)


def make_reduce(reducer: Callable[[Any], Any] | None) -> Handler:
    """Generic objects, as pickle sees them (``__reduce_ex__``) but hashed structurally:
    a C object with hidden state (lock, file, socket, generator) refuses, as for pickle."""

    @tracked
    def enc_reduce(obj: Any, st: Stream) -> None:
        try:
            rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(4)
        except Exception as exc:
            raise Unhashable(obj, exc) from None
        tp = type(obj)
        st.buf += TAGS["reduce"] + class_tag(tp)
        if isinstance(rv, str):  # a global singleton, named relative to its module
            st.buf += TAGS["global"]
            enc_str(rv, st)
            return
        if not isinstance(rv, tuple) or len(rv) < 2:
            raise Unhashable(obj)
        func, args = rv[0], rv[1]
        state, listitems, dictitems = (*rv[2:], None, None, None)[:3]
        if func is _NEWOBJ and args and args[0] is tp:
            st.buf += NONE  # the plain-object case: class + state
            args = args[1:]
        else:
            enc_str(qualname_of(func), st)
        encode_at(args, st, "attr", "__reduce__()")
        encode_state(state, st)
        encode_at(None if listitems is None else list(listitems), st, "attr", "__reduce__()")
        encode_at(None if dictitems is None else list(dictitems), st, "attr", "__reduce__()")

    return enc_reduce


def make_dataclass(tp: type) -> Handler:
    """A dataclass: its class, its fields, and any other instance attribute (a subclass's
    ``__init__`` or code after construction may set some: they are state too)."""
    names = tuple(f.name for f in dataclasses.fields(tp))
    counted = pack_Q(len(names))
    # a cached_property's value lands in __dict__ when first read: derived, not state
    cached = functools.cached_property
    derived = {k for c in tp.__mro__ for k, v in vars(c).items() if isinstance(v, cached)}
    field_set = frozenset(names) | derived

    @tracked
    def enc_dataclass(obj: Any, st: Stream) -> None:
        st.buf += TAGS["dataclass"] + class_tag(tp) + counted
        for name in names:
            enc_str(name, st)
            encode_at(getattr(obj, name), st, "attr", name)
        d = getattr(obj, "__dict__", None)
        extra = {k: v for k, v in d.items() if k not in field_set} if d else None
        encode_state(extra or None, st)

    return enc_dataclass


def make_subclass(tp: type, base: Handler) -> Handler:
    """A subclass of a builtin (namedtuple, Counter, ...): class + content + ``__dict__``."""

    def enc_subclass(obj: Any, st: Stream) -> None:
        st.buf += TAGS["subclass"] + class_tag(tp)
        base(obj, st)  # tracks the container itself when it is mutable
        encode_state(getattr(obj, "__dict__", None) or None, st)

    return enc_subclass
