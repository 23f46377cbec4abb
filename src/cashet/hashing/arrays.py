"""Handlers for NumPy and pandas values, found lazily by :func:`array_handler`.

Nothing here imports NumPy or pandas (``import cashet`` must not: a test checks): a value
can only be an array if its library is already in ``sys.modules``, so the handlers look the
modules up there when a type is first met. Arrays are hashed as raw bytes (NaN payloads and
the sign of zero compared bitwise), field by field for structured dtypes, element by element
for object dtypes; pandas objects by their index, names and column values.
"""

from __future__ import annotations

import itertools
import operator
import sys
from collections.abc import Callable
from typing import Any

from cashet.hashing.containers import SEQ_TAGS, enc_seq, enc_tuple
from cashet.hashing.encoder import (
    TAGS,
    Handler,
    Stream,
    Unhashable,
    const,
    encode,
    encode_state,
    feed_raw,
    pack_Q,
    pack_q,
    qualname_of,
    tracked,
    type_tag,
)
from cashet.hashing.scalars import enc_bool, enc_range, enc_str, enc_tz

__all__ = ["array_handler"]


def array_handler(tp: type) -> Handler | None:
    """Return the handler of a NumPy or pandas type, ``None`` for any other type."""
    return _numpy_handler(tp) or _pandas_handler(tp)


# --- NumPy -----------------------------------------------------------------------------


def _enc_ndarray(a: Any, st: Stream) -> None:
    np = sys.modules["numpy"]
    if type(a) is not np.ndarray:
        a = a.view(np.ndarray)
    dt = a.dtype
    st.buf += b"A" + pack_Q(a.ndim)
    for d in a.shape:
        st.buf += pack_q(d)
    names = dt.names
    if names is not None:
        # field by field: padding bytes between fields are not data; the layout (itemsize,
        # offsets, alignment) is, for code that views the buffer or writes it to a file
        st.buf += TAGS["fields"] + pack_Q(len(names))
        st.buf += TAGS["layout"] + pack_Q(dt.itemsize) + (b"T" if dt.isalignedstruct else b"F")
        for name in names:
            st.buf += pack_Q(dt.fields[name][1])
        for name in names:
            enc_str(name, st)
            try:
                _enc_ndarray(a[name], st)
            except Unhashable as e:
                e.path.append(("key", name))
                raise
        return
    enc_str(dt.str, st)
    if dt.hasobject or dt.kind not in "biufcmMSUV":
        # objects / variable-width strings: element by element (the buffer holds pointers)
        _enc_objects(a, st)
        return
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    n = a.nbytes
    feed_raw(st, memoryview(a.reshape(-1).view(np.uint8)) if n else b"", n)


@tracked  # on the array itself: an object array may contain itself
def _enc_objects(a: Any, st: Stream) -> None:
    items = list(a.ravel()) if a.dtype.kind == "O" else a.ravel().tolist()
    enc_seq(items, st, SEQ_TAGS["objects"])


def _enc_npscalar(obj: Any, st: Stream) -> None:
    st.buf += TAGS["npscalar"]
    _enc_ndarray(sys.modules["numpy"].asarray(obj), st)


def _enc_masked(obj: Any, st: Stream) -> None:
    ma = sys.modules["numpy"].ma
    st.buf += TAGS["masked"]
    _enc_ndarray(ma.getdata(obj), st)
    _enc_ndarray(ma.getmaskarray(obj), st)
    encode(obj.fill_value, st)


def _enc_npsub(obj: Any, st: Stream) -> None:
    st.buf += TAGS["npsub"] + type_tag(type(obj))
    _enc_ndarray(obj, st)
    encode_state(getattr(obj, "__dict__", None) or None, st)


def _enc_ufunc(obj: Any, st: Stream) -> None:
    st.buf += TAGS["ufunc"]
    enc_str(qualname_of(obj), st)


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


def _enc_pd_values(arr: Any, st: Stream) -> None:
    """The values of a column/index: numpy buffers where possible, else element-wise."""
    np = sys.modules["numpy"]
    pd = sys.modules["pandas"]
    dtype = arr.dtype
    st.buf += TAGS["pd_values"]
    enc_str(str(dtype), st)
    if isinstance(arr, (np.ndarray, pd.arrays.NumpyExtensionArray)) or isinstance(dtype, np.dtype):
        a = np.asarray(arr)  # no copy for numpy-backed values
        if a.dtype.kind != "O" or a.ndim != 1 or not _enc_strs(a, st):
            _enc_ndarray(a, st)
    elif isinstance(dtype, pd.CategoricalDtype):
        _enc_ndarray(np.asarray(arr.codes), st)
        _enc_pd_index(dtype.categories, st)
        enc_bool(dtype.ordered, st)
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


def _enc_strs(a: Any, st: Stream) -> bool:
    """Write a 1-D object array of strings (and missing values) in a few C calls.

    Every value exactly a ``str``: one block of text. Some exactly ``str`` and the others
    ``None``/floats (NaN)/``pd.NA``/``pd.NaT``: the mask of non-strings, those values one by
    one, then the strings as one block. Anything else (a ``str`` subclass such as
    ``np.str_``, no string at all, other objects) returns False, nothing written: the
    caller encodes the values one by one. The choice depends only on the values.
    """
    items = a.tolist()
    n = len(items)
    types = list(map(type, items))
    k = types.count(str)
    if k == n:
        st.buf += TAGS["pd_strs"]
        _write_strs(items, st)
        return True
    if k == 0 or not set(types) <= _missing_types():
        return False
    np = sys.modules["numpy"]
    is_str = np.fromiter(map(operator.is_, types, itertools.repeat(str)), bool, n)
    st.buf += TAGS["pd_strs_na"] + pack_Q(n)
    feed_raw(st, memoryview(is_str.view(np.uint8)), n)
    enc_seq(a[~is_str].tolist(), st, SEQ_TAGS["objects"])
    _write_strs(a[is_str].tolist(), st)
    return True


def _write_strs(items: list[str], st: Stream) -> None:
    """Count, then the strings joined by NUL if none holds one (the NUL count of the joined
    text tells), else their code-point lengths and the strings joined: splittable either
    way, so injective; then the UTF-8 bytes (surrogatepass, as :func:`enc_str`)."""
    n = len(items)
    st.buf += pack_Q(n)
    text = "\0".join(items)
    if text.count("\0") == n - 1:
        st.buf += b"0"
    else:
        st.buf += b"L"
        lengths = sys.modules["numpy"].fromiter(map(len, items), "<u8", n)
        feed_raw(st, memoryview(lengths.view("u1")), lengths.nbytes)
        text = "".join(items)
    data = text.encode("utf-8", "surrogatepass")
    feed_raw(st, data, len(data))


_MISSING: set[type] = set()


def _missing_types() -> set[type]:
    """``str`` and the types of the missing values a string column may hold."""
    if not _MISSING:
        pd = sys.modules["pandas"]
        _MISSING.update((str, type(None), float, type(pd.NA), type(pd.NaT)))
    return _MISSING


def _enc_pd_index(idx: Any, st: Stream) -> None:
    pd = sys.modules["pandas"]
    if isinstance(idx, pd.RangeIndex):
        st.buf += TAGS["pd_range"]
        encode(idx.name, st)
        enc_range(range(idx.start, idx.stop, idx.step), st)
    elif isinstance(idx, pd.MultiIndex):
        st.buf += TAGS["pd_multi"]
        enc_tuple(tuple(idx.names), st)
        st.buf += pack_Q(idx.nlevels)
        for level in range(idx.nlevels):
            _enc_pd_values(idx.get_level_values(level).array, st)
    else:
        st.buf += TAGS["pd_index"] + type_tag(type(idx))
        encode(idx.name, st)
        _enc_pd_values(idx.array, st)


def _enc_pd_series(s: Any, st: Stream) -> None:
    st.buf += TAGS["pd_series"]
    encode(s.name, st)
    _enc_pd_index(s.index, st)
    _enc_pd_values(s.array, st)


def _enc_pd_frame(df: Any, st: Stream) -> None:
    st.buf += TAGS["pd_frame"]
    _enc_pd_index(df.columns, st)
    _enc_pd_index(df.index, st)
    st.buf += pack_Q(df.shape[1])
    for pos, (_, col) in enumerate(df.items()):
        try:
            _enc_pd_values(col.array, st)
        except Unhashable as e:
            e.path.append(("column", pos))
            raise


def _enc_pd_cat(obj: Any, st: Stream) -> None:
    st.buf += TAGS["pd_cat"]
    _enc_pd_values(obj, st)


def _pd_scalar(kind: str, parts: Callable[[Any], tuple[Any, ...]]) -> Handler:
    def _enc_pd_scalar(obj: Any, st: Stream) -> None:
        st.buf += TAGS["pd_scalar"]
        enc_str(kind, st)
        for p in parts(obj):
            encode(p, st)
        if kind == "Timestamp":
            enc_tz(obj.tzinfo, obj, st)

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
        return const(TAGS["pd_missing"] + (b"T" if tp is type(pd.NaT) else b"A"))
    if issubclass(tp, pd.Timestamp):  # asm8: numpy datetime64 with its unit
        return _pd_scalar("Timestamp", lambda x: (x.asm8,))
    if issubclass(tp, pd.Timedelta):
        return _pd_scalar("Timedelta", lambda x: (x.asm8,))
    if issubclass(tp, pd.Period):
        return _pd_scalar("Period", lambda x: (x.freqstr, x.ordinal))
    if issubclass(tp, pd.Interval):
        return _pd_scalar("Interval", lambda x: (x.left, x.right, x.closed))
    return None
