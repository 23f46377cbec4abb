"""``push`` and ``pull``: commits and blobs copied between any two stores, incrementally,
verified, resumably (provenance/sync.py), from the clients and the CLI."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cashet import Client
from cashet.async_client import AsyncClient
from cashet.cli import main
from cashet.errors import StoreError, TaskError
from cashet.models import Commit

RUNS: list[int] = []


def noise(n: int) -> bytes:
    RUNS.append(n)
    return random.Random(n).randbytes(n)


def same_noise(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def fails() -> None:
    raise ZeroDivisionError("recorded as a failed commit")


def fill(client: Client, sizes: list[int]) -> list[str]:
    """One commit per size (small ones inline, larger ones as blobs), plus a failure."""
    hashes = [client.submit(noise, n).commit_hash for n in sizes]
    with pytest.raises(TaskError):
        client.submit(fails)
    return hashes


SIZES = [10, 500, 5_000, 60_000]


@pytest.mark.postgres
def test_push_to_postgres_then_pull_elsewhere(tmp_path: Path, pg_url: str) -> None:
    with Client(store_dir=tmp_path / "a") as a:
        made = fill(a, SIZES)
        first = a.push(pg_url)
        assert (first.copied, first.present, first.blobs) == (5, 0, 4)
        assert sum(SIZES) <= first.bytes < sum(SIZES) + 1000  # pickled bytes
        again = a.push(pg_url)  # incremental: nothing new
        assert (again.copied, again.present, again.blobs) == (0, 5, 0)
        a.submit(noise, 7)
        assert a.push(pg_url).copied == 1
    RUNS.clear()
    with Client(store=pg_url) as remote:
        assert {c.hash for c in remote.log(limit=None)} >= set(made)
        assert all(remote.submit(noise, n).cached for n in SIZES)  # hits, verified
    with Client(store_dir=tmp_path / "b") as b:
        pulled = b.pull(pg_url)
        assert (pulled.copied, pulled.blobs) == (6, 5)
        assert [b.submit(noise, n).load() for n in SIZES] == [noise(n) for n in SIZES]
        assert b.pull(pg_url).copied == 0
    assert RUNS == SIZES  # only the comparisons above ran: every submit was a hit


class Interrupted(Exception):
    pass


class StopsAfter:
    """A store that fails after ``n`` commits written: an interruption (a killed process,
    a dropped connection) made where the test wants it. A wrapper, since a real crash
    cannot be placed between two writes deterministically."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner, self.left = inner, n

    def put_commit(self, commit: Commit) -> None:
        if self.left == 0:
            raise Interrupted("interrupted")
        self.left -= 1
        self.inner.put_commit(commit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_interrupted_copy_resumes(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "a") as a, Client(store_dir=tmp_path / "b") as b:
        fill(a, SIZES)
        with pytest.raises(Interrupted):
            a.push(StopsAfter(b.store, 2))  # type: ignore[arg-type]
        assert len(b.log(limit=None)) == 2
        for c in b.log(limit=None):  # never a commit without its blob
            assert c.result is None or b.store.has_blob(c.result.hash)  # type: ignore[attr-defined]
        resumed = a.push(b.store)
        assert (resumed.copied, resumed.present) == (3, 2)
        assert {c.hash for c in a.log(limit=None)} == {c.hash for c in b.log(limit=None)}


def test_a_commit_whose_blob_is_unreadable_is_skipped(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "a") as a, Client(store_dir=tmp_path / "b") as b:
        ref = a.submit(noise, 20_000)
        kept = a.submit(noise, 30_000)
        blob = tmp_path / "a" / "objects" / ref.hash[:2] / ref.hash[2:]
        blob.write_bytes(blob.read_bytes()[:-1] + b"!")  # corrupt on disk
        result = a.push(b.store)
        assert result.skipped == (ref.commit_hash,) and result.copied == 1
        assert b.show(kept.commit_hash) is not None
        assert b.show(ref.commit_hash) is None


def test_pull_from_nothing_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "a") as a, pytest.raises(StoreError):
        a.pull(str(tmp_path / "nowhere"))
    assert not (tmp_path / "nowhere").exists()


def test_async_client_push_and_pull(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "a") as a:
        fill(a, SIZES[:2])

    async def main_() -> tuple[int, int]:
        async with AsyncClient(store_dir=tmp_path / "b") as b:
            pulled = await b.pull(f"sqlite://{tmp_path / 'a'}")
            await b.submit(noise, 99)
            pushed = await b.push(str(tmp_path / "a"))
            return pulled.copied, pushed.copied

    assert asyncio.run(main_()) == (3, 1)


@pytest.mark.postgres
def test_cli_push_and_pull(tmp_path: Path, pg_url: str) -> None:
    with Client(store_dir=tmp_path / "a") as a:
        fill(a, SIZES[:3])
    runner = CliRunner()
    pushed = runner.invoke(main, ["--store-dir", str(tmp_path / "a"), "push", pg_url, "--json"])
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.output)["copied"] == 4
    pulled = runner.invoke(main, ["--store-dir", str(tmp_path / "b"), "pull", pg_url])
    assert pulled.exit_code == 0, pulled.output
    assert "Pulled 4 commit(s) and 3 blob(s)" in pulled.output
    assert "already there" in pulled.output
    again = runner.invoke(main, ["--store", pg_url, "push", str(tmp_path / "b")])
    assert again.exit_code == 0 and "Pushed 0 commit(s)" in again.output


@pytest.mark.postgres
def test_batches_keep_reference_counts_and_tags(tmp_path: Path, pg_url: str) -> None:
    # Two commits share one result; a push writes both with their tags in one batch.
    with Client(store_dir=tmp_path / "a") as a:
        x = a.submit(noise, 3000, _tags={"team": "a"})
        a.submit(same_noise, 3000, _tags={"team": "b"})  # the same result bytes
        a.submit(noise, 10)
        assert a.push(pg_url).copied == 3
    with Client(store=pg_url) as remote:
        assert remote.check().ok  # reference counts agree with the commits
        assert [c.hash for c in remote.log(tags={"team": "a"})] == [x.commit_hash]
        assert remote.stats()["stored_objects"] == 2
        assert remote.rm(x.commit_hash)
        assert remote.get(x.hash) == noise(3000)  # still used by the other commit


def test_a_signing_client_pulls_only_commits_signed_with_its_key(tmp_path: Path) -> None:
    key, other = "k" * 32, "o" * 32
    with Client(store_dir=tmp_path / "plain") as plain:
        plain.submit(noise, 10)  # unsigned
    with Client(store_dir=tmp_path / "other", signing_key=other) as foreign:
        foreign.submit(noise, 20)  # signed with another key
    with Client(store_dir=tmp_path / "team", signing_key=key) as team:
        mine = team.submit(noise, 30)
        team.push(str(tmp_path / "out"))
    with Client(store_dir=tmp_path / "mine", signing_key=key) as client:
        assert client.pull(str(tmp_path / "plain")).copied == 0
        assert len(client.pull(str(tmp_path / "plain")).skipped) == 1  # never signed by us
        assert client.pull(str(tmp_path / "other")).copied == 0
        assert client.pull(str(tmp_path / "out")).copied == 1  # carries its signature
        assert client.submit(noise, 30).cached
        assert client.check().ok
        assert [c.hash for c in client.log()] == [mine.commit_hash]
