"""Modes: ``Client(mode=...)``, ``AsyncClient(mode=...)`` and ``$CASHET_MODE`` (issue 15).

``off`` runs every call and stores nothing, ``readonly`` serves hits and stores nothing,
``refresh`` recomputes and stores. Every test runs on the sync and async clients, each over
SQLite and Redis (``client_factory``). A call "ran" when its result carries a fresh random
token (no counter: a counter in a global would be part of the key).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cashet.errors import ReadOnlyStoreError


def stamp(x: int) -> tuple[int, str]:
    """``x`` with a token that differs on every run."""
    return x, os.urandom(8).hex()


def big(x: int) -> bytes:
    """A result of 2 MiB (a large result: streamed, never inline)."""
    return bytes([x]) * (2 << 20) + os.urandom(8)


def double(pair: tuple[int, str]) -> int:
    return pair[0] * 2


def test_bad_mode_is_a_clear_error(client_factory: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"'normal', 'off', 'readonly', 'refresh', not 'fast'"):
        client_factory(mode="fast")


def test_bad_mode_in_the_environment(
    client_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASHET_MODE", "sometimes")
    with pytest.raises(ValueError, match=r"'sometimes'.*CASHET_MODE"):
        client_factory()


def test_off_runs_everything_and_stores_nothing(client_factory: Callable[..., Any]) -> None:
    normal = client_factory()
    cached = normal.submit(stamp, 1).load()
    off = client_factory(mode="off")
    assert off.mode == "off"
    first, second = off.submit(stamp, 1), off.submit(stamp, 1)
    assert first.load()[0] == second.load()[0] == 1
    assert len({first.load(), second.load(), cached}) == 3  # no lookups: each ran
    assert off.submit(double, first).load() == 2  # a chain loads in-process
    assert len(off.submit(big, 3).load()) == (2 << 20) + 8  # a large one too
    assert [c.func_name for c in off.log()] == ["stamp"]  # only normal's commit
    assert normal.submit(stamp, 1).load() == cached  # the cache is as it was
    assert normal.stats()["total_commits"] == 1


def test_off_from_the_environment(
    client_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASHET_MODE", "off")
    off = client_factory()
    assert off.mode == "off"
    assert off.submit(stamp, 1).load() != off.submit(stamp, 1).load()
    assert off.log() == []


def test_readonly_serves_hits_and_stores_nothing(client_factory: Callable[..., Any]) -> None:
    normal = client_factory()
    cached = normal.submit(stamp, 1).load()
    ro = client_factory(mode="readonly")
    assert ro.submit(stamp, 1).load() == cached  # a hit is served
    a, b = ro.submit(stamp, 2).load(), ro.submit(stamp, 2).load()
    assert a[0] == b[0] == 2 and a != b  # a miss runs, and is not kept
    assert ro.submit(double, ro.submit(stamp, 5)).load() == 10
    assert len(ro.submit(big, 4).load()) == (2 << 20) + 8
    assert [c.func_name for c in ro.log()] == ["stamp"]
    assert normal.stats()["total_commits"] == 1


def test_readonly_refuses_removals(client_factory: Callable[..., Any]) -> None:
    normal = client_factory()
    commit = normal.submit(stamp, 1, _tags={"run": "a"}).commit
    ro = client_factory(mode="readonly")
    with pytest.raises(ReadOnlyStoreError):
        ro.rm(commit.hash)
    with pytest.raises(ReadOnlyStoreError):
        ro.gc(older_than=__import__("datetime").timedelta(0))
    with pytest.raises(ReadOnlyStoreError):
        ro.invalidate({"run": "a"})
    assert normal.show(commit.hash) is not None


def test_refresh_recomputes_and_stores(client_factory: Callable[..., Any]) -> None:
    normal = client_factory()
    old = normal.submit(stamp, 1).load()
    refresh = client_factory(mode="refresh")
    new = refresh.submit(stamp, 1).load()
    assert new != old
    newer = refresh.submit(stamp, 1).load()
    assert newer != new  # every call of the run recomputes
    assert normal.submit(stamp, 1).load() == newer  # and the cache keeps the latest
    assert refresh.submit(stamp, 9, _cache=False).load()[0] == 9  # cache=False stays so


@pytest.mark.redis
def test_readonly_url_store_in_a_subprocess(redis_url: str, tmp_path: Path) -> None:
    """$CASHET_STORE + $CASHET_MODE=readonly, as a CI job would set them: nothing is written."""
    from tests._redis import drop_prefix, fresh_prefix

    prefix = fresh_prefix()
    url = f"{redis_url}?prefix={prefix}"
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            from cashet import Client

            def stamp(x):
                return x, os.urandom(8).hex()

            c = Client()
            print(c.mode, c.submit(stamp, 1).load()[1], len(c.log()))
            """
        )
    )

    def run(mode: str) -> list[str]:
        env = {**os.environ, "CASHET_STORE": url, "CASHET_MODE": mode}
        out = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60,
            cwd=tmp_path, check=True,
        ).stdout  # fmt: skip
        return out.split()

    try:
        assert run("readonly")[2] == "0"
        first = run("normal")
        assert first[2] == "1"
        again = run("readonly")
        assert again == ["readonly", first[1], "1"]  # the hit, nothing added
    finally:
        drop_prefix(redis_url, prefix)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode", ["off", "readonly"])
def test_no_store_yet_is_never_created(
    client_factory: Callable[..., Any], tmp_path: Path, mode: str
) -> None:
    """A fresh CI checkout: no .cashet yet. Calls run, reads find nothing, nothing is made."""
    where = tmp_path / "fresh" / ".cashet"
    c = client_factory(store_dir=where, mode=mode)
    a, b = c.submit(stamp, 1).load(), c.submit(stamp, 1).load()
    assert a[0] == b[0] == 1 and a != b
    assert c.submit(double, c.submit(stamp, 3)).load() == 6
    assert c.log() == [] and c.stats()["total_commits"] == 0
    assert c.lookup(stamp, 1) is None
    assert not where.exists() and not where.parent.exists()


@pytest.mark.sqlite_only
def test_off_opens_an_existing_store_without_writing(
    client_factory: Callable[..., Any], tmp_path: Path
) -> None:
    normal = client_factory()
    normal.submit(stamp, 1)
    db = tmp_path / ".cashet" / "meta.db"
    before = db.stat().st_mtime_ns, db.stat().st_size
    off = client_factory(mode="off")
    off.submit(stamp, 2)
    off.submit(stamp, 1)
    assert [c.func_name for c in off.log()] == ["stamp"]
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before
