"""Signed stores (issue 16, trust between team members): a team key signs every commit
written; a commit not signed with it is never served, never loaded, and reported.

The attacks are real: a forged commit and a pickle that would run code are written
straight into the store with the store's own API (what anyone with write access to a
shared store can do), and the test checks the pickle never ran.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest

from cashet import Client
from cashet.async_client import AsyncClient
from cashet.errors import ArchiveError, ExecutorError
from cashet.executor import FuturesExecutor
from cashet.hashing.commits import seal_commit
from cashet.models import Commit, TaskStatus
from cashet.store import SQLiteStore
from cashet.stores.signing import ENV, SignatureError, SigningKey
from tests._cluster_tasks import counted_square, runs

KEY = "team-key-0123456789abcdef"
OTHER = "someone-else-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


def triple(x: int) -> int:
    return 3 * x


class Boom:
    """Unpickling it writes the file ``path``: proof that a forged result was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.write_text, (Path(self.path), "pwned"))


def plant(store_dir: Path, real: Commit, payload: bytes, signature: str | None) -> Commit:
    """Write, with the store's own API, a newer commit for ``real``'s call whose result is
    ``payload``: internally consistent (its hash and its blob's verify)."""
    store = SQLiteStore(store_dir)
    try:
        ref = store.put_blob(payload)
        forged = Commit(
            hash="",
            task_def=replace(real.task_def),
            status=TaskStatus.COMPLETED,
            result=ref,
            compute_seconds=0.1,
        )
        forged.sealed_json = seal_commit(forged)
        forged.signature = signature
        if signature is not None:
            forged.sealed_json = ""
        store.put_commit(forged)
        return forged
    finally:
        store.close()


def test_the_key_never_shows_and_never_travels(tmp_path: Path) -> None:
    key = SigningKey(KEY)
    assert KEY not in repr(key) and key.key_id in repr(key)
    assert SigningKey(KEY.encode()).key_id == key.key_id
    assert SigningKey(OTHER).key_id != key.key_id
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(key)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        SigningKey("short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Client(store_dir=tmp_path / "never-made", signing_key="short")
    assert not (tmp_path / "never-made").exists()  # refused before the store is opened


def test_commits_are_signed_and_served(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "s", signing_key=KEY) as client:
        ref = client.submit(triple, 2)
        assert ref.load() == 6 and not ref.cached
        commit = client.show(ref.commit_hash)
        assert client.submit(triple, 2).cached
    key = SigningKey(KEY)
    stored = SQLiteStore(tmp_path / "s").get_commit(ref.commit_hash)
    assert stored is not None and stored.signature == key.sign(ref.commit_hash)
    assert commit is not None


@pytest.mark.parametrize("signature", ["none", "copied"])
def test_a_planted_commit_is_never_loaded_and_is_recomputed(tmp_path: Path, signature: str) -> None:
    proof = tmp_path / "pwned"
    with Client(store_dir=tmp_path / "s", signing_key=KEY) as client:
        real = client.submit(triple, 5)
        real_commit = client.store.get_commit(real.commit_hash)
    assert real_commit is not None
    sig = None if signature == "none" else real_commit.signature  # a real MAC, other hash
    forged = plant(tmp_path / "s", real_commit, pickle.dumps(Boom(str(proof))), sig)

    # without the key, the planted entry is what a lookup finds (and it would run)
    assert SQLiteStore(tmp_path / "s").find_by_fingerprint(real_commit.fingerprint).hash == (
        forged.hash
    )
    with Client(store_dir=tmp_path / "s", signing_key=KEY) as client:
        assert client.show(forged.hash) is None  # not visible at all
        assert forged.hash not in {c.hash for c in client.log()}
        report = client.check()
        kinds = {(f.kind, f.subject) for f in report.remaining}
        want = "unsigned_commit" if signature == "none" else "bad_signature"
        assert (want, forged.hash) in kinds and not report.ok
        again = client.submit(triple, 5)
        assert again.load() == 15 and not again.cached  # a miss: computed again, signed
        assert again.commit_hash not in (forged.hash, real.commit_hash)
        assert client.submit(triple, 5).cached
        repaired = client.check(repair=True)
        assert [f.action for f in repaired.findings if f.subject == forged.hash] == ["removed"]
        assert client.check().ok
    assert not proof.exists()


def test_another_teams_key_sees_nothing_of_ours(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "s", signing_key=KEY) as ours:
        ours.submit(triple, 1)
    with Client(store_dir=tmp_path / "s", signing_key=OTHER) as theirs:
        assert theirs.log() == []
        ref = theirs.submit(triple, 1)
        assert not ref.cached and ref.load() == 3
    with Client(store_dir=tmp_path / "s") as unsigned:  # no key: every entry is seen
        assert len(unsigned.log()) == 2


def test_a_store_refuses_a_commit_signed_with_another_key(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "a", signing_key=OTHER) as theirs:
        ref = theirs.submit(triple, 4)
        theirs_commit = theirs.store.get_commit(ref.commit_hash)
    assert theirs_commit is not None and theirs_commit.signature
    with Client(store_dir=tmp_path / "b", signing_key=KEY) as ours:
        with pytest.raises(SignatureError, match="signed with another key"):
            ours.store.put_commit(theirs_commit)


def test_archives_carry_and_check_signatures(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    unsigned_archive = tmp_path / "u.tar.gz"
    with Client(store_dir=tmp_path / "s", signing_key=KEY) as client:
        ref = client.submit(triple, 7)
        client.export(archive)
    with Client(store_dir=tmp_path / "plain") as plain:
        plain.submit(triple, 8)
        plain.export(unsigned_archive)
    with Client(store_dir=tmp_path / "same", signing_key=KEY) as same:
        assert same.import_archive(archive) == 1
        assert same.submit(triple, 7).cached
        assert same.show(ref.commit_hash) is not None
        with pytest.raises(ArchiveError, match="not signed with this client's key"):
            same.import_archive(unsigned_archive)
        assert len(same.log()) == 1  # nothing of the rejected archive landed
    with Client(store_dir=tmp_path / "other", signing_key=OTHER) as other:
        with pytest.raises(ArchiveError, match="bad_signature"):
            other.import_archive(archive)
        assert other.log() == []


def test_async_client_signs_and_checks(tmp_path: Path) -> None:
    async def main() -> tuple[bool, bool, str | None]:
        async with AsyncClient(store_dir=tmp_path / "s", signing_key=KEY) as client:
            ref = await client.submit(triple, 3)
            again = await client.submit(triple, 3)
            stored = await client.store.get_commit(ref.commit_hash)
            return ref.cached, again.cached, None if stored is None else stored.signature

    first, second, signature = asyncio.run(main())
    assert (first, second) == (False, True)
    assert signature is not None and signature.startswith(SigningKey(KEY).key_id)

    async def other() -> list[Any]:
        async with AsyncClient(store_dir=tmp_path / "s", signing_key=OTHER) as client:
            return await client.log()

    assert asyncio.run(other()) == []


@pytest.mark.redis
def test_redis_store_signed(redis_url: str, tmp_path: Path) -> None:
    from cashet.redis_store import RedisStore

    proof = tmp_path / "pwned"
    prefix = f"signing-{os.getpid()}-{tmp_path.name}:"
    with Client(store=RedisStore(redis_url, prefix=prefix), signing_key=KEY) as client:
        real = client.submit(triple, 9)
        real_commit = client.store.get_commit(real.commit_hash)
        assert real_commit is not None and real_commit.signature
    bare = RedisStore(redis_url, prefix=prefix)
    ref = bare.put_blob(pickle.dumps(Boom(str(proof))))
    forged = Commit(
        hash="", task_def=replace(real_commit.task_def), status=TaskStatus.COMPLETED, result=ref
    )
    forged.sealed_json = seal_commit(forged)
    bare.put_commit(forged)
    bare.close()
    with Client(store=RedisStore(redis_url, prefix=prefix), signing_key=KEY) as client:
        again = client.submit(triple, 9)
        assert again.load() == 27 and not again.cached
        assert any(f.kind == "unsigned_commit" for f in client.check().remaining)
    assert not proof.exists()


def test_the_cli_reads_the_key_from_the_environment(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "s", signing_key=KEY) as client:
        real = client.submit(triple, 6)
        real_commit = client.store.get_commit(real.commit_hash)
    assert real_commit is not None
    forged = plant(tmp_path / "s", real_commit, pickle.dumps(18), None)
    env = {**os.environ, ENV: KEY, "PYTHONPATH": str(ROOT)}

    def cli(*args: str, key: bool = True) -> subprocess.CompletedProcess[str]:
        e = env if key else {k: v for k, v in env.items() if k != ENV}
        return subprocess.run(
            [sys.executable, "-m", "cashet", "--store-dir", str(tmp_path / "s"), *args],
            env=e, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    shown = cli("log")
    assert shown.returncode == 0 and forged.hash[:12] not in shown.stdout
    assert real.commit_hash[:12] in shown.stdout
    assert forged.hash[:12] in cli("log", key=False).stdout
    doctor = cli("doctor")
    assert doctor.returncode == 1 and "unsigned" in doctor.stdout + doctor.stderr
    assert KEY not in doctor.stdout + doctor.stderr


def test_workers_sign_with_their_own_key_and_refuse_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = str(tmp_path / "runs")
    monkeypatch.setenv(ENV, KEY)  # the spawned workers inherit it
    with (
        ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool,
        Client(store_dir=tmp_path / "s", executor=FuturesExecutor(pool)) as client,
    ):
        ref = client.submit(counted_square, log, 3)
        assert ref.load() == 9 and not ref.cached
        stored = SQLiteStore(tmp_path / "s").get_commit(ref.commit_hash)
        assert stored is not None and stored.signature == SigningKey(KEY).sign(ref.commit_hash)
    monkeypatch.delenv(ENV)
    with (
        ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool,
        Client(store_dir=tmp_path / "s", executor=FuturesExecutor(pool), signing_key=KEY) as client,
    ):
        with pytest.raises(ExecutorError, match="this worker has no key") as caught:
            client.submit(counted_square, log, 4)
        assert KEY not in str(caught.value)
        assert client.store.running_claims() == []  # type: ignore[attr-defined]
    assert len(runs(log)) == 1
