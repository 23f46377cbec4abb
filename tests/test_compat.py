"""Drop-in for the published cashet's users (issue 12): code written against the spec runs
unchanged. Each test is written as such user code would be."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

import cashet
from cashet import Client
from cashet.errors import CashetError, CommitNotFoundError


def test_version_is_above_the_published_releases() -> None:
    # pip would call a move from the published 0.5.0 to a lower version a downgrade
    assert Version(cashet.__version__) > Version("0.5.0")


def test_not_found_is_a_key_error_with_a_plain_message(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / ".cashet") as client:
        missing = "ab" * 32
        with pytest.raises(KeyError) as info:
            client.get(missing)
        assert isinstance(info.value, CommitNotFoundError)
        assert isinstance(info.value, CashetError) and isinstance(info.value, LookupError)
        assert str(info.value) == f"no commit {missing}"  # not KeyError's quoted key
        with pytest.raises(KeyError):
            client.diff(missing, "cd" * 32)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is CommitNotFoundError and str(again) == str(info.value)


def test_published_model_conveniences(tmp_path: Path) -> None:
    from cashet.models import TaskStatus

    def double(x: int) -> int:
        return x * 2

    with Client(store_dir=tmp_path / ".cashet") as client:
        ref = client.submit(double, 21, _tags={"a": "b"})
        commit = client.show(ref.commit_hash)
        assert commit is not None
        assert commit.short_hash == commit.hash[:12] == commit.short_hash()  # property or call
        assert commit.output_ref == commit.result and commit.output_ref.hash == ref.hash
        summary = commit.summary()
        assert summary == {
            "hash": commit.hash,
            "short_hash": commit.hash[:12],
            "function": commit.func_name,
            "status": "completed",
            "created_at": commit.created_at.isoformat(),
            "output": ref.hash,
            "parent": None,
            "tags": {"a": "b"},
        }
        assert {s.name for s in TaskStatus} >= {"PENDING", "RUNNING", "COMPLETED", "FAILED"}
        assert TaskStatus.CACHED.value == "cached"
        assert client.log(status=TaskStatus.CACHED) == []  # no commit is recorded so
        assert client.rm("0" * 64) is False and client.show("0" * 64) is None


def test_task_decorator_on_a_method_binds_with_the_instance_in_the_key(tmp_path: Path) -> None:
    runs: list[int] = []
    client = Client(store_dir=tmp_path / ".cashet")

    class Model:
        def __init__(self, k: int) -> None:
            self.k = k

        @client.task
        def predict(self, x: int) -> int:
            runs.append(self.k)
            return self.k * x

    with client:
        assert Model(3).predict(2).load() == 6
        assert Model(4).predict(2).load() == 8  # another instance: another key
        again = Model(3).predict(2)
        assert again.cached and again.load() == 6
        assert runs == [3, 4]
        assert Model.predict.name.endswith("Model.predict")  # on the class: the task itself


class SpecStore:
    """A store written to the spec's Store protocol: its twelve methods and nothing else."""

    def __init__(self) -> None:
        from cashet.hashing import hash_bytes

        self._hash = hash_bytes
        self.blobs: dict[str, bytes] = {}
        self.commits: dict[str, Any] = {}

    def put_blob(self, data: bytes) -> Any:
        from cashet.models import ObjectRef

        ref = ObjectRef(self._hash(data), len(data))
        self.blobs[ref.hash] = data
        return ref

    def get_blob(self, ref: Any) -> bytes:
        return self.blobs[ref.hash]

    def put_commit(self, commit: Any) -> None:
        self.commits[commit.hash] = commit

    def get_commit(self, hash: str) -> Any:
        return self.commits.get(hash)

    def find_by_fingerprint(self, fingerprint: str) -> Any:
        found = [
            c
            for c in self.commits.values()
            if c.fingerprint == fingerprint and c.status.value == "completed"
        ]
        return max(found, key=lambda c: c.created_at) if found else None

    def find_running_by_fingerprint(self, fingerprint: str) -> Any:
        return None

    def list_commits(self, func_name=None, limit=50, status=None, tags=None):  # type: ignore[no-untyped-def]
        out = sorted(self.commits.values(), key=lambda c: c.created_at, reverse=True)
        return out if limit is None else out[:limit]

    def get_history(self, hash: str) -> list[Any]:
        return [self.commits[hash]] if hash in self.commits else []

    def stats(self) -> dict[str, int]:
        return {"total_commits": len(self.commits)}

    def evict(self, older_than: Any, max_size_bytes: Any = None) -> int:
        return 0

    def delete_commit(self, hash: str) -> bool:
        return self.commits.pop(hash, None) is not None

    def close(self) -> None:
        pass


def test_a_store_of_the_spec_protocol_works_and_says_what_it_lacks() -> None:
    from cashet.protocols import Store

    store = SpecStore()
    assert isinstance(store, Store)  # the spec's twelve methods are the protocol
    runs: list[int] = []

    def square(x: int) -> int:
        runs.append(x)
        return x * x

    with pytest.warns(RuntimeWarning, match="try_claim.*this process"):
        with Client(store=store) as client:  # type: ignore[arg-type]
            ref = client.submit(square, 7)
            assert ref.load() == 49 and not ref.cached
            again = client.submit(square, 7)
            assert again.cached and again.load() == 49 and runs == [7]
            assert [c.hash for c in client.log()] == [ref.commit_hash]
            shown = client.show(ref.commit_hash[:10])  # prefixes resolve by a scan
            assert shown is not None and shown.hash == ref.commit_hash
            assert client.rm(ref.commit_hash) is True


def test_an_executor_of_the_published_protocol_works() -> None:
    from cashet.executor import LocalExecutor

    class PublishedStyle:
        """Answers (commit, was_cached), as the published Executor protocol does."""

        def __init__(self) -> None:
            self.inner = LocalExecutor()

        def submit(self, func, args, kwargs, task_def, store, serializer):  # type: ignore[no-untyped-def]
            commit = self.inner.submit(func, args, kwargs, task_def, store, serializer)
            return commit, commit.from_cache

    def cube(x: int) -> int:
        return x**3

    import tempfile

    with tempfile.TemporaryDirectory() as d, Client(store_dir=d, executor=PublishedStyle()) as c:
        first = c.submit(cube, 3)
        assert first.load() == 27 and not first.cached
        assert c.submit(cube, 3).cached


def test_log_lists_calls_in_flight_as_running(tmp_path: Path) -> None:
    import threading

    from click.testing import CliRunner

    from cashet.cli import main
    from cashet.hashing import ignore
    from cashet.models import TaskStatus

    started, finish = threading.Event(), threading.Event()

    @ignore("started", "finish")
    def slow(x: int) -> int:
        started.set()
        finish.wait(30)
        return x

    store = tmp_path / ".cashet"
    with Client(store_dir=store) as client, Client(store_dir=store) as other:
        worker = threading.Thread(target=lambda: client.submit(slow, 5))
        worker.start()
        try:
            assert started.wait(30)
            running = other.log(status="running")
            assert [c.func_name for c in running] == [slow.__qualname__]
            assert running[0].status is TaskStatus.RUNNING and running[0].result is None
            assert other.show(running[0].hash) is None  # shown, not stored
            assert other.log(status="running", func_name="nothing") == []
            cli = CliRunner().invoke(main, ["--store-dir", str(store), "log", "-s", "running"])
            assert cli.exit_code == 0 and "slow" in cli.stdout
            assert other.log(status="completed") == []
        finally:
            finish.set()
            worker.join(30)
        assert other.log(status="running") == []
        assert [c.func_name for c in other.log(status="completed")] == [slow.__qualname__]


def test_commits_built_with_the_published_constructor(tmp_path: Path) -> None:
    # The published store tests build commits by hand: a chosen hash, no created_at,
    # ``output_ref=`` for the result and bytes for the snapshot.
    from datetime import datetime

    from cashet.models import Commit, TaskDef, TaskStatus
    from cashet.store import SQLiteStore

    store = SQLiteStore(tmp_path / ".cashet")
    ref = store.put_blob(b"data")
    td = TaskDef(
        func_hash="a" * 64, func_name="f", func_source="def f(): pass",
        args_hash="b" * 64, args_snapshot=b"args",
    )  # fmt: skip
    commit = Commit(hash="c" * 64, task_def=td, status=TaskStatus.COMPLETED, output_ref=ref)
    assert commit.result == ref and isinstance(commit.created_at, datetime)
    store.put_commit(commit)
    found = store.find_by_fingerprint(td.fingerprint)
    assert found is not None and found.hash == "c" * 64 and found.output_ref == ref
    assert store.get_commit("c" * 64) == found
    with pytest.raises(TypeError, match="output_ref"):
        Commit(hash="d" * 64, task_def=td, status=TaskStatus.COMPLETED, result=ref, output_ref=ref)
    store.close()


def test_server_answers_in_the_published_words(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from cashet.server import create_app

    def boom() -> None:
        raise RuntimeError("no such file /srv/secret")

    async def check(app: Any) -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cashet"
        ) as http:
            no_token = await http.post("/submit", json={"task": "boom"})
            assert no_token.json()["error"] == "unauthorized"
            http.headers["Authorization"] = "Bearer t0k"
            failed = await http.post("/submit", json={"task": "boom"})
            assert failed.status_code == 422 and failed.json()["error"] == "task failed"
            assert "Traceback" not in failed.text and 'File "' not in failed.text
            big = await http.post("/submit", json={"task": "boom", "pad": "x" * 500})
            assert big.status_code == 413 and "exceeds" in big.json()["error"]
            code = await http.post("/submit", json={"func_source": "def f(): pass"})
            assert code.status_code == 403
            assert code.json()["error"] == "remote code execution is disabled"
            args = await http.post("/submit", json={"task": "boom", "args_b64": "AA=="})
            assert args.json()["error"] == "serialized args are disabled"

    with Client(store_dir=tmp_path / ".cashet") as client:
        app = create_app(client, require_token="t0k", tasks={"boom": boom}, max_body_bytes=200)
        assert app.state.client is client
        asyncio.run(check(app))


def test_cli_usage_errors_in_the_published_words(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cashet.cli import main

    store = ["--store-dir", str(tmp_path / ".cashet")]
    bad_tag = CliRunner().invoke(main, [*store, "log", "--tag", "=v"])
    assert bad_tag.exit_code == 2 and "Invalid tag" in bad_tag.output
    assert "key cannot be empty" in CliRunner().invoke(main, [*store, "log", "--tag", ""]).output
    bad_status = CliRunner().invoke(main, [*store, "log", "--status", "nope"])
    assert bad_status.exit_code == 1 and "Invalid status 'nope'" in bad_status.output
    assert CliRunner().invoke(main, [*store, "log", "-s", "FAILED"]).exit_code == 0


@pytest.mark.redis
def test_log_lists_calls_in_flight_on_redis_too(redis_url: str) -> None:
    import threading

    from cashet.hashing import ignore
    from cashet.models import TaskStatus
    from cashet.redis_store import AsyncRedisStore, RedisStore
    from tests._redis import drop_prefix, fresh_prefix

    started, finish = threading.Event(), threading.Event()

    @ignore("started", "finish")
    def slow_on_redis(x: int) -> int:
        started.set()
        finish.wait(30)
        return x

    prefix = fresh_prefix()
    try:
        with (
            Client(store=RedisStore(redis_url, prefix=prefix)) as client,
            Client(store=RedisStore(redis_url, prefix=prefix)) as other,
        ):
            worker = threading.Thread(target=lambda: client.submit(slow_on_redis, 5))
            worker.start()
            try:
                assert started.wait(30)
                running = other.log(status="running")
                assert [c.func_name for c in running] == [slow_on_redis.__qualname__]
                assert running[0].status is TaskStatus.RUNNING
                assert other.log(status="running", func_name="nothing") == []

                async def from_async() -> list[str]:
                    store = AsyncRedisStore(redis_url, prefix=prefix)
                    try:
                        return [fp for fp, _, _ in await store.running_claims()]
                    finally:
                        await store.close()

                import asyncio

                assert asyncio.run(from_async()) == [running[0].fingerprint]
            finally:
                finish.set()
                worker.join(30)
            assert other.log(status="running") == []
            index = other.store.redis.zcard(f"{prefix}leases:running")  # type: ignore[attr-defined]
            assert index == 0  # released: out of the running index at once
            done = [c.func_name for c in other.log(status="completed")]
            assert done == [slow_on_redis.__qualname__]
    finally:
        drop_prefix(redis_url, prefix)


def test_a_shipped_call_is_listed_running_once(tmp_path: Path) -> None:
    from datetime import timedelta

    from cashet.core.flow import new_lease

    with Client(store_dir=tmp_path) as client:
        fp = "a" * 64 + ":" + "b" * 64
        assert client.store.try_claim(fp, new_lease(timedelta(seconds=60), "f"))
        assert client.store.try_claim(fp + "#run", new_lease(timedelta(seconds=60), "f"))
        assert [c.fingerprint for c in client.log(status="running")] == [fp]
