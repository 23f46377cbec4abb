"""Fuzz: single flipped bits in a populated SQLite store never give a wrong value (issue 13).

Each trial copies a small populated store, flips one random bit of ``meta.db`` or of a blob
file, and then uses it as a user would: ``submit`` every call again, ``get`` every result
by its commit hash, ``log``, and ``show`` every commit listed. Allowed outcomes: the right
value (from the cache or recomputed) or a ``CashetError``; never another value, never
another exception. Seeded: a failure names its trial, which reruns alone.

``python -m pytest tests/test_fuzz_store.py -m slow -s`` prints the counts.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from cashet import Client
from cashet.errors import CashetError

pytestmark = pytest.mark.slow

SEED = 13
TRIALS = int(os.environ.get("CASHET_FUZZ_TRIALS", "300"))
CALLS: list[Any] = []


def small(x: int) -> int:
    CALLS.append(x)
    return x * 7


def large(x: int) -> bytes:
    CALLS.append(("large", x))
    return bytes([x % 256]) * 5000  # stored as a file under objects/ (compressed)


def noisy(x: int) -> bytes:
    CALLS.append(("noisy", x))
    return random.Random(x).randbytes(3000)  # incompressible: a raw file


CASES: list[tuple[Any, int, Any]] = [
    *[(small, x, x * 7) for x in range(6)],
    *[(large, x, bytes([x % 256]) * 5000) for x in range(2)],
    (noisy, 1, random.Random(1).randbytes(3000)),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("fuzz") / "store"
    with Client(root) as c:
        hashes = [c.submit(f, x, _tags={"n": str(x)}).commit_hash for f, x, _ in CASES]
    with closing(sqlite3.connect(root / "meta.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root, hashes


def flip(root: Path, rng: random.Random) -> str:
    """Flip one bit of meta.db (3 trials in 4) or of a blob file; say where."""
    files = sorted(p for p in (root / "objects").rglob("*") if p.is_file())
    target = root / "meta.db" if rng.random() < 0.75 or not files else rng.choice(files)
    data = bytearray(target.read_bytes())
    at = rng.randrange(len(data))
    bit = rng.randrange(8)
    data[at] ^= 1 << bit
    target.write_bytes(bytes(data))
    return f"{target.relative_to(root)} byte {at} bit {bit}"


def use(root: Path, hashes: list[str]) -> str:
    """Use the damaged store; return "right", "recomputed" or "cashet-error".

    Raises AssertionError on a wrong value; lets any non-cashet exception through.
    """
    CALLS.clear()
    errors = 0
    try:
        client = Client(root)
    except CashetError:
        return "cashet-error"
    with client as c:
        for f, x, want in CASES:
            try:
                got = c.submit(f, x).load()
            except CashetError:
                errors += 1
                continue
            assert got == want, f"submit({f.__name__}, {x}) returned {got!r}, not {want!r}"
        for (f, x, want), h in zip(CASES, hashes, strict=True):
            try:
                got = c.get(h)
            except CashetError:
                errors += 1
                continue
            assert got == want, f"get({h[:12]}) of {f.__name__}({x}) returned {got!r}"
        try:
            for commit in c.log(limit=None):
                shown = c.show(commit.hash)  # None: set aside since log listed it
                assert shown is None or shown.hash == commit.hash
        except CashetError:
            errors += 1
    if errors:
        return "cashet-error"
    return "recomputed" if CALLS else "right"


def test_single_bit_flips_never_give_a_wrong_value(
    template: tuple[Path, list[str]], tmp_path: Path
) -> None:
    source, hashes = template
    rng = random.Random(SEED)
    counts: Counter[str] = Counter()
    for trial in range(TRIALS):
        root = tmp_path / f"t{trial}"
        shutil.copytree(source, root)
        where = flip(root, rng)
        try:
            counts[use(root, hashes)] += 1
        except AssertionError as exc:
            raise AssertionError(f"trial {trial} ({where}): wrong value: {exc}") from exc
        except Exception as exc:
            raise AssertionError(
                f"trial {trial} ({where}): {type(exc).__name__} is not a CashetError: {exc}"
            ) from exc
        shutil.rmtree(root)
    print(f"\n{TRIALS} single-bit flips: {dict(counts)}")
    assert sum(counts.values()) == TRIALS
