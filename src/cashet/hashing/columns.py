"""Fast paths for pandas columns: text in one C pass, numeric buffers off the main thread.

**Text columns.** A column of strings (``object``, ``str`` or ``string`` dtype backed by
Python objects) is written by the C pickler (protocol 5, fast mode: no memo, so the bytes
depend only on the values, never on object identity) into a hasher of its own, whose digest
stands in for the column. The pickler writes only *exact* ``str``, ``float`` and ``None``
natively (``float`` bit for bit: a NaN is a missing value); ``pd.NA`` is written as a
reduction no string can produce; anything else, a ``str`` subclass such as ``np.str_``
included, reaches :meth:`_TextPickler.reducer_override`, which refuses it, and the caller
encodes the column value by value instead. The pickle stream is a lossless, exactly typed and
self-delimiting serialization, so two different columns never share it; the choice of path
depends only on the values. One C pass replaces a type scan plus a join.

**Numeric buffers of a frame** go to a :class:`Sink`: a second hasher that takes the raw
buffers in order (their dtypes, shapes and lengths are in the main stream) and whose digest
closes the frame. The frame's object columns are encoded after the others; before them, a
worker thread starts feeding the buffers to BLAKE3 (which releases the GIL, on every core),
so the two overlap. Threading changes when the bytes are hashed, never which bytes: the
digest is the same either way.
"""

from __future__ import annotations

import pickle
import sys
import threading
import types
from typing import Any

from blake3 import blake3

from cashet.hashing._blake import new_hasher
from cashet.hashing.encoder import TAGS, Stream, pack_Q

__all__ = ["THREAD_MIN", "Sink", "enc_text"]

#: Pending sink data at least this large is hashed on a worker thread.
THREAD_MIN = 2 << 20

#: The pickler's fast mode (no memo) is what makes its bytes independent of object identity;
#: documented as deprecated: should a Python drop it, text goes value by value.
_FAST_MODE = isinstance(
    getattr(pickle.Pickler, "fast", None), (types.MemberDescriptorType, types.GetSetDescriptorType)
)


class _NotText(Exception):
    """A value the text path does not write natively: encode the column value by value."""


class _Out:
    """The pickler's file: feeds each frame (~64 KiB) to a hasher and counts the bytes."""

    __slots__ = ("hasher", "n")

    def __init__(self) -> None:
        self.hasher = blake3()
        self.n = 0

    def write(self, data: bytes) -> None:
        self.hasher.update(data)
        self.n += len(data)


class _TextPickler(pickle.Pickler):
    """Exact ``str``/``float``/``None`` (native) and ``pd.NA`` from the items of one 1-D
    object array; refuses everything else."""

    def __init__(self, out: _Out, root: Any) -> None:
        super().__init__(out, protocol=5)
        self.fast = True  # no memo: the bytes depend on the values only, not on identity
        self.root = root

    def reducer_override(self, obj: Any) -> Any:
        if obj is self.root:  # its items, one pass, without a list of them
            return (list, (), None, obj.flat)
        if obj is list or obj is str:  # the callables of the reductions here
            return NotImplemented
        if obj is sys.modules["pandas"].NA:
            return (str, ("pandas.NA",))  # GLOBAL + REDUCE: unlike any string atom
        raise _NotText


def enc_text(a: Any, st: Stream, trusted: bool) -> bool:
    """Write a 1-D object array of strings and missing values; False (nothing written) if
    it holds anything else. ``trusted``: the array backs a pandas string array, which holds
    only ``str`` instances and missing values; otherwise pandas' C check that every value is
    a ``str`` or missing comes first (containers must not reach the pickler: a set's order
    is not canonical)."""
    if not _FAST_MODE:
        return False
    if not trusted:
        is_text = getattr(sys.modules["pandas"]._libs.lib, "is_string_array", None)
        if is_text is None or not is_text(a, skipna=True):
            return False
    out = _Out()
    try:
        _TextPickler(out, a).dump(a)
    except Exception:  # _NotText; a cycle or depth the pickler refuses: value by value
        return False
    st.buf += TAGS["pd_text"] + pack_Q(len(a)) + pack_Q(out.n) + out.hasher.digest()
    return True


class Sink:
    """A frame's plain buffers, hashed in order into one hasher (on a worker thread once
    :meth:`start` is called with enough data), and the object columns left for later."""

    __slots__ = (
        "_error", "_hasher", "_known", "_pending", "_size", "_thread", "texts", "used", "where",
    )  # fmt: skip

    def __init__(self, known: bytes | None = None) -> None:
        #: the digest of these buffers when known already (kept by the call's key): the
        #: buffers are then not hashed again
        self._known = known
        self._hasher: blake3 | None = None
        self._pending: list[Any] = []
        self._size = 0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        #: whether any buffer was added (then the digest belongs in the stream)
        self.used = False
        #: object columns to encode after the frame's columns: (array, trusted, where)
        self.texts: list[tuple[Any, bool, tuple[str, Any] | None]] = []
        #: where the value being encoded sits, for the error path of a later column
        self.where: tuple[str, Any] | None = None

    def add(self, u8: Any) -> None:
        """Take a 1-D ``uint8`` ndarray (the caller writes its length to the stream)."""
        self.used = True
        if self._known is None:
            self._pending.append(u8)
            self._size += u8.nbytes

    def later(self, a: Any, trusted: bool) -> None:
        """Leave a 1-D object array for the caller to encode after the other columns."""
        self.texts.append((a, trusted, self.where))

    def start(self) -> None:
        """Hash the buffers added so far on a worker thread if they are large enough and
        there are object columns to encode meanwhile (else :meth:`digest` hashes them here,
        on every core)."""
        if self._size < THREAD_MIN or not self.texts or self._thread is not None:
            return
        self._hasher = new_hasher(0)  # one core: this thread encodes the object columns
        bufs = _merged(self._pending)
        t = threading.Thread(
            target=self._run, args=(self._hasher, bufs), name="cashet-hash", daemon=True
        )
        try:
            t.start()
        except RuntimeError:  # interpreter shutting down: digest() hashes on this thread
            return
        self._pending = []
        self._thread = t

    def _run(self, hasher: blake3, bufs: list[Any]) -> None:
        try:
            for b in bufs:
                hasher.update(b)
        except BaseException as e:  # raised again by digest(), on the caller's thread
            self._error = e

    def close(self) -> None:
        """Wait for the worker (if any); safe to call more than once."""
        if self._thread is not None:
            self._thread.join()

    def digest(self) -> bytes:
        """The digest of every buffer added, in order."""
        self.close()
        if self._error is not None:
            raise self._error
        if self._known is not None:
            return self._known
        h = self._hasher
        if h is None:
            h = self._hasher = new_hasher(self._size)
        for b in _merged(self._pending):
            h.update(b)
        self._pending = []
        return h.digest()


def _merged(bufs: list[Any]) -> list[Any]:
    """The same bytes in the same order, adjacent views of one C-contiguous array joined
    into one view (a frame's columns of one dtype are rows of one block): fewer calls."""
    if len(bufs) < 2:
        return bufs
    out: list[Any] = []
    root0: Any = None
    start = end = 0
    for b in bufs:
        root, addr = _root(b), b.ctypes.data
        if root is not None and root is root0 and addr == end:
            end += b.nbytes
            out[-1] = _flat(root)[start - root.ctypes.data : end - root.ctypes.data]
            continue
        out.append(b)
        root0, start, end = root, addr, addr + b.nbytes
    return out


def _root(b: Any) -> Any:
    """The C-contiguous ndarray that owns the memory of view ``b``, else None."""
    np = sys.modules["numpy"]
    r = b
    while isinstance(r.base, np.ndarray):
        r = r.base
    return r if r is not b and r.flags.c_contiguous and not r.dtype.hasobject else None


def _flat(root: Any) -> Any:
    return root.reshape(-1).view(sys.modules["numpy"].uint8)
