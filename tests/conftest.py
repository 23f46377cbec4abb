from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker

from cashet.protocols import Store
from tests._backends import BACKENDS
from tests._postgres import pg_url, postgres_dsn  # noqa: F401  (fixtures for every test)
from tests._redis import redis_server_url, redis_url  # noqa: F401  (fixtures for every test)
from tests._s3 import s3_bucket, s3_server  # noqa: F401  (fixtures for every test)

#: Every ``client`` test runs on each: the sync ``Client`` and the ``AsyncClient`` (behind a
#: sync facade, tests/_async_facade.py), each on SQLite and on Redis.
CLIENT_KINDS = ("sync-sqlite", "async-sqlite", "sync-redis", "async-redis")


#: The packages whose versions the test header reports (and which a lock may pin exactly).
REPORTED = ("redis", "starlette", "uvicorn", "click", "rich", "blake3", "zstandard", "dill")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: reaches into SQLite files; runs on the SQLite clients only"
    )
    check_expected_versions(os.environ.get("CASHET_TEST_EXPECT_VERSIONS"))


def check_expected_versions(lock: str | None) -> None:
    """Stop the run when a package imported is not the version ``lock`` pins.

    ``make test`` runs part of the suite on the oldest releases the bounds admit, laid over
    the venv by ``PYTHONPATH``; this makes sure those, and not the venv's, are what runs.
    """
    if not lock:
        return
    wrong = []
    for line in Path(lock).read_text().splitlines():
        name, sep, rest = line.partition("==")
        if not sep or line.startswith((" ", "#")):
            continue
        pinned, _, marker = rest.rstrip("\\ ").partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue  # not for this interpreter or platform
        pinned = pinned.strip()
        try:
            found = version(name.strip())
        except PackageNotFoundError:
            found = "missing"
        if found != pinned:
            wrong.append(f"{name.strip()} {found} (expected {pinned})")
    if wrong:
        raise pytest.UsageError(f"{lock} is not what runs: " + ", ".join(wrong))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In CI (``CI=true``) a skipped test is a failure: every set-up a test needs (a Redis,
    a RabbitMQ, ``unshare``, a tmpfs, ``setpriv``) exists there, so a skip means a test that
    did not run where it must."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and os.environ.get("CI", "").lower() == "true"
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped: {reason}"


def pytest_report_header(config: pytest.Config) -> str:
    found = []
    for name in REPORTED:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} missing")
    return "cashet dependencies: " + ", ".join(found)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "client_kind" in metafunc.fixturenames:
        kinds = CLIENT_KINDS
        if metafunc.definition.get_closest_marker("sqlite_only"):
            kinds = tuple(k for k in kinds if k.endswith("-sqlite"))
        metafunc.parametrize(
            "client_kind",
            [pytest.param(k, marks=[pytest.mark.redis] if "redis" in k else []) for k in kinds],
        )


def _backend_marks(name: str) -> list[pytest.MarkDecorator]:
    if "redis" in name:
        return [pytest.mark.redis]
    return [pytest.mark.postgres] if "postgres" in name else []


@pytest.fixture(
    params=[pytest.param(name, marks=_backend_marks(name)) for name in sorted(BACKENDS)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every registered store backend, fresh and empty."""
    with BACKENDS[request.param](tmp_path, request) as s:
        yield s


@pytest.fixture
def client_factory(
    client_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """``make(**client_kwargs)``: a client of this test's kind; all of one test share a store.

    SQLite clients default to ``store_dir=tmp_path/.cashet`` (pass ``store_dir=None`` for
    ``$CASHET_DIR``/``.cashet``); Redis ones ignore ``store_dir`` and use a fresh key prefix,
    checked for consistency and removed afterwards. Every client made is closed at teardown.
    """
    mode, backend = client_kind.split("-")
    made: list[Any] = []
    url = prefix = ""
    if backend == "redis":
        from tests._redis import fresh_prefix

        url, prefix = request.getfixturevalue("redis_url"), fresh_prefix()

    def make(**kwargs: Any) -> Any:
        if backend == "sqlite":
            kwargs.setdefault("store_dir", tmp_path / ".cashet")
        else:
            kwargs.pop("store_dir", None)
        if mode == "sync":
            from cashet import Client

            if backend == "redis":
                from cashet.redis_store import RedisStore

                kwargs["store"] = RedisStore(url, prefix=prefix)
            made.append(Client(**kwargs))
        else:
            from cashet.async_client import AsyncClient
            from tests._async_facade import AsyncClientFacade

            def build() -> AsyncClient:
                if backend == "redis":
                    from cashet.redis_store import AsyncRedisStore

                    kwargs["store"] = AsyncRedisStore(url, prefix=prefix)
                return AsyncClient(**kwargs)

            made.append(AsyncClientFacade(build))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.shutdown() if mode == "async" else c.close()
        if backend == "redis":
            from tests._redis import check_invariants, drop_prefix

            try:
                check_invariants(url, prefix)
            finally:
                drop_prefix(url, prefix)


@pytest.fixture
def client(client_factory: Callable[..., Any]) -> Any:
    """A fresh client of every kind (see ``client_factory``)."""
    return client_factory()
