"""Stores named by URL (issue 15): ``Client(store=URL)``, ``CASHET_STORE``, ``cashet --store``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cashet import Client
from cashet.stores.urls import open_store, sqlite_path
from tests._redis import drop_prefix, fresh_prefix


def double(x: int) -> int:
    return x * 2


def cashet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("cashet")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_sqlite_urls_name_directories(tmp_path: Path) -> None:
    assert sqlite_path(f"sqlite://{tmp_path}") == tmp_path
    assert sqlite_path(f"sqlite:///{tmp_path}".replace("////", "///")) == tmp_path
    assert sqlite_path("sqlite:rel/dir") == Path("rel/dir")
    assert sqlite_path("sqlite://./rel") == Path("./rel")
    assert sqlite_path(str(tmp_path)) == tmp_path  # a plain path
    assert sqlite_path("redis://localhost") is None
    with pytest.raises(ValueError, match="unknown store URL scheme 'ftp'"):
        sqlite_path("ftp://host/x")
    with pytest.raises(ValueError, match="needs a directory"):
        sqlite_path("sqlite://")


def test_client_takes_a_sqlite_url_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(store=f"sqlite://{tmp_path / 'a'}") as client:
        assert client.submit(double, 2).load() == 4
    assert (tmp_path / "a" / "meta.db").exists()
    monkeypatch.setenv("CASHET_STORE", f"sqlite://{tmp_path / 'a'}")
    with Client() as client:
        assert client.submit(double, 2).cached  # the same store, named by $CASHET_STORE
    with pytest.raises(ValueError, match="unknown store URL scheme 'mongodb'"):
        Client(store="mongodb://db/x")


@pytest.mark.redis
def test_client_and_cli_on_a_redis_url(redis_url: str, tmp_path: Path) -> None:
    prefix = fresh_prefix()
    sep = "&" if "?" in redis_url else "?"
    url = f"{redis_url}{sep}prefix={prefix}"
    try:
        with Client(store=url) as client:
            ref = client.submit(double, 21)
            assert ref.load() == 42
            assert client.store.prefix == prefix  # type: ignore[attr-defined]
        log = cashet("--store", url, "log", "--json")
        assert log.returncode == 0, log.stderr
        assert [c["hash"] for c in json.loads(log.stdout)] == [ref.commit_hash]
        shown = cashet("show", ref.commit_hash[:12], "--json", env={"CASHET_STORE": url})
        assert json.loads(shown.stdout)["func_name"] == "double"
        got = cashet("--store", url, "get", ref.commit_hash)
        assert got.stdout.strip() == "42"
        stats = cashet("--store", url, "--plain", "stats")
        assert "total_commits: 1" in stats.stdout
        assert prefix in url and stats.returncode == 0
    finally:
        drop_prefix(redis_url, prefix)


def test_cli_store_option_errors(tmp_path: Path) -> None:
    bad = cashet("--store", "ftp://x/y", "log")
    assert bad.returncode == 2 and "unknown store URL scheme 'ftp'" in bad.stderr
    empty = cashet("--store", f"sqlite://{tmp_path / 'none'}", "log")
    assert empty.returncode == 0 and "No commits found" in empty.stdout


def test_open_store_passes_options(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}", inline_threshold=10)
    try:
        assert store.put_blob(b"x" * 100).size == 100
    finally:
        store.close()
