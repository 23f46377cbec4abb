"""Why did it re-run? (issue 15): ``client.explain`` before a call, ``cashet why`` after.

Each scenario edits a module between fresh interpreters sharing one store (as a user would,
``PYTHONDONTWRITEBYTECODE=1``), then asks why, in process and through the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cashet import Client
from cashet.async_client import AsyncClient
from cashet.provenance.explain import Change, compare_manifests

RUN = """
import json, sys
sys.path.insert(0, {folder!r})
from cashet import Client
import task_mod
client = Client(store_dir={store!r})
ref = client.submit(task_mod.train, *task_mod.ARGS)
print(json.dumps([ref.load(), ref.commit_hash]))
"""

SOURCE = """
SCALE = {scale}
def helper(v):
    return v * SCALE
def make(k):
    def step(v):
        return v + k
    return step
STEP = make({k})
def train(x, lr=0.5):
    return STEP(helper(x)) + lr{extra}
ARGS = ({x},)
"""


def write(folder: Path, scale: int = 2, k: int = 1, x: int = 10, extra: str = "") -> None:
    text = SOURCE.format(scale=scale, k=k, x=x, extra=extra)
    (folder / "task_mod.py").write_text(textwrap.dedent(text))


def run(folder: Path) -> str:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    code = RUN.format(folder=str(folder), store=str(folder / ".cashet"))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return str(json.loads(proc.stdout.strip().splitlines()[-1])[1])


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cashet = Path(sys.executable).with_name("cashet")
    return subprocess.run(
        [str(cashet), "--store-dir", str(folder / ".cashet"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )


def explain_now(folder: Path) -> Any:
    """``client.explain`` of the module as it is on disk now, in this process."""
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop("task_mod", None)
        import task_mod  # type: ignore[import-not-found]

        with Client(store_dir=folder / ".cashet") as client:
            return client.explain(task_mod.train, *task_mod.ARGS)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("task_mod", None)


def kinds(changes: list[Change]) -> list[tuple[str, str, str, str]]:
    return [(c.kind, c.name, c.before, c.after) for c in changes if c.kind != "source"]


pytestmark = pytest.mark.slow


def test_first_run_then_a_hit(tmp_path: Path) -> None:
    write(tmp_path)
    first = explain_now(tmp_path)
    assert not first.hit and first.changes == [] and first.previous is None
    assert "first" in str(first)
    h = run(tmp_path)
    again = explain_now(tmp_path)
    assert again.hit and again.commit.hash == h and str(again).startswith("hit:")


def test_a_global_a_closure_and_an_argument_are_named(tmp_path: Path) -> None:
    write(tmp_path)
    before = run(tmp_path)
    write(tmp_path, scale=3, k=5, x=11)
    e = explain_now(tmp_path)
    assert not e.hit and e.previous is not None and e.previous.hash == before
    assert kinds(e.changes) == [
        ("global", "SCALE", "2", "3"),
        ("closure", "k", "1", "5"),
        ("argument", "x", "10", "11"),
    ]
    after = run(tmp_path)
    out = cli(tmp_path, "why", after[:12])
    assert out.returncode == 0, out.stderr
    assert f"compared with commit {before[:12]}" in out.stdout
    assert "global SCALE: 2 -> 3" in out.stdout and "argument x: 10 -> 11" in out.stdout
    data = json.loads(cli(tmp_path, "why", after, "--json").stdout)
    assert data["commit"] == after and data["previous"] == before
    assert {"kind": "closure", "name": "k", "before": "1", "after": "5"} in data["changes"]


def test_an_edited_source_is_a_unified_diff(tmp_path: Path) -> None:
    write(tmp_path)
    run(tmp_path)
    write(tmp_path, extra=" * 2")
    e = explain_now(tmp_path)
    (source,) = [c for c in e.changes if c.kind == "source"]
    assert source.name.endswith("task_mod.train")
    assert "-    return STEP(helper(x)) + lr\n+    return STEP(helper(x)) + lr * 2" in source.before
    assert kinds(e.changes) == []  # nothing else: the helper and the values are the same


def test_the_nearest_earlier_run_is_compared(tmp_path: Path) -> None:
    write(tmp_path, scale=2, x=1)
    run(tmp_path)
    write(tmp_path, scale=3, x=2)
    near = run(tmp_path)
    write(tmp_path, scale=3, x=3)  # one part away from the second run, two from the first
    e = explain_now(tmp_path)
    assert e.previous is not None and e.previous.hash == near
    assert kinds(e.changes) == [("argument", "x", "2", "3")]


def failing(x: int) -> int:
    raise ValueError(x)


def test_a_failed_earlier_run_is_the_reason(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path) as client:
        with pytest.raises(Exception, match="ValueError"):
            client.submit(failing, 1)
        e = client.explain(failing, 1)
        assert not e.hit and e.changes == [] and "failed" in e.reason
        forced = client.explain(failing, 1, _force=True)
        assert forced.hit is False and "forced" in forced.reason


def test_show_links_to_why_and_unknown_hashes_fail(tmp_path: Path) -> None:
    write(tmp_path)
    h = run(tmp_path)
    assert f"cashet why {h[:12]}" in cli(tmp_path, "show", h).stdout
    missing = cli(tmp_path, "why", "ab" * 32)
    assert missing.returncode == 1 and "no commit" in missing.stderr.lower()


def test_async_client_explains_and_says_why(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path) as client:
            assert not (await client.explain(failing_not, 1)).hit
            ref = await client.submit(failing_not, 1)
            assert (await client.explain(failing_not, 1)).hit
            other = await client.submit(failing_not, 2)
            why = await client.why(other.commit_hash)
            assert why.previous is not None and why.previous.hash == ref.commit_hash
            assert [(c.kind, c.name) for c in why.changes] == [("argument", "x")]

    asyncio.run(main())


def failing_not(x: int) -> int:
    return x


def test_environment_changes_are_named_even_outside_the_key() -> None:
    before = {"function": {"name": "m.f"}, "python": "3.11.7 (CPython)", "packages": {"np": "1"}}
    after = {"function": {"name": "m.f"}, "python": "3.12.1 (CPython)", "packages": {"np": "2"}}
    assert [(c.kind, c.name, c.before, c.after) for c in compare_manifests(before, after)] == [
        ("environment", "python", "3.11.7 (CPython)", "3.12.1 (CPython)"),
        ("environment", "np", "1", "2"),
    ]


def uses_numpy(x: int) -> int:
    import numpy as np

    return int(np.int64(x) + 1)


def test_library_versions_in_the_key_by_policy(tmp_path: Path) -> None:
    import numpy as np

    from cashet.hashing.manifest import versioned_identity

    with Client(store_dir=tmp_path) as off, Client(store_dir=tmp_path, versions="minor") as minor:
        first = off.submit(uses_numpy, 1)
        assert off.submit(uses_numpy, 1).cached
        keyed = minor.submit(uses_numpy, 1)  # another key: numpy's version is in it
        assert not keyed.cached and keyed.load() == 2
        assert keyed.commit.task_def.func_hash != first.commit.task_def.func_hash
        task = off.task(versions="exact")(uses_numpy)
        assert not task(1).cached and task(1).cached
        with pytest.raises(ValueError, match="versions"):
            Client(store_dir=tmp_path, versions="newest")
    base = function_identity_of(uses_numpy)
    major, minor_id = versioned_identity(base, "major"), versioned_identity(base, "minor")
    assert len({base.hash, major.hash, minor_id.hash}) == 3
    assert versioned_identity(base, "major") is major  # cached
    assert np.__version__.split(".")[0]  # a real version was read


def function_identity_of(func: Any) -> Any:
    from cashet.hashing import function_identity

    return function_identity(func)


def test_refresh_mode_explains_a_forced_run(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path) as client:
        client.submit(failing_not, 1)
    with Client(store_dir=tmp_path, mode="refresh") as refresh:
        e = refresh.explain(failing_not, 1)
        assert not e.hit and e.changes == [] and "refresh" in e.reason
