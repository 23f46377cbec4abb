"""Handlers for NumPy and pandas values, found lazily by :func:`array_handler`.

Nothing here imports NumPy or pandas (``import cashet`` must not: a test checks): a value
can only be an array if its library is already in ``sys.modules``, so the handlers look the
modules up there when a type is first met. Arrays are hashed as raw bytes (NaN payloads and
the sign of zero compared bitwise), field by field for structured dtypes, element by element
for object dtypes; pandas objects by their index, names and column values (text columns
in one C pass, a frame's buffers on a worker thread: see :mod:`cashet.hashing.columns`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from cashet.hashing.columns import Sink, enc_text
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
from cashet.hashing.kept import kept_get, kept_put
from cashet.hashing.scalars import enc_bool, enc_range, enc_str, enc_tz

__all__ = ["array_handler"]


def array_handler(tp: type) -> Handler | None:
    """Return the handler of a NumPy or pandas type, ``None`` for any other type."""
    return _numpy_handler(tp) or _pandas_handler(tp)


# --- NumPy -----------------------------------------------------------------------------


def _enc_ndarray(a: Any, st: Stream) -> None:
    np = sys.modules["numpy"]
    owner = a  # what a big buffer's digest is kept by (see hashing.kept)
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
    feed_raw(st, memoryview(a.reshape(-1).view(np.uint8)) if n else b"", n, owner)


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


def _enc_pd_values(arr: Any, st: Stream, sink: Sink | None = None) -> None:
    """The values of a column/index: numpy buffers where possible (given to ``sink`` when
    there is one, see :func:`_put`), text in one pass, else element-wise."""
    np = sys.modules["numpy"]
    pd = sys.modules["pandas"]
    dtype = arr.dtype
    st.buf += TAGS["pd_values"]
    enc_str(str(dtype), st)
    if isinstance(arr, (np.ndarray, pd.arrays.NumpyExtensionArray)) or isinstance(dtype, np.dtype):
        a = np.asarray(arr)  # no copy for numpy-backed values
        if a.dtype.kind != "O" or a.ndim != 1:
            _put(a, st, sink)
        elif sink is not None:  # after the frame's columns, while the sink hashes
            st.buf += TAGS["pd_text"]
            sink.later(a, isinstance(arr, pd.arrays.StringArray))
        else:
            _enc_object_column(a, st, isinstance(arr, pd.arrays.StringArray))
    elif isinstance(dtype, pd.CategoricalDtype):
        _put(np.asarray(arr.codes), st, sink)
        _enc_pd_index(dtype.categories, st)
        enc_bool(dtype.ordered, st)
    elif isinstance(dtype, (pd.DatetimeTZDtype, pd.PeriodDtype)):
        _put(np.asarray(arr.asi8), st, sink)
    elif hasattr(arr, "_mask") and hasattr(arr, "_data"):
        # nullable Int64/boolean/Float64: values under the mask are garbage, zero them
        mask, data = np.asarray(arr._mask), np.asarray(arr._data)
        if mask.any():
            data = data.copy()
            data[mask] = 0
        _put(mask, st, sink)
        _put(data, st, sink)
    else:  # strings, arrow, intervals, sparse...: exact, element by element
        _enc_ndarray(arr.to_numpy(dtype=object), st)


def _put(a: Any, st: Stream, sink: Sink | None) -> None:
    """An array, its raw buffer handed to ``sink`` if it has a plain one (the header of
    :func:`_enc_ndarray` behind the ``pd_sink`` tag, then the length; the bytes follow in
    the sink's digest), else written by :func:`_enc_ndarray`."""
    dt = a.dtype
    if sink is None or dt.names is not None or dt.hasobject or dt.kind not in "biufcmMSUV":
        _enc_ndarray(a, st)
        return
    np = sys.modules["numpy"]
    if type(a) is not np.ndarray:
        a = a.view(np.ndarray)
    st.buf += TAGS["pd_sink"] + pack_Q(a.ndim)
    for d in a.shape:
        st.buf += pack_q(d)
    enc_str(dt.str, st)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    n = a.nbytes
    st.buf += pack_Q(n)
    if n:
        sink.add(a.reshape(-1).view(np.uint8))


def _enc_pd_index(idx: Any, st: Stream, sink: Sink | None = None) -> None:
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
            _enc_pd_values(idx.get_level_values(level).array, st, sink)
    else:
        st.buf += TAGS["pd_index"] + type_tag(type(idx))
        encode(idx.name, st)
        _enc_pd_values(idx.array, st, sink)


def _enc_pd_series(s: Any, st: Stream) -> None:
    st.buf += TAGS["pd_series"]
    encode(s.name, st)
    _enc_pd_index(s.index, st)
    _enc_pd_values(s.array, st)


def _enc_pd_frame(df: Any, st: Stream) -> None:
    """Columns, index, then each column; the plain buffers (row index included) go to a
    :class:`Sink`, hashed while the object/text columns are encoded after the columns (each
    column marks its place), the sink's digest last (only when it took a buffer)."""
    st.buf += TAGS["pd_frame"]
    _enc_pd_index(df.columns, st)
    ncols = df.shape[1]
    kept = st.kept
    # (sink digest, what each text column wrote) kept by the call's key for its manifest
    known = None if kept is None or not st.reuse else kept_get(kept, "frame", df)
    sink = Sink(None if known is None else known[0])
    texts: list[bytes | None] = []
    try:
        _enc_pd_index(df.index, st, sink)
        st.buf += pack_Q(ncols)
        for pos, (_, col) in enumerate(df.items()):
            sink.where = ("column", pos)
            try:
                _enc_pd_values(col.array, st, sink)
            except Unhashable as e:
                e.path.append(("column", pos))
                raise
        sink.start()
        for i, (a, trusted, where) in enumerate(sink.texts):
            written = None if known is None or i >= len(known[1]) else known[1][i]
            if written is not None:
                st.buf += written
                continue
            mark = len(st.buf)  # the text path only appends to the buffer
            try:
                if enc_text(a, st, trusted):
                    texts.append(bytes(st.buf[mark:]))
                    continue
                _enc_ndarray(a, st)
            except Unhashable as e:
                if where is not None:
                    e.path.append(where)
                raise
            texts.append(None)
    finally:
        sink.close()
    digest = sink.digest() if sink.used else None
    if digest is not None:
        st.buf += digest
    if kept is not None and not st.reuse:
        kept_put(kept, "frame", df, (digest, texts))


def _enc_object_column(a: Any, st: Stream, trusted: bool) -> None:
    """A 1-D object array: text in one pass (:func:`enc_text`), else value by value."""
    if not enc_text(a, st, trusted):
        _enc_ndarray(a, st)


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
