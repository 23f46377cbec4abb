"""``AsyncClient`` mirrors ``Client``, and every async API really is async.

The two clients must not drift (STYLE.md, "Sync and async without two copies"): every
public method of ``Client`` exists on ``AsyncClient`` with the same parameters (names, kinds,
defaults), and every public method of ``AsyncClient``, ``AsyncResultRef`` and each
``AsyncStore`` implementation is a coroutine function.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from cashet import AsyncResultRef, Client
from cashet.async_client import AsyncClient, AsyncTaskFunction
from cashet.client import TaskFunction
from cashet.executor import AsyncLocalExecutor, LocalExecutor
from cashet.protocols import AsyncExecutor, AsyncStore, Store
from cashet.store import AsyncSQLiteStore, SQLiteStore

#: Public ``AsyncClient`` methods that are not coroutines, and why.
NOT_COROUTINES = {
    "task": "a decorator: registering does no IO",
    "as_task": "wraps a function: no IO",
}


def public_methods(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.isfunction(member)
    }


def public_properties(cls: type) -> set[str]:
    return {
        n for n, m in inspect.getmembers(cls) if not n.startswith("_") and isinstance(m, property)
    }


def parameters(func: Any) -> list[tuple[str, Any, Any]]:
    """Names, kinds and defaults (annotations differ by design: ResultRef vs AsyncResultRef)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


def redis_stores() -> list[type]:
    try:
        from cashet.redis_store import AsyncRedisStore, RedisStore
    except ImportError:  # the redis extra is not installed
        return []
    return [RedisStore, AsyncRedisStore]


def test_every_client_method_exists_on_async_client_with_the_same_parameters() -> None:
    sync_methods = public_methods(Client)
    async_methods = public_methods(AsyncClient)
    assert sync_methods, "no public methods found on Client"
    missing = sorted(set(sync_methods) - set(async_methods))
    assert not missing, f"AsyncClient lacks {missing}"
    extra = sorted(set(async_methods) - set(sync_methods))
    assert not extra, f"AsyncClient has methods Client lacks: {extra}"
    for name, method in sync_methods.items():
        assert parameters(async_methods[name]) == parameters(method), name
    assert public_properties(AsyncClient) == public_properties(Client)
    assert parameters(AsyncClient.__init__) == parameters(Client.__init__)


def test_every_public_async_client_method_is_a_coroutine_function() -> None:
    for name, method in public_methods(AsyncClient).items():
        if name in NOT_COROUTINES:
            assert not inspect.iscoroutinefunction(method), name
            continue
        assert inspect.iscoroutinefunction(method), f"AsyncClient.{name} is not async"
    assert inspect.iscoroutinefunction(AsyncClient.__aenter__)
    assert inspect.iscoroutinefunction(AsyncClient.__aexit__)
    assert inspect.iscoroutinefunction(AsyncResultRef.load)
    assert inspect.iscoroutinefunction(AsyncTaskFunction.__call__)
    assert inspect.iscoroutinefunction(AsyncTaskFunction.submit)
    assert inspect.iscoroutinefunction(AsyncLocalExecutor.submit)


def test_task_functions_mirror_each_other() -> None:
    assert set(public_methods(AsyncTaskFunction)) == set(public_methods(TaskFunction))
    for name, method in public_methods(TaskFunction).items():
        assert parameters(getattr(AsyncTaskFunction, name)) == parameters(method), name


@pytest.mark.parametrize(
    ("sync_cls", "async_cls"),
    [(SQLiteStore, AsyncSQLiteStore), *([tuple(redis_stores())] if redis_stores() else [])],
    ids=lambda cls: cls.__name__,
)
def test_async_stores_mirror_their_sync_twins_and_are_async(
    sync_cls: type, async_cls: type
) -> None:
    protocol = public_methods(AsyncStore)
    methods = public_methods(async_cls)
    for name in protocol:
        assert name in methods, f"{async_cls.__name__} lacks {name}"
    for name, method in methods.items():
        if name in ("record_hit", "known_miss"):  # in memory, no IO: a plain call on the loop
            # (record_hit: AsyncHitCounter; known_miss: what the store's claim saw)
            assert not inspect.iscoroutinefunction(method)
            assert parameters(method) == parameters(getattr(sync_cls, name)), name
            continue
        # iter_commits is an async generator (``async for``); everything else is awaited.
        is_async = inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)
        assert is_async, f"{async_cls.__name__}.{name} is neither a coroutine nor async gen"
        if name in public_methods(sync_cls):
            assert parameters(method) == parameters(getattr(sync_cls, name)), name
    for name in public_methods(Store):
        assert name in methods, f"{async_cls.__name__} lacks the sync store's {name}"


def test_protocols_are_satisfied() -> None:
    from cashet.stores.base import FullStore

    # The spec's Store is the core; the async store has it plus the sync capabilities.
    assert set(public_methods(Store)) <= set(public_methods(AsyncStore))
    assert set(public_methods(AsyncStore)) <= set(public_methods(FullStore))
    for name, method in public_methods(AsyncStore).items():
        assert inspect.iscoroutinefunction(method), f"AsyncStore.{name}"
        assert parameters(method) == parameters(getattr(FullStore, name)), name
    assert inspect.iscoroutinefunction(AsyncExecutor.submit)
    assert parameters(AsyncExecutor.submit) == parameters(LocalExecutor.submit)
    assert parameters(AsyncLocalExecutor.submit) == parameters(LocalExecutor.submit)
    assert parameters(AsyncLocalExecutor.__init__) == parameters(LocalExecutor.__init__)
