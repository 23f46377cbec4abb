"""Handlers for scalars: numbers, text, bytes, dates and times, paths, ranges, types.

``True``, ``1`` and ``1.0`` differ. Floats are written bit-exactly, so ``-0.0`` and ``0.0``
are distinct (a function may tell them apart: ``math.copysign``, ``1 / x``), except that
every NaN is one canonical NaN. Text and bytes of 64 KiB or more go to the hasher directly,
of 8 MiB or more as their own (multithreaded) digest.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import fractions
import pathlib
import struct
import types
import uuid
import zoneinfo
from typing import Any

from cashet.hashing.containers import enc_tuple
from cashet.hashing.encoder import (
    DIRECT,
    NAN,
    NONE,
    TAGS,
    Stream,
    encode,
    feed_raw,
    pack_d,
    pack_td,
    pack_tQ,
    pack_tq,
    type_tag,
)

__all__ = [
    "enc_bool",
    "enc_bytearray",
    "enc_bytes",
    "enc_complex",
    "enc_date",
    "enc_datetime",
    "enc_decimal",
    "enc_float",
    "enc_fraction",
    "enc_int",
    "enc_memoryview",
    "enc_module",
    "enc_none",
    "enc_path",
    "enc_range",
    "enc_slice",
    "enc_str",
    "enc_time",
    "enc_timedelta",
    "enc_type",
    "enc_tz",
    "enc_uuid",
]

_pack_date = struct.Struct("<cHBB").pack
_pack_datetime = struct.Struct("<cHBBBBBIB").pack
_pack_time = struct.Struct("<cBBBIB").pack
_pack_timedelta = struct.Struct("<cqII").pack
_TRUE, _FALSE = TAGS["true"], TAGS["false"]
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def enc_none(obj: Any, st: Stream) -> None:
    st.buf += NONE


def enc_bool(obj: Any, st: Stream) -> None:
    st.buf += _TRUE if obj else _FALSE


def enc_int(obj: int, st: Stream) -> None:
    if _I64_MIN <= obj <= _I64_MAX:
        st.buf += pack_tq(b"i", obj)
    else:
        n = (obj.bit_length() + 8) // 8  # room for the sign bit
        st.buf += pack_tQ(b"I", n)
        st.buf += int.to_bytes(obj, n, "little", signed=True)


def enc_float(obj: float, st: Stream) -> None:
    st.buf += pack_td(b"f", obj) if obj == obj else b"f" + NAN


def enc_complex(obj: complex, st: Stream) -> None:
    re, im = obj.real, obj.imag
    st.buf += b"c"
    st.buf += pack_d(re) if re == re else NAN
    st.buf += pack_d(im) if im == im else NAN


def enc_str(obj: str, st: Stream) -> None:
    b = str.encode(obj, "utf-8", "surrogatepass")
    n = len(b)
    if n < DIRECT:
        st.buf += pack_tQ(b"s", n)
        st.buf += b
    else:
        st.buf += b"s"
        feed_raw(st, b, n)


def enc_bytes(obj: bytes, st: Stream) -> None:
    n = len(obj)
    if n < DIRECT:
        st.buf += pack_tQ(b"b", n)
        st.buf += obj
    else:
        st.buf += b"b"
        feed_raw(st, obj, n, obj)


def enc_bytearray(obj: bytearray, st: Stream) -> None:
    st.buf += TAGS["bytearray"]
    feed_raw(st, obj, len(obj), obj)


def enc_memoryview(obj: memoryview, st: Stream) -> None:
    st.buf += TAGS["memoryview"]
    enc_str(obj.format, st)
    enc_tuple(obj.shape or (), st)
    mv = memoryview(obj if obj.c_contiguous else obj.tobytes()).cast("B")
    feed_raw(st, mv, mv.nbytes, obj)


def enc_fraction(obj: fractions.Fraction, st: Stream) -> None:
    st.buf += TAGS["fraction"]
    enc_int(obj.numerator, st)
    enc_int(obj.denominator, st)


def enc_decimal(obj: decimal.Decimal, st: Stream) -> None:
    # as_tuple keeps the exponent, so Decimal("1.0") and Decimal("1.00") differ
    t = obj.as_tuple()
    st.buf += TAGS["decimal"]
    enc_tuple((t.sign, t.digits, t.exponent), st)


def enc_uuid(obj: uuid.UUID, st: Stream) -> None:
    st.buf += TAGS["uuid"] + obj.bytes


def enc_tz(tz: Any, dt: Any, st: Stream) -> None:
    if tz is None:
        st.buf += TAGS["tz_none"]
    elif type(tz) is _dt.timezone:
        st.buf += TAGS["tz_fixed"]
        enc_timedelta(tz.utcoffset(None), st)
        enc_str(tz.tzname(None), st)
    elif type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        st.buf += TAGS["tz_zone"]
        enc_str(tz.key, st)
    else:  # pytz, dateutil, ...: what the zone says about this very datetime
        st.buf += TAGS["tz_other"]
        enc_type(type(tz), st)
        for part in (tz.utcoffset(dt), tz.dst(dt), tz.tzname(dt)):
            encode(part, st)


def enc_date(obj: _dt.date, st: Stream) -> None:
    st.buf += _pack_date(b"d", obj.year, obj.month, obj.day)


def enc_datetime(obj: _dt.datetime, st: Stream) -> None:
    st.buf += _pack_datetime(
        b"D", obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second,
        obj.microsecond, obj.fold,
    )  # fmt: skip
    enc_tz(obj.tzinfo, obj, st)


def enc_time(obj: _dt.time, st: Stream) -> None:
    st.buf += _pack_time(b"t", obj.hour, obj.minute, obj.second, obj.microsecond, obj.fold)
    enc_tz(obj.tzinfo, None, st)


def enc_timedelta(obj: Any, st: Stream) -> None:
    st.buf += _pack_timedelta(b"v", obj.days, obj.seconds, obj.microseconds)


def enc_path(obj: pathlib.PurePath, st: Stream) -> None:
    st.buf += TAGS["path"]
    enc_type(type(obj), st)
    enc_str(str(obj), st)


def enc_range(obj: range, st: Stream) -> None:
    st.buf += TAGS["range"]
    for part in (obj.start, obj.stop, obj.step):
        enc_int(part, st)


def enc_slice(obj: slice, st: Stream) -> None:
    st.buf += TAGS["slice"]
    for part in (obj.start, obj.stop, obj.step):
        encode(part, st)


def enc_type(obj: type, st: Stream) -> None:
    st.buf += type_tag(obj)


def enc_module(obj: types.ModuleType, st: Stream) -> None:
    # by name, like classes: a module argument selects an implementation (np vs cupy)
    st.buf += TAGS["module"]
    enc_str(obj.__name__, st)
