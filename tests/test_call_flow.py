"""The call flow's effects and the one driver both executors share (``executors/_drive.py``)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cashet import Client, _process
from cashet.async_client import AsyncClient
from cashet.core import effects
from cashet.core.flow import call_flow, new_lease
from cashet.executors._drive import finish, run_flow
from cashet.hashing.commits import seal_commit
from cashet.models import TaskDef
from cashet.store import AsyncSQLiteStore, SQLiteStore


def test_every_effect_is_frozen_slotted_and_in_the_union() -> None:
    classes = [
        obj
        for obj in vars(effects).values()
        if isinstance(obj, type)
        and obj.__module__ == effects.__name__
        and obj is not effects.Outcome
    ]
    assert set(typing.get_args(effects.Effect)) == set(classes)
    for cls in classes:
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen, cls.__name__
        assert "__slots__" in vars(cls), cls.__name__
    lookup = effects.Lookup("fp")
    with pytest.raises(dataclasses.FrozenInstanceError):
        lookup.fingerprint = "other"  # type: ignore[misc]


def test_leases_name_this_process() -> None:
    lease = new_lease(timedelta(seconds=5), "f")
    assert (lease.pid, lease.host) == (os.getpid(), _process.hostname())
    assert lease.owner != new_lease(timedelta(seconds=5), "f").owner


def test_finish_refuses_a_flow_that_suspends() -> None:
    task_def = TaskDef(func_name="f", func_hash="a", args_hash="b")

    async def answer(effect: Any) -> Any:
        await asyncio.sleep(0)

    flow = call_flow(task_def, timedelta(seconds=5), seal_commit)
    with pytest.raises(RuntimeError, match="awaited"):
        finish(run_flow(flow, answer, True))


class _OneStepHidden:
    """A store without the one-step ``put_result`` (nor ``put_blob_parts``): the client then
    records with the default ``put_result`` of ``stores.base.full_store``: put_blob,
    put_commit, release_claim, each through the wrapper."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in ("put_result", "put_blob_parts"):
            raise AttributeError(name)
        if name in ("put_blob", "put_commit", "release_claim"):
            self.calls.append(name)
        return getattr(self._store, name)


def _double(x: int) -> int:
    return 2 * x


def test_sync_client_records_in_steps_without_put_result(tmp_path: Path) -> None:
    store = _OneStepHidden(SQLiteStore(tmp_path))
    with Client(store=store) as client:  # type: ignore[arg-type]
        ref = client.submit(_double, 21)
        assert ref.load() == 42 and not ref.cached
        assert {"put_blob", "put_commit", "release_claim"} <= set(store.calls)
        again = client.submit(_double, 21)
        assert again.cached and again.commit_hash == ref.commit_hash
        assert store.get_claim(ref.commit.fingerprint) is None


def test_async_client_records_in_steps_without_put_result(tmp_path: Path) -> None:
    async def main() -> None:
        store = _OneStepHidden(AsyncSQLiteStore(tmp_path))
        async with AsyncClient(store=store) as client:  # type: ignore[arg-type]
            ref = await client.submit(_double, 21)
            assert await ref.load() == 42 and not ref.cached
            assert {"put_blob", "put_commit", "release_claim"} <= set(store.calls)
            again = await client.submit(_double, 21)
            assert again.cached and again.commit_hash == ref.commit_hash
            assert await store.get_claim(ref.commit.fingerprint) is None

    asyncio.run(main())


def test_make_task_def_fills_every_field_by_name() -> None:
    from cashet.core.options import make_options, make_task_def
    from cashet.hashing import function_identity

    identity = function_identity(_double)
    options = make_options(
        cache=False, force=True, tags={"k": "v"}, retries=2, timeout=3.0, ttl=4.0, name="n"
    )
    got = make_task_def(identity, options, "args")
    assert got.identity is identity  # kept for the manifest a miss records
    fields = {f.name: getattr(got, f.name) for f in dataclasses.fields(got) if f.name != "identity"}
    assert fields == {
        "func_name": "n",
        "func_hash": identity.hash,
        "args_hash": "args",
        "func_source": identity.source,
        "args_snapshot": "",
        "module": identity.module,
        "cache": False,
        "force": True,
        "retries": 2,
        "timeout": 3.0,
        "ttl": 4.0,
        "tags": {"k": "v"},
        "manifest": {},
    }
    assert make_task_def(identity, make_options(), "a").func_name == identity.name


def test_a_small_hit_loads_from_its_lookup_without_a_second_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytes a hit's lookup read along travel on the returned commit, explicitly
    (``Commit.result_data``), not through a cache inside the store (issue 10)."""
    with Client(store_dir=tmp_path) as client:
        client.submit(_double, 21)

        def no_read(self: Any, ref: Any) -> bytes:
            raise AssertionError("get_blob called on a hit whose lookup had the bytes")

        monkeypatch.setattr(SQLiteStore, "get_blob", no_read)
        hit = client.submit(_double, 21)
        assert hit.cached and hit.commit.result_data is not None
        assert hit.load() == 42 and hit.commit.result_data is None  # dropped once loaded
        again = client.submit(_double, 21)  # another caller's commit is its own copy
        assert again.commit is not hit.commit and again.commit.result_data is not None
