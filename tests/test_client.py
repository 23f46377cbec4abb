"""Client behaviour: caching, chaining, options, batches, failures, repair."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cashet import (
    BlobCorruptedError,
    BlobMissingError,
    CashetError,
    Client,
    JsonSerializer,
    ResultRef,
    TaskError,
    TaskRef,
    TaskStatus,
    TaskTimeoutError,
)

# Many tests define task functions inline that close over a list to count calls; the
# ClosureWarning that cashet rightly emits for them is covered in test_hashing_functions.
pytestmark = pytest.mark.filterwarnings("ignore::cashet.errors.ClosureWarning")

CALLS: list[Any] = []


def add(x: int, y: int = 1) -> int:
    CALLS.append(("add", x, y))
    return x + y


def double(x: int) -> int:
    CALLS.append(("double", x))
    return x * 2


def total(values: list[int]) -> int:
    CALLS.append(("total", values))
    return sum(values)


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


def test_second_submit_is_a_hit_and_runs_nothing(client: Client) -> None:
    ref = client.submit(add, 2, y=3)
    assert ref.load() == 5 and not ref.cached
    ref2 = client.submit(add, 2, y=3)
    assert ref2.cached and ref2.load() == 5
    assert ref2.commit_hash == ref.commit_hash and ref2.hash == ref.hash
    assert CALLS == [("add", 2, 3)]
    assert len(ref.hash) == 64 and ref.short_hash == ref.hash[:12]
    assert ref.size > 0


def test_different_args_miss(client: Client) -> None:
    client.submit(add, 1)
    client.submit(add, 1, 2)
    client.submit(add, True)  # True is not 1
    assert len(CALLS) == 3


def test_persists_across_client_instances(client_factory: Any, tmp_path: Path) -> None:
    with client_factory(store_dir=tmp_path) as c1:
        c1.submit(add, 10)
    with client_factory(store_dir=str(tmp_path)) as c2:
        ref = c2.submit(add, 10)
        assert ref.cached and ref.load() == 11
    assert len(CALLS) == 1


@pytest.mark.sqlite_only
def test_cashet_dir_env(
    client_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASHET_DIR", str(tmp_path / "envstore"))
    monkeypatch.chdir(tmp_path)
    with client_factory(store_dir=None) as c:
        c.submit(add, 1)
    assert (tmp_path / "envstore" / "meta.db").exists()
    assert not (tmp_path / ".cashet").exists()


def test_chaining_uses_upstream_blob_and_loads_value(client: Client) -> None:
    a = client.submit(double, 4)
    b = client.submit(add, a, 1)
    assert b.load() == 9
    assert CALLS[-1] == ("add", 8, 1)
    commit = client.show(b.commit_hash)
    assert a.hash in commit.input_hashes
    # nested in containers
    c = client.submit(total, [a, a, 2])
    assert c.load() == 18
    CALLS.clear()
    # re-run: every step hits; upstream values are not loaded on a hit
    a2 = client.submit(double, 4)
    b2 = client.submit(add, a2, 1)
    c2 = client.submit(total, [a2, a2, 2])
    assert (a2.cached, b2.cached, c2.cached) == (True, True, True)
    assert CALLS == []


def test_chain_key_depends_on_upstream_result_not_handle(client: Client) -> None:
    a = client.submit(double, 4)
    b = client.submit(double, 4, _force=True)  # same value, new commit, same blob
    assert a.hash == b.hash and a.commit_hash != b.commit_hash
    r1 = client.submit(add, a)
    r2 = client.submit(add, b)
    assert r2.cached and r1.commit_hash == r2.commit_hash


def test_cache_false_always_runs_and_records(client: Client) -> None:
    r1 = client.submit(add, 1, _cache=False)
    r2 = client.submit(add, 1, _cache=False)
    assert len(CALLS) == 2 and r1.commit_hash != r2.commit_hash
    assert not r2.cached
    assert len(client.log(func_name="add")) == 2


def test_force_reruns_and_later_calls_hit_the_new_result(client: Client) -> None:
    r1 = client.submit(add, 1)
    r2 = client.submit(add, 1, _force=True)
    assert len(CALLS) == 2 and r2.commit_hash != r1.commit_hash
    assert client.show(r2.commit_hash).parent_hash == r1.commit_hash
    r3 = client.submit(add, 1)
    assert r3.cached and r3.commit_hash == r2.commit_hash


def test_tags_are_metadata_not_key(client: Client) -> None:
    r1 = client.submit(add, 5, _tags={"experiment": "v1"})
    r2 = client.submit(add, 5, _tags={"experiment": "v2"})
    assert r2.cached and len(CALLS) == 1
    assert client.show(r1.commit_hash).tags == {"experiment": "v1"}
    assert [c.hash for c in client.log(tags={"experiment": "v1"})] == [r1.commit_hash]
    assert [c.hash for c in client.log(tags={"experiment": None})] == [r1.commit_hash]
    assert client.log(tags={"experiment": "v2"}) == []


def test_retries_then_task_error_with_traceback(client: Client) -> None:
    attempts = []

    def flaky(x: int) -> int:
        attempts.append(x)
        raise ValueError(f"boom {len(attempts)}")

    with pytest.raises(TaskError) as info:
        client.submit(flaky, 1, _retries=2)
    assert len(attempts) == 3
    err = info.value
    assert isinstance(err, RuntimeError) and err.attempts == 3
    assert "ValueError: boom 3" in str(err) and "Traceback" in str(err)
    assert "raise ValueError" in (err.traceback_text or "")
    failed = client.log(status="failed")
    assert len(failed) == 1 and "boom 3" in (failed[0].error or "")
    assert client.log(status=TaskStatus.FAILED) == failed


def test_retry_succeeds_on_second_attempt(client: Client) -> None:
    attempts = []

    def flaky_once() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("transient")
        return "ok"

    assert client.submit(flaky_once, _retries=3).load() == "ok"
    assert len(attempts) == 2


def test_failed_run_is_not_cached(client: Client) -> None:
    state = {"fail": True}

    def sometimes(x: int) -> int:
        if state["fail"]:
            raise RuntimeError("nope")
        return x

    with pytest.raises(TaskError):
        client.submit(sometimes, 3)
    state["fail"] = False
    ref = client.submit(sometimes, 3)
    assert ref.load() == 3 and not ref.cached


def test_timeout_fails_attempt_and_counts_for_retries(client: Client) -> None:
    started = []

    def slow() -> int:
        started.append(1)
        time.sleep(0.5)
        return 1

    with pytest.raises(TaskTimeoutError) as info:
        client.submit(slow, _timeout=0.05, _retries=1)
    assert len(started) == 2 and isinstance(info.value, TaskError)
    assert isinstance(info.value, TimeoutError)


def test_ttl_expires_entry_and_rerun_links_parent(client: Client) -> None:
    r1 = client.submit(add, 7, _ttl=0.2)
    assert client.submit(add, 7).cached
    time.sleep(0.3)
    r2 = client.submit(add, 7)
    assert not r2.cached and len(CALLS) == 2
    assert client.show(r2.commit_hash).parent_hash == r1.commit_hash


def test_task_decorator_bare_and_with_options(client: Client) -> None:
    @client.task
    def triple(x: int) -> int:
        CALLS.append(("triple", x))
        return 3 * x

    ref = triple(5)
    assert isinstance(ref, ResultRef) and ref.load() == 15
    assert client.submit(triple, 5).cached
    assert triple.__name__ == "triple"

    @client.task(cache=False, name="custom_task_name", tags={"env": "prod"})
    def other(x: int) -> int:
        CALLS.append(("other", x))
        return x + 1

    other(1)
    other(1)
    assert CALLS.count(("other", 1)) == 2
    commits = client.log(func_name="custom_task_name")
    assert len(commits) == 2 and commits[0].tags == {"env": "prod"}
    assert "custom_task_name" in client.tasks


def test_call_site_options_beat_decorator(client: Client) -> None:
    @client.task(cache=False, tags={"team": "ml", "env": "dev"})
    def f(x: int) -> int:
        CALLS.append(x)
        return x

    f(1, _cache=True)
    f(1, _cache=True)
    assert CALLS == [1]
    ref = f(2, _tags={"env": "prod"})
    assert client.show(ref.commit_hash).tags == {"team": "ml", "env": "prod"}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("_retries", -1),
        ("_retries", 1.5),
        ("_retries", True),
        ("_timeout", 0),
        ("_timeout", "10"),
        ("_ttl", -5),
        ("_ttl", 1e300),
        ("_timeout", float("inf")),
        ("_tags", ["a"]),
        ("_tags", {"k": object()}),
        ("_cache", "yes"),
        ("_force", 1),
    ],
)
def test_bad_option_values_are_value_errors_naming_the_option(
    client: Client, option: str, value: Any
) -> None:
    with pytest.raises(ValueError, match=option.lstrip("_")):
        client.submit(add, 1, **{option: value})
    assert CALLS == []


def test_decorator_option_validation(client: Client) -> None:
    with pytest.raises(ValueError, match="retries"):
        client.task(retries=-2)
    with pytest.raises(ValueError, match="tags"):
        client.task(tags="env=prod")  # type: ignore[arg-type]


def test_unhashable_argument_is_a_type_error_naming_it(client: Client, tmp_path: Path) -> None:
    with open(tmp_path / "f.txt", "w") as fh, pytest.raises(TypeError, match="argument"):
        client.submit(add, fh)
    assert CALLS == []


def test_submit_many_topological_with_taskrefs(client: Client) -> None:
    refs = client.submit_many(
        [
            (add, (TaskRef(1),), {"y": 100}),  # depends on a later item
            (double, (5,)),
            (total, ([TaskRef(0), TaskRef(1)],)),
        ]
    )
    assert [r.load() for r in refs] == [110, 10, 120]
    assert [c[0] for c in CALLS] == ["double", "add", "total"]


def test_submit_many_dict_and_parallel(client: Client) -> None:
    barrier = threading.Barrier(2, timeout=5)

    def meet(x: int) -> int:
        barrier.wait()  # both must run at the same time, or this times out
        return x

    refs = client.submit_many(
        {"a": (meet, (1,)), "b": (meet, (2,)), "sum": (total, ([TaskRef("a"), TaskRef("b")],))},
        max_workers=2,
    )
    assert set(refs) == {"a", "b", "sum"}
    assert refs["sum"].load() == 3


@pytest.mark.parametrize(
    ("batch", "exc", "match"),
    [
        ([(add, (TaskRef(0),))], ValueError, "its own"),
        ([(add, (TaskRef(5),))], ValueError, "not in the batch"),
        ([(add, (TaskRef(1),)), (add, (TaskRef(0),))], ValueError, "cycle"),
        ([(add, 1)], TypeError, "args must be a tuple"),
        ([("not callable", ())], TypeError, "callable"),
        ([(add, (), [])], TypeError, "kwargs"),
        ([42], TypeError, "expected"),
        ({"a": (add, (TaskRef("zz"),))}, ValueError, "not in the batch"),
    ],
)
def test_submit_many_rejects_bad_batches_before_running(
    client: Client, batch: Any, exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        client.submit_many(batch)
    assert CALLS == []


def test_submit_many_failure_stops_dependents(client: Client) -> None:
    def bad() -> int:
        raise KeyError("missing")

    with pytest.raises(TaskError):
        client.submit_many([bad, (double, (TaskRef(0),))])
    assert CALLS == []


def test_map(client: Client) -> None:
    refs = client.map(add, range(4), y=10)
    assert [r.load() for r in refs] == [10, 11, 12, 13]
    refs = client.map(add, range(5), y=10)
    assert [r.cached for r in refs] == [True, True, True, True, False]


def noise(n: int) -> bytes:
    """Incompressible bytes, so the blob is a file and not stored inline."""
    import random

    return random.Random(n).randbytes(n)


@pytest.mark.sqlite_only
def test_corrupt_blob_raises_then_next_submit_recomputes_and_repairs(client: Client) -> None:
    ref = client.submit(noise, 50_000)
    blob = Path(client.store.path) / "objects" / ref.hash[:2] / ref.hash[2:]  # type: ignore[attr-defined]
    assert blob.exists()
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    fresh = client.submit(noise, 50_000)
    with pytest.raises(BlobCorruptedError):
        fresh.load()
    again = client.submit(noise, 50_000)
    assert not again.cached and again.load() == noise(50_000)
    final = client.submit(noise, 50_000)
    assert final.cached and final.load() == noise(50_000)


@pytest.mark.sqlite_only
def test_missing_blob_is_a_clear_error_then_repaired(client: Client) -> None:
    ref = client.submit(noise, 20_000)
    blob = Path(client.store.path) / "objects" / ref.hash[:2] / ref.hash[2:]  # type: ignore[attr-defined]
    blob.unlink()
    with pytest.raises(BlobMissingError):
        client.submit(noise, 20_000).load()
    again = client.submit(noise, 20_000)
    assert not again.cached and again.load() == noise(20_000)
    assert blob.exists()


def test_json_serializer_client(client_factory: Any) -> None:
    with client_factory(serializer=JsonSerializer()) as c:
        assert c.submit(lambda: {"a": [1, 2]}).load() == {"a": [1, 2]}
        with pytest.raises(TypeError, match="JsonSerializer"):
            c.submit(lambda: {1, 2})


def test_closed_client_refuses(client_factory: Any) -> None:
    c = client_factory()
    c.close()
    c.close()
    with pytest.raises(CashetError, match="closed"):
        c.submit(add, 1)


@pytest.mark.sqlite_only
def test_keyboard_interrupt_lease_gone_for_same_call(client_factory: Any) -> None:
    state = {"raise": True}

    def maybe_interrupt() -> str:
        if state["raise"]:
            raise KeyboardInterrupt
        return "done"

    with client_factory() as c:
        with pytest.raises(KeyboardInterrupt):
            c.submit(maybe_interrupt)
        # the lease was released: the same call claims it at once instead of waiting
        # for the lease to expire (5 minutes by default)
        fingerprints = [row[0] for row in _claims(c)]
        assert fingerprints == []
        state["raise"] = False
        assert c.submit(maybe_interrupt).load() == "done"


def _claims(c: Client) -> list[Any]:
    import sqlite3

    con = sqlite3.connect(Path(c.store.path) / "meta.db")  # type: ignore[attr-defined]
    try:
        return con.execute("SELECT fingerprint FROM claims").fetchall()
    finally:
        con.close()


def test_cashet_log_env_prints_lines(tmp_path: Path) -> None:
    script = (
        "from cashet import Client\n"
        "def f(x):\n    return x\n"
        f"c = Client(store_dir={str(tmp_path)!r})\n"
        "c.submit(f, 1); c.submit(f, 1)\n"
    )
    env = dict(os.environ, CASHET_LOG="DEBUG")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert "[cashet]" in out.stderr and "f" in out.stderr
    env.pop("CASHET_LOG")
    quiet = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert quiet.stderr == ""


def test_library_is_silent_without_env(caplog: pytest.LogCaptureFixture) -> None:
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("cashet").handlers)


def test_gc_and_clear_basics(client: Client) -> None:
    client.submit(add, 1)
    client.submit(add, 2)
    assert client.gc(timedelta(days=1)) == 0
    assert client.clear() == 2
    assert client.stats()["total_commits"] == 0


async def _an_async_def(x: int) -> int:
    return x


def test_sync_client_refuses_an_async_def_with_a_clear_error(tmp_path: Path) -> None:
    from cashet import Client

    with Client(store_dir=tmp_path) as client:
        with pytest.raises(TypeError, match=r"async def.*AsyncClient"):
            client.submit(_an_async_def, 1)
        assert client.log() == []  # nothing recorded, no lease left


def _plus_one(x: int) -> int:
    return x + 1


def test_a_result_less_commit_is_no_hit(tmp_path: Path) -> None:
    from cashet import Client
    from cashet.hashing import function_identity, hash_call
    from cashet.models import Commit, TaskDef, TaskStatus

    with Client(store_dir=tmp_path) as client:
        td = TaskDef("_plus_one", function_identity(_plus_one).hash, hash_call(_plus_one, (1,), {}))
        client.store.put_commit(Commit(hash="c" * 64, task_def=td, status=TaskStatus.COMPLETED))
        ref = client.submit(_plus_one, 1)
        assert not ref.cached and ref.load() == 2
        assert client.submit(_plus_one, 1).cached


def _which_thread(x: int) -> str:
    import threading

    return f"{threading.current_thread().name}:{x}"


def test_batches_reuse_the_clients_threads(tmp_path: Path) -> None:
    """A batch's threads are kept for the next batch (their store connections with them);
    close() ends them."""
    from cashet import Client

    client = Client(store_dir=tmp_path, max_workers=3)
    assert len(client.map(_which_thread, range(12), _cache=False)) == 12
    assert client._pool is not None
    pool = client._pool[2]
    threads = set(pool._threads)
    assert 1 <= len(threads) <= 3
    assert [r.load() for r in client.map(_which_thread, range(4))]
    assert client._pool[2] is pool and set(pool._threads) <= threads | set(pool._threads)
    assert len(pool._threads) <= 3  # no new threads beyond the pool's size
    client.close()
    assert pool._shutdown and all(not t.is_alive() for t in pool._threads)
