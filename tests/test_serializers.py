"""Serializers: round trips, and the SafePickle allowlist refusing code-running pickles."""

from __future__ import annotations

import datetime as dt
import os
import pickle
from decimal import Decimal
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Any
from uuid import UUID

import numpy as np
import pytest

from cashet import JsonSerializer, PickleSerializer, SafePickleSerializer, Serializer


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class Evil:
    def __reduce__(self) -> Any:
        return (os.system, ("echo pwned",))


PLAIN: list[Any] = [
    None,
    True,
    3,
    2.5,
    1 + 2j,
    "text",
    b"bytes",
    bytearray(b"ba"),
    [1, [2]],
    (1, (2,)),
    {"a": {1, 2}},
    frozenset({3}),
    dt.datetime(2024, 5, 1, 10, 32, tzinfo=dt.UTC),
    dt.date(2024, 1, 1),
    dt.timedelta(seconds=5),
    Decimal("1.10"),
    Fraction(1, 3),
    UUID(int=5),
    range(3),
    slice(1, 2),
]


def test_safe_pickle_blocks_paths_unless_allowed() -> None:
    # as the published SafePickleSerializer: a path is not plain data by default
    with pytest.raises(pickle.UnpicklingError, match=r"Blocked class pathlib\.PurePosixPath"):
        SafePickleSerializer().loads(pickle.dumps(PurePosixPath("/a/b")))
    allowing = SafePickleSerializer(extra_classes=[PurePosixPath])
    assert allowing.loads(allowing.dumps(PurePosixPath("/a/b"))) == PurePosixPath("/a/b")


@pytest.mark.parametrize("value", PLAIN, ids=lambda v: type(v).__name__)
def test_safe_pickle_round_trips_plain_data(value: Any) -> None:
    s = SafePickleSerializer()
    assert s.loads(s.dumps(value)) == value


def test_safe_pickle_loads_numpy_arrays_and_scalars() -> None:
    s = SafePickleSerializer()
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = s.loads(s.dumps(arr))
    assert out.dtype == arr.dtype and np.array_equal(out, arr)
    assert s.loads(s.dumps(np.int64(7))) == 7
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        SafePickleSerializer(allow_numpy=False).loads(s.dumps(arr))


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(Evil()),
        pickle.dumps(object()),
        pickle.dumps(type),
        pickle.dumps(Point(1, 2)),
        b"cbuiltins\neval\n(S'1+1'\ntR.",
        b"cbuiltins\ngetattr\n(cbuiltins\nobject\nS'__subclasses__'\ntR.",
    ],
)
def test_safe_pickle_refuses_gadgets_and_unknown_classes(payload: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError, match="Blocked class"):
        SafePickleSerializer().loads(payload)


def test_safe_pickle_extra_classes() -> None:
    s = SafePickleSerializer(extra_classes=[Point])
    p = s.loads(s.dumps(Point(1, 2)))
    assert (p.x, p.y) == (1, 2)
    with pytest.raises(ValueError, match="refusing"):
        SafePickleSerializer(extra_classes=[object])
    with pytest.raises(ValueError, match="refusing"):
        SafePickleSerializer(extra_classes=[type])
    with pytest.raises(TypeError):
        SafePickleSerializer(extra_classes=["Point"])  # type: ignore[list-item]


def test_pickle_serializer_protocol_5_by_default() -> None:
    s = PickleSerializer()
    data = s.dumps({"x": 1})
    assert data[:2] == b"\x80\x05"
    assert s.loads(data) == {"x": 1}
    with pytest.raises(ValueError):
        PickleSerializer(protocol=99)


def test_json_serializer() -> None:
    s = JsonSerializer()
    assert s.loads(s.dumps({"a": [1, 2.5, None, "é"]})) == {"a": [1, 2.5, None, "é"]}
    assert s.loads(s.dumps((1, 2))) == [1, 2]
    with pytest.raises(TypeError, match="JsonSerializer"):
        s.dumps({1, 2})


def test_all_satisfy_the_protocol() -> None:
    for s in (PickleSerializer(), SafePickleSerializer(), JsonSerializer()):
        assert isinstance(s, Serializer)
