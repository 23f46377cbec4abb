"""What a miss computes once and reuses (issue 18: a faster miss) is what it computed before."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from cashet import Client, _process
from cashet.async_client import AsyncClient
from cashet.hashing import manifest as m
from cashet.hashing.calls import bind
from cashet.models import Lease, utcnow
from cashet.store import AsyncSQLiteStore, SQLiteStore
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.lean import fp_key


def direct_key(text: str) -> int:
    return int.from_bytes(
        blake3(text.encode("utf-8", "surrogatepass")).digest()[:8], "big", signed=True
    )


def test_a_fingerprint_key_asked_again_is_its_own() -> None:
    a, b = "a" * 64 + ":" + "b" * 64, "c" * 64 + ":" + "d" * 64
    for fp in (a, a, b, a, "", "", "\udcff", b, b):
        assert fp_key(fp) == direct_key(fp)
    assert fp_key(b"x") == direct_key(str(b"x"))


def one(x: Any) -> Any:
    return x


def two(x: Any, y: Any = 2) -> Any:
    return x, y


def kwonly(x: Any, *, k: Any = 3) -> Any:
    return x, k


def star(x: Any, *rest: Any, **more: Any) -> Any:
    return x, rest, more


class Thing:
    def method(self, x: Any) -> Any:
        return x


def by_binding(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The arguments part as it was made before the fast path: always bound."""
    f, owner = (func.__func__, func.__self__) if hasattr(func, "__self__") else (func, None)
    full = args if owner is None else (owner, *args)
    bound = bind(f, full, kwargs)
    assert bound is not None
    pos, kw, defaulted = bound
    code = f.__code__
    names = code.co_varnames[: code.co_argcount]
    star_name = (
        code.co_varnames[code.co_argcount + code.co_kwonlyargcount] if code.co_flags & 4 else ""
    )
    out = []
    for i, v in enumerate(pos):
        name = names[i] if i < len(names) else f"*{star_name}[{i - len(names)}]"
        out.append(m._argument(name, v, i in defaulted))
    return out + [m._argument(k, v, k not in kwargs) for k, v in sorted(kw.items())]


@pytest.mark.parametrize(
    ("func", "args", "kwargs"),
    [
        (one, (5,), {}),
        (one, (), {"x": 5}),
        (two, (1,), {}),
        (two, (1, 7), {}),
        (two, (1,), {"y": 7}),
        (kwonly, (1,), {}),
        (kwonly, (1,), {"k": 9}),
        (star, (1,), {}),
        (star, (1, 2, 3), {"z": 4}),
        (Thing().method, (5,), {}),
    ],
)
def test_the_manifest_names_the_arguments_as_binding_does(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    assert m.manifest_arguments(func, args, kwargs) == by_binding(func, args, kwargs)


# --- the lookup after a claim (SQLite: answered by the claim itself) ------------------------


def plus_one(x: int) -> int:
    RUNS.append(x)
    return x + 1


RUNS: list[int] = []


def lease(owner: str, seconds: float = 60.0) -> Lease:
    return Lease(
        owner=owner,
        host=_process.hostname(),
        pid=os.getpid(),
        expires_at=utcnow() + timedelta(seconds=seconds),
        func_name="plus_one",
    )


def hit_queries(store: SQLiteStore) -> list[str]:
    seen: list[str] = []
    store._conn().set_trace_callback(seen.append)
    return seen


def test_a_miss_looks_up_once_and_the_claim_answers_the_second_look(tmp_path: Path) -> None:
    RUNS.clear()
    with SQLiteStore(tmp_path / "s") as store, Client(store=store) as client:
        client.submit(plus_one, 0)  # the function's row, written once
        seen = hit_queries(store)
        assert client.submit(plus_one, 1).load() == 2
        looks = [q for q in seen if q.startswith(sql.FIND_HIT.split(" FROM")[0])]
        assert len(looks) == 1  # before: a second lookup after the claim
        assert client.submit(plus_one, 1).cached  # and it is a hit now
    assert RUNS == [0, 1]


def test_a_commit_recorded_before_the_claim_is_found_after_it(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s") as store, Client(store=store) as client:
        fp = client.submit(plus_one, 5).commit.task_def.fingerprint
        # another process's run finished between our lookup and our claim: the claim is
        # granted (nobody holds it) but knows of no miss, and the lookup finds the hit
        assert store.try_claim(fp, lease("late"))
        assert not store.known_miss(fp, "late")
        found = store.lookup(fp)
        assert found is not None and found.commit.task_def.fingerprint == fp


def test_a_known_miss_is_its_lease_holders_and_told_once(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s") as store:
        fp = "a" * 64 + ":" + "b" * 64
        assert store.try_claim(fp, lease("mine"))
        assert not store.known_miss(fp, "someone else")
        assert not store.known_miss("c" * 64 + ":" + "d" * 64, "mine")
        assert store.known_miss(fp, "mine")
        assert not store.known_miss(fp, "mine")  # once
        store.release_claim(fp, "mine")
        assert store.try_claim(fp, lease("short", seconds=-1))  # expired at once
        assert not store.known_miss(fp, "short")


def test_an_async_miss_looks_up_once_and_the_claim_answers_the_second_look(
    tmp_path: Path,
) -> None:
    RUNS.clear()

    async def main() -> None:
        async with AsyncSQLiteStore(tmp_path / "s") as store, AsyncClient(store=store) as client:
            await client.submit(plus_one, 0)  # the function's row, written once
            seen = hit_queries(store.sync_store)  # the loop's connection: lookups run there
            ref = await client.submit(plus_one, 1)
            assert await ref.load() == 2
            looks = [q for q in seen if q.startswith(sql.FIND_HIT_ONE.split(" FROM")[0])]
            assert len(looks) == 1  # before: a second lookup after the claim
            assert (await client.submit(plus_one, 1)).cached  # and it is a hit now

    asyncio.run(main())
    assert RUNS == [0, 1]
