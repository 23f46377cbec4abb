"""Result encoding for HTTP responses: a stored result as JSON data and as base64.

Pure apart from decoding the stored bytes: reading them is the client's job
(``Client.result_bytes``); this module turns bytes into a response body and remembers the
encoding of small results (blobs are immutable, so that is always safe).
"""

from __future__ import annotations

import base64
import logging
import math
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cashet._process import BoundedCache
from cashet.models import Commit
from cashet.protocols import Serializer
from cashet.serializers import PickleSerializer, SafePickleSerializer
from cashet.server.input import MAX_ARG_DEPTH

__all__ = ["EncodedResult", "ResultEncoder", "ServedResult"]

log = logging.getLogger("cashet.server")


@dataclass(frozen=True, slots=True)
class EncodedResult:
    """A result blob in its response form (blobs are immutable: safe to cache)."""

    value: Any
    is_json: bool
    b64: str
    size: int


@dataclass(frozen=True, slots=True)
class ServedResult:
    """A result read back from the store, ready for a response."""

    commit: Commit | None
    blob_hash: str
    encoded: EncodedResult

    def body(self, *, cached: bool | None = None) -> dict[str, Any]:
        """The JSON body of ``/submit`` (with ``cached``) and ``/result``."""
        out = {
            "commit_hash": None if self.commit is None else self.commit.hash,
            "blob_hash": self.blob_hash,
            "size": self.encoded.size,
            "result": self.encoded.value,
            "result_is_json": self.encoded.is_json,
            "result_b64": self.encoded.b64,
        }
        if cached is not None:
            out["cached"] = cached
        return out


class _NotJSON(Exception):
    pass


_SCALARS = frozenset({str, int, bool, type(None)})
#: Loads builtin containers and scalars only (no NumPy, no classes).
_PLAIN_PICKLE = SafePickleSerializer(allow_numpy=False)


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data (tuples become lists), or raise ``_NotJSON``."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _NotJSON
        return value
    if depth >= MAX_ARG_DEPTH:
        raise _NotJSON
    if kind is list or kind is tuple:
        return [_jsonable(v, depth + 1) for v in value]
    if kind is dict:
        if not all(type(k) is str for k in value):
            raise _NotJSON
        return {k: _jsonable(v, depth + 1) for k, v in value.items()}
    raise _NotJSON


def _value_loader(serializer: Serializer) -> Callable[[bytes], Any]:
    """How to decode a result for its JSON form.

    Pickles are decoded by the restricted unpickler: JSON data needs only builtins, and a
    store shared with others must not make this server run pickled code. Other
    serializers decode as ``Client.get`` would.
    """
    if isinstance(serializer, PickleSerializer | SafePickleSerializer):
        return _PLAIN_PICKLE.loads
    return serializer.loads


def _encode(data: bytes, loads: Callable[[bytes], Any], blob_hash: str) -> EncodedResult:
    """``result`` when the value is JSON data, and always the serializer's bytes in base64."""
    try:
        value, is_json = _jsonable(loads(data)), True
    except (_NotJSON, pickle.UnpicklingError):  # not plain data: base64 only
        value, is_json = None, False
    except Exception as exc:  # bytes this server's serializer cannot load
        log.warning("result %s does not deserialize: %s", blob_hash[:12], type(exc).__name__)
        value, is_json = None, False
    return EncodedResult(value, is_json, base64.b64encode(data).decode("ascii"), len(data))


class ResultEncoder:
    """Encodes result blobs for responses; remembers the encoding of small ones.

    A blob never changes (its name is its hash, verified on the first read), so a hot
    result is answered without reading or decoding it again.
    """

    MAX_ENTRIES = 2048
    MAX_BYTES = 4096

    def __init__(self, serializer: Serializer) -> None:
        self.loads = _value_loader(serializer)
        self._cache: BoundedCache[str, EncodedResult] = BoundedCache(self.MAX_ENTRIES)
        self._lock = threading.Lock()

    def cached(self, blob_hash: str) -> EncodedResult | None:
        """The remembered encoding of this blob, or ``None``."""
        return self._cache.get(blob_hash)

    def encode(self, blob_hash: str, data: bytes) -> EncodedResult:
        """Encode ``data`` (the blob ``blob_hash``), remembering it when small."""
        encoded = _encode(data, self.loads, blob_hash)
        if len(data) <= self.MAX_BYTES:
            with self._lock:
                self._cache.put(blob_hash, encoded)
        return encoded
