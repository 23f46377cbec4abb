"""Registry of the store backends that the store contract suite runs against.

A backend is a factory ``(tmp_path, request) -> context manager yielding a Store`` with the
*sync* ``Store`` API (an async store is wrapped in a thread-driven adapter). Adding a backend
to the whole contract suite is one ``@backend("name")`` factory here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from cashet.protocols import Store

Factory = Callable[[Path, pytest.FixtureRequest], AbstractContextManager[Store]]
BACKENDS: dict[str, Factory] = {}


def backend(name: str) -> Callable[[Any], Factory]:
    def register(fn: Any) -> Factory:
        BACKENDS[name] = contextmanager(fn)
        return BACKENDS[name]

    return register


@backend("sqlite")
def _sqlite(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    from cashet.store import SQLiteStore

    store = SQLiteStore(tmp_path / ".cashet")
    try:
        yield store
    finally:
        store.close()
