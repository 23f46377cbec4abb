from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cashet.protocols import Store
from tests._backends import BACKENDS
from tests._redis import redis_url  # noqa: F401  (the session fixture, for every test)


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every registered store backend, fresh and empty."""
    with BACKENDS[request.param](tmp_path, request) as s:
        yield s
