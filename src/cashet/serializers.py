"""Result serializers: ``PickleSerializer`` (default), ``SafePickleSerializer``, ``JsonSerializer``.

Any object with ``dumps(obj) -> bytes`` and ``loads(bytes) -> obj`` satisfies the
:class:`cashet.protocols.Serializer` protocol.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from collections.abc import Iterable
from typing import IO, Any

from cashet.protocols import Serializer

__all__ = ["JsonSerializer", "PickleSerializer", "SafePickleSerializer", "Serializer"]


#: Framed pickle: ``MAGIC, n, len(pickle), len(buffer_1..n), pickle, buffer_1..n``. Large
#: NumPy/bytearray buffers travel out of band, so neither writing nor loading copies them
#: (arrays load as views of the buffer the store read). A pickle without large buffers is
#: stored as the plain pickle bytes.
_FRAME_MAGIC = b"\xffCASHETP5"
_FRAME_MIN = 64 << 10


def _frame_parts(head: bytes, buffers: list[pickle.PickleBuffer]) -> list[bytes | memoryview]:
    raws = [b.raw() for b in buffers]
    header = _FRAME_MAGIC + struct.pack(
        f"<IQ{len(raws)}Q", len(raws), len(head), *(r.nbytes for r in raws)
    )
    return [header, head, *raws]


def _unframe(data: bytes | bytearray | memoryview) -> tuple[memoryview, list[memoryview]]:
    view = memoryview(data)
    off = len(_FRAME_MAGIC)
    try:
        n, head_len = struct.unpack_from("<IQ", view, off)
        off += 12
        sizes = struct.unpack_from(f"<{n}Q", view, off)
    except struct.error as exc:
        raise pickle.UnpicklingError(f"truncated framed pickle: {exc}") from exc
    off += 8 * n
    head = view[off : off + head_len]
    off += head_len
    buffers = []
    for size in sizes:
        buffers.append(view[off : off + size])
        off += size
    if off != len(view):
        raise pickle.UnpicklingError("framed pickle has trailing or missing bytes")
    return head, buffers


def _read_all(file: IO[bytes], n: int) -> bytes:
    data = file.read(n)
    if len(data) != n:
        raise pickle.UnpicklingError("truncated framed pickle")
    return data


def _is_framed(data: bytes | bytearray | memoryview) -> bool:
    return bytes(data[: len(_FRAME_MAGIC)]) == _FRAME_MAGIC


class PickleSerializer:
    """Pickle with protocol 5; large buffers (NumPy arrays, bytearrays) out of band.

    Loading a pickle runs code chosen by whoever wrote it: use this only with a store you
    trust. :class:`SafePickleSerializer` restricts what can be loaded.
    """

    def __init__(self, protocol: int = 5) -> None:
        if not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise ValueError(
                f"pickle protocol must be 0..{pickle.HIGHEST_PROTOCOL}, not {protocol}"
            )
        self.protocol = protocol

    def dumps(self, obj: Any) -> bytes:
        parts = self.dumps_parts(obj)
        return parts[0] if len(parts) == 1 else b"".join(parts)  # type: ignore[return-value]

    def dumps_parts(self, obj: Any) -> list[bytes | memoryview]:
        """Serialize ``obj`` as chunks whose concatenation is ``dumps(obj)``.

        Large buffers are returned as views, not copies: the store writes them directly.
        """
        if self.protocol < 5:
            return [pickle.dumps(obj, protocol=self.protocol)]
        buffers: list[pickle.PickleBuffer] = []

        def keep_in_band(buf: pickle.PickleBuffer) -> bool:
            # True keeps the buffer in band; only large contiguous ones go out.
            try:
                raw = buf.raw()
            except BufferError:
                return True
            if raw.nbytes < _FRAME_MIN:
                return True
            buffers.append(buf)
            return False

        head = pickle.dumps(obj, protocol=5, buffer_callback=keep_in_band)
        if not buffers:
            return [head]
        return _frame_parts(head, buffers)

    def loads(self, data: bytes) -> Any:
        if _is_framed(data):
            head, buffers = _unframe(data)
            return pickle.loads(head, buffers=buffers)
        return pickle.loads(data)

    def load(self, file: IO[bytes]) -> Any:
        """Load from a readable binary file: ``loads(file.read())`` without the whole bytes
        in memory beside the value (each large buffer, and a large ``bytes``, is read
        straight into its own memory)."""
        peek = getattr(file, "peek", None)
        start = peek(len(_FRAME_MAGIC))[: len(_FRAME_MAGIC)] if peek is not None else b""
        if start != _FRAME_MAGIC:
            if peek is None:
                return self.loads(file.read())
            return pickle.load(file)
        file.read(len(_FRAME_MAGIC))
        try:
            n, head_len = struct.unpack("<IQ", _read_all(file, 12))
            sizes = struct.unpack(f"<{n}Q", _read_all(file, 8 * n))
        except struct.error as exc:
            raise pickle.UnpicklingError(f"truncated framed pickle: {exc}") from exc
        head = _read_all(file, head_len)
        buffers = []
        for size in sizes:
            buf = bytearray(size)
            if file.readinto(buf) != size:  # type: ignore[attr-defined]
                raise pickle.UnpicklingError("framed pickle has missing bytes")
            buffers.append(buf)
        if file.read(1):
            raise pickle.UnpicklingError("framed pickle has trailing bytes")
        return pickle.loads(head, buffers=buffers)

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"


#: Globals a plain-data pickle needs. Deliberately absent: ``builtins.object``,
#: ``builtins.type``, ``getattr``/``eval``/``exec``/``__import__``, ``copyreg._reconstructor``,
#: ``functools.partial``, ``operator.*`` — the usual gadgets for running code on load.
_SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", name)
        for name in (
            "bool",
            "int",
            "float",
            "complex",
            "str",
            "bytes",
            "bytearray",
            "list",
            "tuple",
            "dict",
            "set",
            "frozenset",
            "slice",
            "range",
        )
    }
    | {
        ("collections", "OrderedDict"),
        ("collections", "deque"),
        ("collections", "Counter"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("uuid", "UUID"),
        ("zoneinfo", "ZoneInfo"),
    }
)

#: What NumPy arrays and scalars need to unpickle (NumPy 1.x and 2.x module paths).
_NUMPY_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        (mod, name)
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {(mod, "_frombuffer") for mod in ("numpy.core.numeric", "numpy._core.numeric")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
    | {
        ("numpy", name)
        for name in (
            "bool_",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "float16",
            "float32",
            "float64",
            "complex64",
            "complex128",
            "str_",
            "bytes_",
            "datetime64",
            "timedelta64",
        )
    }
    | {
        ("numpy.dtypes", name)
        for name in (
            "BoolDType",
            "Int8DType",
            "Int16DType",
            "Int32DType",
            "Int64DType",
            "UInt8DType",
            "UInt16DType",
            "UInt32DType",
            "UInt64DType",
            "Float16DType",
            "Float32DType",
            "Float64DType",
            "Complex64DType",
            "Complex128DType",
            "StrDType",
            "BytesDType",
            "DateTime64DType",
            "TimeDelta64DType",
        )
    }
)

_FORBIDDEN: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "object"),
        ("builtins", "type"),
        ("builtins", "getattr"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "__import__"),
        ("builtins", "compile"),
        ("builtins", "open"),
        ("builtins", "setattr"),
        ("builtins", "delattr"),
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(
        self,
        data: bytes | memoryview,
        allowed: frozenset[tuple[str, str]],
        buffers: list[memoryview] | None = None,
    ) -> None:
        super().__init__(io.BytesIO(data), buffers=buffers)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"Blocked class {module}.{name}: SafePickleSerializer loads only its allowlist"
            " (add trusted classes with SafePickleSerializer(extra_classes=[...]))"
        )


class SafePickleSerializer:
    """Pickle that only loads an allowlist of plain-data types.

    Builtin containers and scalars, ``datetime``, ``Decimal``, ``Fraction``, ``UUID``,
    ``ZoneInfo`` and (with ``allow_numpy=True``, the default) NumPy arrays and scalars load; any
    other global raises ``pickle.UnpicklingError``. Add your own classes with
    ``extra_classes``; ``object``, ``type`` and callables that run code are never allowed.

    Args:
        extra_classes: classes trusted to be rebuilt from a pickle.
        allow_numpy: allow NumPy arrays, dtypes and scalars.
        protocol: pickle protocol used when writing.
    """

    def __init__(
        self,
        extra_classes: Iterable[type] = (),
        *,
        allow_numpy: bool = True,
        protocol: int = 5,
    ) -> None:
        allowed = set(_SAFE_GLOBALS)
        if allow_numpy:
            allowed |= _NUMPY_GLOBALS
        self.extra_classes: tuple[type, ...] = tuple(extra_classes)
        for cls in self.extra_classes:
            if not isinstance(cls, type):
                raise TypeError(f"extra_classes must hold classes, got {cls!r}")
            key = (cls.__module__, cls.__qualname__)
            if key in _FORBIDDEN or cls is object or cls is type:
                raise ValueError(f"refusing to allow {key[0]}.{key[1]}: it can run arbitrary code")
            allowed.add(key)
        self._allowed = frozenset(allowed - _FORBIDDEN)
        self._pickle = PickleSerializer(protocol)

    def dumps(self, obj: Any) -> bytes:
        return self._pickle.dumps(obj)

    def dumps_parts(self, obj: Any) -> list[bytes | memoryview]:
        """See :meth:`PickleSerializer.dumps_parts`."""
        return self._pickle.dumps_parts(obj)

    def loads(self, data: bytes) -> Any:
        if _is_framed(data):
            head, buffers = _unframe(data)
            return _RestrictedUnpickler(head, self._allowed, buffers).load()
        return _RestrictedUnpickler(data, self._allowed).load()

    def __repr__(self) -> str:
        names = ", ".join(c.__qualname__ for c in self.extra_classes)
        return f"SafePickleSerializer(extra_classes=[{names}])"


class JsonSerializer:
    """JSON (UTF-8). For dicts, lists, strings, numbers, booleans and ``None``.

    Tuples come back as lists. A value JSON cannot represent raises ``TypeError`` naming it.
    """

    def __init__(self, *, indent: int | None = None, sort_keys: bool = False) -> None:
        self.indent = indent
        self.sort_keys = sort_keys

    def dumps(self, obj: Any) -> bytes:
        try:
            text = json.dumps(
                obj,
                ensure_ascii=False,
                indent=self.indent,
                sort_keys=self.sort_keys,
                separators=None if self.indent else (",", ":"),
                allow_nan=True,
            )
        except TypeError as exc:
            raise TypeError(f"JsonSerializer cannot serialize this result: {exc}") from exc
        except ValueError as exc:  # circular reference
            raise TypeError(f"JsonSerializer cannot serialize this result: {exc}") from exc
        return text.encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return json.loads(bytes(data).decode("utf-8"))

    def __repr__(self) -> str:
        return "JsonSerializer()"
