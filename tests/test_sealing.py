"""The fast content JSON of a commit (hashing/sealing.py, issue 18: a faster miss) writes the
very text of ``json.dumps(_content_dict(c), sort_keys=True, ...)``, whose hash names the
commit: any difference would change commit hashes (archives and stores compare them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cashet.hashing.commits import (
    _content_dict,
    commit_from_json,
    commit_to_json,
    compute_commit_hash,
    seal_commit,
    verified_commit,
)
from cashet.hashing.sealing import content_json
from cashet.models import Commit, ObjectRef, TaskDef, TaskStatus


def reference(c: Commit) -> str:
    """The canonical content text as the hash has always been taken over."""
    return json.dumps(_content_dict(c), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Level(IntEnum):
    HIGH = 3


class Text(str):
    pass


def commit(**over: Any) -> Commit:
    td_over = {k[3:]: over.pop(k) for k in list(over) if k.startswith("td_")}
    td = TaskDef(
        **{
            "func_name": "f",
            "func_hash": "a" * 64,
            "args_hash": "b" * 64,
            "func_source": "def f(x):\n    return x + 1\n",
            "args_snapshot": "((5,), {})",
            "module": "w",
            **td_over,
        }
    )
    return Commit(
        **{
            "hash": "",
            "task_def": td,
            "status": TaskStatus.COMPLETED,
            "created_at": datetime(2026, 12, 7, 23, 8, 22, 711279, tzinfo=UTC),
            "result": ObjectRef("c" * 64, 5),
            "salt": "49c3266c5a1aeb8600000001",
            "compute_seconds": 3.977000005761511e-06,
            **over,
        }
    )


SHAPES: list[dict[str, Any]] = [
    {},
    {"result": None, "status": TaskStatus.FAILED, "error": 'Traceback\n  "quoted" \\ é 🎉\x00\x1f'},
    {"compute_seconds": None, "expires_at": datetime(2030, 1, 1, tzinfo=UTC)},
    {"compute_seconds": float("nan")},
    {"compute_seconds": float("inf")},
    {"compute_seconds": -0.0},
    {"compute_seconds": 1e300},
    {"compute_seconds": 7},
    {"compute_seconds": True},
    {"compute_seconds": Level.HIGH},
    {"compute_seconds": "3"},
    {"compute_seconds": [1, {"b": 2, "a": None}]},
    {"created_at": datetime(2026, 1, 1)},  # naive
    {"created_at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-3, minutes=-30)))},
    {"tags": {"z": "1", "a": "é", "m": '"'}, "td_tags": {"z": "1", "a": "2"}},
    {"input_hashes": ("d" * 64, "e" * 64), "parent_hash": "f" * 64},
    {"salt": Text("sub")},
    {"parent_hash": Text("p")},
    {"td_args_snapshot": b"((1,), {}) \xff"},
    {"td_args_snapshot": 12},
    {"td_cache": 1, "td_force": 0, "td_retries": Level.HIGH, "td_timeout": 2, "td_ttl": 0.5},
    {"td_timeout": float("-inf"), "td_ttl": float("nan")},
    {"td_func_source": "λ = '\u2028\u2029'\t\r\n" * 40, "td_module": ""},
    {
        "td_manifest": {
            "format": 1,
            "values": [{"owner": "m", "name": "K", "digest": "0" * 32, "preview": "'é'"}],
            "arguments": [{"name": "x", "digest": "1" * 32, "preview": "5", "default": True}],
            "packages": {"numpy": "2.0", "pandas": "2.2"},
            "python": "3.11.7 (CPython)",
            "code": [{"name": "w.f", "digest": "2" * 32}],
            "function": {"name": "w.f", "digest": "a" * 64},
            "x": {2: [1.5, None, True, {"k": float("inf")}], 1: "one", 0.5: 2},
        }
    },
    {"td_manifest": {"only": "odd keys", "nested": {"z": [], "a": {}}}},
]


@pytest.mark.parametrize("over", SHAPES, ids=range(len(SHAPES)))
def test_the_content_text_is_the_reference_text(over: dict[str, Any]) -> None:
    c = commit(**dict(over))
    assert content_json(c) == reference(c)


def test_a_sealed_commit_verifies_and_keeps_its_hash() -> None:
    c = commit(tags={"run": "1"})
    stored = seal_commit(c)
    assert c.hash == compute_commit_hash(c)
    assert verified_commit(stored, c.hash).hash == c.hash
    again = commit_from_json(commit_to_json(c))
    assert compute_commit_hash(again) == c.hash
    # the hash of this very commit, as it was before the fast text (archives compare them)
    assert c.hash == "ae79d4fc3f722d0cf907719a045238b430752701bb7e6c5ff14bd7a666202352"


def test_a_cycle_fails_as_the_encoder_says() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    c = commit(td_manifest={"loop": loop})
    with pytest.raises(ValueError, match="Circular"):
        content_json(c)
    with pytest.raises(ValueError, match="Circular"):
        reference(c)


def test_what_json_cannot_encode_fails_alike() -> None:
    c = commit(td_manifest={"x": object()})
    with pytest.raises(TypeError):
        reference(c)
    with pytest.raises(TypeError):
        content_json(c)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(),
    manifest=st.dictionaries(st.text(max_size=8), values, max_size=6),
    tags=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4),
    seconds=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers()),
    inputs=st.lists(st.text(max_size=8), max_size=3),
)
def test_any_content_is_written_as_the_reference_writes_it(
    text: str,
    manifest: dict[str, Any],
    tags: dict[str, str],
    seconds: float | None,
    inputs: list[str],
) -> None:
    c = commit(
        error=text,
        salt=text,
        tags=tags,
        compute_seconds=seconds,
        input_hashes=tuple(inputs),
        td_func_source=text,
        td_args_snapshot=text,
        td_tags=tags,
        td_manifest=manifest,
    )
    assert content_json(c) == reference(c)
