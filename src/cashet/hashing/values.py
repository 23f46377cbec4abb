"""Canonical, type-tagged encoding of call arguments, hashed with BLAKE3.

Every value is written as a self-delimiting, type-tagged byte stream into a ``bytearray``
that is flushed into a :class:`blake3.blake3` hasher; nothing goes through ``repr()`` or
pickle. The format is pinned by golden digests in ``tests/test_hashing_args.py``: changing
any byte of it changes every cache key, so bump ``_ARGS_HEADER``/``_VALUE_HEADER`` when it
must change.

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
import struct
import sys
import types
import uuid
import zoneinfo
from array import array
from collections.abc import Callable, Mapping
from typing import Any

from blake3 import blake3

from cashet.hashing._blake import new_hasher
from cashet.models import AsyncResultRef, ResultRef

__all__ = ["TAGS", "hash_args", "hash_bytes", "hash_value"]

_ARGS_HEADER = b"\xcaA1"
_VALUE_HEADER = b"\xcaV1"

#: Data at least this long is hashed separately (multithreaded) and stands in as a digest.
_BIG = 8 << 20
#: Data at least this long is fed to the hasher directly instead of copied into the buffer.
_DIRECT = 64 << 10
#: Homogeneous int/float/str sequences at least this long are packed in one go.
_PACK_MIN = 16

# One byte per kind of value (name, byte as latin-1). Every tag is distinct (a test checks
# it), and the stream is prefix-free: each value starts with its tag and carries its own
# lengths and counts. Packed sequences: i64 / f64 / str variants of tuple, list, objects.
_TAG_TABLE = """
none N  true T  false F  ellipsis .  notimpl !  int i  bigint I  float f  complex c
str s  bytes b  bytearray B  memoryview m  tuple (  list [  objects o  backref ^
tuple_i64 \x81  tuple_f64 \x82  tuple_str \x83  list_i64 \x84  list_f64 \x85  list_str \x86
objects_i64 \x87  objects_f64 \x88  objects_str \x89
dict {  dict_d }  set <  set_d >  fset /  fset_d \\  odict O  ddict Y
fraction r  decimal q  uuid u  date d  datetime D  time t  timedelta v
tz_none 0  tz_fixed z  tz_zone Z  tz_other w  path p  enum e  range g  slice l  type y
module M  function @  method &  builtin %  partial P  descriptor $  funcwrap ~
ref R  hook H  dataclass K  subclass S  reduce X  global G  fields #
ndarray A  npscalar a  npsub j  masked k  ufunc U
pd_frame \x90  pd_series \x91  pd_index \x92  pd_range \x93  pd_multi \x94  pd_cat \x95
pd_values \x96  pd_scalar \x97  pd_missing \x98
"""
_tag_words = [w for w in _TAG_TABLE.replace("\n", " ").split(" ") if w]  # \x85 is whitespace
TAGS: dict[str, bytes] = {
    name: tag.encode("latin-1") for name, tag in zip(_tag_words[::2], _tag_words[1::2], strict=True)
}
_T = TAGS
_SEQ_TAGS = {
    kind: (_T[kind], _T[f"{kind}_i64"], _T[f"{kind}_f64"], _T[f"{kind}_str"])
    for kind in ("tuple", "list", "objects")
}

_pack_q = struct.Struct("<q").pack
_pack_Q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_pack_tq = struct.Struct("<cq").pack
_pack_tQ = struct.Struct("<cQ").pack
_pack_td = struct.Struct("<cd").pack
_pack_date = struct.Struct("<cHBB").pack
_pack_datetime = struct.Struct("<cHBBBBBIB").pack
_pack_time = struct.Struct("<cBBBIB").pack
_pack_timedelta = struct.Struct("<cqII").pack

_NAN = _pack_d(float("nan"))
_TRUE, _FALSE, _NONE = _T["true"], _T["false"], _T["none"]
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_SORTABLE = frozenset({str, int, bytes})
_BIG_ENDIAN = sys.byteorder == "big"
_NEWOBJ = copyreg.__newobj__  # type: ignore[attr-defined]


class _Unhashable(Exception):
    """Internal: ``obj`` cannot be hashed; ``path`` collects (kind, key) innermost first."""

    def __init__(self, obj: Any, cause: BaseException | None = None) -> None:
        super().__init__()
        self.obj = obj
        self.cause = cause
        self.path: list[tuple[str, Any]] = []


class _State:
    """Per-call encoder state: the pending buffer, the hasher (lazy), refs, open containers."""

    __slots__ = ("active", "buf", "hasher", "refs")

    def __init__(self, refs: list[Any] | None, header: bytes) -> None:
        self.buf = bytearray(header)
        self.hasher: Any = None
        self.refs = refs
        # id -> depth of every mutable container/object currently being encoded
        self.active: dict[int, int] = {}


Handler = Callable[[Any, _State], None]


def _flush(st: _State) -> Any:
    h = st.hasher
    if h is None:
        h = st.hasher = blake3()
    h.update(st.buf)
    st.buf.clear()
    return h


def _big_digest(data: Any, hexdigest: bool) -> Any:
    """Digest of a large buffer on every core (one core in a forked child, see _blake)."""
    h = new_hasher(_BIG)
    h.update(data)
    return h.hexdigest() if hexdigest else h.digest()


def _finish(st: _State) -> bytes:
    h = st.hasher
    if h is None:
        return blake3(st.buf).digest()
    h.update(st.buf)
    return h.digest()  # type: ignore[no-any-return]


def _feed_raw(st: _State, data: Any, n: int) -> None:
    """Write length ``n`` and the bytes of buffer ``data`` (or their digest when big)."""
    st.buf += _pack_Q(n)
    if n >= _BIG:
        st.buf += _big_digest(data, False)
    elif n >= _DIRECT:
        _flush(st).update(data)
    elif n:
        st.buf += data


def _enc(obj: Any, st: _State) -> None:
    f = _DISPATCH.get(type(obj))
    if f is None:
        f = _resolve(type(obj))
    f(obj, st)


def _enc_at(obj: Any, st: _State, kind: str, key: Any) -> None:
    """Encode a part of a value, naming where it sits if it cannot be hashed."""
    try:
        _enc(obj, st)
    except _Unhashable as e:
        e.path.append((kind, key))
        raise e from None


def _enc_state(obj: Any, st: _State) -> None:
    """Encode an object's state (``__dict__`` or ``(dict, slots)``), errors as ``.attr``."""
    try:
        _enc(obj, st)
    except _Unhashable as e:
        p = e.path
        if p and p[-1][0] == "key" and isinstance(p[-1][1], str):
            p[-1] = ("attr", p[-1][1])
        elif len(p) >= 2 and p[-1][0] == "item" and p[-2][0] == "key":
            p.pop()  # (None, {slot: value}) from object.__getstate__
            p[-1] = ("attr", p[-1][1])
        else:
            p.append(("attr", "__getstate__()"))
        raise e from None


def _tracked(fn: Handler) -> Handler:
    """Guard a mutable container/object encoder: meeting it again inside itself writes a
    back-reference (distance up the stack of open containers) instead of recursing."""

    def tracked(obj: Any, st: _State) -> None:
        active = st.active
        i = id(obj)
        depth = active.get(i)
        if depth is not None:
            st.buf += _pack_tQ(_T["backref"], len(active) - depth)
            return
        active[i] = len(active)
        fn(obj, st)
        del active[i]

    tracked.__name__ = fn.__name__
    return tracked


def _sub_digest(st: _State, *objs: Any) -> bytes:
    """Digest of the encoding of ``objs`` on their own (for order-insensitive containers)."""
    saved_buf, saved_hasher = st.buf, st.hasher
    st.buf, st.hasher = bytearray(), None
    for o in objs:
        _enc(o, st)
    d = _finish(st)
    st.buf, st.hasher = saved_buf, saved_hasher
    return d


# --- scalars ---------------------------------------------------------------------------


def _enc_none(obj: Any, st: _State) -> None:
    st.buf += _NONE


def _enc_bool(obj: Any, st: _State) -> None:
    st.buf += _TRUE if obj else _FALSE


def _enc_int(obj: int, st: _State) -> None:
    if _I64_MIN <= obj <= _I64_MAX:
        st.buf += _pack_tq(b"i", obj)
    else:
        n = (obj.bit_length() + 8) // 8  # room for the sign bit
        st.buf += _pack_tQ(b"I", n)
        st.buf += int.to_bytes(obj, n, "little", signed=True)


def _enc_float(obj: float, st: _State) -> None:
    st.buf += _pack_td(b"f", obj) if obj == obj else b"f" + _NAN


def _enc_complex(obj: complex, st: _State) -> None:
    re, im = obj.real, obj.imag
    st.buf += b"c"
    st.buf += _pack_d(re) if re == re else _NAN
    st.buf += _pack_d(im) if im == im else _NAN


def _enc_str(obj: str, st: _State) -> None:
    b = str.encode(obj, "utf-8", "surrogatepass")
    n = len(b)
    if n < _DIRECT:
        st.buf += _pack_tQ(b"s", n)
        st.buf += b
    else:
        st.buf += b"s"
        _feed_raw(st, b, n)


def _enc_bytes(obj: bytes, st: _State) -> None:
    n = len(obj)
    if n < _DIRECT:
        st.buf += _pack_tQ(b"b", n)
        st.buf += obj
    else:
        st.buf += b"b"
        _feed_raw(st, obj, n)


def _enc_bytearray(obj: bytearray, st: _State) -> None:
    st.buf += _T["bytearray"]
    _feed_raw(st, obj, len(obj))


def _enc_memoryview(obj: memoryview, st: _State) -> None:
    st.buf += _T["memoryview"]
    _enc_str(obj.format, st)
    _enc_tuple(obj.shape or (), st)
    mv = memoryview(obj if obj.c_contiguous else obj.tobytes()).cast("B")
    _feed_raw(st, mv, mv.nbytes)


def _enc_fraction(obj: fractions.Fraction, st: _State) -> None:
    st.buf += _T["fraction"]
    _enc_int(obj.numerator, st)
    _enc_int(obj.denominator, st)


def _enc_decimal(obj: decimal.Decimal, st: _State) -> None:
    # as_tuple keeps the exponent, so Decimal("1.0") and Decimal("1.00") differ
    t = obj.as_tuple()
    st.buf += _T["decimal"]
    _enc_tuple((t.sign, t.digits, t.exponent), st)


def _enc_uuid(obj: uuid.UUID, st: _State) -> None:
    st.buf += _T["uuid"] + obj.bytes


def _enc_tz(tz: Any, dt: Any, st: _State) -> None:
    if tz is None:
        st.buf += _T["tz_none"]
    elif type(tz) is _dt.timezone:
        st.buf += _T["tz_fixed"]
        _enc_timedelta(tz.utcoffset(None), st)
        _enc_str(tz.tzname(None), st)
    elif type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        st.buf += _T["tz_zone"]
        _enc_str(tz.key, st)
    else:  # pytz, dateutil, ...: what the zone says about this very datetime
        st.buf += _T["tz_other"]
        _enc_type(type(tz), st)
        for part in (tz.utcoffset(dt), tz.dst(dt), tz.tzname(dt)):
            _enc(part, st)


def _enc_date(obj: _dt.date, st: _State) -> None:
    st.buf += _pack_date(b"d", obj.year, obj.month, obj.day)


def _enc_datetime(obj: _dt.datetime, st: _State) -> None:
    st.buf += _pack_datetime(
        b"D", obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second,
        obj.microsecond, obj.fold,
    )  # fmt: skip
    _enc_tz(obj.tzinfo, obj, st)


def _enc_time(obj: _dt.time, st: _State) -> None:
    st.buf += _pack_time(b"t", obj.hour, obj.minute, obj.second, obj.microsecond, obj.fold)
    _enc_tz(obj.tzinfo, None, st)


def _enc_timedelta(obj: Any, st: _State) -> None:
    st.buf += _pack_timedelta(b"v", obj.days, obj.seconds, obj.microseconds)


def _enc_path(obj: pathlib.PurePath, st: _State) -> None:
    st.buf += _T["path"]
    _enc_type(type(obj), st)
    _enc_str(str(obj), st)


def _enc_range(obj: range, st: _State) -> None:
    st.buf += _T["range"]
    for part in (obj.start, obj.stop, obj.step):
        _enc_int(part, st)


def _enc_slice(obj: slice, st: _State) -> None:
    st.buf += _T["slice"]
    for part in (obj.start, obj.stop, obj.step):
        _enc(part, st)


_TYPE_TAGS: dict[type, bytes] = {}


def _type_tag(tp: type) -> bytes:
    t = _TYPE_TAGS.get(tp)
    if t is None:
        name = f"{getattr(tp, '__module__', None) or ''}.{getattr(tp, '__qualname__', tp.__name__)}"
        b = name.encode("utf-8", "surrogatepass")
        t = _TYPE_TAGS[tp] = _pack_tQ(b"y", len(b)) + b
    return t


def _enc_type(obj: type, st: _State) -> None:
    st.buf += _type_tag(obj)


def _enc_module(obj: types.ModuleType, st: _State) -> None:
    # by name, like classes: a module argument selects an implementation (np vs cupy)
    st.buf += _T["module"]
    _enc_str(obj.__name__, st)


def _const(tag: bytes) -> Handler:
    def _enc_const(obj: Any, st: _State) -> None:
        st.buf += tag

    return _enc_const


# --- containers ------------------------------------------------------------------------


def _index_of(seq: Any, item: Any) -> int:
    return next((j for j, x in enumerate(seq) if x is item), -1)


def _enc_items(seq: Any, st: _State) -> None:
    item = None
    try:
        for item in seq:
            f = _DISPATCH.get(type(item))
            if f is None:
                f = _resolve(type(item))
            f(item, st)
    except _Unhashable as e:
        # the index is only needed for the message: find it by identity, off the fast path
        e.path.append(("item", _index_of(seq, item)))
        raise e from None


def _enc_packed(seq: Any, st: _State, tags: tuple[bytes, ...]) -> bool:
    """Pack a long sequence of only ints (int64), floats or strs in one go; False if not.

    Which encoding a sequence gets depends only on its value, so packing stays canonical.
    """
    kinds = set(map(type, seq))
    if len(kinds) != 1:
        return False
    kind = kinds.pop()
    if kind is str:
        # the code-point length of each string, then all of them joined: splittable, so
        # injective, and two C calls instead of one Python call per string
        lengths = array("Q", map(len, seq))
        data: Any = "".join(seq).encode("utf-8", "surrogatepass")
        st.buf += tags[3] + _pack_Q(len(lengths))
        if _BIG_ENDIAN:
            lengths.byteswap()
        _feed_raw(st, memoryview(lengths).cast("B"), 8 * len(lengths))
        _feed_raw(st, data, len(data))
        return True
    if kind is int:
        try:
            data, tag = array("q", seq), tags[1]
        except OverflowError:
            return False
    elif kind is float:
        # a NaN (or inf - inf) makes the sum NaN: go element-wise so NaNs are canonical
        s = sum(seq)
        if s != s:
            return False
        data, tag = array("d", seq), tags[2]
    else:
        return False
    if _BIG_ENDIAN:
        data.byteswap()
    st.buf += tag + _pack_Q(len(data))
    _feed_raw(st, memoryview(data).cast("B"), 8 * len(data))
    return True


def _enc_seq(seq: Any, st: _State, tags: tuple[bytes, ...]) -> None:
    n = len(seq)
    if n >= _PACK_MIN and _enc_packed(seq, st, tags):
        return
    st.buf += _pack_tQ(tags[0], n)
    _enc_items(seq, st)


def _enc_tuple(obj: tuple[Any, ...], st: _State) -> None:
    _enc_seq(obj, st, _SEQ_TAGS["tuple"])


@_tracked
def _enc_list(obj: list[Any], st: _State) -> None:
    _enc_seq(obj, st, _SEQ_TAGS["list"])


def _enc_mapping(obj: Any, st: _State, tag: bytes, tag_d: bytes) -> None:
    n = len(obj)
    kinds = set(map(type, obj))
    if n == 0 or (len(kinds) == 1 and next(iter(kinds)) in _SORTABLE):
        # keys of one sortable type: sort them (unique, so values are never compared)
        st.buf += _pack_tQ(tag, n)
        for k, v in sorted(dict.items(obj)):
            _enc(k, st)
            _enc_at(v, st, "key", k)
        return
    digests: list[bytes] = []
    for k, v in dict.items(obj):
        try:
            digests.append(_sub_digest(st, k, v))
        except _Unhashable as e:
            e.path.append(("key", k))
            raise e from None
    digests.sort()
    st.buf += _pack_tQ(tag_d, n)
    st.buf += b"".join(digests)


@_tracked
def _enc_dict(obj: dict[Any, Any], st: _State) -> None:
    _enc_mapping(obj, st, b"{", b"}")


def _enc_set_like(obj: Any, st: _State, tag: bytes, tag_d: bytes) -> None:
    n = len(obj)
    kinds = set(map(type, obj))
    if n == 0 or (len(kinds) == 1 and next(iter(kinds)) in _SORTABLE):
        st.buf += _pack_tQ(tag, n)
        for item in sorted(obj):
            _enc(item, st)
        return
    digests: list[bytes] = []
    for item in obj:
        try:
            digests.append(_sub_digest(st, item))
        except _Unhashable as e:
            e.path.append(("member", None))
            raise e from None
    digests.sort()
    st.buf += _pack_tQ(tag_d, n)
    st.buf += b"".join(digests)


@_tracked
def _enc_set(obj: set[Any], st: _State) -> None:
    _enc_set_like(obj, st, b"<", b">")


def _enc_frozenset(obj: frozenset[Any], st: _State) -> None:
    _enc_set_like(obj, st, b"/", b"\\")


@_tracked
def _enc_odict(obj: collections.OrderedDict[Any, Any], st: _State) -> None:
    # order is part of an OrderedDict's equality
    st.buf += _T["odict"] + _type_tag(type(obj)) + _pack_Q(len(obj))
    for k, v in obj.items():
        _enc(k, st)
        _enc_at(v, st, "key", k)
    _enc_state(getattr(obj, "__dict__", None) or None, st)


def _enc_ddict(obj: collections.defaultdict[Any, Any], st: _State) -> None:
    st.buf += _T["ddict"] + _type_tag(type(obj))
    _enc_at(obj.default_factory, st, "attr", "default_factory")
    _enc_dict(obj, st)
    _enc_state(getattr(obj, "__dict__", None) or None, st)


# --- cashet, functions, hooks ----------------------------------------------------------


def _enc_ref(obj: Any, st: _State) -> None:
    # the blob hash *is* the content: never load the value
    st.buf += _T["ref"]
    _enc_str(obj.hash, st)
    if st.refs is not None:
        st.refs.append(obj)


_function_identity: Callable[[Any], Any] | None = None


def _fid(func: Any) -> bytes:
    """The 32-byte function identity digest (``_fnhash`` imports us: bind it lazily)."""
    global _function_identity
    if _function_identity is None:
        from cashet.hashing.functions import function_identity

        _function_identity = function_identity
    return bytes.fromhex(_function_identity(func).hash)


def _enc_function(obj: Any, st: _State) -> None:
    st.buf += _T["function"] + _fid(obj)


def _enc_method(obj: types.MethodType, st: _State) -> None:
    st.buf += _T["method"] + _fid(obj.__func__)
    _enc_at(obj.__self__, st, "attr", "__self__")  # a method whose instance changed misses


def _qualname_of(obj: Any) -> str:
    mod = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{mod}.{name or type(obj).__qualname__}"


def _enc_builtin(obj: Any, st: _State) -> None:
    st.buf += _T["builtin"]
    owner = getattr(obj, "__self__", None)
    if owner is None or isinstance(owner, types.ModuleType):
        _enc_str(_qualname_of(obj), st)
        st.buf += _NONE
    else:  # a bound builtin method, e.g. ``d.get``: its instance is part of it
        _enc_str(f"{type(owner).__module__}.{obj.__qualname__}", st)
        _enc_at(owner, st, "attr", "__self__")


def _enc_descriptor(obj: Any, st: _State) -> None:
    st.buf += _T["descriptor"] + _type_tag(type(obj))
    _enc(getattr(obj, "__objclass__", None), st)
    _enc_str(getattr(obj, "__name__", ""), st)
    if isinstance(obj, types.MethodWrapperType):
        _enc_at(obj.__self__, st, "attr", "__self__")


def _enc_funcwrap(obj: Any, st: _State) -> None:
    st.buf += _T["funcwrap"] + _type_tag(type(obj))
    _enc(obj.__func__, st)


@_tracked
def _enc_partial(obj: functools.partial[Any], st: _State) -> None:
    st.buf += _T["partial"] + _type_tag(type(obj))
    _enc_at(obj.func, st, "attr", "func")
    _enc_at(obj.args, st, "attr", "args")
    _enc_at(obj.keywords, st, "attr", "keywords")
    _enc_state(getattr(obj, "__dict__", None) or None, st)


@_tracked
def _enc_hook(obj: Any, st: _State) -> None:
    st.buf += _T["hook"] + _type_tag(type(obj))
    _enc_at(obj.__cashet_hash__(), st, "attr", "__cashet_hash__()")


def _enc_enum(obj: enum.Enum, st: _State) -> None:
    st.buf += _T["enum"] + _type_tag(type(obj))
    _enc(obj._value_, st)


def _make_reduce(reducer: Callable[[Any], Any] | None) -> Handler:
    """Generic objects, as pickle sees them (``__reduce_ex__``) but hashed structurally:
    a C object with hidden state (lock, file, socket, generator) refuses, as for pickle."""

    @_tracked
    def _enc_reduce(obj: Any, st: _State) -> None:
        try:
            rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(4)
        except Exception as exc:
            raise _Unhashable(obj, exc) from None
        tp = type(obj)
        st.buf += _T["reduce"] + _type_tag(tp)
        if isinstance(rv, str):  # a global singleton, named relative to its module
            st.buf += _T["global"]
            _enc_str(rv, st)
            return
        if not isinstance(rv, tuple) or len(rv) < 2:
            raise _Unhashable(obj)
        func, args = rv[0], rv[1]
        state, listitems, dictitems = (*rv[2:], None, None, None)[:3]
        if func is _NEWOBJ and args and args[0] is tp:
            st.buf += _NONE  # the plain-object case: class + state
            args = args[1:]
        else:
            _enc_str(_qualname_of(func), st)
        _enc_at(args, st, "attr", "__reduce__()")
        _enc_state(state, st)
        _enc_at(None if listitems is None else list(listitems), st, "attr", "__reduce__()")
        _enc_at(None if dictitems is None else list(dictitems), st, "attr", "__reduce__()")

    return _enc_reduce


def _make_dataclass(tp: type) -> Handler:
    names = tuple(f.name for f in dataclasses.fields(tp))
    tag = _T["dataclass"] + _type_tag(tp) + _pack_Q(len(names))

    @_tracked
    def _enc_dataclass(obj: Any, st: _State) -> None:
        st.buf += tag
        for name in names:
            _enc_str(name, st)
            _enc_at(getattr(obj, name), st, "attr", name)

    return _enc_dataclass


def _make_subclass(tp: type, base: Handler) -> Handler:
    """A subclass of a builtin (namedtuple, Counter, ...): class + content + ``__dict__``."""
    tag = _T["subclass"] + _type_tag(tp)

    def _enc_subclass(obj: Any, st: _State) -> None:
        st.buf += tag
        base(obj, st)  # tracks the container itself when it is mutable
        _enc_state(getattr(obj, "__dict__", None) or None, st)

    return _enc_subclass


# --- NumPy -----------------------------------------------------------------------------


def _enc_ndarray(a: Any, st: _State) -> None:
    np = sys.modules["numpy"]
    if type(a) is not np.ndarray:
        a = a.view(np.ndarray)
    dt = a.dtype
    st.buf += b"A" + _pack_Q(a.ndim)
    for d in a.shape:
        st.buf += _pack_q(d)
    names = dt.names
    if names is not None:
        # field by field: padding bytes between fields are not data
        st.buf += _T["fields"] + _pack_Q(len(names))
        for name in names:
            _enc_str(name, st)
            try:
                _enc_ndarray(a[name], st)
            except _Unhashable as e:
                e.path.append(("key", name))
                raise
        return
    _enc_str(dt.str, st)
    if dt.hasobject or dt.kind not in "biufcmMSUV":
        # objects / variable-width strings: element by element (the buffer holds pointers)
        _enc_objects(a, st)
        return
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    n = a.nbytes
    _feed_raw(st, memoryview(a.reshape(-1).view(np.uint8)) if n else b"", n)


@_tracked  # on the array itself: an object array may contain itself
def _enc_objects(a: Any, st: _State) -> None:
    items = list(a.ravel()) if a.dtype.kind == "O" else a.ravel().tolist()
    _enc_seq(items, st, _SEQ_TAGS["objects"])


def _enc_npscalar(obj: Any, st: _State) -> None:
    st.buf += _T["npscalar"]
    _enc_ndarray(sys.modules["numpy"].asarray(obj), st)


def _enc_masked(obj: Any, st: _State) -> None:
    ma = sys.modules["numpy"].ma
    st.buf += _T["masked"]
    _enc_ndarray(ma.getdata(obj), st)
    _enc_ndarray(ma.getmaskarray(obj), st)
    _enc(obj.fill_value, st)


def _enc_npsub(obj: Any, st: _State) -> None:
    st.buf += _T["npsub"] + _type_tag(type(obj))
    _enc_ndarray(obj, st)
    _enc_state(getattr(obj, "__dict__", None) or None, st)


def _enc_ufunc(obj: Any, st: _State) -> None:
    st.buf += _T["ufunc"]
    _enc_str(_qualname_of(obj), st)


def _numpy_handler(tp: type) -> Handler | None:
    np = sys.modules.get("numpy")
    if np is None:
        return None
    if issubclass(tp, np.ndarray):
        if tp is np.ndarray or issubclass(tp, np.memmap):
            return _enc_ndarray
        ma = sys.modules.get("numpy.ma")
        return _enc_masked if ma is not None and issubclass(tp, ma.MaskedArray) else _enc_npsub
    if issubclass(tp, np.generic):
        return _enc_npscalar
    return _enc_ufunc if issubclass(tp, np.ufunc) else None


# --- pandas ----------------------------------------------------------------------------


def _enc_pd_values(arr: Any, st: _State) -> None:
    """The values of a column/index: numpy buffers where possible, else element-wise."""
    np = sys.modules["numpy"]
    pd = sys.modules["pandas"]
    dtype = arr.dtype
    st.buf += _T["pd_values"]
    _enc_str(str(dtype), st)
    if isinstance(arr, (np.ndarray, pd.arrays.NumpyExtensionArray)) or isinstance(dtype, np.dtype):
        _enc_ndarray(np.asarray(arr), st)  # no copy for numpy-backed values
    elif isinstance(dtype, pd.CategoricalDtype):
        _enc_ndarray(np.asarray(arr.codes), st)
        _enc_pd_index(dtype.categories, st)
        _enc_bool(dtype.ordered, st)
    elif isinstance(dtype, (pd.DatetimeTZDtype, pd.PeriodDtype)):
        _enc_ndarray(np.asarray(arr.asi8), st)
    elif hasattr(arr, "_mask") and hasattr(arr, "_data"):
        # nullable Int64/boolean/Float64: values under the mask are garbage, zero them
        mask, data = np.asarray(arr._mask), np.asarray(arr._data)
        if mask.any():
            data = data.copy()
            data[mask] = 0
        _enc_ndarray(mask, st)
        _enc_ndarray(data, st)
    else:  # strings, arrow, intervals, sparse...: exact, element by element
        _enc_ndarray(arr.to_numpy(dtype=object), st)


def _enc_pd_index(idx: Any, st: _State) -> None:
    pd = sys.modules["pandas"]
    if isinstance(idx, pd.RangeIndex):
        st.buf += _T["pd_range"]
        _enc(idx.name, st)
        _enc_range(range(idx.start, idx.stop, idx.step), st)
    elif isinstance(idx, pd.MultiIndex):
        st.buf += _T["pd_multi"]
        _enc_tuple(tuple(idx.names), st)
        st.buf += _pack_Q(idx.nlevels)
        for level in range(idx.nlevels):
            _enc_pd_values(idx.get_level_values(level).array, st)
    else:
        st.buf += _T["pd_index"] + _type_tag(type(idx))
        _enc(idx.name, st)
        _enc_pd_values(idx.array, st)


def _enc_pd_series(s: Any, st: _State) -> None:
    st.buf += _T["pd_series"]
    _enc(s.name, st)
    _enc_pd_index(s.index, st)
    _enc_pd_values(s.array, st)


def _enc_pd_frame(df: Any, st: _State) -> None:
    st.buf += _T["pd_frame"]
    _enc_pd_index(df.columns, st)
    _enc_pd_index(df.index, st)
    st.buf += _pack_Q(df.shape[1])
    for pos, (_, col) in enumerate(df.items()):
        try:
            _enc_pd_values(col.array, st)
        except _Unhashable as e:
            e.path.append(("column", pos))
            raise


def _enc_pd_cat(obj: Any, st: _State) -> None:
    st.buf += _T["pd_cat"]
    _enc_pd_values(obj, st)


def _pd_scalar(kind: str, parts: Callable[[Any], tuple[Any, ...]]) -> Handler:
    def _enc_pd_scalar(obj: Any, st: _State) -> None:
        st.buf += _T["pd_scalar"]
        _enc_str(kind, st)
        for p in parts(obj):
            _enc(p, st)
        if kind == "Timestamp":
            _enc_tz(obj.tzinfo, obj, st)

    return _enc_pd_scalar


def _pandas_handler(tp: type) -> Handler | None:
    pd = sys.modules.get("pandas")
    if pd is None or not (tp.__module__ or "").startswith("pandas"):
        return None
    for cls, handler in (
        (pd.DataFrame, _enc_pd_frame),
        (pd.Series, _enc_pd_series),
        (pd.Index, _enc_pd_index),
        (pd.Categorical, _enc_pd_cat),
        (pd.api.extensions.ExtensionArray, _enc_pd_values),
    ):
        if issubclass(tp, cls):
            return handler
    if tp is type(pd.NaT) or tp is type(pd.NA):
        return _const(_T["pd_missing"] + (b"T" if tp is type(pd.NaT) else b"A"))
    if issubclass(tp, pd.Timestamp):  # asm8: numpy datetime64 with its unit
        return _pd_scalar("Timestamp", lambda x: (x.asm8,))
    if issubclass(tp, pd.Timedelta):
        return _pd_scalar("Timedelta", lambda x: (x.asm8,))
    if issubclass(tp, pd.Period):
        return _pd_scalar("Period", lambda x: (x.freqstr, x.ordinal))
    if issubclass(tp, pd.Interval):
        return _pd_scalar("Interval", lambda x: (x.left, x.right, x.closed))
    return None


# --- dispatch --------------------------------------------------------------------------

_DISPATCH: dict[type, Handler] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    complex: _enc_complex,
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytearray,
    memoryview: _enc_memoryview,
    tuple: _enc_tuple,
    list: _enc_list,
    dict: _enc_dict,
    set: _enc_set,
    frozenset: _enc_frozenset,
    type(...): _const(_T["ellipsis"]),
    type(NotImplemented): _const(_T["notimpl"]),
    fractions.Fraction: _enc_fraction,
    decimal.Decimal: _enc_decimal,
    uuid.UUID: _enc_uuid,
    _dt.date: _enc_date,
    _dt.datetime: _enc_datetime,
    _dt.time: _enc_time,
    _dt.timedelta: _enc_timedelta,
    pathlib.PurePosixPath: _enc_path,
    pathlib.PureWindowsPath: _enc_path,
    pathlib.PosixPath: _enc_path,
    pathlib.WindowsPath: _enc_path,
    range: _enc_range,
    slice: _enc_slice,
    type: _enc_type,
    types.ModuleType: _enc_module,
    types.FunctionType: _enc_function,
    types.MethodType: _enc_method,
    types.BuiltinFunctionType: _enc_builtin,
    functools.partial: _enc_partial,
    ResultRef: _enc_ref,
    AsyncResultRef: _enc_ref,
}
_BASE_DISPATCH = dict(_DISPATCH)

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
    (enum.Enum, _enc_enum),
    (types.MethodType, _enc_method),
    (types.BuiltinFunctionType, _enc_builtin),
    (functools.partial, _enc_partial),
    (_DESCRIPTORS, _enc_descriptor),
    ((staticmethod, classmethod), _enc_funcwrap),
    (types.ModuleType, _enc_module),
    (pathlib.PurePath, _enc_path),
    (collections.OrderedDict, _enc_odict),
    (collections.defaultdict, _enc_ddict),
)


def _handler_for(tp: type) -> Handler:
    if callable(getattr(tp, "__cashet_hash__", None)):
        return _enc_hook
    if issubclass(tp, type):
        return _enc_type
    if issubclass(tp, (ResultRef, AsyncResultRef)):
        return _enc_ref
    h = _numpy_handler(tp) or _pandas_handler(tp)
    if h is not None:
        return h
    for base, handler in _BY_BASE:
        if issubclass(tp, base):
            return handler
    for builtin in _BUILTIN_BASES:
        if issubclass(tp, builtin):
            return _make_subclass(tp, _BASE_DISPATCH[builtin])
    if dataclasses.is_dataclass(tp):
        return _make_dataclass(tp)
    return _make_reduce(copyreg.dispatch_table.get(tp))


def _resolve(tp: type) -> Handler:
    h = _handler_for(tp)
    if len(_DISPATCH) > 20_000:  # notebooks redefine classes: keep the table bounded
        _DISPATCH.clear()
        _DISPATCH.update(_BASE_DISPATCH)
    _DISPATCH[tp] = h
    return h


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


def _type_error(what: str, root: str, e: _Unhashable) -> TypeError:
    tp = type(e.obj)
    tname = tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    msg = (
        f"{what} ({_render_path(root, e.path)}) of type {tname} cannot be hashed; "
        "give it a __cashet_hash__ method or pass a hashable value"
    )
    return TypeError(msg if e.cause is None else f"{msg} ({e.cause})")


# --- public ----------------------------------------------------------------------------


def hash_args(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], refs: list[Any] | None = None
) -> str:
    """Return the BLAKE3 hex digest of a call's arguments.

    Args:
        args: the positional arguments.
        kwargs: the keyword arguments (order-insensitive).
        refs: when given, every ``ResultRef``/``AsyncResultRef`` met anywhere in the
            arguments (also nested in containers) is appended to it.

    Returns:
        64 lowercase hex characters.

    Raises:
        TypeError: an argument (or something inside it) cannot be hashed exactly; the
            message names its position or keyword path and its type.
    """
    st = _State(refs, _ARGS_HEADER)
    st.buf += _pack_tQ(b"(", len(args))
    a = None
    try:
        for a in args:
            f = _DISPATCH.get(type(a))
            if f is None:
                f = _resolve(type(a))
            f(a, st)
    except _Unhashable as e:
        i = _index_of(args, a)
        raise _type_error(f"argument {i}", f"args[{i}]", e) from e.cause
    st.buf += _pack_tQ(b"{", len(kwargs))
    if kwargs:
        for k in sorted(kwargs):
            _enc_str(k, st)
            v = kwargs[k]
            try:
                f = _DISPATCH.get(type(v))
                if f is None:
                    f = _resolve(type(v))
                f(v, st)
            except _Unhashable as e:
                raise _type_error(f"argument {k!r}", f"kwargs[{k!r}]", e) from e.cause
    h = st.hasher
    if h is None:
        return blake3(st.buf).hexdigest()
    h.update(st.buf)
    return h.hexdigest()  # type: ignore[no-any-return]


def hash_value(obj: Any) -> str:
    """Return the BLAKE3 hex digest of one value, with the argument encoding.

    Raises:
        TypeError: ``obj`` (or something inside it) cannot be hashed exactly.
    """
    st = _State(None, _VALUE_HEADER)
    try:
        _enc(obj, st)
    except _Unhashable as e:
        raise _type_error("value", "value", e) from e.cause
    return _finish(st).hex()


def hash_bytes(data: bytes | memoryview) -> str:
    """Return the plain BLAKE3 hex digest of ``data`` (multithreaded from 8 MiB)."""
    if len(data) >= _BIG:
        return str(_big_digest(data, True))
    return blake3(data).hexdigest()
