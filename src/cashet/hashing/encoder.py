"""The canonical value stream: tags, per-call encoder state and type dispatch.

Every value is written as a self-delimiting, type-tagged byte stream into a ``bytearray``
that is flushed into a :class:`blake3.blake3` hasher; nothing goes through ``repr()`` or
pickle. This module is the bottom of the encoder: it knows the tags, the byte layout
primitives and how to find the handler of a type, but no handler itself. The handlers live
one module per family of values (``scalars``, ``containers``, ``objects``, ``arrays``) and
``values`` puts them together in :data:`DISPATCH` with :func:`install`.

Why a table filled from above instead of imports from here: containers and objects recurse
into :func:`encode`, and :func:`encode` needs every handler, so a direct import would be a
cycle. Imports go one way (``encoder`` <- ``containers`` <- ``scalars`` <- ``objects``,
``arrays`` <- ``values``) and the run-time recursion goes through the table.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from blake3 import blake3

from cashet.hashing._blake import new_hasher
from cashet.hashing.kept import KeptDigests, kept_get, kept_put

__all__ = [
    "BIG",
    "DIRECT",
    "DISPATCH",
    "NAN",
    "NONE",
    "TAGS",
    "Handler",
    "Stream",
    "Unhashable",
    "big_digest",
    "const",
    "encode",
    "encode_at",
    "encode_state",
    "feed_raw",
    "finish",
    "flush",
    "index_of",
    "install",
    "pack_Q",
    "pack_d",
    "pack_q",
    "pack_tQ",
    "pack_td",
    "pack_tq",
    "qualname_of",
    "resolve",
    "sub_digest",
    "tracked",
    "type_tag",
]

#: Data at least this long is hashed separately (multithreaded) and stands in as a digest.
BIG = 8 << 20
#: Data at least this long is fed to the hasher directly instead of copied into the buffer.
DIRECT = 64 << 10

# One byte per kind of value (name, byte as latin-1). Every tag is distinct (a test checks
# it), and the stream is prefix-free: each value starts with its tag and carries its own
# lengths and counts. Packed sequences: i64 / f64 / str variants of tuple, list, objects.
# pd_strs and pd_strs_na are retired (an older string-column layout): never reuse them.
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
ndarray A  npscalar a  npsub j  masked k  ufunc U  class_code C  layout L
pd_frame \x90  pd_series \x91  pd_index \x92  pd_range \x93  pd_multi \x94  pd_cat \x95
pd_values \x96  pd_scalar \x97  pd_missing \x98  pd_strs \x99  pd_strs_na \x9a
pd_text \x9b  pd_sink \x9c
"""
_tag_words = [w for w in _TAG_TABLE.replace("\n", " ").split(" ") if w]  # \x85 is whitespace
TAGS: dict[str, bytes] = {
    name: tag.encode("latin-1") for name, tag in zip(_tag_words[::2], _tag_words[1::2], strict=True)
}

pack_q = struct.Struct("<q").pack
pack_Q = struct.Struct("<Q").pack
pack_d = struct.Struct("<d").pack
pack_tq = struct.Struct("<cq").pack
pack_tQ = struct.Struct("<cQ").pack
pack_td = struct.Struct("<cd").pack

NAN = pack_d(float("nan"))
NONE = TAGS["none"]


class Unhashable(Exception):
    """Internal: ``obj`` cannot be hashed; ``path`` collects (kind, key) innermost first."""

    def __init__(self, obj: Any, cause: BaseException | None = None) -> None:
        super().__init__()
        self.obj = obj
        self.cause = cause
        self.path: list[tuple[str, Any]] = []


class Stream:
    """Per-call encoder state: the pending buffer, the hasher (lazy), refs, open containers."""

    __slots__ = ("active", "buf", "hasher", "kept", "refs", "reuse")

    def __init__(
        self,
        refs: list[Any] | None,
        header: bytes,
        kept: KeptDigests | None = None,
        reuse: bool = False,
    ) -> None:
        self.buf = bytearray(header)
        self.hasher: Any = None
        self.refs = refs
        #: the call's big digests (see ``kept``): written while its key is hashed, read
        #: (``reuse``) while its manifest is made
        self.kept = kept
        self.reuse = reuse
        # id -> depth of every mutable container/object currently being encoded
        self.active: dict[int, int] = {}


#: Writes one value of its type to the stream: ``handler(obj, st)``; raises ``Unhashable``.
#: The ``enc_*`` functions of the handler modules all have this shape.
Handler = Callable[[Any, Stream], None]


def flush(st: Stream) -> Any:
    """Move the pending buffer into the hasher (created on first use) and return it."""
    h = st.hasher
    if h is None:
        h = st.hasher = blake3()
    h.update(st.buf)
    st.buf.clear()
    return h


def big_digest(data: Any, hexdigest: bool) -> Any:
    """Digest of a large buffer on every core (one core in a forked child, see _blake)."""
    h = new_hasher(BIG)
    h.update(data)
    return h.hexdigest() if hexdigest else h.digest()


def finish(st: Stream) -> bytes:
    """Return the 32-byte digest of everything written to ``st``."""
    h = st.hasher
    if h is None:
        return blake3(st.buf).digest()
    h.update(st.buf)
    return h.digest()  # type: ignore[no-any-return]


def feed_raw(st: Stream, data: Any, n: int, owner: Any = None) -> None:
    """Write length ``n`` and the bytes of buffer ``data`` (or their digest when big: kept
    for, or taken from, the call's manifest by ``owner``, the value ``data`` is of)."""
    st.buf += pack_Q(n)
    if n >= BIG:
        kept = st.kept
        digest = None
        if kept is not None and owner is not None and st.reuse:
            digest = kept_get(kept, "big", owner)
        if digest is None:
            digest = big_digest(data, False)
            if kept is not None and owner is not None and not st.reuse:
                kept_put(kept, "big", owner, digest)
        st.buf += digest
    elif n >= DIRECT:
        flush(st).update(data)
    elif n:
        st.buf += data


def encode(obj: Any, st: Stream) -> None:
    """Write ``obj`` to ``st`` with the handler registered for its exact type."""
    f = DISPATCH.get(type(obj))
    if f is None:
        f = resolve(type(obj))
    f(obj, st)


def encode_at(obj: Any, st: Stream, kind: str, key: Any) -> None:
    """Encode a part of a value, naming where it sits if it cannot be hashed."""
    try:
        encode(obj, st)
    except Unhashable as e:
        e.path.append((kind, key))
        raise e from None


def encode_state(obj: Any, st: Stream) -> None:
    """Encode an object's state (``__dict__`` or ``(dict, slots)``), errors as ``.attr``."""
    try:
        encode(obj, st)
    except Unhashable as e:
        p = e.path
        if p and p[-1][0] == "key" and isinstance(p[-1][1], str):
            p[-1] = ("attr", p[-1][1])
        elif len(p) >= 2 and p[-1][0] == "item" and p[-2][0] == "key":
            p.pop()  # (None, {slot: value}) from object.__getstate__
            p[-1] = ("attr", p[-1][1])
        else:
            p.append(("attr", "__getstate__()"))
        raise e from None


def tracked(fn: Handler) -> Handler:
    """Guard a mutable container/object encoder: meeting it again inside itself writes a
    back-reference (distance up the stack of open containers) instead of recursing."""

    def guarded(obj: Any, st: Stream) -> None:
        active = st.active
        i = id(obj)
        depth = active.get(i)
        if depth is not None:
            st.buf += pack_tQ(TAGS["backref"], len(active) - depth)
            return
        active[i] = len(active)
        fn(obj, st)
        del active[i]

    guarded.__name__ = fn.__name__
    return guarded


def sub_digest(st: Stream, *objs: Any) -> bytes:
    """Digest of the encoding of ``objs`` on their own (for order-insensitive containers)."""
    saved_buf, saved_hasher = st.buf, st.hasher
    st.buf, st.hasher = bytearray(), None
    for o in objs:
        encode(o, st)
    d = finish(st)
    st.buf, st.hasher = saved_buf, saved_hasher
    return d


_TYPE_TAGS: dict[type, bytes] = {}


def type_tag(tp: type) -> bytes:
    """Return the encoding of a class: its ``module.qualname`` (cached per class)."""
    t = _TYPE_TAGS.get(tp)
    if t is None:
        name = f"{getattr(tp, '__module__', None) or ''}.{getattr(tp, '__qualname__', tp.__name__)}"
        b = name.encode("utf-8", "surrogatepass")
        t = _TYPE_TAGS[tp] = pack_tQ(b"y", len(b)) + b
    return t


def qualname_of(obj: Any) -> str:
    """Return ``module.qualname`` of a function-like object (its type's name without one)."""
    mod = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{mod}.{name or type(obj).__qualname__}"


def const(tag: bytes) -> Handler:
    """Return a handler that writes ``tag`` whatever the value (singletons)."""

    def enc_const(obj: Any, st: Stream) -> None:
        st.buf += tag

    return enc_const


def index_of(seq: Any, item: Any) -> int:
    """Return the position of ``item`` in ``seq`` by identity (-1 if absent), for messages."""
    return next((j for j, x in enumerate(seq) if x is item), -1)


# --- dispatch --------------------------------------------------------------------------

#: Exact type -> handler. Filled by :func:`install`; grows as new types are met.
DISPATCH: dict[type, Handler] = {}
_BASE_DISPATCH: dict[type, Handler] = {}


def _uninstalled(tp: type) -> Handler:
    raise RuntimeError("cashet.hashing.values has not installed its handlers")


_handler_for: Callable[[type], Handler] = _uninstalled


def install(base: dict[type, Handler], handler_for: Callable[[type], Handler]) -> None:
    """Set the handlers of the base types and how to find one for any other type.

    Args:
        base: exact type -> handler, always in the table.
        handler_for: returns the handler of a type not in the table (then cached there).
    """
    global _handler_for
    _BASE_DISPATCH.clear()
    _BASE_DISPATCH.update(base)
    DISPATCH.clear()
    DISPATCH.update(base)
    _handler_for = handler_for


def resolve(tp: type) -> Handler:
    """Return the handler of a type met for the first time, and remember it."""
    h = _handler_for(tp)
    if len(DISPATCH) > 20_000:  # notebooks redefine classes: keep the table bounded
        DISPATCH.clear()
        DISPATCH.update(_BASE_DISPATCH)
    DISPATCH[tp] = h
    return h
