"""Stores that travel to cluster workers by their configuration.

The driver sends :func:`store_config` (a small :class:`~cashet.stores.config.StoreConfig`),
never the store; each worker process opens the store it describes once, on first use
(:func:`open_store`), and again in a forked child. An async store travels as its sync twin.
"""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

from cashet._process import after_fork_in_child
from cashet.errors import ExecutorError
from cashet.protocols import Store
from cashet.stores.config import StoreConfig

__all__ = ["StoreConfig", "open_store", "store_config"]

_SHIPPABLE = (
    "use SQLiteStore (workers on this host), RedisStore or PostgresStore (workers anywhere)"
)

_opened: dict[bytes, Store] = {}
_lock = threading.Lock()


@after_fork_in_child
def _forget_in_child() -> None:
    global _lock
    _opened.clear()  # the parent's: each store reopens its connections on its own
    _lock = threading.Lock()


def store_config(store: Any, *, remote: bool = False) -> StoreConfig:
    """The configuration that reopens ``store`` in a worker process.

    Args:
        store: the client's store (sync or async).
        remote: workers may run on other hosts: a SQLite store is refused (they cannot
            see its directory).

    Raises:
        ExecutorError: the store cannot be reopened elsewhere (a third-party or in-memory
            store, a read-only one), or it is SQLite and the workers are remote; the message
            says which store to use.
    """
    if not isinstance(getattr(type(store), "config", None), property):
        raise ExecutorError(
            f"{type(store).__name__} cannot be reopened in worker processes (it has no"
            f" config property): {_SHIPPABLE}"
        )
    got = store.config
    if not isinstance(got, StoreConfig):
        raise ExecutorError(f"{type(store).__name__}.config is a {type(got).__name__}")
    options = dict(got.options)
    if options.get("readonly"):
        raise ExecutorError(
            f"{store!r} is read-only: workers could not store their results; {_SHIPPABLE}"
        )
    if remote and got.kind == "sqlite":
        raise ExecutorError(
            f"{store!r} is a SQLite store on this host, and the cluster's workers run on other"
            " hosts that cannot see its directory: use RedisStore (a Redis every worker"
            " reaches), or run the workers on this host"
        )
    return got


def open_store(config: StoreConfig) -> Store:
    """The store ``config`` describes, opened once per process (the same object after).

    Raises:
        ExecutorError: the store cannot be opened here (a SQLite directory this host does
            not have, an unknown kind).
    """
    key = pickle.dumps(config)
    store = _opened.get(key)
    if store is not None:
        return store
    with _lock:
        store = _opened.get(key)
        if store is None:
            store = _open(config)
            _opened[key] = store
    return store


def _open(config: StoreConfig) -> Store:
    options = dict(config.options)
    key_id = options.pop("signing_key_id", None)
    if key_id is not None:  # the driver signs: so must this worker, with the same key
        from cashet.stores.signing import signed_store, worker_key

        bare = StoreConfig(config.kind, config.location, tuple(options.items()))
        return signed_store(_open(bare), worker_key(key_id), asynchronous=False)  # type: ignore[no-any-return]
    if config.kind == "sqlite":
        from cashet.stores.sqlite.layout import DB_FILE
        from cashet.stores.sqlite.store import SQLiteStore

        if not os.path.exists(os.path.join(config.location, DB_FILE)):
            raise ExecutorError(
                f"the SQLite store {config.location} does not exist on this worker's host"
                " (workers on other hosts cannot see it): use RedisStore"
            )
        return SQLiteStore(config.location, **options)
    if config.kind == "redis":
        from cashet.stores.redis.store import RedisStore

        raw = options.pop("options", None)
        return RedisStore(config.location, options=None if raw is None else dict(raw), **options)
    if config.kind == "postgres":
        from cashet.stores.postgres.store import PostgresStore

        return PostgresStore(config.location, **options)
    raise ExecutorError(f"unknown kind of store to open: {config.kind!r}")
