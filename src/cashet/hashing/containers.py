"""Handlers for containers: tuples, lists, dicts, sets and their standard-library kin.

Sequences of 16 or more ints, floats or strs are packed in one go (which encoding a sequence
gets depends only on its value, so packing stays canonical). Mappings and sets are
order-insensitive: sorted when their keys are of one sortable type, else written as the
sorted digests of their entries. Mutable containers are :func:`~cashet.hashing.encoder.tracked`,
so one that contains itself is written with a back-reference.
"""

from __future__ import annotations

import collections
import sys
from array import array
from typing import Any

from cashet.hashing.encoder import (
    DISPATCH,
    TAGS,
    Stream,
    Unhashable,
    encode,
    encode_at,
    encode_state,
    feed_raw,
    index_of,
    pack_Q,
    pack_tQ,
    resolve,
    sub_digest,
    tracked,
    type_tag,
)

__all__ = [
    "SEQ_TAGS",
    "enc_ddict",
    "enc_dict",
    "enc_frozenset",
    "enc_list",
    "enc_odict",
    "enc_seq",
    "enc_set",
    "enc_tuple",
    "encode_deep",
]

#: Homogeneous int/float/str sequences at least this long are packed in one go.
_PACK_MIN = 16
_SORTABLE = frozenset({str, int, bytes})
_BIG_ENDIAN = sys.byteorder == "big"

#: kind -> (plain, i64-packed, f64-packed, str-packed) tags, for tuple, list and objects.
SEQ_TAGS = {
    kind: (TAGS[kind], TAGS[f"{kind}_i64"], TAGS[f"{kind}_f64"], TAGS[f"{kind}_str"])
    for kind in ("tuple", "list", "objects")
}


def _enc_items(seq: Any, st: Stream) -> None:
    item = None
    try:
        for item in seq:
            f = DISPATCH.get(type(item))
            if f is None:
                f = resolve(type(item))
            f(item, st)
    except Unhashable as e:
        # the index is only needed for the message: find it by identity, off the fast path
        e.path.append(("item", index_of(seq, item)))
        raise e from None


def _enc_packed(seq: Any, st: Stream, tags: tuple[bytes, ...]) -> bool:
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
        st.buf += tags[3] + pack_Q(len(lengths))
        if _BIG_ENDIAN:
            lengths.byteswap()
        feed_raw(st, memoryview(lengths).cast("B"), 8 * len(lengths))
        feed_raw(st, data, len(data))
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
    st.buf += tag + pack_Q(len(data))
    feed_raw(st, memoryview(data).cast("B"), 8 * len(data))
    return True


def enc_seq(seq: Any, st: Stream, tags: tuple[bytes, ...]) -> None:
    n = len(seq)
    if n >= _PACK_MIN and _enc_packed(seq, st, tags):
        return
    st.buf += pack_tQ(tags[0], n)
    _enc_items(seq, st)


def enc_tuple(obj: tuple[Any, ...], st: Stream) -> None:
    enc_seq(obj, st, SEQ_TAGS["tuple"])


@tracked
def enc_list(obj: list[Any], st: Stream) -> None:
    enc_seq(obj, st, SEQ_TAGS["list"])


def _enc_mapping(obj: Any, st: Stream, tag: bytes, tag_d: bytes) -> None:
    n = len(obj)
    kinds = set(map(type, obj))
    if n == 0 or (len(kinds) == 1 and next(iter(kinds)) in _SORTABLE):
        # keys of one sortable type: sort them (unique, so values are never compared)
        st.buf += pack_tQ(tag, n)
        for k, v in sorted(dict.items(obj)):
            encode(k, st)
            encode_at(v, st, "key", k)
        return
    digests: list[bytes] = []
    for k, v in dict.items(obj):
        try:
            digests.append(sub_digest(st, k, v))
        except Unhashable as e:
            e.path.append(("key", k))
            raise e from None
    digests.sort()
    st.buf += pack_tQ(tag_d, n)
    st.buf += b"".join(digests)


@tracked
def enc_dict(obj: dict[Any, Any], st: Stream) -> None:
    _enc_mapping(obj, st, b"{", b"}")


def _enc_set_like(obj: Any, st: Stream, tag: bytes, tag_d: bytes) -> None:
    n = len(obj)
    kinds = set(map(type, obj))
    if n == 0 or (len(kinds) == 1 and next(iter(kinds)) in _SORTABLE):
        st.buf += pack_tQ(tag, n)
        for item in sorted(obj):
            encode(item, st)
        return
    digests: list[bytes] = []
    for item in obj:
        try:
            digests.append(sub_digest(st, item))
        except Unhashable as e:
            e.path.append(("member", None))
            raise e from None
    digests.sort()
    st.buf += pack_tQ(tag_d, n)
    st.buf += b"".join(digests)


@tracked
def enc_set(obj: set[Any], st: Stream) -> None:
    _enc_set_like(obj, st, b"<", b">")


def enc_frozenset(obj: frozenset[Any], st: Stream) -> None:
    _enc_set_like(obj, st, b"/", b"\\")


@tracked
def enc_odict(obj: collections.OrderedDict[Any, Any], st: Stream) -> None:
    # order is part of an OrderedDict's equality
    st.buf += TAGS["odict"] + type_tag(type(obj)) + pack_Q(len(obj))
    for k, v in obj.items():
        encode(k, st)
        encode_at(v, st, "key", k)
    encode_state(getattr(obj, "__dict__", None) or None, st)


def enc_ddict(obj: collections.defaultdict[Any, Any], st: Stream) -> None:
    st.buf += TAGS["ddict"] + type_tag(type(obj))
    encode_at(obj.default_factory, st, "attr", "default_factory")
    enc_dict(obj, st)
    encode_state(getattr(obj, "__dict__", None) or None, st)


# --- deep values: the same bytes without recursion ---------------------------------------

_DONE: Any = object()


def encode_deep(obj: Any, st: Stream) -> None:
    """Write ``obj`` exactly as :func:`~cashet.hashing.encoder.encode` does, with lists,
    tuples and dicts of sortable keys walked on an explicit stack instead of the call stack.

    For a value nested deeper than the recursion limit allows (``[[[...]]]`` 10,000 deep);
    the recursive encoder stays the fast path and this one is used only after it raised
    ``RecursionError``. Other types go to their handlers (which recurse as usual).
    """
    active = st.active
    # Each open container: [iterator, container, is tracked, dict?, position or key].
    stack: list[list[Any]] = []
    value = obj
    try:
        while True:
            tp = type(value)
            f = DISPATCH.get(tp)
            if f is None:
                f = resolve(tp)
            if f is enc_list or f is enc_tuple:
                tracked_ = f is enc_list
                if tracked_ and id(value) in active:
                    st.buf += pack_tQ(TAGS["backref"], len(active) - active[id(value)])
                else:
                    if tracked_:
                        active[id(value)] = len(active)
                    tags = SEQ_TAGS["list" if tracked_ else "tuple"]
                    n = len(value)
                    if n >= _PACK_MIN and _enc_packed(value, st, tags):
                        if tracked_:
                            del active[id(value)]
                    else:
                        st.buf += pack_tQ(tags[0], n)
                        stack.append([iter(value), value, tracked_, False, -1])
            elif f is enc_dict and id(value) not in active and _sortable_keys(value):
                active[id(value)] = len(active)
                st.buf += pack_tQ(b"{", len(value))
                stack.append([iter(sorted(dict.items(value))), value, True, True, None])
            else:
                f(value, st)
            # the next value: the next item of the innermost open container
            while stack:
                top = stack[-1]
                item = next(top[0], _DONE)
                if item is _DONE:
                    stack.pop()
                    if top[2]:
                        del active[id(top[1])]
                    continue
                if top[3]:
                    top[4] = item[0]
                    encode(item[0], st)
                    value = item[1]
                else:
                    top[4] += 1
                    value = item
                break
            else:
                return
    except Unhashable as e:
        for top in reversed(stack):
            e.path.append(("key", top[4]) if top[3] else ("item", top[4]))
        raise e from None


def _sortable_keys(obj: dict[Any, Any]) -> bool:
    kinds = set(map(type, obj))
    return len(obj) == 0 or (len(kinds) == 1 and next(iter(kinds)) in _SORTABLE)
