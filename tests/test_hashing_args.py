"""Argument encoding: golden digests, properties, and the known traps."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime as dt
import decimal
import enum
import fractions
import functools
import math
import pathlib
import threading
import uuid
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from cashet.hashing import args_snapshot, hash_args, hash_bytes, hash_value
from cashet.hashing import encoder as _encoder
from cashet.models import AsyncResultRef, Commit, ObjectRef, ResultRef, TaskDef, TaskStatus


class Color(enum.Enum):
    RED = 1
    BLUE = "blue"


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass
class Config:
    name: str
    layers: list[int]


class Plain:
    def __init__(self, a: Any) -> None:
        self.a = a

    def get(self) -> Any:
        return self.a


class Slotted:
    __slots__ = ("p", "q")

    def __init__(self, p: Any) -> None:
        self.p = p


class Hooked:
    def __init__(self, key: Any, noise: Any) -> None:
        self.key = key
        self.noise = noise

    def __cashet_hash__(self) -> Any:
        return self.key


@dataclasses.dataclass
class HookedData:
    key: int
    noise: int

    def __cashet_hash__(self) -> Any:
        return ("v1", self.key)


# --- golden digests: these pin the encoding format; never update them casually ---------------


def golden_values() -> list[Any]:
    return [
        None,
        True,
        -1,
        2**70,
        1.5,
        float("nan"),
        "héllo",
        b"\x00\x01",
        (1, "a"),
        [1, [2.0]],
        {"b": 1, "a": [True, None]},
        {3: "x", "k": b"y"},
        {3, 1, 2},
        frozenset({"a", 1}),
        decimal.Decimal("1.10"),
        fractions.Fraction(1, 3),
        dt.datetime(2024, 1, 1, 12, 30, tzinfo=dt.UTC),
        dt.date(2024, 1, 1),
        dt.timedelta(days=1, seconds=2),
        uuid.UUID(int=7),
        pathlib.PurePosixPath("/a/b"),
        range(1, 10, 2),
        Color.RED,
        Point(1, 2),
        Config("m", [1, 2]),
        np.arange(6, dtype="<i8").reshape(2, 3),
        np.float32(1.5),
    ]


# 22-24 (a user enum, namedtuple and dataclass) changed on purpose with issue 11: the class of
# a value the user wrote is tagged by its name *and* its code (methods, class-level values).
GOLDEN_DIGESTS: list[str] = [
    "ca819950d082da399899a15ce77cc69467f3434ae340c684ed32eef3303c4cfd",  # 0
    "9cd4908cc9dcca19baf8e83e3289e9a9023c8bca6fba6145f0141fa43d20aa14",  # 1
    "d59fabd58a0ceb1047a74d65073b12f09e84a6411357868a12a550db6c3e4907",  # 2
    "40c0eefa73646b4e8d71582631f37f773f60a43f61787a1d0b363631606e1a40",  # 3
    "efad502dbcde41d24b8356c2c42b87580fa24ba2930e766726382760c6c7aa83",  # 4
    "62d62fd5ac8476976c87f2e5b177f3b27c79dbdb268073ebce28c33846961754",  # 5
    "056581bacd2cf3976af514a8e2086405db29326b898f57014107a916a12b1d3a",  # 6
    "9a6fdf7ba0142e9caf97b97cbc7d093abfa7405cff63925663ee4dcd94247053",  # 7
    "6d38677a8ce5e9c7594767bfcc860de06c4c7aafb4dc086f6b1e84687058d549",  # 8
    "ac627d7ae1b80cfe59b17f4f1e3434510c3c3b50e51265b137854841b894c997",  # 9
    "a1e7233e8f062bfc5d88ea188fb7d772f9d73faf09b1e43f5cc4f663591551b4",  # 10
    "7a4cd3eef09614954bbfea77da34e5a73397e379f4fce118ba9c4e9d7518c328",  # 11
    "e4e4c7f37d845fd907b61671c416fce1edd9d383178529b5dcd50f63882ecd1e",  # 12
    "c40168b25ceacb57aed74de435b95e4c3c8960c85993730005aff86e21529a9f",  # 13
    "c8907cb57dd8cf6028d444316b6b98c98b95ccff5cfc82e1434590d92daa4721",  # 14
    "34c71e12c24d1f2b83747b419f78d3294d0550fbc4f8737ee5ee2420cb3446ed",  # 15
    "3d09f94c41b14de6d566fc3c8711eb455eba3e44f87a8bd617af64a39cbb3143",  # 16
    "324d23e2fa6349ec3d80605d7e37d129b5ad1cfe8cf8f7c3146c36d183af0f8f",  # 17
    "4db934bca786cc4ce42637c1b9e53797458318bb54b508b71fb0ae4f12122cc6",  # 18
    "b47397b4158f443b82006f3bb018f21c86b4bfc22b1bb6cbe6c98442450173c2",  # 19
    "4619eb8dc4b86b15f0f0635fa6bb1cac6b2951088b577475e3e5b757d96612aa",  # 20
    "5cd027cfa08ecf7a5fb18bfae9ea49e206e077e9b9c873706a5a98aff852e0bd",  # 21
    "e288adf2a5d55c819d836cb5bc276963fb7541e2494970d2fe542da3a865243e",  # 22
    "834eff7b6bc75128c3fdfae40890844b2f0d46caa395462a7fdf967dab53ec69",  # 23
    "ab162ddf3de4c728ea2c721c58aa8e565a8a40cf5bf273e8426f876ffd6ea8b4",  # 24
    "616292d7f769ed9eaf6cc669b8fee70eb2a8d4579d518070675682e30980e3be",  # 25
    "027c8bdc9e37ad0b43e89063dfa2219c594b26874c7f707ca9f71491b0abb09e",  # 26
]
GOLDEN_ARGS = "8e878aae46a272768b8b2638383302306dd0dcaebac89adbf970980abdd06044"


def test_golden_digests() -> None:
    got = [hash_value(v) for v in golden_values()]
    assert got == GOLDEN_DIGESTS
    assert hash_args(("2024-01-01",), {"model": "v3"}) == GOLDEN_ARGS


def test_tags_are_unique() -> None:
    tags = list(_encoder.TAGS.values())
    assert all(len(t) == 1 for t in tags)
    assert len(set(tags)) == len(tags)


def test_digest_shape_and_hash_bytes() -> None:
    h = hash_args((1,), {})
    assert len(h) == 64 and int(h, 16) >= 0 and h == h.lower()
    assert hash_bytes(b"abc") == blake3(b"abc").hexdigest()
    big = bytes(range(256)) * (40 << 12)  # 10 MiB: the multithreaded path
    assert hash_bytes(big) == blake3(big).hexdigest()
    assert hash_bytes(memoryview(big)) == hash_bytes(big)


# --- distinctions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (True, 1),
        (1, 1.0),
        (True, 1.0),
        (0, False),
        ((1,), [1]),
        ((), []),
        ([], {}),
        (set(), frozenset()),
        ({1}, [1]),
        (Point(1, 2), (1, 2)),
        ("a", b"a"),
        (b"a", bytearray(b"a")),
        (-0.0, 0.0),
        (None, "None"),
        (1, "1"),
        ([1, 2], [[1, 2]]),
        (["ab"], ["a", "b"]),
        ({"a": 1}, {"a": 1.0}),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
        (Color.RED, 1),
        (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        (pathlib.PurePosixPath("a"), "a"),
        (pathlib.PurePosixPath("a"), pathlib.PosixPath("a")),
        (int, "builtins.int"),
        (Plain(1), Plain(2)),
        (Slotted(1), Slotted(2)),
        (Config("a", [1]), Config("a", [2])),
        (collections.OrderedDict(a=1, b=2), collections.OrderedDict(b=2, a=1)),
        (collections.Counter("ab"), {"a": 1, "b": 1}),
        (2**64, 2**64 + 1),
        (-(2**63), -(2**63) - 1),
        (list(range(20)), [*range(19), 20]),
        ([0.5] * 20, [0.5] * 19 + [0.25]),
        (list(range(20)), tuple(range(20))),
        (1 + 2j, 1 - 2j),
        (math.sqrt, math.cos),
        ({1: "a", "1": "a"}, {1: "a", "2": "a"}),
    ],
)
def test_values_that_must_differ(a: Any, b: Any) -> None:
    assert hash_value(a) != hash_value(b)


def test_nan_and_zero() -> None:
    nan = float("nan")
    assert hash_value(nan) == hash_value(-nan) == hash_value(float("inf") - float("inf"))
    assert hash_value([nan] * 20) == hash_value([-nan] * 20)  # the packed path too
    assert hash_value(complex(nan, 1)) == hash_value(complex(-nan, 1))
    assert hash_value(-0.0) != hash_value(0.0)  # deliberate: copysign/1/x tell them apart


def test_equal_values_that_must_match() -> None:
    assert hash_value({"a": 1, "b": 2}) == hash_value({"b": 2, "a": 1})
    assert hash_value({1: "x", "k": [1]}) == hash_value({"k": [1], 1: "x"})
    assert hash_value({3, "a", (1, 2)}) == hash_value({(1, 2), "a", 3})
    assert hash_value(collections.Counter("aab")) == hash_value(collections.Counter("baa"))
    assert hash_value(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) == hash_value(
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(0), "UTC"))
    )
    assert hash_args((1,), {"a": 1, "b": 2}) == hash_args((1,), {"b": 2, "a": 1})
    assert hash_args((1,), {}) != hash_args((), {"x": 1})


def test_self_reference_is_encoded_as_backref() -> None:
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [1]
    b.append(b)
    assert hash_value(a) == hash_value(b)
    assert hash_value(a) != hash_value([1, [1]])
    d: dict[str, Any] = {}
    d["me"] = d
    assert hash_value(d) == hash_value(d)
    node = Plain(None)
    node.a = node
    assert hash_value(node) == hash_value(node)
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = arr, 1
    assert hash_value(arr) == hash_value(arr)
    shared = [1]
    assert hash_value([shared, shared]) == hash_value([[1], [1]])  # sharing is not a cycle


def test_large_bytes_switch_is_consistent() -> None:
    n = 8 << 20
    a = bytes(n)
    assert hash_value(a) == hash_value(bytes(n))
    assert hash_value(a) != hash_value(bytes(n - 1) + b"\x01")
    assert hash_value(a) != hash_value(bytearray(a))
    assert hash_value(memoryview(a)) == hash_value(memoryview(bytes(n)))


# --- Hypothesis --------------------------------------------------------------------------------

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=25,
)
keys = st.integers() | st.text(max_size=5) | st.tuples(st.integers())


@settings(deadline=None)  # a shared, loaded machine: no timing assertions
@given(json_like)
def test_deepcopy_hashes_the_same(x: Any) -> None:
    assert hash_value(x) == hash_value(copy.deepcopy(x))


@settings(deadline=None)
@given(st.lists(st.tuples(keys, json_like), max_size=8, unique_by=lambda kv: kv[0]))
def test_dict_order_insensitive(items: list[tuple[Any, Any]]) -> None:
    assert hash_value(dict(items)) == hash_value(dict(reversed(items)))
    assert hash_args((), dict((str(k), v) for k, v in items)) == hash_args(
        (), dict((str(k), v) for k, v in reversed(items))
    )


@settings(deadline=None)
@given(st.lists(keys, max_size=10))
def test_set_order_insensitive(items: list[Any]) -> None:
    assert hash_value(set(items)) == hash_value(set(reversed(items)))
    assert hash_value(frozenset(items)) == hash_value(frozenset(reversed(items)))


@settings(deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=20))
def test_bool_is_not_int(bs: list[bool]) -> None:
    assert hash_value(bs) != hash_value([int(b) for b in bs])


@settings(deadline=None)
@given(st.lists(json_like, max_size=20))
def test_tuple_is_not_list(xs: list[Any]) -> None:
    assert hash_value(tuple(xs)) != hash_value(xs)


@settings(deadline=None)
@given(st.integers())
def test_ints_of_any_size(i: int) -> None:
    assert hash_value(i) != hash_value(i + 1)
    if abs(i) < 2**1000:  # float(i) exists
        assert hash_value(i) != hash_value(float(i))


# --- NumPy ---------------------------------------------------------------------------------------


def test_large_arrays_differing_in_one_element() -> None:
    a = np.arange(2_000_000, dtype=np.float64)
    b = a.copy()
    b[1_234_567] += 1
    assert hash_args((a,), {}) != hash_args((b,), {})
    assert hash_args((a,), {}) == hash_args((a.copy(),), {})


def test_non_contiguous_equals_contiguous_copy() -> None:
    a = np.arange(100, dtype=np.int32).reshape(10, 10)
    assert hash_value(a[::2, 1::3]) == hash_value(np.ascontiguousarray(a[::2, 1::3]))
    assert hash_value(a.T) == hash_value(a.T.copy())
    assert hash_value(np.asfortranarray(a)) == hash_value(a)


def test_dtype_and_shape_matter() -> None:
    z = [np.zeros(4, "<i4"), np.zeros(2, "<i8"), np.zeros((2, 2), "<i4"), np.zeros(4, "<u4")]
    assert len({hash_value(x) for x in z}) == 4
    assert hash_value(np.float64(1.0)) != hash_value(1.0)
    assert hash_value(np.float64(1.0)) != hash_value(np.float32(1.0))
    assert hash_value(np.array(1.0)) != hash_value(np.array([1.0]))


def test_numpy_special_dtypes() -> None:
    t = np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]")
    assert hash_value(t) == hash_value(t.copy())
    assert hash_value(t) != hash_value(t.astype("datetime64[us]"))
    objs = np.array([{"a": 1}, None, "x"], dtype=object)
    assert hash_value(objs) == hash_value(copy.deepcopy(objs))
    objs2 = objs.copy()
    objs2[0] = {"a": 2}
    assert hash_value(objs) != hash_value(objs2)
    aligned = np.dtype([("a", "u1"), ("b", "<f8")], align=True)  # 7 padding bytes
    s1 = np.zeros(3, aligned)
    s2 = np.frombuffer(bytes(range(48)), aligned).copy()
    s2["a"], s2["b"] = 0, 0.0
    assert hash_value(s1) == hash_value(s2)  # padding is not data
    s2["b"][1] = 1.0
    assert hash_value(s1) != hash_value(s2)
    m = np.ma.array([1, 2, 3], mask=[0, 1, 0])
    assert hash_value(m) != hash_value(np.ma.array([1, 2, 3], mask=[0, 0, 0]))
    assert hash_value(m) != hash_value(np.array([1, 2, 3]))


# --- pandas ---------------------------------------------------------------------------------------


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": np.arange(1000, dtype=np.float64),
            "n": np.arange(1000),
            "s": [f"row{i}" for i in range(1000)],
            "c": pd.Categorical(["a", "b"] * 500),
            "t": pd.date_range("2024-01-01", periods=1000, freq="h", tz="Europe/Paris"),
            "i": pd.array([1, None] * 500, dtype="Int64"),
        }
    )


def test_dataframe_copy_hits_and_changes_miss() -> None:
    df = frame()
    h = hash_value(df)
    assert hash_value(df.copy()) == h
    assert hash_value(df.copy(deep=True)) == h
    changed = df.copy()
    changed.loc[500, "x"] = -1.0
    assert hash_value(changed) != h
    changed = df.copy()
    changed.loc[3, "s"] = "other"
    assert hash_value(changed) != h
    assert hash_value(df.rename(columns={"x": "y"})) != h
    assert hash_value(df.astype({"n": "int32"})) != h
    assert hash_value(df.astype({"x": "float32"})) != h
    assert hash_value(df.set_axis(range(1, 1001))) != h
    assert hash_value(df[["n", "x", "s", "c", "t", "i"]]) != h  # column order
    t = df.copy()
    t["t"] = t["t"].dt.tz_convert("UTC")
    assert hash_value(t) != h


def test_series_index_and_missing_values() -> None:
    s = pd.Series([1.0, 2.0], index=["a", "b"], name="v")
    assert hash_value(s) == hash_value(s.copy())
    assert hash_value(s) != hash_value(s.rename("w"))
    assert hash_value(s) != hash_value(s.set_axis(["a", "c"]))
    mi = pd.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["k", "l"])
    assert hash_value(mi) == hash_value(mi.copy())
    assert hash_value(mi) != hash_value(mi.set_names(["k", "m"]))
    a = pd.array([1, 2], dtype="Int64")
    a[1] = pd.NA  # leaves 2 under the mask
    assert hash_value(a) == hash_value(pd.array([1, None], dtype="Int64"))
    assert hash_value(pd.NA) != hash_value(pd.NaT) != hash_value(None)
    ts = pd.Timestamp("2024-01-01 00:00:00.000000001")
    assert hash_value(ts) != hash_value(pd.Timestamp("2024-01-01"))
    assert hash_value(ts) != hash_value(ts.to_pydatetime(warn=False))


# --- objects, methods, hooks ------------------------------------------------------------------


def test_bound_method_instance_state_matters() -> None:
    obj = Plain(1)
    before = hash_args((obj.get,), {})
    assert hash_args((obj.get,), {}) == before
    obj.a = 2
    assert hash_args((obj.get,), {}) != before
    assert hash_args((Plain(2).get,), {}) == hash_args((obj.get,), {})


def test_functions_as_arguments() -> None:
    assert hash_value(math.sqrt) == hash_value(math.sqrt)
    assert hash_value(functools.partial(max, 1)) != hash_value(functools.partial(max, 2))
    assert hash_value(Plain.get) != hash_value(Plain(1).get)
    assert hash_value(len) != hash_value(abs)


def test_cashet_hash_hook() -> None:
    assert hash_value(Hooked(1, "x")) == hash_value(Hooked(1, threading.Lock()))
    assert hash_value(Hooked(1, "x")) != hash_value(Hooked(2, "x"))
    assert hash_value(HookedData(1, 2)) == hash_value(HookedData(1, 3))  # beats dataclass
    assert hash_value(Hooked(("v1", 1), 0)) != hash_value(HookedData(1, 0))  # class is tagged


def test_namedtuple_vs_tuple_vs_other_namedtuple() -> None:
    elsewhere = collections.namedtuple("Point", "x y", module="elsewhere")
    same_name = collections.namedtuple("Point", "x y")
    same_again = collections.namedtuple("Point", "x y")
    assert hash_value(Point(1, 2)) != hash_value((1, 2))
    assert hash_value(Point(1, 2)) != hash_value(elsewhere(1, 2))
    # user classes are identified by module + qualname + code (issue 11): same name and
    # same code, same tag; a different class body under the same name, another tag
    assert hash_value(same_name(1, 2)) == hash_value(same_again(1, 2))
    assert hash_value(Point(1, 2)) != hash_value(same_name(1, 2))


def test_unhashable_argument_names_position_and_type() -> None:
    with (
        open(__file__) as fh,
        pytest.raises(TypeError, match=r"argument 'cfg' \(kwargs\['cfg'\]\['fh'\]\)") as exc,
    ):
        hash_args((1,), {"cfg": {"fh": fh}})
    assert "_io.TextIOWrapper" in str(exc.value)
    assert "__cashet_hash__" in str(exc.value)
    with pytest.raises(TypeError, match=r"argument 1 \(args\[1\]\[2\]\.a\) of type _thread\.lock"):
        hash_args((0, [1, 2, Plain(threading.Lock())]), {})
    with pytest.raises(TypeError, match=r"of type generator"):
        hash_args(((x for x in ()),), {})
    with pytest.raises(TypeError, match=r"value \(value\.p\) of type _thread\.RLock"):
        hash_value(Slotted(threading.RLock()))


# --- ResultRef -----------------------------------------------------------------------------------


def make_ref(blob: str, cls: type = ResultRef) -> Any:
    def loader(ref: ObjectRef) -> Any:
        raise AssertionError("hashing must never load a result")

    commit = Commit(
        hash="c" * 64,
        task_def=TaskDef(func_name="f", func_hash="a" * 64, args_hash="b" * 64),
        status=TaskStatus.COMPLETED,
        created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        result=ObjectRef(hash=blob, size=3),
    )
    return cls(commit, loader)


def test_result_refs_hash_by_blob_and_are_collected() -> None:
    r1, r2 = make_ref("1" * 64), make_ref("2" * 64)
    refs: list[Any] = []
    h = hash_args((r1, {"deep": [r2]}), {"k": (r1,)}, refs)
    assert refs == [r1, r2, r1]
    assert hash_args((make_ref("1" * 64), {"deep": [r2]}), {"k": (r1,)}) == h
    assert hash_args((r2, {"deep": [r2]}), {"k": (r1,)}) != h
    assert hash_value(make_ref("1" * 64, AsyncResultRef)) == hash_value(r1)
    assert hash_value(r1) != hash_value("1" * 64)


# --- snapshot -------------------------------------------------------------------------------------


def test_args_snapshot() -> None:
    assert args_snapshot(("2024-01-01",), {"model": "v3"}) == "(('2024-01-01',), {'model': 'v3'})"
    ref = make_ref("ab12cd34ef56" + "0" * 52)
    assert args_snapshot((ref,), {}) == "((<ResultRef ab12cd34ef56>,), {})"
    big = args_snapshot((np.zeros((1000, 3)),), {})
    assert big == "((array(shape=(1000, 3), dtype=float64),), {})"
    assert "DataFrame(shape=(1000, 6))" in args_snapshot((frame(),), {})
    long = args_snapshot((list(range(10_000)), "x" * 10_000), {})
    assert len(long) < 500
    assert len(args_snapshot(("y" * 10_000,) * 50, {}, limit=300)) <= 300
    assert args_snapshot((b"z" * 10_000_000,), {}) == f"(({b'z' * 160!r}...,), {{}})"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert args_snapshot((Broken(),), {}) == "((<Broken>,), {})"


def test_dataclass_attributes_beyond_fields_but_not_cached_properties() -> None:
    @dataclasses.dataclass
    class P:
        a: int

        @functools.cached_property
        def double(self) -> int:
            return self.a * 2

    p, q = P(1), P(1)
    assert hash_value(p) == hash_value(q)
    p.extra = 2  # type: ignore[attr-defined]
    assert hash_value(p) != hash_value(q)
    q.extra = 2  # type: ignore[attr-defined]
    assert q.double == 2  # cached in __dict__: derived, not state
    assert hash_value(p) == hash_value(q)


def test_structured_dtype_layout_is_hashed() -> None:
    fields = [("a", "u1"), ("b", "<i8")]
    packed = np.zeros(2, dtype=np.dtype(fields))
    aligned = np.zeros(2, dtype=np.dtype(fields, align=True))
    assert hash_value(packed) != hash_value(aligned)
    assert hash_value(packed) == hash_value(np.zeros(2, dtype=np.dtype(fields)))
