"""A cache hit decodes only what it reads (issue 18): ``hashing.lazy.decode_lazily`` reads
a verified commit's head (status, fingerprint, expiry, result) and leaves its task
definition's tail (source, manifest, module, options) to be decoded when first read; the
commit is always the one the whole text decodes to."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cashet import Client
from cashet.hashing.commits import (
    _content_json,
    commit_to_dict,
    decode_whole,
    seal_commit,
    verified_commit,
    verified_content,
)
from cashet.hashing.lazy import decode_lazily
from cashet.models import Commit, ObjectRef, TaskDef, TaskStatus

LAZY = ("func_source", "module", "retries", "timeout", "ttl", "tags", "manifest")


def _unset(td: TaskDef) -> set[str]:
    """The fields of ``td`` not decoded yet (read through their slots, decoding nothing)."""
    out = set()
    for name in LAZY:
        try:
            TaskDef.__dict__[name].__get__(td)
        except AttributeError:
            out.add(name)
    return out


def make(**over: object) -> Commit:
    td = TaskDef(
        func_name="f",
        func_hash="a" * 64,
        args_hash="b" * 64,
        func_source='def f(x):\n    return "\\"x\\"" + x  # ünïcode\n',
        args_snapshot="(('a\"b\\\\c\\n',), {})",
        module="mod",
        cache=True,
        retries=2,
        timeout=1.5,
        ttl=60.0,
        tags={"k": "v"},
        manifest={"function": {"name": "mod.f"}, "arguments": [{"name": "x", "preview": "1"}]},
    )
    fields: dict[str, object] = {
        "hash": "",
        "task_def": td,
        "status": TaskStatus.COMPLETED,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC),
        "result": ObjectRef("c" * 64, 12),
        "tags": {"team": "x", "status": "failed", "task_def": "y"},
        "compute_seconds": 0.25,
        "expires_at": datetime(2027, 1, 1, tzinfo=UTC),
        "input_hashes": ("d" * 64, "e" * 64),
        "salt": "s1",
    }
    fields.update(over)
    c = Commit(**fields)  # type: ignore[arg-type]
    c.sealed_json = seal_commit(c)
    return c


VARIANTS: list[dict[str, object]] = [
    {},
    {"result": None, "status": TaskStatus.FAILED, "error": 'boom "quoted"\n'},
    {"expires_at": None, "compute_seconds": None, "input_hashes": (), "tags": {}},
    {"parent_hash": "f" * 64, "compute_seconds": 3.0},
    {"compute_seconds": 1e-06},
]


@pytest.mark.parametrize("over", VARIANTS)
def test_a_lazy_commit_is_the_commit_decoded_whole(over: dict[str, object]) -> None:
    c = make(**over)
    content = _content_json(c)
    lazy = decode_lazily(content, c.hash)
    assert _unset(lazy.task_def) == set(LAZY)  # the head only, until asked
    whole = decode_whole(content, c.hash)
    assert lazy.fingerprint == whole.fingerprint and lazy.status is whole.status
    assert lazy.result == whole.result and lazy.expires_at == whole.expires_at
    assert _unset(lazy.task_def) == set(LAZY)  # what a hit reads decodes nothing more
    assert lazy.task_def.manifest == c.task_def.manifest  # the rest, when read
    assert _unset(lazy.task_def) == set()
    assert lazy == whole == c and commit_to_dict(lazy) == commit_to_dict(whole)


def test_every_way_of_reading_a_lazy_task_def_decodes_it() -> None:
    c = make()
    content = _content_json(c)
    readers: list[Callable[[TaskDef], object]] = [
        lambda td: td.func_source,
        lambda td: td.ttl,
        repr,
        lambda td: pickle.loads(pickle.dumps(td)),
        copy.deepcopy,
        lambda td: td == c.task_def,
    ]
    for read in readers:
        td = decode_lazily(content, c.hash).task_def
        read(td)
        assert _unset(td) == set() and td._pending is None  # set None once decoded
        assert td == c.task_def
    td = decode_lazily(content, c.hash).task_def
    restored = pickle.loads(pickle.dumps(td))
    assert restored == c.task_def and getattr(restored, "_pending", None) is None


def test_a_field_set_before_the_rest_is_decoded_is_kept() -> None:
    c = make()
    td = decode_lazily(_content_json(c), c.hash).task_def
    td.ttl = 5.0
    assert td.func_source == c.task_def.func_source  # decodes the rest...
    assert td.ttl == 5.0  # ...without undoing what was set
    with pytest.raises(AttributeError):
        td.no_such_field  # type: ignore[attr-defined]  # noqa: B018


def test_text_not_in_the_canonical_form_is_decoded_whole() -> None:
    c = make()
    d = json.loads(_content_json(c))
    texts = [
        json.dumps(d, sort_keys=True),  # spaces
        json.dumps(dict(reversed(d.items())), separators=(",", ":")),  # keys not sorted
        _content_json(c).replace('"compute_seconds":0.25', '"compute_seconds":NaN'),
        _content_json(c).replace('"size":12', '"size":12.0'),
    ]
    for text in texts:
        got = decode_lazily(text, c.hash)
        assert _unset(got.task_def) == set()  # decoded whole
        assert got == decode_whole(text, c.hash)
    # Escapes and what commit_from_dict accepts are decoded in the head exactly as whole.
    for text in (
        _content_json(c).replace('"status":"completed"', '"status":"\\u0043OMPLETED"'),
        _content_json(c).replace('"salt":"s1"', '"salt":"s\\u00e91\\n"'),
    ):
        got = decode_lazily(text, c.hash)
        assert _unset(got.task_def) == set(LAZY)
        assert got == decode_whole(text, c.hash) and got.status is TaskStatus.COMPLETED


def test_a_rest_that_repeats_a_head_key_or_leaves_the_task_def_is_refused_when_read() -> None:
    c = make()
    content = _content_json(c)
    tail = content.index(',"module":')
    repeated = content[:tail] + ',"cache":false' + content[tail:]  # json.loads: the last wins
    outside = content[:-1] + ',"tags":{}}'  # a top-level key again, after the task_def
    for text in (repeated, outside):
        assert decode_whole(text, c.hash) != c  # what the whole text says differs
        td = decode_lazily(text, c.hash).task_def
        with pytest.raises(ValueError, match="not a readable commit"):
            _ = td.manifest


def test_a_text_that_is_no_commit_is_refused() -> None:
    c = make()
    with pytest.raises(ValueError, match="not a readable commit"):
        decode_lazily(_content_json(c).replace('"created_at":"2026', '"created_at":"x026'), "h")
    with pytest.raises(ValueError, match="not a readable commit"):
        decode_lazily("[]", "h")


def test_verification_comes_first() -> None:
    c = make()
    content = _content_json(c)
    forged = content.replace('"size":12', '"size":13')
    with pytest.raises(ValueError, match="does not hash"):
        verified_content(forged, c.hash, decode_lazily)
    body = c.sealed_json.replace('"size":12', '"size":13')
    with pytest.raises(ValueError):
        verified_commit(body, c.hash, decode_lazily)
    lazy = verified_commit(c.sealed_json, c.hash, decode_lazily)
    assert _unset(lazy.task_def) == set(LAZY) and lazy == c


def _f(x: int) -> int:
    return x + 1


def test_a_sqlite_hit_decodes_only_the_head(tmp_path: Path) -> None:
    with Client(tmp_path / "s") as c:
        hashes = [c.submit(_f, x).commit_hash for x in range(3)]
    with Client(tmp_path / "s") as c:
        ref = c.submit(_f, 1)
        assert ref.cached and ref.load() == 2 and ref.commit_hash == hashes[1]
        td = ref.commit.task_def
        assert _unset(td) == set(LAZY)
        assert "return x + 1" in td.func_source  # decoded when read
        assert td.manifest["function"]["name"].endswith("_f")
        shown = c.show(hashes[1])
        assert shown is not None
        shown.last_accessed = ref.commit.last_accessed
        assert ref.commit == shown


def test_every_store_serves_the_whole_commit_from_a_lazy_hit(store: Any) -> None:
    ref = store.put_blob(b"result bytes")
    c = make(expires_at=None, result=ref)
    store.put_commit(c)
    hit = store.lookup(c.fingerprint)
    assert hit is not None and hit.commit.hash == c.hash
    got = hit.commit
    if type(store).__name__ in ("SQLiteStore", "RedisStore", "PostgresStore"):
        assert _unset(got.task_def) == set(LAZY)  # decoded when read, below
    assert got.task_def.manifest == c.task_def.manifest
    got.last_accessed = c.last_accessed
    assert got == c
