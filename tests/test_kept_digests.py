"""A miss hashes a big argument's buffers once (issue 18: a faster miss).

The key (``hash_args``) and the key's manifest (``hash_value`` of each argument) carry the
same digests of big buffers; the manifest reuses those the key kept for the call
(``cashet.hashing.kept``) instead of hashing the buffers again. The digests it records are
exactly those computed afresh, and never a stale one: a value changed since is hashed again.
Counted with real counters (bytes fed to BLAKE3 through the big-buffer hashers, text
columns pickled), never timed.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import cashet.hashing.arrays
import cashet.hashing.columns
import cashet.hashing.encoder
from cashet import Client
from cashet.async_client import AsyncClient
from cashet.hashing import hash_call, hash_value
from cashet.hashing.encoder import BIG
from cashet.hashing.kept import _LENT, KeptDigests, kept_get, kept_put, lent, take

N = BIG // 8 + 1000  # float64 items: one buffer past the size hashed on its own


def first(a: Any) -> float:
    return float(np.asarray(a).reshape(-1)[0]) if not isinstance(a, bytes) else float(a[0])


def rows(df: pd.DataFrame) -> int:
    return len(df)


class Counted:
    """A real BLAKE3 hasher that counts the bytes it is fed."""

    def __init__(self, inner: Any, seen: list[int]) -> None:
        self.inner, self.seen = inner, seen

    def update(self, data: Any) -> Counted:
        self.seen[0] += memoryview(data).nbytes
        self.inner.update(data)
        return self

    def digest(self) -> bytes:
        return self.inner.digest()  # type: ignore[no-any-return]

    def hexdigest(self) -> str:
        return self.inner.hexdigest()  # type: ignore[no-any-return]


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes fed to the hashers of big buffers (arrays, bytes, a frame's buffers)."""
    seen = [0]
    for module in (cashet.hashing.encoder, cashet.hashing.columns):
        real = module.new_hasher
        monkeypatch.setattr(
            module, "new_hasher", lambda size=0, real=real: Counted(real(size), seen)
        )
    return seen


@pytest.fixture
def texts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Text columns written by the one-pass text path (pickled; not the column names)."""
    seen = [0]
    real = cashet.hashing.arrays.enc_text

    def counted(a: Any, st: Any, trusted: bool) -> bool:
        seen[0] += len(a) >= 1000
        return real(a, st, trusted)

    monkeypatch.setattr(cashet.hashing.arrays, "enc_text", counted)
    return seen


def argument_digest(client: Client, ref: Any) -> str:
    manifest = client.show(ref.commit_hash).task_def.manifest
    return manifest["arguments"][0]["digest"]  # type: ignore[no-any-return]


def frame(rows_: int = 200_000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    df = pd.DataFrame(rng.random((rows_, 6)), columns=list("abcdef"))
    df["s"] = pd.array([f"s{i % 89}" for i in range(rows_)], dtype="str")
    df["o"] = np.array([f"o{i % 13}" for i in range(rows_)], dtype=object)
    return df


def test_a_big_array_argument_is_hashed_once_per_miss(
    tmp_path: Path, hashed: list[int]
) -> None:
    a = np.arange(N, dtype=np.float64)
    with Client(store_dir=str(tmp_path)) as client:
        ref = client.submit(first, a)
        assert not ref.cached
        assert hashed[0] == a.nbytes  # the key's pass only: the manifest reused it
        hashed[0] = 0
        assert argument_digest(client, ref) == hash_value(a)[:32]  # as computed afresh
        assert hashed[0] == a.nbytes  # (that fresh digest hashed it again, as it must)
        hashed[0] = 0
        assert client.submit(first, a).cached
        assert hashed[0] == a.nbytes


def test_big_bytes_and_bytearray_arguments_are_hashed_once_per_miss(
    tmp_path: Path, hashed: list[int]
) -> None:
    with Client(store_dir=str(tmp_path)) as client:
        for value in (bytes(BIG + 5), bytearray(BIG + 7)):
            hashed[0] = 0
            ref = client.submit(first, value)
            assert hashed[0] == len(value)
            assert argument_digest(client, ref) == hash_value(value)[:32]


def test_a_frame_argument_is_hashed_once_per_miss(
    tmp_path: Path, hashed: list[int], texts: list[int]
) -> None:
    df = frame()
    numeric = int(df[list("abcdef")].to_numpy().nbytes)
    with Client(store_dir=str(tmp_path)) as client:
        ref = client.submit(rows, df)
        assert not ref.cached
        assert hashed[0] == numeric  # the frame's buffers, once
        assert texts[0] == 2  # each text column, once
        assert argument_digest(client, ref) == hash_value(df)[:32]


def test_a_value_changed_since_is_hashed_again(tmp_path: Path, hashed: list[int]) -> None:
    a = np.zeros(N)
    with Client(store_dir=str(tmp_path)) as client:
        before = client.submit(first, a)
        old = hash_value(a)[:32]
        a[N // 2] = 1.0  # in place: the same object, other bytes
        hashed[0] = 0
        after = client.submit(first, a)
        assert not after.cached and hashed[0] == a.nbytes
        assert argument_digest(client, before) == old
        assert argument_digest(client, after) == hash_value(a)[:32] != old


@pytest.mark.filterwarnings("ignore::cashet.errors.ClosureWarning")
def test_a_nested_call_on_a_mutated_argument_records_its_own_digest(tmp_path: Path) -> None:
    with Client(store_dir=str(tmp_path)) as client:

        def outer(a: np.ndarray) -> float:
            a[0] = 42.0  # mutates its argument, then submits with it
            return client.submit(first, a).load()

        a = np.zeros(N)
        keyed = hash_value(a)[:32]
        ref = client.submit(outer, a)
        assert ref.load() == 42.0
        assert argument_digest(client, ref) == keyed  # as outer was keyed
        inner = client.submit(first, a)
        assert inner.cached
        assert argument_digest(client, inner) == hash_value(a)[:32] != keyed


def test_nothing_is_kept_after_the_call(tmp_path: Path) -> None:
    with Client(store_dir=str(tmp_path)) as client:
        a = np.ones(N)
        client.submit(first, a)
        assert client.submit(first, a).cached  # a hit: the manifest is never made
        assert _LENT.get() is None
        gone = weakref.ref(a)
        del a
        gc.collect()
        assert gone() is None  # not held by the digests kept for its calls


def test_kept_digests_are_given_once_to_the_call_they_were_kept_for() -> None:
    a = np.ones(N)
    kept: KeptDigests = {}
    digest = hash_call(first, (a,), {}, None, kept)
    assert kept_get(kept, "big", a) is not None
    assert kept_get(kept, "big", a.copy()) is None  # the very object only
    assert take(digest) is None  # nothing lent
    with lent(kept, digest):
        assert take("0" * 64) is None  # another call's key
        assert take(digest) is kept
        assert take(digest) is None  # once
    assert _LENT.get() is None and not kept  # dropped with the call


def test_the_key_only_writes_and_the_manifest_only_reads(hashed: list[int]) -> None:
    a = np.ones(N)
    kept: KeptDigests = {}
    kept_put(kept, "big", a, b"\0" * 32)  # not what a hashes to
    hashed[0] = 0
    assert hash_call(first, (a,), {}, None, kept) == hash_call(first, (a,), {})
    assert hashed[0] == 2 * a.nbytes  # the key never reads what is kept
    assert hash_value(a, kept) == hash_value(a)  # the key wrote a's own digest over it
    assert hashed[0] == 3 * a.nbytes
    assert hash_value(np.zeros(N), kept) == hash_value(np.zeros(N))  # another object


def test_async_client_hashes_a_big_argument_once_per_miss(
    tmp_path: Path, hashed: list[int]
) -> None:
    a = np.arange(N, dtype=np.float64)

    async def main() -> tuple[str, bool]:
        async with AsyncClient(store_dir=str(tmp_path)) as client:
            ref = await client.submit(first, a)
            commit = await client.show(ref.commit_hash)
            return commit.task_def.manifest["arguments"][0]["digest"], ref.cached

    digest, cached = asyncio.run(main())
    assert not cached and hashed[0] == a.nbytes
    assert digest == hash_value(a)[:32]
