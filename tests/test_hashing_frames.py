"""pandas frames: string columns hashed as one block, and the traps a fast path could fall in.

Any two frames that differ in a value, dtype, column name/order or index must hash
differently; equal frames (copies, slices, other memory layouts) equally.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import cashet.hashing.columns
from cashet.hashing import hash_args, hash_value


def all_distinct(values: list[Any]) -> None:
    digests = [hash_value(v) for v in values]
    for (i, a), (j, b) in itertools.combinations(enumerate(digests), 2):
        assert a != b, f"{values[i]!r} and {values[j]!r} hash the same"


def kinds_frame(rows: int = 200) -> pd.DataFrame:
    """One column of each kind a frame commonly holds."""
    return pd.DataFrame(
        {
            "f": np.linspace(0.0, 1.0, rows),
            "i": np.arange(rows, dtype=np.int64),
            "b": np.arange(rows) % 3 == 0,
            "s": pd.array([f"v{i}" for i in range(rows)], dtype="str"),
            "sn": pd.array([None if i % 7 == 0 else f"w{i}" for i in range(rows)], dtype="str"),
            "o": pd.Series([f"o{i}" for i in range(rows)], dtype=object),
            "mix": pd.Series([i if i % 2 else f"m{i}" for i in range(rows)], dtype=object),
            "c": pd.Categorical(["a", "b", "c", "a"] * (rows // 4)),
            "t": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "tz": pd.date_range("2024-01-01", periods=rows, freq="h", tz="Europe/Paris"),
            "I": pd.array([None if i % 5 == 0 else i for i in range(rows)], dtype="Int64"),
        }
    )


#: a changed value for row 10 of each column of kinds_frame()
CHANGED = {
    "f": 0.5,
    "i": -1,
    "b": True,
    "s": "v1O",
    "sn": "x",
    "o": "o10 ",
    "mix": 10,
    "c": "a",
    "t": pd.Timestamp("2030-01-01"),
    "tz": pd.Timestamp("2030-01-01", tz="Europe/Paris"),
    "I": 99,
}


def test_equal_frames_hash_equal() -> None:
    df = kinds_frame()
    assert hash_value(df) == hash_value(df.copy(deep=True)) == hash_value(kinds_frame())
    assert hash_value(df.iloc[::2]) == hash_value(df.iloc[::2].copy(deep=True))
    assert hash_value(df.iloc[5:50]) == hash_value(df.iloc[5:50].copy(deep=True))


@pytest.mark.parametrize("column", list(CHANGED))
def test_one_cell_changed_in_each_kind_of_column(column: str) -> None:
    df = kinds_frame()
    changed = df.copy(deep=True)
    assert hash_value(changed) == hash_value(df)
    changed.loc[10, column] = CHANGED[column]
    assert hash_value(changed) != hash_value(df)


@pytest.mark.parametrize("dtype", [object, "str", "string"])
def test_string_splits_separators_and_unicode(dtype: Any) -> None:
    def s(values: list[str]) -> pd.Series:
        return pd.Series(values, dtype=dtype)

    all_distinct(
        [
            s(["ab", "c"]),
            s(["a", "bc"]),
            s(["abc", ""]),
            s(["", "abc"]),
            s(["a\0b", "c"]),
            s(["a", "b\0c"]),
            s(["a\0", "bc"]),
            s(["a", "\0bc"]),
            s(["\0", ""]),
            s(["", "\0"]),
            s(["", ""]),
            s(["é", "x"]),
            s(["e\u0301", "x"]),
            s(["\U0001f600", "x"]),
            s(["\ud83d\ude00", "x"]),  # the same emoji as a surrogate pair: not equal
        ]
    )
    assert hash_value(s(["a\0b", "\0"])) == hash_value(s(["a\0b", "\0"]))


def test_long_string_column_one_change() -> None:
    values = [f"label-{i % 997}" for i in range(100_000)]  # text well past the direct-feed size
    base = hash_value(pd.Series(values))
    assert hash_value(pd.Series(list(values))) == base
    values[54_321] = "label-X"
    assert hash_value(pd.Series(values)) != base
    with_nul = [f"label-{i % 997}" for i in range(100_000)]
    with_nul[7] = "label\0-7"
    assert hash_value(pd.Series(with_nul)) != base


@pytest.mark.parametrize("dtype", [object, "str", "string"])
def test_missing_values_are_not_strings(dtype: Any) -> None:
    all_distinct(
        [
            pd.Series(["a", "None"], dtype=dtype),
            pd.Series(["a", "nan"], dtype=dtype),
            pd.Series(["a", "<NA>"], dtype=dtype),
            pd.Series(["a", ""], dtype=dtype),
            pd.Series(["a", None], dtype=dtype),
            pd.Series([None, "a"], dtype=dtype),
        ]
    )


def test_missing_kinds_in_object_columns() -> None:
    all_distinct(
        [
            pd.Series(["a", None], dtype=object),
            pd.Series(["a", np.nan], dtype=object),
            pd.Series(["a", pd.NA], dtype=object),
            pd.Series(["a", pd.NaT], dtype=object),
            pd.Series(["a", 1.5], dtype=object),
            pd.Series(["a", "1.5"], dtype=object),
            pd.Series(["a", 1], dtype=object),
            pd.Series(["a", True], dtype=object),
            pd.Series(["a", b"a"], dtype=object),
            pd.Series([None, "a"], dtype=object),
        ]
    )
    assert hash_value(pd.Series(["a", None, "b"], dtype=object)) == hash_value(
        pd.Series(["a", None, "b"], dtype=object).copy(deep=True)
    )


class Tagged(str):
    """A str subclass: its values must not pass for plain strings."""


def test_str_subclasses_are_not_plain_strings() -> None:
    plain = pd.Series(["a", "b"], dtype=object)
    all_distinct(
        [
            plain,
            pd.Series([np.str_("a"), "b"], dtype=object),
            pd.Series([Tagged("a"), "b"], dtype=object),
            pd.Series(["a", Tagged("b")], dtype=object),
        ]
    )
    # pandas keeps np.str_ values in a str-dtype column too
    assert hash_value(pd.array([np.str_("a"), "b"], dtype="str")) != hash_value(
        pd.array(["a", "b"], dtype="str")
    )


def test_string_dtypes_differ() -> None:
    values = ["a", "b", None]
    all_distinct([pd.Series(values, dtype=d) for d in (object, "str", "string")])
    all_distinct([pd.Series(["a", "b"], dtype=d) for d in (object, "str", "string", "category")])


def test_categorical() -> None:
    c = pd.Categorical(["a", "b", "a"])
    assert hash_value(pd.Series(c)) == hash_value(pd.Series(pd.Categorical(["a", "b", "a"])))
    all_distinct(
        [
            pd.Series(c),
            pd.Series(pd.Categorical(["a", "b", "b"])),
            pd.Series(pd.Categorical(["a", "b", "a"], categories=["b", "a"])),
            pd.Series(pd.Categorical(["a", "b", "a"], ordered=True)),
            pd.Series(pd.Categorical(["a", "b", "a"], categories=["a", "b", "c"])),
            pd.Series(["a", "b", "a"]),
        ]
    )


def test_datetimes_with_and_without_tz() -> None:
    naive = pd.date_range("2024-01-01", periods=3, freq="D")
    all_distinct(
        [
            pd.Series(naive),
            pd.Series(naive.tz_localize("UTC")),
            pd.Series(naive.tz_localize("Europe/Paris")),
            pd.Series(naive.tz_localize("UTC").tz_convert("Europe/Paris")),  # same instants
            pd.Series(naive.as_unit("s")),
        ]
    )


def test_column_names_order_and_duplicates() -> None:
    df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    dup = pd.DataFrame([[1, 3], [2, 4]], columns=["a", "a"])
    assert hash_value(dup) == hash_value(dup.copy(deep=True))
    all_distinct(
        [
            df,
            df[["b", "a"]],
            df.rename(columns={"b": "c"}),
            dup,
            pd.DataFrame([[3, 1], [4, 2]], columns=["a", "a"]),
            pd.DataFrame([[1, 3.0], [2, 4.0]], columns=["a", "a"]),
            pd.DataFrame({"a": ["1", "2"], "b": [3, 4]}),
        ]
    )


def test_index_values_name_and_type() -> None:
    df = pd.DataFrame({"v": [1.0, 2.0, 3.0]})
    all_distinct(
        [
            df,
            df.set_axis([0, 1, 3]),
            df.set_axis(pd.Index([0, 1, 2], name="k")),
            df.set_axis(pd.Index([0, 1, 2], dtype="int32")),
            df.set_axis(pd.Index([0.0, 1.0, 2.0])),
            df.set_axis(pd.Index(["0", "1", "2"])),
            df.set_axis(pd.Index(["0", "1", "2"], dtype=object)),
            df.set_axis(pd.Index(["0", "1\0", "2"])),
            df.set_axis(pd.MultiIndex.from_arrays([[0, 1, 2], ["x", "y", "z"]])),
        ]
    )
    # a RangeIndex and the same values as an Index are different types: different keys
    assert hash_value(df) != hash_value(df.set_axis(pd.Index([0, 1, 2])))


def test_layouts_of_equal_values_hash_equal() -> None:
    block = np.arange(30, dtype=np.float64).reshape(10, 3)
    from_block = pd.DataFrame(block, columns=["a", "b", "c"])  # columns are strided views
    from_dict = pd.DataFrame({k: block[:, j].copy() for j, k in enumerate("abc")})
    fortran = pd.DataFrame(np.asfortranarray(block), columns=["a", "b", "c"])
    assert hash_value(from_block) == hash_value(from_dict) == hash_value(fortran)
    sliced = from_block.iloc[1:8:3, ::2]
    assert hash_value(sliced) == hash_value(sliced.copy(deep=True))
    assert hash_value(sliced) != hash_value(from_block.iloc[1:8:3, :2])


#: Pins the encoding of a frame with the string fast paths (pure, NUL, missing) and a mixed
#: column: change it only on purpose, with a note in docs/cache-keys.md.
GOLDEN_FRAME = "c3663b523d326a92dc58d3da3e7bc29a060fc1f5014e1975073aeb7a90587941"


def golden_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": np.arange(4, dtype=np.float64),
            "s": pd.array(["a", "bc", "", "é"], dtype="str"),
            "nul": pd.Series(["a\0", "b", "", "c"], dtype=object),
            "na": pd.array(["a", None, "b", None], dtype="str"),
            "mix": pd.Series(["a", 1, None, 2.5], dtype=object),
        },
        index=pd.Index(["r0", "r1", "r2", "r3"], name="row"),
    )


def test_golden_frame_digest() -> None:
    assert hash_value(golden_frame()) == GOLDEN_FRAME


# --- the text path (pickled in one pass) and the frame's sink (buffers hashed on a thread) -------


def test_text_missing_markers_are_not_strings() -> None:
    all_distinct(
        [
            pd.Series(["a", pd.NA], dtype="string"),
            pd.Series(["a", "pandas.NA"], dtype="string"),
            pd.Series(["a", pd.NA], dtype=object),
            pd.Series(["a", "pandas.NA"], dtype=object),
            pd.Series([None, None], dtype=object),
            pd.Series([np.nan, np.nan], dtype=object),
            pd.Series([np.nan, None], dtype=object),
            pd.Series([np.float64("nan"), None], dtype=object),  # a float subclass
            pd.Series(["a", -0.0], dtype=object),
            pd.Series(["a", 0.0], dtype=object),
        ]
    )


@pytest.mark.parametrize("dtype", [object, "str", "string"])
def test_text_digest_does_not_depend_on_object_identity(dtype: Any) -> None:
    shared = "".join(["a", "b"])  # one object three times, then three equal objects
    distinct = ["".join(["a", "b"]) for _ in range(3)]
    assert distinct[0] is not distinct[1]
    assert hash_value(pd.Series([shared] * 3, dtype=dtype)) == hash_value(
        pd.Series(distinct, dtype=dtype)
    )


def test_str_subclass_in_a_string_array_is_not_a_plain_string() -> None:
    plain = pd.array(["a", "b"], dtype="string")
    tagged = pd.array(["a", "b"], dtype="string")
    tagged._ndarray[0] = Tagged("a")  # pandas keeps str subclasses; make sure of it here
    assert type(tagged._ndarray[0]) is Tagged
    assert hash_value(tagged) != hash_value(plain)
    assert hash_value(pd.DataFrame({"s": tagged})) != hash_value(pd.DataFrame({"s": plain}))


def test_containers_in_object_columns_keep_their_encoding() -> None:
    # not text: a set's iteration order is not canonical, so it must not be pickled
    a = pd.Series([{"x", "y"}, "s"], dtype=object)
    b = pd.Series([{"y", "x"}, "s"], dtype=object)
    assert hash_value(a) == hash_value(b)
    all_distinct([a, pd.Series([["x", "y"], "s"], dtype=object), pd.Series([("x", "y"), "s"])])


def test_object_columns_and_buffers_do_not_trade_places() -> None:
    # the frame encodes object columns after the others: their place is still part of it
    all_distinct(
        [
            pd.DataFrame([["a", 1.0]], columns=["c", "c"]),
            pd.DataFrame([[1.0, "a"]], columns=["c", "c"]),
            pd.DataFrame({"x": [5, 6, 7]}, index=pd.Index([0, 1, 2])),
            pd.DataFrame({"x": [0, 1, 2]}, index=pd.Index([5, 6, 7])),
            pd.DataFrame({"x": [0, 1, 2], "y": [5, 6, 7]}),
            pd.DataFrame({"x": [0, 1, 5], "y": [2, 6, 7]}),
            pd.DataFrame({"s": ["a", "b"], "t": ["c", "d"]}),
            pd.DataFrame({"s": ["a", "b", "c"], "t": ["d", "e", "f"]}).iloc[:2],
        ]
    )


def big_frame(rows: int = 300_000) -> pd.DataFrame:
    """Buffers past the sink's thread threshold, and a text column."""
    rng = np.random.default_rng(7)
    block = rng.random((rows, 3))
    df = pd.DataFrame(block, columns=["a", "b", "c"])
    df["n"] = np.arange(rows)
    df["s"] = pd.array([f"s{i % 97}" for i in range(rows)], dtype="str")
    return df


def test_sink_on_a_thread_or_not_gives_one_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    df = big_frame()
    assert df.memory_usage(index=False).sum() > 2 * cashet.hashing.columns.THREAD_MIN
    threaded = hash_value(df)
    monkeypatch.setattr(cashet.hashing.columns, "THREAD_MIN", 1 << 62)
    assert hash_value(df) == threaded
    assert hash_value(df.copy(deep=True)) == threaded
    # columns one by one (no shared block), in another order then back
    by_column = pd.DataFrame({k: df[k].to_numpy().copy() for k in df.columns})
    by_column["s"] = df["s"].copy()
    assert hash_value(by_column) == threaded
    assert hash_value(df[["c", "b", "a", "n", "s"]][["a", "b", "c", "n", "s"]]) == threaded
    assert hash_value(df[["b", "a", "c", "n", "s"]]) != threaded
    changed = df.copy(deep=True)
    changed.iloc[-1, 2] = 0.5
    assert hash_value(changed) != threaded


def test_unhashable_value_in_an_object_column_names_the_column() -> None:
    df = pd.DataFrame({"x": np.arange(3.0), "o": pd.Series([1, threading.Lock(), 2], dtype=object)})
    with pytest.raises(TypeError, match=r"\.iloc\[:, 1\]\[1\]\) of type _thread\.lock"):
        hash_args((df,), {})


def test_unhashable_object_column_after_the_sink_started_leaves_no_thread() -> None:
    df = big_frame(300_000)
    df["o"] = pd.Series([threading.Lock()] + [1] * (len(df) - 1), dtype=object)
    with pytest.raises(TypeError, match=r"\.iloc\[:, 5\]\[0\]\) of type _thread\.lock"):
        hash_value(df)
    # (by name: other tests' threads may end meanwhile, so a count would be flaky)
    assert not [t for t in threading.enumerate() if t.name == "cashet-hash"]
    assert hash_value(df.drop(columns="o")) == hash_value(big_frame(300_000))


_CROSS = """
import sys
import numpy as np
import pandas as pd
sys.path.insert(0, sys.argv[1])
from test_hashing_frames import big_frame, golden_frame, kinds_frame
from cashet.hashing import hash_value
print(hash_value(kinds_frame()), hash_value(big_frame(50_000)), hash_value(golden_frame()))
"""


def test_frame_digests_equal_across_processes() -> None:
    here = hash_value(kinds_frame()), hash_value(big_frame(50_000)), GOLDEN_FRAME
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONDONTWRITEBYTECODE="1")
        out = subprocess.run(
            [sys.executable, "-c", _CROSS, str(Path(__file__).parent)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert tuple(out) == here
